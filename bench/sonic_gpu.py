#!/usr/bin/env python3
"""Sonic engine speed and memory against the official implementation, same GPU, same run (issue 3, item 7).

    python bench/sonic_gpu.py [--size 512] [--seconds 5] [--steps 25] [--dtype fp16] [--device cuda]
                              [--official-python P --official DIR --official-pythonpath PATHS | --no-official]
                              [--config-dir D] [--checkpoints DIR] [--memory-seconds 60] [--out JSON]
                              [--memory-mode gpu|offload|auto] [--vram-budget-gb G] [--compile [MODE]] [--profile]

1. Weights: a full official-layout `checkpoints/` folder with random weights, made by
   `devtools/make_tiny_checkpoints.py --fast` from --config-dir (default bench/sonic_full_config: the real SVD-XT
   UNet / VAE / CLIP ViT-H and whisper-tiny configs; ~11 GB, unet.pth fp32 as official) on the GPU in well under
   a minute; kept (with a stamp) and reused on the next run. `--config-dir tests/data/sonic_tiny_config --size 64`
   runs the very same code at a tiny size on the CPU.
2. Inputs: sample_media/portrait.png centre-cropped to a square and resized to --size (so both sides work at
   size x size), and the first --seconds of sample_media/speech.wav (repeated when longer is asked), as 16 kHz WAV.
3. SonicFlow (this process): the engine's `load_models` at --dtype on --device (--memory-mode: gpu, the
   default, keeps every model there; offload moves each stage's models there for that stage only; the plan,
   with its decode chunk, is saved with each run); `detect_official` + `image_inputs`,
   `sample_latents` (--steps) and every frame of `iter_frames` (RIFE on) as uint8, timed per stage with
   torch.cuda.synchronize() at each boundary (thin wrappers around the pipeline module's functions; nothing of
   the pipeline is changed); peak torch.cuda.max_memory_allocated; FLOPs of one UNet window call (3 x 25 frames)
   counted once with torch.utils.flop_counter.FlopCounterMode, outside the timed run, times the number of UNet
   calls, over the sampling time and the GPU's dense fp16/bf16 peak -> utilisation. One warm-up first (1 step,
   1 s of audio), on both sides. --profile adds the GPU time of one eager UNet call by kernel (torch.profiler).
4. Official (a subprocess, `devtools/official_bench.py`, with its own PYTHONPATH: diffusers 0.29,
   transformers 4.43, huggingface_hub 0.23 cannot share a process with ours): same weights folder, image, audio,
   steps, size, dtype and seed; `Sonic.process` timed the same way, its peak memory read inside that process.
   If it fails, SonicFlow's numbers are still printed and saved, with the official error's tail.
5. --compile [MODE]: one UNet window call eager against torch.compile'd (compilation timed, outputs compared), then
   SonicFlow's whole run again with `compile` on (UNet and full VAE decode chunks; compiled during its warm-up, so
   the timed run excludes compilation).
6. Memory for long audio: SonicFlow once more (eager) with --memory-seconds of audio (default 60 on a GPU) and 1 step
   (steps do not change memory: the latents wait on the CPU between steps), peak memory measured; plus a
   projection from the timed clip's peak (per-frame tensors that grow with the audio).
Printed and written (default bench/results/sonic_gpu.json): GPU-seconds per second of video for both, their
ratio (goal >= 3), peak memory (goal <= 12 GB for 60 s), utilisation. The JSON is rewritten after every phase,
so a run cut short keeps what it measured. Order: weights, SonicFlow (load, FLOP count, profile, warm-up, timed
run), official (load, warm-up, timed run, FLOP count of its own UNet call; SonicFlow's models stay loaded, idle),
SonicFlow compiled, memory run.

On a lent GPU machine (no network, no diffusers/librosa/omegaconf/PyAV there): run `devtools/prepare_gpu_carry.sh`
here first (wheels into .whl/ and .whl_official/, the official code into .official/, all three ignored), then
carry those three folders and run (timeout_s 590; about 6.5 minutes on one H200 with --compile, 2.5 of them
compiling):

    set -o pipefail; export PYTHONUNBUFFERED=1; python3 -m pip install -q --no-index --no-deps --no-compile \
      --no-cache-dir --target /tmp/site .whl/*.whl && python3 -m pip install -q --no-index --no-deps --no-compile \
      --no-cache-dir --target /tmp/offsite .whl_official/*.whl || exit 3; PYTHONPATH=/tmp/site:$PWD python3 \
      bench/sonic_gpu.py --size 512 --seconds 5 --steps 25 --dtype fp16 --device cuda --official .official \
      --official-python python3 --official-pythonpath /tmp/offsite --memory-seconds 60 --budget-s 545 \
      --compile --profile --out $OUT/sonic_gpu.json 2>&1 | tee $OUT/sonic_gpu.log

The tiny CPU benchmark (no GPU): `python bench/sonic_gpu.py --config-dir tests/data/sonic_tiny_config --size 64
--seconds 4 --steps 4 --repeat 3 --official-python /tmp/official-venv/bin/python --official .official`.
"""
from __future__ import annotations

