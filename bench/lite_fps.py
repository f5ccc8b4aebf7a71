"""Lite engine speed: frames per second at 512x512 (the example) and 1920x1080 (the example portrait in a
full-HD frame), on this machine's CPU.

Baseline, measured in the same run: one full-frame cv2.remap per frame, what a warp engine costs when it does not
restrict its work to the face region. Goals: >= 50 fps at 512x512, >= 25 fps (real time) at 1920x1080.
Writes bench/results/lite_fps.json.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import time

import cv2
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from sonic_core.engines.lite import LiteAnimator  # noqa: E402
from sonic_core.media.audio import load_audio  # noqa: E402
from sonic_core.media.face import detect_face  # noqa: E402
from sonic_core.media.image import load_image  # noqa: E402

FPS = 25.0
GOALS = {"512x512": 50.0, "1920x1080": 25.0}


def full_hd(portrait: np.ndarray) -> np.ndarray:
    """The portrait scaled so the face is about 400 px tall, centred on a 1920x1080 canvas."""
    scaled = cv2.resize(portrait, (1080, 1080), interpolation=cv2.INTER_CUBIC)
    canvas = np.full((1080, 1920, 3), 90, np.uint8)
    canvas[:, 420:1500] = scaled
    return canvas


def rate(fn, n: int) -> float:
    fn(0)  # warm-up
    t0 = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - t0)


def main() -> int:
    audio = load_audio(os.path.join(ROOT, "sample_media", "speech.wav"))
    portrait = load_image(os.path.join(ROOT, "sample_media", "portrait.png"))
    n = int(audio.duration * FPS)
    results = {"machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                           "opencv_threads": cv2.getNumThreads()}, "frames": n}
    for name, image in (("512x512", portrait), ("1920x1080", full_hd(portrait))):
        face = detect_face(image)
        anim = LiteAnimator(image, face, audio.mono_at(16000), FPS, n, seed=0)
        h, w = image.shape[:2]
        mx, my = np.meshgrid(np.arange(w, dtype=np.float32) + 0.5, np.arange(h, dtype=np.float32))
        naive = rate(lambda i: cv2.remap(image, mx, my, cv2.INTER_LINEAR), n)
        lite = rate(anim.frame, n)
        results[name] = {"lite_fps": lite, "baseline_full_frame_remap_fps": naive, "ratio_to_baseline": lite / naive,
                         "goal_fps": GOALS[name], "ratio_to_goal": lite / GOALS[name]}
        print(f"{name}: lite {lite:.0f} fps, full-frame remap baseline {naive:.0f} fps (ratio {lite / naive:.2f}); "
              f"goal {GOALS[name]:.0f} fps (ratio {lite / GOALS[name]:.2f})")
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "results", "lite_fps.json"), "w") as f:
        json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
