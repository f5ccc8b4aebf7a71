"""`sonicflow api`: the HTTP front door before the queue, and the pages people use (docs/api.md).

    POST /v1/jobs                 multipart (image + audio + parameters) or JSON with http(s) URLs -> 202 + job
    GET  /v1/jobs                 this key's jobs          GET /v1/jobs/{id}          status, progress, result links
    GET  /v1/jobs/{id}/events     server-sent events       GET /v1/jobs/{id}/files/x  signed download (Range works)
    GET  /v1/openapi.json         the OpenAPI document     /, /jobs, /jobs/{id}       upload, list and job pages

A job's way in: API key (stored hashed) -> rate limit -> size limits while reading -> content checks
(queue_bridge.validate) -> Idempotency-Key -> daily quota -> inputs into the object store (the bridge's store,
content-addressed) -> job row -> publish with confirms (queue_bridge.client) -> 202. Anything refused before the store
step leaves nothing stored and nothing queued.

Results and progress come back from RabbitMQ: a durable quorum queue `<p>.api.results` bound to `result.#` (so results
that arrive while the front door is down wait for it) and a private queue bound to `progress.#`. The job store is
SQLite or PostgreSQL (queue_bridge.jobstore). Never imports torch.
"""
from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import logging
import os
import queue
import re
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import quote, urlparse

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .config import OUT, ROOT, Settings, data_dir, split
from .inputs import InputPolicy, fetch
from .jobstore import TERMINAL, JobStore, StoreUnavailable
from .openapi import PARAMETERS, document
from .pools import Pool, Slots
from .protocol import JobError, make_job
from .validate import MediaRejected, check_media

PAGES = data_dir("web", "pages")
ICON = os.path.join(ROOT, "web", "icon.png")   # the checkout's only: an installed front door has no favicon
log = logging.getLogger("sonicflow.api")

# HTTP status for the bridge's input codes when the front door fetches a URL itself.
URL_STATUS = {"input_too_large": 413, "unsupported_media": 415}


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


@dataclass
class ApiSettings:
    bridge: Settings = field(default_factory=Settings)
    db_url: str = field(default_factory=lambda: _env("SONICFLOW_API_DB", "sqlite:///" + os.path.join(OUT, "api", "api.db")))
    table_prefix: str = field(default_factory=lambda: _env("SONICFLOW_API_TABLE_PREFIX", "sf_"))
    host: str = field(default_factory=lambda: _env("SONICFLOW_API_HOST", "127.0.0.1"))
    port: int = field(default_factory=lambda: int(_env("SONICFLOW_API_PORT", "8190")))
    public_url: str = field(default_factory=lambda: _env("SONICFLOW_API_PUBLIC_URL", ""))
    template: str = field(default_factory=lambda: _env("SONICFLOW_API_TEMPLATE", "talking_head"))
    max_image_bytes: int = field(default_factory=lambda: int(float(_env("SONICFLOW_API_MAX_IMAGE_MB", "20")) * 2**20))
    max_audio_bytes: int = field(default_factory=lambda: int(float(_env("SONICFLOW_API_MAX_AUDIO_MB", "50")) * 2**20))
    max_audio_s: float = field(default_factory=lambda: float(_env("SONICFLOW_API_MAX_AUDIO_S", "600")))
    min_audio_s: float = 0.2
    input_http_allow: list = field(default_factory=lambda: split(_env("SONICFLOW_API_URL_ALLOW", "*")))
    # Tests only: let URL inputs come from loopback/private addresses (never in production: SSRF).
    input_allow_private: bool = field(default_factory=lambda: _env("SONICFLOW_API_ALLOW_PRIVATE_INPUTS", "") == "1")
    webhook_allow: list = field(default_factory=lambda: split(_env("SONICFLOW_API_WEBHOOK_ALLOW", "")))
    webhook_delays: tuple = field(default_factory=lambda: tuple(float(x) for x in split(_env(
        "SONICFLOW_API_WEBHOOK_DELAYS", "5,30,120,600,1800,3600"))))
    publishers: int = field(default_factory=lambda: int(_env("SONICFLOW_API_PUBLISHERS", "4")))
    # URL inputs: threads of their own, at most `fetch_per_key` at once per API key, each bounded in time and rate
    fetch_threads: int = field(default_factory=lambda: int(_env("SONICFLOW_API_FETCH_THREADS", "8")))
    fetch_per_key: int = field(default_factory=lambda: int(_env("SONICFLOW_API_FETCH_PER_KEY", "2")))
    fetch_deadline_s: float = field(default_factory=lambda: float(_env("SONICFLOW_API_FETCH_DEADLINE_S", "60")))
    fetch_min_kbps: float = field(default_factory=lambda: float(_env("SONICFLOW_API_FETCH_MIN_KBPS", "64")))
    link_ttl_days: int = 7
    read_rate_per_min: float = 1200.0
    follow: bool = True  # consume results and progress from RabbitMQ


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None, field: str | None = None):
        self.status, self.code, self.message, self.headers, self.field = status, code, message, headers or {}, field
        super().__init__(message)


