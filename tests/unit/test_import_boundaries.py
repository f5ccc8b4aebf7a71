"""design.md's arrows, read from the source: nodes -> sonic_core; sonic_core never imports ComfyUI or another part;
queue_bridge imports neither torch nor ComfyUI; a part reaches another only through that part's `__init__`."""
from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PARTS = {"nodes", "sonic_core", "queue_bridge"}
COMFY = {"comfy", "comfy_extras", "folder_paths", "server", "execution", "comfy_api"}
TORCH = {"torch", "torchvision", "torchaudio", "diffusers", "transformers"}

RULES = {  # part -> (third-party names it must not import, parts it may reach)
    "nodes": (set(), {"sonic_core"}),
    "sonic_core": (COMFY, set()),
    "queue_bridge": (COMFY | TORCH, {"sonic_core"}),
}


def imports(path: str, part: str, root: str = ROOT) -> tuple[set[str], set[str]]:
    """(top-level names imported absolutely, dotted paths of other parts reached) in one file of `part`.
    `from ..sonic_core import x` in nodes/a.py reaches 'sonic_core'; `from sonic_core.publish.s3 import y`
    reaches 'sonic_core.publish.s3'."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    depth = os.path.relpath(path, os.path.join(root, part)).count(os.sep) + 2  # levels up to the pack root
    names, reached = set(), set()
    for node in ast.walk(tree):
        modules = []
        if isinstance(node, ast.Import):
            modules = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            modules = [node.module]
        elif isinstance(node, ast.ImportFrom) and node.level == depth and node.module:
            modules = [node.module]  # relative, from the pack root: another part
        for m in modules:
            top = m.split(".")[0]
            if top in PARTS and top != part:
                reached.add(m)
            elif top not in PARTS:
                names.add(top)
    return names, reached


def crossings(part: str, root: str = ROOT) -> list[str]:
    banned, allowed = RULES[part]
    found = []
    for dirpath, _, files in os.walk(os.path.join(root, part)):
        for name in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(dirpath, name)
            names, reached = imports(path, part, root)
            bad = sorted(names & banned) + sorted(m for m in reached if m.split(".")[0] not in allowed or "." in m)
            if bad:
                found.append(f"{os.path.relpath(path, root)}: {bad}")
    return found


@pytest.mark.parametrize("part", sorted(RULES))
def test_part_imports_only_what_design_allows(part):
    found = crossings(part)
    assert not found, "imports across design.md's boundaries:\n" + "\n".join(found)


def test_a_crossing_is_seen(tmp_path):
    """The checker itself, on planted files: a sibling's private module, a banned part, ComfyUI, torch."""
    for part, code in (("nodes", "from ..sonic_core.sonic.memory import MODES\nfrom ..queue_bridge import x\n"),
                       ("sonic_core", "import folder_paths\nfrom .media import y\n"),
                       ("queue_bridge", "import torch\nfrom sonic_core import s3_client\n")):
        (tmp_path / part / "sub").mkdir(parents=True)
        (tmp_path / part / "sub" / "a.py").write_text(code.replace("..", "...") if part == "nodes" else code)
    assert [c.split(": ", 1)[1] for c in crossings("nodes", str(tmp_path))] == ["['queue_bridge', 'sonic_core.sonic.memory']"]
    assert [c.split(": ", 1)[1] for c in crossings("sonic_core", str(tmp_path))] == ["['folder_paths']"]
    assert [c.split(": ", 1)[1] for c in crossings("queue_bridge", str(tmp_path))] == ["['torch']"]
