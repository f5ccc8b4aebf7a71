"""Settings of the bridge, each declared once: its default, environment variable, command-line flag and help text
all come from the declaration (`setting`), so `sonicflow <command> --help`, the environment and the docs cannot
disagree. Precedence: flag, then environment variable, then default.

Declared as dataclass fields with metadata, like the generation options (sonic_core.options), with no extra library:
the bridge keeps to the standard library, pika and requests.
"""
from __future__ import annotations

import argparse
import functools
import os
from dataclasses import dataclass, field, fields, replace

from .paths import OUT, data_dir

# The commands a setting is offered on (the CLI's sub-commands).
BROKER = ("worker", "submit", "status", "dlq", "cancel", "api")


def split(value: str) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def _parse(kind, text: str):
    if kind is bool:
        return text.strip().lower() in ("1", "true", "yes", "on")
    return kind(text)


def _items(item, text: str) -> list:
    return [item(v) for v in split(text)]


def _flag(f) -> str:
    return f.metadata["flag"] or "--" + f.name.replace("_", "-")


def _default_text(m) -> str:
    return ",".join(map(str, m["default"])) if m["kind"] is tuple else str(m["default"])


def setting(default, env: str | None, help: str, *, commands: tuple = (), flag: str | None = None,
            hidden: bool = False, item=str):
    """A setting: `default` (a tuple for lists: comma-separated in the environment, a repeated flag on the command
    line), the environment variable that sets it, and the commands whose flags offer it (`flag` overrides the flag's
    name; `hidden` keeps it out of --help: tests only). `item` converts list items (e.g. float)."""
    kind = type(default)

    def from_env():
        raw = os.environ.get(env) if env else None
        if raw is None:
            return default
        return tuple(_items(item, raw)) if kind is tuple else _parse(kind, raw)

    return field(default_factory=from_env, metadata={"env": env, "help": help, "commands": commands, "flag": flag,
                                                     "hidden": hidden, "kind": kind, "item": item, "default": default})


class Declared:
    """Flags and overrides for a settings dataclass built from its declarations."""

    @classmethod
    def add_flags(cls, parser: argparse.ArgumentParser, command: str) -> None:
        for f in fields(cls):
            m = f.metadata
            if command not in m.get("commands", ()):
                continue
            flag, default = _flag(f), _default_text(m)
            text = argparse.SUPPRESS if m["hidden"] else (
                f"{m['help']} (env {m['env']}; default {default if default != '' else 'none'})" if m["env"]
                else m["help"]).replace("%", "%%")
            if m["kind"] is bool:
                parser.add_argument(flag, dest=f.name, action="store_true", default=None, help=text)
            elif m["kind"] is tuple:  # repeated, or comma-separated, or both
                parser.add_argument(flag, dest=f.name, action="extend", help=text,
                                    type=functools.partial(_items, m["item"]))
            else:
                parser.add_argument(flag, dest=f.name, type=m["kind"], help=text)

    def with_args(self, args: argparse.Namespace):
        """These settings with what the command line gave (flags win over the environment)."""
        given = {f.name: getattr(args, f.name) for f in fields(self)
                 if f.metadata.get("commands") and getattr(args, f.name, None) is not None}
        return replace(self, **{k: tuple(v) if isinstance(v, list) else v for k, v in given.items()})

    @classmethod
    def documented(cls) -> list[tuple[str, str, str, str]]:
        """(flag, environment variable, default, help) of every setting offered to users, for the docs."""
        rows = []
        for f in fields(cls):
            m = f.metadata
            if m.get("hidden") or not m.get("env"):
                continue
            rows.append((_flag(f) if m["commands"] else "", m["env"], _default_text(m), m["help"]))
        return rows


