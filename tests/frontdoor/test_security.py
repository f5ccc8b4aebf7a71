"""The security table: each hostile request gets its status code and error code, and leaves nothing stored (no input
in the object store, no job row) and nothing queued (the jobs queue is as it was). Where the answer could leak
something (a resolved address, a password in a URL), the table also names what the answer must not contain."""
from __future__ import annotations

import io
import json
import struct
import zlib

import pytest
import requests

from devtools import hostile_media
from sonicflow_contract import MAX_URL

from .conftest import portrait_jpeg, portrait_png, speech_wav, submit


def png_bomb(side: int = 20000) -> bytes:
    """A valid PNG header claiming side x side pixels (400 MP) with a tiny compressed body."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = zlib.compress(b"\x00" * (side // 8 + 1) * 64, 9)  # a few rows; the header is what matters
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


def flac_bomb(seconds: int = 1200) -> bytes:
    """20 minutes of digital silence: a few kB of FLAC that decodes to hours' worth of samples."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="flac") as c:
        s = c.add_stream("flac", rate=8000, layout="mono")
        import numpy as np

        block = np.zeros((1, 8000), dtype=np.int16)
        for i in range(seconds):
            f = av.AudioFrame.from_ndarray(block, format="s16", layout="mono")
            f.sample_rate, f.pts = 8000, i * 8000
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return buf.getvalue()


ZIP_TAIL = b"PK\x03\x04" + b"\x14\x00" * 10 + b"<script>alert(1)</script>" * 4


@pytest.fixture(scope="module")
def key(frontdoor):
    return frontdoor.key()


def _json(fd, key, doc, headers=None):
    return requests.post(fd.url + "/v1/jobs", json=doc, headers={"X-API-Key": key, **(headers or {})}, timeout=60)


def _raw_json(fd, key, body: bytes):
    return requests.post(fd.url + "/v1/jobs", data=body, timeout=60,
                         headers={"X-API-Key": key, "Content-Type": "application/json"})


def _urls(address: str, port: str = "") -> dict:
    """Both inputs at one address literal (checked after 'resolution', which for a literal is the literal)."""
    return {"image_url": f"http://{address}{port}/a.png", "audio_url": f"http://{address}{port}/a.wav"}


def _hook(url: str):
    return lambda fd, k: submit(fd, k, data={"engine": "lite", "webhook_url": url})


# Addresses Python's is_global lets through (or that only it catches) that no fetch may reach.
NOT_PUBLIC = [
    ("cgnat-cloud-metadata-100.100.100.200", "100.100.100.200"),  # Alibaba Cloud's metadata service
    ("cgnat-100.64/10", "100.64.0.1"),  # carrier-grade NAT, tailnets
    ("ipv6-site-local-fec0", "[fec0::1]"),
    ("6to4-of-loopback-2002", "[2002:7f00:1::1]"),
    ("6to4-relay-192.88.99", "192.88.99.1"),
    ("ietf-protocol-192.0.0", "192.0.0.8"),
    ("nat64-of-10/8", "[64:ff9b::a00:1]"),
    ("nat64-local-use", "[64:ff9b:1::808:808]"),
    ("ipv4-mapped-loopback", "[::ffff:127.0.0.1]"),
    ("ipv4-compatible-loopback", "[::127.0.0.1]"),
    ("multicast", "224.0.0.1"),
    ("ipv6-multicast", "[ff0e::1]"),
]
AUDIO_TYPE = {"audio_name": "a.flac", "audio_type": "audio/flac"}

