"""The `sonic` engine: PreData -> the Sonic model (sonic_core.sonic) -> a streamed frame sequence.

Models are loaded once per (weights, device, dtype) and kept while the frames made with them are; the frames are
decoded chunk by chunk as the encoder asks for them. Unless memory_mode is 'gpu', models are loaded on the CPU and
moved to the GPU by the memory plan (all at once, or per stage), or by a host (inside ComfyUI: its model manager,
nodes/models.py). With
`compile` on, what torch compiled is saved beside the UNet's file after each run and loaded before the next one,
so a new process (a restarted worker) does not compile again.
"""
from __future__ import annotations

import logging
import os
import threading
import weakref
from typing import Iterator

import cv2
import numpy as np

from ..frames import FrameSequence
from ..model_files.manifest import licences_line
from ..options import GenerateOptions
from ..predata import PreData, frame_count, square_crop

# Weak: the models live as long as something uses them (the frames made with them, ComfyUI's output cache that holds
# those), so when ComfyUI drops its caches (/free) the memory goes back without SonicFlow being told.
_cache: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_lock = threading.Lock()
WEIGHTS_LICENCE = "SonicFlow: loaded the Sonic weights; their licences are not SonicFlow's. " + licences_line()


def _torch_setup(device: str, dtype: str):
    import torch

    dev = torch.device(device if device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    if dtype == "auto":
        dtype = "fp16" if dev.type == "cuda" else "fp32"
    return dev, {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]


def load_models(roots: list[str], device: str = "auto", dtype: str = "auto", interpolate: bool = True,
                memory_mode: str = "auto", host=None):
    """The Sonic models, loaded once per (weights, device, dtype) and kept while anything uses them (the frames
    made with them hold them). `host`, when given, places the modules (`host.move(module, device)`): they are
    loaded on the CPU and the host brings each to the device when a stage needs it (inside ComfyUI: its model
    manager, which also unloads them when it needs the memory)."""
    from ..sonic.loading import load_sonic

    dev, dt = _torch_setup(device, dtype)
    key = (tuple(roots), str(dev), str(dt), interpolate)
    with _lock:
        models = _cache.get(key)
        if models is None:
            _cache.clear()  # one set of Sonic weights at a time: they are several GB
            if host is None and (memory_mode == "gpu" or dev.type == "cpu"):
                models = load_sonic(roots, device=dev, dtype=dt, load_rife_model=interpolate)
            else:  # a small GPU may not hold every model at once, or ComfyUI places them: the plan moves them
                models = load_sonic(roots, device="cpu", dtype=dt, load_rife_model=interpolate)
                models.device = dev
                if models.face_detector is not None:  # small (85 MB): it stays on the device
                    models.face_detector.model.to(dev)
                    models.face_detector.device = dev
            logging.getLogger("sonicflow").info(WEIGHTS_LICENCE)
            weakref.finalize(models, logging.getLogger("sonicflow").info, "SonicFlow: released the Sonic models")
            _cache[key] = models
        models.move = host.move if host is not None else None
        return models


class SonicFrames(FrameSequence):
    """The decoded video, streamed from denoised latents; `n_frames` is the audio's length at 25 fps (the official
    2N-1 frames, the last one held for the few frames the official code drops)."""

    def __init__(self, models, latents, params, n_frames: int, size: tuple[int, int], paste, info: dict):
        super().__init__(n_frames, 25.0 if params.interpolate else 12.5, size[0], size[1], "sonic", info)
        self._models, self._latents, self._params, self._paste = models, latents, params, paste

    def __iter__(self) -> Iterator[np.ndarray]:
        from ..sonic.decoding import iter_frames

        last, i = None, 0
        for last in iter_frames(self._models, self._latents, self._params):
            if i == self.n_frames:
                break
            yield self._paste(last)
            i += 1
        _save_compiled(self._models, self._params)
        for _ in range(i, self.n_frames):
            yield self._paste(last)


def _compile_cache(models) -> str:
    from ..sonic.compiling import compile_cache_path

    return compile_cache_path(os.path.dirname(os.path.abspath(models.paths["unet"])), models.device)


def _save_compiled(models, params) -> None:
    """After compiled work: keep what was compiled for the next process (no-op when nothing new was compiled)."""
    from ..sonic.compiling import save_compile_cache

    if params.compile:
        path = _compile_cache(models)
        if save_compile_cache(path):
            logging.getLogger("sonicflow").info("SonicFlow: compiled kernels saved to %s", path)


def _paste_back(image: np.ndarray, crop: tuple[int, int, int, int]):
    """Put the animated crop back into the full picture, feathered over the crop's outer 6 %."""
    x0, y0, x1, y1 = crop
    w, h = x1 - x0, y1 - y0
    edge = max(2, int(0.06 * min(w, h)))
    ramp = np.minimum(np.arange(w)[None, :], np.arange(w)[::-1][None, :]).clip(0, edge) / edge
    ramp = np.minimum(ramp, (np.minimum(np.arange(h), np.arange(h)[::-1]).clip(0, edge) / edge)[:, None])
    alpha = ramp[..., None].astype(np.float32)
    base = image[y0:y1, x0:x1].astype(np.float32)

    def paste(frame: np.ndarray) -> np.ndarray:
        out = image.copy()
        face = cv2.resize(frame, (w, h), interpolation=cv2.INTER_LANCZOS4).astype(np.float32)
        out[y0:y1, x0:x1] = (face * alpha + base * (1 - alpha)).round().clip(0, 255).astype(np.uint8)
        return out

    return paste


def sampler_params(options: GenerateOptions):
    """The sampler's parameters for these options."""
    from ..sonic.pipeline import SonicParams

    return SonicParams(inference_steps=options.inference_steps, dynamic_scale=options.dynamic_scale,
                       motion_scale=options.motion_scale, seed=options.seed, ip_audio_scale=options.ip_audio_scale,
                       interpolate=options.interpolate, memory_mode=options.memory_mode,
                       vram_budget_gb=options.vram_budget_gb, compile=options.compiled, noise=options.noise)


def generate_sonic(pre: PreData, options: GenerateOptions, progress=None, host=None) -> SonicFrames:
    """options.crop_face=False animates the whole picture, as the official demo.py does without --crop."""
    from ..sonic.compiling import load_compile_cache
    from ..sonic.pipeline import detect_official, image_inputs, resolve_memory
    from ..sonic.sampler import generated_frames, sample_latents

    params = sampler_params(options)
    roots = list(options.weight_roots)
    models = load_models(roots, options.device, options.dtype, params.interpolate, params.memory_mode, host)
    h, w = pre.image.shape[:2]
    f = pre.face
    box = detect_official(models, pre.image)
    if box is None:  # yoloface found nothing: the weight-free finder's face stands in (the official code crashes)
        box = (f.x0, f.y0, f.width, f.height)
    box_xyxy = (box[0], box[1], box[0] + box[2], box[1] + box[3])
    crop = square_crop(box_xyxy, w, h, pre.expand_ratio) if options.crop_face else (0, 0, w, h)
    x0, y0, x1, y1 = crop
    cropped = np.ascontiguousarray(pre.image[y0:y1, x0:x1])
    inner = detect_official(models, cropped)
    if inner is None:
        inner = (box[0] - x0, box[1] - y0, box[2], box[3])
    inputs = image_inputs(cropped, inner, pre.min_resolution)
    samples = pre.audio.mono_at(16000)
    # planned once, so that sampling and decoding follow the same plan
    params = resolve_memory(models, inputs.size, generated_frames(len(samples)), params)
    if params.compile:
        load_compile_cache(_compile_cache(models))
    latents = sample_latents(models, inputs, samples, params, progress)
    _save_compiled(models, params)
    plan = params.plan
    info = {"engine": "sonic", "params": {**options.common_params(), **options.sonic_params()},
            "dtype": str(models.dtype), "device": str(models.device), "crop": list(crop), "memory": plan.info(),
            "face_found": pre.face_found, "note": "sonic engine" + (f" ({plan.note})" if plan.note else "")}
    n = frame_count(pre.duration, 25.0 if params.interpolate else 12.5)
    if options.paste_back:
        return SonicFrames(models, latents, params, n, (w, h), _paste_back(pre.image, crop), info)
    return SonicFrames(models, latents, params, n, inputs.size, lambda fr: fr, info)
