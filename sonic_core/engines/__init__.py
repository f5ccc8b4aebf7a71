"""Engines turn PreData into a frame sequence. `auto` picks `sonic` when its weights are found, else `lite`."""
from __future__ import annotations

from ..errors import InputError, MissingWeightsError
from ..frames import FrameSequence, RenderedFrames
from ..predata import PreData
from .sonic_weights import find_weights
from ..sonic.memory import MODES as MEMORY_MODES  # memory.py imports no torch at module level

ENGINES = ("auto", "sonic", "lite")
SONIC_DTYPES = ("auto", "fp16", "bf16", "fp32")


def free_models() -> bool:
    """Release the Sonic models (GPU and CPU memory) if loaded; the next sonic run loads them again."""
    import sys

    module = sys.modules.get(__name__ + ".sonic")
    return bool(module and module.free_models())


def generate(pre: PreData, engine: str = "auto", *, inference_steps: int = 25, dynamic_scale: float = 1.0,
             motion_scale: float = 1.0, seed: int = 0, weight_roots: list[str] | None = None,
             ip_audio_scale: float = 1.0, interpolate: bool = True, dtype: str = "auto", device: str = "auto",
             paste_back: bool = False, crop_face: bool = True, memory_mode: str = "auto", vram_budget_gb: float = 0.0,
             compile: bool | str = False, progress=None) -> FrameSequence:
    """Return the frame sequence; its `.engine` says which engine made it and `.info['note']` why.
    `ip_audio_scale`, `interpolate`, `dtype`, `device`, `paste_back`, `crop_face`, `memory_mode` (auto | gpu | offload),
    `vram_budget_gb` (0: what is free) and `compile` concern the sonic engine only."""
    if engine not in ENGINES:
        raise InputError("engine", f"unknown engine {engine!r}", f"use one of {', '.join(ENGINES)}")
    params = {"inference_steps": inference_steps, "dynamic_scale": dynamic_scale, "motion_scale": motion_scale,
              "seed": seed}
    note = ""
    if engine in ("auto", "sonic"):
        try:
            find_weights(weight_roots or [])
        except MissingWeightsError as e:
            if engine == "sonic":
                raise
            note = f"auto: used the lite engine ({str(e).splitlines()[0]})"
        else:
            from ..sonic.pipeline import SonicParams
            from .sonic import generate_sonic

            sonic_params = SonicParams(ip_audio_scale=ip_audio_scale, interpolate=interpolate, memory_mode=memory_mode,
                                       vram_budget_gb=vram_budget_gb, compile=compile, **params)
            try:
                frames = generate_sonic(pre, sonic_params, weight_roots, device=device, dtype=dtype,
                                        paste_back=paste_back, crop_face=crop_face, progress=progress)
            except MissingWeightsError as e:  # present but unusable (empty, truncated, wrong shapes)
                if engine == "sonic":
                    raise
                note = f"auto: Sonic weights unusable, used the lite engine ({str(e).splitlines()[0]})"
            else:
                if engine == "auto":
                    frames.info["note"] = frames.info["note"].replace("sonic engine", "auto: Sonic weights found, "
                                                                      "used the sonic engine", 1)
                return frames
    return _lite(pre, params, note)


def _lite(pre: PreData, params: dict, note: str) -> FrameSequence:
    from .lite import LiteAnimator

    anim = LiteAnimator(pre.image, pre.face, pre.audio.mono_at(16000), pre.fps, pre.n_frames, seed=params["seed"],
                        dynamic_scale=params["dynamic_scale"], motion_scale=params["motion_scale"])
    h, w = pre.image.shape[:2]
    info = {"engine": "lite", "params": {k: v for k, v in params.items() if k != "inference_steps"},
            "face_found": pre.face_found, "note": note or "lite engine"}
    return RenderedFrames(anim.frame, pre.n_frames, pre.fps, w, h, "lite", info)
