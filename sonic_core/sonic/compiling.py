"""torch.compile for the Sonic engine: the compiled UNet forward and VAE decoder, and a compilation cache on disk
beside the models, so that compiling is paid once per machine and torch version, not once per process.

Compiling the UNet takes minutes; a queue worker or a restarted ComfyUI would pay that on its first video. After a
process has compiled, `save_compile_cache` writes torch's cache artifacts (inductor's generated kernels and AOT
graphs, `torch.compiler.save_cache_artifacts`) to one file; `load_compile_cache` in a new process hands them
back to torch's caches before its first compiled call, which then finds its kernels instead of generating them
(dynamo still traces the Python, in seconds). The file is named for the torch version and the device, whose
kernels differ.
"""
from __future__ import annotations

import logging
import os
import re

import torch

from ..options import COMPILE_MODES

log = logging.getLogger("sonicflow")
_compiled: dict = {}
_cache_state: dict = {}   # path -> compilations (cache misses) already in that file


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
    from .unet import unet_forward

    return _maybe_compiled(unet_forward, compile)


def _vae_decode(vae, x: torch.Tensor) -> torch.Tensor:
    return vae.decode(x, num_frames=x.shape[0]).sample


def vae_decoder_runner(compile: bool | str):
    """The VAE decode to call, `(vae, latents) -> frames in [-1, 1]`: eager, or its torch.compile'd version."""
    return _maybe_compiled(_vae_decode, compile)


def release_compiled() -> None:
    """Drop the compiled forwards (with the models they were traced for)."""
    _compiled.clear()


# ------------------------------------------------------------------------------------------------ disk cache

def compile_cache_path(models_dir: str, device) -> str:
    """The cache file for this torch version and device: in `compile_cache/` beside the models when that folder
    can be written, else in the user's cache folder."""
    device = torch.device(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    file = re.sub(r"[^A-Za-z0-9.+-]+", "_", f"torch-{torch.__version__}-{name}") + ".bin"
    for folder in (os.path.join(models_dir, "compile_cache"),
                   os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "sonicflow",
                                "compile_cache")):
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError:
            continue
        if os.access(folder, os.W_OK):
            return os.path.join(folder, file)
    return os.path.join(models_dir, "compile_cache", file)  # read-only everywhere: loading still works


def _misses() -> int:
    from torch._dynamo.utils import counters

    return counters["inductor"]["fxgraph_cache_miss"] + counters["aot_autograd"]["autograd_cache_miss"]


def load_compile_cache(path: str) -> bool:
    """Give torch the compiled artifacts saved at `path` (once per process and path). True when some were loaded."""
    if path in _cache_state:
        return False
    _cache_state[path] = _misses()
    if not os.path.isfile(path):
        return False
    try:
        with open(path, "rb") as f:
            info = torch.compiler.load_cache_artifacts(f.read())
    except Exception as e:  # noqa: BLE001 - a stale or damaged cache only costs a compilation
        log.warning("SonicFlow: compile cache %s not loaded (%s: %s); compiling afresh", path, type(e).__name__, e)
        return False
    return info is not None


def save_compile_cache(path: str) -> bool:
    """Write every artifact this process compiled or loaded to `path`, when it compiled something new since the
    cache was loaded or last saved (a warm process rewrites nothing). True when written."""
    misses = _misses()
    if misses <= _cache_state.get(path, 0):
        return False
    saved = torch.compiler.save_cache_artifacts()
    if saved is None:
        return False
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(saved[0])
        os.replace(tmp, path)   # atomic: a worker loading at the same time sees the old file or the new one
    except OSError as e:
        log.warning("SonicFlow: compile cache not saved to %s (%s)", path, e)
        return False
    _cache_state[path] = misses
    return True
