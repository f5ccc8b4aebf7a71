"""The two sides of the Sonic benchmark (bench/sonic_gpu.py): SonicFlow's pipeline run in this process through its
public functions with stage timers around them (`SonicRunner`), and the official implementation run in a
subprocess with its own packages (`run_official`, which starts devtools/official_bench.py)."""
from __future__ import annotations

import json
import os
import resource
import subprocess
import threading
import time

import numpy as np

from devtools.bench_media import ROOT, read_samples
from devtools.unet_call import window_inputs
from sonic_core.sonic.sampler import GEN_FPS

VIDEO_FPS = 2 * GEN_FPS   # output frame rate with RIFE


def finish_child(proc: subprocess.Popen, out: str, timeout: float) -> dict:
    """Wait for a child (killed after `timeout`), then what it wrote to the JSON file `out`, with its returncode."""
    try:
        rc = proc.wait(timeout=max(1.0, timeout))
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = "timeout"
    res = {}
    if os.path.isfile(out):
        with open(out) as f:
            res = json.load(f)
    res["returncode"] = rc
    return res


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class SonicRunner:
    """SonicFlow's models, loaded once by the engine's loader, and timed generations with them."""

    def __init__(self, ckpt: str, device, dtype_name: str):
        import torch

        from sonic_core.engines.sonic_engine import load_models

        self.torch, self.cuda = torch, device.type == "cuda"
        t = time.time()
        # the engine's loader, the models placed on the device (the memory runs move them off with offload_all)
        self.models = load_models([ckpt], str(device), dtype_name, True, "gpu")
        self.sync()
        self.load_s = time.time() - t
        self.memory_after_load = torch.cuda.memory_allocated() if self.cuda else None

    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize()

    def window(self, size_wh) -> tuple:
        return window_inputs(self.models.unet, size_wh, self.models.device, self.models.dtype)

    def count_unet_flops(self, size_wh) -> dict:
        from torch.utils.flop_counter import FlopCounterMode

        from sonic_core.sonic.unet import unet_forward

        inputs = self.window(size_wh)
        with self.torch.no_grad(), FlopCounterMode(display=False) as fc:
            unet_forward(*inputs)
        self.sync()
        by_op = {str(k): int(v) for k, v in fc.get_flop_counts().get("Global", {}).items()}
        return {"total": int(fc.get_total_flops()), "by_op": by_op}

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

    def offload_all(self) -> None:
        """Every movable model to the CPU and the allocator's cache emptied: how a run in an offloading mode starts
        in ComfyUI, so that its peak memory is its own."""
        from sonic_core.sonic.memory import MOVABLE

        for name in MOVABLE:
            module = getattr(self.models, name)
            if module is not None:
                module.to("cpu")
        if self.cuda:
            self.torch.cuda.empty_cache()

    def run(self, image_path: str, audio_path: str, steps: int, seed: int, compile=False, memory_mode: str = "gpu",
            noise: str = "device", keep_every: int = 0) -> dict:
        """One generation, image file + audio file -> every output frame (uint8), timed by stage (thin wrappers
        around the pipeline modules' functions; nothing of the pipeline is changed). keep_every k > 0: every k-th
        frame too, as one (T, H, W, 3) uint8 array under "frames"."""
        from PIL import Image

        from sonic_core.sonic import decoding, pipeline, sampler

        sync = self.sync
        timers: dict = {}
        first_unet: dict = {}
        n_unet = {"n": 0}
        saved = []

        def patch(module, name, make):
            fn = getattr(module, name)   # a renamed pipeline function fails here, not as a 0 s stage
            saved.append((module, name, fn))
            setattr(module, name, make(fn))

        def timed(name):
            def make(fn):
                def wrapper(*a, **k):
                    sync()
                    t = time.perf_counter()
                    try:
                        return fn(*a, **k)
                    finally:
                        sync()
                        timers[name] = timers.get(name, 0.0) + time.perf_counter() - t
                return wrapper
            return make

        def counting(runner):
            def make_runner(compile):
                unet_fn = runner(compile)  # eager or torch.compile'd

                def unet_wrapper(*a, **k):
                    if not n_unet["n"]:
                        sync()
                        first_unet["t"] = time.perf_counter()
                    n_unet["n"] += 1
                    return unet_fn(*a, **k)
                return unet_wrapper
            return make_runner

        for module, name in ((sampler, "audio_features"), (sampler, "audio_conditioning"), (decoding, "decode"),
                             (decoding, "interpolate")):
            patch(module, name, timed(name))
        patch(sampler, "unet_runner", counting)
        params = pipeline.SonicParams(inference_steps=steps, seed=seed, interpolate=True, memory_mode=memory_mode,
                                      compile=compile, noise=noise)
        frames, kept = 0, []
        checksum = 0
        try:
            sync()
            ru0 = resource.getrusage(resource.RUSAGE_SELF)
            t0 = time.perf_counter()
            rgb = np.asarray(Image.open(image_path).convert("RGB"))
            box = pipeline.detect_official(self.models, rgb)
            if box is None:
                h, w = rgb.shape[:2]
                box = (w * 0.33, h * 0.24, w * 0.34, h * 0.44)
            inputs = pipeline.image_inputs(rgb, box, min(rgb.shape[:2]))  # the bench image is square
            samples = read_samples(audio_path)
            params = pipeline.resolve_memory(self.models, inputs.size, sampler.generated_frames(len(samples)), params)
            t_pre = time.perf_counter()
            latents = sampler.sample_latents(self.models, inputs, samples, params)
            sync()
            t1 = time.perf_counter()
            for f in decoding.iter_frames(self.models, latents, params):
                frames += 1
                checksum = (checksum + int(f[::37, ::41].sum())) % (1 << 31)
                if keep_every and (frames - 1) % keep_every == 0:
                    kept.append(f)
            sync()
            t2 = time.perf_counter()
            ru1 = resource.getrusage(resource.RUSAGE_SELF)
        finally:
            for module, name, fn in reversed(saved):
                setattr(module, name, fn)
        audio = timers.get("audio_features", 0.0) + timers.get("audio_conditioning", 0.0)
        decode = timers.get("decode", 0.0)
        total = t2 - t0
        video_s = frames / VIDEO_FPS
        out = {
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
            "unet_loop_s": t1 - first_unet.get("t", t1),
            "unet_calls": n_unet["n"],
            "generated_frames": int(latents.shape[0]),
            "output_frames": frames,
            "video_seconds": video_s,
            "seconds_per_video_second": total / video_s if video_s else None,
            "frames_checksum": checksum,
            "working_size": list(inputs.size),
            "memory_plan": params.plan.info(),
            "noise": noise,
        }
        if keep_every:
            out["frames"] = np.stack(kept)
        return out