def error_response(status: int, code: str, message: str, headers: dict | None = None, field_: str | None = None):
    body = {"error": {"code": code, "message": message}}
    if field_:
        body["error"]["field"] = field_
    return web.json_response(body, status=status, headers=headers)


def _fetches_refused(scope: str) -> "ApiError":
    if scope == "key":
        return ApiError(429, "too_many_fetches", "this key already has URL inputs being fetched; wait for them, or "
                                                 "upload the files (multipart)", {"Retry-After": "10"})
    return ApiError(503, "busy", "the front door is fetching as many URL inputs as it can; retry shortly, or upload "
                                 "the files (multipart)", {"Retry-After": "10"})


def _iso(t: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) if t else None


# --- views and signed links ---------------------------------------------------------------------------------------------

class Links:
    def __init__(self, secret: bytes, ttl_days: int):
        self.secret, self.ttl_days = secret, ttl_days

    def sig(self, job_id: str, name: str, exp: int) -> str:
        return hmac.new(self.secret, f"{job_id}/{name}/{exp}".encode(), hashlib.sha256).hexdigest()[:40]

    def file_url(self, job_id: str, name: str) -> str:
        exp = (int(time.time()) // 86400 + self.ttl_days + 1) * 86400  # stable for a day: caches and pages agree
        return f"/v1/jobs/{job_id}/files/{quote(name)}?exp={exp}&sig={self.sig(job_id, name, exp)}"

    def check(self, job_id: str, name: str, exp: str, sig: str) -> None:
        try:
            e = int(exp)
        except (TypeError, ValueError):
            raise ApiError(403, "bad_signature", "the link is not valid") from None
        if not hmac.compare_digest(self.sig(job_id, name, e).encode(), (sig or "").encode("utf-8", "replace")):
            raise ApiError(403, "bad_signature", "the link is not valid")
        if e < time.time():
            raise ApiError(410, "link_expired", "the link has expired; open the job again for a fresh one")


def job_view(job: dict, links: Links | None, base: str = "") -> dict:
    result = job.get("result") or {}
    outputs = []
    for o in result.get("outputs") or []:
        item = {k: o.get(k) for k in ("name", "sha256", "size", "content_type")}
        item["url"] = base + links.file_url(job["id"], o["name"]) if links else None
        outputs.append(item)
    error = job.get("error")
    if job["status"] == "failed" and not error:
        error = {"code": "failed", "message": "the job failed"}
    return {
        "id": job["id"], "status": "queued" if job["status"] == "accepting" else job["status"],
        "progress": round(job.get("progress") or 0.0, 4), "progress_node": job.get("progress_node"),
        "template": job.get("template"), "parameters": job.get("parameters"), "inputs": job.get("inputs"),
        "results": outputs, "engine": result.get("engine"), "error": error,
        "created_at": _iso(job.get("created_at")), "updated_at": _iso(job.get("updated_at")),
        "status_url": f"{base}/v1/jobs/{job['id']}", "events_url": f"{base}/v1/jobs/{job['id']}/events",
        "page_url": f"{base}/jobs/{job['id']}",
        "webhook": ({"url": job["webhook_url"], "state": job.get("webhook_state"),
                     "attempts": job.get("webhook_attempts")} if job.get("webhook_url") else None),
    }


# --- RabbitMQ: publishing with confirms, following results and progress -------------------------------------------------

class Publisher:
    """A few threads, each with its own BridgeClient (pika connections are not thread-safe); publish() waits for the
    broker's confirm without blocking the event loop."""

    def __init__(self, settings: Settings, threads: int):
        self.settings = settings
        self.q: queue.Queue = queue.Queue()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True, name=f"publisher-{i}") for i in range(threads)]
        for t in self.threads:
            t.start()

    def _run(self):
        from .client import BridgeClient, NotAccepted

        client = None
        while not self.stop.is_set():
            try:
                job, fut, loop = self.q.get(timeout=1.0)
            except queue.Empty:
                if client is not None:
                    try:
                        client.connection.process_data_events(0)  # heartbeats while idle
                    except Exception:  # noqa: BLE001
                        client = None
                continue
            err = None
            for _ in range(2):  # one reconnect: a retransmit is safe, the job id is the worker's idempotency key
                try:
                    if client is None or not client.connection.is_open:
                        client = BridgeClient(self.settings)
                    client.publish_job(job)
                    err = None
                    break
                except NotAccepted as e:
                    err = e
                    break
                except Exception as e:  # noqa: BLE001 - connection lost: reconnect once
                    err = e
                    try:
                        client and client.close()
                    except Exception:  # noqa: BLE001
                        pass
                    client = None
            loop.call_soon_threadsafe(_settle, fut, err)
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001
                pass

    async def publish(self, job: dict) -> None:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self.q.put((job, fut, loop))
        await fut

    def close(self):
        self.stop.set()
        for t in self.threads:
            t.join(5)


