"""A throwaway RabbitMQ cluster on this machine, from the installed RabbitMQ (3.10 or later): N nodes with their own
node names (`<cluster>-<i>@localhost`), AMQP and distribution ports on loopback and data folders, clustered with
`rabbitmqctl join_cluster`. The tests' session fixture (tests/cluster/conftest.py) and `make cluster-up` /
`make cluster-down` use it.

    python -m devtools.rabbit_cluster up [--nodes 3]   # prints SONICFLOW_AMQP_URL=<the nodes' URLs>
    python -m devtools.rabbit_cluster status
    python -m devtools.rabbit_cluster down

The machine's own node (rabbit@localhost on 5672) is never joined, reset or stopped: every command names its node.
The nodes run as the `rabbitmq` user (the system's `rabbitmq-server` and `rabbitmqctl` switch to it when run as
root), so they share its Erlang cookie and their folders belong to it. Their data lives under the system's temp
folder; a cluster whose owning process died (a killed test run) is removed by the next `up`.
"""
from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from devtools.comfyui import free_port

BASE = os.path.join(tempfile.gettempdir(), "sonicflow-rabbit-clusters")
DEV_NAME = "sfdev"  # the cluster of `make cluster-up`
USER = "rabbitmq"
START_TIMEOUT_S = 120


