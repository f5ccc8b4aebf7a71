"""`sonicflow convert`: safetensors beside the .pth files, preferred by the loader, same model up to fp16."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
from safetensors import safe_open

from sonic_core.model_files.locate import find_weights
from sonic_core.sonic.loading import load_unet, read_state_dict


def test_convert_writes_safetensors_the_loader_prefers(tiny_copy):
    before = find_weights([tiny_copy]).paths["unet"]
    r = subprocess.run([sys.executable, "-m", "sonicflow_cli", "convert", "--checkpoints", tiny_copy],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    paths = find_weights([tiny_copy]).paths
    assert before.endswith("unet.pth") and paths["unet"].endswith("unet.safetensors")
    assert paths["audio2token"].endswith(".safetensors") and paths["audio2bucket"].endswith(".safetensors")
    with safe_open(paths["unet"], "pt") as f:
        assert f.get_tensor("conv_in.weight").dtype == torch.float16
    with safe_open(paths["audio2token"], "pt") as f:
        assert f.get_tensor("proj1.weight").dtype == torch.float32  # the adapters stay fp32, as officially
    original = read_state_dict(before)
    converted = read_state_dict(paths["unet"])
    assert original.keys() == converted.keys()
    torch.testing.assert_close(converted["conv_in.weight"].float(), original["conv_in.weight"], atol=1e-3, rtol=1e-3)


def test_converted_unet_loads_strictly(tiny_copy):
    subprocess.run([sys.executable, "-m", "sonicflow_cli", "convert", "--checkpoints", tiny_copy], check=True,
                   capture_output=True)
    config = json.load(open(os.path.join(tiny_copy, "stable-video-diffusion-img2vid-xt", "unet", "config.json")))
    unet = load_unet(find_weights([tiny_copy]).paths["unet"], config, dtype=torch.float32)
    assert sum(p.numel() for p in unet.parameters()) > 0
