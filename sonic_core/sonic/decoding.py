"""Sonic's last stages: VAE decode in chunks (torch.compile'd when asked), RIFE x2 and uint8 frames, streamed chunk
by chunk so that a long video never holds its frames at once."""
from __future__ import annotations

import numpy as np
import torch

from . import memory
from .compiling import vae_decoder_runner
from .pipeline import SonicParams, resolve_memory
from .sampler import VAE_SCALE


@torch.no_grad()
def decode(models, latents: torch.Tensor, compile: bool | str = False) -> torch.Tensor:
    """(n, 4, h, w) latents -> (n, 3, H, W) frames in [0, 1], float32 on the models' device (one VAE call;
    torch.compile'd when `compile`)."""
    x = (latents / VAE_SCALE).to(models.device, models.dtype)
    frames = vae_decoder_runner(compile)(models.vae, x)
    return (frames.float() * 0.5 + 0.5).clamp(0, 1)


@torch.no_grad()
def interpolate(models, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """RIFE middles between frames a[i] and b[i] ((n, 3, H, W) in [0, 1]), fp32 as officially."""
    return models.rife.middle(a.to(models.device), b.to(models.device)).float()


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """(n, 3, H, W) in [0, 1] -> uint8 (n, H, W, 3) on the CPU. x * 255 truncated, as the official writer's
    astype(uint8); done where the frames are, so only bytes cross to the CPU."""
    return (frames * 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu().numpy()


def iter_frames(models, latents: torch.Tensor, p: SonicParams):
    """Yield the output frames as uint8 (H, W, 3): f0, m01, f1, ..., f_{N-1} with RIFE (2N-1 frames), else
    f0..f_{N-1}. Decodes `decode_chunk` latent frames per VAE call, aligned as officially (the temporal decoder
    mixes frames within a call, so the chunking is part of the result); holds one chunk at a time."""
    use_rife = p.interpolate and models.rife is not None
    if p.plan is None:
        p = resolve_memory(models, (latents.shape[-1] * 8, latents.shape[-2] * 8), latents.shape[0], p)
    chunk_size = p.plan.decode_chunk
    memory.place(models, "decode", p.plan.placement)
    prev = None  # last frame of the previous chunk, for the middle that bridges two chunks
    for s in range(0, latents.shape[0], chunk_size):
        part = latents[s:s + chunk_size]
        # a last, shorter chunk runs eagerly: compiling it would mean one more compilation per video length
        chunk = decode(models, part, p.compile if len(part) == chunk_size else False)
        out = chunk
        if use_rife:
            seq = chunk if prev is None else torch.cat([prev, chunk])
            if len(seq) > 1:
                mids = interpolate(models, seq[:-1], seq[1:])
                # interleave: seq[0], mid0, seq[1], mid1, ..., seq[-1]; seq[0] was yielded with the last chunk
                both = torch.stack([seq[:-1], mids], dim=1).flatten(0, 1)
                out = torch.cat([both, seq[-1:]])[0 if prev is None else 1:]
        yield from to_uint8(out)
        prev = chunk[-1:]