import os
import sys

# bench/ holds scripts named like standard modules (bench/queue.py): keep this folder off the import path.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import wave  # noqa: E402

import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("PYTHONUNBUFFERED", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from devtools.av_standin import import_sonic_core  # noqa: E402

AV_STANDIN = import_sonic_core()   # the GPU image has no PyAV; the benchmark needs none

from devtools.unet_call import time_calls, window_inputs  # noqa: E402
from sonic_core.sonic.pipeline import GEN_FPS  # noqa: E402

VIDEO_FPS = 2 * GEN_FPS   # output frame rate with RIFE

DEFAULT_CONFIG_DIR = os.path.join(ROOT, "bench", "sonic_full_config")
DEFAULT_OUT = os.path.join(ROOT, "bench", "results", "sonic_gpu.json")
GOAL_RATIO = 3.0
GOAL_PEAK_GB = 12.0

# Dense (no sparsity) fp16/bf16 tensor-core peak, TFLOP/s, by a substring of torch.cuda.get_device_name();
# first match wins, so the specific names come first.
PEAK_TFLOPS = [
    ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H800 PCIe", 756.0),
    ("GH200", 989.4), ("H200", 989.4), ("H100", 989.4), ("H800", 989.4), ("H20", 148.0),
    ("B200", 2250.0), ("A100", 312.0), ("A800", 312.0), ("A10G", 70.0), ("A10", 125.0), ("L40S", 362.0),
    ("L40", 181.0), ("L4", 121.0), ("RTX 6000 Ada", 364.0), ("RTX 4090", 165.2), ("RTX 3090", 71.0),
    ("V100", 125.0), ("T4", 65.0),
]


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def peak_flops(device_name: str | None) -> float | None:
    if not device_name:
        return None
    for key, tf in PEAK_TFLOPS:
        if key.lower() in device_name.lower():
            return tf * 1e12
    return None


# ------------------------------------------------------------------------------------------------ inputs

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


# ------------------------------------------------------------------------------------------------ weights

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


def ensure_weights(args, gen_device: str) -> tuple[str, dict]:
    tag = config_tag(args.config_dir)
    ckpt = args.checkpoints or os.path.join(tempfile.gettempdir(), f"sonic_bench_{tag}")
    stamp = os.path.join(ckpt, ".bench_complete")
    if os.path.isfile(stamp):
        with open(stamp) as f:
            info = json.load(f)
        if info.get("config_tag") == tag:
            log(f"weights: reusing {ckpt}")
            return ckpt, dict(info, reused=True)
    log(f"weights: writing a random-weight official-layout folder to {ckpt} (configs {args.config_dir}, "
        f"values drawn on {gen_device})")
    t = time.time()
    cmd = [sys.executable, os.path.join(ROOT, "devtools", "make_tiny_checkpoints.py"), ckpt, "--config-dir",
           args.config_dir, "--seed", "0", "--layout", "official", "--fast", "--device", gen_device]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise SystemExit(f"weight generation failed ({r.returncode}):\n{r.stdout[-3000:]}")
    size = sum(os.path.getsize(os.path.join(dp, fn)) for dp, _, fns in os.walk(ckpt) for fn in fns)
    info = {"config_tag": tag, "config_dir": os.path.relpath(args.config_dir, ROOT), "generate_s": round(time.time() - t, 1),
            "bytes": size, "device": gen_device}
    with open(stamp, "w") as f:
        json.dump(info, f)
    log(f"weights: {size / 1e9:.2f} GB in {info['generate_s']} s")
    return ckpt, dict(info, reused=False)


# ------------------------------------------------------------------------------------------------ SonicFlow side

class Ours:
    """SonicFlow's pipeline, run through its public functions with stage timers around them."""

    def __init__(self, args, ckpt: str, device):
        import torch
        from sonic_core.engines.sonic import load_models

        self.torch, self.args = torch, args
        self.cuda = device.type == "cuda"
        t = time.time()
        # the engine's loader: with --memory-mode auto/offload the models start in RAM, as in ComfyUI
        self.models = load_models([ckpt], str(device), args.dtype_name, True, args.memory_mode)
        self.sync()
        self.load_s = time.time() - t
        self.memory_after_load = torch.cuda.memory_allocated() if self.cuda else None

    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize()

    def count_unet_flops(self, size_wh) -> dict:
        from torch.utils.flop_counter import FlopCounterMode
        from sonic_core.sonic.unet import unet_forward

        inputs = self.window(size_wh)
        with self.torch.no_grad(), FlopCounterMode(display=False) as fc:
            unet_forward(*inputs)
        self.sync()
        by_op = {str(k): int(v) for k, v in fc.get_flop_counts().get("Global", {}).items()}
        return {"total": int(fc.get_total_flops()), "by_op": by_op}

    def window(self, size_wh) -> tuple:
        return window_inputs(self.models.unet, size_wh, self.models.device, self.models.dtype)

    def unet_call_times(self, size_wh, compile) -> dict:
        """One UNet window call, eager or torch.compile'd (the pipeline's own runner), timed."""
        from sonic_core.sonic import pipeline as P

        inputs, fn = self.window(size_wh), P.unet_runner(compile)
        return time_calls(lambda: fn(*inputs), self.cuda)

    def profile_unet_call(self, size_wh, top: int = 25) -> list[dict]:
        """The GPU kernels of one eager UNet window call, by total time (torch.profiler): where the time goes."""
        torch = self.torch
        from torch.profiler import ProfilerActivity, profile
        from sonic_core.sonic.unet import unet_forward

        inputs = self.window(size_wh)
        with torch.no_grad():
            unet_forward(*inputs)
            self.sync()
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                unet_forward(*inputs)
                self.sync()
        rows = []
        for e in prof.key_averages():
            dev_us = getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)
            if dev_us:
                rows.append({"name": e.key[:160], "calls": e.count, "device_ms": dev_us / 1e3})
        rows.sort(key=lambda r: -r["device_ms"])
        total = sum(r["device_ms"] for r in rows)
        return [dict(r, share=r["device_ms"] / total) for r in rows[:top]] + [{"name": "TOTAL", "device_ms": total}]

    def run(self, image_path: str, audio_path: str, steps: int, seed: int, compile=False) -> dict:
        """One generation, image file + audio file -> every output frame (uint8), timed by stage."""
        torch = self.torch
        from sonic_core.sonic import pipeline as P

        timers: dict = {}
        first_unet: dict = {}
        n_unet = {"n": 0}
        saved = {}

        def timed(name):
            fn = saved[name] = getattr(P, name)   # a renamed pipeline function fails here, not as a 0 s stage

            def wrapper(*a, **k):
                self.sync()
                t = time.perf_counter()
                try:
                    return fn(*a, **k)
                finally:
                    self.sync()
                    timers[name] = timers.get(name, 0.0) + time.perf_counter() - t
            setattr(P, name, wrapper)

        for name in ("audio_features", "audio_conditioning", "decode", "interpolate"):
            timed(name)
        runner = P.unet_runner
        saved["unet_runner"] = runner

        def counting_runner(compile):
            unet_fn = runner(compile)  # eager or torch.compile'd

            def unet_wrapper(*a, **k):
                if not n_unet["n"]:
                    self.sync()
                    first_unet["t"] = time.perf_counter()
                n_unet["n"] += 1
                return unet_fn(*a, **k)
            return unet_wrapper
        P.unet_runner = counting_runner

        params = P.SonicParams(inference_steps=steps, seed=seed, interpolate=True, memory_mode=self.args.memory_mode,
                               vram_budget_gb=self.args.vram_budget_gb, compile=compile)
        try:
            from PIL import Image

            self.sync()
            ru0 = resource.getrusage(resource.RUSAGE_SELF)
            t0 = time.perf_counter()
            rgb = np.asarray(Image.open(image_path).convert("RGB"))
            box = P.detect_official(self.models, rgb)
            if box is None:
                h, w = rgb.shape[:2]
                box = (w * 0.33, h * 0.24, w * 0.34, h * 0.44)
            inputs = P.image_inputs(rgb, box, self.args.size)
            samples = read_samples(audio_path)
            params, plan = P.resolve_memory(self.models, inputs.size, P.generated_frames(len(samples)), params)
            t_pre = time.perf_counter()
            latents = P.sample_latents(self.models, inputs, samples, params)
            self.sync()
            t1 = time.perf_counter()
            frames = 0
            checksum = 0
            for f in P.iter_frames(self.models, latents, params):
                frames += 1
                checksum = (checksum + int(f[::37, ::41].sum())) % (1 << 31)
            self.sync()
            t2 = time.perf_counter()
            ru1 = resource.getrusage(resource.RUSAGE_SELF)
        finally:
            for name, fn in saved.items():
                setattr(P, name, fn)
        audio = timers.get("audio_features", 0.0) + timers.get("audio_conditioning", 0.0)
        t_unet0 = first_unet.get("t", t1)
        decode = timers.get("decode", 0.0)
        total = t2 - t0
        video_s = frames / VIDEO_FPS
        return {
            "total_s": total,
            "cpu_time_s": (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime),
            "stages_s": {
                "preprocess (image load, face detection, image tensors, audio load)": t_pre - t0,
                "audio features + adapters (mel, whisper, audio2token/audio2bucket)": audio,
                "sampling (CLIP, VAE encode, UNet windows)": t1 - t_pre - audio,
                "decode (VAE)": decode,
                "RIFE + frame conversion": t2 - t1 - decode,
            },
            "sampling_s": t1 - t_pre - audio,
            "unet_loop_s": t1 - t_unet0,
            "unet_calls": n_unet["n"],
            "generated_frames": int(latents.shape[0]),
            "output_frames": frames,
            "video_seconds": video_s,
            "seconds_per_video_second": total / video_s if video_s else None,
            "frames_checksum": checksum,
            "working_size": list(inputs.size),
            "memory_plan": plan.info(),
        }


