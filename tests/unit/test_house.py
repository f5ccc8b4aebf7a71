"""The house as docs/architecture.md draws it, read from the source: which part may import which, no import circles
between modules, no source file over 500 lines, thin ComfyUI adapters. Each checker is also run on planted files,
so a rule that stopped seeing anything would fail too."""
from __future__ import annotations

import ast
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMFY = {"comfy", "comfy_extras", "folder_paths", "server", "execution", "comfy_api", "nodes"}
TORCH = {"torch", "torchvision", "torchaudio", "diffusers", "transformers"}
CONTRACT = "sonicflow_contract"
# part -> (third-party top-level names it must not import, parts it may reach: only through their __init__)
RULES = {
    "nodes": (set(), {"sonic_core"}),
    "sonic_core": (COMFY, set()),
    "queue_bridge": (COMFY | TORCH, {"sonic_core"}),  # sonic_core only for the shared S3 credentials (lazy)
    "queue_bridge.front_door": (COMFY | TORCH, {"queue_bridge"}),
    CONTRACT: (COMFY | TORCH, set()),
}
MAX_LINES = 500
MAX_NODE_LINES = 200


def module_name(path: str, root: str) -> str:
    rel = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
    return rel[: -len(".__init__")] if rel.endswith(".__init__") else rel


def part_of(module: str) -> str | None:
    if module.startswith("queue_bridge.front_door"):
        return "queue_bridge.front_door"
    top = module.split(".")[0]
    return top if top in RULES else None


