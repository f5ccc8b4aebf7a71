"""The sonic engine inside a real ComfyUI: weights found in models/sonic, the template runs on them with ComfyUI's
model manager placing the modules, the weights' licences are logged at their first load, and the models are
released when ComfyUI frees memory (POST /free drops its caches)."""
from __future__ import annotations

import os
import time

import pytest

from devtools.comfyui import ComfyServer
from devtools.demo import run_talking_head
from queue_bridge.comfy_client import ComfyClient
from sonic_core.media.encode import probe_video
from sonic_core.provenance import read_provenance

pytestmark = pytest.mark.comfy


@pytest.fixture(scope="module")
def sonic_comfy(tiny_root, tmp_path_factory):
    base = tmp_path_factory.mktemp("comfy_sonic")
    os.makedirs(base / "models", exist_ok=True)
    os.symlink(tiny_root, base / "models" / "sonic")  # the official checkpoints/ layout, inside models/sonic
    server = ComfyServer(str(base)).start()
    yield server, ComfyClient(server.url)
    server.stop()


def test_template_runs_on_the_sonic_engine_and_frees_on_request(sonic_comfy, tmp_path):
    server, comfy = sonic_comfy
    video, entry = run_talking_head(comfy, overrides={
        "3": {"min_resolution": 64, "duration": 1.0},
        "4": {"engine": "auto", "inference_steps": 2, "paste_back": True},
    }, timeout=900)
    path = tmp_path / "sonic.mp4"
    path.write_bytes(video)
    info = probe_video(str(path))
    prov = read_provenance(info.metadata)
    assert prov["engine"] == "sonic" and "Sonic weights found" in prov["note"]
    assert info.n_frames == 25 and (info.width, info.height) == (512, 512)  # pasted back onto the full portrait

    # ComfyUI's own model manager placed the engine's modules (no SonicFlow code patched into it)
    log = server.log_tail(400)
    assert "Requested to load UNetSpatioTemporalConditionModel" in log and "CC BY-NC-SA 4.0" in log
    comfy.http.post(server.url + "/free", json={"unload_models": True, "free_memory": True}).raise_for_status()
    deadline = time.monotonic() + 60
    while "released the Sonic models" not in server.log_tail(200):
        assert time.monotonic() < deadline, "ComfyUI's /free did not release the Sonic models"
        time.sleep(0.5)
