"""Bridge test harness: the real RabbitMQ on 127.0.0.1:5672, a real ComfyUI (with two test-only nodes) that tests may
kill and restart, the worker as a subprocess (so it can be SIGKILLed), and a Jepsen-style history of every job.

Every test gets its own queue/exchange prefix (sft<session>n<k>), deleted afterwards, so runs never collide."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import wave

import pytest

from devtools.waiting import wait_until
from queue_bridge.logs import read_events

from .history import HISTORY

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))
PY = sys.executable
SESSION = uuid.uuid4().hex[:6]
AMQP = os.environ.get("SONICFLOW_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
_counter = [0]


def broker_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def rabbit():
    if not broker_up():
        subprocess.run(["rabbitmq-server", "-detached"], check=False)
        wait_until(broker_up, 60, "RabbitMQ listening on 5672", 1)
    import pika

    def amqp_ok():
        try:
            pika.BlockingConnection(pika.URLParameters(AMQP)).close()
            return True
        except Exception:  # noqa: BLE001
            return False

    wait_until(amqp_ok, 60, "RabbitMQ accepting AMQP connections", 1)
    return AMQP


class ManagedComfy:
    """A ComfyUI that a test may SIGKILL; `restart()` brings it back on the same port (same URL for the worker)."""

    def __init__(self, base: str):
        from devtools.comfyui import ComfyServer

        self.server = ComfyServer(base)
        os.makedirs(os.path.join(base, "custom_nodes"), exist_ok=True)
        link = os.path.join(base, "custom_nodes", "sonicflow_bridge_test_nodes")
        if not os.path.lexists(link):
            os.symlink(os.path.join(HERE, "comfy_test_nodes"), link)
        self._watch = None
        self._watching = threading.Event()
        self.restarts = 0

    @property
    def url(self):
        return self.server.url

    def start(self):
        self.server.start()
        return self

    def kill(self):
        if self.server.alive():
            os.killpg(self.server.proc.pid, signal.SIGKILL)
            self.server.proc.wait()

    def restart(self):
        self.kill()
        self.server.start()
        self.restarts += 1

    def watchdog(self, on: bool):
        """Restart ComfyUI whenever it dies (what systemd/k8s does in production)."""
        if on and self._watch is None:
            self._watching.set()

            def loop():
                while self._watching.is_set():
                    if not self.server.alive():
                        try:
                            self.server.start()
                            self.restarts += 1
                        except Exception:  # noqa: BLE001
                            pass
                    time.sleep(0.3)

            self._watch = threading.Thread(target=loop, daemon=True)
            self._watch.start()
        elif not on and self._watch is not None:
            self._watching.clear()
            self._watch.join()
            self._watch = None

    def stop(self):
        self.watchdog(False)
        self.server.stop()


@pytest.fixture(scope="session")
def bridge_comfy(tmp_path_factory):
    c = ManagedComfy(str(tmp_path_factory.mktemp("bridge-comfy"))).start()
    yield c
    c.stop()


@pytest.fixture(scope="session")
def media_root(tmp_path_factory):
    """The worker's input root: a small portrait and 1.5 s of speech (keeps each render short)."""
    root = tmp_path_factory.mktemp("bridge-inputs")
    shutil.copyfile(os.path.join(ROOT, "sample_media", "portrait.png"), root / "portrait.png")
    with wave.open(os.path.join(ROOT, "sample_media", "speech.wav")) as src:
        params = src.getparams()
        frames = src.readframes(int(src.getframerate() * 1.5))
    with wave.open(str(root / "speech.wav"), "wb") as dst:
        dst.setparams(params)
        dst.writeframes(frames)
    return root


@pytest.fixture(scope="session")
def templates_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("bridge-templates")
    for name in ("talking_head_api.json", "talking_head_api.bridge.json"):
        shutil.copyfile(os.path.join(ROOT, "templates", name), d / name)
    for name in ("sleep_api.json", "crash_api.json"):
        shutil.copyfile(os.path.join(HERE, name), d / name)
    return d


