"""A table of malformed jobs: each goes straight to the dead-letter queue with its reason code (no retry), gets a
failure result, and the worker never crashes (a good job still completes afterwards, on the same connection)."""
from __future__ import annotations

import io
import json
import os

import numpy as np

from .conftest import wait_until


def _job(job_id, **over):
    doc = {"version": 1, "job_id": job_id, "template": "talking_head",
           "inputs": {"image": "portrait.png", "audio": "speech.wav"},
           "parameters": {"engine": "lite", "min_resolution": 256}}
    for k, v in over.items():
        if v is None:
            doc.pop(k, None)
        else:
            doc[k] = v
    return doc


def _inputs(**over):
    base = {"image": "portrait.png", "audio": "speech.wav"}
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def _params(**over):
    return {"engine": "lite", "min_resolution": 256, **over}


# (case id, body or job factory, expected code). Job ids are the case ids where the body has one.
CASES = [
    ("bad-json", b"{this is not json", "bad_json"),
    ("json-array", b"[1, 2, 3]", "bad_json"),
    ("not-utf8", b"\xff\xfe\x00garbage", "bad_json"),
    ("version-2", lambda i: _job(i, version=2), "unsupported_version"),
    ("no-job-id", lambda i: {k: v for k, v in _job(i).items() if k != "job_id"}, "schema_violation"),
    ("job-id-traversal", lambda i: _job("../" + i), "schema_violation"),
    ("extra-field", lambda i: _job(i, priority=9), "schema_violation"),
    ("template-pattern", lambda i: _job(i, template="../etc/passwd"), "schema_violation"),
    ("negative-timeout", lambda i: _job(i, timeout_s=-5), "schema_violation"),
    ("object-parameter", lambda i: _job(i, parameters={"seed": {"a": 1}}), "schema_violation"),
    ("unknown-template", lambda i: _job(i, template="no_such_template"), "unknown_template"),
    ("missing-audio", lambda i: _job(i, inputs=_inputs(audio=None)), "missing_input"),
    ("undeclared-input", lambda i: _job(i, inputs=_inputs(video="portrait.png")), "unknown_input"),
    ("undeclared-parameter", lambda i: _job(i, parameters=_params(colour="red")), "unknown_input"),
    ("seed-as-text", lambda i: _job(i, parameters=_params(seed="abc")), "bad_parameter"),
    ("seed-as-float", lambda i: _job(i, parameters=_params(seed=1.5)), "bad_parameter"),
    ("negative-seed", lambda i: _job(i, parameters=_params(seed=-1)), "bad_parameter"),
    ("unknown-engine", lambda i: _job(i, parameters=_params(engine="warp9")), "bad_parameter"),
    ("resolution-too-big", lambda i: _job(i, parameters=_params(min_resolution=99999)), "bad_parameter"),
    ("ftp-url", lambda i: _job(i, inputs=_inputs(image="ftp://example.com/a.png")), "scheme_not_allowed"),
    ("host-not-allowed", lambda i: _job(i, inputs=_inputs(image="http://example.com/a.png")), "host_not_allowed"),
    ("loopback-url", lambda i: _job(i, inputs=_inputs(image="http://127.0.0.1:9/a.png")), "private_address"),
    ("localhost-name", lambda i: _job(i, inputs=_inputs(image="http://localhost:9/a.png")), "private_address"),
    ("link-local-metadata", lambda i: _job(i, inputs=_inputs(image="http://169.254.169.254/latest/meta-data")),
     "private_address"),
    ("private-10-net", lambda i: _job(i, inputs=_inputs(image="http://10.1.2.3/a.png")), "private_address"),
    ("ipv6-loopback", lambda i: _job(i, inputs=_inputs(image="http://[::1]:9/a.png")), "private_address"),
    # not globally routable, though Python's is_global says otherwise or only it knows (issue #10 M1)
    ("cgnat-cloud-metadata", lambda i: _job(i, inputs=_inputs(image="http://100.100.100.200/latest/meta-data")),
     "private_address"),
    ("ipv6-site-local", lambda i: _job(i, inputs=_inputs(image="http://[fec0::1]/a.png")), "private_address"),
    ("6to4-of-loopback", lambda i: _job(i, inputs=_inputs(image="http://[2002:7f00:1::1]/a.png")), "private_address"),
    ("6to4-relay", lambda i: _job(i, inputs=_inputs(image="http://192.88.99.1/a.png")), "private_address"),
    ("nat64-of-10-net", lambda i: _job(i, inputs=_inputs(image="http://[64:ff9b::a00:1]/a.png")), "private_address"),
    ("path-traversal", lambda i: _job(i, inputs=_inputs(image="../../../../etc/passwd")), "path_outside_root"),
    ("absolute-path", lambda i: _job(i, inputs=_inputs(image="/etc/hostname")), "path_outside_root"),
    ("symlink-escape", lambda i: _job(i, inputs=_inputs(image="malformed/escape.png")), "path_outside_root"),
    ("missing-file", lambda i: _job(i, inputs=_inputs(image="malformed/nothing-here.png")), "input_not_found"),
    ("audio-as-image", lambda i: _job(i, inputs=_inputs(image="speech.wav")), "unsupported_media"),
    ("text-as-audio", lambda i: _job(i, inputs=_inputs(audio="malformed/notes.txt")), "unsupported_media"),
    ("empty-image", lambda i: _job(i, inputs=_inputs(image="malformed/empty.png")), "unsupported_media"),
    ("oversize-image", lambda i: _job(i, inputs=_inputs(image="malformed/big.png")), "input_too_large"),
    ("wrong-checksum", lambda i: _job(i, inputs=_inputs(image={"url": "portrait.png", "sha256": "0" * 64})),
     "checksum_mismatch"),
    ("output-elsewhere", lambda i: _job(i, output={"url": "s3://someone-elses-bucket/x/"}), "output_not_allowed"),
    ("corrupt-png", lambda i: _job(i, inputs=_inputs(image="malformed/corrupt.png")), "media_rejected"),
    ("no-face", lambda i: _job(i, inputs=_inputs(image="malformed/noface.png")), "media_rejected"),
    ("silent-audio", lambda i: _job(i, inputs=_inputs(audio="malformed/silent.wav")), "media_rejected"),
]


