"""The worker's Prometheus metrics and its /metrics + /healthz HTTP endpoint."""
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
                            "dead_lettered, requeued)", ["outcome"], registry=r)
        self.duration = Histogram("sonicflow_job_duration_seconds", "Wall time of one job in the worker",
                                  ["outcome"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600,
                                                        1800, 3600), registry=r)
        self.in_flight = Gauge("sonicflow_jobs_in_flight", "Jobs being worked on now", registry=r)
        self.queue_depth = Gauge("sonicflow_queue_depth", "Messages ready in a queue", ["queue"], registry=r)
        self.reconnects = Counter("sonicflow_broker_reconnects", "Broker (re)connections after a loss", registry=r)
        self.comfy_up = Gauge("sonicflow_comfy_up", "1 when this worker's ComfyUI answers", ["comfy"], registry=r)
        self.health: dict[str, dict] = {}
        self._lock = threading.Lock()

    def set_health(self, consumer: str, **fields) -> None:
        with self._lock:
            self.health.setdefault(consumer, {}).update(fields)

    def healthy(self) -> tuple[bool, dict]:
        with self._lock:
            snapshot = {k: dict(v) for k, v in self.health.items()}
        ok = bool(snapshot) and all(v.get("broker") and v.get("comfy") for v in snapshot.values())
        return ok, snapshot


def serve(metrics: Metrics, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            if self.path.startswith("/metrics"):
                body, status, ctype = generate_latest(metrics.registry), 200, CONTENT_TYPE_LATEST
            elif self.path.startswith("/healthz"):
                ok, detail = metrics.healthy()
                body, status, ctype = json.dumps({"ok": ok, "consumers": detail}).encode(), 200 if ok else 503, \
                    "application/json"
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
