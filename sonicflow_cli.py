"""The `sonicflow` command. Sub-commands import their part lazily, so `sonicflow worker` never loads torch."""
from __future__ import annotations

import argparse
import json
import sys


def _generate(args) -> int:
    from sonic_core import GenerateOptions, make_video, option_fields

    last = [-1]

    def progress(done, total):
        pct = done * 100 // total
        if pct != last[0] and pct % 10 == 0:
            print(f"  {pct}% ({done}/{total} frames)", file=sys.stderr, flush=True)
            last[0] = pct

    given = {f.name: getattr(args, f.name) for f in option_fields() if getattr(args, f.name) is not None}
    options = GenerateOptions(**{k: tuple(v) if isinstance(v, list) else v for k, v in given.items()})
    info = make_video(args.image, args.audio, args.out, options, min_resolution=args.min_resolution,
                      expand_ratio=args.expand_ratio, duration=args.duration, no_face=args.no_face, crf=args.crf,
                      preset=args.preset, frames_dir=args.frames_dir, labels=args.labels, progress=progress)
    print(json.dumps({"out": args.out, "frames": info.n_frames, "fps": info.fps, "duration": round(info.duration, 3),
                      "size": [info.width, info.height], "engine": json.loads(info.metadata["sonicflow"])["engine"]}))
    return 0


def _option_flags(parser) -> None:
    """`sonicflow generate`'s flags for the generation options, from their declarations (sonic_core.options)."""
    from sonic_core import option_fields

    for f in option_fields():
        m = f.metadata
        help_ = m["help"] + (" (sonic)" if m["sonic"] else "")
        if isinstance(f.default, bool):
            flag = m["flag"] or ("--no-" if f.default else "--") + f.name.replace("_", "-")
            parser.add_argument(flag, dest=f.name, action="store_false" if f.default else "store_true", default=None,
                                help=("turn off: " if f.default else "") + help_)
        elif isinstance(f.default, tuple):
            parser.add_argument(m["flag"], dest=f.name, action="append", type=str, help=help_)
        else:
            parser.add_argument(m["flag"] or "--" + f.name.replace("_", "-"), dest=f.name, type=type(f.default),
                                choices=m["choices"], help=f"{help_} (default {f.default})")


def _sync_check(args) -> int:
    from sonic_core.sync import measure_sync

    report = measure_sync(args.video, args.audio, max_offset_frames=args.max_offset)
    print(json.dumps(report.to_dict()))
    ok = abs(report.offset_frames) <= args.tolerance and report.peak >= args.min_peak
    return 0 if ok else 1


# --- the batch bridge (queue_bridge: pika + requests, never torch) -----------------------------------------------------

def _bridge_settings(args):
    from queue_bridge.config import Settings

    s = Settings()
    for attr, flag in (("amqp_url", "amqp"), ("prefix", "prefix"), ("store_url", "store"),
                       ("s3_endpoint", "s3_endpoint")):
        if getattr(args, flag, None):
            setattr(s, attr, getattr(args, flag))
    return s


def _worker(args) -> int:
    from queue_bridge.worker import run_worker

    s = _bridge_settings(args)
    if args.comfy:
        s.comfy_urls = args.comfy
    for attr in ("templates", "input_root", "delivery_limit", "heartbeat", "metrics_port", "max_attempts"):
        if getattr(args, attr) is not None:
            setattr(s, attr, getattr(args, attr))
    if args.http_allow:
        s.http_allow = args.http_allow
    if args.output_allow:
        s.output_allow = args.output_allow
    if args.retry_delays:
        s.retry_delays = tuple(float(x) for x in args.retry_delays.split(","))
    if args.timeout is not None:
        s.timeout_s = args.timeout
    if args.grace is not None:
        s.grace_s = args.grace
    if args.max_input_mb is not None:
        s.max_input_bytes = int(args.max_input_mb * 1024 * 1024)
    s.allow_private_networks = args.allow_private_networks
    return run_worker(s)


