#!/usr/bin/env python3
"""Write a complete Sonic checkpoint folder, with random weights, in the official formats.

    python devtools/make_tiny_checkpoints.py OUT_DIR [--seed N] [--config-dir DIR] [--layout official|comfyui|both]
                                             [--fast [--device cuda]]

Every model is built from the configs in --config-dir (default: tests/data/sonic_tiny_config, the tiny folder;
point it at a folder of real configs for full-size files) and every tensor is filled from
`numpy.random.default_rng([seed, crc32(file name)])`, key by key in sorted order, so the weights are the same
under any torch version and do not depend on torch's own initialisation:
  * tensors of 2 or more dimensions: standard normal / sqrt(fan_in), fan_in = product of all but the first dim
    (keeps activations of order 1 through deep stacks, so golden comparisons are not comparisons of zeros);
  * 1-d `...bias`: 0.02 * normal; other 1-d (norm scales, PReLU slopes, mix factors, CLIP class embedding):
    1 + 0.05 * normal; integer buffers are left as built;
  * except the VAE's quant_conv, set to the identity as in the real SVD VAE (Stability's single file has none).

--fast (for full-size folders, e.g. bench/sonic_full_config for bench/sonic_gpu.py: 2.3e9 values): the models are
built on the meta device (no initialisation) and the values are drawn with torch.randn from a torch.Generator on
--device (default: cuda when available), seeded per file from [seed, crc32(name)], same scaling rules. Same
shapes, keys, dtypes and file formats; the values differ from the default mode (and may differ between devices
and torch versions), so golden data is never made with --fast.

Official layout (OUT_DIR/, as `checkpoints/` in jixiaozhong/Sonic):
  Sonic/unet.pth, Sonic/audio2token.pth, Sonic/audio2bucket.pth        torch.save of fp32 state dicts
  RIFE/flownet.pkl                                                    IFNet state dict, keys prefixed `module.`
  yoloface_v5m.pt                                                     TorchScript: model(img, grids) -> (1, N, 16)
  stable-video-diffusion-img2vid-xt/{unet,vae,image_encoder}/config.json, scheduler/scheduler_config.json
      vae/diffusion_pytorch_model.fp16.safetensors, image_encoder/model.fp16.safetensors (fp16, the names
      `from_pretrained(..., variant="fp16")` looks for), and unet/diffusion_pytorch_model.fp16.safetensors (the
      base SVD UNet; Sonic's unet.pth overwrites all of it, but the official code's from_pretrained needs a file)
  whisper-tiny/config.json, preprocessor_config.json, model.safetensors (fp32, keys `model.encoder...` /
      `model.decoder...` as in openai/whisper-tiny)

ComfyUI_Sonic layout (OUT_DIR/comfyui/): models/sonic/{unet.pth, audio2token.pth, audio2bucket.pth,
yoloface_v5m.pt, RIFE/flownet.pkl, whisper-tiny/} and models/checkpoints/svd_xt.safetensors, a single file in
Stability's format holding the same VAE (`first_stage_model.`) and CLIP image encoder
(`conditioner.embedders.0.open_clip.model.visual.`) weights as the diffusers folder (the SVD UNet part of a real
svd_xt file is not written: Sonic never reads it).

The fake face detector returns, for any image, one confident face box centred slightly above the image centre
(obj 0.92 x cls 0.97), a weaker duplicate that NMS removes, and a low-confidence box that the 0.5 threshold
removes, in the resized-image pixel coordinates of the real YOLOv5-face output [cx, cy, w, h, obj, 5 x (x, y), cls].
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import zlib
from typing import List

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

DEFAULT_CONFIG_DIR = os.path.join(ROOT, "tests", "data", "sonic_tiny_config")
SVD = "stable-video-diffusion-img2vid-xt"


# ------------------------------------------------------------------------------------------------- weights

# --fast: the device the values are drawn on (None: numpy, the default, version-independent mode)
FAST_DEVICE: str | None = None


def _build_ctx():
    """Where modules are constructed: the meta device in --fast mode (only shapes are needed), else the CPU."""
    import contextlib

    return torch.device("meta") if FAST_DEVICE else contextlib.nullcontext()


def fill_fast(state: dict, seed: int, name: str, dtype: torch.dtype = torch.float32) -> dict:
    """--fast: same rules as `fill`, values from torch.randn on FAST_DEVICE (state may hold meta tensors)."""
    dev = torch.device(FAST_DEVICE)
    gen = torch.Generator(device=dev)
    gen.manual_seed((seed * 0x9E3779B1 + zlib.crc32(name.encode())) % (2 ** 63))
    out = {}
    for key in sorted(state):
        t = state[key]
        if not torch.is_floating_point(t):
            if t.is_meta:
                raise RuntimeError(f"{name}: integer tensor {key} has no value on the meta device")
            out[key] = t.detach().clone().cpu()
            continue
        shape = tuple(t.shape)
        z = torch.randn(shape, generator=gen, device=dev, dtype=torch.float32)
        if len(shape) >= 2:
            z.mul_(1.0 / float(np.sqrt(np.prod(shape[1:]))))
        elif key.endswith("bias"):
            z.mul_(0.02)
        else:
            z.mul_(0.05).add_(1.0)
        out[key] = z.to(dtype).cpu()
    return {k: out[k] for k in state}


def fill(state: dict, seed: int, name: str, dtype: torch.dtype = torch.float32) -> dict:
    """Deterministic values for every floating tensor of `state` (sorted key order), as CPU tensors of `dtype`."""
    if FAST_DEVICE:
        return fill_fast(state, seed, name, dtype)
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    out = {}
    for key in sorted(state):
        t = state[key]
        if not torch.is_floating_point(t):
            out[key] = t.detach().clone().cpu()
            continue
        shape = tuple(t.shape)
        z = rng.standard_normal(shape, dtype=np.float32) if shape else np.float32(rng.standard_normal())
        if len(shape) >= 2:
            v = z / np.float32(np.sqrt(np.prod(shape[1:])))
        elif key.endswith("bias"):
            v = z * np.float32(0.02)
        else:
            v = np.float32(1.0) + z * np.float32(0.05)
        out[key] = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)).to(dtype)
    return {k: out[k] for k in state}  # the module's own key order


def _read(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def _save_safetensors(state: dict, path: str) -> None:
    from safetensors.torch import save_file

    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, path, metadata={"format": "pt"})


def _torch_save(state: dict, path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save(state, path)


# ------------------------------------------------------------------------------------------------- models

def make_unet(config: dict, seed: int) -> dict:
    from sonic_core.sonic.unet import build_unet

    return fill(build_unet(config, device="meta" if FAST_DEVICE else "cpu").state_dict(), seed, "Sonic/unet.pth")


def make_vae(config: dict, seed: int) -> dict:
    from diffusers import AutoencoderKLTemporalDecoder

    with _build_ctx():
        vae = AutoencoderKLTemporalDecoder(**{k: v for k, v in config.items() if not k.startswith("_")})
    state = fill(vae.state_dict(), seed, "vae", torch.float16)
    # SGM's AutoencodingEngine (svd_xt.safetensors) has no quant_conv; the diffusers conversion holds the identity.
    c = state["quant_conv.weight"].shape[0]
    state["quant_conv.weight"] = torch.eye(c, dtype=torch.float16).reshape(c, c, 1, 1)
    state["quant_conv.bias"] = torch.zeros(c, dtype=torch.float16)
    return state


def make_clip(config: dict, seed: int) -> dict:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    with _build_ctx():
        model = CLIPVisionModelWithProjection(CLIPVisionConfig(**config))
    return fill(model.state_dict(), seed, "image_encoder", torch.float16)


def make_whisper(config: dict, seed: int) -> dict:
    from transformers import WhisperConfig, WhisperModel

    with _build_ctx():
        model = WhisperModel(WhisperConfig(**config))
    state = fill(model.state_dict(), seed, "whisper-tiny")
    return {"model." + k: v for k, v in state.items()}


def make_audio2token(seed: int) -> dict:
    from sonic_core.sonic.adapters import build_audio2token

    with _build_ctx():
        m = build_audio2token()
    return fill(m.state_dict(), seed, "Sonic/audio2token.pth")


def make_audio2bucket(seed: int) -> dict:
    from sonic_core.sonic.adapters import build_audio2bucket

    with _build_ctx():
        m = build_audio2bucket()
    return fill(m.state_dict(), seed, "Sonic/audio2bucket.pth")


def make_rife(seed: int) -> dict:
    from sonic_core.sonic.rife import IFNet

    with _build_ctx():
        net = IFNet()
    state = fill(net.state_dict(), seed, "RIFE/flownet.pkl")
    return {"module." + k: v for k, v in state.items()}


class FakeYoloFace(torch.nn.Module):
    """Stands in for yoloface_v5m.pt: same call signature and output layout, a fixed face near the centre."""

    def forward(self, img: torch.Tensor, grids: List[torch.Tensor]) -> torch.Tensor:
        h = float(img.shape[2])
        w = float(img.shape[3])
        n = 0
        for g in grids:
            n += 3 * g.shape[2] * g.shape[3]
        out = torch.zeros(1, max(n, 3), 16, dtype=torch.float32, device=img.device)
        rows = [
            # cx, cy, bw, bh (fractions of the input), obj, cls
            [0.50, 0.46, 0.34, 0.44, 0.92, 0.97],
            [0.51, 0.47, 0.33, 0.43, 0.70, 0.90],  # duplicate: conf 0.63, removed by NMS (IoU > 0.45)
            [0.20, 0.20, 0.10, 0.10, 0.30, 0.90],  # below the 0.5 threshold
        ]
        for i, r in enumerate(rows):
            cx, cy, bw, bh = r[0] * w, r[1] * h, r[2] * w, r[3] * h
            lm = [cx - 0.08 * w, cy - 0.06 * h, cx + 0.08 * w, cy - 0.06 * h, cx, cy + 0.02 * h,
                  cx - 0.06 * w, cy + 0.10 * h, cx + 0.06 * w, cy + 0.10 * h]
            vals = [cx, cy, bw, bh, r[4]] + lm + [r[5]]
            out[0, i] = torch.tensor(vals, dtype=torch.float32, device=img.device)
        return out


def write_yoloface(path: str) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    torch.jit.script(FakeYoloFace()).save(path)


# ------------------------------------------------------------------------------------------------- layouts

def build_all(config_dir: str, seed: int) -> dict:
    svd = os.path.join(config_dir, SVD)
    cfg = {
        "unet": _read(os.path.join(svd, "unet", "config.json")),
        "vae": _read(os.path.join(svd, "vae", "config.json")),
        "clip": _read(os.path.join(svd, "image_encoder", "config.json")),
        "whisper": _read(os.path.join(config_dir, "whisper-tiny", "config.json")),
    }
    unet = make_unet(cfg["unet"], seed)
    return {
        "unet": unet,
        "vae": make_vae(cfg["vae"], seed),
        "clip": make_clip(cfg["clip"], seed),
        "whisper": make_whisper(cfg["whisper"], seed),
        "audio2token": make_audio2token(seed),
        "audio2bucket": make_audio2bucket(seed),
        "rife": make_rife(seed),
    }


def _copy(src: str, dst: str) -> None:
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copyfile(src, dst)


def _write_sonic_files(models: dict, sonic_dir: str, rife_dir: str, yolo_path: str, whisper_dir: str,
                       config_dir: str) -> None:
    _torch_save(models["unet"], os.path.join(sonic_dir, "unet.pth"))
    _torch_save(models["audio2token"], os.path.join(sonic_dir, "audio2token.pth"))
    _torch_save(models["audio2bucket"], os.path.join(sonic_dir, "audio2bucket.pth"))
    _torch_save(models["rife"], os.path.join(rife_dir, "flownet.pkl"))
    write_yoloface(yolo_path)
    for f in ("config.json", "preprocessor_config.json"):
        _copy(os.path.join(config_dir, "whisper-tiny", f), os.path.join(whisper_dir, f))
    _save_safetensors(models["whisper"], os.path.join(whisper_dir, "model.safetensors"))


def write_official(models: dict, out: str, config_dir: str) -> None:
    _write_sonic_files(models, os.path.join(out, "Sonic"), os.path.join(out, "RIFE"),
                       os.path.join(out, "yoloface_v5m.pt"), os.path.join(out, "whisper-tiny"), config_dir)
    src, dst = os.path.join(config_dir, SVD), os.path.join(out, SVD)
    for rel in ("unet/config.json", "vae/config.json", "image_encoder/config.json", "scheduler/scheduler_config.json"):
        _copy(os.path.join(src, rel), os.path.join(dst, rel))
    _save_safetensors(models["vae"], os.path.join(dst, "vae", "diffusion_pytorch_model.fp16.safetensors"))
    _save_safetensors(models["clip"], os.path.join(dst, "image_encoder", "model.fp16.safetensors"))
    base = {k: v.to(torch.float16) for k, v in models["unet"].items() if ".processor." not in k}
    _save_safetensors(base, os.path.join(dst, "unet", "diffusion_pytorch_model.fp16.safetensors"))


def write_comfyui(models: dict, out: str, config_dir: str) -> None:
    from sonic_core.sonic.svd_single_file import to_single_file

    sonic = os.path.join(out, "models", "sonic")
    _write_sonic_files(models, sonic, os.path.join(sonic, "RIFE"), os.path.join(sonic, "yoloface_v5m.pt"),
                       os.path.join(sonic, "whisper-tiny"), config_dir)
    single = to_single_file(models["vae"], models["clip"])
    _save_safetensors(single, os.path.join(out, "models", "checkpoints", "svd_xt.safetensors"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config-dir", default=DEFAULT_CONFIG_DIR)
    ap.add_argument("--layout", choices=("official", "comfyui", "both"), default="official",
                    help="official: OUT_DIR is a checkpoints/ folder; comfyui: OUT_DIR/comfyui/models/...; both")
    ap.add_argument("--fast", action="store_true",
                    help="torch RNG on --device and meta-device construction (full-size folders in seconds)")
    ap.add_argument("--device", default=None, help="with --fast: where values are drawn (default cuda if available)")
    args = ap.parse_args(argv)
    t0 = time.time()
    global FAST_DEVICE
    FAST_DEVICE = (args.device or ("cuda" if torch.cuda.is_available() else "cpu")) if args.fast else None
    torch.manual_seed(args.seed)  # module construction draws from torch; saved values from numpy (--fast: torch)
    models = build_all(args.config_dir, args.seed)
    if args.layout in ("official", "both"):
        write_official(models, args.out_dir, args.config_dir)
    if args.layout in ("comfyui", "both"):
        write_comfyui(models, os.path.join(args.out_dir, "comfyui"), args.config_dir)
    mode = f", fast on {FAST_DEVICE}" if FAST_DEVICE else ""
    print(f"wrote {args.layout} layout to {args.out_dir} (seed {args.seed}{mode}) in {time.time() - t0:.1f} s",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