def _make_files(root):
    import wave

    from PIL import Image

    d = root / "malformed"
    d.mkdir(exist_ok=True)
    if not os.path.lexists(d / "escape.png"):
        os.symlink("/etc/hostname", d / "escape.png")
    (d / "notes.txt").write_text("not audio at all\n" * 100)
    (d / "empty.png").write_bytes(b"")
    (d / "big.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * (2 * 1024 * 1024))
    (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(4000))
    buf = io.BytesIO()
    gray = np.tile(np.linspace(60, 200, 256, dtype=np.uint8), (256, 1))
    Image.fromarray(gray[..., None].repeat(3, 2)).save(buf, "PNG")
    (d / "noface.png").write_bytes(buf.getvalue())
    with wave.open(str(d / "silent.wav"), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes(b"\0\0" * 16000)


def _job_id(body: bytes):
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return doc.get("job_id") if isinstance(doc, dict) else None


def test_malformed_jobs_are_dead_lettered_with_their_reason(bridge, media_root):
    assert len(CASES) >= 25
    _make_files(media_root)
    hosts = ["127.0.0.1", "localhost", "169.254.169.254", "10.1.2.3", "::1", "100.100.100.200", "fec0::1",
             "2002:7f00:1::1", "192.88.99.1", "64:ff9b::a00:1"]
    worker = bridge.worker(*[a for h in hosts for a in ("--http-allow", h)], "--max-input-mb", "1")
    expected = {}
    for case, make, code in CASES:
        body = make if isinstance(make, bytes) else json.dumps(make(case)).encode()
        expected[case] = (body, code)
        bridge.submit(body, expect="dead")
    good = bridge.talking_job()
    bridge.submit(good)

    def dead_by_body():
        return {d["body"]: d for d in bridge.dead()}

    wait_until(lambda: len(dead_by_body()) >= len(CASES), 300, "every malformed job in the dead-letter queue")
    dead = dead_by_body()
    wrong = {}
    for case, (body, code) in expected.items():
        record = dead.get(body.decode("utf-8", "replace")[:2000])
        if record is None or record["code"] != code:
            wrong[case] = (code, record and (record["code"], record["message"]))
    assert not wrong, wrong
    # No retries for malformed jobs: each was dead-lettered on its first attempt and its first delivery.
    assert all(d["attempt"] == 1 for d in dead.values())
    # A failure result for each job that has an id; the good job succeeded after all of them.
    results = bridge.wait_results([good["job_id"]], 120)
    assert results[good["job_id"]]["status"] == "succeeded"
    failed = {r["job_id"]: r["error"]["code"] for r in bridge.results if r["status"] == "failed"}
    with_id = [case for case, (body, _code) in expected.items() if _job_id(body) == case]
    assert with_id and {c: failed.get(c) for c in with_id} == {c: expected[c][1] for c in with_id}
    assert worker.alive()
    assert sum(e["event"] == "connected" for e in worker.events()) == 1
    wait_until(lambda: bridge.queue_counts(bridge.client.topology.jobs_queue) == (0, 0), 30, "jobs queue empty")
