"""One Sonic UNet window call for the benchmarks (bench/sonic_gpu.py, bench/sonic_kernels.py): its inputs as the
pipeline makes them, and a timer for any call on a GPU or the CPU."""
from __future__ import annotations

import time

import numpy as np
import torch

from sonic_core.sonic.sampler import GEN_FPS, WINDOW


def window_inputs(unet, size_wh: tuple[int, int], device, dtype, seed: int = 0) -> tuple:
    """(unet, sample, t, clip, audio, added_time_ids, face_mask, ip_scale) for `unet_forward(*inputs)`: 3 guidance
    branches x 25 frames at size_wh, random but not zero, contiguous as in the pipeline (one torch.compile graph)."""
    w, h = size_wh
    g = torch.Generator(device="cpu").manual_seed(seed)
    in_ch = unet.config.get("in_channels", 8)
    sample = torch.randn(3, WINDOW, in_ch, h // 8, w // 8, generator=g).to(device, dtype)
    clip = torch.randn(3 * WINDOW, 1, 1024, generator=g).to(device, dtype)
    audio = torch.randn(3 * WINDOW, 32, 1024, generator=g).to(device, dtype)
    mask = torch.zeros(1, 1, h, w, dtype=dtype, device=device)
    mask[..., h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 1
    ids = torch.tensor([[GEN_FPS, 30.0, 30.0]] * 3, dtype=dtype, device=device)
    t = torch.tensor([1.0], dtype=torch.float32, device=device)
    return unet, sample, t, clip, audio, ids, mask, 1.0


def time_calls(fn, cuda: bool, calls: int = 5) -> dict:
    """The first call of `fn()` (compilation included), then the median of `calls` more, timed with CUDA events on
    a GPU; and the first call's output as float32, to compare variants."""
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    sync()
    t = time.perf_counter()
    with torch.no_grad():
        out = fn().float()
    sync()
    first = time.perf_counter() - t
    times = []
    for _ in range(calls):
        if cuda:
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
        t = time.perf_counter()
        with torch.no_grad():
            fn()
        if cuda:
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b) / 1e3)
        else:
            times.append(time.perf_counter() - t)
    return {"first_call_s": first, "median_s": float(np.median(times)), "all_s": times, "output": out}
