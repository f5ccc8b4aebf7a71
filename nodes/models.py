"""Model folders: registers models/sonic with ComfyUI so ComfyUI_Sonic users reuse their downloads."""
from __future__ import annotations

import os

import folder_paths

FOLDER = "sonic"

if FOLDER not in folder_paths.folder_names_and_paths:
    folder_paths.add_model_folder_path(FOLDER, os.path.join(folder_paths.models_dir, FOLDER), is_default=True)


def sonic_model_roots() -> list[str]:
    return list(folder_paths.get_folder_paths(FOLDER))


def comfy_placement(memory_mode: str) -> dict:
    """Where Sonic runs inside ComfyUI: on ComfyUI's torch device (so --cpu, MPS and a CUDA index are obeyed), and
    for memory_mode 'auto' as ComfyUI's VRAM state says (--lowvram/--novram: offload; --highvram/--gpu-only: gpu)."""
    import comfy.model_management as mm

    if memory_mode == "auto":
        memory_mode = {mm.VRAMState.LOW_VRAM: "offload", mm.VRAMState.NO_VRAM: "offload",
                       mm.VRAMState.HIGH_VRAM: "gpu"}.get(mm.vram_state, "auto")
    return {"device": str(mm.get_torch_device()), "memory_mode": memory_mode}


def _cooperate_with_comfy_memory() -> None:
    """Free the Sonic models whenever ComfyUI frees its own: on /free and Unload Models (unload_all_models), and
    when another model needs room (free_memory). They reload on the next sonic run."""
    import comfy.model_management as mm

    from ..sonic_core import free_models

    def chained(original):
        def call(*args, **kwargs):
            free_models()
            return original(*args, **kwargs)

        call.__wrapped__ = original
        return call

    for name in ("unload_all_models", "free_memory"):
        fn = getattr(mm, name, None)
        if fn is not None and not hasattr(fn, "__wrapped__"):
            setattr(mm, name, chained(fn))


_cooperate_with_comfy_memory()
