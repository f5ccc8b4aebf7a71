"""The worker's Prometheus metrics and its HTTP endpoint (--metrics-host, --metrics-port):

    /livez     200 while every consumer thread is alive (a restart is the cure when one died); never depends on the
               broker or ComfyUI, so their outages do not get workers restarted
    /readyz    200 when every consumer has its broker connection and its ComfyUI answers, and the worker is not
               stopping; /healthz is the same (the name earlier releases served)
    /metrics   Prometheus text
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.jobs = Counter("sonicflow_jobs", "Jobs finished, by outcome (succeeded, cached, duplicate, retried, "
                            "dead_lettered, requeued, cancelled)", ["outcome"], registry=r)
        self.duration = Histogram("sonicflow_job_duration_seconds", "Wall time of one job in the worker",
                                  ["outcome"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600,
                                                        1800, 3600), registry=r)
        self.in_flight = Gauge("sonicflow_jobs_in_flight", "Jobs being worked on now", registry=r)
        self.queue_depth = Gauge("sonicflow_queue_depth", "Messages ready in a queue", ["queue"], registry=r)
        self.reconnects = Counter("sonicflow_broker_reconnects", "Broker (re)connections after a loss", registry=r)
        self.comfy_up = Gauge("sonicflow_comfy_up", "1 when this worker's ComfyUI answers", ["comfy"], registry=r)
        self.health: dict[str, dict] = {}
        self.stopping = False  # SIGTERM: not ready while the running jobs finish
        self._lock = threading.Lock()

    def set_health(self, consumer: str, **fields) -> None:
        with self._lock:
            self.health.setdefault(consumer, {}).update(fields)

    def healthy(self) -> tuple[bool, dict]:
        with self._lock:
            snapshot = {k: dict(v) for k, v in self.health.items()}
        ok = bool(snapshot) and all(v.get("broker") and v.get("comfy") for v in snapshot.values())
        return ok and not self.stopping, snapshot


def serve(metrics: Metrics, port: int, host: str = "127.0.0.1", threads=dict) -> ThreadingHTTPServer:
    """`threads()`: {name: alive} of the threads the worker needs (liveness)."""
    def answer(ok: bool, doc: dict):
        return json.dumps({"ok": ok, **doc}).encode(), 200 if ok else 503, "application/json"

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                body, status, ctype = generate_latest(metrics.registry), 200, CONTENT_TYPE_LATEST
            elif path == "/livez":
                alive = threads()
                body, status, ctype = answer(bool(alive) and all(alive.values()), {"threads": alive})
            elif path in ("/readyz", "/healthz"):
                ok, detail = metrics.healthy()
                body, status, ctype = answer(ok, {"consumers": detail, "stopping": metrics.stopping})
            else:
                body, status, ctype = b"not found\n", 404, "text/plain"
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
