"""What one client's connections may hold (issue #10, M6 and Low): event streams are capped per key and end after
their lifetime; a request body that trickles in is cut off at a deadline; a JSON body that arrives in several TCP
reads is read whole; URL inputs are fetched only after the cheap checks and the quota."""
from __future__ import annotations

import http.server
import json
import socket
import threading
import time

import requests

from .conftest import portrait_png, speech_wav, submit


def _stream(fd, key: str, job_id: str):
    return requests.get(f"{fd.url}/v1/jobs/{job_id}/events", headers={"X-API-Key": key}, stream=True, timeout=30)


def test_event_streams_are_capped_per_key_and_end_after_their_lifetime(frontdoor_factory):
    fd = frontdoor_factory(env={"SONICFLOW_API_STREAMS_PER_KEY": "2", "SONICFLOW_API_STREAM_MAX_S": "3"})
    key, other = fd.key(), fd.key()
    job_id = submit(fd, key).json()["id"]
    open_streams = [_stream(fd, key, job_id) for _ in range(2)]
    assert [s.status_code for s in open_streams] == [200, 200]
    third = _stream(fd, key, job_id)
    assert third.status_code == 429 and third.json()["error"]["code"] == "too_many_streams"
    assert third.headers["Retry-After"]
    other_job = submit(fd, other).json()["id"]
    theirs = _stream(fd, other, other_job)
    assert theirs.status_code == 200  # the cap is per key
    # the job never finishes, yet each stream ends (the read timeout of 30 s would fail a stream that does not)
    for s in open_streams + [theirs]:
        events = [line for line in s.iter_lines(decode_unicode=True) if line.startswith("data: ")]
        assert json.loads(events[0][6:])["status"] == "queued"
    assert _stream(fd, key, job_id).status_code == 200  # their slots were given back


def _trickle(fd, key: str, content_type: str, opening: bytes) -> bytes:
    """Headers promising 100 kB, the body's opening, then a byte every half second; what the server answers."""
    sock = socket.create_connection(("127.0.0.1", fd.port), timeout=30)
    head = (f"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {key}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: 100000\r\n\r\n").encode()
    sock.sendall(head + opening)
    stop = threading.Event()

    def drip():
        while not stop.wait(0.5):
            try:
                sock.sendall(b"a")
            except OSError:
                return

    threading.Thread(target=drip, daemon=True).start()
    try:
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)  # socket timeout 30 s: a server that never answers fails here
            if not chunk:
                break
            answer += chunk
        return answer
    finally:
        stop.set()
        sock.close()


def test_a_body_that_trickles_in_is_cut_off(frontdoor_factory):
    fd = frontdoor_factory(env={"SONICFLOW_API_UPLOAD_DEADLINE_S": "3"})
    key = fd.key()
    for ctype, opening in (("multipart/form-data; boundary=xyz", b'--xyz\r\nContent-Disposition: form-data; '
                                                                 b'name="image"; filename="a.png"\r\n\r\n'),
                           ("application/json", b'{"image_url": "')):
        answer = _trickle(fd, key, ctype, opening)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "upload_timeout"
    assert requests.get(fd.url + "/healthz", timeout=5).status_code == 200
    assert fd.job_rows() == 0 and fd.stored_inputs() == []


class FileServer:
    """Serves a portrait and a speech track on loopback (418 for anything else) and counts the requests it gets."""

    def __init__(self):
        files = {"/face.png": portrait_png(), "/speech.wav": speech_wav(0.8)}
        self.requests = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests += 1
                body = files.get(self.path)
                self.send_response(200 if body else 418)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def doc(self, **extra) -> dict:
        return {"image_url": f"{self.base}/face.png", "audio_url": f"{self.base}/speech.wav", **extra}

    def close(self):
        self.server.shutdown()


def test_a_json_body_in_several_tcp_reads_is_read_whole(frontdoor_factory):
    files = FileServer()
    try:
        fd = frontdoor_factory(env={"SONICFLOW_API_ALLOW_PRIVATE_INPUTS": "1"})
        key = fd.key()
        body = json.dumps(files.doc(parameters={"engine": "lite"}, metadata={"note": "x" * 2000})).encode()
        sock = socket.create_connection(("127.0.0.1", fd.port), timeout=30)
        sock.sendall((f"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: {key}\r\nContent-Type: "
                      f"application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode())
        for i in range(0, len(body), 700):  # separate segments, each read on its own by the server
            sock.sendall(body[i:i + 700])
            time.sleep(0.2)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        sock.close()
        assert answer.startswith(b"HTTP/1.1 202"), answer[:400]
        assert fd.job_bodies()[0]["metadata"]["client"] == {"note": "x" * 2000}
    finally:
        files.close()


def test_urls_are_fetched_only_after_the_cheap_checks_and_the_quota(frontdoor_factory):
    files = FileServer()
    try:
        fd = frontdoor_factory(env={"SONICFLOW_API_ALLOW_PRIVATE_INPUTS": "1"})
        used_up, key = fd.key(quota=1), fd.key()
        assert submit(fd, used_up).status_code == 202
        refusals = [
            (used_up, files.doc(), 429, "quota_exceeded"),
            (key, files.doc(parameters={"engine": "warp9"}), 422, "bad_parameter"),
            (key, files.doc(webhook_url="http://169.254.169.254/hook"), 422, "private_address"),
            (key, files.doc(metadata={f"k{i}": i for i in range(17)}), 400, "bad_field"),
        ]
        for k, doc, status, code in refusals:
            r = requests.post(fd.url + "/v1/jobs", json=doc, headers={"X-API-Key": k}, timeout=30)
            assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text
        assert files.requests == 0  # nothing was fetched for a request refused anyway
        r = requests.post(fd.url + "/v1/jobs", json=files.doc(), headers={"X-API-Key": key}, timeout=30)
        assert r.status_code == 202 and files.requests == 2, r.text
    finally:
        files.close()


def test_url_refusals_say_what_was_decided_never_what_the_remote_end_answered(frontdoor_factory):
    """A front door that echoed remote status codes, connection errors or passwords would be a scanner's oracle."""
    files = FileServer()
    try:
        fd = frontdoor_factory(env={"SONICFLOW_API_ALLOW_PRIVATE_INPUTS": "1"})
        key = fd.key()
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            nobody = f"http://127.0.0.1:{closed.getsockname()[1]}/face.png"  # bound, not listening: refused
        authed = files.base.replace("http://", "http://user:s3cr3t@")
        for image_url, code in ((f"{files.base}/teapot.png", "input_not_found"), (nobody, "input_unavailable"),
                                (f"{authed}/teapot.png", "input_not_found")):
            r = requests.post(fd.url + "/v1/jobs", json=files.doc(image_url=image_url), headers={"X-API-Key": key},
                              timeout=30)
            assert r.status_code == 422 and r.json()["error"]["code"] == code, r.text
            message = r.json()["error"]["message"]
            assert not [leak for leak in ("418", "refused", "Errno", "s3cr3t", "127.0.0.1") if leak in message], \
                message
    finally:
        files.close()
