"""Cluster harness: a three-node RabbitMQ cluster for the session (devtools/rabbit_cluster.py; the machine's own node
on 5672 is left alone), and per test a fleet on it: the front door and two bridge workers as subprocesses, each given
every node's URL, driving the session's real ComfyUI with the lite engine. A load of uploads goes through the front
door while a test breaks the cluster; `Fleet.report` then counts, from the job store, the result messages and the
workers' logs, what became of every submission."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timezone

import pytest
import requests

from devtools.bench_media import speech_wav
from devtools.comfyui import free_port
from devtools.rabbit_cluster import RabbitCluster
from devtools.waiting import wait_until
from queue_bridge.logs import read_events

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PY = sys.executable
SESSION = uuid.uuid4().hex[:6]
QUORUM_SIZE = 3
_n = [0]


@pytest.fixture(scope="session")
def cluster():
    """Three nodes, clustered; removed at the end of the session even after failures. A run killed before its
    teardown leaves nodes behind: the next run's `create` stops and removes them (their owner pid is gone)."""
    c = RabbitCluster.create(f"sft{os.getpid()}", 3, owner=os.getpid())
    try:
        yield c
    finally:
        c.down()


@pytest.fixture
def fleet(cluster, comfy_server, tmp_path):
    for node in cluster.nodes:  # a test that failed half-way may have left a node stopped
        if not node.running():
            cluster.start(node)
    f = Fleet(cluster, comfy_server.url, tmp_path)
    try:
        f.start()
        yield f
    finally:
        f.close()


