"""Fault tests T1-T7 (after the Jepsen RabbitMQ tests' design: a history of attempts, a final drain, lost / unexpected /
duplicated): worker SIGKILL, broker restart, ComfyUI crash, long jobs vs heartbeats, timeouts, poison jobs, unroutable
publishes. Each ends with its own Jepsen-style history check; test_zz_history.py checks the whole session (T8)."""
from __future__ import annotations

import json
import random
import subprocess
import threading
import time

import pika
import pytest

from queue_bridge.client import NotAccepted
from queue_bridge.comfy_client import ComfyClient
from queue_bridge.comfy_run import prompt_id_for
from queue_bridge.protocol import make_job

from .conftest import AMQP, wait_until
from .history import HISTORY


def _clean(bridge):
    report = HISTORY.check(bridge.prefix)
    assert report["lost"] == [] and report["unexpected"] == [], report
    assert report["duplicated_effects"] == [] and report["inconsistent_results"] == [], report
    assert report["succeeded_and_failed"] == [] and report["wrong_outcome"] == [], report
    return report


def _events(worker, name):
    return [e for e in worker.events() if e["event"] == name]


@pytest.mark.slow
def test_t1_worker_sigkilled_at_random_points(bridge):
    """50 jobs; the worker is SIGKILLed at random moments and restarted: one effect per job, queue empty."""
    rng = random.Random(1234)
    jobs = [bridge.talking_job(f"t1-{i:02d}", seed=i) for i in range(50)]
    for job in jobs:
        bridge.submit(job)
    ids = {j["job_id"] for j in jobs}
    worker = bridge.worker()
    kills = 0
    while not ids <= bridge.done_ids() and kills < 12:
        time.sleep(rng.uniform(0.5, 4.0))
        worker.kill()
        kills += 1
        worker = bridge.worker()
    bridge.wait_results(ids, 400)
    effects = bridge.effects()
    assert {j: effects.get(j, 0) for j in ids} == {j: 1 for j in ids}, "every job committed exactly once"
    assert all(r["status"] == "succeeded" for r in bridge.results)
    wait_until(lambda: bridge.queue_counts(bridge.client.topology.jobs_queue) == (0, 0), 60, "jobs queue empty")
    assert kills >= 3
    print(f"T1: {kills} kills, {len(bridge.results)} result messages for {len(ids)} jobs")
    _clean(bridge)


@pytest.mark.slow
def test_t2_broker_restart_mid_stream(bridge):
    """rabbitmqctl stop_app / start_app while jobs are published and consumed: every confirmed job completes once;
    the worker reconnects by itself; a publish the broker never confirmed is recorded as such."""
    worker = bridge.worker()
    stop = threading.Event()
    submitted = []

    def publisher():
        from queue_bridge.client import BridgeClient

        client, i = None, 0
        while not stop.is_set() and i < 30:
            job = bridge.talking_job(f"t2-{i:02d}", seed=100 + i)
            i += 1
            try:
                client = client or BridgeClient(bridge.settings)
                bridge.submit(job, client=client)
                submitted.append(job["job_id"])
            except Exception:  # noqa: BLE001 - recorded as fail/unknown in the history; reconnect for the next
                client = None
                time.sleep(0.5)
            time.sleep(0.3)

    t = threading.Thread(target=publisher)
    t.start()
    wait_until(lambda: len(bridge.done_ids()) >= 4, 200, "a few results before the broker stops")
    subprocess.run(["rabbitmqctl", "-q", "stop_app"], check=True)
    time.sleep(3)
    subprocess.run(["rabbitmqctl", "-q", "start_app"], check=True)
    t.join(300)
    stop.set()
    bridge._client = None
    bridge.wait_results(set(submitted), 400)
    assert len(_events(worker, "connected")) >= 2, "the worker reconnected by itself"
    assert worker.alive()
    effects = bridge.effects()
    assert all(n == 1 for n in effects.values())
    wait_until(lambda: bridge.queue_counts(bridge.client.topology.jobs_queue) == (0, 0), 60, "jobs queue empty")
    print(f"T2: {len(submitted)} confirmed, history {HISTORY.check(bridge.prefix)}")
    _clean(bridge)


@pytest.mark.slow
def test_t3_comfyui_killed_mid_job(bridge, bridge_comfy):
    """ComfyUI is SIGKILLed while it runs a job; the job is requeued and completes once after ComfyUI restarts."""
    worker = bridge.worker()
    job = make_job("t3-sleep", "sleep", {}, {"seconds": 4.0, "tag": "t3"})
    bridge.submit(job)
    wait_until(lambda: _events(worker, "prompt_queued"), 60, "the job running in ComfyUI")
    time.sleep(1.0)
    bridge_comfy.restart()
    result = bridge.wait_results([job["job_id"]], 180)[job["job_id"]]
    assert result["status"] == "succeeded" and result["values"] == {"slept": 4.0}
    requeued = _events(worker, "requeue")
    assert requeued and requeued[0]["code"] == "comfy_crashed"
    assert bridge.effects() == {"t3-sleep": 1}
    _clean(bridge)


