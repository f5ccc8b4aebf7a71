"""Bridge benchmark: what the RabbitMQ bridge adds per job, and how throughput scales with ComfyUI instances.

In one run, against the real broker on 127.0.0.1:5672 (or a RabbitMQ cluster: `--cluster` starts three nodes on
this machine with devtools/rabbit_cluster.py, `--amqp URL` repeated uses yours) and private headless ComfyUIs (lite
engine, 1.5 s of speech), over several rounds:
1. baseline: the filled talking-head template sent straight to ComfyUI (POST /prompt, then /history polled every
   10 ms), one job at a time;
2. bridge: the same jobs (fresh seeds, so the result cache never answers) through `sonicflow submit`'s path
   (publish confirmed -> worker -> ComfyUI -> result message), one at a time, alternating with the baseline's jobs;
   overhead = bridge - baseline, p50/p95, in each round against that round's baseline;
3. throughput: a burst of jobs through one worker with one ComfyUI, then one worker with two; jobs/s and the ratio.

    .venv/bin/python bench/queue.py [--jobs 20] [--rounds 3] [--burst 16] [--cluster | --amqp URL ...]
    # writes bench/results/queue.json (queue-cluster.json on a cluster)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import wave

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# This file is called queue.py: keep its folder off sys.path, or it would shadow the standard library's `queue`.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.join(ROOT, "bench")]
sys.path.insert(0, ROOT)

from devtools.comfyui import ComfyServer  # noqa: E402
from queue_bridge.client import BridgeClient  # noqa: E402
from queue_bridge.comfy_client import ComfyClient  # noqa: E402
from queue_bridge import Settings  # noqa: E402
from queue_bridge.protocol import make_job  # noqa: E402
from queue_bridge.template import TemplateLibrary, fill  # noqa: E402


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))]


def make_inputs(folder):
    shutil.copyfile(os.path.join(ROOT, "sample_media", "portrait.png"), os.path.join(folder, "portrait.png"))
    with wave.open(os.path.join(ROOT, "sample_media", "speech.wav")) as src:
        params, frames = src.getparams(), src.readframes(int(src.getframerate() * 1.5))
    with wave.open(os.path.join(folder, "speech.wav"), "wb") as dst:
        dst.setparams(params)
        dst.writeframes(frames)


def direct(comfy: ComfyClient, folder: str, seeds) -> list[float]:
    lib = TemplateLibrary(os.path.join(ROOT, "templates"))
    t = lib.get("talking_head")
    info = comfy.object_info()
    times = []
    for seed in seeds:
        t0 = time.perf_counter()
        with open(os.path.join(folder, "portrait.png"), "rb") as f:
            img = comfy.upload(f.read(), "bench_portrait.png")
        with open(os.path.join(folder, "speech.wav"), "rb") as f:
            aud = comfy.upload(f.read(), "bench_speech.wav")
        prompt = fill(t, {"image": img, "audio": aud}, {"engine": "lite", "min_resolution": 256, "seed": seed}, info)
        comfy.wait(comfy.queue(prompt), timeout=300, poll=0.01)
        times.append(time.perf_counter() - t0)
    return times


def start_worker(settings: Settings, folder: str, comfy_urls, log_path):
    args = [sys.executable, os.path.join(ROOT, "sonicflow_cli.py"), "worker", "--prefix", settings.prefix,
            "--store", settings.store_url, "--input-root", folder, "--heartbeat", "10"]
    for url in settings.amqp_urls:
        args += ["--amqp", url]
    for url in comfy_urls:
        args += ["--comfy", url]
    return subprocess.Popen(args, cwd=ROOT, stdout=open(log_path, "ab"), stderr=subprocess.STDOUT)


def job(seed):
    return make_job(f"bench-{uuid.uuid4().hex[:10]}", "talking_head", {"image": "portrait.png", "audio": "speech.wav"},
                    {"engine": "lite", "min_resolution": 256, "seed": seed})


def bridged(client: BridgeClient, seeds) -> tuple[list[float], list[float]]:
    times, inner = [], []
    for seed in seeds:
        j = job(seed)
        t0 = time.perf_counter()
        result = client.submit(j, wait=True, timeout=300)
        times.append(time.perf_counter() - t0)
        assert result and result["status"] == "succeeded", result
        inner.append(result["timings"]["total"] - result["timings"].get("execute", 0))
    return times, inner


def burst(client: BridgeClient, seeds) -> float:
    q = client.channel.queue_declare("", exclusive=True).method.queue
    jobs = [job(s) for s in seeds]
    for j in jobs:
        client.channel.queue_bind(q, client.topology.results_exchange, f"result.{j['job_id']}")
    t0 = time.perf_counter()
    for j in jobs:
        client.publish_job(j)
    got = 0
    while got < len(jobs):
        r = client.wait_result(q, 600)
        assert r and r["status"] == "succeeded", r
        got += 1
    return len(jobs) / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=20, help="jobs per round, each way")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--burst", type=int, default=16)
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--cluster", action="store_true", help="start a three-node RabbitMQ cluster for the run")
    where.add_argument("--amqp", action="append", help="a broker node's URL (repeat it for every node)")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="sonicflow-bench-queue-")
    folder = os.path.join(work, "inputs")
    os.makedirs(folder)
    make_inputs(folder)
    cluster = None
    if args.cluster:
        from devtools.rabbit_cluster import RabbitCluster

        cluster = RabbitCluster.create(f"sfbench{os.getpid()}", 3, owner=os.getpid())
    urls = tuple(cluster.urls if cluster else args.amqp or Settings().amqp_urls)
    broker = f"RabbitMQ cluster of {len(urls)} nodes" if len(urls) > 1 else "one RabbitMQ node"
    settings = Settings(amqp_urls=urls, prefix=f"sfbench{uuid.uuid4().hex[:6]}",
                        store_url=os.path.join(work, "store"), heartbeat=0)
    a, b = ComfyServer(os.path.join(work, "comfy-a")).start(), ComfyServer(os.path.join(work, "comfy-b")).start()
    procs, rounds = [], []
    client = None
    try:
        ca = ComfyClient(a.url)
        direct(ca, folder, [999])  # warm-up: imports, first render
        client = BridgeClient(settings)
        procs.append(start_worker(settings, folder, [a.url], os.path.join(work, "worker1.log")))
        bridged(client, [2999])  # warm-up
        for r in range(args.rounds):
            # Baseline and bridge jobs alternate (fresh seeds), so both meet the same load from other processes.
            base, bridge, inner = [], [], []
            for i in range(args.jobs):
                seed = 10000 * (r + 1) + 2 * i
                for side in ("direct", "bridge") if i % 2 == 0 else ("bridge", "direct"):
                    if side == "direct":
                        base += direct(ca, folder, [seed])
                    else:
                        times, outside = bridged(client, [seed + 1])
                        bridge, inner = bridge + times, inner + outside
            rounds.append({"direct_s": {"p50": pct(base, 50), "p95": pct(base, 95)},
                           "bridge_s": {"p50": pct(bridge, 50), "p95": pct(bridge, 95)},
                           "overhead_ms": {"p50": 1000 * (pct(bridge, 50) - pct(base, 50)),
                                           "p95": 1000 * (pct(bridge, 95) - pct(base, 95))},
                           "ratio_p50": pct(bridge, 50) / pct(base, 50),
                           "worker_outside_comfy_ms": {"p50": 1000 * pct(inner, 50), "p95": 1000 * pct(inner, 95)}})
        one = burst(client, range(3000, 3000 + args.burst))
        procs.pop().terminate()
        procs.append(start_worker(settings, folder, [a.url, b.url], os.path.join(work, "worker2.log")))
        bridged(client, [4999])  # warm-up (one of the two ComfyUIs)
        two = burst(client, range(4000, 4000 + args.burst))
    finally:
        for p in procs:
            p.terminate()
            p.wait(60)
        if client is not None:
            client.topology.delete(client.channel)
            client.close()
        a.stop()
        b.stop()
        if cluster is not None:
            cluster.down()
    overheads = sorted(r["overhead_ms"]["p50"] for r in rounds)
    out = {
        "machine": f"{os.cpu_count()} CPU cores, no GPU; lite engine, 512x512 portrait, 1.5 s audio",
        "broker": broker, "jobs": args.jobs, "rounds": rounds, "burst": args.burst,
        "overhead_p50_ms_median_of_rounds": overheads[len(overheads) // 2],
        "jobs_per_s": {"one_comfy": one, "two_comfy": two, "ratio": two / one},
        "note": "overhead = bridge end-to-end (confirmed publish -> result message) minus direct POST /prompt + "
                "/history in the same round; both include uploading the inputs. Two ComfyUIs share the same CPU "
                "cores here, so the ratio shows the bridge's parallelism, not a GPU's.",
    }
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    name = "queue-cluster.json" if len(urls) > 1 else "queue.json"
    with open(os.path.join(ROOT, "bench", "results", name), "w") as f:
        json.dump(out, f, indent=2)
    print(f"broker: {broker}; {args.rounds} rounds of {args.jobs} jobs each way")
    for i, r in enumerate(rounds, 1):
        d, b = r["direct_s"], r["bridge_s"]
        print(f"round {i}: direct p50 {d['p50'] * 1000:6.1f} ms p95 {d['p95'] * 1000:6.1f} ms | "
              f"bridge p50 {b['p50'] * 1000:6.1f} ms p95 {b['p95'] * 1000:6.1f} ms | "
              f"overhead p50 {r['overhead_ms']['p50']:5.1f} ms p95 {r['overhead_ms']['p95']:5.1f} ms, "
              f"ratio {r['ratio_p50']:.3f}")
    print(f"bridge overhead at p50, median of rounds: {out['overhead_p50_ms_median_of_rounds']:.1f} ms "
          f"(goal: <= 20 ms)")
    print(f"throughput: 1 ComfyUI {one:.2f} jobs/s, 2 ComfyUIs {two:.2f} jobs/s, ratio {two / one:.2f}x "
          f"({os.cpu_count()} cores shared)")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
