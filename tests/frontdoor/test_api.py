"""The front door's API on both job stores (SQLite, and the PostgreSQL on 127.0.0.1:5432): submit -> queued in RabbitMQ
-> progress and result messages (published as the worker publishes them) -> status, server-sent events, signed
download, signed webhook with retries; the receiver refuses a replayed webhook."""
from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import os
import threading
import time

import pytest
import requests

from queue_bridge.front_door import webhooks

from .conftest import portrait_png, speech_wav, submit, wait_until


def _events(url: str, key: str, out: list, done: threading.Event):
    with requests.get(url, headers={"X-API-Key": key}, stream=True, timeout=120) as r:
        out.append(("status", r.status_code, r.headers.get("Content-Type")))
        for line in r.iter_lines(decode_unicode=True):
            if line and line.startswith("data: "):
                out.append(json.loads(line[6:]))
    done.set()


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_job_lifecycle(db, request, frontdoor_factory, receiver):
    pg = request.getfixturevalue("postgres") if db == "postgres" else None
    fd = frontdoor_factory(db, pg, webhook_allow=[f"127.0.0.1:{receiver.port}"],
                           env={"SONICFLOW_API_WEBHOOK_DELAYS": "0.5,1,2"})
    rec = fd.key_record()
    key, receiver.secret = rec["api_key"], rec["webhook_secret"]
    receiver.fail_first = 1  # the first delivery fails: the webhook is retried

    r = submit(fd, key, data={"engine": "lite", "seed": "5", "min_resolution": "256", "webhook_url": receiver.url},
               headers={"Idempotency-Key": "order-17"})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] == "queued" and r.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert job["parameters"] == {"engine": "lite", "seed": 5, "min_resolution": 256}
    assert job["inputs"]["audio"]["duration_s"] == pytest.approx(1.2, abs=0.01)
    assert job["inputs"]["image"]["width"] == 512

    # Idempotency-Key: the same request gives the same job; a different one under the same key is a conflict.
    again = submit(fd, key, data={"engine": "lite", "seed": "5", "min_resolution": "256", "webhook_url": receiver.url},
                   headers={"Idempotency-Key": "order-17"})
    assert again.status_code == 200 and again.json()["id"] == job["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    clash = submit(fd, key, data={"engine": "lite", "seed": "6"}, headers={"Idempotency-Key": "order-17"})
    assert clash.status_code == 409 and clash.json()["error"]["code"] == "idempotency_conflict"

    # Exactly one job in RabbitMQ, pointing at the stored inputs by content hash.
    bodies = fd.job_bodies()
    assert [b["job_id"] for b in bodies] == [job["id"]]
    image = bodies[0]["inputs"]["image"]
    assert image["sha256"] == hashlib.sha256(portrait_png()).hexdigest()
    assert image["url"].startswith("file://") and os.path.isfile(image["url"][len("file://"):])
    assert bodies[0]["parameters"] == {"engine": "lite", "seed": 5, "min_resolution": 256}

    events: list = []
    done = threading.Event()
    threading.Thread(target=_events, args=(fd.url + job["events_url"], key, events, done), daemon=True).start()
    wait_until(lambda: len(events) >= 2, 30, "the first server-sent event")

    fd.publish_progress(job["id"], 5, 10)
    status_url = fd.url + job["status_url"]
    get = lambda: requests.get(status_url, headers={"X-API-Key": key}, timeout=10).json()
    wait_until(lambda: get()["status"] == "running", 30, "running after a progress event")
    assert get()["progress"] == 0.5

    video = b"\x00\x00\x00\x18ftypmp42" + os.urandom(5000)
    digest = hashlib.sha256(video).hexdigest()
    path = fd.store / "outputs" / digest[:2] / f"{digest}.mp4"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(video)
    result = {"version": 1, "job_id": job["id"], "status": "succeeded", "template": "talking_head", "engine": "lite",
              "outputs": [{"name": "video", "url": f"file://{path}", "sha256": digest, "size": len(video),
                           "content_type": "video/mp4"}], "values": {}, "cache_hit": False}
    fd.publish_result(result)
    wait_until(lambda: get()["status"] == "succeeded", 30, "succeeded after the result message")
    final = get()
    assert final["engine"] == "lite" and final["progress"] == 1.0
    link = final["results"][0]["url"]
    got = requests.get(fd.url + link, timeout=10)
    assert got.status_code == 200 and got.content == video and got.headers["Content-Type"] == "video/mp4"
    part = requests.get(fd.url + link, headers={"Range": "bytes=0-99"}, timeout=10)
    assert part.status_code == 206 and part.content == video[:100]
    assert "attachment" in requests.get(fd.url + link + "&download=1", timeout=10).headers["Content-Disposition"]

    # The event stream ended after the final state and saw queued -> running -> succeeded.
    assert done.wait(30), "the event stream did not end after the job finished"
    assert events[0][1:] == (200, "text/event-stream")
    statuses = [e["status"] for e in events[1:]]
    assert statuses[0] == "queued" and statuses[-1] == "succeeded" and "running" in statuses

    # A duplicate result message (at-least-once delivery) changes nothing.
    seq_before = fd.jobstore.get_job(job["id"])["seq"]
    fd.publish_result({**result, "engine": "sonic"})
    fd.publish_progress(job["id"], 1, 10)
    time.sleep(1.0)  # give a wrong update the chance to land (nothing is asserted about time)
    assert fd.jobstore.get_job(job["id"])["seq"] == seq_before and get()["engine"] == "lite"

    # The webhook: first attempt failed (503), the retry was accepted with a valid signature.
    wait_until(lambda: receiver.accepted, 60, "a verified webhook delivery")
    payload = receiver.accepted[0]
    assert payload["type"] == "job.succeeded" and payload["data"]["id"] == job["id"]
    assert len(receiver.raw) == 2 and receiver.raw[0][0]["webhook-id"] == payload["id"]
    # the previous release's headers come too (this release only), signed with the secret's text as before
    headers, body = receiver.raw[-1]
    signed = f"{payload['id']}.{headers['webhook-timestamp']}.".encode() + body
    assert headers["sonicflow-webhook-id"] == payload["id"]
    assert headers["sonicflow-signature"] == "v1=" + hmac.new(receiver.secret.encode(), signed, "sha256").hexdigest()
    wait_until(lambda: get()["webhook"]["state"] == "delivered", 30, "webhook state delivered")
    assert get()["webhook"]["attempts"] == 2

    # A captured delivery replayed verbatim is refused by the receiver (same id), and so is a tampered or old one.
    headers, body = receiver.raw[-1]
    replay = requests.post(receiver.url, data=body, headers=headers, timeout=10)
    assert replay.status_code == 409
    tampered = requests.post(receiver.url, data=body.replace(b"succeeded", b"failed"), headers=headers, timeout=10)
    assert tampered.status_code == 401
    old_ts = int(time.time()) - 3600
    stale_id = "evt_" + "1" * 24
    stale = requests.post(receiver.url, data=body, timeout=10, headers={
        **headers, **webhooks.signed_headers(receiver.secret, stale_id, old_ts, body, legacy=False)})
    assert stale.status_code == 401
    assert len(receiver.accepted) == 1

    listed = requests.get(fd.url + "/v1/jobs", headers={"X-API-Key": key}, timeout=10).json()["jobs"]
    assert [j["id"] for j in listed] == [job["id"]]


def test_failed_job_and_json_url_inputs(frontdoor_factory, tmp_path):
    """URL inputs are fetched by the front door itself, checked, and stored like uploads (loopback allowed here by
    the test-only switch); a failure result shows its code."""
    (tmp_path / "face.png").write_bytes(portrait_png())
    (tmp_path / "speech.wav").write_bytes(speech_wav(0.8))
    handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **kw)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        fd = frontdoor_factory(env={"SONICFLOW_API_ALLOW_PRIVATE_INPUTS": "1"})
        key = fd.key()
        r = requests.post(fd.url + "/v1/jobs", headers={"X-API-Key": key}, timeout=30, json={
            "image_url": f"{base}/face.png", "audio_url": f"{base}/speech.wav", "parameters": {"engine": "lite"},
            "metadata": {"order": 17}})
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["inputs"]["audio"]["duration_s"] == pytest.approx(0.8, abs=0.01)
        assert len(fd.stored_inputs()) == 2
        body = fd.job_bodies()[0]
        assert body["metadata"]["client"] == {"order": 17}
        missing = requests.post(fd.url + "/v1/jobs", headers={"X-API-Key": key}, timeout=30, json={
            "image_url": f"{base}/nope.png", "audio_url": f"{base}/speech.wav"})
        assert missing.status_code == 422 and missing.json()["error"]["code"] == "input_not_found"

        fd.publish_result({"version": 1, "job_id": job["id"], "status": "failed", "template": "talking_head",
                           "error": {"code": "media_rejected", "message": "no face found", "retryable": False}})
        get = lambda: requests.get(fd.url + job["status_url"], headers={"X-API-Key": key}, timeout=10).json()
        wait_until(lambda: get()["status"] == "failed", 30, "failed after the failure result")
        assert get()["error"]["code"] == "media_rejected" and get()["results"] == []
    finally:
        server.shutdown()


