"""The compile cache (sonic_core.sonic.compiling): what one process compiled, a second process with an empty inductor
cache of its own finds in the cache file instead of compiling it again (torch's cache counters say so)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from .conftest import ROOT

CHILD = """
import json, sys, torch
from torch._dynamo.utils import counters
from sonic_core.sonic.compiling import load_compile_cache, save_compile_cache

path = sys.argv[1]
loaded = load_compile_cache(path)

def step(x, w):
    return torch.nn.functional.gelu(x @ w).sum(-1)

with torch.no_grad():
    torch.compile(step, dynamic=False)(torch.randn(8, 16), torch.randn(16, 4))
print(json.dumps({"loaded": loaded, "saved": save_compile_cache(path),
                  "inductor": dict(counters["inductor"]), "aot": dict(counters["aot_autograd"])}))
"""


def _process(cache_file, inductor_dir) -> dict:
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(inductor_dir), PYTHONPATH=ROOT)
    r = subprocess.run([sys.executable, "-c", CHILD, str(cache_file)], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_second_process_loads_what_the_first_compiled(tmp_path):
    cache = tmp_path / "models" / "compile_cache" / "torch-x-cpu.bin"
    cache.parent.mkdir(parents=True)
    first = _process(cache, tmp_path / "inductor1")
    assert (first["loaded"], first["saved"]) == (False, True) and cache.stat().st_size > 0
    assert first["inductor"].get("fxgraph_cache_miss", 0) >= 1
    second = _process(cache, tmp_path / "inductor2")   # a fresh machine-local cache: only the file can help
    assert second["loaded"] is True
    assert second["aot"].get("autograd_cache_hit", 0) >= 1
    assert second["inductor"].get("fxgraph_cache_miss", 0) == 0 and second["aot"].get("autograd_cache_miss", 0) == 0
    assert second["saved"] is False   # nothing new compiled: the file is left as it is


def test_the_cache_file_lives_beside_the_models_and_names_torch_and_the_device(tmp_path):
    import torch

    from sonic_core.sonic.compiling import compile_cache_path

    path = compile_cache_path(str(tmp_path), "cpu")
    assert os.path.dirname(path) == str(tmp_path / "compile_cache") and os.path.isdir(os.path.dirname(path))
    assert os.path.basename(path) == f"torch-{torch.__version__}-cpu.bin"