def _input_location(path_or_url: str, settings) -> str:
    """A URL the worker can read: URLs and s3:// as given; a local file is put into an s3 store, else its path."""
    import os

    if "://" in path_or_url:
        return path_or_url
    if not os.path.isfile(path_or_url):
        raise SystemExit(f"sonicflow submit: {path_or_url}: no such file")
    if settings.store_url.startswith("s3://"):
        import hashlib

        from queue_bridge.store import open_store

        with open(path_or_url, "rb") as f:
            data = f.read()
        digest = hashlib.sha256(data).hexdigest()
        store = open_store(settings.store_url, settings.s3_endpoint)
        return store.put_bytes(f"inputs/{digest}{os.path.splitext(path_or_url)[1]}", data)
    return os.path.abspath(path_or_url)


def _parse_value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def _submit(args) -> int:
    from queue_bridge.client import BridgeClient, NotAccepted, new_job_id
    from queue_bridge.protocol import make_job

    s = _bridge_settings(args)
    inputs = {}
    for name, loc in (("image", args.image), ("audio", args.audio)):
        if loc:
            inputs[name] = _input_location(loc, s)
    for item in args.input or []:
        name, _, loc = item.partition("=")
        inputs[name] = _input_location(loc, s)
    params = {}
    for item in args.param or []:
        key, _, value = item.partition("=")
        params[key] = _parse_value(value)
    job = make_job(args.job_id or new_job_id(), args.template, inputs, params, timeout_s=args.timeout,
                   output={"url": args.output} if args.output else None)
    try:
        with BridgeClient(s) as client:
            result = client.submit(job, wait=args.wait, timeout=args.wait_timeout)
    except NotAccepted as e:
        print(json.dumps({"job_id": job["job_id"], "accepted": False, "error": str(e)}))
        return 3
    if args.wait:
        if result is None:
            print(json.dumps({"job_id": job["job_id"], "accepted": True, "error": "no result within --wait-timeout"}))
            return 4
        print(json.dumps(result, indent=2))
        return 0 if result.get("status") == "succeeded" else 1
    print(json.dumps({"job_id": job["job_id"], "accepted": True}))
    return 0


def _status(args) -> int:
    from queue_bridge.client import BridgeClient

    with BridgeClient(_bridge_settings(args)) as client:
        print(json.dumps(client.status(), indent=2))
    return 0


def _dlq(args) -> int:
    from queue_bridge.client import BridgeClient

    with BridgeClient(_bridge_settings(args)) as client:
        if args.action == "list":
            items = client.dlq_list(args.limit)
            for item in items:
                item.pop("body", None) if not args.bodies else None
            print(json.dumps(items, indent=2))
        else:
            replayed = client.dlq_replay(set(args.job_id) if args.job_id else None, args.code, args.limit)
            print(json.dumps({"replayed": replayed}))
    return 0


def _bridge_common(p) -> None:
    p.add_argument("--amqp", help="broker URL (env SONICFLOW_AMQP_URL; default amqp://guest:guest@127.0.0.1:5672/%%2F)")
    p.add_argument("--prefix", help="name prefix of the queues and exchanges (env SONICFLOW_PREFIX; default sonicflow)")
    p.add_argument("--store", help="result store: s3://bucket/prefix/ or a folder (env SONICFLOW_STORE_URL)")
    p.add_argument("--s3-endpoint", dest="s3_endpoint", help="S3 endpoint URL (env SONICFLOW_S3_ENDPOINT)")


def _label_check(args) -> int:
    from sonic_core.publish.labels import check_labels

    report = check_labels(args.video)
    print(json.dumps(report.to_dict(), ensure_ascii=False))
    return 0 if report.visible and report.implicit else 1


def _convert(args) -> int:
    from sonic_core.sonic.convert import convert

    for src, target, size in convert([args.checkpoints], args.dtype):
        print(f"{src} -> {target} ({size / 1e9:.2f} GB)")
    return 0


