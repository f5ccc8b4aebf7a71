"""Sonic's sampler: Euler / Karras / v-prediction over 25-frame windows whose origin moves 7 frames per denoising
step, with the three-way guidance, in the official order of operations and random draws, for any length:

* the image latents and the 'unconditional' audio tokens are the same for every frame: kept once and broadcast
  per window instead of being materialised for the whole video;
* the three guidance branches run as one batch of 3 x 25 frames (as officially), or one after the other when the
  memory plan says so (mode 'lowvram': a third of the UNet's activations);
* guidance and the Euler step run on the device; the per-frame stores (latents in fp32, audio tokens) stay there
  too when the plan lets them, else on the CPU, so the device holds one window whatever the length;
* the latents are updated in place: a frame held by one window of a step takes that window's result, which is
  the official (0 + x) / 1; only the frames several windows hold (the wrap-around, or every frame of a video
  shorter than a window) are summed in window order and averaged, so one copy of the latents suffices.
"""
from __future__ import annotations

import random
from collections import Counter

import numpy as np
import torch

from . import memory
from .audio_features import OFFICIAL_MAX_FRAMES, SAMPLES_PER_FRAME, STEP, audio_conditioning, audio_features
from .compiling import unet_runner
from .pipeline import ImageInputs, SonicParams, resolve_memory

GEN_FPS = 12.5            # one generated frame per 80 ms of audio; RIFE doubles it to 25
WINDOW = memory.WINDOW_FRAMES  # frames_per_batch
SHIFT = 7                 # shift_offset: the window origin moves 7 frames per denoising step
VAE_SCALE = 0.18215


def generated_frames(n_samples: int) -> int:
    """Frames the sampler makes from this many 16-kHz samples (12.5 fps)."""
    return n_samples // SAMPLES_PER_FRAME // STEP


def window_indices(n: int, step: int) -> list[list[int]]:
    """Frame indices of each 25-frame window at denoising step `step`: origin shifted by 7*step, circular."""
    shift = SHIFT * step
    return [[(start - shift + j) % n for j in range(WINDOW)] for start in range(0, n, WINDOW)]


def accumulate(acc: torch.Tensor, slots: list[int], window: torch.Tensor) -> None:
    """acc[:, slots[j]] += window[:, j] for every j, in order of j, on any device. A slot that occurs twice (a
    video shorter than 25 frames) gets both adds, in that order, as the official per-frame loop does: the adds go
    in rounds of distinct slots (`acc[:, idx] += ...` with a repeated index keeps one write only, and CUDA's
    index_add_ adds repeats in no fixed order)."""
    seen: Counter = Counter()
    rounds: list[tuple[list[int], list[int]]] = []
    for j, s in enumerate(slots):
        r = seen[s]
        seen[s] += 1
        if r == len(rounds):
            rounds.append(([], []))
        rounds[r][0].append(j)
        rounds[r][1].append(s)
    for pos, dst in rounds:
        dst_t = torch.tensor(dst, device=acc.device)
        acc[:, dst_t] += window[:, torch.tensor(pos, device=window.device)]


def sigmas_for(scheduler, steps: int) -> torch.Tensor:
    scheduler.set_timesteps(steps, device="cpu")
    return scheduler.sigmas.to(torch.float32)