@pytest.mark.slow
def test_t4_long_job_keeps_its_connection(bridge):
    """A job longer than two heartbeat intervals: the worker's connection survives (the job runs on a thread)."""
    worker = bridge.worker(heartbeat=2)
    job = make_job("t4-long", "sleep", {}, {"seconds": 10.0, "tag": "t4"})
    bridge.submit(job)
    result = bridge.wait_results([job["job_id"]], 120)[job["job_id"]]
    assert result["status"] == "succeeded"
    assert len(_events(worker, "connected")) == 1 and not _events(worker, "broker_lost")
    assert bridge.effects() == {"t4-long": 1}
    assert len([r for r in bridge.results if r["job_id"] == "t4-long"]) == 1
    _clean(bridge)


@pytest.mark.slow
def test_t4_negative_control_work_inside_the_callback_loses_the_connection(rabbit, tmp_path):
    """The failure the design avoids: the same 10 s of work inside pika's callback starves heartbeats; the broker
    drops the connection, the ack is lost, and the message comes back redelivered."""
    queue = f"sft-negative-{random.randrange(1 << 30)}"
    setup = pika.BlockingConnection(pika.URLParameters(AMQP))
    ch = setup.channel()
    ch.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
    ch.basic_publish("", queue, b"long job", pika.BasicProperties(delivery_mode=2))
    params = pika.URLParameters(AMQP)
    params.heartbeat = 2
    conn = pika.BlockingConnection(params)
    c = conn.channel()
    c.basic_qos(prefetch_count=1)
    failure = []

    def on_message(channel, method, _props, _body):
        time.sleep(10)  # blocking work on the connection's own thread: no heartbeats are sent or read
        try:
            channel.basic_ack(method.delivery_tag)
            conn.process_data_events(time_limit=1)
        except Exception as e:  # noqa: BLE001
            failure.append(e)
        channel.stop_consuming()

    c.basic_consume(queue, on_message)
    try:
        c.start_consuming()
    except Exception as e:  # noqa: BLE001
        failure.append(e)
    assert failure, "the broker should have closed the starved connection"
    method, _props, body = ch.basic_get(queue, auto_ack=True)
    assert body == b"long job" and method.redelivered, "the un-acked message is delivered again"
    ch.queue_delete(queue)
    setup.close()


