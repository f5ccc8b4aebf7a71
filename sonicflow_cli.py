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
    if args.setup:
        from sonic_core import setup_sync_meter

        print(json.dumps({"sync_venv": setup_sync_meter()}))
        return 0
    if not args.video:
        print("sonicflow sync-check: give a VIDEO to measure (or --setup)", file=sys.stderr)
        return 2
    from sonic_core import measure_sync

    report = measure_sync(args.video, args.audio, max_offset_frames=args.max_offset)
    print(json.dumps(report.to_dict()))
    ok = abs(report.offset_frames) <= args.tolerance and report.peak >= args.min_peak
    return 0 if ok else 1


# --- the batch bridge (queue_bridge: pika + requests, never torch) ----------------------------------------------------

def _bridge_settings(args):
    """The bridge's settings: environment and defaults, overridden by the command's flags."""
    from queue_bridge.settings import Settings

    return Settings().with_args(args)


def _worker(args) -> int:
    from queue_bridge.worker import run_worker

    return run_worker(_bridge_settings(args))


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
    from queue_bridge.client import BridgeClient, NotAccepted, Unconfirmed, new_job_id
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
    except Unconfirmed as e:
        print(json.dumps({"job_id": job["job_id"], "accepted": None, "error": str(e)}))
        return 3
    if args.wait:
        if result is None:
            print(json.dumps({"job_id": job["job_id"], "accepted": True, "error": "no result within --wait-timeout"}))
            return 4
        print(json.dumps(result, indent=2))
        return 0 if result.get("status") == "succeeded" else 1
    print(json.dumps({"job_id": job["job_id"], "accepted": True}))
    return 0


def _cancel(args) -> int:
    """The store's marker first (what a worker taking the job later finds), then the broadcast (what interrupts a
    worker running it now)."""
    from queue_bridge.client import BridgeClient
    from queue_bridge.protocol import JobError, valid_job_id
    from queue_bridge.store import open_store

    s = _bridge_settings(args)
    if not valid_job_id(args.job_id):
        print(f"sonicflow cancel: {args.job_id!r} is not a job id (letters, digits and ._:- , at most 128)",
              file=sys.stderr)
        return 2
    try:
        open_store(s.store_url, s.s3_endpoint).mark_cancelled(args.job_id, "sonicflow cancel")
    except JobError as e:
        print(f"sonicflow cancel: the store {s.store_url} did not take the cancel ({e.message}); nothing was "
              "cancelled: use the workers' --store", file=sys.stderr)
        return 2
    try:
        with BridgeClient(s, declare=False) as client:
            client.broadcast_cancel(args.job_id)
    except Exception as e:  # noqa: BLE001 - the marker holds: only a worker running the job now goes on with it
        print(json.dumps({"job_id": args.job_id, "cancelled": True, "broadcast": False,
                          "error": f"the broker did not take the cancel message ({type(e).__name__}): a worker "
                                   "running the job now finishes it, but its result is 'cancelled'"}))
        return 3
    print(json.dumps({"job_id": args.job_id, "cancelled": True, "broadcast": True}))
    return 0


def _status(args) -> int:
    from queue_bridge.client import BridgeClient

    with BridgeClient(_bridge_settings(args), declare=False) as client:  # reading creates nothing
        print(json.dumps(client.status(), indent=2))
    return 0


def _dlq(args) -> int:
    from queue_bridge.client import BridgeClient

    with BridgeClient(_bridge_settings(args), declare=False) as client:  # reading creates nothing
        if args.action == "list":
            items = client.dlq_list(args.limit)
            for item in items:
                item.pop("body", None) if not args.bodies else None
            print(json.dumps(items, indent=2))
        else:
            replayed = client.dlq_replay(set(args.job_id) if args.job_id else None, args.code, args.limit)
            print(json.dumps({"replayed": replayed}))
    return 0


def _label_check(args) -> int:
    from sonic_core import check_labels

    report = check_labels(args.video)
    print(json.dumps(report.to_dict(), ensure_ascii=False))
    return 0 if report.visible and report.implicit else 1


def _convert(args) -> int:
    from sonic_core.sonic.convert import convert

    for src, target, size in convert([args.checkpoints], args.dtype):
        print(f"{src} -> {target} ({size / 1e9:.2f} GB)")
    return 0


def _models(args) -> int:
    from sonic_core.model_files import commands

    if args.action == "check":
        return commands.check(args.dest, args.layout)
    return commands.download(args.dest, args.layout, mirror=args.mirror, token=args.token)


