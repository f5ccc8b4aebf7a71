"""Completion webhooks: signed with HMAC-SHA256, retried with exponential back-off, and only to public addresses.

What a receiver gets (POST, JSON):

    SonicFlow-Webhook-Id:   evt_<24 hex>          the same on every retry of one event: deduplicate on it
    SonicFlow-Timestamp:    1767225600            seconds since the epoch when this attempt was signed
    SonicFlow-Signature:    v1=<hex>              HMAC-SHA256(key's webhook secret, f"{id}.{timestamp}.{body}")

A receiver checks the signature (constant-time), that the timestamp is recent (5 minutes), and that it has not seen the
id before: `verify()` below does all three, so a captured request replayed later is refused.

Targets are checked like the bridge's input URLs (`inputs.check_addresses`): http(s) only, and the name must not
resolve to a private, loopback, link-local, multicast or reserved address -- checked when the job is submitted and
again at every delivery, inside the connection's own DNS resolution (so a name that changes its answer between the
check and the connection is caught). `allow` lists host:port pairs exempt from the address check (a test receiver on
loopback); never use it in production.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import socket
import time
from urllib.parse import urlparse

from .. import InputPolicy, JobError, check_addresses

SIGNATURE_HEADER = "SonicFlow-Signature"
TIMESTAMP_HEADER = "SonicFlow-Timestamp"
ID_HEADER = "SonicFlow-Webhook-Id"
TOLERANCE_S = 300
log = logging.getLogger("sonicflow.api")


def event_id(job_id: str, status: str) -> str:
    return "evt_" + hashlib.sha256(f"{job_id}:{status}".encode()).hexdigest()[:24]


def sign(secret: str, event: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{event}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


class WebhookRejected(Exception):
    pass


def verify(secret: str, headers, body: bytes, seen: set, now: float | None = None,
           tolerance_s: float = TOLERANCE_S) -> dict:
    """What a receiver runs: signature, freshness, and first sight of the id. Returns the payload, or raises."""
    event, ts, sig = headers.get(ID_HEADER), headers.get(TIMESTAMP_HEADER), headers.get(SIGNATURE_HEADER)
    if not (event and ts and sig):
        raise WebhookRejected("missing signature headers")
    try:
        t = int(ts)
    except ValueError:
        raise WebhookRejected("bad timestamp") from None
    if not hmac.compare_digest(sign(secret, event, t, body), sig):
        raise WebhookRejected("bad signature")
    if abs((time.time() if now is None else now) - t) > tolerance_s:
        raise WebhookRejected("stale timestamp (replay?)")
    if event in seen:
        raise WebhookRejected("already received (replay)")
    seen.add(event)
    return json.loads(body)


def _allowed(host: str, port: int, allow: list) -> bool:
    return f"{host}:{port}" in allow


def check_target(url: str, allow: list | None = None) -> None:
    """JobError(scheme_not_allowed / private_address / input_unavailable) for a URL no webhook may go to."""
    p = urlparse(url)
    if p.scheme not in ("http", "https") or not p.hostname:
        raise JobError("scheme_not_allowed", f"webhook_url {url[:80]!r}: use an http(s) URL")
    if p.username or p.password:
        raise JobError("scheme_not_allowed", "webhook_url: credentials in the URL are not accepted")
    port = p.port or (443 if p.scheme == "https" else 80)
    if _allowed(p.hostname.lower(), port, allow or []):
        return
    check_addresses(p.hostname, port, InputPolicy(allow_private_networks=False))


def _resolver(allow: list):
    """An aiohttp resolver that applies the address check to the very addresses it connects to."""
    from aiohttp.abc import AbstractResolver

    class CheckedResolver(AbstractResolver):
        async def resolve(self, host, port=0, family=socket.AF_INET):
            loop = asyncio.get_running_loop()
            if not _allowed(host.lower(), port, allow):
                # Connect to exactly the addresses that passed the check: a second lookup could answer otherwise.
                checked = await loop.run_in_executor(None, check_addresses, host, port, InputPolicy())
                return [{"hostname": host, "host": ip, "port": port,
                         "family": socket.AF_INET6 if ":" in ip else socket.AF_INET, "proto": socket.IPPROTO_TCP,
                         "flags": socket.AI_NUMERICHOST} for ip in checked]
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, family=family)
            return [{"hostname": host, "host": i[4][0], "port": i[4][1], "family": i[0], "proto": i[2],
                     "flags": socket.AI_NUMERICHOST} for i in infos]

        async def close(self):
            pass

    return CheckedResolver()


class Deliverer:
    """Sends due webhooks from the job store; one attempt per due job per pass, back-off doubling per failure."""

    def __init__(self, store, blocking, document, allow: list | None = None,
                 delays_s: tuple = (5, 30, 120, 600, 1800, 3600), timeout_s: float = 10.0, poll_s: float = 1.0):
        """`blocking(fn, *args)` runs a blocking call (the job store's) off the event loop; `document(job)` is the
        job as GET /v1/jobs/{id} answers it (the service gives it: same signed, absolute links)."""
        self.store, self.blocking, self.document = store, blocking, document
        self.allow, self.delays_s = list(allow or []), tuple(delays_s)
        self.timeout_s, self.poll_s = timeout_s, poll_s
        self.session = None

    async def start(self):
        import aiohttp

        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=_resolver(self.allow), limit=20, use_dns_cache=False),
            timeout=aiohttp.ClientTimeout(total=self.timeout_s))

    async def close(self):
        if self.session:
            await self.session.close()

    async def run(self, wake: asyncio.Event):
        while True:
            try:
                await asyncio.wait_for(wake.wait(), self.poll_s)
            except asyncio.TimeoutError:
                pass
            wake.clear()
            try:
                due = await self.blocking(self.store.due_webhooks, time.time())
                await asyncio.gather(*(self.deliver(job) for job in due))
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the database may be briefly away; try again next pass
                log.warning("webhooks: this pass failed; trying again", exc_info=True)
                await asyncio.sleep(self.poll_s)

    async def deliver(self, job: dict) -> None:
        secret = await self.blocking(self.store.key_secret, job["key_id"])
        attempts = job["webhook_attempts"] + 1
        payload = {"id": event_id(job["id"], job["status"]), "type": f"job.{job['status']}", "created": time.time(),
                   "data": self.document(job)}
        body = json.dumps(payload).encode()
        ts = int(time.time())
        error = None
        try:
            await self.blocking(check_target, job["webhook_url"], self.allow)
            async with self.session.post(job["webhook_url"], data=body, allow_redirects=False, headers={
                    "Content-Type": "application/json", "User-Agent": "SonicFlow-Webhook/1",
                    ID_HEADER: payload["id"], TIMESTAMP_HEADER: str(ts),
                    SIGNATURE_HEADER: sign(secret or "", payload["id"], ts, body)}) as r:
                if 200 <= r.status < 300:
                    await self.blocking(self.store.webhook_outcome, job["id"], "delivered", attempts, None, None)
                    return
                error = f"HTTP {r.status}"
        except JobError as e:
            error = f"{e.code}: {e.message}"
            if e.code in ("private_address", "scheme_not_allowed"):  # will never succeed: stop now
                await self.blocking(self.store.webhook_outcome, job["id"], "refused", attempts, None, error)
                return
        except Exception as e:  # noqa: BLE001 - network errors: retry later
            error = f"{type(e).__name__}: {e}"[:300]
        if attempts > len(self.delays_s):
            await self.blocking(self.store.webhook_outcome, job["id"], "failed", attempts, None, error)
        else:
            await self.blocking(self.store.webhook_outcome, job["id"], "pending", attempts,
                                    time.time() + self.delays_s[attempts - 1], error)
