#!/usr/bin/env python3
"""One Sonic UNet window call (3 x 25 frames) and one VAE decode chunk (8 frames), eager against torch.compile'd
under named inductor settings, at full size with random weights built on the device (no weight files). For tuning
on a lent GPU in a few minutes; `bench/sonic_gpu.py` measures whole runs against the official code.

    python bench/sonic_kernels.py [--size 512] [--dtype fp16] [--variants vae,unet-tuned,unet]
                                  [--budget-s 400] [--out JSON]

`--device cpu --dtype fp32 --size 64 --config-dir tests/data/sonic_tiny_config` runs the same code at a tiny size.

Variants (in the order given, each skipped when the budget left is under its usual compile time):
  vae         the VAE decoder, torch.compile default (what `compile=True` does for full decode chunks)
  unet        the UNet forward, torch.compile default (what `compile=True` does)
  unet-tuned  the UNet forward with inductor's coordinate-descent tuning of its generated kernels, no epilogue
              fusion and 1x1 convolutions as matrix products (settings diffusers' docs suggest for UNets)
Each prints the median of 5 calls after the first (compilation included in the first), timed with CUDA events,
the eager median of the same run, and the relative difference of the outputs.
"""
from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

ROOT = os.path.dirname(_HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

SVD = "stable-video-diffusion-img2vid-xt"
TUNED = {"coordinate_descent_tuning": True, "coordinate_descent_check_all_directions": True,
         "epilogue_fusion": False, "conv_1x1_as_mm": True}
COMPILE_S = {"vae": 60, "unet": 170, "unet-tuned": 240}   # rough compile times on 16 cores, for the budget


def log(msg: str) -> None:
    print(f"[kernels {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--dtype", default="fp16", choices=("fp16", "bf16", "fp32"))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--config-dir", default=os.path.join(ROOT, "bench", "sonic_full_config"))
    ap.add_argument("--variants", default="vae,unet-tuned,unet")
    ap.add_argument("--budget-s", type=float, default=400.0)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "sonic_kernels.json"))
    args = ap.parse_args(argv)
    t_start = time.time()

    import torch
    from diffusers import AutoencoderKLTemporalDecoder

    from devtools.unet_call import time_calls, window_inputs
    from sonic_core.sonic import compiling
    from sonic_core.sonic.sampler import VAE_SCALE
    from sonic_core.sonic.unet import build_unet

    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    dt = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    torch.backends.cudnn.benchmark = True
    res = {"benchmark": "bench/sonic_kernels.py", "date": time.strftime("%Y-%m-%d %H:%M:%S"),
           "device_name": torch.cuda.get_device_name(dev) if cuda else "cpu", "torch": torch.__version__,
           "size": args.size, "dtype": args.dtype, "config_dir": os.path.relpath(args.config_dir, ROOT),
           "variants": {}}

    def save():
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)

    def config(name):
        with open(os.path.join(args.config_dir, SVD, name, "config.json")) as f:
            return {k: v for k, v in json.load(f).items() if not k.startswith("_")}

    torch.manual_seed(0)
    t = time.time()
    unet = build_unet(config("unet"), device=dev, dtype=dt).to(dev)   # mix factors are made on the CPU
    with torch.device(dev):
        vae = AutoencoderKLTemporalDecoder(**config("vae")).to(dev, dt).eval().requires_grad_(False)
    log(f"models built on {res['device_name']} in {time.time() - t:.1f} s")

    window = window_inputs(unet, (args.size, args.size), dev, dt)
    g = torch.Generator(device="cpu").manual_seed(1)
    latents = (torch.randn(8, 4, args.size // 8, args.size // 8, generator=g) / VAE_SCALE).to(dev, dt)
    # the pipeline's own runners: eager, or torch.compile'd as `compile=True` does
    calls = {"unet": lambda run: run(*window), "vae": lambda run: run(vae, latents)}
    runners = {"unet": compiling.unet_runner, "vae": compiling.vae_decoder_runner}

    eager = {}
    for part, call in calls.items():
        timed = time_calls(lambda: call(runners[part](False)), cuda)
        eager[part] = (timed["median_s"], timed["output"])
        res["variants"][f"{part}-eager"] = {"median_s": timed["median_s"]}
        log(f"{part} eager: {timed['median_s'] * 1e3:.1f} ms")
    save()

    for name in [v for v in args.variants.split(",") if v]:
        left = args.budget_s - (time.time() - t_start)
        if left < COMPILE_S[name]:
            res["variants"][name] = {"skipped": f"budget: {left:.0f} s left"}
            log(f"{name}: skipped, {left:.0f} s left")
            continue
        torch._dynamo.reset()
        compiling.release_compiled()   # each variant compiles afresh, under its own inductor settings
        part = "vae" if name == "vae" else "unet"
        compiled = runners[part](True)
        try:
            with torch._inductor.config.patch(TUNED if name == "unet-tuned" else {}):
                timed = time_calls(lambda: calls[part](compiled), cuda)
                first, median, out = timed["first_call_s"], timed["median_s"], timed["output"]
        except Exception as e:  # noqa: BLE001 - the other variants still run
            res["variants"][name] = {"error": f"{type(e).__name__}: {e}"[:2000]}
            log(f"{name}: FAILED {res['variants'][name]['error'][:300]}")
            save()
            continue
        base, ref = eager[part]
        diff = float((out - ref).norm() / ref.norm())
        res["variants"][name] = {"compile_s": first, "median_s": median, "eager_median_s": base,
                                 "speedup": base / median, "relative_difference": diff}
        log(f"{name}: {median * 1e3:.1f} ms against {base * 1e3:.1f} ms eager ({base / median:.2f}x), "
            f"compiled in {first:.0f} s, relative difference {diff:.1e}")
        save()

    print("\n== one call, median of 5 (" + res["device_name"] + f", {args.size}x{args.size}, {args.dtype})")
    for name, v in res["variants"].items():
        if "median_s" in v:
            extra = f"  {v['speedup']:.2f}x eager, compiled in {v['compile_s']:.0f} s" if "speedup" in v else ""
            print(f"{name:14}{v['median_s'] * 1e3:9.1f} ms{extra}")
        else:
            print(f"{name:14}{v.get('skipped') or v.get('error', '')[:100]}")
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
