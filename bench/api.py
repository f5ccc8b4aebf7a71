"""Front-door load: N concurrent small uploads (multipart: a 256 px JPEG portrait + 1 s of WAV) on loopback against
`sonicflow api` (a subprocess, SQLite job store, the real RabbitMQ, a fresh queue prefix, no worker), then checks that
every accepted job is in RabbitMQ.

    .venv/bin/python bench/api.py [--n 200] [--concurrency 200]

Prints latency percentiles, and as the baseline measured in the same run the latency of a single upload at a time
(so the p95 is read as a ratio to an unloaded request, not as an absolute number from some other machine).
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import wave

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if sys.path and os.path.abspath(sys.path[0]) == os.path.join(ROOT, "bench"):
    sys.path[0] = ROOT  # bench/queue.py would shadow the standard library's queue module
AMQP = os.environ.get("SONICFLOW_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


def media() -> tuple[bytes, bytes]:
    from PIL import Image

    im = Image.open(os.path.join(ROOT, "sample_media", "portrait.png")).convert("RGB").resize((256, 256))
    jpg = io.BytesIO()
    im.save(jpg, "JPEG", quality=85)
    with wave.open(os.path.join(ROOT, "sample_media", "speech.wav")) as src:
        params, frames = src.getparams(), src.readframes(src.getframerate())
    wav = io.BytesIO()
    with wave.open(wav, "wb") as dst:
        dst.setparams(params)
        dst.writeframes(frames)
    return jpg.getvalue(), wav.getvalue()


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


async def upload(session, url: str, key: str, image: bytes, audio: bytes, seed: int) -> tuple[int, float, str]:
    import aiohttp

    form = aiohttp.FormData()
    form.add_field("image", image, filename="face.jpg", content_type="image/jpeg")
    form.add_field("audio", audio, filename="speech.wav", content_type="audio/wav")
    form.add_field("engine", "lite")
    form.add_field("seed", str(seed))
    t0 = time.perf_counter()
    async with session.post(url + "/v1/jobs", data=form, headers={"X-API-Key": key}) as r:
        body = await r.json()
    return r.status, time.perf_counter() - t0, body.get("id") or json.dumps(body)[:200]


async def run(url: str, key: str, n: int, concurrency: int, image: bytes, audio: bytes, seed0: int):
    import aiohttp

    sem = asyncio.Semaphore(concurrency)
    start = asyncio.Event()

    async def one(i):
        await start.wait()
        async with sem:
            return await upload(session, url, key, image, audio, seed0 + i)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency),
                                     timeout=aiohttp.ClientTimeout(total=300)) as session:
        tasks = [asyncio.create_task(one(i)) for i in range(n)]
        await asyncio.sleep(0.05)
        t0 = time.perf_counter()
        start.set()
        results = await asyncio.gather(*tasks)
        return results, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--baseline", type=int, default=20, help="sequential uploads measured first")
    args = ap.parse_args()

    import pika

    from queue_bridge.front_door import JobStore
    from queue_bridge.topology import Topology

    tmp = tempfile.mkdtemp(prefix="sonicflow-bench-api-")
    prefix = f"sfbench{uuid.uuid4().hex[:6]}"
    db = f"sqlite:///{tmp}/api.db"
    key = JobStore(db).create_key("bench", rate_per_min=10**6, burst=10**6, daily_quota=10**9)["api_key"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    log = open(os.path.join(tmp, "api.log"), "wb")
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "sonicflow_cli.py"), "api", "--amqp", AMQP, "--prefix",
                             prefix, "--store", os.path.join(tmp, "store"), "--db", db, "--port", str(port)],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        import requests

        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                print("sonicflow api did not start; see", log.name)
                return 1
            time.sleep(0.3)
        image, audio = media()

        base, _ = asyncio.run(run(url, key, args.baseline, 1, image, audio, 10**6))
        loaded, wall = asyncio.run(run(url, key, args.n, args.concurrency, image, audio, 0))
        errors = [r for r in base + loaded if r[0] != 202]
        ids = {r[2] for r in base + loaded if r[0] == 202}
        b_lat = [r[1] for r in base]
        lat = [r[1] for r in loaded]

        conn = pika.BlockingConnection(pika.URLParameters(AMQP))
        ch = conn.channel()
        in_queue, last = set(), None
        while True:
            method, _props, body = ch.basic_get(f"{prefix}.jobs", auto_ack=False)
            if method is None:
                break
            last = method.delivery_tag
            in_queue.add(json.loads(body)["job_id"])
        if last is not None:
            ch.basic_nack(last, multiple=True, requeue=True)
        topology = Topology(prefix=prefix)
        topology.delete(ch)
        ch.queue_delete(topology.api_results_queue)
        conn.close()

        print(f"front door, {args.n} uploads of {len(image) + len(audio)} bytes, {args.concurrency} at once, loopback, "
              f"{os.cpu_count()} CPUs")
        print(f"  baseline (1 at a time, {args.baseline}): p50 {pct(b_lat, 50) * 1000:.0f} ms, "
              f"p95 {pct(b_lat, 95) * 1000:.0f} ms")
        print(f"  loaded: p50 {pct(lat, 50) * 1000:.0f} ms, p95 {pct(lat, 95) * 1000:.0f} ms, "
              f"max {max(lat) * 1000:.0f} ms; {args.n / wall:.1f} uploads/s over {wall:.1f} s")
        print(f"  p95 loaded / p95 baseline: {pct(lat, 95) / pct(b_lat, 95):.1f}x")
        print(f"  errors: {len(errors)}" + (f" e.g. {errors[:3]}" if errors else ""))
        missing = ids - in_queue
        print(f"  accepted jobs in RabbitMQ: {len(ids & in_queue)} of {len(ids)}"
              + (f"; MISSING {sorted(missing)[:5]}" if missing else ""))
        return 0 if not errors and not missing else 1
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)


if __name__ == "__main__":
    sys.exit(main())
