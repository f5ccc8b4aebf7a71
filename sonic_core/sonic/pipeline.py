"""Sonic's generation, as the official pipeline computes it (sonic-reference.md 1.2-1.11), reorganised to be lean:

* the image latents and the 'unconditional' audio tokens are the same for every frame: they are kept once and
  broadcast per window instead of being materialised for the whole video;
* the three guidance branches run as one batch (3 x 25 frames) per window, as officially;
* the temporal audio keys/values are computed once per window, not per spatial position (see unet.py);
* denoised latents and the audio tokens stay on the CPU between windows; decoding, RIFE and the hand-over to the
  encoder stream in chunks, so a 10-minute video never holds its frames at once (`SonicFrames`);
* GPU memory follows a plan (memory.py): every model on the GPU, or each stage's models moved there only for that
  stage (`memory_mode` 'offload'), and a VAE decode chunk that fits; the UNet forward and the VAE decoder can be
  torch.compile'd.
Numerically it follows the official order of operations and random draws, so the same weights, inputs and seed
give the official frames.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, replace

import numpy as np
import torch
from PIL import Image

from ..predata import working_size
from . import memory
from .audio import FRAME_LIMIT, SAMPLES_PER_FRAME, STEP, audio_conditioning, audio_features
from .unet import unet_forward
from .yoloface import official_face_index

GEN_FPS = 12.5            # one generated frame per 80 ms of audio; RIFE doubles it to 25
WINDOW = 25               # frames_per_batch
SHIFT = 7                 # shift_offset: the window origin moves 7 frames per denoising step
FACE_AREA = 1.1           # the face mask is the detector's box grown by 10 %
VAE_SCALE = 0.18215
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
    decode_chunk: int = 8          # frames per VAE decode call (official 8; the planner may lower it)
    memory_mode: str = "auto"      # gpu | offload | auto (memory.plan_memory decides)
    vram_budget_gb: float = 0.0    # GiB SonicFlow may use on the GPU; 0 = what is free
    compile: bool | str = False    # torch.compile UNet + VAE decoder: True, "default", "max-autotune-no-cudagraphs"


COMPILE_MODES = ("default", "max-autotune-no-cudagraphs")
_compiled: dict = {}


def _maybe_compiled(fn, compile: bool | str):
    """`fn`, or its torch.compile'd version (compiled once per function and mode, for fixed shapes: every window
    of a run has the same shapes, and so has every full decode chunk)."""
    if not compile:
        return fn
    mode = "default" if compile is True else compile
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile must be False, True or one of {', '.join(COMPILE_MODES)}, not {compile!r}")
    if (fn, mode) not in _compiled:
        _compiled[fn, mode] = torch.compile(fn, mode=None if mode == "default" else mode, dynamic=False)
    return _compiled[fn, mode]


def unet_runner(compile: bool | str):
    """The UNet forward to call: `unet_forward`, or its torch.compile'd version."""
    return _maybe_compiled(unet_forward, compile)


def _vae_decode(vae, x: torch.Tensor) -> torch.Tensor:
    return vae.decode(x, num_frames=x.shape[0]).sample


def vae_decoder_runner(compile: bool | str):
    """The VAE decode to call, `(vae, latents) -> frames in [-1, 1]`: eager, or its torch.compile'd version."""
    return _maybe_compiled(_vae_decode, compile)


def release_compiled() -> None:
    """Drop the compiled forwards (with the models they were traced for)."""
    _compiled.clear()


def resolve_memory(models, size_wh: tuple[int, int], n_frames: int,
                   p: SonicParams) -> tuple[SonicParams, memory.MemoryPlan]:
    """The plan for this run, and `p` with its placement and decode chunk made concrete."""
    budget = memory.device_budget(models.device, p.vram_budget_gb, models)
    plan = memory.plan_memory(memory.model_bytes(models), size_wh, torch.finfo(models.dtype).bits // 8, budget,
                              n_frames, p.memory_mode, p.interpolate and models.rife is not None, p.decode_chunk)
    return replace(p, memory_mode=plan.mode, decode_chunk=plan.decode_chunk), plan


def seed_everything(seed: int) -> None:
    """As the official code does before generating: every global RNG."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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


# ----------------------------------------------------------------------------------------------- sampling

def window_indices(n: int, step: int) -> list[list[int]]:
    """Frame indices of each 25-frame window at denoising step `step`: origin shifted by 7*step, circular."""
    shift = SHIFT * step
    return [[(start - shift + j) % n for j in range(WINDOW)] for start in range(0, n, WINDOW)]


def generated_frames(n_samples: int) -> int:
    """Frames the sampler makes from this many 16-kHz samples (12.5 fps)."""
    return min(FRAME_LIMIT, n_samples // SAMPLES_PER_FRAME) // STEP


def accumulate(acc: torch.Tensor, count: torch.Tensor, idx: list[int], window: torch.Tensor) -> None:
    """Add a window's latents into the running sums frame by frame. A window of a video shorter than 25 frames
    holds some frames twice; each copy counts, as in the official per-frame loop (`acc[:, idx] += ...` would keep
    only one of the duplicate writes, and not always the same one)."""
    index = torch.tensor(idx)
    acc.index_add_(1, index, window)
    count.index_add_(1, index, torch.ones((1, len(idx), 1, 1, 1), dtype=count.dtype))


def sigmas_for(scheduler, steps: int) -> torch.Tensor:
    scheduler.set_timesteps(steps, device="cpu")
    return scheduler.sigmas.to(torch.float32)


@torch.no_grad()
def sample_latents(models, image: ImageInputs, samples_16k: np.ndarray, p: SonicParams, progress=None,
                   trace=None) -> torch.Tensor:
    """Denoised latents (N, 4, H/8, W/8), float32 on the CPU. trace(name, tensor), if given, receives the
    intermediates under the golden data's names (tests/data/sonic_golden), for parity tests."""
    # every window has the same shapes: let cuDNN time its convolutions once (not in decode, whose last chunk
    # has a shape of its own and would be timed again on every video)
    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = models.device.type == "cuda"
    try:
        return _sample_latents(models, image, samples_16k, p, progress, trace)
    finally:
        torch.backends.cudnn.benchmark = benchmark


