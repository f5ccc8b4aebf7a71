"""Front-door harness: `sonicflow api` as a subprocess on a free loopback port, against the real RabbitMQ (a unique
queue prefix per front door, deleted afterwards) and a job store in SQLite or in the PostgreSQL on 127.0.0.1:5432
(db `test`, a unique table prefix, dropped afterwards); optionally a real bridge worker beside the session's ComfyUI.
"""
from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import uuid

import pytest
import requests

from devtools.bench_media import speech_wav
from devtools.comfyui import free_port
from devtools.waiting import wait_until

from .webhook_receiver import Receiver

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PY = sys.executable
AMQP = os.environ.get("SONICFLOW_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
PG = os.environ.get("SONICFLOW_TEST_PG_URL", "postgresql://postgres:postgres@127.0.0.1:5432/test")
SESSION = uuid.uuid4().hex[:6]
_n = [0]


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def rabbit():
    assert _port_open(5672), "RabbitMQ is not listening on 127.0.0.1:5672: run `make services`"
    return AMQP


@pytest.fixture(scope="session")
def postgres():
    assert _port_open(5432), "PostgreSQL is not listening on 127.0.0.1:5432: run `make services`"
    import psycopg

    try:
        psycopg.connect(PG).close()
    except psycopg.OperationalError as e:
        raise AssertionError(f"PostgreSQL at {PG} refuses the tests' login ({e}): run `make services`, or set "
                             "SONICFLOW_TEST_PG_URL") from None
    return PG


# --- small real media -------------------------------------------------------------------------------------------------

def portrait_png() -> bytes:
    with open(os.path.join(ROOT, "sample_media", "portrait.png"), "rb") as f:
        return f.read()


def portrait_jpeg(size: int = 256) -> bytes:
    from PIL import Image

    im = Image.open(io.BytesIO(portrait_png())).convert("RGB").resize((size, size))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=85)
    return buf.getvalue()


# --- processes --------------------------------------------------------------------------------------------------------