# ------------------------------------------------------------------------------------------------ official side

def run_official(args, ckpt: str, image: str, audio: str, warm_audio: str | None, dtype: str, device: str,
                 workdir: str) -> dict:
    out = os.path.join(workdir, "official.json")
    cmd = [args.official_python, os.path.join(ROOT, "devtools", "official_bench.py"), "--official", args.official,
           "--checkpoints", ckpt, "--image", image, "--audio", audio, "--size", str(args.size), "--steps",
           str(args.steps), "--dtype", dtype, "--device", device, "--seed", str(args.seed), "--out", out]
    if warm_audio:
        cmd += ["--warmup-audio", warm_audio]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.repeat > 1:
        cmd += ["--repeat", str(args.repeat)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if args.official_pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in args.official_pythonpath.split(os.pathsep) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_OFFLINE"] = "1"
    log(f"official: {' '.join(cmd)}" + (f"  (PYTHONPATH={env['PYTHONPATH']})" if "PYTHONPATH" in env else ""))
    tail: list[str] = []
    t = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, bufsize=1)

    def pump():
        last = None
        for line in proc.stdout:
            tail.append(line)
            del tail[:-200]
            s = line.rstrip()
            if s == last:
                continue
            last = s
            if s and ("it/s" not in s and "s/it" not in s or "100%|" in s):  # skip tqdm's running updates
                print(("" if s.startswith("[official]") else "[official] ") + s[-300:], flush=True)

    th = threading.Thread(target=pump, daemon=True)
    th.start()
    try:
        rc = proc.wait(timeout=args.official_timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = "timeout"
    th.join(timeout=5)
    res: dict = {}
    if os.path.isfile(out):
        with open(out) as f:
            res = json.load(f)
    res["returncode"] = rc
    res["wall_s"] = round(time.time() - t, 1)
    if rc != 0 or not res.get("ok"):
        res["ok"] = False
        res["output_tail"] = "".join(tail)[-4000:]
    return res


# ------------------------------------------------------------------------------------------------ main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=512, help="working size (min_resolution); the image is square")
    ap.add_argument("--seconds", type=float, default=5.0, help="seconds of audio for the timed runs")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--dtype", default="auto", choices=("auto", "fp16", "bf16", "fp32"),
                    help="UNet/VAE/CLIP dtype (auto: fp16 on a GPU, fp32 on the CPU)")
    ap.add_argument("--device", default="auto", help="cuda, cuda:N, cpu (auto: cuda when available)")
    ap.add_argument("--seed", type=int, default=42, help="non-zero: the official code ignores a seed of 0")
    ap.add_argument("--config-dir", default=DEFAULT_CONFIG_DIR, help="model configs in the official layout")
    ap.add_argument("--checkpoints", default=None, help="weights folder (made if it lacks the bench stamp)")
    ap.add_argument("--image", default=os.path.join(ROOT, "sample_media", "portrait.png"))
    ap.add_argument("--audio", default=os.path.join(ROOT, "sample_media", "speech.wav"))
    ap.add_argument("--official", default=None, help="official code folder (default .official/ when it exists)")
    ap.add_argument("--official-python", default=None, help="python for the official side (default: this one)")
    ap.add_argument("--official-pythonpath", default=None,
                    help="PYTHONPATH of the official side (its wheels' site folder), e.g. /tmp/offsite")
    ap.add_argument("--official-timeout", type=float, default=420.0)
    ap.add_argument("--no-official", action="store_true")
    ap.add_argument("--memory-seconds", type=float, default=None,
                    help="also measure SonicFlow's peak memory with this much audio and 1 step (default 60 on a GPU, "
                         "0 = skip)")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="wall-clock budget of the whole script: the official side's timeout is cut to what is "
                         "left, the compiled run is skipped under 150 s left and the memory run under 120 s")
    ap.add_argument("--no-warmup", action="store_true")
    ap.add_argument("--repeat", type=int, default=1,
                    help="timed runs per side; the fastest is reported (all totals are kept): for noisy CPUs")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads on both sides (0: default)")
    ap.add_argument("--memory-mode", default="gpu", choices=("auto", "gpu", "offload"),
                    help="SonicFlow's model placement (gpu: every model on the GPU, the earlier runs' setting)")
    ap.add_argument("--vram-budget-gb", type=float, default=0.0, help="SonicFlow's GPU budget in GiB (0: what is free)")
    ap.add_argument("--compile", nargs="?", const="default", choices=("default", "max-autotune-no-cudagraphs"),
                    help="after the eager and official runs: one UNet call eager vs torch.compile'd, then the whole "
                         "SonicFlow run again with the compiled UNet (compiled during its warm-up)")
    ap.add_argument("--profile", action="store_true", help="GPU time of one eager UNet call by kernel")
    ap.add_argument("--out", default=DEFAULT_OUT)
    args = ap.parse_args(argv)

    t_start = time.time()

    def left() -> float:
        return float("inf") if args.budget_s is None else args.budget_s - (time.time() - t_start)

    import torch

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    dtype_name = args.dtype if args.dtype != "auto" else ("fp16" if cuda else "fp32")
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype_name]
    args.dtype_name = dtype_name
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_seconds is None:
        args.memory_seconds = 60.0 if cuda else 0.0
    if args.official is None and not args.no_official and os.path.isfile(os.path.join(ROOT, ".official", "sonic.py")):
        args.official = os.path.join(ROOT, ".official")
    args.official_python = args.official_python or sys.executable
    args.config_dir = os.path.abspath(args.config_dir)

    device_name = torch.cuda.get_device_name(device) if cuda else (platform.processor() or platform.machine())
    peak = peak_flops(device_name) if cuda else None
    res: dict = {
        "benchmark": "bench/sonic_gpu.py", "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "device": str(device), "device_name": device_name, "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "peak_dense_flops": peak,
        "settings": {"size": args.size, "seconds": args.seconds, "steps": args.steps, "dtype": dtype_name,
                     "seed": args.seed, "rife": True, "repeat": args.repeat, "config_dir": os.path.relpath(args.config_dir, ROOT),
                     "memory_seconds": args.memory_seconds, "warmup": not args.no_warmup,
                     "memory_mode": args.memory_mode, "vram_budget_gb": args.vram_budget_gb, "compile": args.compile,
                     "budget_s": args.budget_s},
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__, "pyav_standin": AV_STANDIN},
        "goals": {"ratio_official_over_sonicflow": GOAL_RATIO, "peak_gb_60s": GOAL_PEAK_GB},
    }
    if cuda:
        res["gpu_total_memory_bytes"] = torch.cuda.get_device_properties(device).total_memory
    out_path = os.path.abspath(args.out)

    def save():
        os.makedirs(os.path.dirname(out_path), exist_ok=True)
        with open(out_path, "w") as f:
            json.dump(res, f, indent=1, default=str)

    log(f"device {device} ({device_name}), dtype {dtype_name}, size {args.size}, {args.seconds} s, {args.steps} steps")
    ckpt, res["weights"] = ensure_weights(args, "cuda" if cuda else "cpu")
    res["weights"]["path"] = ckpt
    save()

    workdir = tempfile.mkdtemp(prefix="sonic_bench_")
    image = make_image(args.image, args.size, os.path.join(workdir, "image.png"))
    audio = make_audio(args.audio, args.seconds, os.path.join(workdir, "audio.wav"))
    warm = None if args.no_warmup else make_audio(args.audio, 1.0, os.path.join(workdir, "warmup.wav"))

    # ---------------- SonicFlow
    try:
        import diffusers
        import transformers
        res["versions"].update(diffusers=diffusers.__version__, transformers=transformers.__version__)
    except Exception:  # noqa: BLE001
        pass
    sf: dict = {}
    res["sonicflow"] = sf
    ours = None
    try:
        log("SonicFlow: loading")
        ours = Ours(args, ckpt, device)
        sf.update(load_s=round(ours.load_s, 2), memory_after_load_bytes=ours.memory_after_load)
        log(f"SonicFlow: loaded in {ours.load_s:.1f} s" +
            (f", {ours.memory_after_load / 1e9:.2f} GB on the GPU" if cuda else ""))
        try:
            t = time.time()
            flops = ours.count_unet_flops((args.size, args.size))
            sf["unet_call_flops"] = flops["total"]
            sf["unet_call_flops_by_op"] = flops["by_op"]
            log(f"SonicFlow: one UNet window call = {flops['total'] / 1e12:.3f} TFLOP (counted in {time.time() - t:.1f} s)")
        except Exception as e:  # noqa: BLE001
            sf["unet_call_flops_error"] = f"{type(e).__name__}: {e}"
            log(f"SonicFlow: FLOP count failed: {sf['unet_call_flops_error']}")
        if cuda and args.profile:
            try:
                sf["unet_call_profile"] = ours.profile_unet_call((args.size, args.size))
                log("SonicFlow: GPU time of one eager UNet call by kernel (top 8): " + "; ".join(
                    f"{r['name'][:50]} {r['device_ms']:.1f} ms" for r in sf["unet_call_profile"][:8]))
            except Exception as e:  # noqa: BLE001
                sf["unet_call_profile_error"] = f"{type(e).__name__}: {e}"
        sf["timed"] = timed_runs(ours, args, image, warm, audio, False, sf, "warmup_s")
        add_utilisation(sf["timed"], sf.get("unet_call_flops"), peak)
        sf["projection"] = project_memory(sf["timed"], dtype)
        save()
    except Exception as e:  # noqa: BLE001 - the official side still runs; the error is saved
        import traceback

        sf["error"] = f"{type(e).__name__}: {e}"
        sf["traceback"] = traceback.format_exc()[-4000:]
        log(f"SonicFlow side FAILED: {sf['traceback']}")
        save()

    # ---------------- official (SonicFlow's models stay loaded, idle, for the compiled and memory runs)
    if cuda:
        torch.cuda.empty_cache()
    if args.official and not args.no_official:
        args.official_timeout = max(30.0, min(args.official_timeout, left() - 10))
        off = run_official(args, ckpt, image, audio, warm, dtype_name, args.device, workdir)
        if off.get("ok") and off.get("timed"):
            add_utilisation(off["timed"], sf.get("unet_call_flops"), peak)
        res["official"] = off
        if not off.get("ok"):
            log(f"official side FAILED (rc {off.get('returncode')}): {off.get('error', '')}")
        save()
    else:
        res["official"] = {"ok": False, "skipped": True}

    # ---------------- torch.compile'd UNet: one window call against eager, then the whole run again
    if ours is not None and "timed" in sf and args.compile and left() < 150:
        sf["compiled_skipped"] = f"budget: {left():.0f} s left"
        log(f"SonicFlow: compiled run skipped ({sf['compiled_skipped']})")
    elif ours is not None and "timed" in sf and args.compile:
        try:
            size = (args.size, args.size)
            eager = ours.unet_call_times(size, False)
            torch._logging.set_logs(recompiles=True)   # a recompile in the timed run would show here
            log(f"SonicFlow: compiling the UNet ({args.compile})")
            comp = ours.unet_call_times(size, args.compile)
            ref = eager.pop("output")
            diff = (comp.pop("output") - ref).norm() / ref.norm()
            sf["unet_call"] = {"eager": eager, "compiled": comp, "compile_mode": args.compile,
                               "relative_difference": float(diff),
                               "speedup": eager["median_s"] / comp["median_s"]}
            log(f"SonicFlow: one UNet window call {eager['median_s'] * 1e3:.0f} ms eager, "
                f"{comp['median_s'] * 1e3:.0f} ms compiled ({comp['first_call_s']:.0f} s to compile), "
                f"relative difference {float(diff):.2e}")
            save()
            sf["compiled"] = timed_runs(ours, args, image, warm, audio, args.compile, sf, "compiled_warmup_s")
            add_utilisation(sf["compiled"], sf.get("unet_call_flops"), peak)
        except Exception as e:  # noqa: BLE001
            import traceback

            sf["compiled_error"] = f"{type(e).__name__}: {e}"
            sf["compiled_traceback"] = traceback.format_exc()[-4000:]
            log(f"SonicFlow: compiled run FAILED: {sf['compiled_traceback']}")
        save()

    # ---------------- memory with long audio (eager, the default)
    if ours is not None and "timed" in sf and args.memory_seconds > 0 and left() < 120:
        sf["memory_run_skipped"] = f"budget: {left():.0f} s left"
        log(f"SonicFlow: memory run skipped ({sf['memory_run_skipped']})")
    elif ours is not None and "timed" in sf and args.memory_seconds > 0:
        try:
            long_audio = make_audio(args.audio, args.memory_seconds, os.path.join(workdir, "long.wav"))
            if cuda:
                torch.cuda.reset_peak_memory_stats(device)
            log(f"SonicFlow: memory run, {args.memory_seconds:g} s of audio, 1 step")
            m = ours.run(image, long_audio, 1, args.seed)
            m["peak_memory_bytes"] = torch.cuda.max_memory_allocated(device) if cuda else None
            m["note"] = "1 denoising step: memory does not depend on the number of steps"
            sf["memory_run"] = m
            if cuda:
                log(f"SonicFlow: peak {m['peak_memory_bytes'] / 1e9:.2f} GB with {args.memory_seconds:g} s of audio "
                    f"({m['total_s']:.1f} s)")
        except Exception as e:  # noqa: BLE001
            sf["memory_run_error"] = f"{type(e).__name__}: {e}"
            log(f"SonicFlow: memory run failed: {sf['memory_run_error']}")
        save()

    summarise(res, cuda)
    save()
    log(f"wrote {out_path}")
    return 0