@dataclass
class Node:
    name: str  # the Erlang node name, e.g. sfdev-1@localhost
    port: int  # AMQP, on 127.0.0.1
    dist_port: int  # Erlang distribution (clustering, rabbitmqctl)
    folder: str

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{self.address}/%2F"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> str:
        return os.path.join(self.folder, "pid")

    def pid(self) -> int | None:
        try:
            with open(self.pid_file) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def running(self) -> bool:
        pid = self.pid()
        return pid is not None and _alive(pid)

    def env(self) -> dict:
        """The node's own name, ports and files; its own rabbitmq.conf replaces the system's, which pins 5672."""
        return {**os.environ, "RABBITMQ_NODENAME": self.name, "RABBITMQ_DIST_PORT": str(self.dist_port),
                "RABBITMQ_CONFIG_FILE": os.path.join(self.folder, "rabbitmq.conf"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": os.path.join(self.folder, "enabled_plugins"),
                "RABBITMQ_MNESIA_BASE": os.path.join(self.folder, "mnesia"),
                "RABBITMQ_LOG_BASE": os.path.join(self.folder, "log"), "RABBITMQ_PID_FILE": self.pid_file}


def ctl(node: Node, *args: str, timeout: float = 120, check: bool = True, tool: str = "rabbitmqctl"
        ) -> subprocess.CompletedProcess:
    """A RabbitMQ CLI command against `node` only (never the machine's default node)."""
    p = subprocess.run([tool, "-q", "-n", node.name, *args], capture_output=True, text=True, timeout=timeout,
                       cwd="/", check=False)
    if check and p.returncode != 0:
        raise RuntimeError(f"{tool} -n {node.name} {' '.join(args)} exited {p.returncode}: "
                           f"{(p.stderr or p.stdout).strip()[-800:]}")
    return p


class RabbitCluster:
    def __init__(self, folder: str):
        self.folder = folder
        with open(os.path.join(folder, "cluster.json")) as f:
            state = json.load(f)
        self.owner = state["owner"]
        self.nodes = [Node(**n) for n in state["nodes"]]

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    # -- making one ------------------------------------------------------------------------------------------------

    @classmethod
    def create(cls, name: str, size: int = 3, owner: int | None = None) -> RabbitCluster:
        """Start `size` fresh nodes and cluster them. `owner`: the pid whose death makes the cluster a leftover
        that the next `create` removes (None: kept until `down`)."""
        check_user()
        sweep_leftovers()
        folder = os.path.join(BASE, name)
        if os.path.isdir(folder):
            RabbitCluster(folder).down()
        os.makedirs(BASE, mode=0o755, exist_ok=True)
        os.chmod(BASE, 0o755)  # the rabbitmq user must reach its folders
        nodes = [Node(f"{name}-{i}@localhost", free_port(), free_port(), os.path.join(folder, f"n{i}"))
                 for i in range(1, size + 1)]
        for n in nodes:
            for sub in ("mnesia", "log"):
                os.makedirs(os.path.join(n.folder, sub))
            with open(os.path.join(n.folder, "rabbitmq.conf"), "w") as f:
                f.write(f"listeners.tcp.local = 127.0.0.1:{n.port}\n")
            with open(os.path.join(n.folder, "enabled_plugins"), "w") as f:
                f.write("[].\n")
        with open(os.path.join(folder, "cluster.json"), "w") as f:
            json.dump({"owner": owner, "nodes": [asdict(n) for n in nodes]}, f, indent=1)
        give_to_rabbitmq(folder)
        cluster = cls(folder)
        try:
            with ThreadPoolExecutor(size) as pool:
                list(pool.map(cluster.start, nodes))
            first = nodes[0]
            for n in nodes[1:]:
                ctl(n, "stop_app")
                ctl(n, "join_cluster", first.name)
                ctl(n, "start_app")
        except BaseException:
            cluster.down()
            raise
        return cluster

    # -- faults and repairs ----------------------------------------------------------------------------------------

    def start(self, node: Node) -> None:
        """Start a stopped (or killed) node; it rejoins the cluster from its own data. Returns once it runs."""
        if os.path.exists(node.pid_file):
            os.remove(node.pid_file)  # a killed node leaves its pid file: `wait` would read the dead pid
        subprocess.run(["rabbitmq-server", "-detached"], env=node.env(), check=True, capture_output=True,
                       timeout=60, cwd="/")
        ctl(node, "wait", node.pid_file, "--timeout", str(START_TIMEOUT_S), timeout=START_TIMEOUT_S + 30)

    def stop(self, node: Node) -> None:
        """Stop a node the way an operator does (its clients are told the connection is closed)."""
        ctl(node, "stop", node.pid_file)

    def kill(self, node: Node) -> int:
        """SIGKILL the node's Erlang VM (a crash: its sockets are reset, nothing is said); returns the pid."""
        pid = node.pid()
        if pid is None:
            raise RuntimeError(f"{node.name} has no pid file: not running")
        os.kill(pid, signal.SIGKILL)
        while node.running():
            time.sleep(0.1)
        return pid

    def queue_info(self, queue: str) -> dict:
        """leader, members, messages (ready and unacknowledged) and arguments of a quorum queue, from a running
        node."""
        via = next(n for n in self.nodes if n.running())
        out = ctl(via, "list_queues", "name", "leader", "members", "messages", "arguments", "--formatter", "json"
                  ).stdout
        for q in json.loads(out):
            if q["name"] == queue:
                return q
        raise KeyError(f"no queue {queue} on the cluster")

    def node_named(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def node_at(self, address: str) -> Node:
        """The node listening at `address` (host:port, as the bridge logs where it is connected)."""
        return next(n for n in self.nodes if n.address == address)

    def await_safe_to_stop(self, node: Node) -> None:
        """Until stopping `node` leaves every quorum queue a majority (what a rolling restart waits for)."""
        ctl(node, "await_online_quorum_plus_one", "--timeout", str(START_TIMEOUT_S), tool="rabbitmq-upgrade",
            timeout=START_TIMEOUT_S + 30)

    # -- taking it down --------------------------------------------------------------------------------------------

    def down(self) -> None:
        """Stop every node (killed if it does not stop) and remove the cluster's folder."""
        for n in self.nodes:
            if n.running():
                try:
                    self.stop(n)
                except (RuntimeError, subprocess.TimeoutExpired):
                    pass
            if n.running():
                self.kill(n)
        shutil.rmtree(self.folder, ignore_errors=True)


def check_user() -> None:
    me = os.geteuid()
    if me not in (0, pwd.getpwnam(USER).pw_uid):
        raise SystemExit(f"devtools.rabbit_cluster: run as root or as the '{USER}' user (the nodes run as "
                         f"'{USER}' and share its Erlang cookie)")


def give_to_rabbitmq(folder: str) -> None:
    if os.geteuid() != 0:
        return
    for root, dirs, files in os.walk(folder):
        for p in [root] + [os.path.join(root, x) for x in dirs + files]:
            shutil.chown(p, USER, USER)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def sweep_leftovers() -> None:
    """Remove clusters whose owner died (a test run killed before its teardown); folders without state too."""
    if not os.path.isdir(BASE):
        return
    for name in os.listdir(BASE):
        folder = os.path.join(BASE, name)
        try:
            cluster = RabbitCluster(folder)
        except (OSError, ValueError, KeyError):
            shutil.rmtree(folder, ignore_errors=True)
            continue
        if cluster.owner is not None and not _alive(cluster.owner):
            cluster.down()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["up", "down", "status"])
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--name", default=DEV_NAME, help="cluster name (node names are <name>-<i>@localhost)")
    args = ap.parse_args()
    folder = os.path.join(BASE, args.name)
    if args.command == "up":
        cluster = RabbitCluster.create(args.name, args.nodes)
        print(f"{len(cluster.nodes)} nodes up ({', '.join(n.name for n in cluster.nodes)}); data in {folder}")
        print("SONICFLOW_AMQP_URL=" + ",".join(cluster.urls))
        return 0
    if not os.path.isfile(os.path.join(folder, "cluster.json")):
        print(f"no cluster '{args.name}' (nothing under {folder})")
        return 0 if args.command == "down" else 1
    cluster = RabbitCluster(folder)
    if args.command == "down":
        cluster.down()
        print(f"cluster '{args.name}' stopped and removed")
        return 0
    for n in cluster.nodes:
        print(f"{n.name}  {'running' if n.running() else 'stopped'}  {n.url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
