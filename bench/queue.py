"""Bridge benchmark: what the RabbitMQ bridge adds per job, and how throughput scales with ComfyUI instances.

In one run, against the real broker on 127.0.0.1:5672 (or a RabbitMQ cluster: `--cluster` starts three nodes on
this machine with devtools/rabbit_cluster.py, `--amqp URL` repeated uses yours) and private headless ComfyUIs (lite
engine, 1.5 s of speech), over several rounds:
1. baseline: the filled talking-head template sent straight to ComfyUI (inputs uploaded, POST /prompt, /history
   polled every 10 ms, the video fetched from /view), one job at a time;
2. bridge: the same jobs (fresh seeds, so the result cache never answers) through `sonicflow submit`'s path
   (publish confirmed -> worker -> ComfyUI -> result message), one at a time, alternating with the baseline's jobs;
   overhead = bridge - baseline, p50/p95, in each round against that round's baseline, end to end and outside
   ComfyUI's execution (each job's time less its prompt's execution time in ComfyUI's history: the render is the
   same on both sides, and on shared cores its time varies more than what the bridge adds);
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
from queue_bridge.comfy_run import prompt_id_for  # noqa: E402
from queue_bridge import Settings  # noqa: E402
from queue_bridge.protocol import make_job  # noqa: E402
from queue_bridge.template import TemplateLibrary, fill, results_of  # noqa: E402


def summary(runs: dict) -> dict:
    """One round: end to end and outside ComfyUI's execution (each job's time minus its prompt's execution time in
    ComfyUI, which the same render takes on both sides), p50/p95 per side; overhead = bridge minus direct."""
    out = {}
    for side, pairs in runs.items():
        total, outside = [t for t, _ in pairs], [t - e for t, e in pairs]
        out[side] = {"end_to_end_ms": {"p50": 1000 * pct(total, 50), "p95": 1000 * pct(total, 95)},
                     "outside_comfy_ms": {"p50": 1000 * pct(outside, 50), "p95": 1000 * pct(outside, 95)}}
    for k in ("end_to_end_ms", "outside_comfy_ms"):
        out[f"overhead_{k}"] = {q: out["bridge"][k][q] - out["direct"][k][q] for q in ("p50", "p95")}
    out["ratio_end_to_end_p50"] = out["bridge"]["end_to_end_ms"]["p50"] / out["direct"]["end_to_end_ms"]["p50"]
    return out


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


def execution_s(entry: dict) -> float:
    """Seconds ComfyUI spent executing a prompt: its history's execution_start to execution_success."""
    stamps = {kind: data["timestamp"] for kind, data in entry["status"]["messages"] if "timestamp" in data}
    return (stamps["execution_success"] - stamps["execution_start"]) / 1000


class Direct:
    """The baseline: the filled template straight to ComfyUI, inputs uploaded, /history polled every 10 ms, and the
    video fetched from /view (what a direct client must do to have it; the bridge's result carries it stored)."""

    def __init__(self, comfy: ComfyClient, folder: str):
        self.comfy, self.folder = comfy, folder
        self.template = TemplateLibrary(os.path.join(ROOT, "templates")).get("talking_head")
        self.info = comfy.object_info()

    def __call__(self, seed: int) -> tuple[float, float]:
        """(end to end, ComfyUI's execution) in seconds."""
        t0 = time.perf_counter()
        with open(os.path.join(self.folder, "portrait.png"), "rb") as f:
            img = self.comfy.upload(f.read(), "bench_portrait.png")
        with open(os.path.join(self.folder, "speech.wav"), "rb") as f:
            aud = self.comfy.upload(f.read(), "bench_speech.wav")
        prompt = fill(self.template, {"image": img, "audio": aud},
                      {"engine": "lite", "min_resolution": 256, "seed": seed}, self.info)
        entry = self.comfy.wait(self.comfy.queue(prompt), timeout=300, poll=0.01)
        for item in (i for i in results_of(self.template, entry) if i.get("kind") == "file"):
            self.comfy.view(item["filename"], item.get("subfolder", ""), item.get("type", "output"))
        return time.perf_counter() - t0, execution_s(entry)


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