def _settle(fut, err):
    if fut.done():
        return
    if err is None:
        fut.set_result(None)
    else:
        fut.set_exception(err)


class Follower(threading.Thread):
    """Consumes result messages (durable queue <p>.api.results) and progress events into the job store."""

    def __init__(self, settings: Settings, store: JobStore, on_change):
        super().__init__(daemon=True, name="follower")
        self.s, self.store, self.on_change = settings, store, on_change
        self.topology = settings.topology()
        self.results_queue = self.topology.api_results_queue
        self.stop = threading.Event()
        self.connected = False
        self.results_seen = 0

    def run(self):
        import pika

        backoff = 0.5
        while not self.stop.is_set():
            conn = None
            try:
                conn = pika.BlockingConnection(self.s.connection_parameters(heartbeat=30))
                ch = conn.channel()
                try:
                    ch.queue_declare(self.topology.jobs_queue, passive=True)
                except pika.exceptions.ChannelClosedByBroker:
                    ch = conn.channel()
                    self.topology.declare(ch)
                ch.queue_declare(self.results_queue, durable=True, arguments={"x-queue-type": "quorum"})
                ch.queue_bind(self.results_queue, self.topology.results_exchange, "result.#")
                events = ch.queue_declare("", exclusive=True, auto_delete=True,
                                          arguments={"x-message-ttl": 60000}).method.queue
                ch.queue_bind(events, self.topology.events_exchange, "progress.#")
                ch.basic_qos(prefetch_count=50)
                ch.basic_consume(self.results_queue, self._on_result)
                ch.basic_consume(events, self._on_event, auto_ack=True)
                self.connected, backoff = True, 0.5
                while not self.stop.is_set():
                    conn.process_data_events(time_limit=0.3)
            except Exception as e:  # noqa: BLE001 - broker away: reconnect with back-off
                if not self.stop.is_set():
                    log.warning("follower: %s: %s", type(e).__name__, e)
            finally:
                self.connected = False
                try:
                    if conn is not None and conn.is_open:
                        conn.close()
                except Exception:  # noqa: BLE001
                    pass
            self.stop.wait(backoff)
            backoff = min(backoff * 2, 15.0)

    def _on_result(self, ch, method, _props, body):
        try:
            doc = json.loads(body)
            job_id = doc.get("job_id") if isinstance(doc, dict) else None
        except (ValueError, UnicodeDecodeError):
            ch.basic_ack(method.delivery_tag)
            return
        if not isinstance(job_id, str):
            ch.basic_ack(method.delivery_tag)
            return
        try:
            changed = self.store.apply_result(job_id, doc)
        except Exception:  # noqa: BLE001 - database away: give the message back, try again shortly
            log.exception("follower: storing the result of %s", job_id)
            time.sleep(1.0)
            ch.basic_nack(method.delivery_tag, requeue=True)
            return
        ch.basic_ack(method.delivery_tag)
        self.results_seen += 1
        if changed:
            self.on_change(job_id, True)

    def _on_event(self, _ch, _method, _props, body):
        try:
            doc = json.loads(body)
            job_id = doc["job_id"]
            value, maximum = float(doc.get("value") or 0), float(doc.get("max") or 0)
            fraction = value / maximum if maximum > 0 else 0.0
            if self.store.apply_progress(job_id, fraction, str(doc.get("node") or "")[:64] or None):
                self.on_change(job_id, False)
        except Exception:  # noqa: BLE001 - progress is best effort
            pass


# --- rate limits ---------------------------------------------------------------------------------------------------------

class Buckets:
    """Token buckets per key (per front-door process)."""

    def __init__(self):
        self.state: dict = {}

    def take(self, name: str, rate_per_min: float, burst: float) -> float:
        """0 when a token was taken, else the seconds until one is available."""
        now = time.monotonic()
        tokens, last = self.state.get(name, (float(burst), now))
        tokens = min(float(burst), tokens + (now - last) * rate_per_min / 60.0)
        if tokens >= 1.0:
            self.state[name] = (tokens - 1.0, now)
            return 0.0
        self.state[name] = (tokens, now)
        return (1.0 - tokens) * 60.0 / max(rate_per_min, 1e-6)


# --- the service ---------------------------------------------------------------------------------------------------------

