"""The job store's schema versions: a real front door started on the tables an earlier release made, with data in
them, migrates them forward and keeps the data (SQLite and the PostgreSQL on 127.0.0.1:5432); front doors starting at
once migrate once; a database newer than the code is refused."""
from __future__ import annotations

import json
import logging
import os
import secrets
import sqlite3
import subprocess
import sys
import threading
import time
import uuid

import pytest
import requests

from queue_bridge.front_door import JobStore
from queue_bridge.front_door.jobstore import hash_secret
from queue_bridge.front_door.migrations import LATEST, SchemaTooNew

from .conftest import ROOT, free_port, submit


def previous_schema(url: str, p: str, with_message: bool) -> None:
    """The tables as the release before schema versions made them (`create_tables` then): with the `message`
    column its hardening change added at start-up, or from before that change."""
    real = "DOUBLE PRECISION" if url.startswith("postgresql") else "REAL"
    stmts = [
        f"""CREATE TABLE {p}api_keys (id TEXT PRIMARY KEY, name TEXT NOT NULL, secret_hash TEXT NOT NULL,
            webhook_secret TEXT NOT NULL, rate_per_min {real} NOT NULL, burst INTEGER NOT NULL,
            daily_quota INTEGER NOT NULL, created_at {real} NOT NULL, revoked INTEGER NOT NULL DEFAULT 0)""",
        f"""CREATE TABLE {p}jobs (id TEXT PRIMARY KEY, key_id TEXT NOT NULL, idem_key TEXT,
            fingerprint TEXT, status TEXT NOT NULL, progress {real} NOT NULL DEFAULT 0, progress_node TEXT,
            template TEXT NOT NULL, parameters TEXT, inputs TEXT, result TEXT, error TEXT, webhook_url TEXT,
            webhook_state TEXT, webhook_attempts INTEGER NOT NULL DEFAULT 0, webhook_next_at {real},
            webhook_last_error TEXT, created_at {real} NOT NULL, updated_at {real} NOT NULL,
            seq INTEGER NOT NULL DEFAULT 1)""",
        f"CREATE UNIQUE INDEX {p}jobs_idem ON {p}jobs (key_id, idem_key)",
        f"CREATE INDEX {p}jobs_key_created ON {p}jobs (key_id, created_at)",
        f"CREATE INDEX {p}jobs_webhook ON {p}jobs (webhook_state, webhook_next_at)",
        f"CREATE TABLE {p}meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ]
    if with_message:
        stmts += [f"ALTER TABLE {p}jobs ADD COLUMN message TEXT",
                  f"CREATE INDEX {p}jobs_status ON {p}jobs (status, updated_at)"]
    _run(url, stmts)


def _run(url: str, stmts: list, args: list | None = None) -> None:
    if url.startswith("postgresql"):
        import psycopg

        with psycopg.connect(url, autocommit=True) as c:
            for s, a in zip(stmts, args or [()] * len(stmts), strict=True):
                c.execute(s, a)
    else:
        c = sqlite3.connect(url[len("sqlite:///"):], isolation_level=None)
        for s, a in zip(stmts, args or [()] * len(stmts), strict=True):
            c.execute(s.replace("%s", "?"), a)
        c.close()


def _version(sqlite_url: str) -> str:
    c = sqlite3.connect(sqlite_url[len("sqlite:///"):])
    try:
        return c.execute("SELECT value FROM sf_meta WHERE name = 'schema_version'").fetchone()[0]
    finally:
        c.close()


def old_rows(url: str, p: str, with_message: bool) -> dict:
    """A key, a queued job and a finished one, written the way that release wrote them."""
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    now = time.time()
    queued, done = uuid.uuid4().hex, uuid.uuid4().hex
    cols = "id, key_id, status, template, parameters, inputs, result, created_at, updated_at"
    message = json.dumps({"version": 1, "job_id": queued, "template": "talking_head", "inputs": {}})
    stmts = [f"INSERT INTO {p}api_keys (id, name, secret_hash, webhook_secret, rate_per_min, burst, daily_quota, "
             f"created_at) VALUES (%s, 'old', %s, %s, 600, 200, 1000, %s)",
             f"INSERT INTO {p}jobs ({cols}) VALUES (%s, %s, 'queued', 'talking_head', %s, '{{}}', NULL, %s, %s)",
             f"INSERT INTO {p}jobs ({cols}) VALUES (%s, %s, 'succeeded', 'talking_head', '{{}}', '{{}}', %s, %s, %s)",
             f"INSERT INTO {p}meta (name, value) VALUES ('link_secret', %s)"]
    args = [(key_id, hash_secret(secret), "whsec_" + secrets.token_urlsafe(32), now),
            (queued, key_id, json.dumps({"seed": 7}), now - 10, now - 10),
            (done, key_id, json.dumps({"status": "succeeded", "engine": "lite", "outputs": []}), now - 5, now - 5),
            (secrets.token_hex(32),)]
    if with_message:
        stmts.append(f"UPDATE {p}jobs SET message = %s WHERE id = %s")
        args.append((message, queued))
    _run(url, stmts, args)
    return {"key": f"sfk_{key_id}_{secret}", "queued": queued, "done": done}


@pytest.mark.parametrize("with_message", [True, False], ids=["main", "before-message"])
@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_a_front_door_migrates_the_previous_schema_and_keeps_its_data(db, with_message, request, frontdoor_factory,
                                                                     tmp_path):
    url = request.getfixturevalue("postgres") if db == "postgres" else f"sqlite:///{tmp_path / 'old.db'}"
    p = f"m{uuid.uuid4().hex[:8]}_"
    previous_schema(url, p, with_message)
    old = old_rows(url, p, with_message)
    fd = frontdoor_factory(db, db_url=url, table_prefix=p)
    headers = {"X-API-Key": old["key"]}
    queued = requests.get(f"{fd.url}/v1/jobs/{old['queued']}", headers=headers, timeout=10)
    assert queued.status_code == 200, queued.text
    assert queued.json()["status"] == "queued" and queued.json()["parameters"] == {"seed": 7}
    assert requests.get(f"{fd.url}/v1/jobs/{old['done']}", headers=headers, timeout=10).json()["engine"] == "lite"
    assert fd.jobstore.query("SELECT value FROM {p}meta WHERE name = 'schema_version'") == [(str(LATEST),)]
    assert fd.jobstore.schema_found == LATEST  # the front door had migrated it: the harness found it done

    # What the migrations added works: a new job keeps its message, the key's requests went through a shared bucket
    new = submit(fd, old["key"])
    assert new.status_code == 202, new.text
    assert json.loads(fd.jobstore.get_job(new.json()["id"])["message"])["job_id"] == new.json()["id"]
    names = {n for (n,) in fd.jobstore.query("SELECT name FROM {p}rate_limits")}
    assert {f"{old['key'][4:16]}:read", f"{old['key'][4:16]}:submit"} <= names
    listed = requests.get(f"{fd.url}/v1/jobs", headers=headers, timeout=10).json()["jobs"]
    assert {j["id"] for j in listed} == {old["queued"], old["done"], new.json()["id"]}


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_front_doors_starting_at_once_migrate_once(db, request, tmp_path, caplog):
    url = request.getfixturevalue("postgres") if db == "postgres" else f"sqlite:///{tmp_path / 'race.db'}"
    p = f"c{uuid.uuid4().hex[:8]}_"
    previous_schema(url, p, with_message=False)
    stores, errors = [], []
    start = threading.Barrier(4)

    def open_store():
        start.wait()
        try:
            stores.append(JobStore(url, p))
        except Exception as e:  # noqa: BLE001 - collected: the assertion below shows it
            errors.append(e)

    caplog.set_level(logging.INFO, logger="sonicflow.api")
    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert errors == [] and len(stores) == 4
        migrated = [r.getMessage() for r in caplog.records if "schema migrated" in r.getMessage()]
        assert len(migrated) == LATEST, migrated  # each migration once, whichever process ran it
        assert stores[0].query("SELECT value FROM {p}meta WHERE name = 'schema_version'") == [(str(LATEST),)]
    finally:
        if stores:
            stores[0].drop_tables()
        for s in stores:
            s.close()


def test_a_store_newer_than_the_code_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'new.db'}"
    JobStore(url, "sf_").close()
    _run(url, ["UPDATE sf_meta SET value = %s WHERE name = 'schema_version'"], [(str(LATEST + 1),)])
    with pytest.raises(SchemaTooNew, match=f"schema version {LATEST + 1}"):
        JobStore(url, "sf_")
    for action in ("serve", "create-key"):  # the command says it, without a traceback, and changes nothing
        out = subprocess.run([sys.executable, os.path.join(ROOT, "sonicflow_cli.py"), "api", action, "--db", url,
                              "--port", str(free_port())], capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert out.returncode == 2 and "run the newer SonicFlow" in out.stderr and "Traceback" not in out.stderr
    assert _version(url) == str(LATEST + 1)
