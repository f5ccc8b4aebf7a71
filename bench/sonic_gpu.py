#!/usr/bin/env python3
"""The Sonic engine on a GPU, everything issue #13 asks in one run (within 8 minutes on one H100/H200):

    python bench/sonic_gpu.py [--size 512] [--seconds 2] [--steps 25] [--dtype fp16] [--device cuda] [--repeat 3]
                              [--official DIR --official-python P --official-pythonpath PATHS | --no-official]
                              [--memory-seconds 60] [--memory-modes gpu,offload,lowvram] [--no-compile]
                              [--config-dir D] [--checkpoints DIR] [--budget-s 450] [--profile] [--out JSON]

Weights: a full official-layout folder with random weights (devtools/bench_media.ensure_weights: the real SVD-XT
UNet / VAE / CLIP ViT-H and whisper-tiny configs of bench/sonic_full_config, ~11 GB, drawn on the GPU), reused
while its configs are unchanged. Inputs: sample_media/portrait.png as a size x size square, the example speech cut
or repeated to --seconds (the timed clip), 1 s (warm-up, compilation) and --memory-seconds (memory runs).
Phases (the JSON is rewritten after each, so a run cut short keeps what it measured; a phase that no longer fits
the --budget-s left is skipped, saying so):
1. compile, cold: a child process (`--phase compiled`, an empty inductor cache of its own) compiles the UNet and
   the VAE decoder through one 1-step run with `compile` on and saves torch's artifacts to a cache file, as the
   engine does beside the models. It runs beside phases 2-5 with all but COMPILE_SPARE_CORES cores, so that
   compiling (CPU) overlaps the GPU-bound runs without slowing their kernel launches.
2. SonicFlow loads (the engine's loader, every model on the GPU); FLOPs of one UNet window call (3 x 25 frames).
3. memory: one 1-step run with --memory-seconds of audio per memory mode (gpu / offload / lowvram), each
   starting as ComfyUI starts it (models in RAM unless gpu), its peak torch.cuda.max_memory_allocated; and the
   planner's choice for budgets of 6 and 8 GiB at that length (goals: <= 8 GB, and <= 6 GB at 512x512, 60 s);
   every 10th frame of offload and lowvram against gpu (offload: equal; lowvram: fp16 rounding of 25- against
   75-frame UNet calls).
4. eager: a warm-up, then --repeat runs of the clip (noise='device', the official draw): GPU-s per video-second,
   the median; the first run's frames are kept; one more run with noise='cpu' as the parity baseline.
5. official (jixiaozhong/Sonic, devtools/official_bench.py in a subprocess with its own packages; same weights,
   image, audio, steps, size, dtype and seed): timed, its frames and latent noise saved. Parity: its latent noise
   against SonicFlow's device draw (equal bit for bit expected), its frames against SonicFlow's (noise='device':
   within fp16 rounding, PSNR >= PARITY_PSNR_DB; noise='cpu' shows how far other noise lands).
6. compile, warm (after phase 1 has finished): a fresh child process with a fresh inductor cache loads the cache
   file: the compile time of a restarted worker (its first compiled run less an eager run of the same), then
   --repeat compiled runs (UNet and full VAE decode chunks): GPU-s per video-second, the median.
Printed and written (default bench/results/sonic_gpu.json). `--config-dir tests/data/sonic_tiny_config --size 64`
runs the same code at a tiny size on the CPU (tests/sonic/test_bench_scripts.py).

On a lent GPU machine (no network; no diffusers, librosa, omegaconf, PyAV there): run
`devtools/prepare_gpu_carry.sh` here first (wheels into .whl/ and .whl_official/, the official code into
.official/), carry those three folders, and run the command it prints (docs/benchmarks.md has it too).
"""
from __future__ import annotations

import os
import sys

# bench/ holds scripts named like standard modules (bench/queue.py): keep this folder off the import path.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

