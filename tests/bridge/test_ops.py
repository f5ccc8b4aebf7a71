"""Operations: /metrics and the probes (/livez, /readyz, /healthz), `sonicflow submit --wait`, `sonicflow status`,
`sonicflow dlq list|replay`, SIGTERM, S3 store + s3:// inputs (moto), JSON logs, and the worker module never importing
torch."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import requests

from devtools.comfyui import free_port

from .conftest import AMQP, ROOT, wait_until
from .history import HISTORY


def _cli(bridge, *args, env=None):
    return subprocess.run([sys.executable, os.path.join(ROOT, "sonicflow_cli.py"), *args, "--amqp", AMQP,
                           "--prefix", bridge.prefix, "--store", str(bridge.store)], cwd=ROOT, capture_output=True,
                          text=True, env=env or bridge.env, timeout=300)


def test_metrics_health_cli_and_dlq_replay(bridge, media_root):
    port = free_port()
    worker = bridge.worker("--metrics-port", str(port))
    def healthy():
        assert worker.alive()
        try:
            return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    wait_until(healthy, 60, "/healthz 200")
    for probe in ("/readyz", "/livez"):
        assert requests.get(f"http://127.0.0.1:{port}{probe}", timeout=2).json()["ok"] is True

    out = _cli(bridge, "submit", "--job-id", "ops-cli", "--template", "talking_head",
               "--image", str(media_root / "portrait.png"),
               "--audio", str(media_root / "speech.wav"), "--param", "engine=lite", "--param", "min_resolution=256",
               "--param", "seed=11", "--wait", "--wait-timeout", "240")
    assert out.returncode == 0, out.stderr
    HISTORY.attempt(bridge.prefix, "ops-cli", "ok", "succeeded")  # submitted by the CLI: part of the history too
    result = json.loads(out.stdout)
    assert result["status"] == "succeeded" and result["outputs"][0]["sha256"]

    # A job dead-lettered for a missing file, listed, then replayed once the file exists.
    missing = media_root / "late-arrival.png"
    if missing.exists():
        missing.unlink()
    out = _cli(bridge, "submit", "--job-id", "ops-late", "--image", str(missing), "--audio",
               str(media_root / "speech.wav"), "--param", "engine=lite", "--param", "min_resolution=256")
    assert out.returncode != 0  # the submitter checks local files itself
    bridge.submit({"version": 1, "job_id": "ops-late", "template": "talking_head",
                   "inputs": {"image": "late-arrival.png", "audio": "speech.wav"},
                   "parameters": {"engine": "lite", "min_resolution": 256}})
    wait_until(lambda: json.loads(_cli(bridge, "dlq", "list").stdout), 60, "the job in the DLQ")
    listed = json.loads(_cli(bridge, "dlq", "list").stdout)
    assert [(d["job_id"], d["code"]) for d in listed] == [("ops-late", "input_not_found")]
    missing.write_bytes((media_root / "portrait.png").read_bytes())
    replay = json.loads(_cli(bridge, "dlq", "replay", "--job-id", "ops-late").stdout)
    assert replay == {"replayed": ["ops-late"]}
    HISTORY.replay(bridge.prefix, "ops-late")
    wait_until(lambda: any(r["job_id"] == "ops-late" and r["status"] == "succeeded" for r in bridge.drain_results()),
               120, "the replayed job succeeded")
    status = json.loads(_cli(bridge, "status").stdout)
    assert status[f"{bridge.prefix}.dlq"]["messages"] == 0 and status[f"{bridge.prefix}.jobs"]["consumers"] == 1

    metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    for name in ("sonicflow_jobs_total", "sonicflow_job_duration_seconds_bucket", "sonicflow_queue_depth",
                 "sonicflow_jobs_in_flight", "sonicflow_comfy_up"):
        assert name in metrics, name
    assert 'sonicflow_jobs_total{outcome="succeeded"}' in metrics
    assert 'sonicflow_jobs_total{outcome="dead_lettered"} 1.0' in metrics

    # Every log line is JSON with an event; errors carry their code.
    events = worker.events()
    assert any(e["event"] == "dead_letter" and e["code"] == "input_not_found" and e["job_id"] == "ops-late"
               for e in events)
    assert all("ts" in e and "level" in e for e in events)

    # SIGTERM: the worker leaves cleanly (exit 0) and its consumer is gone.
    assert worker.term(60) == 0
    assert any(e["event"] == "worker_exit" for e in worker.events())
    wait_until(lambda: bridge.client.status()[f"{bridge.prefix}.jobs"]["consumers"] == 0, 30, "consumer gone")


def test_alive_but_not_ready_while_comfyui_is_away(bridge):
    """A worker whose ComfyUI does not answer is alive (/livez 200: restarting it would not help) but not ready
    (/readyz and /healthz 503); the probes listen where --metrics-host says (127.0.0.2: loopback, not 127.0.0.1)."""
    port = free_port()
    worker = bridge.worker("--metrics-port", str(port), "--metrics-host", "127.0.0.2",
                           comfy=[f"http://127.0.0.1:{free_port()}"])
    base = f"http://127.0.0.2:{port}"

    def live():
        assert worker.alive()
        try:
            return requests.get(base + "/livez", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    wait_until(live, 60, "/livez 200")
    assert requests.get(base + "/livez", timeout=2).json() == {"ok": True, "threads": {"consumer-0": True}}
    wait_until(lambda: requests.get(base + "/readyz", timeout=2).json()["consumers"], 30, "the consumer's state")
    for probe in ("/readyz", "/healthz"):
        r = requests.get(base + probe, timeout=2)
        assert r.status_code == 503 and r.json()["consumers"]["consumer-0"]["comfy"] is False, r.text
    try:
        requests.get(f"http://127.0.0.1:{port}/livez", timeout=2)
        raise AssertionError("the probes answered on 127.0.0.1")
    except requests.ConnectionError:
        pass
    assert worker.term(60) == 0


def test_sigterm_during_a_job_interrupts_and_requeues_it(bridge):
    from queue_bridge.protocol import make_job

    worker = bridge.worker()
    job = make_job("ops-term", "sleep", {}, {"seconds": 30.0, "tag": "term"})
    bridge.submit(job)
    wait_until(lambda: any(e["event"] == "prompt_queued" for e in worker.events()), 60, "job running")
    assert worker.term(60) == 0  # grace is 5 s in the tests: the job is interrupted and nacked back
    wait_until(lambda: bridge.queue_counts(bridge.client.topology.jobs_queue) == (1, 0), 30, "job back in queue")
    assert not bridge.done_ids()
    second = bridge.worker()  # another worker picks it up (and, this time, finishes it)
    bridge.wait_results(["ops-term"], 120)
    assert any(e["event"] == "committed" for e in second.events())


def test_s3_store_and_s3_inputs_with_a_shared_cache(bridge, s3_endpoint, media_root, monkeypatch):
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                      region_name="us-east-1")
    s3.create_bucket(Bucket="sf-inputs")
    s3.create_bucket(Bucket="sf-results")
    s3.put_object(Bucket="sf-inputs", Key="face.png", Body=(media_root / "portrait.png").read_bytes())
    s3.put_object(Bucket="sf-inputs", Key="talk.wav", Body=(media_root / "speech.wav").read_bytes())
    bridge.env.update({"SONICFLOW_S3_ENDPOINT": s3_endpoint, "SONICFLOW_S3_ACCESS_KEY": "testing",
                       "SONICFLOW_S3_SECRET_KEY": "testing"})
    bridge.store = "s3://sf-results/bridge/"
    bridge.worker()
    bridge.worker()  # two workers share the store: ledger and cache
    from queue_bridge.protocol import make_job

    jobs = [make_job(f"s3-{i}", "talking_head", {"image": "s3://sf-inputs/face.png", "audio": "s3://sf-inputs/talk.wav"},
                     {"engine": "lite", "min_resolution": 256, "seed": 5}) for i in range(3)]
    bridge.submit(jobs[0])
    first = bridge.wait_results(["s3-0"], 240)["s3-0"]
    assert first["outputs"][0]["url"].startswith("s3://sf-results/bridge/outputs/")
    bridge.submit(jobs[1])
    bridge.submit(jobs[2])
    rest = bridge.wait_results(["s3-1", "s3-2"], 120)
    assert all(r["cache_hit"] and r["outputs"] == first["outputs"] for r in rest.values())
    key = first["outputs"][0]["url"][len("s3://sf-results/"):]
    body = s3.get_object(Bucket="sf-results", Key=key)["Body"].read()
    assert len(body) == first["outputs"][0]["size"]
    assert s3.get_object(Bucket="sf-results", Key="bridge/ledger/s3-0.json")["Body"].read()


def test_a_started_worker_loads_no_heavy_library(bridge, media_root, tmp_path):
    """A real worker, connected and through one job, then stopped: it never loaded torch, OpenCV, PyAV, SciPy or
    ComfyUI (workers run on machines that may have none of them)."""
    from .conftest import PY, WorkerProc

    modules = tmp_path / "modules.txt"
    worker = WorkerProc([], str(tmp_path / "light-worker.log"), bridge.env)
    worker.proc = subprocess.Popen(
        [PY, "-m", "devtools.record_modules", str(modules), "worker", "--amqp", AMQP, "--prefix", bridge.prefix,
         "--store", str(bridge.store), "--templates", str(bridge.templates_dir), "--input-root", str(media_root),
         "--delivery-limit", "2", "--retry-delays", "0.3,0.6,1.0",  # the test client's topology: either declares it
         "--comfy", bridge.comfy_url], cwd=ROOT, env=bridge.env,
        stdout=open(tmp_path / "light-worker.log", "ab"), stderr=subprocess.STDOUT, start_new_session=True)
    job = bridge.talking_job("light-1")
    bridge.submit(job)
    wait_until(lambda: any(r["job_id"] == "light-1" for r in bridge.drain_results()), 240, "the job's result")
    assert worker.term() == 0
    loaded = set(modules.read_text().split())
    assert "queue_bridge.consumer" in loaded and "pika" in loaded  # it really ran
    assert not {"torch", "cv2", "av", "scipy", "comfy", "folder_paths"} & loaded