def _api(args) -> int:
    """The HTTP front door (queue_bridge.api): serve, or manage API keys in its job store."""
    from queue_bridge.api import ApiSettings, run_api

    s = ApiSettings(bridge=_bridge_settings(args))
    for attr in ("host", "port", "public_url", "template", "db_url", "table_prefix"):
        if getattr(args, attr, None) is not None:
            setattr(s, attr, getattr(args, attr))
    if args.templates:
        s.bridge.templates = args.templates
    if args.webhook_allow:
        s.webhook_allow = args.webhook_allow
    if args.action == "serve":
        return run_api(s)
    from queue_bridge.jobstore import JobStore

    store = JobStore(s.db_url, s.table_prefix)
    try:
        if args.action == "create-key":
            print(json.dumps(store.create_key(args.name, args.rate, args.burst, args.quota), indent=2))
            print("Keep api_key and webhook_secret now: only a hash of the key is stored.", file=sys.stderr)
        else:
            if not args.key_id or not store.revoke_key(args.key_id):
                print(f"sonicflow api: no key {args.key_id!r}", file=sys.stderr)
                return 1
            print(json.dumps({"revoked": args.key_id}))
    finally:
        store.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="sonicflow", description="Talking-head videos from a portrait and speech.")
    sub = ap.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="portrait + speech -> MP4, without ComfyUI")
    g.add_argument("--image", required=True)
    g.add_argument("--audio", required=True)
    g.add_argument("--out", required=True)
    g.add_argument("--min-resolution", type=int, default=512)
    g.add_argument("--expand-ratio", type=float, default=0.5)
    g.add_argument("--duration", type=float, default=0.0, help="seconds of audio to use; 0 = all")
    g.add_argument("--no-face", choices=("error", "animate_centre"), default="error")
    _option_flags(g)
    g.add_argument("--frames-dir", help="also write every frame as a lossless PNG into this folder")
    g.add_argument("--labels", choices=("visible+metadata", "metadata", "off"), default="visible+metadata",
                   help="AI-content labels: visible 'AI生成' for 2 s + AIGC metadata (default), metadata only, or none")
    g.add_argument("--crf", type=int, default=18)
    g.add_argument("--preset", default="veryfast")
    g.set_defaults(run=_generate)

    c = sub.add_parser("convert", help="Sonic weights (.pth) -> safetensors beside them (UNet in fp16)")
    c.add_argument("--checkpoints", required=True, help="folder in the official checkpoints/ or models/sonic layout")
    c.add_argument("--dtype", choices=("fp16", "bf16", "fp32"), default="fp16", help="UNet precision")
    c.set_defaults(run=_convert)

    lc = sub.add_parser("label-check", help="read a video's AI-content labels (visible and AIGC metadata)")
    lc.add_argument("video")
    lc.set_defaults(run=_label_check)

    s = sub.add_parser("sync-check", help="lip-sync meter: audio-video offset and correlation of a talking-head video")
    s.add_argument("video")
    s.add_argument("--audio", help="speech to compare with (default: the video's own sound track)")
    s.add_argument("--max-offset", type=int, default=10, help="largest offset searched, in frames")
    s.add_argument("--tolerance", type=int, default=1, help="exit 1 when |offset| is larger")
    s.add_argument("--min-peak", type=float, default=0.5, help="exit 1 when the peak correlation is lower")
    s.set_defaults(run=_sync_check)

    w = sub.add_parser("worker", help="batch bridge: run jobs from RabbitMQ on one or more ComfyUI instances")
    _bridge_common(w)
    w.add_argument("--comfy", action="append", help="ComfyUI URL; repeat for one consumer per instance/GPU "
                                                    "(env SONICFLOW_COMFY_URL, comma-separated)")
    w.add_argument("--templates", help="folder of API-format templates (env SONICFLOW_TEMPLATES; default templates/)")
    w.add_argument("--input-root", dest="input_root", help="path inputs must lie under it (env SONICFLOW_INPUT_ROOT)")
    w.add_argument("--http-allow", dest="http_allow", action="append", help="host glob allowed for http(s) inputs")
    w.add_argument("--output-allow", dest="output_allow", action="append", help="URL prefix a job may send results to")
    w.add_argument("--delivery-limit", dest="delivery_limit", type=int, help="x-delivery-limit of the jobs queue")
    w.add_argument("--retry-delays", dest="retry_delays", help="seconds, comma-separated (default 5,30,120,600)")
    w.add_argument("--heartbeat", type=int, help="AMQP heartbeat timeout in seconds (default 30)")
    w.add_argument("--metrics-port", dest="metrics_port", type=int, help="serve /metrics and /healthz on this port")
    w.add_argument("--timeout", type=float, help="default job timeout in seconds (a template's .bridge.json wins)")
    w.add_argument("--max-attempts", dest="max_attempts", type=int, help="default attempts for retryable failures")
    w.add_argument("--grace", type=float, help="on SIGTERM, seconds the running job may still take (default 30)")
    w.add_argument("--max-input-mb", dest="max_input_mb", type=float, help="largest input file (default 200)")
    w.add_argument("--allow-private-networks", action="store_true", help=argparse.SUPPRESS)  # loopback tests only
    w.set_defaults(run=_worker)

    j = sub.add_parser("submit", help="batch bridge: queue one job (confirmed by the broker)")
    _bridge_common(j)
    j.add_argument("--template", default="talking_head")
    j.add_argument("--image", help="file, s3:// or http(s) URL")
    j.add_argument("--audio", help="file, s3:// or http(s) URL")
    j.add_argument("--input", action="append", help="NAME=LOCATION for other file inputs")
    j.add_argument("--param", action="append", help="KEY=VALUE (JSON value, else a string), e.g. seed=7 engine=lite")
    j.add_argument("--job-id", dest="job_id", help="idempotency key (default: a new UUID)")
    j.add_argument("--timeout", type=float, help="seconds one attempt may run in ComfyUI")
    j.add_argument("--output", help="where results go (s3://bucket/prefix/ or file:///folder/), if the worker allows it")
    j.add_argument("--wait", action="store_true", help="wait for the result and print it as JSON")
    j.add_argument("--wait-timeout", dest="wait_timeout", type=float, default=3600.0)
    j.set_defaults(run=_submit)

    st = sub.add_parser("status", help="batch bridge: messages and consumers of every queue")
    _bridge_common(st)
    st.set_defaults(run=_status)

    d = sub.add_parser("dlq", help="batch bridge: list or replay dead-lettered jobs")
    _bridge_common(d)
    d.add_argument("action", choices=("list", "replay"))
    d.add_argument("--job-id", dest="job_id", action="append", help="replay only this job (repeatable)")
    d.add_argument("--code", help="replay only jobs dead-lettered with this reason code")
    d.add_argument("--limit", type=int, default=1000)
    d.add_argument("--bodies", action="store_true", help="list: include the job bodies")
    d.set_defaults(run=_dlq)

    a = sub.add_parser("api", help="HTTP front door: upload page + REST API before the queue; API keys")
    _bridge_common(a)
    a.add_argument("action", nargs="?", default="serve", choices=("serve", "create-key", "revoke-key"))
    a.add_argument("--host", help="listen address (env SONICFLOW_API_HOST; default 127.0.0.1)")
    a.add_argument("--port", type=int, help="listen port (env SONICFLOW_API_PORT; default 8190)")
    a.add_argument("--db", dest="db_url", help="job store: sqlite:///path.db (default out/api/api.db) or "
                                               "postgresql://user@host/db (env SONICFLOW_API_DB)")
    a.add_argument("--table-prefix", dest="table_prefix", help="prefix of the job store's tables (default sf_)")
    a.add_argument("--public-url", dest="public_url", help="absolute base URL for links (default: relative links)")
    a.add_argument("--template", help="workflow template jobs run (default talking_head)")
    a.add_argument("--templates", help="folder of templates, to check parameter names (default templates/)")
    a.add_argument("--webhook-allow", dest="webhook_allow", action="append", help=argparse.SUPPRESS)  # tests only
    a.add_argument("--name", default="default", help="create-key: a label for the key")
    a.add_argument("--rate", type=float, default=30.0, help="create-key: submissions per minute")
    a.add_argument("--burst", type=int, default=10, help="create-key: submissions allowed at once")
    a.add_argument("--quota", type=int, default=1000, help="create-key: submissions per 24 hours")
    a.add_argument("--key-id", dest="key_id", help="revoke-key: the key's id (the 12 hex after sfk_)")
    a.set_defaults(run=_api)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from sonic_core.errors import SonicFlowError

    try:
        return args.run(args)
    except SonicFlowError as e:
        print(f"sonicflow {args.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
