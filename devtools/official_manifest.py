"""manifest.json of the golden data (devtools/official_reference.py): every recorded tensor, the settings, the
library versions, the official commit, the run's log, and the sha256 of every checkpoint file, so that a changed
checkpoint generator shows at once. Imports nothing from the project.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time

import diffusers
import huggingface_hub
import librosa
import numpy as np
import PIL
import torch
import transformers
from official_hooks import Capture


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def git(path, *args):
    """`git -C path ARGS` output, or None where git or the repository is missing."""
    try:
        return subprocess.check_output(["git", "-C", path, *args], text=True, stderr=subprocess.DEVNULL).strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def checkpoint_files(ckpt):
    files = {}
    for dp, _, fns in os.walk(ckpt, followlinks=True):
        for fn in sorted(fns):
            p = os.path.join(dp, fn)
            files[os.path.relpath(p, ckpt)] = {"bytes": os.path.getsize(p), "sha256": sha256(p)}
    return files


def build_manifest(args, cap: Capture, sonic_config, derived, n_samples, ckpt, official, root, t_start) -> dict:
    def rel(path):
        return os.path.relpath(path, root)

    command = ([rel(sys.executable) if sys.executable.startswith(root) else sys.executable]
               + [rel(sys.argv[0]) if os.path.isabs(sys.argv[0]) else sys.argv[0]] + sys.argv[1:])
    return {
        "about": "Golden reference tensors from the official Sonic implementation (jixiaozhong/Sonic), CPU fp32, "
                 "tiny random weights. See README.md.",
        "official_commit": git(official, "rev-parse", "HEAD"),
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__, "diffusers": diffusers.__version__,
                     "transformers": transformers.__version__, "huggingface_hub": huggingface_hub.__version__,
                     "librosa": librosa.__version__, "numpy": np.__version__, "pillow": PIL.__version__},
        "settings": {
            "input_image": "input_image.png",
            "input_image_source": "sample_media/portrait.png resized with PIL LANCZOS",
            "input_image_size": [args.input_size, args.input_size],
            "input_audio": "input_audio.wav", "input_audio_source": "sample_media/speech.wav, leading samples",
            "audio_samples": n_samples, "audio_seconds": n_samples / 16000,
            "min_resolution": args.min_resolution, "inference_steps": args.steps, "seed": args.seed,
            "dynamic_scale": args.dynamic_scale, "crop": False, "expand_ratio_for_preprocess_record": args.expand_ratio,
            "keep_resolution": False, "weight_dtype": "fp32", "device": "cpu", "enable_interpolate_frame": True,
            "torch_threads": args.threads,
            "sonic_yaml": {k: (v if isinstance(v, (int, float, str, bool)) else str(v))
                           for k, v in sonic_config.items()},
        },
        "derived": derived,
        "run": cap.log,
        "checkpoints": {
            "path_used": ckpt, "files": checkpoint_files(ckpt),
            "made_by": "devtools/make_tiny_checkpoints.py (project venv) with tests/data/sonic_tiny_config; "
                       "see README.md",
            "generator_last_commit": git(root, "log", "-1", "--format=%H %s", "--", "devtools/make_tiny_checkpoints.py",
                                         "tests/data/sonic_tiny_config"),
        },
        "command": " ".join(command),
        "tensors": cap.rec.manifest,
        "elapsed_s": round(time.time() - t_start, 1),
    }
