"""Files SonicFlow writes (the bridge's local store, Publish's local sink) are created as any program's are: 0666
less the umask. mkstemp's 0600 left results that another user's worker or web server could not read."""
from __future__ import annotations

import os
import stat

import pytest

from queue_bridge.store import LocalStore
from sonic_core.provenance import provenance
from sonic_core.publish import publish_local


@pytest.fixture(params=[0o022, 0o027])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_local_store_honours_the_umask(tmp_path, umask):
    store = LocalStore(str(tmp_path / "store"))
    store.put_bytes("outputs/ab/ab.mp4", b"video")
    assert store.put_if_absent("ledger/job-1.json", b"{}")
    for key in ("outputs/ab/ab.mp4", "ledger/job-1.json"):
        assert _mode(tmp_path / "store" / key) == 0o666 & ~umask
    assert not [n for _, _, files in os.walk(tmp_path) for n in files if n.endswith(".part")]


def test_published_video_and_sidecar_honour_the_umask(tmp_path, umask):
    src = tmp_path / "clip.mp4"
    src.write_bytes(os.urandom(1000))
    p = publish_local(str(src), str(tmp_path / "pub"), provenance("lite", {}))
    assert _mode(p.url[len("file://"):]) == 0o666 & ~umask
    assert _mode(p.sidecar_url[len("file://"):]) == 0o666 & ~umask
    assert sorted(os.listdir(tmp_path / "pub")) == sorted([p.key, p.key.replace(".mp4", ".json")])
