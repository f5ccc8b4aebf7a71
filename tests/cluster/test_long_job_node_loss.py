"""A worker whose node dies while a long job runs (a Sonic job on a GPU takes minutes): it connects to another node
at once and keeps that connection alive while the job finishes, then consumes again; the job's ack went with the old
connection, so its redelivery is answered from the ledger. The long job is made by pausing ComfyUI (SIGSTOP)."""
from __future__ import annotations

import os
import signal
import time

import pytest

from queue_bridge.client import BridgeClient
from queue_bridge.protocol import make_job

from .conftest import ROOT, wait_until

pytestmark = pytest.mark.slow  # a RabbitMQ cluster, a ComfyUI, the fleet: minutes; CI runs them

HEARTBEAT_S = 2


def test_a_worker_keeps_its_new_connection_while_the_old_job_finishes(fleet, cluster, comfy_server):
    for name in ("worker0", "worker1"):  # one worker, with a short heartbeat, takes the job
        os.killpg(fleet.procs.pop(name).pid, signal.SIGKILL)
    fleet._spawn("worker2", ["worker", "--comfy", fleet.comfy_url, "--input-root", str(fleet.store / "inputs"),
                             "--templates", os.path.join(ROOT, "templates"), "--heartbeat", str(HEARTBEAT_S)])
    wait_until(lambda: fleet.connected_to(2) and fleet.consumers() == 1, 90, "only the new worker consuming")
    job = make_job("fleet-long-1", "talking_head", fleet.inputs(), {"engine": "lite", "min_resolution": 256,
                                                                     "seed": 5})
    with BridgeClient(fleet.settings()) as client:
        client.publish_job(job)
    wait_until(lambda: [e for e in fleet.events("worker2") if e["event"] == "prompt_queued"], 60, "the job running")
    node = cluster.node_at(fleet.connected_to(2))
    os.kill(comfy_server.proc.pid, signal.SIGSTOP)
    try:
        fleet.fault(f"SIGKILL {node.name} during a long job")
        cluster.kill(node)
        wait_until(lambda: [e for e in fleet.events("worker2") if e["event"] == "reconnected"], 60, "reconnected")
        time.sleep(5 * HEARTBEAT_S)  # the job goes on; the new connection must be kept alive meanwhile
    finally:
        os.kill(comfy_server.proc.pid, signal.SIGCONT)
    cluster.start(node)
    wait_until(lambda: fleet.consumers() == 1, 120, "the worker consuming again")
    lost = [e for e in fleet.events("worker2") if e["event"] == "broker_lost"]
    assert len(lost) == 1, lost  # the node's death only, not the new connection starved of heartbeats
    results = wait_until(lambda: fleet.result_messages(), 120, "the job's result")
    assert [b for b in results if b"fleet-long-1" in b and b'"succeeded"' in b], results
    committed = [e for e in fleet.events("worker2") if e["event"] == "committed"]
    assert len(committed) == 1
    [again] = [e for e in fleet.events("worker2") if e["event"] == "duplicate"]  # the redelivery, from the ledger
    print(f"\n[fleet] the lost node counted {again['delivery'] - 1} deliveries toward x-delivery-limit")
