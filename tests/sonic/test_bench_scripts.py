"""The Sonic benchmarks run end to end at the tiny size on the CPU (on a GPU they run at full size; docs/benchmarks.md),
so they cannot rot between GPU sessions."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .conftest import ROOT
from .conftest import TINY_CONFIG as TINY


def _run(script: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, os.path.join(ROOT, "bench", script), *args], cwd=ROOT, timeout=timeout,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_sonic_kernels_times_eager_calls(tmp_path):
    out = tmp_path / "k.json"
    r = _run("sonic_kernels.py", "--device", "cpu", "--dtype", "fp32", "--size", "64", "--config-dir", TINY,
             "--variants", "", "--out", str(out))
    assert r.returncode == 0, r.stdout[-3000:]
    res = json.loads(out.read_text())
    assert res["device_name"] == "cpu"
    assert res["variants"]["unet-eager"]["median_s"] > 0 and res["variants"]["vae-eager"]["median_s"] > 0
    assert "unet-eager" in r.stdout


@pytest.mark.slow
def test_sonic_gpu_bench_runs_sonicflow_at_tiny_size(tmp_path):
    """Weights written in the official layout, then SonicFlow's phases: memory runs per mode, eager runs (median),
    the noise='cpu' baseline. Not here: the official side (its pinned diffusers/transformers do not install beside
    ours) and the two compile phases (compiling the tiny UNet with inductor's C++ backend takes 5-8 minutes on 2
    cores; tests/sonic/test_compile_cache.py covers the cache they use)."""
    out = tmp_path / "g.json"
    r = _run("sonic_gpu.py", "--config-dir", TINY, "--size", "64", "--seconds", "1", "--steps", "1", "--repeat", "2",
             "--no-official", "--no-compile", "--memory-seconds", "1", "--memory-modes", "gpu,lowvram",
             "--checkpoints", str(tmp_path / "ckpt"), "--out", str(out))
    assert r.returncode == 0, r.stdout[-3000:]
    res = json.loads(out.read_text())
    eager = res["sonicflow"]["eager"]
    # 1 s of audio: 12 generated frames, 23 with RIFE, one 25-frame window per step
    assert (eager["generated_frames"], eager["output_frames"], eager["unet_calls"]) == (12, 23, 1)
    assert len(eager["all_seconds_per_video_second"]) == 2 and eager["median_seconds_per_video_second"] > 0
    assert eager["noise"] == "device" and eager["memory_plan"]["mode"] == "gpu"
    memory = res["sonicflow"]["memory"]
    # lowvram runs the three guidance branches one after the other: three calls where eager makes one
    assert memory["lowvram"]["memory_plan"]["mode"] == "lowvram"
    assert memory["lowvram"]["unet_calls"] == 3 * eager["unet_calls"]
    assert res["sonicflow"]["plans"]["6 GiB"]["mode"] == "gpu"  # the tiny models fit 6 GiB whole
    assert res["summary"]["sonicflow_eager"] == eager["median_seconds_per_video_second"]
    assert "CPU-seconds per second of video" in r.stdout


def test_the_gpu_scripts_need_no_pyav():
    """The lent GPU machines' Python has no PyAV: the engine's model side and the benchmarks' helpers import
    without it (sonic_core loads media modules only when asked)."""
    code = ("import sys; sys.modules['av'] = None; "
            "import sonic_core.engines.sonic_engine, devtools.sonic_runner, devtools.make_tiny_checkpoints, "
            "devtools.bench_media")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