def bridged(client: BridgeClient, comfy: ComfyClient, seed: int) -> tuple[float, float]:
    """One job through the bridge, waited for: (end to end, ComfyUI's execution) in seconds."""
    j = job(seed)
    t0 = time.perf_counter()
    result = client.submit(j, wait=True, timeout=300)
    elapsed = time.perf_counter() - t0
    assert result and result["status"] == "succeeded" and not result["cache_hit"], result
    return elapsed, execution_s(comfy.history(prompt_id_for(j["job_id"], 1)))


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
    load_before = os.getloadavg()[0]
    a, b = ComfyServer(os.path.join(work, "comfy-a")).start(), ComfyServer(os.path.join(work, "comfy-b")).start()
    procs, rounds = [], []
    client = None
    try:
        ca = ComfyClient(a.url)
        run_direct = Direct(ca, folder)
        run_direct(999)  # warm-up: imports, first render
        client = BridgeClient(settings)
        procs.append(start_worker(settings, folder, [a.url], os.path.join(work, "worker1.log")))
        bridged(client, ca, 2999)  # warm-up
        for r in range(args.rounds):
            # Baseline and bridge jobs alternate (fresh seeds), so both meet the same load from other processes.
            runs: dict = {"direct": [], "bridge": []}
            for i in range(args.jobs):
                seed = 10000 * (r + 1) + 2 * i
                for side in ("direct", "bridge") if i % 2 == 0 else ("bridge", "direct"):
                    runs[side].append(run_direct(seed) if side == "direct" else bridged(client, ca, seed + 1))
            rounds.append(summary(runs))
        one = burst(client, range(3000, 3000 + args.burst))
        procs.pop().terminate()
        procs.append(start_worker(settings, folder, [a.url, b.url], os.path.join(work, "worker2.log")))
        client.submit(job(4999), wait=True, timeout=300)  # warm-up (one of the two ComfyUIs)
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
    def median_of_rounds(key):
        values = sorted(r[key]["p50"] for r in rounds)
        return values[len(values) // 2]

    out = {
        "machine": f"{os.cpu_count()} CPU cores, no GPU; lite engine, 512x512 portrait, 1.5 s audio",
        "broker": broker, "jobs": args.jobs, "rounds": rounds, "burst": args.burst,
        "load_average": {"before": load_before, "after": os.getloadavg()[0]},  # other processes on the cores
        "overhead_p50_ms": {"outside_comfy": median_of_rounds("overhead_outside_comfy_ms"),
                            "end_to_end": median_of_rounds("overhead_end_to_end_ms")},  # median of the rounds
        "jobs_per_s": {"one_comfy": one, "two_comfy": two, "ratio": two / one},
        "note": "end to end: the bridge from the confirmed publish to the result message, the baseline from the "
                "upload to the video fetched from /view; outside ComfyUI: each job's time minus its prompt's "
                "execution in ComfyUI (from ComfyUI's history), what each path adds around the same render. Two "
                "ComfyUIs share the same CPU cores here, so the throughput ratio shows the bridge's parallelism, not "
                "a GPU's.",
    }
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    name = "queue-cluster.json" if len(urls) > 1 else "queue.json"
    with open(os.path.join(ROOT, "bench", "results", name), "w") as f:
        json.dump(out, f, indent=2)
    print(f"broker: {broker}; {args.rounds} rounds of {args.jobs} jobs each way; load average "
          f"{load_before:.1f} before, {out['load_average']['after']:.1f} after")
    for i, r in enumerate(rounds, 1):
        for k, what in (("end_to_end_ms", "end to end    "), ("outside_comfy_ms", "outside ComfyUI")):
            d, b, o = r["direct"][k], r["bridge"][k], r[f"overhead_{k}"]
            print(f"round {i} {what}: direct p50 {d['p50']:6.1f} p95 {d['p95']:6.1f} | bridge p50 {b['p50']:6.1f} "
                  f"p95 {b['p95']:6.1f} | overhead p50 {o['p50']:6.1f} p95 {o['p95']:6.1f} ms")
    print(f"bridge overhead at p50 (median of rounds): {out['overhead_p50_ms']['outside_comfy']:.1f} ms outside "
          f"ComfyUI's execution, {out['overhead_p50_ms']['end_to_end']:.1f} ms end to end (goal: <= 20 ms)")
    print(f"throughput: 1 ComfyUI {one:.2f} jobs/s, 2 ComfyUIs {two:.2f} jobs/s, ratio {two / one:.2f}x "
          f"({os.cpu_count()} cores shared)")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
