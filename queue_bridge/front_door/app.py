"""`sonicflow api`: the HTTP front door before the queue (docs/api.md).

    POST /v1/jobs                 multipart (image + audio + parameters) or JSON with http(s) URLs -> 202 + job
    GET  /v1/jobs                 this key's jobs          GET /v1/jobs/{id}          status, progress, result links
    DELETE /v1/jobs/{id}          cancel (cancel.py)
    GET  /v1/jobs/{id}/events     server-sent events       GET /v1/jobs/{id}/files/x  signed download (Range works)
    GET  /v1/openapi.json         the OpenAPI document     /, /jobs, /jobs/{id}       upload, list and job pages

A job's way in: API key (stored hashed) -> rate limit -> the submission read and checked (submission.py) ->
Idempotency-Key -> daily quota -> inputs into the object store (content-addressed) -> job row ('accepting', with the
message it is published as) -> publish with confirms -> 202. Anything refused before the store step leaves nothing
stored and nothing queued. A row whose confirm never came is published again by the upkeep (upkeep.py). Never
imports torch.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import re
import time
import uuid

from aiohttp import web

from .. import JobError, TemplateLibrary, make_job, open_store, setup_logging
from .api_errors import ApiError, error_response
from .api_settings import ApiSettings
from .cancel import cancel_job
from .downloads import Downloads
from .jobstore import TERMINAL, JobStore, StoreUnavailable
from .messaging import Follower, MaybeQueued, NotQueued, Publisher
from .openapi import document
from .ops import ApiMetrics, OpsListener, add_ops_routes, serve
from .pages import SECURITY_HEADERS, add_routes
from .pools import Pool, Slots
from .ratelimit import RateLimiter
from .submission import SubmissionReader
from .upkeep import Upkeep
from .views import Links, job_view
from .webhooks import Deliverer

log = logging.getLogger("sonicflow.api")
IDEM_RE = re.compile(r"[\x21-\x7e]{1,200}")


def _fetches_refused(scope: str) -> ApiError:
    if scope == "key":
        return ApiError(429, "too_many_fetches", "this key already has URL inputs being fetched; wait for them, or "
                                                 "upload the files (multipart)", {"Retry-After": "10"})
    return ApiError(503, "busy", "the front door is fetching as many URL inputs as it can; retry shortly, or upload "
                                 "the files (multipart)", {"Retry-After": "10"})


class FrontDoor:
    def __init__(self, settings: ApiSettings):
        self.s = settings
        self.store = JobStore(settings.db_url, settings.table_prefix, name=f"sonicflow api {os.getpid()}")
        self.db = Pool("db", self.store.pool_size)
        self.work = Pool("work", max(2, os.cpu_count() or 2))  # media checks and the object store
        self.fetches = Pool("fetch", settings.fetch_threads)
        self.objects = open_store(settings.bridge.store_url, settings.bridge.s3_endpoint)
        self.links = Links(self.store.link_secrets(), settings.link_ttl_days)
        self.downloads = Downloads(self.links, self.store, self.db, self.work, self.objects)
        self.templates = TemplateLibrary(settings.bridge.templates)
        self.submissions = SubmissionReader(settings, self.templates, self.work, self.fetches,
                                            Slots(settings.fetch_per_key, settings.fetch_threads, _fetches_refused))
        self.limiter = RateLimiter(self.store)
        self.base = settings.public_url.rstrip("/")
        self.publisher = None
        self.follower = None
        self.deliverer = None
        self.upkeep = None
        self.loop = None
        self.waiters: dict[str, set] = {}
        self.streams = Slots(settings.streams_per_key, math.inf, lambda _scope: ApiError(
            429, "too_many_streams", f"this key already has {settings.streams_per_key} event streams open; close one, "
                                     "or poll GET /v1/jobs/{id}", {"Retry-After": "5"}))
        self.webhook_wake = None
        self.tasks: dict[str, asyncio.Task] = {}
        self.confirming: set = set()  # waits for confirms that came after their request gave up
        self.metrics = ApiMetrics()
        self.closing = False  # SIGTERM: not ready, event streams end, requests in flight finish
        self.ops = OpsListener(self, settings.metrics_host, settings.metrics_port) if settings.metrics_port else None

    def document(self, job: dict) -> dict:
        """The job as GET /v1/jobs/{id} answers it: what the events stream and webhooks carry too."""
        return job_view(job, self.links, self.base)

    # -- lifecycle ---------------------------------------------------------------------------------------------------

    async def on_startup(self, app):
        self.loop = asyncio.get_running_loop()
        self.webhook_wake = asyncio.Event()
        m = self.metrics
        self.publisher = Publisher(self.s.bridge, self.s.publishers, self.s.publish_backlog, self.s.publish_wait_s,
                                   on_outcome=lambda outcome: m.publishes.labels(outcome).inc())
        if self.s.follow:
            self.follower = Follower(self.s.bridge, self.store, self.changed_threadsafe,
                                     on_depth=lambda queue, n: m.queue_depth.labels(queue).set(n))
            self.follower.start()
        self.deliverer = Deliverer(self.store, self.db.run, self.document, list(self.s.webhook_allow),
                                   self.s.webhook_delays, per_key=self.s.webhook_per_key,
                                   total=self.s.webhook_concurrency, legacy_headers=self.s.webhook_legacy_headers,
                                   on_outcome=lambda outcome: m.webhooks.labels(outcome).inc())
        await self.deliverer.start()
        self.upkeep = Upkeep(self.store, self.db.run, self.publisher, self.links, self.s.reconcile_after_s)
        self.tasks = {"webhooks": asyncio.create_task(self.deliverer.run(self.webhook_wake)),
                      "upkeep": asyncio.create_task(self.upkeep.run())}
        if self.ops:
            await self.ops.start()

    def close_streams(self):
        """Shutting down (ops.serve): not ready any more, and the event streams end (clients resume elsewhere with
        Last-Event-ID), so only real requests hold the shutdown."""
        self.closing = True
        for events in self.waiters.values():
            for ev in events:
                ev.set()

    async def on_cleanup(self, app):
        if self.confirming:  # late confirms of jobs already answered: let them land before the publisher goes
            await asyncio.wait(list(self.confirming), timeout=self.s.publish_wait_s)
        tasks = [*self.tasks.values(), *self.confirming]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.deliverer.close()
        if self.follower:
            self.follower.stop.set()
            self.follower.join(5)
        await asyncio.to_thread(self.publisher.close)
        self.store.close()
        for pool in (self.db, self.work, self.fetches):
            pool.close()
        if self.ops:
            await self.ops.stop()

    def changed_threadsafe(self, job_id: str, terminal: bool):
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self.changed, job_id, terminal)

    def changed(self, job_id: str, terminal: bool):
        for ev in self.waiters.get(job_id, ()):
            ev.set()
        if terminal and self.webhook_wake is not None:
            self.webhook_wake.set()

    # -- auth and limits ---------------------------------------------------------------------------------------------

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

    async def limit(self, key: dict, kind: str) -> None:
        rate, burst = ((key["rate_per_min"], key["burst"]) if kind == "submit"
                       else (self.s.read_rate_per_min, max(60, self.s.read_rate_per_min / 10)))
        wait = await self.db.run(self.limiter.take, f"{key['id']}:{kind}", rate, burst)
        if wait:
            raise ApiError(429, "rate_limited", f"too many requests for this key ({rate:g}/min); retry in "
                                                f"{wait:.1f} s", {"Retry-After": str(max(1, round(wait + 0.5)))})

    # -- handlers ----------------------------------------------------------------------------------------------------

    async def create_job(self, request):
        key = await self.auth(request)
        await self.limit(key, "submit")
        idem = request.headers.get("Idempotency-Key")
        if idem is not None and not IDEM_RE.fullmatch(idem):
            raise ApiError(400, "bad_idempotency_key", "Idempotency-Key: 1 to 200 printable ASCII characters")
        declared = request.content_length
        if declared is not None and declared > self.s.max_image_bytes + self.s.max_audio_bytes + 65536:
            raise ApiError(413, "payload_too_large", f"the request is {declared} bytes, over the limit")
        sub = await self.submissions.parse(request)
        quota_error = ApiError(429, "quota_exceeded", f"this key's quota of {key['daily_quota']} jobs a day is used up",
                               {"Retry-After": "3600"})
        # a retry of an earlier request is answered by its job, even when the quota is used up since
        retry = bool(idem) and await self.db.run(self.store.job_by_idem, key["id"], idem) is not None
        # a cheap refusal before any URL is fetched or anything stored; insert_job below decides for good (one
        # transaction, so front doors racing each other cannot together go past the quota)
        if not retry and await self.db.run(self.store.count_since, key["id"], time.time() - 86400) \
                >= key["daily_quota"]:
            raise quota_error
        sub = await self.submissions.complete(sub, key)
        fingerprint = sub.fingerprint()
        if idem:
            found = await self._replay(key, idem, fingerprint)
            if found is not None:
                return found
        job_id = uuid.uuid4().hex
        locations = {}

        def put_inputs():
            for name, c in sub.checked.items():
                url = self.objects.put_bytes(f"inputs/{sub.digests[name]}{c.ext}", sub.files[name][0], c.content_type)
                locations[name] = {"url": url, "sha256": sub.digests[name]}

        try:
            await self.work.run(put_inputs)
        except JobError as e:
            raise ApiError(503, "storage_unavailable", e.message, {"Retry-After": "5"}) from None
        doc = make_job(job_id, self.s.template, locations, sub.parameters,
                       metadata={"api_key": key["id"], **({"client": sub.metadata} if sub.metadata else {})})
        inputs_view = {name: {"sha256": sub.digests[name], "size": c.size, "content_type": c.content_type,
                              **({"width": c.width, "height": c.height} if name == "image" else
                                 {"duration_s": round(c.duration_s, 3)})} for name, c in sub.checked.items()}
        row = {"id": job_id, "key_id": key["id"], "idem_key": idem, "fingerprint": fingerprint,
               "status": "accepting", "template": self.s.template, "parameters": sub.parameters,
               "inputs": inputs_view, "webhook_url": sub.webhook_url, "message": json.dumps(doc)}
        outcome = await self.db.run(self.store.insert_job, row, key["daily_quota"])
        if outcome == "over_quota":  # inputs stay stored: content-addressed, the next accepted job reuses them
            raise quota_error
        if outcome == "duplicate":  # a concurrent request with the same Idempotency-Key won
            found = await self._replay(key, idem, fingerprint)
            if found is not None:
                return found
            raise ApiError(409, "idempotency_conflict", "a request with this Idempotency-Key is being processed")
        try:
            await self.publisher.publish(doc)
        except NotQueued as e:  # refused by the broker, or never sent: certainly not queued, so say so
            await self.db.run(self.store.delete_job, job_id)
            log.warning("job %s not queued: %s", job_id, e)
            raise ApiError(503, "queue_unavailable", "the queue did not take the job; nothing was queued, retry "
                                                     "later", {"Retry-After": "5"}) from None
        except MaybeQueued as e:  # the broker may have it: the row stays, and is published again if never confirmed
            log.warning("job %s sent but not confirmed (%s); kept for the upkeep to publish again", job_id, e)
            self._confirm_later(job_id, e.confirmed)
        else:
            await self.db.run(self.store.set_status, job_id, "queued", ("accepting",))
        job = await self.db.run(self.store.get_job, job_id)
        return web.json_response(self.document(job), status=202, headers={"Location": f"/v1/jobs/{job_id}"})

    def _confirm_later(self, job_id: str, confirmed) -> None:
        async def wait():
            try:
                await confirmed
            except Exception:  # noqa: BLE001 - never confirmed: the upkeep publishes it again
                return
            await self.db.run(self.store.set_status, job_id, "queued", ("accepting",))

        task = asyncio.create_task(wait())
        self.confirming.add(task)
        task.add_done_callback(self.confirming.discard)

    async def _replay(self, key, idem, fingerprint):
        old = await self.db.run(self.store.job_by_idem, key["id"], idem)
        if old is None:
            return None
        if old["fingerprint"] != fingerprint:
            raise ApiError(409, "idempotency_conflict", "this Idempotency-Key was used with a different request")
        if old["status"] == "accepting":
            raise ApiError(409, "idempotency_conflict", "a request with this Idempotency-Key is being processed",
                           {"Retry-After": "1"})
        return web.json_response(self.document(old), status=200,
                                 headers={"Idempotent-Replayed": "true", "Location": f"/v1/jobs/{old['id']}"})

    async def own_job(self, request, key) -> dict:
        job_id = request.match_info["id"]
        job = await self.db.run(self.store.get_job, job_id) if re.fullmatch(r"[0-9a-f]{32}", job_id) else None
        if job is None or job["key_id"] != key["id"]:  # an 'accepting' job shows as queued
            raise ApiError(404, "not_found", "no such job for this API key")
        return job

    async def get_job(self, request):
        key = await self.auth(request)
        await self.limit(key, "read")
        return web.json_response(self.document(await self.own_job(request, key)))

    async def cancel_job(self, request):
        return await cancel_job(self, request)

    async def list_jobs(self, request):
        key = await self.auth(request)
        await self.limit(key, "read")
        try:
            limit = int(request.query.get("limit", "50"))
            before = float(request.query["before"]) if "before" in request.query else None
        except ValueError:
            raise ApiError(400, "bad_query", "limit must be an integer and before a number") from None
        if not 1 <= limit <= 100 or (before is not None and not (before == before and abs(before) < 1e12)):
            raise ApiError(400, "bad_query", "limit is 1 to 100; before is seconds since the epoch")
        jobs = await self.db.run(self.store.list_jobs, key["id"], limit, before)
        return web.json_response({"jobs": [self.document(j) for j in jobs]})

    async def events(self, request):
        """Server-sent events of one job until it finishes: at most `streams_per_key` open at once for a key, each
        for at most `stream_max_s` (then closed: the client resumes with Last-Event-ID)."""
        key = await self.auth(request)
        await self.limit(key, "read")
        job = await self.own_job(request, key)
        with self.streams.take(key["id"]):
            return await self._stream(request, job)

    async def _stream(self, request, job: dict):
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
        until = time.monotonic() + self.s.stream_max_s
        try:
            while time.monotonic() < until and not self.closing:
                if job["seq"] != last:
                    last = job["seq"]
                    await resp.write(f"id: {last}\nevent: job\ndata: {json.dumps(self.document(job))}\n\n".encode())
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
        except StoreUnavailable:  # the answer has begun: end the stream; the client resumes with Last-Event-ID
            log.warning("job store unavailable during the event stream of %s: ended", job["id"])
        finally:
            self.waiters.get(job["id"], set()).discard(ev)
            if not self.waiters.get(job["id"]):
                self.waiters.pop(job["id"], None)
        return resp

    async def openapi(self, request):
        return web.json_response(document())


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
    except Exception:  # a bug: log it, answer JSON
        log.exception("unhandled error on %s %s", request.method, request.path)
        resp = error_response(500, "internal_error", "an unexpected error; it was logged")
    if not resp.prepared:
        for name, value in SECURITY_HEADERS.items():
            resp.headers.setdefault(name, value)
        if request.app["door"].closing:  # draining: a keep-alive client opens its next request elsewhere
            resp.force_close()
    return resp


def make_app(settings: ApiSettings | None = None) -> web.Application:
    settings = settings or ApiSettings()
    door = FrontDoor(settings)
    app = web.Application(middlewares=[door.metrics.middleware, errors_middleware], client_max_size=1 << 20)
    app["door"] = door
    app.on_startup.append(door.on_startup)
    app.on_cleanup.append(door.on_cleanup)
    r = app.router
    r.add_post("/v1/jobs", door.create_job)
    r.add_get("/v1/jobs", door.list_jobs)
    r.add_get("/v1/jobs/{id}", door.get_job)
    r.add_delete("/v1/jobs/{id}", door.cancel_job)
    r.add_get("/v1/jobs/{id}/events", door.events)
    r.add_get("/v1/jobs/{id}/files/{name}", door.downloads.get_file)
    r.add_get("/v1/openapi.json", door.openapi)
    if not door.ops:
        add_ops_routes(r)
    add_routes(r)
    return app


def run_api(settings: ApiSettings) -> int:
    setup_logging()
    serve(make_app(settings), settings.host, settings.port, settings.shutdown_timeout_s)
    return 0
