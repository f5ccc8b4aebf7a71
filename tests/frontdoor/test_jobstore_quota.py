"""A key's daily quota holds when several front-door processes take jobs at once: each has its own job store
connections (two JobStore objects here, as two processes would), on SQLite and on the PostgreSQL on 127.0.0.1:5432."""
from __future__ import annotations

import threading
import time
import uuid

import pytest

from queue_bridge.front_door import JobStore


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_quota_is_never_exceeded_by_racing_front_doors(db, request, tmp_path):
    url = request.getfixturevalue("postgres") if db == "postgres" else f"sqlite:///{tmp_path / 'jobs.db'}"
    prefix = f"q{uuid.uuid4().hex[:8]}_"
    stores = [JobStore(url, prefix), JobStore(url, prefix)]
    try:
        key = stores[0].create_key("racer", daily_quota=5)
        outcomes: list[str] = []
        start = threading.Barrier(4)

        def submit(store: JobStore):
            start.wait()
            for _ in range(10):
                row = {"id": uuid.uuid4().hex, "key_id": key["id"], "status": "accepting", "template": "t"}
                outcomes.append(store.insert_job(row, daily_quota=5))

        threads = [threading.Thread(target=submit, args=(stores[i % 2],)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(set(outcomes)) == ["inserted", "over_quota"] and len(outcomes) == 40
        assert outcomes.count("inserted") == 5
        assert stores[1].count_since(key["id"], time.time() - 86400) == 5
        # an idempotent retry is still told apart from a refusal
        row = {"id": uuid.uuid4().hex, "key_id": key["id"], "idem_key": "k1", "status": "accepting", "template": "t"}
        assert stores[0].insert_job(row) == "inserted"
        assert stores[1].insert_job(dict(row, id=uuid.uuid4().hex)) == "duplicate"
    finally:
        stores[0].drop_tables()
        for s in stores:
            s.close()


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_a_due_webhook_is_claimed_by_one_front_door(db, request, tmp_path):
    """Front doors sharing a store each look for due webhooks: one claims a delivery, the other does not see it
    until the claim's lease ends (the claimer died mid-delivery)."""
    url = request.getfixturevalue("postgres") if db == "postgres" else f"sqlite:///{tmp_path / 'jobs.db'}"
    prefix = f"w{uuid.uuid4().hex[:8]}_"
    stores = [JobStore(url, prefix), JobStore(url, prefix)]
    try:
        key = stores[0].create_key("hooked")
        job_id = uuid.uuid4().hex
        stores[0].insert_job({"id": job_id, "key_id": key["id"], "status": "queued", "template": "t",
                              "webhook_url": "https://receiver.example/hook"})
        assert stores[0].apply_result(job_id, {"job_id": job_id, "status": "succeeded"})
        now = time.time() + 1
        first, second = stores[0].due_webhooks(now, 10, 4, []), stores[1].due_webhooks(now, 10, 4, [])
        assert [j["id"] for j in first] == [j["id"] for j in second] == [job_id]  # both see it due
        assert [j["id"] for j in stores[0].claim_webhooks(first, now, lease_s=0.5)] == [job_id]
        assert stores[1].claim_webhooks(second, now) == []  # the first front door has it
        assert stores[1].due_webhooks(now, 10, 4, []) == []  # not due while the claim lasts
        assert [j["id"] for j in stores[1].due_webhooks(now + 1.0, 10, 4, [])] == [job_id]  # its lease ended
    finally:
        if db == "postgres":
            stores[0].drop_tables()
        for s in stores:
            s.close()
