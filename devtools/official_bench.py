"""Time the OFFICIAL Sonic implementation (jixiaozhong/Sonic) on one clip: the other half of bench/sonic_gpu.py.

bench/sonic_gpu.py starts this file as a subprocess with the official implementation's environment (diffusers
0.29.0, transformers 4.43.2, huggingface_hub 0.23.4: they cannot share a process with SonicFlow's newer ones),
on the same weights folder, image, audio, steps, size and dtype:

    PYTHONPATH=<official wheels site>:<official checkout> python devtools/official_bench.py \\
        --official DIR --checkpoints CKPT --image I.png --audio A.wav [--warmup-audio W.wav] \\
        --size 512 --steps 25 --dtype fp16 --device cuda --seed 42 --out result.json

It imports the official code, builds `Sonic(device_id=...)` exactly as the official code does (the weight dtype
from its yaml replaced by --dtype), and times `Sonic.process(...)` (wall time, torch.cuda.synchronize() at every
boundary), split by thin wrappers around official callables (each calls the original unchanged):
`image_audio_to_tensor` (audio load, mel features, face detection, image tensors), `test` (whisper, the per-frame
adapters, and the pipeline call), `SonicPipeline.__call__` (CLIP, VAE encode, sampling, and decode),
`SonicPipeline.decode_latents` (decode), the rest of `process` (RIFE, frame stacking). Writing the mp4
(imageio + ffmpeg) is replaced by a stub that records the frame count and, with --frames-out, the frames as the
official writer converts them (x * 255 truncated to uint8), as one (T, H, W, 3) .npy: encoding is not part of the
comparison (SonicFlow's side is timed up to uint8 frames too). --noise-out saves the latent noise the pipeline
drew (its 5-d `randn_tensor` draw, recorded by a thin wrapper), for the parity check of SonicFlow's noise='device'.
Both come from the last timed run. Peak GPU memory: torch.cuda.max_memory_allocated.

Missing modules (on the GPU machine): `librosa` is replaced, when it cannot be imported, by a stand-in written
to a temporary folder put first on sys.path; it implements the one call the official code makes,
`librosa.load(path, sr=16000)` (mono float32 in [-1, 1], resampled with scipy's resample_poly when needed).
Likewise `imageio` (imported by the official util module, used only by the mp4 writer that is stubbed here).

The official code reads `checkpoints/` beside its sonic.py: a symbolic link there is pointed at --checkpoints
(an existing non-link folder is refused). Imports nothing from the project; not collected by pytest.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
import types

LIBROSA_STANDIN = '''"""Stand-in for librosa (bench only): load(path, sr) as librosa.load does it for WAV files."""
__version__ = "0-standin"


def load(path, sr=22050, mono=True, offset=0.0, duration=None, dtype=None):
    import numpy as np
    from math import gcd
    from scipy.io import wavfile

    rate, data = wavfile.read(path)
    if data.dtype.kind == "i":
        data = data.astype(np.float32) / float(2 ** (8 * data.dtype.itemsize - 1))
    elif data.dtype.kind == "u":
        data = (data.astype(np.float32) - 128.0) / 128.0
    data = data.astype(np.float32)
    if data.ndim > 1 and mono:
        data = data.mean(axis=1)
    start = int(round(offset * rate))
    data = data[start:] if duration is None else data[start:start + int(round(duration * rate))]
    if sr is not None and sr != rate:
        from scipy.signal import resample_poly
        g = gcd(int(sr), int(rate))
        data = resample_poly(data, int(sr) // g, int(rate) // g).astype(np.float32)
        rate = sr
    return np.ascontiguousarray(data, dtype=np.float32), rate
'''


IMAGEIO_STANDIN = '''"""Stand-in for imageio (bench only): the official mp4 writer is replaced by a stub."""
__version__ = "0-standin"


def get_writer(*a, **k):
    raise NotImplementedError("imageio stand-in: no video writing in the benchmark")
'''


def log(msg):
    print(f"[official] {msg}", flush=True)


def ensure_module(name: str, source: str, force_standin: bool = False) -> str:
    """Import `name`, or put a stand-in module of that name (source) first on sys.path."""
    import importlib

    if not force_standin:
        try:
            mod = importlib.import_module(name)
            return f"{name} {getattr(mod, '__version__', '?')}"
        except Exception:  # noqa: BLE001
            pass
    d = tempfile.mkdtemp(prefix=f"{name}_standin_")
    with open(os.path.join(d, f"{name}.py"), "w") as f:
        f.write(source)
    sys.path.insert(0, d)
    sys.modules.pop(name, None)
    return f"{name} stand-in"


def link_checkpoints(official: str, ckpt: str) -> None:
    link = os.path.join(official, "checkpoints")
    if os.path.islink(link):
        if os.path.realpath(link) == os.path.realpath(ckpt):
            return
        os.unlink(link)
    elif os.path.exists(link):
        raise SystemExit(f"{link} exists and is not a symlink; remove it or pass that folder as --checkpoints")
    os.symlink(os.path.abspath(ckpt), link)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", required=True, help="the official code (sonic.py, src/, config/)")
    ap.add_argument("--checkpoints", required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--audio", required=True)
    ap.add_argument("--warmup-audio", default=None, help="short clip run once with 1 step before the timed run")
    ap.add_argument("--size", type=int, default=512, help="process(min_resolution=...)")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--dtype", default="fp16", choices=("fp16", "bf16", "fp32"))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--seed", type=int, default=42, help="non-zero (the official code ignores a seed of 0)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--repeat", type=int, default=1, help="timed runs; the fastest is reported")
    ap.add_argument("--librosa-standin", action="store_true", help="use the stand-in even if librosa imports")
    ap.add_argument("--no-flops", action="store_true", help="skip counting one official UNet call's FLOPs")
    ap.add_argument("--frames-out", default=None, help="save the timed run's frames as uint8 (T, H, W, 3) .npy")
    ap.add_argument("--noise-out", default=None, help="save the timed run's latent noise as .npy (float32)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    # diffusers 0.29 imports peft when it is installed; a current peft needs a newer huggingface_hub than the one
    # diffusers 0.29 needs. The official code uses no peft: hide it (find_spec then reports it absent).
    sys.modules["peft"] = None
    res: dict = {"ok": False, "args": vars(args)}

    def save():
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)

    try:
        run(args, res, save)
        res["ok"] = True
    except BaseException as e:  # noqa: BLE001 - the caller reads the error from the JSON
        res["error"] = f"{type(e).__name__}: {e}"
        res["traceback"] = traceback.format_exc()[-4000:]
        log(res["traceback"])
    save()
    return 0 if res["ok"] else 1


def run(args, res, save):
    official = os.path.abspath(args.official)
    res["modules"] = [ensure_module("librosa", LIBROSA_STANDIN, args.librosa_standin),
                      ensure_module("imageio", IMAGEIO_STANDIN)]
    link_checkpoints(official, args.checkpoints)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    dev_index = (int(args.device.split(":")[1]) if ":" in args.device else 0) if cuda else -1

    def sync():
        if cuda:
            torch.cuda.synchronize()

    sys.path.insert(0, official)
    t0 = time.time()
    import diffusers
    import huggingface_hub
    import sonic as off_sonic  # the official module (on sys.path above)
    import transformers
    from src.pipelines import pipeline_sonic
    from src.pipelines.pipeline_sonic import SonicPipeline
    res["versions"] = {"python": sys.version.split()[0], "torch": torch.__version__, "diffusers": diffusers.__version__,
                       "transformers": transformers.__version__, "huggingface_hub": huggingface_hub.__version__,
                       "official_module": os.path.abspath(off_sonic.__file__)}
    try:
        import accelerate
        res["versions"]["accelerate"] = accelerate.__version__
    except Exception:  # noqa: BLE001
        res["versions"]["accelerate"] = None
    res["import_s"] = round(time.time() - t0, 2)
    log(f"imported official code ({res['versions']})")
    if cuda:
        res["device_name"] = torch.cuda.get_device_name(dev_index)

    # ---- wrappers (each calls the official callable unchanged) ----
    timers: dict = {}

    def timed(name, fn):
        def wrapper(*a, **k):
            sync()
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                sync()
                timers[name] = timers.get(name, 0.0) + time.perf_counter() - t
        return wrapper

    off_sonic.image_audio_to_tensor = timed("preprocess", off_sonic.image_audio_to_tensor)
    off_sonic.test = timed("test", off_sonic.test)
    SonicPipeline.__call__ = timed("pipeline", SonicPipeline.__call__)
    SonicPipeline.decode_latents = timed("decode", SonicPipeline.decode_latents)
    unet_calls = {"n": 0}

    written = {}

    def save_videos_stub(videos, path, **k):  # replaces imageio mp4 writing (not part of the comparison)
        written["frames"] = int(videos.shape[2])
        written["shape"] = list(videos.shape)
        written["fps"] = k.get("fps")
        if args.frames_out:  # (1, 3, T, H, W) in [0, 1] -> what the official writer's astype(uint8) gives
            import numpy as np
            np.save(args.frames_out, (videos[0].permute(1, 2, 3, 0) * 255).numpy().astype(np.uint8))

    randn_tensor = pipeline_sonic.randn_tensor

    def recording_randn(shape, *a, **k):  # calls the original; keeps the latent draw (the 5-d one)
        out = randn_tensor(shape, *a, **k)
        if args.noise_out and len(shape) == 5:
            import numpy as np
            np.save(args.noise_out, out.float().cpu().numpy())
        return out

    pipeline_sonic.randn_tensor = recording_randn

    off_sonic.save_videos_grid = save_videos_stub
    os_proxy = types.ModuleType("os_proxy")
    os_proxy.__dict__.update(os.__dict__)
    os_proxy.system = lambda cmd: 0          # the ffmpeg mux
    os_proxy.remove = lambda path: None      # of the mp4 that was never written
    off_sonic.os = os_proxy

    off_sonic.Sonic.config.weight_dtype = args.dtype
    t = time.time()
    S = off_sonic.Sonic(device_id=dev_index, enable_interpolate_frame=True)
    sync()
    res["load_s"] = round(time.time() - t, 2)
    if cuda:
        res["memory_after_load_bytes"] = torch.cuda.memory_allocated()
    log(f"Sonic() loaded in {res['load_s']} s")

    def count_unet(m, a, k, o):
        unet_calls["n"] += 1

    S.pipe.unet.register_forward_hook(count_unet, with_kwargs=True)
    out_dir = tempfile.mkdtemp(prefix="official_bench_")

    if args.warmup_audio:
        t = time.time()
        rc = S.process(args.image, args.warmup_audio, os.path.join(out_dir, "warmup.mp4"), min_resolution=args.size,
                       inference_steps=1, dynamic_scale=1.0, seed=args.seed)
        sync()
        res["warmup_s"] = round(time.time() - t, 2)
        log(f"warm-up (1 step, short clip) in {res['warmup_s']} s, rc {rc}")
        timers.clear()
        unet_calls["n"] = 0

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    import resource

    best = None
    totals = []
    cpu_times = []
    for r in range(args.repeat):
        timers.clear()
        unet_calls["n"] = 0
        sync()
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        t = time.perf_counter()
        rc = S.process(args.image, args.audio, os.path.join(out_dir, "out.mp4"), min_resolution=args.size,
                       inference_steps=args.steps, dynamic_scale=1.0, seed=args.seed)
        sync()
        total = time.perf_counter() - t
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        totals.append(total)
        cpu_times.append((ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime))
        log(f"timed run {r + 1}/{args.repeat}: {total:.2f} s")
        if best is None or total < best[0]:
            best = (total, dict(timers), unet_calls["n"], rc)
    total, best_timers, n_calls, rc = best
    unet_calls["n"] = n_calls
    if rc != 0:
        raise RuntimeError(f"Sonic.process returned {rc} (no face found?)")
    frames = written.get("frames", 0)
    pre, test_s, pipe_s, dec = (best_timers.get(k, 0.0) for k in ("preprocess", "test", "pipeline", "decode"))
    res["timed"] = {
        "total_s": total,
        "all_totals_s": totals,
        "all_cpu_times_s": cpu_times,
        "min_cpu_time_s": min(cpu_times),
        "stages_s": {
            "preprocess (audio load, mel, face detection, image tensors)": pre,
            "audio features + adapters (whisper, per-frame audio2token/audio2bucket)": test_s - pipe_s,
            "sampling (pipeline call without decode: CLIP, VAE encode, UNet windows)": pipe_s - dec,
            "decode (VAE)": dec,
            "RIFE + rest of process": total - pre - test_s,
        },
        "sampling_s": pipe_s - dec,
        "unet_calls": unet_calls["n"],
        "output_frames": frames,
        "output_fps": written.get("fps"),
        "video_seconds": frames / 25.0 if frames else None,
        "frame_shape": written.get("shape"),
        "peak_memory_bytes": torch.cuda.max_memory_allocated() if cuda else None,
    }
    if frames:
        res["timed"]["seconds_per_video_second"] = total / (frames / 25.0)
    stages = {k.split(" (")[0]: round(v, 2) for k, v in res["timed"]["stages_s"].items()}
    log(f"process(): {total:.2f} s for {frames} frames; stages {json.dumps(stages)}")
    save()

    if not args.no_flops:
        try:
            res["unet_call_flops"] = count_official_unet_flops(S, args, torch)
            log(f"one official UNet call: {res['unet_call_flops'] / 1e12:.3f} TFLOP")
        except Exception as e:  # noqa: BLE001
            res["unet_call_flops_error"] = f"{type(e).__name__}: {e}"


def count_official_unet_flops(S, args, torch):
    """FLOPs of one official UNet window call (3 x 25 frames), as the pipeline makes it (FlopCounterMode)."""
    from torch.utils.flop_counter import FlopCounterMode

    pipe = S.pipe
    unet = pipe.unet
    dev, dt = unet.device, unet.dtype
    h = w = args.size // 8
    frames = 25
    g = torch.Generator(device="cpu").manual_seed(0)
    sample = torch.randn(3, frames, 8, h, w, generator=g).to(dev, dt)
    clip = torch.randn(3 * frames, 1, 1024, generator=g).to(dev, dt)
    audio = torch.randn(3 * frames, 32, 1024, generator=g).to(dev, dt)
    mask = torch.zeros(1, 1, args.size, args.size, dtype=dt, device=dev)
    mask[..., args.size // 4: 3 * args.size // 4, args.size // 4: 3 * args.size // 4] = 1
    ids = torch.tensor([[12.5, 30.0, 30.0]] * 3, dtype=dt, device=dev)
    t = torch.tensor([1.0], device=dev)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        unet(sample, t, encoder_hidden_states=(clip, [audio]), cross_attention_kwargs={"ip_adapter_masks": [mask]},
             added_time_ids=ids, return_dict=False)
    return int(fc.get_total_flops())


if __name__ == "__main__":
    sys.exit(main())