@pytest.mark.slow
def test_t5_timeout_interrupts_comfyui_retries_then_dead_letters(bridge, bridge_comfy):
    worker = bridge.worker(max_attempts=2)
    job = make_job("t5-timeout", "sleep", {}, {"seconds": 60.0, "tag": "t5"}, timeout_s=1.5)
    bridge.submit(job, expect="dead")
    wait_until(lambda: bridge.dead(), 120, "the job in the dead-letter queue")
    [dead] = bridge.dead()
    assert dead["job_id"] == "t5-timeout" and dead["code"] == "timeout" and dead["attempt"] == 2
    assert [e["attempt"] for e in _events(worker, "retry")] == [1]
    comfy = ComfyClient(bridge_comfy.url)
    for attempt in (1, 2):  # each attempt's prompt was interrupted in ComfyUI, not left running
        entry = wait_until(lambda: comfy.history(prompt_id_for("t5-timeout", attempt)), 30, "history entry")
        kinds = [m[0] for m in entry["status"]["messages"]]
        assert "execution_interrupted" in kinds, kinds
    wait_until(lambda: not comfy.queue_state()["queue_running"], 30, "ComfyUI idle")
    failed = bridge.wait_results(["t5-timeout"], 30)["t5-timeout"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "timeout" and failed["attempt"] == 2
    _clean(bridge)


@pytest.mark.slow
def test_t6_poison_job_dead_lettered_by_the_delivery_limit(bridge, bridge_comfy):
    """A job that kills ComfyUI every time reaches the DLQ after delivery-limit + 1 deliveries (x-death reason
    delivery_limit) and its submitter gets one failure result saying so; the other jobs complete."""
    bridge_comfy.watchdog(True)
    try:
        worker = bridge.worker(delivery_limit=2)
        poison = make_job("t6-poison", "crash", {}, {"crash": 1, "tag": "t6"})
        good = [make_job(f"t6-good-{i}", "crash", {}, {"crash": 0, "tag": f"g{i}"}) for i in range(4)]
        bridge.submit(good[0])
        bridge.submit(good[1])
        bridge.submit(poison, expect="dead")
        bridge.submit(good[2])
        bridge.submit(good[3])
        wait_until(lambda: bridge.dead(), 300, "the poison job in the dead-letter queue")
        [dead] = bridge.dead()
        assert dead["job_id"] == "t6-poison" and dead["code"] == "delivery_limit"
        results = bridge.wait_results([g["job_id"] for g in good], 300)
        assert all(r["status"] == "succeeded" for r in results.values())
        assert len(_events(worker, "requeue")) == 3  # delivered 3 times = limit 2 + 1, each crashed ComfyUI
        # The broker dead-lettered it, not the worker: the worker's dead-letter copy answers it, once.
        failed = bridge.wait_results(["t6-poison"], 60)["t6-poison"]
        assert failed["status"] == "failed" and failed["error"]["code"] == "delivery_limit", failed
        assert failed["attempt"] == 1 and failed["deliveries"] == 3 and "poison" in failed["error"]["message"]
        wait_until(lambda: bridge.queue_counts(bridge.client.topology.dlq_notify) == (0, 0), 30, "copies answered")
        assert [r["job_id"] for r in bridge.drain_results()].count("t6-poison") == 1
        assert bridge.effects()["t6-poison"] == 1
        assert worker.alive()
    finally:
        bridge_comfy.watchdog(False)
        wait_until(lambda: ComfyClient(bridge_comfy.url).ready(), 120, "ComfyUI back")
    _clean(bridge)


def _dead_letter_by_the_broker(bridge, job):
    """What the broker does to a poison job, without ComfyUI: deliver it and give it back (as a crash does) until
    x-delivery-limit (2) is exceeded; RabbitMQ then dead-letters it itself (x-death reason delivery_limit)."""
    bridge.submit(job, expect="dead")
    ch, queue = bridge.client.channel, bridge.client.topology.jobs_queue
    for _ in range(3):
        method = wait_until(lambda: ch.basic_get(queue)[0], 30, f"{job['job_id']} delivered")
        ch.basic_reject(method.delivery_tag, requeue=True)
    wait_until(lambda: bridge.queue_counts(queue) == (0, 0), 30, f"{job['job_id']} dead-lettered")


def test_t6_broker_dead_letters_get_one_result_across_workers_and_crashes(bridge):
    """Every job the broker dead-letters gets exactly one failure result, whichever of two workers sees it: a job
    dead-lettered twice (submitted twice) gets the same result twice; one whose result a crashed worker had already
    committed (deadletters/<id>.json written, result not published, copy not acked) gets that very result; a job a
    worker dead-lettered itself gets no second result. The DLQ still lists them all for `dlq list|replay`."""
    once = make_job("dl-once", "sleep", {}, {"seconds": 0.1, "tag": "once"}, metadata={"customer": 7})
    twice = make_job("dl-twice", "sleep", {}, {"seconds": 0.1, "tag": "twice"})
    crashed = make_job("dl-crashed", "sleep", {}, {"seconds": 0.1, "tag": "crashed"})
    for job in (once, twice, twice, crashed):
        _dead_letter_by_the_broker(bridge, job)
    left = {"version": 1, "job_id": "dl-crashed", "status": "failed", "template": "sleep", "attempt": 1,
            "error": {"code": "delivery_limit", "message": "committed by a worker that then died", "retryable": False},
            "worker": "crashed-worker", "timings": {}, "metadata": {}, "finished_at": "2026-01-01T00:00:00Z"}
    (bridge.store / "deadletters").mkdir(parents=True)
    (bridge.store / "deadletters" / "dl-crashed.json").write_text(json.dumps(left, sort_keys=True))
    bridge.submit(make_job("dl-worker-made", "no_such_template", {}), expect="dead")

    workers = [bridge.worker(), bridge.worker()]
    ids = ["dl-once", "dl-twice", "dl-crashed", "dl-worker-made"]
    bridge.wait_results(ids, 120)
    topology = bridge.client.topology
    wait_until(lambda: bridge.queue_counts(topology.dlq_notify) == (0, 0) and
               bridge.queue_counts(topology.jobs_queue) == (0, 0), 60, "every dead-letter copy answered")
    results = {i: [r for r in bridge.drain_results() if r["job_id"] == i] for i in ids}
    [r] = results["dl-once"]
    assert r["status"] == "failed" and r["error"]["code"] == "delivery_limit" and not r["error"]["retryable"]
    assert r["attempt"] == 1 and r["deliveries"] == 3 and r["template"] == "sleep" and r["metadata"] == {"customer": 7}
    a, b = results["dl-twice"]
    assert a == b and a["error"]["code"] == "delivery_limit"
    assert results["dl-crashed"] == [left]
    assert [r["error"]["code"] for r in results["dl-worker-made"]] == ["unknown_template"]
    assert {k: v for k, v in bridge.effects().items() if k.startswith("dl-")} == {"dl-once": 1, "dl-twice": 1}
    assert sorted((d["job_id"], d["code"]) for d in bridge.dead()) == [
        ("dl-crashed", "delivery_limit"), ("dl-once", "delivery_limit"), ("dl-twice", "delivery_limit"),
        ("dl-twice", "delivery_limit"), ("dl-worker-made", "unknown_template")]
    assert all(w.alive() for w in workers)
    _clean(bridge)


def test_t7_unroutable_publish_is_reported_to_the_submitter(bridge):
    job = bridge.talking_job("t7-unroutable")
    with pytest.raises(NotAccepted, match="unroutable"):
        bridge.submit(job, routing_key="no-queue-bound-here")
    status = bridge.client.status()
    assert status[bridge.client.topology.jobs_queue]["messages"] == 0
    report = HISTORY.check(bridge.prefix)
    assert report["confirmed"] == 0 and report["attempted"] == 1 and report["lost"] == []