class WorkerProc:
    def __init__(self, args: list[str], log_path: str, env: dict):
        self.args, self.log_path, self.env = args, log_path, env
        self.proc = None

    def start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([PY, os.path.join(ROOT, "sonicflow_cli.py"), "worker", *self.args], cwd=ROOT,
                                     stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def term(self, timeout: float = 120):
        if self.alive():
            os.kill(self.proc.pid, signal.SIGTERM)
            return self.proc.wait(timeout)
        return self.proc.returncode if self.proc else None

    def events(self) -> list[dict]:
        return read_events(self.log_path)


class Bridge:
    """One test's broker prefix, result store, workers, and its share of the session's history."""

    def __init__(self, name: str, tmp_path, comfy_url: str, media_root, templates_dir):
        from queue_bridge import Settings

        _counter[0] += 1
        self.name = name
        self.prefix = f"sft{SESSION}n{_counter[0]}"
        self.tmp = tmp_path
        self.store = tmp_path / "store"
        self.comfy_url, self.media_root, self.templates_dir = comfy_url, media_root, templates_dir
        self.settings = Settings(amqp_urls=(AMQP,), prefix=self.prefix, store_url=str(self.store), delivery_limit=2,
                                 retry_delays=(0.3, 0.6, 1.0), heartbeat=0)  # test client: idle between polls
        self.workers: list[WorkerProc] = []
        self._client = None
        self.results: list[dict] = []  # every result message received, duplicates included
        self.env = dict(os.environ)

    @property
    def client(self):
        from queue_bridge.client import BridgeClient

        if self._client is None or not self._client.connection.is_open:
            self._client = BridgeClient(self.settings)
        return self._client

    def worker(self, *extra: str, comfy: list[str] | None = None, delivery_limit: int = 2, heartbeat: int = 5,
               retry_delays: str = "0.3,0.6,1.0", timeout: float = 120, max_attempts: int = 3) -> WorkerProc:
        args = ["--amqp", AMQP, "--prefix", self.prefix, "--store", str(self.store),
                "--templates", str(self.templates_dir), "--input-root", str(self.media_root),
                "--delivery-limit", str(delivery_limit), "--heartbeat", str(heartbeat), "--retry-delays", retry_delays,
                "--timeout", str(timeout), "--max-attempts", str(max_attempts), "--grace", "5", *extra]
        for url in comfy or [self.comfy_url]:
            args += ["--comfy", url]
        w = WorkerProc(args, str(self.tmp / f"worker{len(self.workers)}.log"), self.env).start()
        self.workers.append(w)
        return w

    def talking_job(self, job_id: str | None = None, **params) -> dict:
        from queue_bridge.protocol import make_job

        params = {"engine": "lite", "min_resolution": 256, **params}
        return make_job(job_id or f"{self.name}-{uuid.uuid4().hex[:8]}", "talking_head",
                        {"image": "portrait.png", "audio": "speech.wav"}, params)

    def submit(self, job, expect: str = "succeeded", routing_key: str = "job", client=None, headers=None,
               reply_to=None):
        """Publish with confirms and record the attempt in the history (ok / fail / unknown). pika connections are
        not thread-safe: a publishing thread passes its own client."""
        from queue_bridge.client import NotAccepted
        from queue_bridge.protocol import job_id_hint

        job_id = job["job_id"] if isinstance(job, dict) else job_id_hint(job)
        try:
            (client or self.client).publish_job(job, routing_key=routing_key, headers=headers, reply_to=reply_to)
        except NotAccepted:
            HISTORY.attempt(self.prefix, job_id, "fail", expect)
            raise
        except Exception:
            HISTORY.attempt(self.prefix, job_id, "unknown", expect)
            if client is None:
                self._client = None
            raise
        HISTORY.attempt(self.prefix, job_id, "ok", expect)

    def drain_results(self) -> list[dict]:
        while True:
            method, _props, body = self.client.channel.basic_get(self.client.topology.results_queue, auto_ack=True)
            if method is None:
                return self.results
            doc = json.loads(body)
            self.results.append(doc)
            HISTORY.completed(self.prefix, doc)

    def done_ids(self) -> set:
        return {r["job_id"] for r in self.drain_results()}

    def wait_results(self, job_ids, timeout: float = 300):
        job_ids = set(job_ids)
        wait_until(lambda: job_ids <= self.done_ids(), timeout,
                   f"results for {len(job_ids - self.done_ids())} of {len(job_ids)} jobs")
        return {r["job_id"]: r for r in self.results if r["job_id"] in job_ids}

    def dead(self) -> list[dict]:
        records = self.client.dlq_list()
        for d in records:
            HISTORY.dead(self.prefix, d)
        return records

    def queue_counts(self, queue: str) -> tuple[int, int]:
        """(ready, unacked) from rabbitmqctl: unacked counts deliveries held by consumers too."""
        out = subprocess.run(["rabbitmqctl", "-q", "list_queues", "name", "messages_ready",
                              "messages_unacknowledged"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            parts = line.split()
            if parts and parts[0] == queue:
                return int(parts[1]), int(parts[2])
        raise AssertionError(f"queue {queue} not found")

    def effects(self) -> dict:
        """job_id -> number of 'committed' events over every worker log (the exactly-once effect)."""
        counts: dict = {}
        for w in self.workers:
            for e in w.events():
                if e["event"] == "committed":
                    counts[e["job_id"]] = counts.get(e["job_id"], 0) + 1
        HISTORY.effects(self.prefix, counts)
        return counts

    def close(self):
        for w in self.workers:
            w.kill()
        self.effects()
        try:
            self.drain_results()
            self.dead()
            self.client.topology.delete(self.client.channel)
            self.client.close()
        except Exception:  # noqa: BLE001 - the broker may be the thing a test stopped
            pass


@pytest.fixture
def bridge(request, rabbit, bridge_comfy, media_root, templates_dir, tmp_path):
    b = Bridge(request.node.name.replace("[", "-").replace("]", "")[:40], tmp_path, bridge_comfy.url, media_root,
               templates_dir)
    yield b
    b.close()
