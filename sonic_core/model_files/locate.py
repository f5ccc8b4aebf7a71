"""Finding Sonic's weight files in the official `checkpoints/` layout or ComfyUI_Sonic's `models/sonic/` layout."""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass

from ..errors import MissingWeightsError
from .manifest import MANIFEST, SOURCES, SVD, where_to_get

WHERE_TO_GET = {s.name: where_to_get(s) for s in SOURCES}


def _engine_files() -> dict[str, tuple[str, str, str]]:
    """name -> (path in the official checkpoints/ layout, path in ComfyUI_Sonic's models/sonic/ layout, source) for
    every part but SVD's (a folder or a single file, see _svd); the manifest's first file of a part stands for it."""
    files: dict[str, tuple[str, str, str]] = {}
    for f in MANIFEST:
        if f.part != "svd":
            files.setdefault(f.part, (f.official, f.comfyui, f.source.name))
    return files


FILES = _engine_files()
SVD_DIR = SVD.folder


@dataclass
class SonicWeights:
    paths: dict  # name -> file path; "svd" -> diffusers folder or single .safetensors


def _svd(roots: list[str]) -> str | None:
    for root in roots:
        folder = os.path.join(root, SVD_DIR)
        if (os.path.isfile(os.path.join(folder, "vae", "config.json"))
                and os.path.isdir(os.path.join(folder, "image_encoder"))):
            return folder
        for base in (root, os.path.join(os.path.dirname(root.rstrip("/")), "checkpoints")):
            hits = sorted(glob.glob(os.path.join(base, "svd_xt*.safetensors")))
            if hits:
                return hits[0]
    return None


def locate_weights(roots: list[str]) -> tuple[SonicWeights, list[str]]:
    """Look for every file in each root, in both layouts: (what was found, one line per missing file)."""
    roots = [r for r in roots if r]
    paths, missing = {}, []
    for name, (official, comfy, source) in FILES.items():
        rels = [official, comfy]
        if official.endswith(".pth"):  # `sonicflow convert` output, preferred: faster, memory-mapped, no pickle
            rels = [r[:-4] + ".safetensors" for r in rels] + rels
        hit = next((os.path.join(r, rel) for r in roots for rel in rels if os.path.isfile(os.path.join(r, rel))), None)
        if hit:
            paths[name] = os.path.dirname(hit) if name == "whisper" else hit
        else:
            missing.append(f"  {official} (or models/sonic/{comfy}) from {WHERE_TO_GET[source]}")
    svd = _svd(roots)
    if svd:
        paths["svd"] = svd
    else:
        missing.append(f"  {SVD_DIR}/vae + image_encoder (or models/checkpoints/svd_xt*.safetensors) from "
                       f"{WHERE_TO_GET['svd']}")
    return SonicWeights(paths), missing


def missing_message(roots: list[str], missing: list[str]) -> str:
    where = ", ".join(r for r in roots if r) or "(no folder configured)"
    return (f"Sonic weights are missing. Looked in: {where}. Missing:\n" + "\n".join(missing) +
            "\nPut them in ComfyUI/models/sonic/ (or pass --checkpoints DIR with the official checkpoints/ layout); "
            "`sonicflow models download` fetches them all.")


def find_weights(roots: list[str]) -> SonicWeights:
    """Look for every file in each root, in both layouts; raise one message that lists whatever is missing."""
    weights, missing = locate_weights(roots)
    if missing:
        raise MissingWeightsError(missing_message(roots, missing))
    return weights
