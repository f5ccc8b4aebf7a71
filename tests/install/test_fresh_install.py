"""README's install, as a ComfyUI user does it: a fresh virtual environment with ComfyUI's own requirements, the pack
copied into custom_nodes/ (what `git clone` gives) and ONLY its requirements.txt installed; then the template runs in
that ComfyUI on the sonic engine with the tiny official-layout checkpoint in models/sonic, and on `auto` without any
weights (lite, saying why). Slow: building the environment takes a few minutes."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from devtools.comfyui import ComfyServer
from devtools.demo import run_talking_head
from queue_bridge.comfy_client import ComfyClient
from sonic_core.media.encode import probe_video
from sonic_core.provenance import read_provenance

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
pytestmark = pytest.mark.slow
# ComfyUI 0.3.75's requirements.txt with the torch/torchvision pair that runs on this machine kind pinned
# (requirements-comfyui.txt says why): ComfyUI's side of the install, before SonicFlow's.
COMFYUI_REQUIREMENTS = os.path.join(ROOT, "requirements-comfyui.txt")


def _pip(python: str, *args: str) -> None:
    # --no-compile: the environment is thrown away; byte-compiling torch alone would take minutes
    r = subprocess.run([python, "-m", "pip", "install", "--disable-pip-version-check", "-q", "--no-compile", *args],
                       capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


@pytest.fixture(scope="module")
def user_comfy(tmp_path_factory):
    """A ComfyUI whose Python has only ComfyUI's requirements and SonicFlow's requirements.txt."""
    home = tmp_path_factory.mktemp("fresh_install")
    venv = home / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    _pip(python, "-r", COMFYUI_REQUIREMENTS)
    base = home / "comfyui"
    pack = base / "custom_nodes" / "SonicFlow"
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for rel in tracked:  # what `git clone` gives
        os.makedirs(pack / os.path.dirname(rel), exist_ok=True)
        shutil.copy2(os.path.join(ROOT, rel), pack / rel)
    _pip(python, "-r", str(pack / "requirements.txt"))
    found = subprocess.run([python, "-c", "import importlib.util as u; print([m for m in ('diffusers', 'transformers', "
                            "'pika', 'psycopg', 'sonic_core') if u.find_spec(m)])"], capture_output=True, text=True,
                           check=True, cwd=home).stdout.strip()
    # the engine's libraries; neither the bridge's nor the front door's, and SonicFlow itself is not pip-installed
    assert found == "['diffusers', 'transformers']", found
    server = ComfyServer(str(base), python=python).start()
    yield server, ComfyClient(server.url), base
    server.stop()


def _run(comfy, overrides, tmp_path, name):
    video, _ = run_talking_head(comfy, overrides=overrides, timeout=900)
    path = tmp_path / name
    path.write_bytes(video)
    return probe_video(str(path))


def test_auto_without_weights_makes_a_lite_video_and_says_why(user_comfy, tmp_path):
    _, comfy, _ = user_comfy
    info = _run(comfy, {"3": {"duration": 1.0}, "11": {"default": "256"}}, tmp_path, "auto.mp4")
    prov = read_provenance(info.metadata)
    assert prov["engine"] == "lite" and prov["note"].startswith("auto: used the lite engine")
    assert "Sonic weights are missing" in prov["note"] and info.n_frames == 25


def test_sonic_runs_on_the_tiny_official_checkpoint(user_comfy, tmp_path):
    _, comfy, base = user_comfy
    from devtools.make_tiny_checkpoints import main

    assert main([str(base / "models" / "sonic"), "--seed", "0"]) == 0  # the official checkpoints/ layout
    info = _run(comfy, {"3": {"duration": 1.0}, "4": {"inference_steps": 2}, "10": {"default": "sonic"},
                        "11": {"default": "64"}}, tmp_path, "sonic.mp4")
    prov = read_provenance(info.metadata)
    assert prov["engine"] == "sonic" and prov["note"].startswith("sonic engine"), prov
    assert info.n_frames == 25 and info.audio_codec == "aac"
