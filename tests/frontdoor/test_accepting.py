"""Between the job row and the broker's confirm (issue #10 M3). The row is written ('accepting') with the message it
is published as; then the publish. A front door killed in between left the row for ever: its Idempotency-Key
answered 409, the job was invisible, counted toward the quota, and never ran. A confirm that never came made the
front door delete the row and say "nothing was queued", which the broker may have made false. The broker runs
behind a relay the test can hold (a hung broker: connections open, bytes stopped) or hold one way (lost confirms).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from devtools.tcp_proxy import TcpProxy

from .conftest import AMQP, FrontDoor, submit, wait_until

SEED = {"engine": "lite", "min_resolution": "256"}


@pytest.fixture
def relay(rabbit):
    proxy = TcpProxy(5672).start()
    yield proxy, f"amqp://guest:guest@127.0.0.1:{proxy.port}/%2F"
    proxy.stop()


def _queued_ids(fd) -> list[str]:
    return [j["job_id"] for j in fd.job_bodies()]


def _accepting(fd) -> list[str]:
    return [r[0] for r in fd.jobstore.query("SELECT id FROM {p}jobs WHERE status = 'accepting'")]


def test_a_front_door_killed_before_the_confirm_leaves_a_job_that_is_published_again(relay, tmp_path, postgres):
    proxy, relayed = relay
    fd = FrontDoor(tmp_path, "postgres", postgres, amqp=relayed, env={"SONICFLOW_API_RECONCILE_AFTER_S": "3"})
    try:
        fd.start()
        key = fd.key(quota=3)
        assert submit(fd, key).status_code == 202  # the publishing connection is open
        proxy.hold()  # the broker hangs: the next row is written, its message never gets past the relay
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(submit, fd, key, data={**SEED, "seed": "2"}, headers={"Idempotency-Key": "o-42"})
            wait_until(lambda: len(_accepting(fd)) == 1, 30, "the second job's row written, its publish pending")
            fd.kill()
            with pytest.raises(requests.ConnectionError):
                pending.result()
        [job_id] = _accepting(fd)
        proxy.stop()  # the held message dies with the relay: the broker never had it
        assert job_id not in _queued_ids(fd) and len(_queued_ids(fd)) == 1

        fd.amqp = AMQP
        fd.start()  # the same job store and queues, the broker reached directly
        wait_until(lambda: fd.jobstore.get_job(job_id)["status"] == "queued", 30, "the upkeep publishing it again")
        assert _queued_ids(fd).count(job_id) == 1
        replay = submit(fd, key, data={**SEED, "seed": "2"}, headers={"Idempotency-Key": "o-42"})
        assert replay.status_code == 200 and replay.json()["id"] == job_id, replay.text
        got = requests.get(f"{fd.url}/v1/jobs/{job_id}", headers={"X-API-Key": key}, timeout=10)
        assert got.status_code == 200 and got.json()["status"] == "queued"
        listed = requests.get(f"{fd.url}/v1/jobs", headers={"X-API-Key": key}, timeout=10).json()["jobs"]
        assert job_id in [j["id"] for j in listed]
        # the quota counts the two real jobs: one more fits, then it is used up
        assert submit(fd, key, data={**SEED, "seed": "3"}).status_code == 202
        over = submit(fd, key, data={**SEED, "seed": "4"})
        assert over.status_code == 429 and over.json()["error"]["code"] == "quota_exceeded"
    finally:
        fd.stop()


def test_a_lost_confirm_keeps_the_job_it_may_have_queued(relay, tmp_path):
    proxy, relayed = relay
    # one publishing connection, opened by the first job: the second goes out on it
    fd = FrontDoor(tmp_path, "sqlite", amqp=relayed,
                   env={"SONICFLOW_API_PUBLISHERS": "1", "SONICFLOW_API_PUBLISH_WAIT_S": "2"})
    try:
        fd.start()
        key = fd.key()
        assert submit(fd, key).status_code == 202
        proxy.hold(answers_only=True)  # the broker takes the message; its confirm does not come back
        r = submit(fd, key, data={**SEED, "seed": "5"}, headers={"Idempotency-Key": "o-43"}, timeout=30)
        assert r.status_code == 202 and r.json()["status"] == "queued", r.text
        job_id = r.json()["id"]
        assert job_id in _queued_ids(fd)  # "nothing was queued" would have been false
        assert fd.jobstore.get_job(job_id)["status"] == "accepting"  # kept, until confirmed or published again
        proxy.release()  # the late confirm arrives
        wait_until(lambda: fd.jobstore.get_job(job_id)["status"] == "queued", 20, "the late confirm recorded")
        replay = submit(fd, key, data={**SEED, "seed": "5"}, headers={"Idempotency-Key": "o-43"})
        assert replay.status_code == 200 and replay.json()["id"] == job_id
        assert _queued_ids(fd).count(job_id) == 1
    finally:
        fd.stop()


def test_a_hung_broker_gets_503_quickly_not_a_queue_of_waiting_requests(relay, tmp_path):
    proxy, relayed = relay
    fd = FrontDoor(tmp_path, "sqlite", amqp=relayed, env={
        "SONICFLOW_API_PUBLISHERS": "1", "SONICFLOW_API_PUBLISH_BACKLOG": "2", "SONICFLOW_API_PUBLISH_WAIT_S": "2"})
    try:
        fd.start()
        key = fd.key()
        assert submit(fd, key).status_code == 202
        proxy.hold()
        with ThreadPoolExecutor(6) as pool:  # each request's own timeout is the bound: no answer in 30 s fails
            answers = list(pool.map(lambda i: submit(fd, key, data={**SEED, "seed": str(10 + i)}, timeout=30),
                                    range(6)))
        statuses = sorted(a.status_code for a in answers)
        # the one being sent when the broker hung may be queued: kept (202); the others were never sent
        assert statuses == [202] + [503] * 5, [a.text for a in answers]
        refused = [a for a in answers if a.status_code == 503]
        assert all(a.json()["error"]["code"] == "queue_unavailable" and a.headers["Retry-After"] for a in refused)
        assert fd.job_rows() == 2  # the warm-up and the kept one: refused rows are gone
        proxy.release()
    finally:
        fd.stop()