CASES = [
    # (id, request builder, status, code[, text the answer must not contain])
    ("path-traversal-image-name", lambda fd, k: submit(fd, k, image_name="../../etc/passwd.png"), 400, "bad_filename"),
    ("path-traversal-audio-name", lambda fd, k: submit(fd, k, audio_name="..\\..\\boot.wav"), 400, "bad_filename"),
    ("oversize-upload", lambda fd, k: submit(fd, k, image=portrait_png() + b"\0" * (21 * 2**20)), 413,
     "payload_too_large"),
    ("decompression-bomb-png", lambda fd, k: submit(fd, k, image=png_bomb()), 422, "image_too_large"),
    ("decompression-bomb-flac", lambda fd, k: submit(fd, k, audio=flac_bomb(), audio_name="a.flac",
                                                     audio_type="audio/flac"), 422, "audio_too_long"),
    ("polyglot-png-zip", lambda fd, k: submit(fd, k, image=portrait_png() + ZIP_TAIL), 422, "polyglot"),
    ("polyglot-jpeg-html", lambda fd, k: submit(fd, k, image=portrait_jpeg() + b"<html><script>x()</script></html>",
                                                image_name="f.jpg", image_type="image/jpeg"), 422, "polyglot"),
    ("mislabelled-html-as-png", lambda fd, k: submit(fd, k, image=b"<!DOCTYPE html><script>x()</script>" * 20),
     415, "unsupported_media"),
    ("mislabelled-jpeg-named-png", lambda fd, k: submit(fd, k, image=portrait_jpeg()), 415, "media_type_mismatch"),
    ("mislabelled-wav-in-image", lambda fd, k: submit(fd, k, image=speech_wav(), image_name="face.png"), 415,
     "unsupported_media"),
    ("truncated-png", lambda fd, k: submit(fd, k, image=portrait_png()[:5000]), 422, "media_corrupt"),
    ("ssrf-127.0.0.1", lambda fd, k: _json(fd, k, {"image_url": "http://127.0.0.1:5672/a.png",
                                                   "audio_url": "http://127.0.0.1/a.wav"}), 422, "private_address"),
    ("ssrf-metadata-169.254.169.254", lambda fd, k: _json(fd, k, {
        "image_url": "http://169.254.169.254/latest/meta-data/", "audio_url": "http://169.254.169.254/a.wav"}),
     422, "private_address"),
    ("ssrf-10/8", lambda fd, k: _json(fd, k, {"image_url": "http://10.1.2.3/a.png", "audio_url": "http://10.0.0.1/a"}),
     422, "private_address"),
    ("ssrf-ipv6-loopback", lambda fd, k: _json(fd, k, {"image_url": "http://[::1]:8080/a.png",
                                                       "audio_url": "http://[::1]/a.wav"}), 422, "private_address"),
    ("ssrf-dns-name-to-loopback", lambda fd, k: _json(fd, k, {"image_url": "http://localhost:5672/a.png",
                                                              "audio_url": "http://localhost/a.wav"}), 422,
     "private_address"),
    ("ssrf-file-scheme", lambda fd, k: _json(fd, k, {"image_url": "file:///etc/passwd", "audio_url": "s3://b/k"}),
     422, "scheme_not_allowed"),
    ("webhook-to-private", lambda fd, k: submit(fd, k, data={"engine": "lite", "webhook_url":
                                                             "http://169.254.169.254/hook"}), 422, "private_address"),
    ("webhook-url-too-long", _hook("https://example.com/" + "a" * MAX_URL), 400, "bad_field"),
    ("missing-api-key", lambda fd, k: submit(fd, ""), 401, "unauthorized"),
    ("wrong-api-key", lambda fd, k: submit(fd, k[:-4] + "AAAA"), 401, "unauthorized"),
    ("malformed-api-key", lambda fd, k: submit(fd, "Bearer nonsense"), 401, "unauthorized"),
    ("bad-parameter", lambda fd, k: submit(fd, k, data={"engine": "warp9"}), 422, "bad_parameter"),
    ("unknown-field", lambda fd, k: submit(fd, k, data={"engine": "lite", "shell": "rm -rf /"}), 400, "unknown_field"),
    # addresses that are not globally routable unicast, as URL inputs and as webhooks (issue #10 M1)
    *[(f"ssrf-{name}", lambda fd, k, a=address: _json(fd, k, _urls(a)), 422, "private_address")
      for name, address in NOT_PUBLIC],
    *[(f"webhook-{name}", lambda fd, k, a=address: _hook(f"http://{a}/hook")(fd, k), 422, "private_address")
      for name, address in NOT_PUBLIC[:4]],
    ("webhook-name-to-loopback-address-not-echoed", _hook("http://localhost:1/hook"), 422, "private_address",
     "127.0.0.1"),
    ("webhook-credentials-not-echoed", _hook("ftp://user:s3cr3t@example.com/hook"), 422, "scheme_not_allowed",
     "s3cr3t"),
    ("webhook-port-out-of-range", _hook("http://example.com:99999/hook"), 422, "scheme_not_allowed"),
    ("webhook-host-label-over-63", _hook(f"http://{'a' * 64}.example.com/hook"), 422, "input_unavailable"),
    ("url-host-label-over-63", lambda fd, k: _json(fd, k, _urls(f"{'a' * 64}.example.com")), 422,
     "input_unavailable"),
    ("url-credentials-not-echoed", lambda fd, k: _json(fd, k, _urls("user:s3cr3t@100.100.100.200")), 422,
     "private_address", "s3cr3t"),
    # audio that asks a decoder for gigabytes by rate and channels, not length (M4)
    ("audio-bomb-655350hz-8ch", lambda fd, k: submit(fd, k, audio=hostile_media.flac(655350, 8, declared_s=590),
                                                      **AUDIO_TYPE), 422, "audio_too_large"),
    ("audio-bomb-64-channels", lambda fd, k: submit(fd, k, audio=hostile_media.wav(16000, channels=64)), 422,
     "audio_too_large"),
    # JSON nested past the parser's stack, in the body and in fields (answered 400, not 500 with a stack trace)
    ("deep-json-body", lambda fd, k: _raw_json(fd, k, hostile_media.nested_json(30000)), 400, "bad_json"),
    ("deep-json-in-a-field", lambda fd, k: _raw_json(fd, k, b'{"image_url": ' + hostile_media.nested_json(30000)
                                                     + b"}"), 400, "bad_json"),
    ("deep-json-multipart-parameters", lambda fd, k: submit(fd, k, data={
        "parameters": hostile_media.nested_json(8000).decode()}), 400, "bad_field"),
    ("deep-json-multipart-metadata", lambda fd, k: submit(fd, k, data={
        "metadata": hostile_media.nested_json(2500, "a").decode()}), 400, "bad_field"),
    # the JSON path's limits hold on the multipart path too
    ("multipart-metadata-17-keys", lambda fd, k: submit(fd, k, data={
        "metadata": json.dumps({f"k{i}": i for i in range(17)})}), 400, "bad_field"),
    ("multipart-metadata-over-4KiB", lambda fd, k: submit(fd, k, data={"metadata": json.dumps({"a": "x" * 5000})}),
     400, "bad_field"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_refused_and_nothing_stored_or_queued(frontdoor, key, case):
    _name, build, status, code, *absent = case
    before_queue, before_rows = frontdoor.queued(), frontdoor.job_rows()
    r = build(frontdoor, key)
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert r.json()["error"]["code"] == code, r.text[:500]
    assert not [a for a in absent if a in r.text], r.text[:500]
    assert frontdoor.stored_inputs() == [], "an input was stored"
    assert frontdoor.job_rows() == before_rows, "a job row was written"
    assert frontdoor.queued() == before_queue, "a job was queued"


def test_rate_limit_exceeded(frontdoor):
    key = frontdoor.key(rate=1, burst=2)
    before = frontdoor.queued()
    bad = b"not an image"  # refused after the limiter: each request still spends a token
    assert submit(frontdoor, key, image=bad).status_code == 415
    assert submit(frontdoor, key, image=bad).status_code == 415
    r = submit(frontdoor, key)
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
    assert int(r.headers["Retry-After"]) >= 1
    assert frontdoor.stored_inputs() == [] and frontdoor.queued() == before


def test_daily_quota(frontdoor_factory):
    fd = frontdoor_factory()
    key = fd.key(quota=1)
    first = submit(fd, key, headers={"Idempotency-Key": "order-1"})
    assert first.status_code == 202
    r = submit(fd, key, data={"engine": "lite", "seed": "9"})
    assert r.status_code == 429 and r.json()["error"]["code"] == "quota_exceeded"
    # the retry of the request that used the last slot is answered by its job, not refused by the quota
    again = submit(fd, key, headers={"Idempotency-Key": "order-1"})
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert fd.queued() == 1 and fd.job_rows() == 1


def test_api_keys_are_stored_hashed(frontdoor):
    rec = frontdoor.key_record()
    secret = rec["api_key"].split("_", 2)[2]
    rows = frontdoor.jobstore.query("SELECT id, secret_hash FROM {p}api_keys WHERE id = ?", (rec["id"],))
    assert rows and secret not in rows[0][1] and rows[0][1] != rec["api_key"] and len(rows[0][1]) == 64
    assert frontdoor.jobstore.revoke_key(rec["id"])
    assert submit(frontdoor, rec["api_key"]).status_code == 401


def test_download_links_need_a_valid_signature(frontdoor, key):
    r = requests.get(frontdoor.url + "/v1/jobs/" + "0" * 32 + "/files/video?exp=9999999999&sig=deadbeef", timeout=10)
    assert r.status_code == 403 and r.json()["error"]["code"] == "bad_signature"
    r = requests.get(frontdoor.url + "/v1/jobs/" + "0" * 32 + "/files/video", timeout=10)
    assert r.status_code == 403


def test_other_keys_jobs_are_invisible(frontdoor):
    a, b = frontdoor.key(), frontdoor.key()
    r = submit(frontdoor, a, data={"engine": "lite", "seed": "77"})
    assert r.status_code == 202
    job_id = r.json()["id"]
    assert requests.get(f"{frontdoor.url}/v1/jobs/{job_id}", headers={"X-API-Key": b}, timeout=10).status_code == 404
    jobs = requests.get(f"{frontdoor.url}/v1/jobs", headers={"X-API-Key": b}, timeout=10).json()["jobs"]
    assert job_id not in [j["id"] for j in jobs]