@dataclass(frozen=True)
class Settings(Declared):
    amqp_urls: tuple = setting(("amqp://guest:guest@127.0.0.1:5672/%2F",), "SONICFLOW_AMQP_URL",
                               "broker URL; several (comma-separated, or the flag repeated) are tried in turn: the "
                               "nodes of a cluster", commands=BROKER, flag="--amqp")
    prefix: str = setting("sonicflow", "SONICFLOW_PREFIX", "name prefix of the queues and exchanges",
                          commands=BROKER)
    store_url: str = setting("file://" + os.path.join(OUT, "bridge-store"), "SONICFLOW_STORE_URL",
                             "result store: s3://bucket/prefix/ or a folder", commands=BROKER, flag="--store")
    # no variable of its own: empty means the S3 client's own settings (SONICFLOW_S3_ENDPOINT and the credentials,
    # read in one place, sonic_core.publish.s3, shared with Publish)
    s3_endpoint: str = setting("", None, "S3 endpoint URL (MinIO, Ceph...); default: SONICFLOW_S3_ENDPOINT, else AWS",
                               commands=BROKER)
    comfy_urls: tuple = setting(("http://127.0.0.1:8188",), "SONICFLOW_COMFY_URL",
                                "ComfyUI URL; one consumer per URL (one ComfyUI per GPU)", commands=("worker",),
                                flag="--comfy")
    templates: str = setting(data_dir("templates"), "SONICFLOW_TEMPLATES", "folder of API-format templates",
                             commands=("worker", "api"))
    input_root: str = setting("", "SONICFLOW_INPUT_ROOT", "path inputs must lie under it (empty: path inputs "
                              "refused)", commands=("worker",))
    http_allow: tuple = setting((), "SONICFLOW_HTTP_ALLOW", "host globs http(s) inputs may come from",
                                commands=("worker",))
    output_allow: tuple = setting((), "SONICFLOW_OUTPUT_ALLOW", "URL prefixes a job may send its results to",
                                  commands=("worker",))
    delivery_limit: int = setting(5, "SONICFLOW_DELIVERY_LIMIT", "x-delivery-limit of the jobs queue (poison jobs)",
                                  commands=("worker", "api"))
    quorum_size: int = setting(0, "SONICFLOW_QUORUM_SIZE", "replicas of each quorum queue on a RabbitMQ cluster "
                               "(x-quorum-initial-group-size; 0: the broker's default, every node on 3.x); every "
                               "worker and front door of a prefix must give the same", commands=("worker", "api"))
    retry_delays: tuple = setting((5.0, 30.0, 120.0, 600.0), "SONICFLOW_RETRY_DELAYS",
                                  "seconds before each retry of a retryable failure", commands=("worker", "api"),
                                  item=float)
    results_max: int = setting(10000, "SONICFLOW_RESULTS_MAX", "results kept in <p>.results for AMQP consumers; "
                               "beyond it the oldest are dropped (successes stay in the store's ledger)",
                               commands=("worker", "api"))
    max_attempts: int = setting(3, "SONICFLOW_MAX_ATTEMPTS", "attempts of a retryable failure (a template's "
                                ".bridge.json wins)", commands=("worker",))
    timeout_s: float = setting(600.0, "SONICFLOW_TIMEOUT", "seconds one attempt may run in ComfyUI (a template's "
                               ".bridge.json wins)", commands=("worker",), flag="--timeout")
    grace_s: float = setting(30.0, "SONICFLOW_GRACE", "on SIGTERM, seconds the running job may still take",
                             commands=("worker",), flag="--grace")
    heartbeat: int = setting(30, "SONICFLOW_HEARTBEAT", "AMQP heartbeat timeout in seconds", commands=("worker",))
    max_input_mb: float = setting(200.0, "SONICFLOW_MAX_INPUT_MB", "largest input file", commands=("worker",))
    metrics_port: int = setting(0, "SONICFLOW_METRICS_PORT", "serve /metrics, /livez, /readyz and /healthz on this "
                                "port (0: off)", commands=("worker",))
    metrics_host: str = setting("127.0.0.1", "SONICFLOW_METRICS_HOST", "address --metrics-port listens on "
                                "(0.0.0.0 for every interface)", commands=("worker",))
    engine_version: str = setting("", "SONICFLOW_ENGINE_VERSION", "extra text in the result cache's key: change it "
                                  "to invalidate cached results (e.g. after new weights)", commands=("worker",))
    allow_private_networks: bool = setting(False, None, "let http(s) inputs come from private addresses (loopback "
                                           "tests only)", commands=("worker",), hidden=True)
    worker_id: str = ""

    @property
    def max_input_bytes(self) -> int:
        return int(self.max_input_mb * 1024 * 1024)

    def topology(self):
        from .topology import Topology

        return Topology(prefix=self.prefix, delivery_limit=self.delivery_limit, retry_delays_s=self.retry_delays,
                        results_max=self.results_max, quorum_size=self.quorum_size)
