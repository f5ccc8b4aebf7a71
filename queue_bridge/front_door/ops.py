"""The front door for its operators: Prometheus metrics, liveness and readiness, and where they listen.

    /livez     200 while the process can do its work: its background tasks, results follower and publishing threads
               are alive (a restart is the cure when one died). Never depends on the database or the broker, so an
               outage of either does not get every front door restarted.
    /readyz    200 when it should get traffic: the job store answers, the broker is connected (results follower),
               no pool is backed up, the background tasks run, and it is not shutting down. /healthz is the same
               (the name earlier releases served).
    /metrics   requests by route, method and status; request latency; job publishes (ok, refused, unconfirmed); the
               jobs queue's depth as last seen; webhook attempts by outcome.

They are served on the main listener, or, with `--metrics-port`, only on their own (`--metrics-host`, loopback by
default), so a public listener shows none of them.

SIGTERM (or Ctrl-C) drains before aiohttp's own shutdown, which reads nothing more from a connection once it begins
(aiohttp issue #2298): an upload still arriving would be held for the whole timeout and then cut. So first the
listener closes, readiness turns 503 and event streams end (clients resume elsewhere with Last-Event-ID); the
requests in flight, uploads included, get up to --shutdown-timeout to finish (their jobs published and confirmed);
then aiohttp closes what is left and the background work stops.
"""
from __future__ import annotations

import asyncio
import signal
import sys
import time

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

METHODS = {"GET", "HEAD", "POST", "DELETE", "OPTIONS", "PUT", "PATCH"}  # anything else is "other": bounded labels


class ApiMetrics:
    def __init__(self):
        r = self.registry = CollectorRegistry()
        self.requests = Counter("sonicflow_api_requests", "HTTP requests answered, by route, method and status "
                                "(499: the client went away first)", ["route", "method", "status"], registry=r)
        self.latency = Histogram("sonicflow_api_request_duration_seconds", "Time to answer a request (event streams: "
                                 "how long they stayed open)", ["route", "method"], registry=r,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600))
        self.publishes = Counter("sonicflow_api_publishes", "Jobs published to the broker: ok (confirmed), refused "
                                 "(certainly not queued: 503), unconfirmed (maybe queued: kept for the upkeep)",
                                 ["outcome"], registry=r)
        self.queue_depth = Gauge("sonicflow_api_queue_depth", "Messages ready in a queue, as the front door last saw "
                                 "it (every 5 s while connected)", ["queue"], registry=r)
        self.active = 0  # handlers running now: the drain waits for them
        Gauge("sonicflow_api_requests_in_flight", "Requests being handled now", registry=r).set_function(
            lambda: self.active)
        self.webhooks = Counter("sonicflow_api_webhooks", "Webhook delivery attempts, by outcome (delivered, retry, "
                                "failed: given up, refused: a target that can never be reached)", ["outcome"],
                                registry=r)

    @web.middleware
    async def middleware(self, request, handler):
        t0, status = time.monotonic(), 500
        self.active += 1
        try:
            resp = await handler(request)
            status = resp.status
            return resp
        except web.HTTPException as e:
            status = e.status
            raise
        except asyncio.CancelledError:
            status = 499
            raise
        finally:
            self.active -= 1
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else "unmatched"
            method = request.method if request.method in METHODS else "other"
            self.requests.labels(route, method, str(status)).inc()
            self.latency.labels(route, method).observe(time.monotonic() - t0)


async def livez(request):
    door = request.app["door"]
    checks = {name: not t.done() for name, t in door.tasks.items()}
    checks["publishers"] = door.publisher is not None and door.publisher.alive()
    if door.s.follow:
        checks["follower"] = door.follower is not None and door.follower.is_alive()
    ok = all(checks.values())
    return web.json_response({"status": "ok" if ok else "dead", **checks}, status=200 if ok else 503)


async def readyz(request):
    """Ready when the job store answers, the broker is connected (when following), no pool is backed up and the
    background tasks run; never while shutting down."""
    door = request.app["door"]
    broker = bool(door.follower and door.follower.connected) if door.s.follow else None
    try:
        await asyncio.wait_for(door.db.run(door.store.ping), 3.0)
        store = True
    except Exception:  # noqa: BLE001 - down, or too slow to answer: either way not ready
        store = False
    pools = {p.name: p.state() for p in (door.db, door.work, door.fetches)}
    pools["publish"] = door.publisher.state()
    tasks = {name: not t.done() for name, t in door.tasks.items()}  # a background loop that died: not ready
    ok = (store and broker is not False and not any(p["backed_up"] for p in pools.values()) and all(tasks.values())
          and not door.closing)
    status = "stopping" if door.closing else "ok" if ok else "degraded"
    return web.json_response({"status": status, "broker": broker, "store": store, "pools": pools, "tasks": tasks,
                              "webhooks": door.deliverer.state(), "streams": door.streams.used},
                             status=200 if ok else 503)


async def metrics(request):
    body = generate_latest(request.app["door"].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_ops_routes(router) -> None:
    router.add_get("/livez", livez)
    router.add_get("/readyz", readyz)
    router.add_get("/healthz", readyz)
    router.add_get("/metrics", metrics)


class OpsListener:
    """The ops endpoints on an address of their own (started and stopped with the main app)."""

    def __init__(self, door, host: str, port: int):
        self.app = web.Application()
        self.app["door"] = door
        add_ops_routes(self.app.router)
        self.host, self.port = host, port
        self.runner = None

    async def start(self) -> None:
        self.runner = web.AppRunner(self.app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.host, self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def serve(app: web.Application, host: str, port: int, shutdown_timeout_s: float) -> None:
    """Serve `app` until SIGTERM or SIGINT, then drain (above) and stop."""
    door = app["door"]

    async def main():
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)  # the drain did the waiting
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        print(f"sonicflow api on http://{host}:{port} (pages at /, OpenAPI at /v1/openapi.json)", file=sys.stderr,
              flush=True)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
            door.close_streams()
            await site.stop()  # no new connections; the open ones are still read
            deadline = time.monotonic() + shutdown_timeout_s
            while door.metrics.active and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        finally:
            await runner.cleanup()

    asyncio.run(main())

