"""The front door for its operators, on a real process: Prometheus metrics and the probes on their own listener (the
bind address a setting), and SIGTERM: the listener closes, an event stream ends, the upload in flight still finishes
(its job queued), then the process exits 0."""
from __future__ import annotations

import os
import re
import signal
import socket

import requests

from .conftest import free_port, portrait_png, speech_wav, submit, wait_until
from .webhook_receiver import Receiver


def _sample(text: str, name: str, **labels) -> float | None:
    """One sample of the Prometheus text: name{labels} value (labels in any order)."""
    for line in text.splitlines():
        m = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line)
        if m and m.group(1) == name:
            found = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
            if found == {k: str(v) for k, v in labels.items()}:
                return float(m.group(3))
    return None


def test_metrics_and_probes_on_their_own_listener(frontdoor_factory):
    port = free_port()
    # 127.0.0.2 is loopback too, but not 127.0.0.1: a listener there proves the bind address is the setting's
    receiver = Receiver()
    try:
        fd = frontdoor_factory(webhook_allow=[f"127.0.0.1:{receiver.port}"], env={
            "SONICFLOW_API_METRICS_PORT": str(port), "SONICFLOW_API_METRICS_HOST": "127.0.0.2"})
        ops = f"http://127.0.0.2:{port}"
        for path in ("/metrics", "/livez", "/readyz", "/healthz"):  # not on the public listener
            assert requests.get(fd.url + path, timeout=10).status_code == 404, path
        try:
            requests.get(f"http://127.0.0.1:{port}/livez", timeout=5)
            raise AssertionError("the ops listener answered on 127.0.0.1")
        except requests.ConnectionError:
            pass
        live, ready = requests.get(ops + "/livez", timeout=10), requests.get(ops + "/readyz", timeout=10)
        assert live.status_code == 200 and live.json() == {"status": "ok", "webhooks": True, "upkeep": True,
                                                           "publishers": True, "follower": True}
        assert ready.status_code == 200 and ready.json()["store"] is True and ready.json()["broker"] is True
        assert requests.get(ops + "/healthz", timeout=10).json().keys() == ready.json().keys()

        rec = fd.key_record()
        key, receiver.secret = rec["api_key"], rec["webhook_secret"]
        job = submit(fd, key, data={"engine": "lite", "webhook_url": receiver.url}).json()
        assert requests.get(f"{fd.url}/v1/jobs/{'0' * 32}", headers={"X-API-Key": key}, timeout=10).status_code == 404
        fd.publish_result({"version": 1, "job_id": job["id"], "status": "failed",
                           "error": {"code": "media_rejected", "message": "no face", "retryable": False}})
        wait_until(lambda: receiver.accepted, 30, "the webhook delivered")

        def text():
            return requests.get(ops + "/metrics", timeout=10).text

        wait_until(lambda: _sample(text(), "sonicflow_api_webhooks_total", outcome="delivered") == 1, 30,
                   "the delivery counted")
        m = text()
        assert _sample(m, "sonicflow_api_requests_total", route="/v1/jobs", method="POST", status="202") == 1
        assert _sample(m, "sonicflow_api_requests_total", route="/v1/jobs/{id}", method="GET", status="404") == 1
        assert _sample(m, "sonicflow_api_request_duration_seconds_count", route="/v1/jobs", method="POST") == 1
        assert _sample(m, "sonicflow_api_publishes_total", outcome="ok") == 1
        # the job was consumed by nobody: the jobs queue holds it (the depth is sampled every 5 s)
        wait_until(lambda: _sample(text(), "sonicflow_api_queue_depth", queue=f"{fd.prefix}.jobs") == 1, 30,
                   "the jobs queue's depth seen")
    finally:
        receiver.close()


def _upload_request(fd, key: str) -> tuple[bytes, bytes]:
    """The head and the body of a real multipart upload, to send by hand."""
    prepared = requests.Request("POST", fd.url + "/v1/jobs", headers={"X-API-Key": key}, data={"engine": "lite"},
                                files={"image": ("face.png", portrait_png(), "image/png"),
                                       "audio": ("speech.wav", speech_wav(), "audio/wav")}).prepare()
    head = "POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in prepared.headers.items()) + "\r\n"
    return head.encode(), prepared.body


def test_sigterm_finishes_requests_in_flight_ends_streams_and_exits(frontdoor_factory):
    fd = frontdoor_factory()
    key, uploader = fd.key(), fd.key_record()
    job = submit(fd, key).json()
    stream = requests.get(f"{fd.url}/v1/jobs/{job['id']}/events", headers={"X-API-Key": key}, stream=True,
                          timeout=30)
    lines = stream.iter_lines(decode_unicode=True)
    assert next(line for line in lines if line.startswith("data: "))

    head, body = _upload_request(fd, uploader["api_key"])
    sock = socket.create_connection(("127.0.0.1", fd.port), timeout=60)
    sock.sendall(head + body[: len(body) // 2])  # half the upload: its handler is reading the body
    wait_until(lambda: fd.jobstore.query("SELECT 1 FROM {p}rate_limits WHERE name = ?",
                                         (f"{uploader['id']}:submit",)), 30, "the upload's handler running")
    os.kill(fd.proc.pid, signal.SIGTERM)

    # the stream ends, with no further event (the read timeout of 30 s would fail one that stayed open)
    assert [line for line in lines if line.startswith("data: ")] == []

    def refused():
        try:
            socket.create_connection(("127.0.0.1", fd.port), timeout=2).close()
            return False
        except OSError:
            return True

    wait_until(refused, 30, "the listener closed")
    assert fd.proc.poll() is None  # ...while the upload is still in flight
    sock.sendall(body[len(body) // 2:])
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    sock.close()
    assert answer.startswith(b"HTTP/1.1 202"), answer[:300]
    assert fd.proc.wait(60) == 0
    queued = {b["job_id"] for b in fd.job_bodies()}
    assert re.search(rb'"id": "([0-9a-f]{32})"', answer).group(1).decode() in queued
