"""Models inside ComfyUI: the models/sonic folder (ComfyUI_Sonic users reuse their downloads), ComfyUI's device
and VRAM state, and its model manager placing the Sonic engine's modules."""
from __future__ import annotations

import os

import folder_paths
import torch

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


class ComfyModelHost:
    """ComfyUI's model manager places the Sonic engine's modules: each becomes a ComfyUI model (a ModelPatcher) the
    first time it goes to the device, so ComfyUI loads it there (unloading other models to make room), counts it,
    and unloads it when it needs the memory: for another model, on /free, on Unload Models. Moves off the device
    are ComfyUI's to decide. The weights stay in RAM while ComfyUI's output cache holds frames made with them; when
    it drops them (/free with free_memory), they go."""

    def move(self, module, device) -> None:
        import comfy.model_management as mm
        import comfy.model_patcher

        if str(device) == "cpu" and mm.get_torch_device().type != "cpu":
            return
        patcher = module.__dict__.get("_sonicflow_patcher")
        if patcher is None:
            # held in a plain container: ComfyUI sets bookkeeping attributes (e.g. `device`) on the model it manages,
            # which some of these modules (transformers') expose read-only
            patcher = comfy.model_patcher.ModelPatcher(_held(module), load_device=mm.get_torch_device(),
                                                       offload_device=mm.unet_offload_device())
            module.__dict__["_sonicflow_patcher"] = patcher
        mm.load_models_gpu([patcher], force_full_load=True)


class _Held(torch.nn.Module):
    """One of the Sonic engine's modules as ComfyUI's model manager holds it."""

    def __init__(self, module):
        super().__init__()
        self.module = module


def _held(module) -> torch.nn.Module:
    """`module` in a container named like it (ComfyUI's log says "Requested to load <name>")."""
    return type(type(module).__name__, (_Held,), {})(module)
