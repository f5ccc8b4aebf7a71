"""What comes back to customers (issue #10, Low): one tenant's slow webhook receivers no longer hold up another
tenant's webhooks (deliveries run concurrently, capped per key); a result the job store cannot take is dropped and
logged instead of being requeued for ever in front of every later result; a key made before the Standard Webhooks
format still signs verifiably."""
from __future__ import annotations

import asyncio
import base64
import http.server
import secrets
import threading
import uuid

import pytest
import standardwebhooks

from devtools import hostile_media
from queue_bridge import JobError
from queue_bridge.front_door import webhooks

from .conftest import submit, wait_until


class Receivers:
    """/slow holds each delivery until released (it counts how many it holds at once); /fast answers at once."""

    def __init__(self):
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.holding = self.most_held = 0
        self.fast: list = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                if self.path == "/slow":
                    with outer.lock:
                        outer.holding += 1
                        outer.most_held = max(outer.most_held, outer.holding)
                    outer.release.wait(60)
                    with outer.lock:
                        outer.holding -= 1
                else:
                    outer.fast.append(self.headers[webhooks.ID_HEADER])
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self):
        self.release.set()
        self.server.shutdown()


def _succeed(fd, job_id: str) -> None:
    fd.publish_result({"version": 1, "job_id": job_id, "status": "succeeded", "outputs": [], "values": {}})


def test_a_slow_tenant_does_not_hold_up_another_tenants_webhooks(frontdoor_factory):
    rx = Receivers()
    try:
        fd = frontdoor_factory(webhook_allow=[f"127.0.0.1:{rx.port}"], env={"SONICFLOW_API_WEBHOOK_PER_KEY": "2"})
        slow_key, fast_key = fd.key(), fd.key()
        slow = [submit(fd, slow_key, data={"engine": "lite", "seed": str(i), "webhook_url": rx.url("/slow")}).json()
                ["id"] for i in range(4)]
        fast = submit(fd, fast_key, data={"engine": "lite", "webhook_url": rx.url("/fast")}).json()["id"]
        for job_id in slow:
            _succeed(fd, job_id)
        wait_until(lambda: rx.holding == 2, 30, "two of the slow tenant's deliveries in flight")
        _succeed(fd, fast)
        wait_until(lambda: rx.fast, 30, "the other tenant's webhook delivered")
        # ...while the slow tenant's first deliveries were still in flight: none had even failed yet
        attempts = [fd.jobstore.get_job(j)["webhook_attempts"] for j in slow]
        assert attempts == [0, 0, 0, 0] and rx.holding == 2 and rx.most_held == 2
        rx.release.set()
        wait_until(lambda: all(fd.jobstore.get_job(j)["webhook_state"] == "delivered" for j in slow), 60,
                   "the slow tenant's webhooks delivered once released")
        assert rx.most_held == 2  # never more than its cap at once
    finally:
        rx.close()


def test_a_result_the_store_refuses_does_not_stall_the_results_behind_it(frontdoor_factory, postgres):
    """PostgreSQL text cannot hold NUL: a result whose job id has one makes the store raise. Requeued, such results
    filled the follower's prefetch window (and it slept a second on each), so the results behind them never came. A
    body nested past the JSON parser's stack is acknowledged and ignored too."""
    fd = frontdoor_factory("postgres", postgres)
    key = fd.key()
    job_id = submit(fd, key).json()["id"]
    for _ in range(60):
        _succeed(fd, f"{uuid.uuid4().hex}\x00")
    conn, ch = fd.channel()
    try:  # and one nested past the JSON parser's stack
        ch.basic_publish(f"{fd.prefix}.results", f"result.{job_id}", hostile_media.nested_json(100000))
    finally:
        conn.close()
    _succeed(fd, job_id)
    wait_until(lambda: fd.jobstore.get_job(job_id)["status"] == "succeeded", 30, "the good result applied")
    conn, ch = fd.channel()
    try:
        wait_until(lambda: ch.queue_declare(f"{fd.prefix}.api.results", passive=True).method.message_count == 0, 30,
                   "the refused results acknowledged, not requeued")
    finally:
        conn.close()
    assert "cannot be stored; dropped" in fd.log_tail(400)


def test_a_secret_from_before_signs_the_standard_way_and_the_old_headers_can_be_turned_off(frontdoor_factory):
    """A key made by the previous release holds a URL-safe, unpadded secret: its deliveries verify with the standard
    library once the receiver spells the same bytes in standard base64; with the legacy headers off, only the
    standard ones come."""
    got: list = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            got.append((dict(self.headers), self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        fd = frontdoor_factory(webhook_allow=[f"127.0.0.1:{port}"],
                               env={"SONICFLOW_API_WEBHOOK_LEGACY_HEADERS": "0"})
        rec = fd.key_record()
        old_secret = "whsec_" + secrets.token_urlsafe(32)  # how the previous release made them
        fd.jobstore.execute("UPDATE {p}api_keys SET webhook_secret = ? WHERE id = ?", (old_secret, rec["id"]))
        job_id = submit(fd, rec["api_key"], data={"engine": "lite", "webhook_url": f"http://127.0.0.1:{port}/h"}).json()["id"]
        _succeed(fd, job_id)
        wait_until(lambda: got, 30, "the webhook delivered")
        headers, body = got[0]
        raw = old_secret[len("whsec_"):]
        standard = "whsec_" + base64.b64encode(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))).decode()
        assert standardwebhooks.Webhook(standard).verify(body, headers)["data"]["id"] == job_id
        assert not {k.lower() for k in headers} & {h.lower() for h in webhooks.LEGACY_HEADERS}
        # a new key's secret is standard base64 of 32 bytes, which the library takes as it is
        assert len(base64.b64decode(rec["webhook_secret"][len("whsec_"):], validate=True)) == 32
    finally:
        server.shutdown()


def test_the_delivery_resolver_checks_the_addresses_it_connects_to():
    """Inside the webhook connection's own DNS resolution (a name that answered a public address when the job was
    submitted may answer a private one now); it named a function that did not exist, so every delivery to a name
    failed with a NameError."""
    resolver = webhooks._resolver([])
    with pytest.raises(JobError) as e:
        asyncio.run(resolver.resolve("localhost", 80))
    assert e.value.code == "private_address"
