"""GPU memory planning for Sonic: where the models and the per-frame data live, how the UNet batches its guidance
branches, and how many frames one VAE decode call takes.

Chosen once before a generation from the models' parameter bytes, the working size, the dtype, the number of
generated frames and a budget (`plan_memory`, pure):
* the mode: 'gpu' keeps every model on the compute device; 'offload' keeps them on the CPU and moves each stage's
  models to the device for that stage only (`STAGES`, applied by `place`), so the peak holds one stage's weights
  instead of all 5 GB; 'lowvram' offloads too and runs the three guidance branches one after the other (25
  frames per UNet call instead of 3 x 25: a third of the UNet's activations, for 3 calls' launch overhead);
* where the per-frame stores live (latents in fp32, audio tokens in the model dtype): on the device when they fit
  beside the largest stage (no copy per window), else on the CPU; either way the device holds one window;
* the VAE decode chunk: 8, the official value (the temporal decoder mixes the frames of one call, so 8 gives
  the official frames), else the largest that fits, with a note that the frames deviate slightly.

The activation estimates (bytes = elements x dtype size) are calibrated on an H200: docs/benchmarks.md, "Memory
planner calibration". Torch's allocator, cuDNN workspaces and fragmentation are covered by a margin of
0.5 GiB + 5 % of the budget.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..options import MEMORY_MODES
from .audio_features import OFFICIAL_MAX_FRAMES

GIB = 2 ** 30
OFFICIAL_DECODE_CHUNK = 8
WINDOW_FRAMES = 25
UNET_ELEMS = 7500              # per latent pixel per frame in one UNet call
VAE_ELEMS = 1050               # per output pixel per frame, VAE decode (and encode)
RIFE_ELEMS = 128               # per output pixel per frame pair, fp32
COND_FIXED = 256 * 2 ** 20     # one whisper window, one adapter batch, CLIP: small at every size and length
AUDIO_TOKEN_ELEMS = 32 * 1024  # audio tokens per generated frame
LATENT_CHANNELS = 4
MARGIN_FIXED, MARGIN_FRACTION = GIB // 2, 0.05
MODES = MEMORY_MODES[1:]  # gpu, offload, lowvram: fastest first, the order 'auto' tries them in

# The models each stage runs; 'gpu' keeps them all on the device. The face detector (about 85 MB) never moves.
STAGES = {
    "conditioning": ("whisper", "image_encoder", "audio2token", "audio2bucket", "vae"),  # vae: encodes the image
    "sampling": ("unet",),
    "decode": ("vae", "rife"),
}
MOVABLE = ("whisper", "image_encoder", "audio2token", "audio2bucket", "vae", "unet", "rife")


def branches_per_call(mode: str) -> int:
    """Guidance branches per UNet call: 3 (one batch of 3 x 25 frames, as officially) or 1 ('lowvram')."""
    return 1 if mode == "lowvram" else 3


@dataclass(frozen=True)
class MemoryPlan:
    mode: str                      # 'gpu', 'offload' or 'lowvram'
    decode_chunk: int
    budget_bytes: int | None       # usable bytes after the margin; None: no GPU, nothing to plan
    peak_bytes: int                # estimated peak (largest stage)
    stores_on_device: bool = True  # per-frame latents and audio tokens on the compute device (else the CPU)
    stage_bytes: dict = field(default_factory=dict)
    note: str = ""                 # set when the output deviates from the official or may not fit

    @property
    def placement(self) -> str:
        """Model placement for `place`: 'gpu' or 'offload'."""
        return "gpu" if self.mode == "gpu" else "offload"

    @property
    def branches_per_call(self) -> int:
        """Guidance branches per UNet call: 3 (one batch of 3 x 25 frames, as officially) or 1."""
        return branches_per_call(self.mode)

    def info(self) -> dict:
        out = {"mode": self.mode, "decode_chunk": self.decode_chunk,
               "stores": "device" if self.stores_on_device else "cpu",
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


def store_bytes_per_frame(size_wh: tuple[int, int], dtype_bytes: int) -> int:
    """Bytes per generated frame of what the sampler keeps for every frame: latents (fp32) and audio tokens."""
    w, h = size_wh
    return LATENT_CHANNELS * (w // 8) * (h // 8) * 4 + AUDIO_TOKEN_ELEMS * dtype_bytes


def usable_budget(budget_bytes: int) -> int:
    return int(budget_bytes - MARGIN_FIXED - MARGIN_FRACTION * budget_bytes)


def stage_bytes(weights: dict[str, int], size_wh: tuple[int, int], dtype_bytes: int, n_frames: int, mode: str,
                decode_chunk: int, rife: bool = True, stores_on_device: bool = True,
                device_noise: bool = True) -> dict[str, int]:
    """Estimated peak bytes on the device during each stage."""
    w, h = size_wh
    pixels, latent_pixels = w * h, (w // 8) * (h // 8)
    everything = sum(weights.values())
    stores = n_frames * store_bytes_per_frame(size_wh, dtype_bytes) if stores_on_device else 0
    noise = min(n_frames, OFFICIAL_MAX_FRAMES) * LATENT_CHANNELS * latent_pixels * dtype_bytes if device_noise else 0
    unet_frames = branches_per_call(mode) * WINDOW_FRAMES

    def resident(stage: str) -> int:
        if mode == "gpu":
            return everything
        return weights.get("face_detector", 0) + sum(weights.get(n, 0) for n in STAGES[stage])

    acts = {
        "conditioning": COND_FIXED + pixels * VAE_ELEMS * dtype_bytes + noise + stores,
        "sampling": unet_frames * latent_pixels * UNET_ELEMS * dtype_bytes + stores,
        "decode": decode_chunk * pixels * max(VAE_ELEMS * dtype_bytes, RIFE_ELEMS * 4 if rife else 0),
    }
    return {stage: resident(stage) + act for stage, act in acts.items()}


def plan_memory(weights: dict[str, int], size_wh: tuple[int, int], dtype_bytes: int, budget_bytes: int | None,
                n_frames: int, mode: str = "auto", rife: bool = True, max_chunk: int = OFFICIAL_DECODE_CHUNK,
                device_noise: bool = True) -> MemoryPlan:
    """Choose the mode, where the per-frame stores live and the decode chunk. `budget_bytes` is what SonicFlow may
    use on the device before the margin (None: no GPU; everything stays on the compute device). `mode` other than
    'auto' forces the mode; stores and chunk are still planned. 'auto' takes the first of gpu, offload, lowvram
    that fits, stores on the device before stores on the CPU; if none fits, lowvram with the stores on the CPU
    and the largest decode chunk that fits."""
    if mode not in MEMORY_MODES:
        raise ValueError(f"memory_mode must be one of {', '.join(MEMORY_MODES)}, not {mode!r}")

    def estimate(m: str, chunk: int, stores: bool) -> dict[str, int]:
        return stage_bytes(weights, size_wh, dtype_bytes, n_frames, m, chunk, rife, stores, device_noise)

    if budget_bytes is None:
        m = "gpu" if mode == "auto" else mode
        est = estimate(m, max_chunk, True)
        return MemoryPlan(m, max_chunk, None, max(est.values()), True, est)
    usable = usable_budget(budget_bytes)
    choices = [(m, stores) for m in (MODES if mode == "auto" else (mode,)) for stores in (True, False)]
    mode, stores = next((c for c in choices if max(estimate(c[0], max_chunk, c[1]).values()) <= usable), choices[-1])
    chunk = next((c for c in range(max_chunk, 0, -1) if estimate(mode, c, stores)["decode"] <= usable), 1)
    est = estimate(mode, chunk, stores)
    peak = max(est.values())
    notes = []
    if chunk < OFFICIAL_DECODE_CHUNK:
        notes.append(f"VAE decode chunk lowered to {chunk} frames (official {OFFICIAL_DECODE_CHUNK}) to fit the "
                     "memory budget: the frames deviate slightly from the official output")
    if peak > usable:
        notes.append(f"estimated peak {peak / 1e9:.1f} GB exceeds the usable budget {usable / 1e9:.1f} GB: the run "
                     "may run out of GPU memory (lower min_resolution, or free GPU memory)")
    return MemoryPlan(mode, chunk, usable, peak, stores, est, "; ".join(notes))


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

def stage_moves(stage: str, placement: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(models to send to the CPU, models to bring to the device) at the start of `stage`."""
    if placement == "gpu":
        return (), MOVABLE
    if placement != "offload":
        raise ValueError(f"placement needs 'gpu' or 'offload', not {placement!r}")
    need = STAGES[stage]
    return tuple(n for n in MOVABLE if n not in need), need


def _to(module, device) -> None:
    module.to(device)


def place(models, stage: str, placement: str) -> None:
    """Move models for `stage` (placement 'gpu' or 'offload', `MemoryPlan.placement`): the unneeded ones off the
    device first (their memory is reused), then the needed ones on. Moves to where a module already is cost
    nothing. `models.move`, when set, does the moving (inside ComfyUI: its model manager)."""
    move = models.move or _to
    off, on = stage_moves(stage, placement)
    for name in off:
        if getattr(models, name) is not None:
            move(getattr(models, name), "cpu")
    for name in on:
        if getattr(models, name) is not None:
            move(getattr(models, name), models.device)