def timed_runs(ours: Ours, args, image: str, warm: str | None, audio: str, compile, sf: dict, warm_key: str) -> dict:
    """A warm-up (1 step, 1 s of audio; compiles the UNet when `compile`), then --repeat timed runs; the least
    disturbed one, with the peak memory of all of them."""
    torch = ours.torch
    label = f"SonicFlow{' compiled' if compile else ''}"
    if warm:
        t = time.time()
        ours.run(image, warm, 1, args.seed, compile)
        sf[warm_key] = round(time.time() - t, 2)
        log(f"{label}: warm-up (1 step, 1 s) in {sf[warm_key]} s")
    if ours.cuda:
        torch.cuda.reset_peak_memory_stats()
    runs = []
    for r in range(args.repeat):
        log(f"{label}: timed run {r + 1}/{args.repeat}")
        runs.append(ours.run(image, audio, args.steps, args.seed, compile))
    timed = min(runs, key=lambda x: x["total_s"])   # the least disturbed run
    timed["all_totals_s"] = [x["total_s"] for x in runs]
    timed["min_cpu_time_s"] = min(x["cpu_time_s"] for x in runs)
    timed["peak_memory_bytes"] = torch.cuda.max_memory_allocated() if ours.cuda else None
    log(f"{label}: {timed['total_s']:.2f} s for {timed['output_frames']} frames ({timed['video_seconds']:.2f} s of "
        f"video) = {timed['seconds_per_video_second']:.2f} s per video-second; stages "
        + json.dumps({k.split(' (')[0]: round(v, 2) for k, v in timed["stages_s"].items()}))
    return timed


