"""Generation options: the one object that carries Generate's parameters from the canvas, the command line and
batch jobs to the engines. Each option is declared once, here, with its default, range and help text; the
ComfyUI node's inputs and `sonicflow generate`'s flags are built from these declarations.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields

from sonicflow_contract import ENGINES, SEED_MAX

MEMORY_MODES = ("auto", "gpu", "offload", "lowvram")
SONIC_DTYPES = ("auto", "fp16", "bf16", "fp32")
COMPILE_MODES = ("default", "max-autotune-no-cudagraphs")
NOISE_SOURCES = ("device", "cpu")


def option(default, help: str, *, minimum=None, maximum=None, step=None, choices=None, sonic: bool = False,
           canvas: bool = True, flag: str | None = None):
    """A field with what a user interface needs to offer it. `sonic`: only the sonic engine reads it; `canvas`:
    offered as a node input (False for settings ComfyUI decides itself, such as the device); `flag`: the command
    line's name for it when it is not --<name> (--no-<name> for options on by default)."""
    meta = {"help": help, "min": minimum, "max": maximum, "step": step, "choices": choices, "sonic": sonic,
            "canvas": canvas, "flag": flag}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class GenerateOptions:
    engine: str = option("auto", "auto: sonic when its weights are installed, else lite", choices=ENGINES)
    inference_steps: int = option(25, "Sonic denoising steps (official 25); the lite engine ignores it",
                                  minimum=1, maximum=100, flag="--steps")
    dynamic_scale: float = option(1.0, "strength of the motion driven by the audio (lips and face)",
                                  minimum=0.0, maximum=3.0, step=0.05)
    motion_scale: float = option(1.0, "head motion on top of dynamic_scale; 1.0 = the model's own; 0 = still head",
                                 minimum=0.0, maximum=3.0, step=0.05)
    seed: int = option(0, "same seed + same inputs = the same video; 0 is a seed like any other (the official "
                       "code's seed 0 or none means 72589)", minimum=0, maximum=SEED_MAX)
    ip_audio_scale: float = option(1.0, "strength of the audio attention (official 1.0)", minimum=0.0, maximum=3.0,
                                   step=0.1, sonic=True)
    interpolate: bool = option(True, "RIFE frame interpolation, 12.5 -> 25 fps", sonic=True)
    dtype: str = option("auto", "model precision (auto = fp16 on a GPU, fp32 on a CPU)", choices=SONIC_DTYPES,
                        sonic=True)
    paste_back: bool = option(False, "put the animated face back into the full picture (off = the official output, "
                              "the face crop); the lite engine always does", sonic=True)
    memory_mode: str = option("auto", "gpu keeps every model on the GPU (fastest); offload keeps them in RAM and "
                              "moves each to the GPU only for its stage; lowvram also runs the three guidance "
                              "branches one after the other (a third of the UNet's activations, a little slower); "
                              "auto picks from the memory available", choices=MEMORY_MODES, sonic=True)
    vram_budget_gb: float = option(0.0, "GPU memory (GiB) it may use; 0 = what is free. A small budget offloads "
                                   "models and may decode fewer frames at a time (the frames then deviate slightly "
                                   "from the official ones; engine_info says so)", minimum=0.0, maximum=1024.0,
                                   step=0.5, sonic=True)
    compile: bool = option(False, "torch.compile the UNet and VAE decoder on a GPU. The first run compiles for "
                           "minutes and caches the result beside the models, so later runs and processes are "
                           "faster (for queue workers and batches)", sonic=True)
    compile_mode: str = option("default", "torch.compile mode when compile is on", choices=COMPILE_MODES, sonic=True,
                               canvas=False)
    noise: str = option("device", "where the starting noise is drawn: device = as the official code (the GPU's own "
                        "generator in the model precision: the official frames for a seed, on that GPU model); cpu = "
                        "the CPU generator (the same video for a seed on every machine)", choices=NOISE_SOURCES,
                        sonic=True)
    device: str = option("auto", "cpu, cuda, cuda:1 ... (auto: ComfyUI's device inside ComfyUI, else cuda when "
                         "present)", sonic=True, canvas=False)
    crop_face: bool = option(True, "animate the face crop (the official demo with --crop); off animates the whole "
                             "picture", sonic=True, canvas=False, flag="--no-crop")
    weight_roots: tuple = option((), "folder with Sonic's weights (official checkpoints/ or models/sonic layout); "
                                 "repeatable", canvas=False, flag="--checkpoints")

    def replace(self, **changes) -> "GenerateOptions":
        return dataclasses.replace(self, **changes)

    @property
    def compiled(self) -> bool | str:
        """What the sampler's torch.compile switch takes: False, or the mode."""
        return self.compile_mode if self.compile else False

    def sonic_params(self) -> dict:
        """The options the sonic engine records in its provenance."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata["sonic"] and f.metadata["canvas"]}

    def common_params(self) -> dict:
        """The options every engine records in its provenance."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if not f.metadata["sonic"] and f.metadata["canvas"] and f.name != "engine"}


def option_fields() -> list[dataclasses.Field]:
    """Every option, in declaration order (node inputs and CLI flags are built from this)."""
    return list(fields(GenerateOptions))