def test_openapi_document(frontdoor):
    doc = requests.get(frontdoor.url + "/v1/openapi.json", timeout=10).json()
    assert doc["openapi"].startswith("3.1")
    assert {"/v1/jobs", "/v1/jobs/{id}", "/v1/jobs/{id}/events"} <= set(doc["paths"])


def test_pages_are_served_with_a_strict_policy(frontdoor):
    for path in ("/", "/jobs", "/jobs/" + "0" * 32):
        r = requests.get(frontdoor.url + path, timeout=10)
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
        assert "default-src 'self'" in r.headers["Content-Security-Policy"]
        assert "http://" not in r.text and "https://" not in r.text.replace("https://example.com", "")
    assert requests.get(frontdoor.url + "/static/upload.mjs", timeout=10).status_code == 200
    # sent as written (requests would drop the ..): a file that exists two folders up is not served
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", frontdoor.port, timeout=10)
    conn.request("GET", "/static/../../queue_bridge/front_door/app.py")
    assert conn.getresponse().status in (403, 404)


def test_a_started_front_door_loads_no_heavy_library(frontdoor_factory, tmp_path):
    """A real front door, serving an upload (decoded with Pillow and PyAV) and a read, then stopped: it never loaded
    torch, OpenCV, SciPy or ComfyUI."""
    import sys

    modules = tmp_path / "modules.txt"
    fd = frontdoor_factory(launcher=[sys.executable, "-m", "devtools.record_modules", str(modules)])
    key = fd.key()
    r = submit(fd, key)
    assert r.status_code == 202, r.text
    assert requests.get(fd.url + "/v1/jobs", headers={"X-API-Key": key}, timeout=10).status_code == 200
    fd.proc.terminate()
    assert fd.proc.wait(30) == 0
    loaded = set(modules.read_text().split())
    assert {"queue_bridge.front_door.app", "aiohttp", "PIL", "av"} <= loaded  # it really served
    assert not {"torch", "cv2", "scipy", "comfy", "folder_paths"} & loaded
