"""SonicFlow's inference core: media in and out, PreData, engines, publishing. Never imports ComfyUI.

Other parts import these names from here, not from the modules below. Names load on first use (PEP 562), so a
process that needs one of them (the bridge needs `s3_client`) does not load torch, OpenCV or PyAV with it.
"""
from __future__ import annotations

import importlib

_WHERE = {
    ".engines": ("generate",),
    ".options": ("GenerateOptions", "option_fields"),
    ".errors": ("InputError", "SonicFlowError"),
    ".frames": ("ArrayFrames",),
    ".media.audio": ("Audio", "load_audio"),
    ".media.encode": ("PRESETS", "encode_mp4", "probe_video"),
    ".media.image": ("load_image",),
    ".video": ("make_video",),
    ".predata": ("NO_FACE_MODES", "PreData", "prepare"),
    ".provenance": ("provenance_metadata", "read_provenance"),
    ".publish": ("SINKS", "publish_local", "sha256_file"),
    ".publish.labels": ("LABEL_MODES", "check_labels", "label_frames_and_metadata"),
    ".publish.s3": ("publish_s3", "s3_client"),
    ".sync": ("measure_sync",),
    ".sync_venv": ("setup_sync_meter",),
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return __all__
