"""Completion webhooks in the Standard Webhooks format (standardwebhooks.com), retried with exponential back-off,
and only to public addresses.

What a receiver gets (POST, JSON):

    webhook-id:         evt_<24 hex>        the same on every retry of one event: deduplicate on it
    webhook-timestamp:  1767225600          seconds since the epoch when this attempt was signed
    webhook-signature:  v1,<base64>         HMAC-SHA256 keyed with the secret's bytes, over f"{id}.{timestamp}.{body}"

The key's webhook secret reads `whsec_<base64 of 32 random bytes>`; the signing key is those bytes, as the standard
says, so receivers verify with any Standard Webhooks library (`standardwebhooks` on PyPI and npm: it checks the
signature in constant time and that the timestamp is within 5 minutes; the receiver remembers the ids it has seen).
Secrets made before this format are the same 32 bytes in URL-safe base64 without padding: they sign the same way,
and a receiver gives the standard library their standard-base64 spelling (docs/api.md).

For one release the old headers come too (`SONICFLOW_API_WEBHOOK_LEGACY_HEADERS`, on by default), so receivers that
check them keep working while they move: `SonicFlow-Webhook-Id`, `SonicFlow-Timestamp` and `SonicFlow-Signature:
v1=<hex HMAC-SHA256 keyed with the secret's text>` over the same string.

Targets are checked like the bridge's input URLs (`inputs.check_addresses`): http(s) only, and the name must
resolve to globally routable unicast addresses only -- checked when the job is submitted and again at every
delivery, inside the connection's own DNS resolution (so a name that changes its answer between the check and the
connection is caught). `allow` lists host:port pairs exempt from the address check (a test receiver on loopback);
never use it in production.

Deliveries run concurrently, at most `per_key` at once for one API key and `total` for everyone, so one tenant's
slow receivers delay only that tenant's webhooks.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import secrets
import socket
import time
from urllib.parse import urlparse

from .. import InputPolicy, JobError, check_addresses

ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER = "webhook-id", "webhook-timestamp", "webhook-signature"
LEGACY_HEADERS = ("SonicFlow-Webhook-Id", "SonicFlow-Timestamp", "SonicFlow-Signature")  # for one release
SECRET_PREFIX = "whsec_"
log = logging.getLogger("sonicflow.api")


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_bytes(secret: str) -> bytes:
    """The signing key: the bytes the secret spells, in standard or (secrets made before) URL-safe base64."""
    text = secret[len(SECRET_PREFIX):] if secret.startswith(SECRET_PREFIX) else secret
    text = text.rstrip("=").replace("+", "-").replace("/", "_")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def event_id(job_id: str, status: str) -> str:
    return "evt_" + hashlib.sha256(f"{job_id}:{status}".encode()).hexdigest()[:24]


def signed_headers(secret: str, event: str, timestamp: int, body: bytes, legacy: bool) -> dict:
    """The Standard Webhooks headers of one attempt (and the old ones, when `legacy`)."""
    signed = f"{event}.{timestamp}.".encode() + body
    mac = hmac.new(secret_bytes(secret), signed, hashlib.sha256).digest()
    headers = {ID_HEADER: event, TIMESTAMP_HEADER: str(timestamp),
               SIGNATURE_HEADER: "v1," + base64.b64encode(mac).decode()}
    if legacy:
        old = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        headers.update(zip(LEGACY_HEADERS, (event, str(timestamp), "v1=" + old), strict=True))
    return headers


def _allowed(host: str, port: int, allow: list) -> bool:
    return f"{host}:{port}" in allow


def check_target(url: str, allow: list | None = None) -> None:
    """JobError(scheme_not_allowed / private_address / input_unavailable) for a URL no webhook may go to."""
    try:
        p = urlparse(url)
        port = p.port or (443 if p.scheme == "https" else 80)
    except ValueError:  # a port out of range, a bad IPv6 literal
        raise JobError("scheme_not_allowed", "not a valid http(s) URL") from None
    if p.scheme not in ("http", "https") or not p.hostname:
        raise JobError("scheme_not_allowed", "use an http(s) URL")
    if p.username or p.password:
        raise JobError("scheme_not_allowed", "credentials in the URL are not accepted")
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
    """Sends due webhooks from the job store, each on its own task (at most `per_key` in flight for one API key and
    `total` in all); back-off per failure from `delays_s`."""

    def __init__(self, store, blocking, document, allow: list | None = None,
                 delays_s: tuple = (5, 30, 120, 600, 1800, 3600), timeout_s: float = 10.0, poll_s: float = 1.0,
                 per_key: int = 4, total: int = 32, legacy_headers: bool = True, on_outcome=None):
        """`blocking(fn, *args)` runs a blocking call (the job store's) off the event loop; `document(job)` is the
        job as GET /v1/jobs/{id} answers it (the service gives it: same signed, absolute links);
        `on_outcome(state)` is told each attempt's outcome (delivered, retry, failed, refused: the metrics)."""
        self.store, self.blocking, self.document = store, blocking, document
        self.allow, self.delays_s = list(allow or []), tuple(delays_s)
        self.timeout_s, self.poll_s, self.per_key, self.total = timeout_s, poll_s, per_key, total
        self.legacy_headers, self.on_outcome = legacy_headers, on_outcome or (lambda state: None)
        self.session = None
        self.in_flight: dict[str, asyncio.Task] = {}  # job id -> its delivery
        self.by_key: dict[str, int] = {}

    async def start(self):
        import aiohttp

        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=_resolver(self.allow), limit=self.total, use_dns_cache=False),
            timeout=aiohttp.ClientTimeout(total=self.timeout_s))

    async def close(self):
        for task in list(self.in_flight.values()):
            task.cancel()
        await asyncio.gather(*self.in_flight.values(), return_exceptions=True)
        if self.session:
            await self.session.close()

    def state(self) -> dict:
        return {"in_flight": len(self.in_flight), "total": self.total, "per_key": self.per_key}

    async def run(self, wake: asyncio.Event):
        while True:
            try:
                await asyncio.wait_for(wake.wait(), self.poll_s)
            except asyncio.TimeoutError:
                pass
            wake.clear()
            if len(self.in_flight) >= self.total:
                continue
            try:
                due = await self.blocking(self.store.due_webhooks, time.time(), self.total - len(self.in_flight),
                                          self.per_key, list(self.in_flight))
            except asyncio.CancelledError:
                raise
            except Exception:  # the database may be briefly away; try again next pass
                log.warning("webhooks: reading due deliveries failed; trying again", exc_info=True)
                await asyncio.sleep(self.poll_s)
                continue
            picked, by_key = [], dict(self.by_key)
            for job in due:
                key = job["key_id"]
                if job["id"] in self.in_flight or by_key.get(key, 0) >= self.per_key:
                    continue
                if len(self.in_flight) + len(picked) >= self.total:
                    break
                by_key[key] = by_key.get(key, 0) + 1
                picked.append(job)
            try:  # only what is sent now is claimed: the rest stays due for the next pass (or another front door)
                claimed = await self.blocking(self.store.claim_webhooks, picked, time.time(),
                                              self.timeout_s + 60) if picked else []
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("webhooks: claiming due deliveries failed; trying again", exc_info=True)
                continue
            for job in claimed:
                self.by_key[job["key_id"]] = self.by_key.get(job["key_id"], 0) + 1
                self.in_flight[job["id"]] = asyncio.create_task(self._one(job, wake))

    async def _one(self, job: dict, wake: asyncio.Event) -> None:
        try:
            await self.deliver(job)
        except asyncio.CancelledError:
            raise
        except Exception:  # the database failed to record the outcome: it stays due, tried again
            log.warning("webhooks: delivering %s failed; trying again", job["id"], exc_info=True)
        finally:
            del self.in_flight[job["id"]]
            self.by_key[job["key_id"]] -= 1
            if not self.by_key[job["key_id"]]:
                del self.by_key[job["key_id"]]
            wake.set()  # a slot is free: look for more

    async def deliver(self, job: dict) -> None:
        secret = await self.blocking(self.store.key_secret, job["key_id"])
        attempts = job["webhook_attempts"] + 1
        payload = {"id": event_id(job["id"], job["status"]), "type": f"job.{job['status']}", "created": time.time(),
                   "data": self.document(job)}
        body = json.dumps(payload).encode()
        error = None
        try:
            # IP literals never reach the resolver below: checked here (on the default pool: the job store's
            # threads are not for DNS)
            await asyncio.get_running_loop().run_in_executor(None, check_target, job["webhook_url"], self.allow)
            headers = signed_headers(secret or "", payload["id"], int(time.time()), body, self.legacy_headers)
            async with self.session.post(job["webhook_url"], data=body, allow_redirects=False, headers={
                    "Content-Type": "application/json", "User-Agent": "SonicFlow-Webhook/1", **headers}) as r:
                if 200 <= r.status < 300:
                    await self._outcome(job, "delivered", attempts, None, None)
                    return
                error = f"HTTP {r.status}"
        except JobError as e:
            error = f"{e.code}: {e.message}"
            if e.code in ("private_address", "scheme_not_allowed"):  # will never succeed: stop now
                await self._outcome(job, "refused", attempts, None, error)
                return
        except Exception as e:  # noqa: BLE001 - network errors: retry later
            error = f"{type(e).__name__}: {e}"[:300]
        if attempts > len(self.delays_s):
            await self._outcome(job, "failed", attempts, None, error)
        else:
            await self._outcome(job, "pending", attempts, time.time() + self.delays_s[attempts - 1], error)

    async def _outcome(self, job: dict, state: str, attempts: int, next_at: float | None, error: str | None):
        await self.blocking(self.store.webhook_outcome, job["id"], state, attempts, next_at, error)
        self.on_outcome("retry" if state == "pending" else state)
