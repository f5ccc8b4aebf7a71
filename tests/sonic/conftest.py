"""Fixtures for the Sonic model tests: a tiny official-layout checkpoint folder (and the ComfyUI_Sonic layout
of the same weights), generated once per session by devtools/make_tiny_checkpoints.py."""
from __future__ import annotations

import os
import shutil

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY_CONFIG = os.path.join(ROOT, "tests", "data", "sonic_tiny_config")
TINY_SVD_CONFIG = os.path.join(TINY_CONFIG, "stable-video-diffusion-img2vid-xt")
SPECS = os.path.join(ROOT, "tests", "data")  # sonic_unet_*_keys.tsv: the official unet.pth's keys


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> str:
    """OUT/ (official layout) and OUT/comfyui/models/{sonic,checkpoints} (ComfyUI_Sonic layout), seed 0."""
    from devtools.make_tiny_checkpoints import main

    out = str(tmp_path_factory.mktemp("sonic_tiny"))
    assert main([out, "--seed", "0", "--layout", "both"]) == 0
    return out


@pytest.fixture()
def tiny_copy(tiny_root, tmp_path) -> str:
    """A private copy of the official-layout folder, for tests that damage files."""
    dst = tmp_path / "checkpoints"
    shutil.copytree(tiny_root, dst, ignore=shutil.ignore_patterns("comfyui"))
    return str(dst)
