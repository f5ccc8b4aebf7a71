"""Where the bridge finds its data and writes its outputs.

A checkout or the ComfyUI pack folder holds templates/ and web/ at its top; an installed wheel carries them inside
this package (pyproject.toml) and writes its outputs under the working directory, not into site-packages.
"""
from __future__ import annotations

import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKOUT = os.path.isdir(os.path.join(ROOT, "templates"))
OUT = os.path.join(ROOT if CHECKOUT else os.getcwd(), "out")
_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def data_dir(*checkout_path: str) -> str:
    """A data folder of the checkout (`web/pages`, `templates`), or its copy in an installed package."""
    return os.path.join(ROOT, *checkout_path) if CHECKOUT else os.path.join(_PACKAGE, checkout_path[-1])
