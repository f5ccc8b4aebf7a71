"""Video Encode's peak memory against ComfyUI's own CreateVideo + SaveVideo, for the same 60 s of 720p frames.

Each side runs in a fresh child process and reports its peak RSS (ru_maxrss):
- baseline: what CreateVideo + SaveVideo do: all frames as one IMAGE tensor (float32 [N,H,W,3]) wrapped in
  VideoFromComponents and saved with `save_to` (ComfyUI 0.3.75 from .comfyui/);
- sonicflow: sonic_core's encode_mp4, fed the same frames one at a time from a generator.
Goal: sonicflow's peak at most half the baseline's. Writes bench/results/encode_memory.json.

    .venv/bin/python bench/encode_memory.py [--seconds 60] [--width 1280 --height 720]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FPS = 25


def frame(i: int, w: int, h: int):
    """A cheap, moving, non-trivial picture (so the encoder does real work)."""
    import numpy as np

    x = np.arange(w, dtype=np.uint16)[None, :]
    y = np.arange(h, dtype=np.uint16)[:, None]
    return np.stack([(x + 3 * i) % 256 + 0 * y, (y + 2 * i) % 256 + 0 * x, ((x ^ y) + i) % 256], -1).astype(np.uint8)


def child(side: str, n: int, w: int, h: int, out: str) -> None:
    import numpy as np

    t0 = time.perf_counter()
    audio = (0.1 * np.sin(np.arange(int(n / FPS * 48000)) * 2 * np.pi * 220 / 48000)).astype(np.float32)[None]
    if side == "baseline":
        sys.path.insert(0, os.path.join(ROOT, ".comfyui"))
        from fractions import Fraction

        import torch
        from comfy_api.input_impl import VideoFromComponents
        from comfy_api.util import VideoComponents

        images = torch.empty((n, h, w, 3), dtype=torch.float32)  # the IMAGE batch CreateVideo receives
        for i in range(n):
            images[i] = torch.from_numpy(frame(i, w, h)).float() / 255
        video = VideoFromComponents(VideoComponents(images=images, frame_rate=Fraction(FPS),
                                                    audio={"waveform": torch.from_numpy(audio)[None],
                                                           "sample_rate": 48000}))
        video.save_to(out)
    else:
        import torch  # loaded in ComfyUI anyway: keeps both sides' baseline footprint equal

        sys.path.insert(0, ROOT)
        from sonic_core.media.audio import Audio
        from sonic_core.media.encode import encode_mp4

        encode_mp4((frame(i, w, h) for i in range(n)), out, fps=FPS, width=w, height=h, n_frames=n,
                   audio=Audio(audio, 48000), preset="medium")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"side": side, "peak_rss_bytes": peak, "seconds": time.perf_counter() - t0,
                      "file_bytes": os.path.getsize(out)}))


def run(side: str, args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, __file__, "--child", side, "--seconds", str(args.seconds), "--width", str(args.width),
               "--height", str(args.height), "--out", os.path.join(tmp, f"{side}.mp4")]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode:
            return {"side": side, "error": res.stderr[-2000:] or f"exit {res.returncode}"}
        return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--child")
    ap.add_argument("--out")
    args = ap.parse_args()
    n = int(args.seconds * FPS)
    if args.child:
        child(args.child, n, args.width, args.height, args.out)
        return 0
    ours, base = run("sonicflow", args), run("baseline", args)
    result = {"frames": n, "size": [args.width, args.height], "sonicflow": ours, "baseline": base}
    if "error" not in ours and "error" not in base:
        result["ratio_peak_memory"] = ours["peak_rss_bytes"] / base["peak_rss_bytes"]
        print(f"{n} frames {args.width}x{args.height}: SonicFlow Video Encode peak "
              f"{ours['peak_rss_bytes'] / 1e9:.2f} GB ({ours['seconds']:.0f} s), ComfyUI CreateVideo+SaveVideo peak "
              f"{base['peak_rss_bytes'] / 1e9:.2f} GB ({base['seconds']:.0f} s): "
              f"ratio {result['ratio_peak_memory']:.3f} (goal <= 0.5)")
    else:
        print(json.dumps(result, indent=1))
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "encode_memory.json"), "w") as f:
        json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
