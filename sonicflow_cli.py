"""The `sonicflow` command. Sub-commands import their part lazily, so `sonicflow worker` never loads torch."""
from __future__ import annotations

import argparse
import json
import sys


def _generate(args) -> int:
    from sonic_core.pipeline import make_video

    last = [-1]

    def progress(done, total):
        pct = done * 100 // total
        if pct != last[0] and pct % 10 == 0:
            print(f"  {pct}% ({done}/{total} frames)", file=sys.stderr, flush=True)
            last[0] = pct

    info = make_video(args.image, args.audio, args.out, engine=args.engine, min_resolution=args.min_resolution,
                      expand_ratio=args.expand_ratio, duration=args.duration, no_face=args.no_face,
                      inference_steps=args.steps, dynamic_scale=args.dynamic_scale, motion_scale=args.motion_scale,
                      seed=args.seed, crf=args.crf, preset=args.preset,
                      weight_roots=[args.checkpoints] if args.checkpoints else [], progress=progress)
    print(json.dumps({"out": args.out, "frames": info.n_frames, "fps": info.fps, "duration": round(info.duration, 3),
                      "size": [info.width, info.height], "engine": json.loads(info.metadata["sonicflow"])["engine"]}))
    return 0


def _sync_check(args) -> int:
    from sonic_core.sync import measure_sync

    report = measure_sync(args.video, args.audio, max_offset_frames=args.max_offset)
    print(json.dumps(report.to_dict()))
    ok = abs(report.offset_frames) <= args.tolerance and report.peak >= args.min_peak
    return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="sonicflow", description="Talking-head videos from a portrait and speech.")
    sub = ap.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="portrait + speech -> MP4, without ComfyUI")
    g.add_argument("--image", required=True)
    g.add_argument("--audio", required=True)
    g.add_argument("--out", required=True)
    g.add_argument("--engine", choices=("auto", "sonic", "lite"), default="auto")
    g.add_argument("--checkpoints", help="folder with Sonic's weights (official checkpoints/ or models/sonic layout)")
    g.add_argument("--min-resolution", type=int, default=512)
    g.add_argument("--expand-ratio", type=float, default=0.5)
    g.add_argument("--duration", type=float, default=0.0, help="seconds of audio to use; 0 = all")
    g.add_argument("--no-face", choices=("error", "animate_centre"), default="error")
    g.add_argument("--steps", type=int, default=25)
    g.add_argument("--dynamic-scale", type=float, default=1.0)
    g.add_argument("--motion-scale", type=float, default=1.0)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--crf", type=int, default=18)
    g.add_argument("--preset", default="veryfast")
    g.set_defaults(run=_generate)

    s = sub.add_parser("sync-check", help="lip-sync meter: audio-video offset and correlation of a talking-head video")
    s.add_argument("video")
    s.add_argument("--audio", help="speech to compare with (default: the video's own sound track)")
    s.add_argument("--max-offset", type=int, default=10, help="largest offset searched, in frames")
    s.add_argument("--tolerance", type=int, default=1, help="exit 1 when |offset| is larger")
    s.add_argument("--min-peak", type=float, default=0.5, help="exit 1 when the peak correlation is lower")
    s.set_defaults(run=_sync_check)
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
