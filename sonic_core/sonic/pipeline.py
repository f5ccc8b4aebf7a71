"""The Sonic engine's pipeline, as the official one computes it, in stages:

    pipeline   SonicParams (a generation's parameters, with its memory plan); the image inputs (face box and mask,
               the working-size reference image, the CLIP input)
    audio      whisper features and the audio adapters' tokens and motion buckets, streamed for any length
    sampler    the windowed Euler sampler with the three-way guidance -> denoised latents
    decoding   VAE decode in chunks, RIFE x2, uint8 frames, streamed chunk by chunk
    compiling  torch.compile of the UNet and the VAE decoder, with a compilation cache beside the models
    memory     the GPU memory plan: where the models live, how the UNet batches its guidance branches, where the
               per-frame latents and tokens live, how many frames one VAE decode takes

Numerically each stage follows the official order of operations and random draws, so the same weights, inputs and
seed give the official frames (tests/sonic/test_golden.py).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from PIL import Image

from ..predata import working_size
from . import memory
from .yoloface import official_face_index

FACE_AREA = 1.1           # the face mask is the detector's box grown by 10 %
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class SonicParams:
    inference_steps: int = 25
    dynamic_scale: float = 1.0
    motion_scale: float = 1.0      # SonicFlow's: scales the head-motion bucket (channel 0) on top of dynamic_scale
    seed: int = 0
    ip_audio_scale: float = 1.0
    image_guidance: float = 2.0
    audio_guidance: float = 7.5
    interpolate: bool = True       # RIFE x2 (12.5 -> 25 fps)
    decode_chunk: int = memory.OFFICIAL_DECODE_CHUNK   # most frames per VAE decode call; the plan may take fewer
    memory_mode: str = "auto"      # auto | gpu | offload | lowvram (memory.plan_memory)
    vram_budget_gb: float = 0.0    # GiB SonicFlow may use on the GPU; 0 = what is free
    compile: bool | str = False    # torch.compile UNet + VAE decoder: True, "default", "max-autotune-no-cudagraphs"
    noise: str = "device"          # where the starting noise is drawn (sampler.draw_noise)
    plan: memory.MemoryPlan | None = None   # set by resolve_memory; None: the sampler plans for itself


def resolve_memory(models, size_wh: tuple[int, int], n_frames: int, p: SonicParams) -> SonicParams:
    """`p` with the memory plan for this run (`p.plan`): sampling and decoding then follow the same plan."""
    budget = memory.device_budget(models.device, p.vram_budget_gb, models)
    plan = memory.plan_memory(memory.model_bytes(models), size_wh, torch.finfo(models.dtype).bits // 8, budget,
                              n_frames, p.memory_mode, p.interpolate and models.rife is not None, p.decode_chunk,
                              device_noise=p.noise == "device")
    return replace(p, plan=plan)


# ------------------------------------------------------------------------------------------------ image side

def face_mask(shape_hw: tuple[int, int], box_xywh) -> np.ndarray:
    """uint8 (H, W) mask: the face box grown by FACE_AREA around its centre, clamped (official rule). The box
    stays float until the final int(): centre and half-sizes are float floor divisions, as officially."""
    h_img, w_img = shape_hw
    x1, y1, w, h = (float(v) for v in box_xywh)
    x2, y2 = x1 + w, y1 + h
    ww, hh = (x2 - x1) * FACE_AREA, (y2 - y1) * FACE_AREA
    cx, cy = (x2 + x1) // 2, (y2 + y1) // 2
    top, bottom = max(cy - hh // 2, 0), min(cy + hh // 2, h_img)
    left, right = max(cx - ww // 2, 0), min(cx + ww // 2, w_img)
    mask = np.zeros((h_img, w_img), np.uint8)
    mask[int(top):int(bottom), int(left):int(right)] = 255
    return mask


@dataclass
class ImageInputs:
    ref: torch.Tensor        # (1, 3, H, W) in [-1, 1]
    mask: torch.Tensor       # (1, 1, H, W) in [0, 1]
    clip: torch.Tensor       # (1, 3, 224, 224), CLIP-normalised
    size: tuple[int, int]    # (W, H)


def image_inputs(rgb: np.ndarray, face_xywh, min_resolution: int) -> ImageInputs:
    """The official image_audio_to_tensor: LANCZOS resize of image and mask to the working size; the CLIP input
    is that resized image resized again to 224x224 (aspect not kept), normalised as CLIPImageProcessor's
    defaults do."""
    h, w = rgb.shape[:2]
    size = working_size(w, h, min_resolution)
    img, mask = Image.fromarray(rgb), Image.fromarray(face_mask((h, w), face_xywh)).convert("RGB")
    if size != (w, h):
        img, mask = img.resize(size, Image.LANCZOS), mask.resize(size, Image.LANCZOS)
    ref = torch.from_numpy(np.asarray(img, np.float32) / 255.0).permute(2, 0, 1)[None] * 2 - 1
    m = torch.from_numpy(np.asarray(mask, np.float32)[..., 0] / 255.0)[None, None]
    clip = np.asarray(img.resize((224, 224), Image.LANCZOS), np.float32) / 255.0  # from the resized image
    clip = (clip - np.array(CLIP_MEAN, np.float32)) / np.array(CLIP_STD, np.float32)
    return ImageInputs(ref, m, torch.from_numpy(clip).permute(2, 0, 1)[None].contiguous(), size)


def detect_official(models, rgb: np.ndarray):
    """The official face choice with yoloface, as [x, y, w, h], or None."""
    if models.face_detector is None:
        return None
    boxes, _, _ = models.face_detector.detect(rgb)
    if len(boxes) == 0:
        return None
    return boxes[official_face_index(boxes)]