ROOT = os.path.dirname(_HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("PYTHONUNBUFFERED", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from devtools.bench_media import ensure_weights, make_audio, make_image  # noqa: E402
from devtools.sonic_runner import SonicRunner, finish_child, log, run_official  # noqa: E402

DEFAULT_OUT = os.path.join(ROOT, "bench", "results", "sonic_gpu.json")
GOAL_RATIO = 3.0                # official / SonicFlow GPU-s per video-second
GOAL_PEAK_GB = 8.0              # any memory mode, 60 s of audio
GOAL_LOWVRAM_PEAK_GB = 6.0      # at 512x512, 60 s of audio
PARITY_PSNR_DB = 30.0           # SonicFlow (noise='device') against the official frames, fp16
# cores left to the timed runs while the cold compile runs beside them
COMPILE_SPARE_CORES = 4
MEMORY_FRAME_STRIDE = 10        # frames kept of each memory run, to compare the modes' pictures
COMPILE_THREADS = max(1, (os.cpu_count() or 1) - COMPILE_SPARE_CORES)
# Usual lengths on an H200 (s), in phase order: a phase runs when it and the phases after it still fit the budget.
PHASE_S = {"memory": 50, "eager": 60, "official": 90, "warm_compile": 90}
# Dense (no sparsity) fp16/bf16 tensor-core peak, TFLOP/s, by a substring of torch.cuda.get_device_name();
# first match wins, so the specific names come first.
PEAK_TFLOPS = [
    ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H800 PCIe", 756.0),
    ("GH200", 989.4), ("H200", 989.4), ("H100", 989.4), ("H800", 989.4), ("H20", 148.0),
    ("B200", 2250.0), ("A100", 312.0), ("A800", 312.0), ("A10G", 70.0), ("A10", 125.0), ("L40S", 362.0),
    ("L40", 181.0), ("L4", 121.0), ("RTX 6000 Ada", 364.0), ("RTX 4090", 165.2), ("RTX 3090", 71.0),
    ("V100", 125.0), ("T4", 65.0),
]


def peak_flops(device_name: str) -> float | None:
    return next((tf * 1e12 for key, tf in PEAK_TFLOPS if key.lower() in device_name.lower()), None)


def median_of(runs: list[dict]) -> dict:
    """The run with the median GPU-s per video-second, with every run's figure."""
    ranked = sorted(runs, key=lambda r: r["seconds_per_video_second"])
    out = {k: v for k, v in ranked[(len(ranked) - 1) // 2].items() if k != "frames"}
    out["all_seconds_per_video_second"] = [r["seconds_per_video_second"] for r in runs]
    out["median_seconds_per_video_second"] = statistics.median(out["all_seconds_per_video_second"])
    return out


def add_utilisation(timed: dict, flops_per_call: int | None, peak: float | None) -> None:
    """Useful FLOPs (one window call's count x calls) over the sampling time and the GPU's dense peak."""
    if flops_per_call and peak and timed.get("sampling_s") and timed.get("unet_calls"):
        timed["utilisation_sampling"] = flops_per_call * timed["unet_calls"] / timed["sampling_s"] / peak


def frame_distance(a: np.ndarray, b: np.ndarray) -> dict:
    """How far two uint8 videos (T, H, W, 3) are apart: max / mean absolute difference in levels, PSNR."""
    if a.shape != b.shape:
        return {"error": f"shapes differ: {list(a.shape)} vs {list(b.shape)}"}
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    mse = float((d.astype(np.float64) ** 2).mean())
    return {"max_abs": int(d.max()), "mean_abs": float(d.mean()), "share_over_8_levels": float((d > 8).mean()),
            "psnr_db": float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)}


def compile_counters() -> dict:
    from torch._dynamo.utils import counters

    return {"fxgraph_cache_hit": counters["inductor"]["fxgraph_cache_hit"],
            "fxgraph_cache_miss": counters["inductor"]["fxgraph_cache_miss"],
            "autograd_cache_hit": counters["aot_autograd"]["autograd_cache_hit"],
            "autograd_cache_miss": counters["aot_autograd"]["autograd_cache_miss"]}


# ------------------------------------------------------------------------------------------------ compile child

def compiled_phase(args) -> int:
    """`--phase compiled`, in its own process: load the cache file, an eager and a compiled 1-step run of the
    warm-up clip (their difference is the compile time), save the cache, then --repeat compiled timed runs."""
    import torch

    from sonic_core.sonic.compiling import load_compile_cache, save_compile_cache

    res: dict = {"inductor_cache_dir": os.environ.get("TORCHINDUCTOR_CACHE_DIR")}

    def save():
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1, default=str)

    device = torch.device(args.device)
    t = time.time()
    runner = SonicRunner(args.checkpoints, device, args.dtype_name)
    res["load_s"] = time.time() - t
    res["cache_file_existed"] = os.path.isfile(args.compile_cache)
    res["cache_loaded"] = load_compile_cache(args.compile_cache)
    mode = args.compile_mode
    runner.run(args.image, args.warm_audio, 1, args.seed)                  # CUDA and cuDNN set up
    res["eager_1step_s"] = runner.run(args.image, args.warm_audio, 1, args.seed)["total_s"]
    res["compiled_first_1step_s"] = runner.run(args.image, args.warm_audio, 1, args.seed, compile=mode)["total_s"]
    res["compile_s"] = res["compiled_first_1step_s"] - res["eager_1step_s"]
    res["counters"] = compile_counters()
    res["cache_saved"] = save_compile_cache(args.compile_cache)
    log(f"compiled phase: compile {res['compile_s']:.1f} s (cache loaded: {res['cache_loaded']}), {res['counters']}")
    save()
    runs = [runner.run(args.image, args.audio, args.steps, args.seed, compile=mode) for _ in range(args.repeat)]
    if runs:
        res["timed"] = median_of(runs)
        log(f"compiled: median {res['timed']['median_seconds_per_video_second']:.2f} s per video-second")
    save()
    return 0


def start_compiled_child(args, ckpt, image, audio, warm, workdir, name, repeat) -> tuple[subprocess.Popen, str]:
    out = os.path.join(workdir, f"{name}.json")
    cmd = [sys.executable, os.path.abspath(__file__), "--phase", "compiled", "--checkpoints", ckpt, "--image", image,
           "--audio", audio, "--warm-audio", warm, "--compile-cache", os.path.join(workdir, "compile_cache.bin"),
           "--steps", str(args.steps), "--seed", str(args.seed), "--repeat", str(repeat), "--device", args.device,
           "--dtype", args.dtype_name, "--compile-mode", args.compile_mode, "--out", out]
    # an inductor cache of its own, empty: what it finds compiled can only come from the cache file
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=os.path.join(workdir, f"inductor_{name}"))
    if name == "compile_cold":
        env["TORCHINDUCTOR_COMPILE_THREADS"] = str(COMPILE_THREADS)
    log(f"{name}: started ({' '.join(cmd[2:4])})")
    return subprocess.Popen(cmd, env=env), out


# ------------------------------------------------------------------------------------------------ main

def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=512, help="working size (min_resolution); the image is square")
    ap.add_argument("--seconds", type=float, default=2.0, help="audio of the timed runs (2 s = 25 frames = 1 window)")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--dtype", default="auto", choices=("auto", "fp16", "bf16", "fp32"),
                    help="UNet/VAE/CLIP dtype (auto: fp16 on a GPU, fp32 on the CPU)")
    ap.add_argument("--device", default="auto", help="cuda, cuda:N, cpu (auto: cuda when available)")
    ap.add_argument("--seed", type=int, default=42, help="non-zero: the official code replaces a seed of 0")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per figure; the median is reported")
    ap.add_argument("--config-dir", default=os.path.join(ROOT, "bench", "sonic_full_config"))
    ap.add_argument("--checkpoints", default=None, help="weights folder (made if it lacks the bench stamp)")
    ap.add_argument("--image", default=os.path.join(ROOT, "sample_media", "portrait.png"))
    ap.add_argument("--audio", default=os.path.join(ROOT, "sample_media", "speech.wav"))
    ap.add_argument("--official", default=None, help="official code folder (default .official/ when it exists)")
    ap.add_argument("--official-python", default=None, help="python for the official side (default: this one)")
    ap.add_argument("--official-pythonpath", default=None, help="PYTHONPATH of the official side, e.g. /tmp/offsite")
    ap.add_argument("--no-official", action="store_true")
    ap.add_argument("--memory-seconds", type=float, default=60.0, help="audio of the memory runs (0: none)")
    ap.add_argument("--memory-modes", default="gpu,offload,lowvram")
    ap.add_argument("--no-compile", action="store_true", help="skip both compile phases")
    ap.add_argument("--compile-mode", default="default", choices=("default", "max-autotune-no-cudagraphs"))
    ap.add_argument("--budget-s", type=float, default=None, help="wall-clock budget: phases that no longer fit skip")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads on both sides (0: default)")
    ap.add_argument("--profile", action="store_true", help="GPU time of one eager UNet call by kernel")
    ap.add_argument("--out", default=DEFAULT_OUT)
    # the compile child's own arguments
    ap.add_argument("--phase", choices=("main", "compiled"), default="main", help=argparse.SUPPRESS)
    ap.add_argument("--warm-audio", help=argparse.SUPPRESS)
    ap.add_argument("--compile-cache", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    import torch

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    cuda = torch.device(args.device).type == "cuda"
    args.dtype_name = args.dtype if args.dtype != "auto" else ("fp16" if cuda else "fp32")
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def main(argv=None) -> int:
    args = parse(argv)
    if args.phase == "compiled":
        return compiled_phase(args)
    import torch

    from sonic_core.sonic.memory import GIB, model_bytes, plan_memory
    from sonic_core.sonic.sampler import draw_noise, generated_frames, seed_everything

    t_start = time.time()

    def left() -> float:
        return float("inf") if args.budget_s is None else args.budget_s - (time.time() - t_start)

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype_name]
    if args.official is None and not args.no_official and os.path.isfile(os.path.join(ROOT, ".official", "sonic.py")):
        args.official = os.path.join(ROOT, ".official")
    args.official_python = args.official_python or sys.executable
    args.config_dir = os.path.abspath(args.config_dir)
    device_name = torch.cuda.get_device_name(device) if cuda else (platform.processor() or platform.machine())
    peak = peak_flops(device_name) if cuda else None
    unit = "GPU" if cuda else "CPU"
    res: dict = {"benchmark": "bench/sonic_gpu.py", "date": time.strftime("%Y-%m-%d %H:%M:%S"), "device": str(device),
                 "device_name": device_name, "cpu_count": os.cpu_count(), "peak_dense_flops": peak,
                 "settings": {k: v for k, v in vars(args).items() if k not in ("phase", "warm_audio", "compile_cache")},
                 "versions": {"python": sys.version.split()[0], "torch": torch.__version__},
                 "goals": {"ratio_official_over_sonicflow": GOAL_RATIO, "peak_gb_60s": GOAL_PEAK_GB,
                           "lowvram_peak_gb_60s_512": GOAL_LOWVRAM_PEAK_GB, "parity_psnr_db": PARITY_PSNR_DB},
                 "skipped": {}}
    out_path = os.path.abspath(args.out)

    def save():
        os.makedirs(os.path.dirname(out_path), exist_ok=True)
        with open(out_path, "w") as f:
            json.dump(res, f, indent=1, default=str)

    enabled = {"memory": True, "eager": True, "official": bool(args.official and not args.no_official),
               "warm_compile": not args.no_compile}

    def fits(phase: str) -> bool:
        later = list(PHASE_S)[list(PHASE_S).index(phase) + 1:]
        if left() >= PHASE_S[phase] + sum(PHASE_S[p] for p in later if enabled[p]):
            return True
        res["skipped"][phase] = f"budget: {left():.0f} s left"
        log(f"{phase}: skipped ({res['skipped'][phase]})")
        return False

    log(f"device {device} ({device_name}), {args.dtype_name}, {args.size}x{args.size}, {args.seconds:g} s, "
        f"{args.steps} steps")
    ckpt, res["weights"] = ensure_weights(args.config_dir, args.checkpoints, "cuda" if cuda else "cpu", log)
    save()
    workdir = tempfile.mkdtemp(prefix="sonic_bench_")
    image = make_image(args.image, args.size, os.path.join(workdir, "image.png"))
    clip = make_audio(args.audio, args.seconds, os.path.join(workdir, "clip.wav"))
    warm = make_audio(args.audio, 1.0, os.path.join(workdir, "warm.wav"))

    # 1. compile, cold (beside phases 2-5)
    cold = None if args.no_compile else start_compiled_child(args, ckpt, image, clip, warm, workdir, "compile_cold", 0)

    # 2. load, FLOPs
    runner = SonicRunner(ckpt, device, args.dtype_name)
    sf = res["sonicflow"] = {"load_s": runner.load_s, "memory_after_load_bytes": runner.memory_after_load}
    flops = runner.count_unet_flops((args.size, args.size))
    sf["unet_call_flops"] = flops["total"]
    log(f"SonicFlow: loaded in {runner.load_s:.1f} s; one UNet window call = {flops['total'] / 1e12:.3f} TFLOP")
    if cuda and args.profile:
        sf["unet_call_profile"] = runner.profile_unet_call((args.size, args.size))
    save()

    # 3. memory per mode, and the plans for small budgets
    if args.memory_seconds > 0:
        long_audio = make_audio(args.audio, args.memory_seconds, os.path.join(workdir, "long.wav"))
        n_long = generated_frames(int(round(args.memory_seconds * 16000)))
        item = torch.finfo(dtype).bits // 8
        sf["plans"] = {f"{gib} GiB": plan_memory(model_bytes(runner.models), (args.size, args.size), item, gib * GIB,
                                                 n_long).info() for gib in (6, 8)}
        sf["memory"], frames_by_mode = {}, {}
        for mode in [m for m in args.memory_modes.split(",") if m]:
            if not fits("memory"):
                break
            if mode != "gpu":
                runner.offload_all()
            if cuda:
                torch.cuda.reset_peak_memory_stats(device)
            m = runner.run(image, long_audio, 1, args.seed, memory_mode=mode, keep_every=MEMORY_FRAME_STRIDE)
            frames_by_mode[mode] = m.pop("frames")
            if mode != "gpu" and "gpu" in frames_by_mode:
                m["frames_against_gpu_mode"] = frame_distance(frames_by_mode[mode], frames_by_mode["gpu"])
            m["peak_allocated_bytes"] = torch.cuda.max_memory_allocated(device) if cuda else None
            m["peak_reserved_bytes"] = torch.cuda.max_memory_reserved(device) if cuda else None
            sf["memory"][mode] = m
            log(f"memory {mode}: peak {(m['peak_allocated_bytes'] or 0) / 1e9:.2f} GB with {args.memory_seconds:g} s "
                f"({m['total_s']:.1f} s; plan {m['memory_plan']})")
            save()

    # 4. eager
    ours_frames = {}
    if fits("eager"):
        runner.run(image, warm, 1, args.seed)
        runs = []
        for r in range(args.repeat):
            runs.append(runner.run(image, clip, args.steps, args.seed, keep_every=int(r == 0)))
        ours_frames["device"] = runs[0].pop("frames")
        sf["eager"] = median_of(runs)
        add_utilisation(sf["eager"], flops["total"], peak)
        baseline = runner.run(image, clip, args.steps, args.seed, noise="cpu", keep_every=1)
        ours_frames["cpu"] = baseline.pop("frames")
        log(f"SonicFlow eager: median {sf['eager']['median_seconds_per_video_second']:.2f} {unit}-s per video-s")
        save()

    # 5. official, and parity
    if args.official and not args.no_official and fits("official"):
        off = res["official"] = run_official(args, ckpt, image, clip, warm, workdir, left() - PHASE_S["warm_compile"])
        add_utilisation(off.get("timed", {}), flops["total"], peak)
        noise_file, frames_file = (os.path.join(workdir, f) for f in ("official_noise.npy", "official_frames.npy"))
        if off.get("ok") and os.path.isfile(noise_file) and ours_frames:
            theirs = torch.from_numpy(np.load(noise_file))
            seed_everything(args.seed)
            _, ours = draw_noise((1, 3, args.size, args.size), theirs.shape[1], theirs.shape[2:], device, dtype,
                                 "device", torch.device("cpu"))
            frames = np.load(frames_file)
            res["parity"] = {"latent_noise_equal": bool(torch.equal(ours, theirs)),
                             "frames_noise_device": frame_distance(ours_frames["device"], frames),
                             "frames_noise_cpu": frame_distance(ours_frames["cpu"], frames)}
            res["parity"]["frames_within_fp16_tolerance"] = \
                res["parity"]["frames_noise_device"].get("psnr_db", 0) >= PARITY_PSNR_DB
            log(f"parity: {res['parity']}")
        save()

    # 6. compile, warm: a restarted process with the cache file
    if cold is not None:
        res["compile_cold"] = finish_child(*cold, timeout=left() - PHASE_S["warm_compile"])
        res["compile_cold"]["compile_threads"] = COMPILE_THREADS
        save()
    if cold is not None and fits("warm_compile"):
        res["compile_warm"] = finish_child(*start_compiled_child(args, ckpt, image, clip, warm, workdir,
                                                                 "compile_warm", args.repeat), timeout=left())
        add_utilisation(res["compile_warm"].get("timed", {}), flops["total"], peak)
    summarise(res, unit)
    save()
    log(f"wrote {out_path}")
    return 0


