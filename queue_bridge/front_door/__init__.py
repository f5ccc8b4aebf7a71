"""The front door: the HTTP service before the queue (aiohttp). Uses the bridge; the bridge never imports it.

Names load on first use (PEP 562): the `sonicflow` command reads the front door's settings to build its flags
without loading aiohttp or a database driver (a canvas user's install has neither).
"""
from __future__ import annotations

import importlib

_MODULE_OF = {"make_app": ".app", "run_api": ".app", "JobStore": ".jobstore", "ApiSettings": ".api_settings"}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