TEXT_FIELDS = ("parameters", "seed", "engine", "min_resolution", "webhook_url", "metadata")
IDEM_RE = re.compile(r"[\x21-\x7e]{1,200}")


class FrontDoor:
    def __init__(self, settings: ApiSettings):
        from .store import open_store
        from .template import TemplateLibrary

        self.s = settings
        self.store = JobStore(settings.db_url, settings.table_prefix, name=f"sonicflow api {os.getpid()}")
        self.db = Pool("db", self.store.pool_size)
        self.work = Pool("work", max(2, os.cpu_count() or 2))  # media checks and the object store
        self.fetches = Pool("fetch", settings.fetch_threads)
        self.fetch_slots = Slots(settings.fetch_per_key, settings.fetch_threads, _fetches_refused)
        self.objects = open_store(settings.bridge.store_url, settings.bridge.s3_endpoint)
        self.links = Links(self.store.server_secret(), settings.link_ttl_days)
        self.templates = TemplateLibrary(settings.bridge.templates)
        self.buckets = Buckets()
        self.publisher = None
        self.follower = None
        self.deliverer = None
        self.loop = None
        self.waiters: dict[str, set] = {}
        self.webhook_wake = None
        self.tasks: list = []

    # lifecycle
    async def on_startup(self, app):
        from .webhooks import Deliverer

        self.loop = asyncio.get_running_loop()
        self.webhook_wake = asyncio.Event()
        self.publisher = Publisher(self.s.bridge, self.s.publishers)
        if self.s.follow:
            self.follower = Follower(self.s.bridge, self.store, self._changed_threadsafe)
            self.follower.start()
        self.deliverer = Deliverer(self.store, self.db.run, self.s.webhook_allow, self.s.webhook_delays)
        await self.deliverer.start()
        self.tasks.append(asyncio.create_task(self.deliverer.run(self.webhook_wake)))

    async def on_cleanup(self, app):
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.deliverer.close()
        if self.follower:
            self.follower.stop.set()
            self.follower.join(5)
        await asyncio.to_thread(self.publisher.close)
        self.store.close()
        for pool in (self.db, self.work, self.fetches):
            pool.close()

    def _changed_threadsafe(self, job_id: str, terminal: bool):
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._changed, job_id, terminal)

    def _changed(self, job_id: str, terminal: bool):
        for ev in self.waiters.get(job_id, ()):
            ev.set()
        if terminal and self.webhook_wake is not None:
            self.webhook_wake.set()

    def base(self, request) -> str:
        return self.s.public_url.rstrip("/") if self.s.public_url else ""

    # auth and limits
    async def auth(self, request) -> dict:
        header = request.headers.get("Authorization", "")
        key = request.headers.get("X-API-Key") or (header[7:].strip() if header[:7].lower() == "bearer " else "")
        if not key:
            raise ApiError(401, "unauthorized", "an API key is required: send it as X-API-Key or Authorization: "
                                                "Bearer", {"WWW-Authenticate": "Bearer"})
        found = await self.db.run(self.store.authenticate, key)
        if found is None:
            raise ApiError(401, "unauthorized", "the API key is not valid", {"WWW-Authenticate": "Bearer"})
        return found

    def limit(self, key: dict, kind: str) -> None:
        rate, burst = ((key["rate_per_min"], key["burst"]) if kind == "submit"
                       else (self.s.read_rate_per_min, max(60, self.s.read_rate_per_min / 10)))
        wait = self.buckets.take(f"{key['id']}:{kind}", rate, burst)
        if wait:
            raise ApiError(429, "rate_limited", f"too many requests for this key ({rate:g}/min); retry in "
                                                f"{wait:.1f} s", {"Retry-After": str(max(1, round(wait + 0.5)))})

    # reading a submission
    async def _read_part(self, part, limit: int, what: str) -> bytes:
        buf = bytearray()
        while True:
            chunk = await part.read_chunk(1 << 16)
            if not chunk:
                return bytes(buf)
            buf += chunk
            if len(buf) > limit:
                raise ApiError(413, "payload_too_large", f"{what}: over the {limit} byte limit", field=what)

    async def read_multipart(self, request) -> tuple[dict, dict]:
        files, fields = {}, {}
        try:
            reader = await request.multipart()
            while True:
                part = await reader.next()
                if part is None:
                    break
                name = part.name
                if name in ("image", "audio"):
                    if name in files:
                        raise ApiError(400, "duplicate_field", f"{name} given twice", field=name)
                    limit = self.s.max_image_bytes if name == "image" else self.s.max_audio_bytes
                    data = await self._read_part(part, limit, name)
                    files[name] = (data, part.filename, part.headers.get("Content-Type"))
                elif name in TEXT_FIELDS:
                    if name in fields:
                        raise ApiError(400, "duplicate_field", f"{name} given twice", field=name)
                    raw = await self._read_part(part, 16384, name)
                    try:
                        fields[name] = raw.decode("utf-8")
                    except UnicodeDecodeError:
                        raise ApiError(400, "bad_field", f"{name}: not UTF-8 text", field=name) from None
                else:
                    raise ApiError(400, "unknown_field", f"unknown form field {str(name)[:40]!r}; fields are image, "
                                                         f"audio, {', '.join(TEXT_FIELDS)}", field=str(name)[:40])
        except ApiError:
            raise
        except (ValueError, AssertionError, AttributeError, KeyError, LookupError, TypeError, UnicodeError,
                HttpProcessingError) as e:
            raise ApiError(400, "bad_multipart", f"the multipart body cannot be read: {e}"[:300]) from None
        for name in ("image", "audio"):
            if name not in files:
                raise ApiError(400, "missing_field", f"{name}: a file is required", field=name)
        params = {}
        if "parameters" in fields:
            try:
                params = json.loads(fields["parameters"])
            except ValueError:
                raise ApiError(400, "bad_field", "parameters: not a JSON object", field="parameters") from None
            if not isinstance(params, dict):
                raise ApiError(400, "bad_field", "parameters: not a JSON object", field="parameters")
        for name in ("seed", "min_resolution"):
            if name in fields:
                try:
                    params[name] = int(fields[name].strip())
                except ValueError:
                    raise ApiError(422, "bad_parameter", f"{name}: not an integer", field=name) from None
        if "engine" in fields:
            params["engine"] = fields["engine"].strip()
        meta = None
        if "metadata" in fields:
            try:
                meta = json.loads(fields["metadata"])
            except ValueError:
                meta = None
            if not isinstance(meta, dict):
                raise ApiError(400, "bad_field", "metadata: not a JSON object", field="metadata")
        return files, {"parameters": params, "webhook_url": fields.get("webhook_url") or None, "metadata": meta}

    async def read_json(self, request, key: dict) -> tuple[dict, dict]:
        raw = await request.content.read(65537)
        if len(raw) > 65536:
            raise ApiError(413, "payload_too_large", "a JSON request is at most 64 KiB (send files as multipart)")
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "bad_json", "the body is not JSON") from None
        if not isinstance(doc, dict):
            raise ApiError(400, "bad_json", "the body must be a JSON object")
        unknown = set(doc) - {"image_url", "audio_url", "parameters", "webhook_url", "metadata"}
        if unknown:
            raise ApiError(400, "unknown_field", f"unknown field(s): {', '.join(sorted(map(str, unknown)))[:200]}")
        files = {}
        for name in ("image", "audio"):
            url = doc.get(f"{name}_url")
            if not isinstance(url, str) or not url:
                raise ApiError(400, "missing_field", f"{name}_url: an http(s) URL is required", field=f"{name}_url")
            files[name] = await self.fetch_url(url, name, key)
        params = doc.get("parameters", {})
        if not isinstance(params, dict):
            raise ApiError(400, "bad_field", "parameters: not a JSON object", field="parameters")
        meta = doc.get("metadata")
        if meta is not None and (not isinstance(meta, dict) or len(meta) > 16 or len(json.dumps(meta)) > 4096):
            raise ApiError(400, "bad_field", "metadata: a JSON object of at most 16 keys / 4 KiB", field="metadata")
        hook = doc.get("webhook_url")
        if hook is not None and not isinstance(hook, str):
            raise ApiError(400, "bad_field", "webhook_url: a string", field="webhook_url")
        return files, {"parameters": params, "webhook_url": hook or None, "metadata": meta}

    async def fetch_url(self, url: str, name: str, key: dict):
        """The front door fetches URL inputs itself (the bridge's fetcher: allow-list, address checks after DNS and
        on every redirect, size limit) so it can check their content before anything is queued."""
        scheme = urlparse(url).scheme.lower()
        if scheme not in ("http", "https") or len(url) > 2048:
            raise ApiError(422, "scheme_not_allowed", f"{name}_url: only http(s) URLs are accepted", field=f"{name}_url")
        limit = self.s.max_image_bytes if name == "image" else self.s.max_audio_bytes
        policy = InputPolicy(http_allow=self.s.input_http_allow, max_bytes=limit,
                             allow_private_networks=self.s.input_allow_private, deadline_s=self.s.fetch_deadline_s,
                             min_rate_bps=self.s.fetch_min_kbps * 1024)
        try:
            with self.fetch_slots.take(key["id"]):
                data = await self.fetches.run(fetch, url, policy)
        except JobError as e:
            raise ApiError(URL_STATUS.get(e.code, 422), e.code, f"{name}_url: {e.message}"[:400],
                           field=f"{name}_url") from None
        except Exception as e:  # noqa: BLE001 - whatever the fetch raised, the URL did not give a file
            raise ApiError(422, "input_unavailable", f"{name}_url: {type(e).__name__}"[:200], field=f"{name}_url") \
                from None
        return data, os.path.basename(urlparse(url).path) or None, None

    def check_parameters(self, params: dict) -> dict:
        import jsonschema

        errors = list(jsonschema.Draft202012Validator(PARAMETERS).iter_errors(params))
        if errors:
            e = errors[0]
            where = "/".join(map(str, e.absolute_path)) or "parameters"
            raise ApiError(422, "bad_parameter", f"{where}: {e.message}"[:300], field=where)
        from .template import check_interface

        try:
            t = self.templates.get(self.s.template)
            check_interface(t, {"image": "", "audio": ""}, params)
        except JobError as e:
            raise ApiError(422 if e.code != "unknown_template" else 503, e.code, e.message) from None
        return params

    # handlers
    async def create_job(self, request):
        key = await self.auth(request)
        self.limit(key, "submit")
        idem = request.headers.get("Idempotency-Key")
        if idem is not None and not IDEM_RE.fullmatch(idem):
            raise ApiError(400, "bad_idempotency_key", "Idempotency-Key: 1 to 200 printable ASCII characters")
        declared = request.content_length
        if declared is not None and declared > self.s.max_image_bytes + self.s.max_audio_bytes + 65536:
            raise ApiError(413, "payload_too_large", f"the request is {declared} bytes, over the limit")
        ctype = request.content_type
        if ctype == "multipart/form-data":
            files, extra = await self.read_multipart(request)
        elif ctype == "application/json":
            files, extra = await self.read_json(request, key)
        else:
            raise ApiError(415, "unsupported_content_type", "send multipart/form-data (files) or application/json "
                                                           "(URLs)")
        params = self.check_parameters(extra["parameters"])
        hook = extra["webhook_url"]
        if hook:
            from .webhooks import check_target

            try:
                await self.fetches.run(check_target, hook, self.s.webhook_allow)
            except JobError as e:
                raise ApiError(422, e.code, f"webhook_url: {e.message}", field="webhook_url") from None

        def check_all():
            out = {}
            for name, (data, filename, ctype_) in files.items():
                out[name] = check_media(data, name, name, filename=filename, content_type=ctype_,
                                        max_bytes=self.s.max_image_bytes if name == "image" else self.s.max_audio_bytes,
                                        max_audio_s=self.s.max_audio_s, min_audio_s=self.s.min_audio_s)
            return out

        try:
            checked = await self.work.run(check_all)
        except MediaRejected as e:
            raise ApiError(e.status, e.code, e.message, field=e.field) from None
        digests = {n: hashlib.sha256(files[n][0]).hexdigest() for n in files}
        fingerprint = hashlib.sha256(json.dumps([digests, params, hook, extra["metadata"]], sort_keys=True)
                                     .encode()).hexdigest()
        if idem:
            found = await self._replay(key, idem, fingerprint, request)
            if found is not None:
                return found

        quota_error = ApiError(429, "quota_exceeded", f"this key's quota of {key['daily_quota']} jobs a day is used up",
                               {"Retry-After": "3600"})
        # a cheap refusal before anything is stored; insert_job below decides for good (one transaction, so front
        # doors racing each other cannot together go past the quota)
        if await self.db.run(self.store.count_since, key["id"], time.time() - 86400) >= key["daily_quota"]:
            raise quota_error
        job_id = uuid.uuid4().hex
        inputs_view = {}
        locations = {}

        def put_inputs():
            for name, c in checked.items():
                url = self.objects.put_bytes(f"inputs/{digests[name]}{c.ext}", files[name][0], c.content_type)
                locations[name] = {"url": url, "sha256": digests[name]}

        try:
            await self.work.run(put_inputs)
        except JobError as e:
            raise ApiError(503, "storage_unavailable", e.message, {"Retry-After": "5"}) from None
        for name, c in checked.items():
            inputs_view[name] = {"sha256": digests[name], "size": c.size, "content_type": c.content_type,
                                 **({"width": c.width, "height": c.height} if name == "image" else
                                    {"duration_s": round(c.duration_s, 3)})}
        row = {"id": job_id, "key_id": key["id"], "idem_key": idem, "fingerprint": fingerprint,
               "status": "accepting", "template": self.s.template, "parameters": params, "inputs": inputs_view,
               "webhook_url": hook}
        outcome = await self.db.run(self.store.insert_job, row, key["daily_quota"])
        if outcome == "over_quota":  # inputs stay stored: content-addressed, the next accepted job reuses them
            raise quota_error
        if outcome == "duplicate":  # a concurrent request with the same Idempotency-Key won
            found = await self._replay(key, idem, fingerprint, request)
            if found is not None:
                return found
            raise ApiError(409, "idempotency_conflict", "a request with this Idempotency-Key is being processed")
        doc = make_job(job_id, self.s.template, locations, params,
                       metadata={"api_key": key["id"], **({"client": extra["metadata"]} if extra["metadata"] else {})})
        try:
            await self.publisher.publish(doc)
        except Exception as e:  # noqa: BLE001 - NotAccepted, broker down: nothing queued, say so
            await self.db.run(self.store.delete_job, job_id)
            raise ApiError(503, "queue_unavailable", f"the queue did not take the job ({type(e).__name__}); nothing "
                                                     "was queued, retry later", {"Retry-After": "5"}) from None
        await self.db.run(self.store.set_status, job_id, "queued", ("accepting",))
        job = await self.db.run(self.store.get_job, job_id)
        view = job_view(job, self.links, self.base(request))
        return web.json_response(view, status=202, headers={"Location": f"/v1/jobs/{job_id}"})

    async def _replay(self, key, idem, fingerprint, request):
        old = await self.db.run(self.store.job_by_idem, key["id"], idem)
        if old is None:
            return None
        if old["fingerprint"] != fingerprint:
            raise ApiError(409, "idempotency_conflict", "this Idempotency-Key was used with a different request")
        if old["status"] == "accepting":
            raise ApiError(409, "idempotency_conflict", "a request with this Idempotency-Key is being processed",
                           {"Retry-After": "1"})
        return web.json_response(job_view(old, self.links, self.base(request)), status=200,
                                 headers={"Idempotent-Replayed": "true", "Location": f"/v1/jobs/{old['id']}"})

    async def _own_job(self, request, key) -> dict:
        job_id = request.match_info["id"]
        job = await self.db.run(self.store.get_job, job_id) if re.fullmatch(r"[0-9a-f]{32}", job_id) else None
        if job is None or job["key_id"] != key["id"] or job["status"] == "accepting":
            raise ApiError(404, "not_found", "no such job for this API key")
        return job

    async def get_job(self, request):
        key = await self.auth(request)
        self.limit(key, "read")
        job = await self._own_job(request, key)
        return web.json_response(job_view(job, self.links, self.base(request)))

    async def list_jobs(self, request):
        key = await self.auth(request)
        self.limit(key, "read")
        try:
            limit = int(request.query.get("limit", "50"))
            before = float(request.query["before"]) if "before" in request.query else None
        except ValueError:
            raise ApiError(400, "bad_query", "limit must be an integer and before a number") from None
        if not 1 <= limit <= 100 or (before is not None and not (before == before and abs(before) < 1e12)):
            raise ApiError(400, "bad_query", "limit is 1 to 100; before is seconds since the epoch")
        jobs = await self.db.run(self.store.list_jobs, key["id"], limit, before)
        return web.json_response({"jobs": [job_view(j, self.links, self.base(request)) for j in jobs]})

    async def events(self, request):
        key = await self.auth(request)
        self.limit(key, "read")
        job = await self._own_job(request, key)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        try:
            last = int(request.headers.get("Last-Event-ID", "0"))
        except ValueError:
            last = 0
        ev = asyncio.Event()
        self.waiters.setdefault(job["id"], set()).add(ev)
        quiet = 0.0
        try:
            while True:
                if job["seq"] != last:
                    last = job["seq"]
                    data = json.dumps(job_view(job, self.links, self.base(request)))
                    await resp.write(f"id: {last}\nevent: job\ndata: {data}\n\n".encode())
                    quiet = 0.0
                    if job["status"] in TERMINAL:
                        break
                elif quiet >= 15.0:
                    await resp.write(b": keep-alive\n\n")
                    quiet = 0.0
                try:
                    await asyncio.wait_for(ev.wait(), 1.0)  # woken by this process; polls for other processes
                except asyncio.TimeoutError:
                    quiet += 1.0
                ev.clear()
                job = await self.db.run(self.store.get_job, job["id"])
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.waiters.get(job["id"], set()).discard(ev)
            if not self.waiters.get(job["id"]):
                self.waiters.pop(job["id"], None)
        return resp

    async def get_file(self, request):
        job_id, name = request.match_info["id"], request.match_info["name"]
        self.links.check(job_id, name, request.query.get("exp"), request.query.get("sig"))
        job = await self.db.run(self.store.get_job, job_id)
        outputs = ((job or {}).get("result") or {}).get("outputs") or []
        out = next((o for o in outputs if o.get("name") == name), None)
        if out is None:
            raise ApiError(404, "not_found", "no such file")
        url = out["url"]
        ext = {"video/mp4": ".mp4"}.get(out.get("content_type"), os.path.splitext(urlparse(url).path)[1])
        disposition = "attachment" if request.query.get("download") == "1" else "inline"
        headers = {"Content-Disposition": f'{disposition}; filename="sonicflow-{job_id[:12]}-{name}{ext}"',
                   "Cache-Control": "private, max-age=86400"}
        if url.startswith("file://"):
            path = os.path.realpath(url[len("file://"):])
            root = os.path.realpath(getattr(self.objects, "root", "/nonexistent"))
            if os.path.commonpath([path, root]) != root or not os.path.isfile(path):
                raise ApiError(404, "not_found", "the file is not in this front door's store")
            resp = web.FileResponse(path, headers=headers)
            if out.get("content_type"):
                resp.content_type = out["content_type"]
            return resp
        if url.startswith("s3://"):
            p = urlparse(url)
            signed = await self.work.run(functools.partial(
                self.objects.client.generate_presigned_url, "get_object", Params={
                    "Bucket": p.netloc, "Key": p.path.lstrip("/"),
                    "ResponseContentDisposition": headers["Content-Disposition"]}, ExpiresIn=3600))
            raise web.HTTPFound(signed)
        raise web.HTTPFound(url)

    async def openapi(self, request):
        return web.json_response(document())

    async def health(self, request):
        """Ready when the job store answers, the broker is connected (when following) and no pool is backed up."""
        broker = bool(self.follower and self.follower.connected) if self.s.follow else None
        try:
            await asyncio.wait_for(self.db.run(self.store.ping), 3.0)
            store = True
        except Exception:  # noqa: BLE001 - down, or too slow to answer: either way not ready
            store = False
        pools = {p.name: p.state() for p in (self.db, self.work, self.fetches)}
        ok = store and broker is not False and not any(p["backed_up"] for p in pools.values())
        return web.json_response({"status": "ok" if ok else "degraded", "broker": broker, "store": store,
                                  "pools": pools}, status=200 if ok else 503)

    async def page(self, request):
        name = {"/": "upload.html", "/jobs": "jobs.html"}.get(request.path, "job.html")
        return web.FileResponse(os.path.join(PAGES, name), headers={"Content-Type": "text/html; charset=utf-8"})


CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
       "media-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


@web.middleware
async def errors_middleware(request, handler):
    try:
        resp = await handler(request)
    except ApiError as e:
        resp = error_response(e.status, e.code, e.message, e.headers, e.field)
    except StoreUnavailable as e:
        log.warning("job store unavailable on %s %s: %s", request.method, request.path, e.__cause__ or e)
        resp = error_response(503, "store_unavailable", "the job store is unavailable; retry shortly",
                              {"Retry-After": "5"})
    except web.HTTPRedirection:
        raise
    except web.HTTPException as e:
        code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(e.status, "http_error")
        resp = error_response(e.status, code, e.reason or code)
    except (ConnectionResetError, asyncio.CancelledError):
        raise
    except Exception:  # noqa: BLE001 - a bug: log it, answer JSON
        log.exception("unhandled error on %s %s", request.method, request.path)
        resp = error_response(500, "internal_error", "an unexpected error; it was logged")
    if not resp.prepared:
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Content-Security-Policy", CSP)
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
    return resp


def make_app(settings: ApiSettings | None = None) -> web.Application:
    settings = settings or ApiSettings()
    door = FrontDoor(settings)
    app = web.Application(middlewares=[errors_middleware], client_max_size=1 << 20)
    app["door"] = door
    app.on_startup.append(door.on_startup)
    app.on_cleanup.append(door.on_cleanup)
    r = app.router
    r.add_post("/v1/jobs", door.create_job)
    r.add_get("/v1/jobs", door.list_jobs)
    r.add_get("/v1/jobs/{id}", door.get_job)
    r.add_get("/v1/jobs/{id}/events", door.events)
    r.add_get("/v1/jobs/{id}/files/{name}", door.get_file)
    r.add_get("/v1/openapi.json", door.openapi)
    r.add_get("/healthz", door.health)
    r.add_get("/", door.page)
    r.add_get("/jobs", door.page)
    r.add_get("/jobs/{id}", door.page)
    if os.path.isfile(ICON):
        r.add_get("/favicon.ico", lambda _r: web.FileResponse(ICON, headers={"Content-Type": "image/png"}))
    r.add_static("/static/", PAGES, show_index=False, follow_symlinks=False)
    return app


def run_api(settings: ApiSettings) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format='{"ts": "%(asctime)s", "level": "%(levelname)s", "event": "%(message)s"}')
    logging.getLogger("pika").setLevel(logging.WARNING)
    web.run_app(make_app(settings), host=settings.host, port=settings.port, print=lambda *a: print(
        f"sonicflow api on http://{settings.host}:{settings.port} (pages at /, OpenAPI at /v1/openapi.json)",
        file=sys.stderr, flush=True), access_log=None)
    return 0