def summarise(res: dict, unit: str) -> None:
    sf, off = res.get("sonicflow", {}), res.get("official", {})
    eager = sf.get("eager", {}).get("median_seconds_per_video_second")
    compiled = res.get("compile_warm", {}).get("timed", {}).get("median_seconds_per_video_second")
    official = off.get("timed", {}).get("seconds_per_video_second") if off.get("ok") else None
    s = res["summary"] = {"unit": f"{unit}-seconds per second of video", "sonicflow_eager": eager,
                          "sonicflow_compiled": compiled, "official": official,
                          "compile_cold_s": res.get("compile_cold", {}).get("compile_s"),
                          "compile_warm_s": res.get("compile_warm", {}).get("compile_s"),
                          "compile_warm_counters": res.get("compile_warm", {}).get("counters"),
                          "parity": res.get("parity"), "skipped": res["skipped"]}
    if official and eager:
        s["ratio_official_over_eager"] = official / eager
    if official and compiled:
        s["ratio_official_over_compiled"] = official / compiled
    peaks = {m: r.get("peak_allocated_bytes") for m, r in sf.get("memory", {}).items()}
    s["peak_bytes_by_mode"] = peaks
    if any(peaks.values()):
        s["peak_goal_met"] = min(v for v in peaks.values() if v) <= GOAL_PEAK_GB * 1e9
        if peaks.get("lowvram"):
            s["lowvram_goal_met"] = peaks["lowvram"] <= GOAL_LOWVRAM_PEAK_GB * 1e9
    print("\n== Sonic benchmark:", res["device_name"], json.dumps(res["settings"], default=str)[:300])
    for key, value in s.items():
        print(f"{key:32} {json.dumps(value, default=str)}")


if __name__ == "__main__":
    sys.exit(main())
