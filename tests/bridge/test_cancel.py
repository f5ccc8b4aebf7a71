"""Cancel (docs/queue.md) on a real worker, ComfyUI and RabbitMQ, with `sonicflow cancel`: a job cancelled while it
waits in the queue is skipped by the worker that takes it later; one cancelled while it runs is interrupted in
ComfyUI; either way its result says `cancelled` and the worker goes on with the next job. A cancel is idempotent, and
a worker that missed the broadcast still reports the job cancelled (the store's marker)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from queue_bridge.comfy_client import ComfyClient
from queue_bridge.comfy_run import prompt_id_for
from queue_bridge.protocol import make_job
from queue_bridge.store import open_store

from .conftest import AMQP, ROOT, wait_until
from .history import HISTORY


def _cancel(bridge, job_id: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, os.path.join(ROOT, "sonicflow_cli.py"), "cancel", job_id, "--amqp", AMQP,
                           "--prefix", bridge.prefix, "--store", str(bridge.store)], cwd=ROOT, capture_output=True,
                          text=True, env=bridge.env, timeout=120)


def _sleep_job(job_id: str, seconds: float) -> dict:
    return make_job(job_id, "sleep", {}, {"seconds": seconds, "tag": job_id})


def _events(worker, name: str, job_id: str) -> list:
    return [e for e in worker.events() if e["event"] == name and e.get("job_id") == job_id]


def _ready(bridge) -> int:
    return bridge.client.channel.queue_declare(bridge.client.topology.jobs_queue, passive=True).method.message_count


def _clean(bridge) -> None:
    report = HISTORY.check(bridge.prefix)
    assert report["lost"] == [] and report["wrong_outcome"] == [] and report["succeeded_and_failed"] == [], report


def test_a_job_cancelled_while_queued_is_skipped_by_the_worker_that_takes_it(bridge):
    bridge.submit(_sleep_job("cq-1", 60.0), expect="cancelled")
    first, again = _cancel(bridge, "cq-1"), _cancel(bridge, "cq-1")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == json.loads(again.stdout) == {"job_id": "cq-1", "cancelled": True,
                                                                     "broadcast": True}
    assert json.loads((bridge.store / "cancelled" / "cq-1.json").read_text())["by"] == "sonicflow cancel"
    assert _ready(bridge) == 1  # still queued: no worker yet

    worker = bridge.worker()
    result = bridge.wait_results(["cq-1"], 120)["cq-1"]
    assert result["status"] == "cancelled" and "outputs" not in result and "error" not in result
    assert _events(worker, "cancelled", "cq-1") and not _events(worker, "prompt_queued", "cq-1")  # never ran
    bridge.submit(_sleep_job("cq-next", 0.2))
    assert bridge.wait_results(["cq-next"], 120)["cq-next"]["status"] == "succeeded"
    assert _ready(bridge) == 0
    _clean(bridge)


def test_a_running_job_is_interrupted_in_comfyui_and_the_next_job_runs(bridge, bridge_comfy):
    comfy = ComfyClient(bridge_comfy.url)
    worker = bridge.worker()
    bridge.submit(_sleep_job("cr-1", 120.0), expect="cancelled")
    wait_until(lambda: _events(worker, "prompt_queued", "cr-1"), 120, "the job queued in ComfyUI")
    wait_until(lambda: comfy.queue_state()["queue_running"], 30, "ComfyUI running it")
    out = _cancel(bridge, "cr-1")
    assert out.returncode == 0, out.stderr
    result = bridge.wait_results(["cr-1"], 60)["cr-1"]
    assert result["status"] == "cancelled" and result["attempt"] == 1
    entry = wait_until(lambda: comfy.history(prompt_id_for("cr-1", 1)), 30, "the prompt's history entry")
    kinds = [m[0] for m in entry["status"]["messages"]]
    assert "execution_interrupted" in kinds, kinds  # interrupted in ComfyUI, not left to run its 120 s
    assert _events(worker, "cancel_heard", "cr-1") and _events(worker, "cancelled", "cr-1")
    wait_until(lambda: not comfy.queue_state()["queue_running"], 30, "ComfyUI idle")

    again = _cancel(bridge, "cr-1")  # a second cancel changes nothing: no second result (by the time the next job's
    assert again.returncode == 0 and json.loads(again.stdout)["cancelled"] is True  # result is in, it would be too)
    bridge.submit(_sleep_job("cr-next", 0.2))
    assert bridge.wait_results(["cr-next"], 120)["cr-next"]["status"] == "succeeded"
    bridge.drain_results()
    assert [r["status"] for r in bridge.results if r["job_id"] == "cr-1"] == ["cancelled"]
    _clean(bridge)


def test_a_worker_that_missed_the_broadcast_still_reports_the_job_cancelled(bridge, bridge_comfy):
    """The marker alone (no message: as for a worker whose connection was down at that moment): the run finishes in
    ComfyUI, and the worker, checking the marker before it commits, reports the job cancelled."""
    worker = bridge.worker()
    bridge.submit(_sleep_job("cm-1", 3.0), expect="cancelled")
    wait_until(lambda: _events(worker, "prompt_queued", "cm-1"), 120, "the job queued in ComfyUI")
    open_store(str(bridge.store)).mark_cancelled("cm-1", "test")
    assert bridge.wait_results(["cm-1"], 120)["cm-1"]["status"] == "cancelled"
    entry = ComfyClient(bridge_comfy.url).history(prompt_id_for("cm-1", 1))
    assert entry["status"]["status_str"] == "success"  # it ran to the end: nobody interrupted it
    assert not (bridge.store / "ledger" / "cm-1.json").exists()  # a cancelled job commits nothing
    _clean(bridge)