def project_modules(root: str) -> dict[str, str]:
    """module name -> path, for every .py of the parts."""
    found = {}
    for part in ("nodes", "sonic_core", "queue_bridge"):
        for dirpath, _, files in os.walk(os.path.join(root, part)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(dirpath, name)
                    found[module_name(path, root)] = path
    if os.path.isfile(os.path.join(root, CONTRACT + ".py")):
        found[CONTRACT] = os.path.join(root, CONTRACT + ".py")
    return found


def imports_of(module: str, path: str, known: dict) -> tuple[set[str], set[str]]:
    """(third-party top-level names, project modules) imported anywhere in the file (function bodies too: a hidden
    import is still an arrow). `from pkg import name` reaches pkg.name when that is a module, else pkg."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
    third, project = set(), set()
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [(a.name, None) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
                if len(base) == 0 and node.module:  # above the parts: the pack root (nodes -> ..sonic_core)
                    stem = node.module
            else:
                stem = node.module
            targets = [(stem, a.name) for a in node.names]
        for stem, name in targets:
            if stem in known or stem.split(".")[0] in ("nodes", "sonic_core", "queue_bridge", CONTRACT):
                full = f"{stem}.{name}" if name and f"{stem}.{name}" in known else stem
                project.add(full)
            else:
                third.add(stem.split(".")[0])
    return third, project


def crossings(root: str = ROOT) -> list[str]:
    known = project_modules(root)
    found = []
    for module, path in sorted(known.items()):
        part = part_of(module)
        banned, allowed = RULES[part]
        third, project = imports_of(module, path, known)
        bad = sorted(third & banned)
        for target in sorted(project):
            other = part_of(target)
            if other in (part, CONTRACT) or other is None:
                continue
            entry = other if other != "queue_bridge.front_door" else "queue_bridge.front_door"
            if other not in allowed or target != entry:  # another part, or past its __init__
                bad.append(target)
        if bad:
            found.append(f"{module}: {bad}")
    return found


def folder_of(module: str, known: dict) -> str | None:
    """The subfolder (package below a part's top, e.g. sonic_core.engines) a module lives in; None for a part's top
    folder, which holds the shared leaves (errors, options...) and the entry points that use the subfolders."""
    package = module if known[module].endswith("__init__.py") else module.rsplit(".", 1)[0]
    return package if package.count(".") >= 1 else None


def cycles(root: str = ROOT, folders: bool = False) -> list[list[str]]:
    """Strongly connected groups of modules (or of subfolders) importing each other (Tarjan)."""
    known = project_modules(root)
    graph = {m: {t for t in imports_of(m, p, known)[1] if t in known and t != m} for m, p in known.items()}
    if folders:
        grouped: dict = {}
        for m, targets in graph.items():
            a = folder_of(m, known)
            if a is None:
                continue
            grouped.setdefault(a, set()).update(b for t in targets if (b := folder_of(t, known)) not in (None, a))
        graph = {f: {t for t in ts if t in grouped} for f, ts in grouped.items()}
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_parts_import_only_what_the_architecture_allows():
    found = crossings()
    assert not found, "imports across docs/architecture.md's boundaries:\n" + "\n".join(found)


def test_no_import_circles_between_modules_or_folders():
    assert cycles() == []
    assert cycles(folders=True) == []


def test_no_source_file_over_500_lines_and_thin_nodes():
    tracked = subprocess.run(["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    long = {p: n for p in tracked if (n := sum(1 for _ in open(os.path.join(ROOT, p), encoding="utf-8"))) > MAX_LINES}
    assert not long, long
    fat = {p: n for p in tracked if p.startswith("nodes/")
           and (n := sum(1 for _ in open(os.path.join(ROOT, p), encoding="utf-8"))) > MAX_NODE_LINES}
    assert not fat, fat


def test_no_two_modules_share_a_name():
    """A name means one thing: no two modules (or a module and a package) of the parts are called alike."""
    names: dict = {}
    for module in project_modules(ROOT):
        if "." in module:
            names.setdefault(module.rsplit(".", 1)[-1], []).append(module)
    assert not {n: ms for n, ms in names.items() if len(ms) > 1}


def _plant(tmp_path, files: dict) -> str:
    for rel, code in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(code)
    for pkg in ("nodes", "sonic_core", "sonic_core/media", "queue_bridge", "queue_bridge/front_door"):
        init = tmp_path / pkg / "__init__.py"
        init.parent.mkdir(parents=True, exist_ok=True)
        if not init.exists():
            init.write_text("")
    return str(tmp_path)


@pytest.mark.parametrize("files, expected", [
    ({"nodes/a.py": "from ..sonic_core.media import x\n"}, ["nodes.a: ['sonic_core.media']"]),
    ({"nodes/a.py": "from ..queue_bridge import x\n"}, ["nodes.a: ['queue_bridge']"]),
    ({"sonic_core/a.py": "def f():\n    import folder_paths\n"}, ["sonic_core.a: ['folder_paths']"]),
    ({"queue_bridge/a.py": "import torch\n"}, ["queue_bridge.a: ['torch']"]),
    ({"queue_bridge/a.py": "from .front_door import app\n"}, ["queue_bridge.a: ['queue_bridge.front_door']"]),
    ({"queue_bridge/front_door/a.py": "from ..client import X\n"},
     ["queue_bridge.front_door.a: ['queue_bridge.client']"]),
    ({"queue_bridge/front_door/a.py": "from .. import X\nfrom sonicflow_contract import Y\n"}, []),
])
def test_a_crossing_is_seen(tmp_path, files, expected):
    assert crossings(_plant(tmp_path, files)) == expected


def test_a_circle_is_seen(tmp_path):
    root = _plant(tmp_path, {"queue_bridge/a.py": "from .b import x\n",
                             "queue_bridge/b.py": "def f():\n    from . import a\n",
                             "queue_bridge/c.py": "from .a import y\n"})
    assert cycles(root) == [["queue_bridge.a", "queue_bridge.b"]]
    root = _plant(tmp_path / "f", {"sonic_core/engines/a.py": "from ..media import x\n",
                                   "sonic_core/media/b.py": "from ..engines import a\n"})
    assert cycles(root, folders=True) == [["sonic_core.engines", "sonic_core.media"]]


def test_the_repository_stands_alone():
    """Nothing tracked points outside the repository (the team's notes beside it) or names a path of the machine it
    was developed on."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    notes = "shared"  # the team's notes folder; every needle is spelled in pieces so this file does not match itself
    outside = (f"{os.pardir}/{notes}", f"{notes}/specs", f"{notes}/design", "sonic-reference" + ".md",
               "/" + "work/", "/" + "root/")
    found = []
    for rel in tracked:
        try:
            text = open(os.path.join(ROOT, rel), encoding="utf-8").read()
        except (UnicodeDecodeError, IsADirectoryError):
            continue  # binary
        found += [f"{rel}: {needle}" for needle in outside if needle in text]
    assert not found, found