def run_official(args, ckpt: str, image: str, audio: str, warm_audio: str | None, workdir: str,
                 timeout: float) -> dict:
    """devtools/official_bench.py in a subprocess with the official side's PYTHONPATH, on the same weights, inputs,
    steps, size, dtype and seed; its frames and latent noise saved beside its JSON (official_frames.npy,
    official_noise.npy) for the parity check."""
    out = os.path.join(workdir, "official.json")
    cmd = [args.official_python, os.path.join(ROOT, "devtools", "official_bench.py"), "--official", args.official,
           "--checkpoints", ckpt, "--image", image, "--audio", audio, "--size", str(args.size), "--steps",
           str(args.steps), "--dtype", args.dtype_name, "--device", args.device, "--seed", str(args.seed),
           "--out", out, "--frames-out", os.path.join(workdir, "official_frames.npy"),
           "--noise-out", os.path.join(workdir, "official_noise.npy")]
    if warm_audio:
        cmd += ["--warmup-audio", warm_audio]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if args.official_pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in args.official_pythonpath.split(os.pathsep) if p)
    env.update(PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
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
    res = finish_child(proc, out, timeout)
    th.join(timeout=5)
    res["wall_s"] = round(time.time() - t, 1)
    if res["returncode"] != 0 or not res.get("ok"):
        res["ok"] = False
        res["output_tail"] = "".join(tail)[-4000:]
    return res