def add_utilisation(timed: dict, flops_per_call: int | None, peak: float | None) -> None:
    """Useful FLOPs (SonicFlow's count of one window call x calls) over the sampling time and the GPU peak."""
    if not flops_per_call or not timed.get("unet_calls"):
        return
    total = flops_per_call * timed["unet_calls"]
    timed["unet_flops_total"] = total
    s = timed.get("sampling_s")
    if s:
        timed["achieved_flops_per_s_sampling"] = total / s
        if peak:
            timed["utilisation_sampling"] = total / s / peak
    if peak and timed.get("total_s"):
        timed["utilisation_end_to_end"] = total / timed["total_s"] / peak
        if timed.get("video_seconds"):
            timed["unet_floor_s_per_video_s"] = total / peak / timed["video_seconds"]


def project_memory(timed: dict, dtype) -> dict:
    """Rough peak for 60 s of audio from the timed clip: what grows with the audio are the per-frame conditioning
    tensors kept on the device during sampling (audio tokens fp32 + a copy in the UNet dtype, the adapters'
    inputs); windows, decode chunks and RIFE pairs do not grow."""
    peak = timed.get("peak_memory_bytes")
    n = timed["generated_frames"]
    from sonic_core.sonic.pipeline import generated_frames

    n60 = generated_frames(60 * 16000)
    item = {"torch.float16": 2, "torch.bfloat16": 2}.get(str(dtype), 4)
    per_frame = 32 * 1024 * 4 + 32 * 1024 * item + 10 * 5 * 384 * 4 + 50 * 384 * 4 + 2 * 4
    out = {"frames_60s": n60, "per_frame_bytes": per_frame}
    if peak:
        out["peak_60s_bytes_projected"] = peak + max(0, n60 - n) * per_frame
    return out


