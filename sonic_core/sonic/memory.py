"""GPU memory planning for Sonic: where the models live, and how many frames one VAE decode call takes.

Two choices, made once before a generation from the models' parameter bytes, the working size, the dtype and a
budget (`plan_memory`, pure):
* placement: 'gpu' keeps every model on the compute device; 'offload' keeps them on the CPU and moves each
  stage's models to the device for that stage only (`STAGES`, applied by `place`), so the peak holds one stage's
  weights instead of all 5 GB;
* the VAE decode chunk: 8, the official value (the temporal decoder mixes the frames of one call, so 8 gives
  the official frames), else the largest that fits, with a note that the frames deviate slightly.

Activation estimates (bytes = elements x dtype size), calibrated on bench/sonic_gpu.py on an H200 at 512x512
fp16 (docs/bench_runs/2026-11-28_h200_*): weights 4.997 GB on the GPU, peak 9.595 GB with 5 s of audio (62
frames) and 9.845 GB with 60 s (750). The growth, 363 KB per generated frame, is exactly the whisper states and
fp32 audio tokens that were alive during sampling, so the peak was the UNet window call: 9.595 - 4.997 -
62 x 0.363 MB = 4.58 GB for 3 x 25 frames of 64 x 64 latents = 7,450 elements per latent pixel and frame
(UNET_ELEMS; assumed linear in the area, as convolutions and flash attention are; those per-frame tensors are
now freed or kept on the CPU before sampling, so only the conditioning stage grows with the audio). The VAE
decode was never measured on its own: it stayed below that peak, so 8 frames at 512 x 512 take under 1,097 elements per output
pixel and frame; VAE_ELEMS = 1,050 (the decoder's widest full-resolution layers count about 1,000). RIFE (fp32)
is not calibrated: IFNet keeps about 60 full-resolution channels per frame pair, doubled for temporaries (RIFE_ELEMS).
Torch's allocator, cuDNN workspaces and fragmentation are covered by a margin of 0.5 GiB + 5 % of the budget.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..options import MEMORY_MODES

GIB = 2 ** 30
OFFICIAL_DECODE_CHUNK = 8
WINDOW_BATCH = 3 * 25          # guidance branches x window frames per UNet call
UNET_ELEMS = 7500              # per latent pixel per frame in one UNet call
VAE_ELEMS = 1050               # per output pixel per frame, VAE decode (and encode)
RIFE_ELEMS = 128               # per output pixel per frame pair, fp32
COND_FIXED = 256 * 2 ** 20     # whisper / CLIP / adapter activations (small at every size)
COND_PER_FRAME = 363_000       # whisper states + fp32 audio tokens per generated frame (measured)
MARGIN_FIXED, MARGIN_FRACTION = GIB // 2, 0.05

# The models each stage runs; 'gpu' keeps them all on the device. The face detector (about 85 MB) never moves.
STAGES = {
    "conditioning": ("whisper", "image_encoder", "audio2token", "audio2bucket", "vae"),  # vae: encodes the image
    "sampling": ("unet",),
    "decode": ("vae", "rife"),
}
MOVABLE = ("whisper", "image_encoder", "audio2token", "audio2bucket", "vae", "unet", "rife")


@dataclass(frozen=True)
class MemoryPlan:
    mode: str                      # 'gpu' or 'offload'
    decode_chunk: int
    budget_bytes: int | None       # usable bytes after the margin; None: no GPU, nothing to plan
    peak_bytes: int                # estimated peak (largest stage)
    stage_bytes: dict = field(default_factory=dict)
    note: str = ""                 # set when the output deviates from the official or may not fit

    def info(self) -> dict:
        out = {"mode": self.mode, "decode_chunk": self.decode_chunk,
               "estimated_peak_gb": round(self.peak_bytes / 1e9, 2)}
        if self.budget_bytes is not None:
            out["budget_gb"] = round(self.budget_bytes / 1e9, 2)
        if self.note:
            out["note"] = self.note
        return out


def module_bytes(module) -> int:
    """Bytes of a module's parameters and buffers (0 for None)."""
    if module is None:
        return 0
    tensors = list(module.parameters()) + list(module.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def model_bytes(models) -> dict[str, int]:
    """Bytes per model name of a SonicModels (the face detector's TorchScript module counted too)."""
    sizes = {name: module_bytes(getattr(models, name)) for name in MOVABLE}
    det = models.face_detector
    sizes["face_detector"] = module_bytes(getattr(det, "model", None))
    return sizes


def usable_budget(budget_bytes: int) -> int:
    return int(budget_bytes - MARGIN_FIXED - MARGIN_FRACTION * budget_bytes)


def stage_bytes(weights: dict[str, int], size_wh: tuple[int, int], dtype_bytes: int, n_frames: int, mode: str,
                decode_chunk: int, rife: bool = True) -> dict[str, int]:
    """Estimated peak bytes on the device during each stage."""
    w, h = size_wh
    pixels, latent_pixels = w * h, (w // 8) * (h // 8)
    everything = sum(weights.values())

    def resident(stage: str) -> int:
        if mode == "gpu":
            return everything
        return weights.get("face_detector", 0) + sum(weights.get(n, 0) for n in STAGES[stage])

    acts = {
        "conditioning": COND_FIXED + COND_PER_FRAME * n_frames + pixels * VAE_ELEMS * dtype_bytes,
        "sampling": WINDOW_BATCH * latent_pixels * UNET_ELEMS * dtype_bytes,  # the audio tokens wait on the CPU
        "decode": decode_chunk * pixels * max(VAE_ELEMS * dtype_bytes, RIFE_ELEMS * 4 if rife else 0),
    }
    return {stage: resident(stage) + act for stage, act in acts.items()}


def plan_memory(weights: dict[str, int], size_wh: tuple[int, int], dtype_bytes: int, budget_bytes: int | None,
                n_frames: int, mode: str = "auto", rife: bool = True,
                max_chunk: int = OFFICIAL_DECODE_CHUNK) -> MemoryPlan:
    """Choose placement and decode chunk. `budget_bytes` is what SonicFlow may use on the device before the
    margin (None: no GPU; everything stays on the compute device). `mode` 'gpu'/'offload' forces the
    placement; the decode chunk is still planned. Prefers, in order: gpu at the official chunk, offload at the
    official chunk, offload at the largest chunk that fits."""
    if mode not in MEMORY_MODES:
        raise ValueError(f"memory_mode must be one of {', '.join(MEMORY_MODES)}, not {mode!r}")

    def estimate(m: str, chunk: int) -> dict[str, int]:
        return stage_bytes(weights, size_wh, dtype_bytes, n_frames, m, chunk, rife)

    if budget_bytes is None:
        m = "gpu" if mode == "auto" else mode
        est = estimate(m, max_chunk)
        return MemoryPlan(m, max_chunk, None, max(est.values()), est)
    usable = usable_budget(budget_bytes)
    if mode == "auto":
        mode = "gpu" if max(estimate("gpu", max_chunk).values()) <= usable else "offload"
    chunk = next((c for c in range(max_chunk, 0, -1) if estimate(mode, c)["decode"] <= usable), 1)
    est = estimate(mode, chunk)
    peak = max(est.values())
    notes = []
    if chunk < OFFICIAL_DECODE_CHUNK:
        notes.append(f"VAE decode chunk lowered to {chunk} frames (official {OFFICIAL_DECODE_CHUNK}) to fit the "
                     "memory budget: the frames deviate slightly from the official output")
    if peak > usable:
        notes.append(f"estimated peak {peak / 1e9:.1f} GB exceeds the usable budget {usable / 1e9:.1f} GB: the run "
                     "may run out of GPU memory (lower min_resolution, or free GPU memory)")
    return MemoryPlan(mode, chunk, usable, peak, est, "; ".join(notes))


def device_budget(device, vram_budget_gb: float, models=None) -> int | None:
    """Bytes SonicFlow may use on `device`: the user's budget (GiB) when > 0, else what is free now plus what
    our models already hold there and torch's cached blocks. None when the device is not a GPU."""
    import torch

    if device.type != "cuda":
        return None
    if vram_budget_gb and vram_budget_gb > 0:
        return int(vram_budget_gb * GIB)
    free, _ = torch.cuda.mem_get_info(device)
    cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    ours = 0
    if models is not None:
        for name in MOVABLE:
            module = getattr(models, name)
            if module is not None and next(module.parameters()).device.type == "cuda":
                ours += module_bytes(module)
    return free + cached + ours


# ----------------------------------------------------------------------------------------------- placement

def stage_moves(stage: str, mode: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(models to send to the CPU, models to bring to the device) at the start of `stage`."""
    if mode == "gpu":
        return (), MOVABLE
    if mode != "offload":
        raise ValueError(f"placement needs 'gpu' or 'offload', not {mode!r}")
    need = STAGES[stage]
    return tuple(n for n in MOVABLE if n not in need), need


def _to(module, device) -> None:
    module.to(device)


def place(models, stage: str, mode: str, move=_to) -> None:
    """Move models for `stage`: the unneeded ones off the device first (their memory is reused), then the
    needed ones on. Moves to where a module already is cost nothing."""
    off, on = stage_moves(stage, mode)
    for name in off:
        if getattr(models, name) is not None:
            move(getattr(models, name), "cpu")
    for name in on:
        if getattr(models, name) is not None:
            move(getattr(models, name), models.device)