def seed_everything(seed: int) -> None:
    """As the official code does before generating: every global RNG (torch.manual_seed seeds every device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def draw_noise(ref_shape, n: int, latent_chw, device, dtype, source: str, home) -> tuple[torch.Tensor, torch.Tensor]:
    """The official two draws, in order: the noise_aug noise (its strength is 0, but the draw moves the RNG) and
    the latent noise (1, n, c, h, w), returned in float32 on `home`. source 'device': torch's generator of
    `device`, in `dtype`, as the official randn_tensor(generator=None) draws them (on a GPU the values depend on
    the GPU model); 'cpu': the CPU generator, the latent noise in float32 (the same on every machine). Device
    noise for more frames than the official code animates (no official counterpart) is drawn in pieces of that
    length, so the device never holds more than one piece."""
    if source == "cpu":
        return torch.randn(ref_shape, dtype=dtype), torch.randn((1, n, *latent_chw), dtype=torch.float32).to(home)
    if source != "device":
        raise ValueError(f"noise must be 'device' or 'cpu', not {source!r}")
    ref_noise = torch.randn(ref_shape, dtype=dtype, device=device)
    latent = torch.empty((1, n, *latent_chw), dtype=torch.float32, device=home)
    for s in range(0, n, OFFICIAL_MAX_FRAMES):
        f = min(OFFICIAL_MAX_FRAMES, n - s)
        latent[:, s:s + f] = torch.randn((1, f, *latent_chw), dtype=dtype, device=device).to(home, torch.float32)
    return ref_noise, latent


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
        return _sample_latents(models, image, samples_16k, p, progress, trace or (lambda name, x: None))
    finally:
        torch.backends.cudnn.benchmark = benchmark


def _sample_latents(models, image: ImageInputs, samples_16k: np.ndarray, p: SonicParams, progress,
                    trace) -> torch.Tensor:
    dev, dt = models.device, models.dtype
    if p.plan is None:
        p = resolve_memory(models, image.size, generated_frames(len(samples_16k)), p)
    plan = p.plan
    home = dev if plan.stores_on_device else torch.device("cpu")
    memory.place(models, "conditioning", plan.placement)
    seed_everything(p.seed)
    feats = audio_features(samples_16k, models.feature_extractor, models.whisper)
    n = feats.n_frames
    if n < 1:
        raise ValueError("audio shorter than one generated frame (80 ms)")
    image_embeds = models.image_encoder(image.clip.to(dev, dt)).image_embeds          # (1, 1024)
    cond = audio_conditioning(feats, models.audio2token, models.audio2bucket, image_embeds.float(), device=home,
                              dtype=dt)
    del feats
    buckets = cond.motion_buckets[..., 0] * p.dynamic_scale                          # (N, 2), CPU
    buckets[:, 0] *= p.motion_scale
    cond_tok, uncond_tok = cond.cond, cond.uncond.to(dev)
    del cond

    ref = image.ref.to(dev, dt)
    h, w = ref.shape[-2] // 8, ref.shape[-1] // 8
    ref_noise, latents = draw_noise(ref.shape, n, (memory.LATENT_CHANNELS, h, w), dev, dt, p.noise, home)
    # noise_aug_strength is 0: the conditioning image is unchanged, but the official code draws its noise anyway
    image_lat = models.vae.encode(ref + 0.0 * ref_noise.to(dev)).latent_dist.mode()   # (1, 4, h, w), unscaled
    ref_lat = models.vae.encode(ref).latent_dist.mean * VAE_SCALE
    sigmas = sigmas_for(models.scheduler, p.inference_steps)
    latents.mul_(sigmas[0]).add_(ref_lat.float().to(home)[:, None])                   # (1, N, 4, h, w)
    trace("initial_latents", latents)

    image_lat_cfg = (torch.cat([torch.zeros_like(image_lat), image_lat, image_lat])[:, None]
                     .expand(-1, WINDOW, -1, -1, -1))
    clip = torch.cat([torch.zeros_like(image_embeds), image_embeds, image_embeds])     # (3, 1024)
    clip = clip[:, None, None].expand(-1, WINDOW, -1, -1).reshape(3 * WINDOW, 1, -1).to(dt)
    uncond_audio = uncond_tok.expand(2 * WINDOW, -1, -1)
    mask = image.mask.to(dev, dt)
    memory.place(models, "sampling", plan.placement)
    forward = unet_runner(p.compile)
    branches = plan.branches_per_call

    def unet(sample, t, audio, ids):
        if branches == 3:
            return forward(models.unet, sample, t, clip, audio, ids, mask, p.ip_audio_scale)
        return torch.cat([forward(models.unet, sample[b:b + 1], t, clip[b * WINDOW:(b + 1) * WINDOW],
                                  audio[b * WINDOW:(b + 1) * WINDOW], ids[b:b + 1], mask, p.ip_audio_scale)
                          for b in range(3)])

    total = p.inference_steps * len(window_indices(n, 0))
    done = 0
    for i in range(p.inference_steps):
        sigma, sigma_next = float(sigmas[i]), float(sigmas[i + 1])
        scale = (sigma ** 2 + 1) ** 0.5
        t = torch.tensor([0.25 * np.log(sigma)], dtype=torch.float32, device=dev)
        windows = window_indices(n, i)
        counts = Counter(f for idx in windows for f in idx)
        shared = sorted(f for f, c in counts.items() if c > 1)
        slot = {f: k for k, f in enumerate(shared)}
        acc = torch.zeros((1, len(shared), *latents.shape[2:]), device=home)
        trace(f"latents_all_before_step_{i}", latents)
        for j, idx in enumerate(windows):
            idx_t = torch.tensor(idx, device=home)
            x = latents[:, idx_t].to(dev)                                              # (1, 25, 4, h, w) fp32
            sample = torch.cat([(x / scale).to(dt).expand(3, -1, -1, -1, -1), image_lat_cfg], dim=2)
            audio = torch.cat([uncond_audio, cond_tok[idx_t].to(dev)])                   # (75, 32, 1024)
            m = buckets[idx].mean(dim=0)
            # contiguous (not an expand): inputs of one layout keep one torch.compile graph
            ids = torch.tensor([[GEN_FPS, float(m[0]), float(m[1])]] * 3, dtype=dt, device=dev)
            u, a, c = unet(sample, t, audio, ids).float().chunk(3)
            v = u + p.image_guidance * (a - u) + p.audio_guidance * (c - a)
            x0 = -sigma / scale * v + x / (sigma ** 2 + 1)                                # v-prediction
            stepped = (x + (x - x0) / sigma * (sigma_next - sigma)).to(home)              # Euler step
            trace(f"guided_eps_s{i}_w{j}", v)
            trace(f"window_latents_after_step_s{i}_w{j}", stepped)
            own = [k for k, f in enumerate(idx) if f not in slot]   # frames this window alone updates
            mine = [k for k, f in enumerate(idx) if f in slot]      # frames it shares: summed, then averaged
            if own:
                latents[:, idx_t[own]] = stepped[:, own]
            if mine:
                accumulate(acc, [slot[idx[k]] for k in mine], stepped[:, mine])
            done += 1
            if progress:
                progress(done, total)
        if shared:
            count = torch.tensor([float(counts[f]) for f in shared], device=home).view(1, -1, 1, 1, 1)
            latents[:, torch.tensor(shared, device=home)] = acc / count
    return latents[0].cpu()
