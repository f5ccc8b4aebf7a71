"""Broker faults on a three-node RabbitMQ cluster, under load through the front door and two workers: the node that
leads the jobs queue stopped and started again, a rolling restart of every node, the node a worker is connected to
SIGKILLed. Each ends with the same accounting: every accepted submission final in the job store, run once, with one
result (a result message may come twice, never two different ones); nothing lost, nothing duplicated, no job run
that the front door said it had not queued; both workers consuming again."""
from __future__ import annotations

import threading
import time

import pytest

from .conftest import QUORUM_SIZE, wait_until

pytestmark = pytest.mark.slow  # a RabbitMQ cluster, a ComfyUI, the fleet: minutes; CI runs them


def _clean(fleet, report) -> None:
    assert not fleet.errors, fleet.errors
    assert report["accepted"] >= 10, report  # the load went through, faults or not
    assert report["final_in_store"] == report["accepted"] == report["succeeded"], report
    assert report["lost"] == [] and report["duplicated"] == [] and report["unexpected"] == [], report
    assert report["ran"] == report["accepted"], report
    wait_until(lambda: fleet.consumers() == 2, 60, "both workers consuming again")


def _leader(fleet, cluster):
    info = cluster.queue_info(fleet.jobs_queue)
    assert ["x-quorum-initial-group-size", "signedint", QUORUM_SIZE] in info["arguments"], info  # the setting
    assert len(info["members"]) == QUORUM_SIZE, info  # ... and a replica on every node
    return cluster.node_named(info["leader"])


def test_leader_of_the_jobs_queue_stopped_mid_load(fleet, cluster):
    done = threading.Event()
    load = fleet.load(min_jobs=20, max_jobs=20, pace_s=0.5, until=done)
    wait_until(lambda: fleet.finished() >= 3, 120, "a few jobs done before the fault")
    leader = _leader(fleet, cluster)
    fleet.fault(f"stop {leader.name} (leader of {fleet.jobs_queue})")
    cluster.stop(leader)
    wait_until(lambda: (cluster.queue_info(fleet.jobs_queue)["leader"] or leader.name) != leader.name, 30,
               "a surviving replica took the lead")
    cluster.start(leader)
    done.set()
    load.join(300)
    fleet.settle()
    _clean(fleet, fleet.report("leader stopped"))


def test_rolling_restart_of_every_node(fleet, cluster):
    """Each node in turn: wait until stopping it leaves every quorum queue a majority, stop it, start it."""
    done = threading.Event()
    load = fleet.load(min_jobs=15, max_jobs=30, pace_s=1.5, until=done)
    wait_until(lambda: fleet.finished() >= 2, 120, "a few jobs done before the restarts")
    for node in cluster.nodes:
        cluster.await_safe_to_stop(node)
        fleet.fault(f"restart {node.name}")
        cluster.stop(node)
        cluster.start(node)
    done.set()
    load.join(300)
    fleet.settle()
    report = fleet.report("rolling restart")
    _clean(fleet, report)
    for i in range(2):  # every worker lost its node once at least, and came back by itself
        assert any(e["event"] == "broker_lost" for e in fleet.events(f"worker{i}")), f"worker{i} never lost a node"
        assert fleet.connected_to(i), f"worker{i} not connected at the end"


def test_node_of_a_worker_killed(fleet, cluster):
    """SIGKILL the Erlang VM of worker0's node (no goodbye, sockets reset); the worker resumes on another node."""
    done = threading.Event()
    load = fleet.load(min_jobs=20, max_jobs=20, pace_s=0.5, until=done)
    wait_until(lambda: fleet.finished() >= 3, 120, "a few jobs done before the fault")
    url = fleet.connected_to(0)
    node = cluster.node_at(url)
    fleet.fault(f"SIGKILL {node.name} (worker0's node)")
    pid = cluster.kill(node)
    wait_until(lambda: fleet.connected_to(0) not in (None, url), 60, "worker0 connected to another node")
    time.sleep(2)  # a while with one node down, then it comes back
    cluster.start(node)
    assert node.pid() != pid
    done.set()
    load.join(300)
    fleet.settle()
    _clean(fleet, fleet.report("worker's node killed"))
