"""Settings of the bridge, from flags or environment variables (flags win)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A checkout or the ComfyUI pack folder holds templates/ and web/ at its top; an installed wheel carries them inside
# this package (pyproject.toml) and writes its outputs under the working directory, not into site-packages.
CHECKOUT = os.path.isdir(os.path.join(ROOT, "templates"))
OUT = os.path.join(ROOT if CHECKOUT else os.getcwd(), "out")
_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def data_dir(*checkout_path: str) -> str:
    """A data folder of the checkout (`web/pages`, `templates`), or its copy in an installed package."""
    return os.path.join(ROOT, *checkout_path) if CHECKOUT else os.path.join(_PACKAGE, checkout_path[-1])


ENV = {
    "amqp_url": ("SONICFLOW_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"),
    "comfy": ("SONICFLOW_COMFY_URL", "http://127.0.0.1:8188"),  # comma-separated for several
    "store": ("SONICFLOW_STORE_URL", "file://" + os.path.join(OUT, "bridge-store")),
    "s3_endpoint": ("SONICFLOW_S3_ENDPOINT", ""),
    "templates": ("SONICFLOW_TEMPLATES", data_dir("templates")),
    "input_root": ("SONICFLOW_INPUT_ROOT", ""),
    "http_allow": ("SONICFLOW_HTTP_ALLOW", ""),  # comma-separated host globs
    "output_allow": ("SONICFLOW_OUTPUT_ALLOW", ""),  # comma-separated URL prefixes a job may send results to
    "prefix": ("SONICFLOW_PREFIX", "sonicflow"),
    "delivery_limit": ("SONICFLOW_DELIVERY_LIMIT", "5"),
    "retry_delays": ("SONICFLOW_RETRY_DELAYS", "5,30,120,600"),
    "heartbeat": ("SONICFLOW_HEARTBEAT", "30"),
    "metrics_port": ("SONICFLOW_METRICS_PORT", "0"),
    "timeout": ("SONICFLOW_TIMEOUT", "600"),
    "max_attempts": ("SONICFLOW_MAX_ATTEMPTS", "3"),
    "grace": ("SONICFLOW_GRACE", "30"),
    "max_input_mb": ("SONICFLOW_MAX_INPUT_MB", "200"),
    "engine_version": ("SONICFLOW_ENGINE_VERSION", ""),
}


def env_default(key: str) -> str:
    name, default = ENV[key]
    return os.environ.get(name, default)


def split(value: str) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


@dataclass
class Settings:
    amqp_url: str = field(default_factory=lambda: env_default("amqp_url"))
    comfy_urls: list = field(default_factory=lambda: split(env_default("comfy")))
    store_url: str = field(default_factory=lambda: env_default("store"))
    s3_endpoint: str = field(default_factory=lambda: env_default("s3_endpoint"))
    templates: str = field(default_factory=lambda: env_default("templates"))
    input_root: str = field(default_factory=lambda: env_default("input_root"))
    http_allow: list = field(default_factory=lambda: split(env_default("http_allow")))
    output_allow: list = field(default_factory=lambda: split(env_default("output_allow")))
    allow_private_networks: bool = False
    prefix: str = field(default_factory=lambda: env_default("prefix"))
    delivery_limit: int = field(default_factory=lambda: int(env_default("delivery_limit")))
    retry_delays: tuple = field(default_factory=lambda: tuple(float(x) for x in split(env_default("retry_delays"))))
    heartbeat: int = field(default_factory=lambda: int(env_default("heartbeat")))
    metrics_port: int = field(default_factory=lambda: int(env_default("metrics_port")))
    timeout_s: float = field(default_factory=lambda: float(env_default("timeout")))
    max_attempts: int = field(default_factory=lambda: int(env_default("max_attempts")))
    grace_s: float = field(default_factory=lambda: float(env_default("grace")))
    max_input_bytes: int = field(default_factory=lambda: int(float(env_default("max_input_mb")) * 1024 * 1024))
    engine_version: str = field(default_factory=lambda: env_default("engine_version"))
    worker_id: str = ""

    def topology(self):
        from .topology import Topology

        return Topology(prefix=self.prefix, delivery_limit=self.delivery_limit, retry_delays_s=self.retry_delays)

    def connection_parameters(self, heartbeat: int | None = None):
        import pika

        params = pika.URLParameters(self.amqp_url)
        params.heartbeat = self.heartbeat if heartbeat is None else heartbeat
        params.blocked_connection_timeout = 60
        params.connection_attempts = 1
        params.socket_timeout = 5
        params.client_properties = {"connection_name": f"sonicflow {self.worker_id or 'client'}"}
        return params
