"""Publishing finished videos under content-addressed names, each with a JSON provenance sidecar.

Sinks: a local folder, or any S3-compatible store (AWS, MinIO, Ceph...). S3 credentials never come from node
widgets (they would be saved inside every workflow): they come from the environment or a config file.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from dataclasses import dataclass

SINKS = ("local", "s3")


@dataclass(frozen=True)
class Published:
    url: str
    sha256: str
    size: int
    key: str  # file name (local) or object key (s3)
    sidecar_url: str


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def content_name(sha256: str, ext: str, prefix: str = "") -> str:
    return f"{prefix}{sha256[:16]}{ext}"


def sidecar_bytes(provenance: dict, sha256: str, size: int) -> bytes:
    return json.dumps({**provenance, "sha256": sha256, "size": size}, indent=2, sort_keys=True, default=str).encode()


def publish_local(path: str, folder: str, provenance: dict, prefix: str = "") -> Published:
    """Copy `path` into `folder` as <prefix><sha256[:16]>.mp4 (atomic rename) with a .json sidecar beside it."""
    digest, size = sha256_file(path), os.path.getsize(path)
    name = content_name(digest, os.path.splitext(path)[1] or ".mp4", prefix)
    target = os.path.join(folder, name)
    os.makedirs(os.path.dirname(target) or ".", exist_ok=True)
    side = os.path.splitext(target)[0] + ".json"
    for dst, write in ((target, lambda f: shutil.copyfileobj(open(path, "rb"), f)),
                       (side, lambda f: f.write(sidecar_bytes(provenance, digest, size)))):
        # created 0o666 less the umask (mkstemp's 0600 would hide the video from the web server that serves it)
        tmp = f"{dst}.{secrets.token_hex(8)}.part"
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb") as f:
            write(f)
        os.replace(tmp, dst)
    return Published(url="file://" + os.path.abspath(target), sha256=digest, size=size, key=name,
                     sidecar_url="file://" + os.path.abspath(side))

