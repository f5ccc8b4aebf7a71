"""`sonicflow worker`: one consumer per ComfyUI instance (one instance per GPU), JSON logs, /metrics and the probes
(/livez, /readyz; metrics.py).

SIGTERM (or Ctrl-C) stops taking jobs, lets the running ones finish within the grace period, else interrupts them
in ComfyUI and gives them back to the queue, then exits.
"""
from __future__ import annotations

import os
import signal
import threading
from dataclasses import replace

from .consumer import Consumer
from .logs import log, setup_logging
from .metrics import Metrics, serve
from .settings import Settings
from .template import TemplateLibrary


def run_worker(settings: Settings) -> int:
    setup_logging()
    settings = replace(settings, worker_id=settings.worker_id or f"{os.uname().nodename}:{os.getpid()}")
    if not settings.comfy_urls:
        raise SystemExit("sonicflow worker: give at least one --comfy URL (or SONICFLOW_COMFY_URL)")
    metrics = Metrics()
    stop = threading.Event()
    templates = TemplateLibrary(settings.templates, settings.timeout_s, settings.max_attempts)

    def on_signal(signum, _frame):
        log("stopping", worker=settings.worker_id, code=f"signal {signum}")
        metrics.stopping = True
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    consumers = [Consumer(settings, url, templates, metrics, stop, i) for i, url in enumerate(settings.comfy_urls)]
    log("worker_start", worker=settings.worker_id, comfy=list(settings.comfy_urls))
    for c in consumers:
        c.start()
    if settings.metrics_port:
        serve(metrics, settings.metrics_port, settings.metrics_host, lambda: {c.name: c.is_alive() for c in consumers})
    while not stop.is_set():
        stop.wait(0.5)
        if all(not c.is_alive() for c in consumers):
            break
    for c in consumers:
        c.join(settings.grace_s + 30)
    log("worker_exit", worker=settings.worker_id)
    return 0
