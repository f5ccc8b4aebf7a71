"""The front door under stalls and blips: a customer whose URLs drip bytes cannot freeze the service for everyone,
and a database that drops its sessions or goes away for a while heals without a restart (health says so meanwhile).
"""
from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
import requests

from devtools.tcp_proxy import TcpProxy

from .conftest import wait_until


class DripServer:
    """An HTTP server on loopback that answers every request with headers promising 1 MB and then one byte every
    `every` seconds: the slow-loris of the download side."""

    def __init__(self, every: float = 10.0):
        self.every = every
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(32)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn):
        try:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 1000000\r\n\r\n\x89")
            while not self.stopped.wait(self.every):
                conn.sendall(b"P")
        except OSError:
            pass
        finally:
            conn.close()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def stop(self):
        self.stopped.set()
        self.sock.close()


def test_slow_drip_urls_from_one_key_do_not_stall_another(frontdoor_factory):
    fd = frontdoor_factory(env={"SONICFLOW_API_ALLOW_PRIVATE_INPUTS": "1"})
    attacker, other = fd.key(), fd.key()
    drip = DripServer(every=10.0)
    try:
        def submit(i):
            t0 = time.monotonic()
            r = requests.post(fd.url + "/v1/jobs", headers={"X-API-Key": attacker}, timeout=120, json={
                "image_url": drip.url(f"face{i}.png"), "audio_url": drip.url(f"speech{i}.wav")})
            return r, time.monotonic() - t0

        with ThreadPoolExecutor(6) as pool:
            attack = [pool.submit(submit, i) for i in range(6)]
            wait_until(lambda: drip.connections >= 2, 10, "the front door fetching from the drip server")
            # another customer is served while the drips are in flight (the request's own timeout is the bound)
            for _ in range(3):
                r = requests.get(fd.url + "/v1/jobs", headers={"X-API-Key": other}, timeout=2)
                assert r.status_code == 200, r.text
            assert requests.get(fd.url + "/healthz", timeout=2).status_code == 200
            outcomes = [f.result() for f in attack]
    finally:
        drip.stop()
    codes = sorted(r.json()["error"]["code"] for r, _ in outcomes)
    # two fetches at a time per key; each cut by the minimum rate, not held for the drip's hours
    assert set(codes) <= {"too_many_fetches", "input_unavailable"} and "input_unavailable" in codes, codes
    assert all(r.status_code in (422, 429) for r, _ in outcomes)
    assert max(took for _, took in outcomes) < 60  # the fetch deadline: the attacker's own requests end too
    assert fd.queued() == 0 and fd.job_rows() == 0


def _terminate_sessions(pg_url: str, pid: int) -> int:
    """What a server restart, a failover or a pooler's idle timeout does to one process's database sessions."""
    import psutil

    ports = [c.laddr.port for c in psutil.Process(pid).net_connections("tcp") if c.raddr and c.raddr.port == 5432]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE client_port = ANY(%s)",
                            (ports,)).fetchall()
    return len(rows)


def test_job_store_reconnects_after_the_server_closed_its_sessions(frontdoor_factory, postgres):
    fd = frontdoor_factory("postgres", postgres)
    key = fd.key()
    assert requests.get(fd.url + "/v1/jobs", headers={"X-API-Key": key}, timeout=5).status_code == 200
    assert _terminate_sessions(postgres, fd.proc.pid) >= 1

    deadline = time.monotonic() + 10

    def answers():  # a request still hanging at the deadline counts as not answering, not as an error
        try:
            return requests.get(fd.url + "/v1/jobs", headers={"X-API-Key": key},
                                timeout=max(0.1, min(5.0, deadline - time.monotonic()))).status_code == 200
        except requests.RequestException:
            return False

    wait_until(answers, 10, "GET /v1/jobs answering 200 again after the sessions were terminated", 0.5)
    statuses = [requests.get(fd.url + "/v1/jobs", headers={"X-API-Key": key}, timeout=5).status_code
                for _ in range(5)]
    assert statuses == [200] * 5 and fd.proc.poll() is None  # healed, not restarted


@pytest.fixture
def pg_relay(postgres):
    """PostgreSQL behind a relay the test can cut (set up before the front door, so torn down after it)."""
    pg = psycopg.conninfo.conninfo_to_dict(postgres)
    proxy = TcpProxy(int(pg.get("port", 5432))).start()
    login = pg.get("user", "postgres") + (f":{pg['password']}" if pg.get("password") else "")
    yield proxy, f"postgresql://{login}@127.0.0.1:{proxy.port}/{pg.get('dbname', 'test')}"
    proxy.stop()


def test_health_follows_the_database_through_an_outage(pg_relay, frontdoor_factory):
    """The database behind a relay that is cut and restored: /healthz (= /readyz) says not ready while it is away,
    /livez says alive, requests get a 503 with Retry-After (not a 500), and both recover when it is back, in the
    same process."""
    proxy, url = pg_relay
    fd = frontdoor_factory("postgres", url)
    key = fd.key()
    assert requests.get(fd.url + "/healthz", timeout=5).json()["store"] is True
    proxy.cut()
    wait_until(lambda: requests.get(fd.url + "/healthz", timeout=10).status_code == 503, 20,
               "/healthz reporting the job store down")
    health = requests.get(fd.url + "/healthz", timeout=10).json()
    assert health["store"] is False and health["status"] == "degraded"
    assert requests.get(fd.url + "/readyz", timeout=10).status_code == 503
    live = requests.get(fd.url + "/livez", timeout=10)  # alive all along: a database outage is no reason to restart
    assert live.status_code == 200 and live.json()["status"] == "ok"
    r = requests.get(fd.url + "/v1/jobs", headers={"X-API-Key": key}, timeout=20)
    assert r.status_code == 503 and r.json()["error"]["code"] == "store_unavailable" and r.headers["Retry-After"]
    proxy.restore()
    wait_until(lambda: requests.get(fd.url + "/healthz", timeout=10).status_code == 200, 20,
               "/healthz ready again once the database is back")
    assert requests.get(fd.url + "/v1/jobs", headers={"X-API-Key": key}, timeout=5).status_code == 200
    assert fd.proc.poll() is None
