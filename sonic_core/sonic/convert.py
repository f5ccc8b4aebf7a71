"""`sonicflow convert`: the pickled official weights (unet.pth, audio2token.pth, audio2bucket.pth) as safetensors
beside them, the UNet in fp16 (or bf16) by default. Safetensors load without unpickling, memory-mapped, and the
fp16 UNet is half the size (3.15 GB instead of 6.3 GB); the loader prefers them when both are present."""
from __future__ import annotations

import os

import torch

from ..model_files.locate import locate_weights, missing_message
from ..errors import MissingWeightsError
from .loading import read_state_dict

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def convert(roots: list[str], dtype: str = "fp16") -> list[tuple[str, str, int]]:
    """Write <name>.safetensors beside each <name>.pth; returns (source, target, bytes) for each file written.
    The audio adapters stay fp32, as the official code runs them."""
    from safetensors.torch import save_file

    weights, missing = locate_weights(roots)
    if any(name not in weights.paths for name in ("unet", "audio2token", "audio2bucket")):
        raise MissingWeightsError(missing_message(roots, missing))
    done = []
    for name in ("unet", "audio2token", "audio2bucket"):
        src = weights.paths[name]
        if not src.endswith(".pth"):
            continue
        target = src[:-4] + ".safetensors"
        cast = DTYPES[dtype] if name == "unet" else torch.float32
        state = {k: v.to(cast).contiguous() for k, v in read_state_dict(src).items()}
        tmp = target + ".part"
        save_file(state, tmp, metadata={"format": "pt", "converted_from": os.path.basename(src), "dtype": str(cast)})
        os.replace(tmp, target)
        done.append((src, target, os.path.getsize(target)))
    return done
