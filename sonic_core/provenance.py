"""What made a video: engine, parameters, input hashes and software versions (travels in the MP4's metadata)."""
from __future__ import annotations

import json
import platform
import sys
import time
from importlib import metadata

METADATA_KEY = "sonicflow"  # MP4 metadata tag holding the provenance JSON


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def provenance(engine: str, info: dict) -> dict:
    return {
        "generator": "SonicFlow",
        "engine": engine,
        "note": info.get("note", ""),
        "params": info.get("params", {}),
        "inputs": info.get("inputs", {}),
        "face_found": info.get("face_found"),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": {"sonicflow": _version("sonicflow") or "dev", "python": platform.python_version(),
                     "av": _version("av"), "opencv": _version("opencv-python-headless"),
                     "torch": sys.modules["torch"].__version__ if "torch" in sys.modules else None},
    }


def provenance_metadata(engine: str, info: dict) -> dict:
    """The MP4 metadata entry that carries the provenance (read back by Publish for its sidecar)."""
    return {METADATA_KEY: json.dumps(provenance(engine, info), sort_keys=True, separators=(",", ":"))}


def read_provenance(metadata: dict) -> dict:
    raw = metadata.get(METADATA_KEY)
    return json.loads(raw) if raw else {"generator": "unknown (not made by SonicFlow)"}
