"""Golden reference data from the OFFICIAL Sonic implementation (jixiaozhong/Sonic).

Run with the official implementation's own virtual environment (torch 2.14.1 CPU, diffusers 0.29.0,
transformers 4.43.2, huggingface_hub 0.23.4), with a checkout of the official repository OUTSIDE this project:

    /tmp/official-venv/bin/python devtools/official_reference.py \\
        --official /tmp/sonic-official --checkpoints /tmp/sonic_tiny --out tests/data/sonic_golden

Nothing of the official code is copied here: this driver imports it, runs `Sonic(device_id=-1).process(...)`
exactly as the official code does it, and records intermediate tensors through forward hooks, thin wrappers
around official callables (they call the original and keep its inputs/outputs) and the pipeline's own
`callback_on_step_end` hook (official_hooks.py). A few stand-alone calls of official modules (one UNet forward on
a small input, `Sonic.preprocess` for the crop box) are made after the run (official_records.py); manifest.json is
built by official_manifest.py. See tests/data/sonic_golden/README.md.

Run as a script, so that its folder, not the project, is on sys.path: its sibling modules import by name and
nothing of the project is imported. Not collected by pytest.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import wave

import torch
from official_hooks import Capture, hook_model, wrap_official_functions
from official_manifest import build_manifest
from official_records import check_loads, record_after_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN_DIR = "/tmp/sonic_golden_run"  # the official process() writes its (silent, then deleted) mp4 here


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", required=True, help="checkout of jixiaozhong/Sonic (outside the project)")
    ap.add_argument("--checkpoints", required=True, help="official-layout checkpoints folder (tiny, random weights)")
    ap.add_argument("--out", required=True, help="output folder (tests/data/sonic_golden)")
    ap.add_argument("--image", default=os.path.join(ROOT, "sample_media", "portrait.png"))
    ap.add_argument("--audio", default=os.path.join(ROOT, "sample_media", "speech.wav"))
    ap.add_argument("--input-size", type=int, default=128, help="the portrait is first downscaled to this square size")
    ap.add_argument("--min-resolution", type=int, default=64, help="official process(min_resolution=...)")
    ap.add_argument("--seconds", type=float, default=2.4, help="leading seconds of the audio used")
    ap.add_argument("--steps", type=int, default=2, help="official process(inference_steps=...)")
    ap.add_argument("--seed", type=int, default=42, help="official process(seed=...) (must be non-zero: `if seed:`)")
    ap.add_argument("--dynamic-scale", type=float, default=1.0)
    ap.add_argument("--expand-ratio", type=float, default=0.5, help="only for the recorded Sonic.preprocess crop box")
    ap.add_argument("--threads", type=int, default=2)
    return ap.parse_args()


def make_inputs(args, out):
    """Writes the exact inputs the official code reads: a downscaled PNG and a 16 kHz mono int16 WAV."""
    from PIL import Image

    img = Image.open(args.image).convert("RGB")
    small = img.resize((args.input_size, args.input_size), Image.LANCZOS)
    img_path = os.path.join(out, "input_image.png")
    small.save(img_path)

    with wave.open(args.audio, "rb") as w:
        sr, ch, sw = w.getframerate(), w.getnchannels(), w.getsampwidth()
        assert (sr, ch, sw) == (16000, 1, 2), (sr, ch, sw)
        n = int(round(args.seconds * sr))
        data = w.readframes(n)
    wav_path = os.path.join(out, "input_audio.wav")
    with wave.open(wav_path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(data)
    return img_path, wav_path, n


def link_checkpoints(official, ckpt):
    """The official Sonic.__init__ reads checkpoints/ next to sonic.py (whisper-tiny, yoloface, RIFE are hard-coded
    relative to it), so <official>/checkpoints is pointed at the given folder."""
    link = os.path.join(official, "checkpoints")
    if os.path.islink(link):
        os.unlink(link)
    elif os.path.exists(link):
        raise SystemExit(f"{link} exists and is not a symlink; remove it or pass that folder as --checkpoints")
    os.symlink(ckpt, link)


def main():
    args = parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    official = os.path.abspath(args.official)
    ckpt = os.path.abspath(args.checkpoints)
    t_start = time.time()

    img_path, wav_path, n_samples = make_inputs(args, out)
    link_checkpoints(official, ckpt)

    torch.set_num_threads(args.threads)
    sys.path.insert(0, official)
    import sonic as off_sonic  # the official module, importable only now
    import src.pipelines.pipeline_sonic as off_pipe_mod

    cap = Capture()
    # fp32 everywhere (the yaml default is fp16 for GPU); everything else from config/inference/sonic.yaml.
    off_sonic.Sonic.config.weight_dtype = "fp32"
    wrap_official_functions(cap, off_sonic, off_pipe_mod)

    t0 = time.time()
    S = off_sonic.Sonic(device_id=-1, enable_interpolate_frame=True)  # strict loads happen inside
    cap.log["load_s"] = round(time.time() - t0, 2)
    cap.log["load_check"] = check_loads(S, ckpt)
    hook_model(cap, S)

    # the recorded crop box (demo.py: preprocess(image, expand_ratio=0.5); crop is OFF in this run)
    face_info = S.preprocess(img_path, expand_ratio=args.expand_ratio)
    cap.log["preprocess"] = {"expand_ratio": args.expand_ratio, "face_num": int(face_info["face_num"]),
                             "crop_bbox_x1y1x2y2": [int(v) for v in face_info["crop_bbox"]]}

    os.makedirs(RUN_DIR, exist_ok=True)
    t0 = time.time()
    rc = S.process(img_path, wav_path, os.path.join(RUN_DIR, "out.mp4"), min_resolution=args.min_resolution,
                   inference_steps=args.steps, dynamic_scale=args.dynamic_scale, seed=args.seed)
    cap.log["process_s"] = round(time.time() - t0, 2)
    cap.log["process_rc"] = rc
    assert rc == 0, "official process() returned -1 (no face found)"
    cap.log["face_detect_calls"] = cap.face_detect_calls

    derived = record_after_run(cap, S, ckpt, n_samples, args.dynamic_scale, args.seed)
    cap.rec.save(out)
    manifest = build_manifest(args, cap, S.config, derived, n_samples, ckpt, official, ROOT, t_start)
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    sizes = {fn: os.path.getsize(os.path.join(out, fn)) for fn in sorted(os.listdir(out))}
    print(json.dumps(sizes, indent=1))
    print("total bytes", sum(sizes.values()), "elapsed", round(time.time() - t_start, 1), "s")


if __name__ == "__main__":
    main()