def fmt_gb(b):
    return f"{b / 1e9:.2f} GB" if b else "n/a"


def summarise(res: dict, cuda: bool) -> None:
    sf = res.get("sonicflow", {}).get("timed", {})
    off = res.get("official", {})
    ot = off.get("timed", {}) if off.get("ok") else {}
    unit = "GPU" if cuda else "CPU"
    summary = {"unit": f"{unit}-seconds per second of video",
               "sonicflow_s_per_video_s": sf.get("seconds_per_video_second"),
               "official_s_per_video_s": ot.get("seconds_per_video_second"),
               "sonicflow_peak_bytes": sf.get("peak_memory_bytes"),
               "official_peak_bytes": ot.get("peak_memory_bytes"),
               "sonicflow_utilisation_sampling": sf.get("utilisation_sampling"),
               "official_utilisation_sampling": ot.get("utilisation_sampling")}
    if summary["sonicflow_s_per_video_s"] and summary["official_s_per_video_s"]:
        summary["ratio_official_over_sonicflow"] = summary["official_s_per_video_s"] / summary["sonicflow_s_per_video_s"]
        summary["ratio_goal_met"] = summary["ratio_official_over_sonicflow"] >= GOAL_RATIO
        if sf.get("output_frames") != ot.get("output_frames"):
            summary["warning"] = f"frame counts differ: {sf.get('output_frames')} vs {ot.get('output_frames')}"
    if not cuda and sf.get("min_cpu_time_s") and ot.get("min_cpu_time_s") and sf.get("video_seconds"):
        # on a shared CPU, process CPU time is far less disturbed by other processes than wall time
        summary["sonicflow_cpu_time_s_per_video_s"] = sf["min_cpu_time_s"] / sf["video_seconds"]
        summary["official_cpu_time_s_per_video_s"] = ot["min_cpu_time_s"] / ot["video_seconds"]
        summary["ratio_cpu_time_official_over_sonicflow"] = ot["min_cpu_time_s"] / sf["min_cpu_time_s"]
    comp = res.get("sonicflow", {}).get("compiled", {})
    if comp.get("seconds_per_video_second"):
        summary["sonicflow_compiled_s_per_video_s"] = comp["seconds_per_video_second"]
        summary["sonicflow_compiled_peak_bytes"] = comp.get("peak_memory_bytes")
        summary["sonicflow_compiled_utilisation_sampling"] = comp.get("utilisation_sampling")
        if summary["official_s_per_video_s"]:
            r = summary["official_s_per_video_s"] / comp["seconds_per_video_second"]
            summary["ratio_official_over_sonicflow_compiled"] = r
            summary["ratio_goal_met"] = summary.get("ratio_goal_met", False) or r >= GOAL_RATIO
    mem = res.get("sonicflow", {}).get("memory_run")
    if mem and mem.get("peak_memory_bytes"):
        summary["sonicflow_peak_bytes_long"] = mem["peak_memory_bytes"]
        summary["long_seconds"] = res["settings"]["memory_seconds"]
        summary["peak_goal_met"] = mem["peak_memory_bytes"] <= GOAL_PEAK_GB * 1e9 and res["settings"]["memory_seconds"] >= 60
    proj = res.get("sonicflow", {}).get("projection", {}).get("peak_60s_bytes_projected")
    if proj:
        summary["sonicflow_peak_bytes_60s_projected"] = proj
    res["summary"] = summary

    def f(x, spec=".2f"):
        return format(x, spec) if isinstance(x, (int, float)) else "n/a"

    lines = [
        "",
        f"== Sonic benchmark: {res['device_name']} ({res['device']}), {res['settings']['size']}x{res['settings']['size']}, "
        f"{res['settings']['seconds']:g} s audio, {res['settings']['steps']} steps, {res['settings']['dtype']}, RIFE on",
        f"{'':28}{'SonicFlow':>14}{'official':>14}",
        f"{unit + '-s per video-s':28}{f(summary['sonicflow_s_per_video_s']):>14}{f(summary['official_s_per_video_s']):>14}",
        f"{'total s':28}{f(sf.get('total_s')):>14}{f(ot.get('total_s')):>14}",
        f"{'sampling s':28}{f(sf.get('sampling_s')):>14}{f(ot.get('sampling_s')):>14}",
        f"{'UNet calls':28}{f(sf.get('unet_calls'), 'd'):>14}{f(ot.get('unet_calls'), 'd'):>14}",
        f"{'output frames':28}{f(sf.get('output_frames'), 'd'):>14}{f(ot.get('output_frames'), 'd'):>14}",
    ]
    if cuda:
        lines += [
            f"{'peak memory':28}{fmt_gb(sf.get('peak_memory_bytes')):>14}{fmt_gb(ot.get('peak_memory_bytes')):>14}",
            f"{'utilisation (sampling)':28}{f(sf.get('utilisation_sampling'), '.1%'):>14}"
            f"{f(ot.get('utilisation_sampling'), '.1%'):>14}",
        ]
    if "ratio_cpu_time_official_over_sonicflow" in summary:
        lines.append(f"{'process CPU time s/video-s':28}{f(summary['sonicflow_cpu_time_s_per_video_s']):>14}"
                     f"{f(summary['official_cpu_time_s_per_video_s']):>14}   ratio "
                     f"{summary['ratio_cpu_time_official_over_sonicflow']:.2f}x (less disturbed by other load)")
    fl = res.get("sonicflow", {}).get("unet_call_flops")
    if fl:
        lines.append(f"one UNet window call: {fl / 1e12:.3f} TFLOP (SonicFlow, FlopCounterMode)"
                     + (f"; official's own count {off['unet_call_flops'] / 1e12:.3f} TFLOP" if off.get("unet_call_flops") else ""))
    if comp.get("seconds_per_video_second"):
        lines += [f"{unit + '-s per video-s, compiled':28}{f(comp['seconds_per_video_second']):>14}",
                  f"{'sampling s, compiled':28}{f(comp.get('sampling_s')):>14}"]
        if cuda:
            lines.append(f"{'peak memory, compiled':28}{fmt_gb(comp.get('peak_memory_bytes')):>14}")
    call = res.get("sonicflow", {}).get("unet_call")
    if call:
        lines.append(f"one UNet window call: {call['eager']['median_s'] * 1e3:.0f} ms eager, "
                     f"{call['compiled']['median_s'] * 1e3:.0f} ms compiled ({call['compile_mode']}), "
                     f"relative difference {call['relative_difference']:.1e}")
    if "ratio_official_over_sonicflow" in summary:
        for key, label in (("ratio_official_over_sonicflow", ""), ("ratio_official_over_sonicflow_compiled", ", compiled")):
            if key in summary:
                r = summary[key]
                lines.append(f"ratio official / SonicFlow{label}: {r:.2f}x "
                             f"(goal >= {GOAL_RATIO:g}x: {'met' if r >= GOAL_RATIO else 'NOT met'})")
    elif not off.get("skipped"):
        lines.append(f"official side failed: {off.get('error') or off.get('returncode')}")
        if off.get("output_tail"):
            lines.append("  last output:\n    " + "\n    ".join(off["output_tail"].strip().splitlines()[-15:]))
    if cuda:
        if "sonicflow_peak_bytes_long" in summary:
            lines.append(f"SonicFlow peak with {summary['long_seconds']:g} s of audio (1 step): "
                         f"{fmt_gb(summary['sonicflow_peak_bytes_long'])} (goal <= {GOAL_PEAK_GB:g} GB for 60 s)")
        if proj:
            lines.append(f"SonicFlow peak for 60 s projected from the timed clip: {fmt_gb(proj)}")
    if "warning" in summary:
        lines.append("WARNING: " + summary["warning"])
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    sys.exit(main())