def _ts(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


class Fleet:
    def __init__(self, cluster: RabbitCluster, comfy_url: str, tmp):
        _n[0] += 1
        self.cluster, self.comfy_url, self.tmp = cluster, comfy_url, tmp
        self.prefix = f"sfc{SESSION}n{_n[0]}"
        self.table_prefix = f"t{SESSION}n{_n[0]}_"
        self.store = tmp / "store"
        self.db_url = f"sqlite:///{tmp}/api.db"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "SONICFLOW_QUORUM_SIZE": str(QUORUM_SIZE)}
        self.procs: dict[str, subprocess.Popen] = {}
        with open(os.path.join(ROOT, "sample_media", "portrait.png"), "rb") as f:
            self.image = f.read()
        self.audio = speech_wav()
        self.accepted: list[str] = []  # job ids answered 202
        self.refused: list[dict] = []  # answers 503: the front door said nothing was queued
        self.faults: list[tuple[float, str]] = []  # (time, what)
        self.errors: list[BaseException] = []  # what broke the load thread
        from queue_bridge.front_door import JobStore

        self.jobstore = JobStore(self.db_url, self.table_prefix, pool_size=1)
        self.key = self.jobstore.create_key("fleet", 6000, 1000, 100000)["api_key"]

    @property
    def jobs_queue(self) -> str:
        return f"{self.prefix}.jobs"

    def _amqp_args(self) -> list[str]:
        return [a for url in self.cluster.urls for a in ("--amqp", url)]

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "ab")
        p = subprocess.Popen([PY, os.path.join(ROOT, "sonicflow_cli.py"), *args, *self._amqp_args(),
                              "--prefix", self.prefix, "--store", str(self.store)], cwd=ROOT, stdout=log,
                             stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        self.procs[name] = p
        return p

    def start(self) -> None:
        api = self._spawn("api", ["api", "serve", "--db", self.db_url, "--table-prefix", self.table_prefix,
                                  "--port", str(self.port)])

        def up():
            if api.poll() is not None:
                raise AssertionError(f"sonicflow api exited {api.returncode}:\n{self.log_tail('api')}")
            try:
                return requests.get(self.url + "/healthz", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_until(up, 90, "the front door answering /healthz with the broker connected")
        for i in range(2):
            self._spawn(f"worker{i}", ["worker", "--comfy", self.comfy_url, "--input-root", str(self.store / "inputs"),
                                       "--templates", os.path.join(ROOT, "templates"), "--heartbeat", "10",
                                       "--timeout", "240", "--grace", "5"])
        wait_until(lambda: all(self.connected_to(i) for i in range(2)), 90, "both workers connected")

    def inputs(self) -> dict:
        """A portrait and speech under the workers' input root, as a job's inputs (for jobs sent without the front
        door)."""
        folder = self.store / "inputs"
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("portrait.png", "speech.wav"):
            shutil.copyfile(os.path.join(ROOT, "sample_media", name), folder / name)
        return {"image": str(folder / "portrait.png"), "audio": str(folder / "speech.wav")}

    def settings(self):
        """The bridge settings of this fleet, for clients in the test."""
        from queue_bridge import Settings

        return Settings(amqp_urls=tuple(self.cluster.urls), prefix=self.prefix, store_url=str(self.store),
                        quorum_size=QUORUM_SIZE)

    # -- the load ----------------------------------------------------------------------------------------------------

    def submit(self, seed: int) -> None:
        r = requests.post(self.url + "/v1/jobs", headers={"X-API-Key": self.key}, timeout=120,
                          files={"image": ("face.png", self.image, "image/png"),
                                 "audio": ("speech.wav", self.audio, "audio/wav")},
                          data={"engine": "lite", "min_resolution": "256", "seed": str(seed)})
        if r.status_code == 202:
            self.accepted.append(r.json()["id"])
        elif r.status_code == 503:
            self.refused.append(r.json())
        else:
            raise AssertionError(f"POST /v1/jobs answered {r.status_code}: {r.text[:500]}")

    def load(self, min_jobs: int, max_jobs: int, pace_s: float, until: threading.Event) -> threading.Thread:
        """Upload jobs (distinct seeds: each one runs in ComfyUI) one every `pace_s`, at least `min_jobs`, then
        until `until` is set, at most `max_jobs`. Its errors fail the test through `errors`."""
        def run():
            try:
                for i in range(max_jobs):
                    if i >= min_jobs and until.is_set():
                        break
                    self.submit(1000 + i)
                    time.sleep(pace_s)
            except BaseException as e:  # noqa: BLE001 - reported by the test
                self.errors.append(e)

        t = threading.Thread(target=run, daemon=True, name="load")
        t.start()
        return t

    def fault(self, what: str) -> float:
        now = time.time()
        self.faults.append((now, what))
        return now

    # -- what happened -----------------------------------------------------------------------------------------------

    def events(self, name: str) -> list[dict]:
        return read_events(self.tmp / f"{name}.log")

    def connected_to(self, i: int) -> str | None:
        """The broker node (host:port) worker `i` is connected to now (its last `connected` event, unless lost
        since)."""
        last = None
        for e in self.events(f"worker{i}"):
            if e["event"] == "connected":
                last = e["broker"]
            elif e["event"] == "broker_lost":
                last = None
        return last

    def job_rows(self) -> dict:
        rows = self.jobstore.query("SELECT id, status FROM {p}jobs")
        return dict(rows)

    def finished(self) -> int:
        return sum(1 for s in self.job_rows().values() if s in ("succeeded", "failed"))

    def result_messages(self) -> list[bytes]:
        """Every result message the workers published (the `<p>.results` queue keeps them all), left in place."""
        import pika

        from queue_bridge import Broker

        conn = Broker(self.cluster.urls, name="fleet test").connect()
        try:
            ch = conn.channel()
            bodies, last = [], None
            while True:
                method, _props, body = ch.basic_get(f"{self.prefix}.results", auto_ack=False)
                if method is None:
                    break
                bodies.append(body)
                last = method.delivery_tag
            if last is not None:
                ch.basic_nack(last, multiple=True, requeue=True)
            return bodies
        finally:
            try:
                conn.close()
            except pika.exceptions.AMQPError:
                pass

    def consumers(self) -> int:
        """Consumers of the jobs queue now (one per worker that is consuming)."""
        from queue_bridge import Broker

        conn = Broker(self.cluster.urls, name="fleet test").connect()
        try:
            return conn.channel().queue_declare(self.jobs_queue, passive=True).method.consumer_count
        finally:
            conn.close()

    def settle(self, timeout: float = 300) -> None:
        """Until every accepted job is final in the job store."""
        wait_until(lambda: all(self.job_rows().get(j) in ("succeeded", "failed") for j in self.accepted), timeout,
                   "every accepted job final in the job store")

    def report(self, name: str) -> dict:
        """The counts (printed, and returned for the test's assertions)."""
        rows = self.job_rows()
        bodies = self.result_messages()
        results: dict = {}
        for body in bodies:
            doc = json.loads(body)
            results.setdefault(doc["job_id"], []).append(body)
        committed: dict = {}
        finished_at, down_s, losses = [], [], {}
        for proc in ("api", "worker0", "worker1"):
            for e in self.events(proc):
                if e["event"] == "committed":
                    committed[e["job_id"]] = committed.get(e["job_id"], 0) + 1
                elif e["event"] == "finished" and e.get("outcome") in ("succeeded", "duplicate"):
                    finished_at.append(_ts(e["ts"]))
                elif e["event"] == "broker_lost":
                    losses[f"{proc}/{e['what']}"] = losses.get(f"{proc}/{e['what']}", 0) + 1
                elif e["event"] == "reconnected":
                    down_s.append(e["down_s"])
        first_fault = self.faults[0][0] if self.faults else time.time()
        after = [t - first_fault for t in finished_at if t >= first_fault]
        accepted = set(self.accepted)
        out = {
            "test": name, "jobs": len(self.accepted) + len(self.refused), "accepted": len(accepted),
            "refused_503": len(self.refused), "faults": len(self.faults),
            "final_in_store": sum(1 for j in accepted if rows.get(j) in ("succeeded", "failed")),
            "succeeded": sum(1 for j in accepted if rows.get(j) == "succeeded"),
            "lost": sorted(j for j in accepted if j not in results or rows.get(j) not in ("succeeded", "failed")),
            "ran": sum(1 for j in accepted if committed.get(j)),
            "duplicated": sorted(j for j in results if committed.get(j, 0) > 1 or len(set(results[j])) > 1),
            "repeated_messages": sum(len(b) - 1 for b in results.values()),  # the same bytes sent again
            "unexpected": sorted(set(results) - accepted),
            "connections_lost": losses, "longest_reconnect_s": max(down_s) if down_s else None,
            "first_result_after_fault_s": round(min(after), 2) if after else None,
            "longest_result_gap_s": round(max(b - a for a, b in zip(sorted(finished_at), sorted(finished_at)[1:])), 2)
            if len(finished_at) > 1 else None,
        }
        print(f"\n[fleet] {json.dumps(out)}")
        return out

    def log_tail(self, name: str, n: int = 60) -> str:
        try:
            with open(self.tmp / f"{name}.log", errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def close(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        try:
            from queue_bridge import Broker
            from queue_bridge.topology import Topology

            conn = Broker(self.cluster.urls, name="fleet test").connect()
            ch = conn.channel()
            t = Topology(prefix=self.prefix)
            t.delete(ch)
            ch.queue_delete(t.api_results_queue)
            conn.close()
        except Exception:  # noqa: BLE001 - the cluster goes away at the end of the session anyway
            pass
        self.jobstore.close()
