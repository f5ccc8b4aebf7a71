"""The short-lived connections fail over too: `sonicflow submit` and the canvas panel given every node's URL work
with a node down, and a client that loses its node while waiting for a result asks again through another node and
gets the one result of the job. A worker whose replica count differs from the fleet's is told why it cannot start."""
from __future__ import annotations

import os
import signal
import subprocess
import threading

import pytest

from queue_bridge import bridge_state
from queue_bridge.client import BridgeClient
from queue_bridge.protocol import make_job

from .conftest import PY, ROOT, wait_until

pytestmark = pytest.mark.slow  # a RabbitMQ cluster, a ComfyUI, the fleet: minutes; CI runs them


def test_submit_and_the_canvas_panel_with_a_node_down(fleet, cluster):
    inputs = fleet.inputs()
    down = cluster.nodes[0]
    cluster.stop(down)
    try:
        for seed in range(3):  # each run starts at a node of its own choosing, the stopped one included
            p = subprocess.run([PY, os.path.join(ROOT, "sonicflow_cli.py"), "submit", "--template", "talking_head",
                                "--image", inputs["image"], "--audio", inputs["audio"], "--param", f"seed={seed}",
                                "--param", "engine=lite", "--param", "min_resolution=256", "--wait",
                                "--wait-timeout", "120", *[a for u in cluster.urls for a in ("--amqp", u)],
                                "--prefix", fleet.prefix], cwd=ROOT, capture_output=True, text=True, timeout=300,
                               check=False, env=fleet.env)
            assert p.returncode == 0 and '"status": "succeeded"' in p.stdout, p.stdout + p.stderr
        wait_until(lambda: bridge_state(fleet.settings(), max_age_s=0)["workers"] == 2, 60, "both workers back")
        for _ in range(8):
            state = bridge_state(fleet.settings(), max_age_s=0)
            assert state["broker"] == "up" and state["declared"] and state["workers"] == 2, state
    finally:
        cluster.start(down)


def test_a_client_waiting_for_a_result_survives_losing_its_node(fleet, cluster):
    """The workers are paused (SIGSTOP) so the job waits; the client's node is stopped under it; the client
    reconnects, declares a new reply queue, publishes the job again, and receives its result once they resume."""
    job = make_job("fleet-wait-1", "talking_head", fleet.inputs(), {"engine": "lite", "min_resolution": 256,
                                                                     "seed": 77})
    workers = [fleet.procs[f"worker{i}"] for i in range(2)]
    client = BridgeClient(fleet.settings())
    first = client.broker.connected_node
    for w in workers:
        os.kill(w.pid, signal.SIGSTOP)
    out: dict = {}
    t = threading.Thread(target=lambda: out.update(result=client.submit(job, wait=True, timeout=180)))
    try:
        t.start()
        wait_until(lambda: cluster.queue_info(fleet.jobs_queue)["messages"] >= 1, 30, "the job queued", 1)
        node = cluster.node_at(first)
        fleet.fault(f"stop {node.name} (the waiting client's node)")
        cluster.stop(node)
        wait_until(lambda: client.connects == 2, 30, "the client on another node")
    finally:
        for w in workers:
            os.kill(w.pid, signal.SIGCONT)
    t.join(240)
    cluster.start(cluster.node_at(first))
    assert out["result"]["status"] == "succeeded" and out["result"]["job_id"] == job["job_id"], out
    assert client.broker.connected_node != first
    client.close()
    effects = [e for i in range(2) for e in fleet.events(f"worker{i}")
               if e["event"] == "committed" and e["job_id"] == job["job_id"]]
    assert len(effects) == 1, "the job ran once, though it was published twice"



def test_a_worker_with_another_quorum_size_says_why(fleet):
    """The fleet declared its queues with SONICFLOW_QUORUM_SIZE=3; a worker given 2 is refused by the broker and
    logs, in full, which queue and what to do (and keeps trying, so fixing it needs no restart)."""
    fleet.env = {**fleet.env, "SONICFLOW_QUORUM_SIZE": "2"}
    fleet._spawn("worker2", ["worker", "--comfy", fleet.comfy_url, "--templates", os.path.join(ROOT, "templates")])
    said = wait_until(lambda: [e for e in fleet.events("worker2") if e["event"] == "topology_mismatch"], 120,
                      "the mismatch logged")
    assert "x-quorum-initial-group-size" in said[0]["error"] and "--prefix" in said[0]["error"], said[0]
    assert not [e for e in fleet.events("worker2") if e["event"] == "connected"]