def _api(args) -> int:
    """The HTTP front door (queue_bridge.front_door): serve, or manage API keys in its job store."""
    from queue_bridge.front_door.migrations import SchemaTooNew

    try:
        return _api_action(args)
    except SchemaTooNew as e:  # an older SonicFlow on a newer job store: say so, no traceback
        print(f"sonicflow api: {e}", file=sys.stderr)
        return 2


def _api_action(args) -> int:
    from queue_bridge.front_door import ApiSettings, JobStore, run_api

    s = ApiSettings(bridge=_bridge_settings(args)).with_args(args)
    if args.action == "serve":
        return run_api(s)
    store = JobStore(s.db_url, s.table_prefix)
    try:
        if args.action == "create-key":
            print(json.dumps(store.create_key(args.name, args.rate, args.burst, args.quota), indent=2))
            print("Keep api_key and webhook_secret now: only a hash of the key is stored.", file=sys.stderr)
        elif args.action == "rotate-link-secret":
            store.rotate_link_secret(args.grace_hours * 3600)
            print(json.dumps({"rotated": True, "previous_valid_hours": args.grace_hours}))
        else:
            if not args.key_id or not store.revoke_key(args.key_id):
                print(f"sonicflow api: no key {args.key_id!r}", file=sys.stderr)
                return 1
            print(json.dumps({"revoked": args.key_id}))
    finally:
        store.close()
    return 0


def _settings_flags(parser, command: str) -> None:
    from queue_bridge.front_door.api_settings import ApiSettings
    from queue_bridge.settings import Settings

    Settings.add_flags(parser, command)
    if command == "api":
        ApiSettings.add_flags(parser, command)


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

    mo = sub.add_parser("models", help="download the Sonic engine's weight files, or check them")
    mo.add_argument("action", choices=("download", "check"))
    mo.add_argument("--dest", help="folder: ComfyUI/models/sonic (comfyui layout) or the folder given to "
                                   "--checkpoints (official layout); default: this ComfyUI's models/sonic, "
                                   "else ./checkpoints")
    mo.add_argument("--layout", choices=("comfyui", "official"),
                    help="comfyui: ComfyUI_Sonic's names; official: jixiaozhong/Sonic's checkpoints/ tree")
    mo.add_argument("--mirror", help="download: base URL of a Hugging Face mirror (default: $HF_ENDPOINT, else "
                                     "https://huggingface.co)")
    mo.add_argument("--token", help="download: Hugging Face token for gated files (better: set HF_TOKEN)")
    mo.set_defaults(run=_models)

    lc = sub.add_parser("label-check", help="read a video's AI-content labels (visible and AIGC metadata)")
    lc.add_argument("video")
    lc.set_defaults(run=_label_check)

    s = sub.add_parser("sync-check", help="lip-sync meter: audio-video offset and correlation of a talking-head video "
                                          "(MediaPipe FaceMesh, in its own venv)")
    s.add_argument("video", nargs="?")
    s.add_argument("--setup", action="store_true", help="create or update the meter's venv (MediaPipe FaceMesh; env "
                                                        "SONICFLOW_SYNC_VENV, default .venv-sync), then exit")
    s.add_argument("--audio", help="speech to compare with (default: the video's own sound track)")
    s.add_argument("--max-offset", type=int, default=10, help="largest offset searched, in frames")
    s.add_argument("--tolerance", type=int, default=1, help="exit 1 when |offset| is larger")
    s.add_argument("--min-peak", type=float, default=0.5, help="exit 1 when the peak correlation is lower")
    s.set_defaults(run=_sync_check)

    w = sub.add_parser("worker", help="batch bridge: run jobs from RabbitMQ on one or more ComfyUI instances")
    _settings_flags(w, "worker")
    w.set_defaults(run=_worker)

    j = sub.add_parser("submit", help="batch bridge: queue one job (confirmed by the broker)")
    _settings_flags(j, "submit")
    j.add_argument("--template", default="talking_head")
    j.add_argument("--image", help="file, s3:// or http(s) URL")
    j.add_argument("--audio", help="file, s3:// or http(s) URL")
    j.add_argument("--input", action="append", help="NAME=LOCATION for other file inputs")
    j.add_argument("--param", action="append", help="KEY=VALUE (JSON value, else a string), e.g. seed=7 engine=lite")
    j.add_argument("--job-id", dest="job_id", help="idempotency key (default: a new UUID)")
    j.add_argument("--timeout", type=float, help="seconds one attempt may run in ComfyUI")
    j.add_argument("--output",
                   help="where results go (s3://bucket/prefix/ or file:///folder/), if the worker allows it")
    j.add_argument("--wait", action="store_true", help="wait for the result and print it as JSON")
    j.add_argument("--wait-timeout", dest="wait_timeout", type=float, default=3600.0)
    j.set_defaults(run=_submit)

    cn = sub.add_parser("cancel", help="batch bridge: cancel a job (skipped if queued, interrupted if running)")
    _settings_flags(cn, "cancel")
    cn.add_argument("job_id", metavar="JOB_ID")
    cn.set_defaults(run=_cancel)

    st = sub.add_parser("status", help="batch bridge: messages and consumers of every queue")
    _settings_flags(st, "status")
    st.set_defaults(run=_status)

    d = sub.add_parser("dlq", help="batch bridge: list or replay dead-lettered jobs")
    _settings_flags(d, "dlq")
    d.add_argument("action", choices=("list", "replay"))
    d.add_argument("--job-id", dest="job_id", action="append", help="replay only this job (repeatable)")
    d.add_argument("--code", help="replay only jobs dead-lettered with this reason code")
    d.add_argument("--limit", type=int, default=1000)
    d.add_argument("--bodies", action="store_true", help="list: include the job bodies")
    d.set_defaults(run=_dlq)

    a = sub.add_parser("api", help="HTTP front door: upload page + REST API before the queue; API keys")
    a.add_argument("action", nargs="?", default="serve",
                   choices=("serve", "create-key", "revoke-key", "rotate-link-secret"))
    _settings_flags(a, "api")
    a.add_argument("--name", default="default", help="create-key: a label for the key")
    a.add_argument("--rate", type=float, default=30.0, help="create-key: submissions per minute")
    a.add_argument("--burst", type=int, default=10, help="create-key: submissions allowed at once")
    a.add_argument("--quota", type=int, default=1000, help="create-key: submissions per 24 hours")
    a.add_argument("--key-id", dest="key_id", help="revoke-key: the key's id (the 12 hex after sfk_)")
    a.add_argument("--grace-hours", dest="grace_hours", type=float, default=24.0,
                   help="rotate-link-secret: hours links signed with the previous secret keep working (0: none)")
    a.set_defaults(run=_api)
    return ap


