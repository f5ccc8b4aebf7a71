"""devtools/rabbit_cluster.py itself: the session's nodes are clustered on their own ports, the machine's node is not
one of them, and a cluster left behind by a killed run is stopped and removed by the next one."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from devtools.rabbit_cluster import RabbitCluster, ctl, sweep_leftovers

pytestmark = pytest.mark.slow  # RabbitMQ nodes starting and stopping: a minute; CI runs them


def test_three_nodes_clustered_apart_from_the_machines_node(cluster):
    status = json.loads(ctl(cluster.nodes[1], "cluster_status", "--formatter", "json").stdout)
    names = sorted(n.name for n in cluster.nodes)
    assert sorted(status["running_nodes"]) == names and sorted(status["disk_nodes"]) == names
    assert "rabbit@localhost" not in status["disk_nodes"]
    assert len({n.port for n in cluster.nodes} | {5672}) == 4


def test_a_killed_runs_cluster_is_removed_by_the_next(cluster):
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no longer runs: the owner of a run killed before its teardown
    left = RabbitCluster.create(f"sftleft{os.getpid()}", 1, owner=dead.pid)
    node = left.nodes[0]
    assert node.running()
    sweep_leftovers()  # what the next `create` does first
    assert not node.running() and not os.path.exists(left.folder)
    assert all(n.running() for n in cluster.nodes), "a live run's cluster is kept"
