"""`sonicflow models download|check`: put every file of the manifest in place in one of the two layouts the engine
reads, or report what is present, missing or damaged (exit 1) and the command that fixes it.

Layouts: `official` (the `checkpoints/` folder of jixiaozhong/Sonic, passed with --checkpoints) and `comfyui`
(ComfyUI's `models/sonic/`, ComfyUI_Sonic's names). Files the engine would use instead of a manifest file (a
`sonicflow convert` .safetensors beside a .pth, ComfyUI's `models/checkpoints/svd_xt*.safetensors` for SVD's VAE and
image encoder, or the other layout's name) count as present.
"""
from __future__ import annotations

import os
import shlex
import shutil
from dataclasses import dataclass

from ..publish import sha256_file
from .fetch import PART, DownloadError, fetch, human, session
from .locate import locate_weights
from .manifest import MANIFEST, ModelFile, base_url, licences_line

OFFICIAL_DEFAULT = "checkpoints"
PACK_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PRESENT, MISSING, SIZE_MISMATCH, CHECKSUM_MISMATCH = "present", "missing", "size mismatch", "checksum mismatch"


@dataclass
class Entry:
    file: ModelFile
    path: str      # where the manifest puts it
    status: str
    detail: str    # sizes, or the file the engine uses instead


def default_target(layout: str | None, dest: str | None, pack_root: str = PACK_ROOT) -> tuple[str, str]:
    """(layout, folder). Defaults: inside ComfyUI/custom_nodes/, the comfyui layout in that ComfyUI's models/sonic;
    elsewhere the official layout in ./checkpoints."""
    custom_nodes = os.path.dirname(pack_root)
    comfy_models = os.path.join(os.path.dirname(custom_nodes), "models")
    in_comfy = os.path.basename(custom_nodes) == "custom_nodes" and os.path.isdir(comfy_models)
    layout = layout or ("comfyui" if in_comfy else "official")
    if dest:
        return layout, os.path.abspath(dest)
    if layout == "official":
        return layout, os.path.abspath(OFFICIAL_DEFAULT)
    if not in_comfy:
        raise DownloadError("--layout comfyui: this SonicFlow is not inside ComfyUI/custom_nodes/, so the folder is "
                            "unknown. Fix: pass --dest ComfyUI/models/sonic")
    return layout, os.path.join(comfy_models, "sonic")


def inspect(dest: str, layout: str, files=MANIFEST) -> list[Entry]:
    """The state of every file; present files are hashed when their sha256 is known."""
    found = locate_weights([dest])[0].paths
    entries = []
    for f in files:
        path = os.path.join(dest, *f.dest(layout).split("/"))
        entries.append(Entry(f, path, *_state(f, path, found.get(f.part))))
    return entries


def _state(f: ModelFile, path: str, engine_uses: str | None) -> tuple[str, str]:
    if os.path.isfile(path):
        size = os.path.getsize(path)
        if f.size is not None and size != f.size:
            return SIZE_MISMATCH, f"{human(size)} found, {human(f.size)} expected"
        if f.sha256 and sha256_file(path) != f.sha256:
            return CHECKSUM_MISMATCH, "sha256 differs from the published one"
        return PRESENT, human(size)
    if engine_uses and os.path.isfile(engine_uses):  # a single file the engine takes for this part
        return PRESENT, f"the engine uses {engine_uses}"
    expected = human(f.size) if f.size is not None else "size unknown"
    if os.path.isfile(path + PART):
        return MISSING, f"{expected}; {human(os.path.getsize(path + PART))} downloaded so far, the download resumes"
    return MISSING, expected


def _fix_command(dest: str, layout: str) -> str:
    return f"sonicflow models download --dest {shlex.quote(dest)} --layout {layout}"


def _free_bytes(folder: str) -> int:
    while not os.path.isdir(folder):
        folder = os.path.dirname(folder)
    return shutil.disk_usage(folder).free


def check(dest: str | None = None, layout: str | None = None, files=MANIFEST, out=None) -> int:
    """Print one line per file and the totals (to `out`, default stdout); 0 when all are present and verified,
    else 1."""
    layout, dest = default_target(layout, dest)
    entries = inspect(dest, layout, files)
    print(f"Sonic engine files in {dest} ({layout} layout):", file=out)
    width = max(len(e.file.dest(layout)) for e in entries)
    for e in entries:
        print(f"  {e.status:<17} {e.file.dest(layout):<{width}}  {e.detail}", file=out)
    known = [e.file.size for e in entries if e.file.size is not None]
    present = sum(os.path.getsize(e.path) for e in entries if e.status == PRESENT and os.path.isfile(e.path))
    todo = _to_download(entries)
    unknown = len(entries) - len(known)
    extra = f" (+ {unknown} small files of unknown size)" if unknown else ""
    print(f"Disk: {human(sum(known))} for all files{extra}; {human(present)} present; {human(todo)} to download; "
          f"{human(_free_bytes(dest))} free.", file=out)
    print(licences_line(files), file=out)
    bad = [e for e in entries if e.status != PRESENT]
    if bad:
        print(f"{len(bad)} of {len(entries)} files missing or damaged. Fix: {_fix_command(dest, layout)}", file=out)
        return 1
    print(f"All {len(entries)} files present and verified.", file=out)
    return 0


def download(dest: str | None = None, layout: str | None = None, mirror: str | None = None,
             token: str | None = None, files=MANIFEST, out=None) -> int:
    """Fetch every file that is not present and verified; damaged ones are replaced once the new copy verifies."""
    if mirror and not mirror.startswith(("http://", "https://")):
        raise DownloadError(f"--mirror {mirror!r}: not an http(s) URL. Fix: e.g. --mirror https://hf-mirror.com")
    layout, dest = default_target(layout, dest)
    base = base_url(mirror)
    token = token or os.environ.get("HF_TOKEN") or None
    print(f"Sonic engine files -> {dest} ({layout} layout), from {base}", file=out)
    print(licences_line(files), file=out)
    todo = [e for e in inspect(dest, layout, files) if e.status != PRESENT]
    if not todo:
        print(f"All {len(files)} files already present and verified.", file=out)
        return 0
    need = _to_download(todo)
    free = _free_bytes(dest)
    if need > free:
        raise DownloadError(f"not enough disk space in {dest}: {human(need)} to download, {human(free)} free. Fix: "
                            "free space or pass --dest on a larger disk")
    with session(token) as s:
        for e in todo:
            label = e.file.dest(layout)
            what = human(e.file.size) if e.file.size is not None else "size unknown"
            print(f"  fetching {label} ({what}, {e.status})", file=out, flush=True)
            fetch(s, e.file.url(base), e.path, label, size=e.file.size, sha256=e.file.sha256, card=e.file.source.card)
    print(f"Done: all {len(files)} files in {dest}, verified." + _next_step(dest, layout), file=out)
    return 0


def _to_download(entries: list[Entry]) -> int:
    """Bytes still to fetch for the files not present whose size is known (less what their .part files hold)."""
    return sum(max(0, e.file.size - (os.path.getsize(e.path + PART) if os.path.isfile(e.path + PART) else 0))
               for e in entries if e.status != PRESENT and e.file.size is not None)


def _next_step(dest: str, layout: str) -> str:
    if layout == "official":
        return f" Use them: sonicflow generate --engine sonic --checkpoints {shlex.quote(dest)} ..."
    return " ComfyUI finds them in models/sonic (restart ComfyUI if it is running)."
