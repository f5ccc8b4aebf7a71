"""Settings of the front door, each declared once (queue_bridge.settings.setting): flags of `sonicflow api`,
environment variables and defaults come from these declarations."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from .. import OUT, Declared, Settings, setting

API = ("api",)


@dataclass(frozen=True)
class ApiSettings(Declared):
    bridge: Settings = field(default_factory=Settings)
    host: str = setting("127.0.0.1", "SONICFLOW_API_HOST", "listen address", commands=API)
    port: int = setting(8190, "SONICFLOW_API_PORT", "listen port", commands=API)
    metrics_port: int = setting(0, "SONICFLOW_API_METRICS_PORT", "serve /metrics, /livez, /readyz and /healthz on "
                                "this port, and not on the main one (0: on the main one)", commands=API)
    metrics_host: str = setting("127.0.0.1", "SONICFLOW_API_METRICS_HOST", "address the --metrics-port listener "
                                "binds (0.0.0.0 for every interface)", commands=API)
    shutdown_timeout_s: float = setting(30.0, "SONICFLOW_API_SHUTDOWN_S", "on SIGTERM, seconds requests in flight "
                                        "may take to finish (the listener closes at once; event streams end)",
                                        commands=API, flag="--shutdown-timeout")
    db_url: str = setting("sqlite:///" + os.path.join(OUT, "api", "api.db"), "SONICFLOW_API_DB",
                          "job store: sqlite:///path.db or postgresql://user@host:5432/db", commands=API, flag="--db")
    table_prefix: str = setting("sf_", "SONICFLOW_API_TABLE_PREFIX", "prefix of the job store's tables",
                                commands=API)
    public_url: str = setting("", "SONICFLOW_API_PUBLIC_URL", "absolute base URL of links in answers and webhooks "
                              "(empty: relative links)", commands=API)
    template: str = setting("talking_head", "SONICFLOW_API_TEMPLATE", "the workflow template jobs run",
                            commands=API)
    max_image_mb: float = setting(20.0, "SONICFLOW_API_MAX_IMAGE_MB", "largest portrait upload")
    max_audio_mb: float = setting(50.0, "SONICFLOW_API_MAX_AUDIO_MB", "largest speech upload")
    max_audio_s: float = setting(600.0, "SONICFLOW_API_MAX_AUDIO_S", "longest speech upload, in seconds")
    min_audio_s: float = 0.2
    url_allow: tuple = setting(("*",), "SONICFLOW_API_URL_ALLOW", "host globs URL inputs may come from (the "
                               "address checks always apply)")
    allow_private_inputs: bool = setting(False, "SONICFLOW_API_ALLOW_PRIVATE_INPUTS", "let URL inputs come from "
                                         "loopback/private addresses: tests only, never in production (SSRF)",
                                         hidden=True)
    webhook_allow: tuple = setting((), None, "host:port pairs webhooks may reach on private addresses (tests only)",
                                   commands=API, hidden=True)
    webhook_delays: tuple = setting((5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0), "SONICFLOW_API_WEBHOOK_DELAYS",
                                    "seconds between webhook attempts", item=float)
    webhook_legacy_headers: bool = setting(True, "SONICFLOW_API_WEBHOOK_LEGACY_HEADERS", "also send the "
                                           "SonicFlow-Webhook-Id/-Timestamp/-Signature headers of the previous "
                                           "release beside the Standard Webhooks ones (this release only)")
    publishers: int = setting(4, "SONICFLOW_API_PUBLISHERS", "connections publishing jobs (with confirms)")
    publish_backlog: int = setting(32, "SONICFLOW_API_PUBLISH_BACKLOG", "submissions that may wait for a publishing "
                                   "connection; beyond it 503 queue_unavailable at once")
    publish_wait_s: float = setting(10.0, "SONICFLOW_API_PUBLISH_WAIT_S", "longest a submission waits for the "
                                    "broker's confirm")
    reconcile_after_s: float = setting(120.0, "SONICFLOW_API_RECONCILE_AFTER_S", "a job row still unconfirmed this "
                                       "long after it was written (its front door died, or the confirm was lost) is "
                                       "published again, under the same job id")
    upload_deadline_s: float = setting(300.0, "SONICFLOW_API_UPLOAD_DEADLINE_S", "seconds a request body may take "
                                       "to arrive")
    streams_per_key: int = setting(8, "SONICFLOW_API_STREAMS_PER_KEY", "event streams one API key may hold open "
                                   "(per front-door process)")
    stream_max_s: float = setting(3600.0, "SONICFLOW_API_STREAM_MAX_S", "seconds an event stream stays open; the "
                                  "client reconnects with Last-Event-ID")
    webhook_per_key: int = setting(4, "SONICFLOW_API_WEBHOOK_PER_KEY", "webhook deliveries in flight for one API "
                                   "key")
    webhook_concurrency: int = setting(32, "SONICFLOW_API_WEBHOOK_CONCURRENCY", "webhook deliveries in flight in "
                                       "all")
    fetch_threads: int = setting(8, "SONICFLOW_API_FETCH_THREADS", "threads fetching URL inputs")
    fetch_per_key: int = setting(2, "SONICFLOW_API_FETCH_PER_KEY", "URL inputs one API key may have in flight")
    fetch_deadline_s: float = setting(60.0, "SONICFLOW_API_FETCH_DEADLINE_S", "seconds a whole URL fetch may take")
    fetch_min_kbps: float = setting(64.0, "SONICFLOW_API_FETCH_MIN_KBPS", "slowest a URL input may arrive after "
                                    "its first 5 s, in KiB/s")
    link_ttl_days: int = 7
    read_rate_per_min: float = 1200.0
    follow: bool = True  # consume results and progress from RabbitMQ (off in tests of the HTTP side alone)

    @property
    def max_image_bytes(self) -> int:
        return int(self.max_image_mb * 2 ** 20)

    @property
    def max_audio_bytes(self) -> int:
        return int(self.max_audio_mb * 2 ** 20)