# The extra that brings each optional package (pyproject.toml): a canvas user's install has none of them.
EXTRAS = {"pika": "bridge", "websocket": "bridge", "jsonschema": "bridge", "prometheus_client": "bridge",
          "aiohttp": "api", "psycopg": "api", "psycopg_pool": "api"}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from sonic_core.errors import MissingDependencyError, SonicFlowError

    try:
        return args.run(args)
    except ModuleNotFoundError as e:
        package = (e.name or "").split(".")[0]
        if package not in EXTRAS:
            raise
        e = MissingDependencyError(f"sonicflow {args.command}", package,
                                   f"pip install 'sonicflow[{EXTRAS[package]}]'")
        print(f"sonicflow {args.command}: {e}", file=sys.stderr)
        return 2
    except SonicFlowError as e:
        print(f"sonicflow {args.command}: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # only the expected outages are answered here; anything else is re-raised
        outage = _outage(e)
        if outage is None:
            raise
        print(f"sonicflow {args.command}: {outage}", file=sys.stderr)
        return 2


def _outage(e: Exception) -> str | None:
    """The one-line answer to an expected outage (a broker or a database that does not answer), else None."""
    kind = f"{type(e).__module__}.{type(e).__name__}"
    if any(c.__name__ == "AMQPConnectionError" for c in type(e).__mro__):  # (pika's, without importing it)
        return (f"RabbitMQ did not answer ({e}). Fix: start the broker, or point --amqp / SONICFLOW_AMQP_URL at a "
                "node that runs")
    if kind.startswith("pika.exceptions."):
        return f"RabbitMQ refused the request ({e}). Fix: check --prefix and the queues' settings (docs/queue.md)"
    if type(e).__name__ in ("StoreUnavailable", "PoolTimeout", "OperationalError"):
        return f"the job store's database did not answer ({e}). Fix: start it, or point --db / SONICFLOW_API_DB at it"
    return None


if __name__ == "__main__":
    sys.exit(main())
