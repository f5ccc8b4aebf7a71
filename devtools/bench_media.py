"""Inputs of the Sonic benchmarks (bench/sonic_gpu.py): 16-kHz WAV clips of any length cut from the example speech,
a square portrait at the working size, and a random-weight checkpoint folder in the official layout, written once
and reused while its configs are unchanged; and the short speech clip the service tests upload."""
from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
import wave

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def speech_wav(seconds: float = 1.2) -> bytes:
    """The first `seconds` of the bundled speech sample as WAV bytes, as recorded (short renders)."""
    with wave.open(os.path.join(ROOT, "sample_media", "speech.wav")) as src:
        params, frames = src.getparams(), src.readframes(int(src.getframerate() * seconds))
    buf = io.BytesIO()
    with wave.open(buf, "wb") as dst:
        dst.setparams(params)
        dst.writeframes(frames)
    return buf.getvalue()


def read_wav_int16(path: str) -> tuple[np.ndarray, int]:
    with wave.open(path, "rb") as w:
        assert w.getsampwidth() == 2, "16-bit WAV expected"
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        ch, sr = w.getnchannels(), w.getframerate()
    if ch > 1:
        data = data.reshape(-1, ch).mean(axis=1).round().astype(np.int16)
    return data, sr


def write_wav(path: str, data: np.ndarray, sr: int) -> None:
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(data.astype("<i2").tobytes())


def make_audio(src: str, seconds: float, path: str) -> str:
    """The first `seconds` of src (16 kHz mono int16), repeated when src is shorter."""
    data, sr = read_wav_int16(src)
    if sr != 16000:
        from scipy.signal import resample_poly
        data = resample_poly(data.astype(np.float32), 16000, sr).round().clip(-32768, 32767).astype(np.int16)
    n = int(round(seconds * 16000))
    reps = -(-n // len(data))
    write_wav(path, np.tile(data, reps)[:n], 16000)
    return path


def make_image(src: str, size: int, path: str) -> str:
    """src centre-cropped to a square and resized to size x size (so both sides work at that size)."""
    from PIL import Image

    img = Image.open(src).convert("RGB")
    w, h = img.size
    s = min(w, h)
    img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    if s != size:
        img = img.resize((size, size), Image.LANCZOS)
    img.save(path)
    return path


def read_samples(path: str) -> np.ndarray:
    data, _ = read_wav_int16(path)
    return data.astype(np.float32) / 32768.0      # as librosa.load gives it


def config_tag(config_dir: str) -> str:
    h = hashlib.sha256()
    for dp, _, fns in sorted(os.walk(config_dir)):
        for fn in sorted(fns):
            if fn.endswith(".json"):
                p = os.path.join(dp, fn)
                h.update(os.path.relpath(p, config_dir).encode())
                with open(p, "rb") as f:
                    h.update(f.read())
    return h.hexdigest()[:12]


def ensure_weights(config_dir: str, checkpoints: str | None, gen_device: str, log) -> tuple[str, dict]:
    """A random-weight official-layout folder for `config_dir` (devtools/make_tiny_checkpoints.py --fast, values
    drawn on gen_device), written once and reused while its stamp matches the configs."""
    tag = config_tag(config_dir)
    ckpt = checkpoints or os.path.join(tempfile.gettempdir(), f"sonic_bench_{tag}")
    stamp = os.path.join(ckpt, ".bench_complete")
    if os.path.isfile(stamp):
        with open(stamp) as f:
            info = json.load(f)
        if info.get("config_tag") == tag:
            log(f"weights: reusing {ckpt}")
            return ckpt, dict(info, reused=True)
    log(f"weights: writing a random-weight official-layout folder to {ckpt} (configs {config_dir}, values drawn on "
        f"{gen_device})")
    t = time.time()
    cmd = [sys.executable, os.path.join(ROOT, "devtools", "make_tiny_checkpoints.py"), ckpt, "--config-dir",
           config_dir, "--seed", "0", "--layout", "official", "--fast", "--device", gen_device]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise SystemExit(f"weight generation failed ({r.returncode}):\n{r.stdout[-3000:]}")
    size = sum(os.path.getsize(os.path.join(dp, fn)) for dp, _, fns in os.walk(ckpt) for fn in fns)
    info = {"config_tag": tag, "config_dir": os.path.relpath(config_dir, ROOT), "generate_s": round(time.time() - t, 1),
            "bytes": size, "device": gen_device}
    with open(stamp, "w") as f:
        json.dump(info, f)
    log(f"weights: {size / 1e9:.2f} GB in {info['generate_s']} s")
    return ckpt, dict(info, reused=False)
