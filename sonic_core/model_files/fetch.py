"""Fetch one file over HTTP(S) into `<final>.part`, resuming with a Range request, and rename it to `<final>` only once
its size (and sha256 when known) are verified: a half-written or wrong file never carries a name the engine loads."""
from __future__ import annotations

import errno
import os
import re
import sys
from urllib.parse import urlsplit

import requests

from ..errors import SonicFlowError
from ..publish import sha256_file

PART = ".part"
CHUNK = 1 << 20
TIMEOUT = (15, 60)    # connect, read (s): a stalled server fails instead of hanging
MAX_RESUMES = 5       # automatic resumes of one file, each after an attempt that received data


class DownloadError(SonicFlowError):
    """A model file could not be fetched or verified; the message names the file and the fix."""

    code = "download_failed"


class _Interrupted(Exception):
    """The transfer broke off; `got` bytes of this attempt are kept in the .part file."""

    def __init__(self, got: int, reason: str):
        self.got, self.reason = got, reason


def human(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


def session(token: str | None) -> requests.Session:
    """A session that sends `Authorization: Bearer` when a token is given. requests drops the header on a redirect
    to another host (Hugging Face answers with a redirect to its CDN), so the token only goes to the endpoint."""
    s = requests.Session()
    # identity: the bytes stored are the bytes sent, so Content-Length and Range offsets refer to the file itself
    s.headers.update({"User-Agent": "sonicflow-models", "Accept-Encoding": "identity"})
    if token:
        s.headers["Authorization"] = f"Bearer {token}"
    return s


def fetch(s: requests.Session, url: str, final: str, label: str, *, size: int | None, sha256: str | None,
          card: str) -> None:
    """Download `url` to `final` (label: how messages name it; card: where a gated file's licence is accepted),
    resuming a .part left by an earlier attempt or run when the expected size is known."""
    part = final + PART
    try:
        os.makedirs(os.path.dirname(final) or ".", exist_ok=True)
    except OSError as e:
        raise DownloadError(f"{label}: cannot create {os.path.dirname(final)} ({e.strerror}). "
                            "Fix: choose a --dest you can write to") from None
    if size is None or (os.path.exists(part) and os.path.getsize(part) > size):
        _remove(part)  # nothing to resume against (or a stale .part longer than the file): start over
    for attempt in range(MAX_RESUMES + 1):
        try:
            total = _attempt(s, url, part, label, size, card)
        except _Interrupted as e:
            if e.got == 0 or attempt == MAX_RESUMES:
                have = os.path.getsize(part) if os.path.exists(part) else 0
                kept = f"; {human(have)} kept in {part}, the next run resumes" if have else ""
                raise DownloadError(f"{label}: {e.reason}{kept}. Fix: check the network (or --mirror / HF_ENDPOINT), "
                                    "then run the same command again") from None
            continue
        break
    _verify(part, label, size if size is not None else total, sha256)
    os.replace(part, final)


def _attempt(s: requests.Session, url: str, part: str, label: str, size: int | None, card: str):
    """One request: append to the .part file from where it ends. Returns the file's total size (None: unknown)."""
    have = os.path.getsize(part) if os.path.exists(part) else 0
    if size is not None and have == size:
        return size  # complete already (an earlier run was stopped between download and verification)
    headers = {"Range": f"bytes={have}-"} if have else {}
    host = urlsplit(url).netloc
    try:
        r = s.get(url, headers=headers, stream=True, timeout=TIMEOUT)
    except requests.RequestException as e:
        raise _Interrupted(0, f"cannot reach {host} ({_reason(e)})") from None
    with r:
        _check_status(r, url, label, bool(s.headers.get("Authorization")), card)
        if r.status_code == 206:
            if _range_start(r) != have:
                _remove(part)
                raise DownloadError(f"{label}: the server sent another byte range than asked ({url}); the partial "
                                    "download was deleted. Fix: run the same command again")
            total = _content_range_total(r)
        else:  # 200: the whole file (no resume, or the server ignores Range): start over
            have, total = 0, _int(r.headers.get("Content-Length"))
        if r.headers.get("Content-Encoding", "identity") != "identity":
            total = None  # compressed in transit although asked not to: the length sent is not the file's
        if size is not None and total is not None and total != size:
            _remove(part)
            raise DownloadError(f"{label}: the server offers {total} bytes, SonicFlow expects {size} ({url}). Fix: "
                                "check --mirror / HF_ENDPOINT; if the file changed upstream, update SonicFlow")
        got = _write(r, part, label, have, total)
    if total is not None and have + got < total:
        raise _Interrupted(got, f"the connection closed after {human(have + got)} of {human(total)}")
    return total


def _write(r: requests.Response, part: str, label: str, have: int, total: int | None) -> int:
    from tqdm import tqdm

    got = 0
    try:
        bar = tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=label, file=sys.stderr, disable=None,
                   leave=False)  # disable=None: no bar when stderr is not a terminal
        with open(part, "ab" if have else "wb") as f, bar:
            try:
                for block in r.iter_content(CHUNK):
                    f.write(block)
                    got += len(block)
                    bar.update(len(block))
            except requests.RequestException as e:
                raise _Interrupted(got, f"the transfer broke off ({_reason(e)})") from None
            finally:
                f.flush()
                os.fsync(f.fileno())
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise DownloadError(f"{label}: the disk is full ({human(have + got)} written to {part}). Fix: free "
                                "space or pass --dest on a larger disk, then run the same command again: it "
                                "resumes") from None
        raise DownloadError(f"{label}: cannot write {part} ({e.strerror}). "
                            "Fix: choose a --dest you can write to") from None
    return got


