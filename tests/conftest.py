"""Shared fixtures: example media, a second real portrait, a real headless ComfyUI, an S3-compatible server."""
from __future__ import annotations

import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE_IMAGE = os.path.join(ROOT, "sample_media", "portrait.png")
EXAMPLE_AUDIO = os.path.join(ROOT, "sample_media", "speech.wav")


@pytest.fixture(scope="session")
def example_image() -> str:
    return EXAMPLE_IMAGE


@pytest.fixture(scope="session")
def example_audio() -> str:
    return EXAMPLE_AUDIO


@pytest.fixture(scope="session")
def grace_hopper() -> str:
    """A second real portrait: matplotlib's sample photo of Grace Hopper (US Navy, public domain)."""
    import matplotlib

    return os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")


@pytest.fixture(scope="session")
def comfy_server(tmp_path_factory):
    """One real ComfyUI 0.3.75 with SonicFlow linked into custom_nodes, for the whole session."""
    from devtools.comfyui import ComfyServer

    server = ComfyServer(str(tmp_path_factory.mktemp("comfyui"))).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def comfy(comfy_server):
    from queue_bridge.comfy_client import ComfyClient

    return ComfyClient(comfy_server.url)


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3-compatible HTTP server on a free loopback port (no MinIO server installs here)."""
    from moto.server import ThreadedMotoServer

    from devtools.comfyui import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_env(s3_endpoint, monkeypatch):
    """Credentials the way users give them: environment variables, never node widgets."""
    monkeypatch.setenv("SONICFLOW_S3_ENDPOINT", s3_endpoint)
    monkeypatch.setenv("SONICFLOW_S3_ACCESS_KEY", "testing")
    monkeypatch.setenv("SONICFLOW_S3_SECRET_KEY", "testing")
    return s3_endpoint
