"""Conversions between ComfyUI's tensor types and sonic_core's numpy types, and ComfyUI progress/interrupt glue."""
from __future__ import annotations

import hashlib

import numpy as np
import torch
from comfy_api.latest import io

from ..sonic_core import Audio

# The socket types SonicFlow's nodes pass between them (the names saved workflows use).
FRAMES = io.Custom("SONICFLOW_FRAMES")  # a frame sequence, streamed (sonic_core FrameSequence)
PREDATA = io.Custom("SONICFLOW_PREDATA")  # what PreData decided (sonic_core.PreData)


def image_to_numpy(image: torch.Tensor, index: int = 0) -> np.ndarray:
    """IMAGE [B,H,W,C] float 0..1 -> RGB uint8 (H,W,3) of one batch item."""
    t = image[index] if image.ndim == 4 else image
    t = t[..., :3] if t.shape[-1] >= 3 else t[..., :1].expand(*t.shape[:-1], 3)
    return (t.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def numpy_to_image(frames: np.ndarray) -> torch.Tensor:
    """uint8 (N,H,W,3) or (H,W,3) -> IMAGE float32 [N,H,W,3]."""
    if frames.ndim == 3:
        frames = frames[None]
    return torch.from_numpy(np.ascontiguousarray(frames)).float().div_(255.0)


def audio_from_comfy(audio: dict) -> Audio:
    wave = audio["waveform"]
    wave = wave[0] if wave.ndim == 3 else wave
    return Audio(np.ascontiguousarray(wave.detach().float().cpu().numpy()), int(audio["sample_rate"]))


def audio_to_comfy(audio: Audio) -> dict:
    return {"waveform": torch.from_numpy(audio.samples).unsqueeze(0), "sample_rate": audio.sample_rate}


def digest(array: np.ndarray) -> str:
    h = hashlib.sha256(str((array.shape, str(array.dtype))).encode())
    h.update(np.ascontiguousarray(array).data)
    return h.hexdigest()


class Progress:
    """A ComfyUI progress bar that is also an interrupt checkpoint on every call (cheap), redrawn about 100 times."""

    def __init__(self, total: int):
        import comfy.utils

        self.bar, self.total, self.step = comfy.utils.ProgressBar(total), total, max(1, total // 100)

    def __call__(self, done: int, total: int | None = None) -> None:
        import comfy.model_management

        comfy.model_management.throw_exception_if_processing_interrupted()
        if total and total != self.total:  # a stage that learns its length late (Sonic's denoising windows)
            self.total, self.step = total, max(1, total // 100)
        if done % self.step == 0 or done == self.total:
            self.bar.update_absolute(done, self.total)