def _check_status(r: requests.Response, url: str, label: str, token_sent: bool, card: str) -> None:
    code = r.status_code
    if code in (200, 206):
        return
    if code in (401, 403):
        fix = ("the token was refused or has no access: accept the licence at " + card + " with the account that "
               "owns the token" if token_sent else
               "accept the licence at " + card + " while logged in, create a read token at "
               "https://huggingface.co/settings/tokens and set HF_TOKEN (or pass --token)")
        raise DownloadError(f"{label}: access denied (HTTP {code}; the file is gated). Fix: {fix}")
    if code == 404:
        raise DownloadError(f"{label}: not found (HTTP 404) at {url}. Fix: check --mirror / HF_ENDPOINT (a mirror must "
                            "serve <repo>/resolve/main/<path> like huggingface.co)")
    raise DownloadError(f"{label}: the server answered HTTP {code} at {url}. Fix: try again later, or another "
                        "--mirror")


def _verify(part: str, label: str, size: int | None, sha256: str | None) -> None:
    have = os.path.getsize(part)
    if size is not None and have != size:
        _remove(part)
        raise DownloadError(f"{label}: got {have} bytes, expected {size}; the download was deleted. Fix: run the "
                            "same command again")
    if sha256 and sha256_file(part) != sha256:
        _remove(part)
        raise DownloadError(f"{label}: sha256 does not match the published one; the download was deleted. Fix: run "
                            "the same command again; if it fails again, the server (--mirror / HF_ENDPOINT) serves "
                            "another file")


def _range_start(r: requests.Response) -> int | None:
    m = re.match(r"bytes (\d+)-", r.headers.get("Content-Range", ""))
    return int(m.group(1)) if m else None


def _content_range_total(r: requests.Response) -> int | None:
    m = re.search(r"/(\d+)$", r.headers.get("Content-Range", ""))
    return int(m.group(1)) if m else None


def _int(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None


def _reason(e: requests.RequestException) -> str:
    """A requests error in a few words (its text nests the whole urllib3 chain)."""
    text = str(e)
    m = re.search(r"\[Errno -?\d+\] [^'\")]+", text)
    if m:
        return m.group(0).strip()
    if isinstance(e, requests.Timeout):
        return "timed out"
    m = re.search(r"Connection broken: [^'\"]+", text)
    return m.group(0) if m else f"{type(e).__name__}: {text[:120]}"


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