def _sample_latents(models, image: ImageInputs, samples_16k: np.ndarray, p: SonicParams, progress,
                    trace) -> torch.Tensor:
    dev, dt = models.device, models.dtype
    if p.memory_mode == "auto":
        p, _ = resolve_memory(models, image.size, generated_frames(len(samples_16k)), p)
    memory.place(models, "conditioning", p.memory_mode)
    seed_everything(p.seed)
    feats = audio_features(samples_16k, models.feature_extractor, models.whisper)
    n = feats.n_frames
    if n < 1:
        raise ValueError("audio shorter than one generated frame (80 ms)")
    image_embeds = models.image_encoder(image.clip.to(dev, dt)).image_embeds          # (1, 1024)
    cond = audio_conditioning(feats, models.audio2token, models.audio2bucket, image_embeds.float())
    del feats
    buckets = cond.motion_buckets.float().cpu()[..., 0] * p.dynamic_scale            # (N, 2)
    buckets[:, 0] *= p.motion_scale
    cond_tok = cond.cond.to("cpu", dt)      # sliced per window: the device holds 25 frames' tokens, not N
    uncond_tok = cond.uncond[:1].to(dev, dt)
    del cond

    ref = image.ref.to(dev, dt)
    # noise_aug_strength is 0, but the official code still draws this noise: keep the RNG stream identical.
    ref_aug = ref + 0.0 * torch.randn(ref.shape, dtype=ref.dtype).to(dev)
    image_lat = models.vae.encode(ref_aug).latent_dist.mode()                          # (1, 4, h, w), unscaled
    ref_lat = models.vae.encode(ref).latent_dist.mean * VAE_SCALE
    h, w = image_lat.shape[-2:]
    noise = torch.randn((1, n, 4, h, w), dtype=torch.float32)
    sigmas = sigmas_for(models.scheduler, p.inference_steps)
    latents = ref_lat.float().cpu()[:, None] + sigmas[0] * noise                       # (1, N, 4, h, w)
    trace = trace or (lambda name, x: None)
    trace("initial_latents", latents)

    image_lat_cfg = torch.cat([torch.zeros_like(image_lat), image_lat, image_lat])[:, None]   # (3, 1, 4, h, w)
    clip_cfg = torch.cat([torch.zeros_like(image_embeds), image_embeds, image_embeds])[:, None]  # (3, 1, 1024)
    mask = image.mask.to(dev, dt)
    memory.place(models, "sampling", p.memory_mode)
    forward = unet_runner(p.compile)
    total = p.inference_steps * len(window_indices(n, 0))
    done = 0
    for i in range(p.inference_steps):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        t = torch.tensor([0.25 * np.log(sigma)], dtype=torch.float32, device=dev)
        acc = torch.zeros_like(latents)
        count = torch.zeros((1, n, 1, 1, 1))
        trace(f"latents_all_before_step_{i}", latents)
        for j, idx in enumerate(window_indices(n, i)):
            x = latents[:, idx]                                                         # (1, 25, 4, h, w) fp32
            x_in = (x / (sigma ** 2 + 1) ** 0.5).to(dev, dt).expand(3, -1, -1, -1, -1)
            sample = torch.cat([x_in, image_lat_cfg.expand(-1, WINDOW, -1, -1, -1)], dim=2)
            audio = torch.stack([uncond_tok.expand(WINDOW, -1, -1), uncond_tok.expand(WINDOW, -1, -1),
                                 cond_tok[idx].to(dev)]).flatten(0, 1)                 # (75, 32, 1024)
            clip = clip_cfg.expand(-1, WINDOW, -1).reshape(3 * WINDOW, 1, -1).to(dt)
            m = buckets[idx].mean(dim=0)
            # contiguous (not an expand): inputs of one layout keep one torch.compile graph
            ids = torch.tensor([[GEN_FPS, float(m[0]), float(m[1])]] * 3, dtype=dt, device=dev)
            v = forward(models.unet, sample, t, clip, audio, ids, mask, p.ip_audio_scale).float().cpu()
            u, a, c = v.chunk(3)
            v = u + p.image_guidance * (a - u) + p.audio_guidance * (c - a)
            x0 = -sigma / (sigma ** 2 + 1) ** 0.5 * v + x / (sigma ** 2 + 1)             # v-prediction
            stepped = x + (x - x0) / sigma * (sigma_next - sigma)                         # Euler step
            trace(f"guided_eps_s{i}_w{j}", v)
            trace(f"window_latents_after_step_s{i}_w{j}", stepped)
            accumulate(acc, count, idx, stepped)
            done += 1
            if progress:
                progress(done, total)
        latents = acc / count
    return latents[0]


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
    if p.memory_mode == "auto":
        p, _ = resolve_memory(models, (latents.shape[-1] * 8, latents.shape[-2] * 8), latents.shape[0], p)
    memory.place(models, "decode", p.memory_mode)
    prev = None  # last frame of the previous chunk, for the middle that bridges two chunks
    for s in range(0, latents.shape[0], p.decode_chunk):
        part = latents[s:s + p.decode_chunk]
        # a last, shorter chunk runs eagerly: compiling it would mean one more compilation per video length
        chunk = decode(models, part, p.compile if len(part) == p.decode_chunk else False)
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
