"""Engines turn PreData into a frame sequence. `auto` picks `sonic` when its weights are found, else `lite`."""
from __future__ import annotations

from sonicflow_contract import ENGINES

from ..errors import InputError, MissingDependencyError, MissingWeightsError
from ..frames import FrameSequence, RenderedFrames
from ..model_files.locate import find_weights
from ..options import GenerateOptions
from ..predata import PreData


def generate(pre: PreData, options: GenerateOptions | None = None, progress=None, host=None) -> FrameSequence:
    """Return the frame sequence; its `.engine` says which engine made it and `.info['note']` why. `host` places
    the sonic engine's models on the device (sonic_engine.load_models); inside ComfyUI, its model manager."""
    options = options or GenerateOptions()
    if options.engine not in ENGINES:
        raise InputError("engine", f"unknown engine {options.engine!r}", f"use one of {', '.join(ENGINES)}")
    note = ""
    if options.engine in ("auto", "sonic"):
        try:
            find_weights(list(options.weight_roots))
        except MissingWeightsError as e:
            if options.engine == "sonic":
                raise
            note = f"auto: used the lite engine ({str(e).splitlines()[0]})"
        else:
            try:
                frames = _sonic(pre, options, progress, host)
            except MissingDependencyError as e:  # installed without the Sonic engine's libraries
                if options.engine == "sonic":
                    raise
                note = f"auto: Sonic weights found but {e.package} is not installed, used the lite engine ({e.command})"
            except MissingWeightsError as e:  # present but unusable (empty, truncated, wrong shapes)
                if options.engine == "sonic":
                    raise
                note = f"auto: Sonic weights unusable, used the lite engine ({str(e).splitlines()[0]})"
            else:
                if options.engine == "auto":
                    frames.info["note"] = frames.info["note"].replace("sonic engine", "auto: Sonic weights found, "
                                                                      "used the sonic engine", 1)
                return frames
    return _lite(pre, options, note)


SONIC_PACKAGES = ("torch", "diffusers", "transformers", "safetensors")


def _sonic(pre: PreData, options: GenerateOptions, progress, host) -> FrameSequence:
    """The sonic engine; MissingDependencyError (naming the package and the command) when one of its libraries is
    not installed, so `auto` can fall back to lite and say why."""
    import importlib

    for package in SONIC_PACKAGES:  # before the weights: they cannot be read without these
        try:
            importlib.import_module(package)
        except ModuleNotFoundError as e:
            raise MissingDependencyError("the sonic engine", package, "pip install -r requirements.txt (in "
                                         "ComfyUI's Python), or pip install sonicflow") from e
    from .sonic_engine import generate_sonic

    return generate_sonic(pre, options, progress=progress, host=host)


def _lite(pre: PreData, options: GenerateOptions, note: str) -> FrameSequence:
    from .lite import LiteAnimator

    anim = LiteAnimator(pre.image, pre.face, pre.audio.mono_at(16000), pre.fps, pre.n_frames, seed=options.seed,
                        dynamic_scale=options.dynamic_scale, motion_scale=options.motion_scale)
    h, w = pre.image.shape[:2]
    params = {k: v for k, v in options.common_params().items() if k != "inference_steps"}
    info = {"engine": "lite", "params": params, "face_found": pre.face_found, "note": note or "lite engine"}
    return RenderedFrames(anim.frame, pre.n_frames, pre.fps, w, h, "lite", info)