class FrontDoor:
    """One `sonicflow api` process with its own broker prefix, store folder and job-store tables."""

    def __init__(self, tmp, db: str, pg_url: str | None = None, webhook_allow: list | None = None,
                 env: dict | None = None, launcher: list | None = None, amqp: str = AMQP,
                 share: FrontDoor | None = None, table_prefix: str | None = None, db_url: str | None = None):
        """`launcher`: what runs the command instead of `python sonicflow_cli.py` (e.g. devtools.record_modules);
        `amqp`: the broker URL the front door uses (a relay before the test broker, say); the tests' own helpers
        always reach the broker directly. `share`: another front door whose broker prefix, object store and job
        store this one uses too (a second process of one deployment); `db_url`, `table_prefix`: tables a test made."""
        _n[0] += 1
        self.prefix = share.prefix if share else f"sfa{SESSION}n{_n[0]}"
        self.table_prefix = share.table_prefix if share else table_prefix or f"t{SESSION}n{_n[0]}_"
        self.tmp = tmp
        self.store = share.store if share else tmp / "store"
        own_db = db_url or (pg_url if db == "postgres" else f"sqlite:///{tmp}/api.db")
        self.db_url = share.db_url if share else own_db
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        ops = (env or {}).get("SONICFLOW_API_METRICS_PORT")  # the probes' own listener, when the test asks for one
        self.ops_url = f"http://{(env or {}).get('SONICFLOW_API_METRICS_HOST', '127.0.0.1')}:{ops}" if ops else self.url
        self.webhook_allow = webhook_allow or []
        self.env = {**os.environ, **(env or {})}
        self.amqp = amqp
        self.proc = None
        self.log_path = str(tmp / "api.log")
        self.workers: list = []
        self.launcher = launcher or [PY, os.path.join(ROOT, "sonicflow_cli.py")]
        self._jobstore = None

    @property
    def jobstore(self):
        """The tests' own connection to the job store, opened on first use (so a test can leave the migrating to
        the front door it starts)."""
        if self._jobstore is None:
            from queue_bridge.front_door import JobStore

            self._jobstore = JobStore(self.db_url, self.table_prefix, pool_size=1)
        return self._jobstore

    def key(self, rate: float = 600, burst: int = 200, quota: int = 100000) -> str:
        return self.jobstore.create_key("test", rate, burst, quota)["api_key"]

    def key_record(self, **kw) -> dict:
        return self.jobstore.create_key("test", kw.get("rate", 600), kw.get("burst", 200), kw.get("quota", 100000))

    def start(self):
        args = [*self.launcher, "api", "serve", "--amqp", self.amqp, "--prefix", self.prefix,
                "--store", str(self.store), "--db", self.db_url, "--table-prefix", self.table_prefix,
                "--port", str(self.port)]
        for a in self.webhook_allow:
            args += ["--webhook-allow", a]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                     start_new_session=True)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"sonicflow api exited {self.proc.returncode}:\n{self.log_tail()}")
            try:
                return requests.get(self.ops_url + "/readyz", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_until(up, 60, "sonicflow api answering /readyz with the broker connected")
        return self

    def log_tail(self, n: int = 60) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def worker(self, comfy_url: str):
        """A real bridge worker on this front door's prefix and store (the topology settings, e.g. the retry delays,
        must match the front door's: it declared the queues first)."""
        args = [PY, os.path.join(ROOT, "sonicflow_cli.py"), "worker", "--amqp", AMQP, "--prefix", self.prefix,
                "--store", str(self.store), "--input-root", str(self.store / "inputs"), "--comfy", comfy_url,
                "--templates", os.path.join(ROOT, "templates"), "--heartbeat", "10",
                "--timeout", "240", "--grace", "5"]
        log = open(self.tmp / f"worker{len(self.workers)}.log", "ab")
        w = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                             start_new_session=True)
        self.workers.append(w)
        return w

    # broker helpers
    def channel(self):
        import pika

        conn = pika.BlockingConnection(pika.URLParameters(AMQP))
        return conn, conn.channel()

    def queued(self) -> int:
        """Messages ready in this front door's jobs queue (the tests that count have no worker)."""
        conn, ch = self.channel()
        try:
            return ch.queue_declare(f"{self.prefix}.jobs", passive=True).method.message_count
        finally:
            conn.close()

    def job_bodies(self) -> list[dict]:
        """Every job in the jobs queue, left in place."""
        conn, ch = self.channel()
        out, last = [], None
        try:
            while True:
                method, _props, body = ch.basic_get(f"{self.prefix}.jobs", auto_ack=False)
                if method is None:
                    break
                last = method.delivery_tag
                out.append(json.loads(body))
            if last is not None:
                ch.basic_nack(last, multiple=True, requeue=True)
        finally:
            conn.close()
        return out

    def publish_result(self, result: dict) -> None:
        """What a worker publishes when it finishes a job (tests without ComfyUI)."""
        import pika

        conn, ch = self.channel()
        try:
            ch.confirm_delivery()
            ch.basic_publish(f"{self.prefix}.results", f"result.{result['job_id']}", json.dumps(result).encode(),
                             pika.BasicProperties(delivery_mode=2, content_type="application/json"), mandatory=True)
        finally:
            conn.close()

    def publish_progress(self, job_id: str, value: int, maximum: int, node: str = "4") -> None:
        conn, ch = self.channel()
        try:
            ch.basic_publish(f"{self.prefix}.events", f"progress.{job_id}", json.dumps(
                {"job_id": job_id, "type": "progress", "node": node, "value": value, "max": maximum}).encode())
        finally:
            conn.close()

    def stored_inputs(self) -> list[str]:
        d = self.store / "inputs"
        return sorted(os.listdir(d)) if d.is_dir() else []

    def job_rows(self) -> int:
        return self.jobstore.query("SELECT COUNT(*) FROM {p}jobs")[0][0]

    def kill(self):
        """SIGKILL: the front door dies wherever it is, as in a crash or an OOM kill."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        for w in self.workers:
            if w.poll() is None:
                os.killpg(w.pid, signal.SIGKILL)
                w.wait()
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        try:
            from queue_bridge.topology import Topology

            conn, ch = self.channel()
            topology = Topology(prefix=self.prefix)
            topology.delete(ch)
            ch.queue_delete(topology.api_results_queue)
            conn.close()
        except Exception:  # noqa: BLE001
            pass
        if self.db_url.startswith("postgresql"):
            self.jobstore.drop_tables()
        self.jobstore.close()
        self._jobstore = None


@pytest.fixture
def frontdoor_factory(rabbit, tmp_path_factory):
    made = []

    def make(db: str = "sqlite", pg_url: str | None = None, **kw) -> FrontDoor:
        fd = FrontDoor(tmp_path_factory.mktemp("frontdoor"), db, pg_url, **kw).start()
        made.append(fd)
        return fd

    yield make
    for fd in made:
        fd.stop()


@pytest.fixture(scope="module")
def frontdoor(rabbit, tmp_path_factory):
    """One SQLite-backed front door without a worker, shared by a module's tests."""
    fd = FrontDoor(tmp_path_factory.mktemp("frontdoor"), "sqlite").start()
    yield fd
    fd.stop()


def submit(fd: FrontDoor, key: str, image: bytes | None = None, audio: bytes | None = None, *,
           image_name: str = "face.png", audio_name: str = "speech.wav", image_type: str = "image/png",
           audio_type: str = "audio/wav", data: dict | None = None, headers: dict | None = None, timeout: float = 60):
    files = {}
    files["image"] = (image_name, portrait_png() if image is None else image, image_type)
    files["audio"] = (audio_name, speech_wav() if audio is None else audio, audio_type)
    h = {"X-API-Key": key} if key else {}
    h.update(headers or {})
    return requests.post(fd.url + "/v1/jobs", files=files, data=data or {"engine": "lite", "min_resolution": "256"},
                         headers=h, timeout=timeout)


@pytest.fixture
def receiver():
    """A webhook receiver (set its `secret` to the key's webhook secret)."""
    r = Receiver()
    yield r
    r.close()
