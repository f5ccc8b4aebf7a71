""".comfyignore (what comfy-cli leaves out of the registry zip: gitignore patterns matched against the git-tracked
files) names only things that exist, keeps the development tree out, and never drops what ComfyUI loads."""
from __future__ import annotations

import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEVELOPMENT = ("tests/", "bench/", "devtools/", "docs/bench_runs/", ".ci/")
# What the pack needs inside ComfyUI: its entry, the nodes and what they import, the canvas extension, the
# translations, the canvas templates and the sample they open with.
PACK_FILES = ("__init__.py", "sonicflow_contract.py", "server_routes.py", "pyproject.toml")
PACK_FOLDERS = ("nodes/", "sonic_core/", "queue_bridge/", "web/", "locales/", "example_workflows/", "sample_media/")


def _patterns() -> list[str]:
    with open(os.path.join(ROOT, ".comfyignore"), encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]


def _tracked(*exclude: str) -> list[str]:
    """Tracked files; with `exclude` patterns, those they match (git's own gitignore matching)."""
    args = ["git", "ls-files", "--cached"] + (["--ignored", *(f"--exclude={p}" for p in exclude)] if exclude else [])
    return subprocess.run(args, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=True).stdout.splitlines()


def test_every_pattern_names_tracked_files():
    for pattern in _patterns():
        assert _tracked(pattern), f".comfyignore: {pattern!r} matches no tracked file"


def test_development_tree_is_left_out_and_pack_code_is_not():
    ignored = set(_tracked(*_patterns()))
    tracked = _tracked()
    for folder in DEVELOPMENT:
        inside = [f for f in tracked if f.startswith(folder)]
        assert inside and set(inside) <= ignored, f"{folder} is not (wholly) left out of the registry zip"
    needed = [f for f in tracked if f in PACK_FILES or f.startswith(PACK_FOLDERS)]
    assert len(needed) > 50 and not ignored & set(needed), sorted(ignored & set(needed))
