"""The front door's records: API keys (hashed), jobs (status, progress, results, idempotency keys) and webhook
deliveries. SQLite by default (nothing to install: `sqlite:///path/api.db`), PostgreSQL by configuration
(`postgresql://user@host:5432/db`, psycopg 3). Every table name starts with a configurable prefix so several
front doors (or test runs) can share one database.

The calls are synchronous and short; the aiohttp service runs them on a thread pool. Each write bumps the job's
`seq`, which the server-sent-events stream uses as its event id. A job row is written ('accepting') with the very
message it is published as, before it is published, so a row whose publishing was never confirmed can be published
again under the same job id (the workers' ledger makes a second copy harmless).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import sqlite3
import threading
import time
from contextlib import contextmanager

from .migrations import migrate
from .webhooks import new_secret

TERMINAL = ("succeeded", "failed", "cancelled")
JOB_COLUMNS = ("id", "key_id", "idem_key", "fingerprint", "status", "progress", "progress_node", "template",
               "parameters", "inputs", "result", "error", "webhook_url", "webhook_state", "webhook_attempts",
               "webhook_next_at", "webhook_last_error", "created_at", "updated_at", "seq", "message")
JSON_COLUMNS = ("parameters", "inputs", "result", "error")
KEY_PREFIX = "sfk_"
SELECT_JOBS = f"SELECT {', '.join(JOB_COLUMNS)} FROM {{p}}jobs"
# A job that becomes final has its webhook due now (if it has one).
WEBHOOK_DUE = "webhook_state = CASE WHEN webhook_url IS NULL THEN NULL ELSE 'pending' END, webhook_next_at = ? "


def hash_secret(secret: str) -> str:
    """API secrets are 32 random bytes: a plain SHA-256 is enough (no dictionary to attack); the secret itself is
    never stored."""
    return hashlib.sha256(secret.encode()).hexdigest()


def split_key(api_key: str) -> tuple[str, str] | None:
    """'sfk_<id>_<secret>' -> (id, secret), or None for anything else."""
    m = re.fullmatch(KEY_PREFIX + r"([0-9a-f]{12})_([A-Za-z0-9_-]{20,100})", api_key or "")
    return (m.group(1), m.group(2)) if m else None


COUNT_SINCE = "SELECT COUNT(*) FROM {p}jobs WHERE key_id = ? AND created_at >= ?"  # a key's jobs since a time


class StoreUnavailable(Exception):
    """The database cannot be reached (or did not answer in time); a retry later may succeed."""


class JobStore:
    def __init__(self, url: str, table_prefix: str = "sf_", pool_size: int = 4, name: str = "sonicflow"):
        """`name` is the connection's application_name on PostgreSQL (operators see it in pg_stat_activity)."""
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,30}", table_prefix):
            raise ValueError(f"table prefix {table_prefix!r}: use lower-case letters, digits and _")
        self.url, self.p = url, table_prefix
        self.postgres = url.startswith(("postgresql://", "postgres://"))
        self.pool_size = pool_size
        if self.postgres:
            from psycopg_pool import ConnectionPool

            # A real pool: each connection is checked when it is taken, so sessions the server closed (a restart, a
            # failover, a pooler's idle timeout) are replaced instead of failing every request until a restart.
            self._pg = ConnectionPool(url, min_size=1, max_size=pool_size, check=ConnectionPool.check_connection,
                                      kwargs={"autocommit": True, "application_name": name, "connect_timeout": 5},
                                      timeout=10, open=True, name=name)
        else:
            path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else url
            if path != ":memory:":
                import os

                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self._sqlite = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
            self._sqlite.execute("PRAGMA journal_mode=WAL")
            self._sqlite.execute("PRAGMA synchronous=NORMAL")
            self._lock = threading.Lock()  # SQLite: one connection, one writer at a time
        self.schema_found = migrate(self)  # the version the tables had: 0 for tables made before versions

    # -- plumbing ---------------------------------------------------------------------------------------------------

    @contextmanager
    def _conn(self):
        if self.postgres:
            import psycopg
            from psycopg_pool import PoolTimeout

            try:
                with self._pg.connection() as conn:
                    yield conn
            except (psycopg.OperationalError, PoolTimeout) as e:
                raise StoreUnavailable(f"the job store's database is unreachable ({type(e).__name__})") from e
        else:
            with self._lock:
                try:
                    yield self._sqlite
                except sqlite3.OperationalError as e:  # locked by another writer for longer than the timeout
                    raise StoreUnavailable(f"the job store's database is busy ({e})") from e

    def sql(self, sql: str) -> str:
        """`sql` for this store: its table prefix for {p}, its placeholders for ?."""
        sql = sql.replace("{p}", self.p)
        return sql.replace("?", "%s") if self.postgres else sql

    def execute(self, sql: str, args: tuple = ()) -> int:
        with self._conn() as c:
            cur = c.execute(self.sql(sql), args)
            return cur.rowcount

    def query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._conn() as c:
            return list(c.execute(self.sql(sql), args).fetchall())

    def ping(self) -> None:
        """Raises unless the database answers (health checks)."""
        self.query("SELECT 1")

    def close(self):
        if self.postgres:
            self._pg.close()
        else:
            self._sqlite.close()

    @contextmanager
    def transaction(self):
        """One transaction on one connection (SQLite: holding the write lock from the start)."""
        with self._conn() as c:
            c.execute("BEGIN" if self.postgres else "BEGIN IMMEDIATE")
            try:
                yield c
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")

    def drop_tables(self):
        for t in ("api_keys", "jobs", "meta", "rate_limits"):
            self.execute(f"DROP TABLE IF EXISTS {{p}}{t}")

    def link_secrets(self) -> list[bytes]:
        """The secrets download links are checked against, the one that signs first: shared by every front door on
        this database (made on first use), plus the previous one until its grace period ends (rotate_link_secret)."""
        conflict = "ON CONFLICT (name) DO NOTHING" if self.postgres else "OR IGNORE"
        insert = (f"INSERT INTO {{p}}meta (name, value) VALUES ('link_secret', ?) {conflict}" if self.postgres
                  else f"INSERT {conflict} INTO {{p}}meta (name, value) VALUES ('link_secret', ?)")
        self.execute(insert, (secrets.token_hex(32),))
        rows = dict(self.query("SELECT name, value FROM {p}meta WHERE name IN ('link_secret', 'link_secret_previous')"))
        out = [bytes.fromhex(rows["link_secret"])]
        if "link_secret_previous" in rows:
            value, until = rows["link_secret_previous"].split(":")
            if float(until) > time.time():
                out.append(bytes.fromhex(value))
        return out

    def rotate_link_secret(self, grace_s: float) -> None:
        """A new secret signs links from now on; links signed with the old one keep working for `grace_s`."""
        current = self.link_secrets()[0].hex()
        with self.transaction() as c:
            c.execute(self.sql("DELETE FROM {p}meta WHERE name = 'link_secret_previous'"))
            c.execute(self.sql("INSERT INTO {p}meta (name, value) VALUES ('link_secret_previous', ?)"),
                      (f"{current}:{time.time() + grace_s}",))
            c.execute(self.sql("UPDATE {p}meta SET value = ? WHERE name = 'link_secret'"), (secrets.token_hex(32),))

    # -- API keys -----------------------------------------------------------------------------------------------------

    def create_key(self, name: str, rate_per_min: float = 30.0, burst: int = 10, daily_quota: int = 1000) -> dict:
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        webhook_secret = new_secret()
        self.execute("INSERT INTO {p}api_keys (id, name, secret_hash, webhook_secret, rate_per_min, burst, "
                     "daily_quota, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     (key_id, name, hash_secret(secret), webhook_secret, float(rate_per_min), int(burst),
                      int(daily_quota), time.time()))
        return {"id": key_id, "name": name, "api_key": f"{KEY_PREFIX}{key_id}_{secret}",
                "webhook_secret": webhook_secret, "rate_per_min": rate_per_min, "burst": burst,
                "daily_quota": daily_quota}

    def authenticate(self, api_key: str) -> dict | None:
        parts = split_key(api_key)
        if parts is None:
            return None
        rows = self.query("SELECT id, name, secret_hash, webhook_secret, rate_per_min, burst, daily_quota, revoked "
                          "FROM {p}api_keys WHERE id = ?", (parts[0],))
        if not rows:
            hmac.compare_digest(hash_secret(parts[1]), "0" * 64)  # same work either way
            return None
        r = rows[0]
        if not hmac.compare_digest(hash_secret(parts[1]), r[2]) or r[7]:
            return None
        return {"id": r[0], "name": r[1], "webhook_secret": r[3], "rate_per_min": r[4], "burst": r[5],
                "daily_quota": r[6]}

    def key_revoked(self, key_id: str) -> bool:
        rows = self.query("SELECT revoked FROM {p}api_keys WHERE id = ?", (key_id,))
        return not rows or bool(rows[0][0])

    def revoke_key(self, key_id: str) -> bool:
        return self.execute("UPDATE {p}api_keys SET revoked = 1 WHERE id = ?", (key_id,)) > 0

    def key_secret(self, key_id: str) -> str | None:
        rows = self.query("SELECT webhook_secret FROM {p}api_keys WHERE id = ?", (key_id,))
        return rows[0][0] if rows else None

    # -- jobs ----------------------------------------------------------------------------------------------------------

    def _row(self, r: tuple) -> dict:
        d = dict(zip(JOB_COLUMNS, r))
        for c in JSON_COLUMNS:
            d[c] = json.loads(d[c]) if d[c] else None
        return d

    def insert_job(self, job: dict, daily_quota: int | None = None) -> str:
        """Insert a job row: 'inserted'; 'duplicate' when (key_id, idem_key) already exists (an idempotent retry);
        'over_quota' when the key already has `daily_quota` jobs in the last 24 h. The count and the insert are one
        transaction that holds the key's lock (PostgreSQL: the key's row; SQLite: the database's write lock), so
        several front-door processes cannot together go past a quota."""
        now = time.time()
        row = {**{c: None for c in JOB_COLUMNS}, "progress": 0.0, "webhook_attempts": 0, "created_at": now,
               "updated_at": now, "seq": 1, **job}
        for c in JSON_COLUMNS:
            row[c] = json.dumps(row[c]) if row[c] is not None else None
        cols = ", ".join(JOB_COLUMNS)
        marks = ", ".join("?" for _ in JOB_COLUMNS)
        try:
            with self.transaction() as c:
                if daily_quota is not None:
                    if self.postgres:
                        c.execute(self.sql("SELECT id FROM {p}api_keys WHERE id = ? FOR UPDATE"), (row["key_id"],))
                    if c.execute(self.sql(COUNT_SINCE), (row["key_id"], now - 86400)).fetchone()[0] >= daily_quota:
                        return "over_quota"  # (commits a transaction that wrote nothing)
                c.execute(self.sql(f"INSERT INTO {{p}}jobs ({cols}) VALUES ({marks})"),
                          tuple(row[col] for col in JOB_COLUMNS))
            return "inserted"
        except Exception as e:  # sqlite3.IntegrityError / psycopg.errors.UniqueViolation (rolled back)
            if "unique" in str(e).lower() or "UniqueViolation" in type(e).__name__:
                return "duplicate"
            raise

    def get_job(self, job_id: str) -> dict | None:
        rows = self.query(SELECT_JOBS + " WHERE id = ?", (job_id,))
        return self._row(rows[0]) if rows else None

    def job_by_idem(self, key_id: str, idem_key: str) -> dict | None:
        rows = self.query(SELECT_JOBS + " WHERE key_id = ? AND idem_key = ?",
                          (key_id, idem_key))
        return self._row(rows[0]) if rows else None

    def list_jobs(self, key_id: str, limit: int = 50, before: float | None = None) -> list[dict]:
        sql = SELECT_JOBS + " WHERE key_id = ? AND status <> 'accepting'"
        args: tuple = (key_id,)
        if before is not None:
            sql += " AND created_at < ?"
            args += (before,)
        return [self._row(r) for r in self.query(sql + " ORDER BY created_at DESC LIMIT ?", args + (int(limit),))]

    def count_since(self, key_id: str, since: float) -> int:
        return self.query(COUNT_SINCE, (key_id, since))[0][0]

    def stale_accepting(self, before: float, limit: int = 50) -> list[tuple[str, str | None]]:
        """(id, message) of job rows still 'accepting' since before `before`, each claimed for this caller (its
        updated_at moved to now, so another front door's sweep leaves it alone for a while)."""
        rows = self.query("SELECT id, message FROM {p}jobs WHERE status = 'accepting' AND updated_at < ? "
                          "ORDER BY updated_at LIMIT ?", (before, limit))
        return [(i, m) for i, m in rows if self.execute(
            "UPDATE {p}jobs SET updated_at = ? WHERE id = ? AND status = 'accepting' AND updated_at < ?",
            (time.time(), i, before))]

    def delete_job(self, job_id: str) -> None:
        self.execute("DELETE FROM {p}jobs WHERE id = ?", (job_id,))

    def set_status(self, job_id: str, status: str, only_from: tuple = ()) -> bool:
        sql, args = "UPDATE {p}jobs SET status = ?, updated_at = ?, seq = seq + 1 WHERE id = ?", (status, time.time(),
                                                                                                   job_id)
        if only_from:
            sql += " AND status IN (" + ", ".join("?" for _ in only_from) + ")"
            args += tuple(only_from)
        return self.execute(sql, args) > 0

    def apply_progress(self, job_id: str, fraction: float, node: str | None) -> bool:
        """A progress event: the job is running (unless it already finished: events may arrive late)."""
        return self.execute("UPDATE {p}jobs SET status = 'running', progress = ?, progress_node = ?, updated_at = ?, "
                            "seq = seq + 1 WHERE id = ? AND status IN ('queued', 'running')",
                            (max(0.0, min(1.0, fraction)), node, time.time(), job_id)) > 0

    def apply_result(self, job_id: str, result: dict) -> bool:
        """A result message (at least once: a duplicate finds the job finished and changes nothing). A `cancelled`
        result comes for a job cancelled with `sonicflow cancel` (one cancelled here is finished already)."""
        status = result.get("status") if result.get("status") in ("succeeded", "cancelled") else "failed"
        return self.execute(
            "UPDATE {p}jobs SET status = ?, progress = ?, result = ?, error = ?, updated_at = ?, seq = seq + 1, "
            + WEBHOOK_DUE +
            f"WHERE id = ? AND status NOT IN ({', '.join(repr(t) for t in TERMINAL)})",
            (status, 1.0 if status == "succeeded" else 0.0, json.dumps(result),
             json.dumps(result.get("error")) if result.get("error") else None, time.time(), time.time(),
             job_id)) > 0

    def cancel_job(self, job_id: str) -> bool:
        """An unfinished job becomes `cancelled` (its webhook due); False when it had finished (or was cancelled)."""
        now = time.time()
        return self.execute(
            "UPDATE {p}jobs SET status = 'cancelled', updated_at = ?, seq = seq + 1, "
            + WEBHOOK_DUE +
            "WHERE id = ? AND status IN ('accepting', 'queued', 'running')", (now, now, job_id)) > 0

    # -- webhooks ------------------------------------------------------------------------------------------------------

    def due_webhooks(self, now: float, limit: int, per_key: int, skip: list) -> list[dict]:
        """Up to `limit` webhooks due now, the oldest first, at most `per_key` of one API key (so one tenant's
        backlog does not fill the batch), leaving out the jobs in `skip` (being delivered). Claim the ones you send."""
        cols = ", ".join(JOB_COLUMNS)
        skipped = f" AND id NOT IN ({', '.join('?' for _ in skip)})" if skip else ""
        rows = self.query(f"SELECT {cols} FROM (SELECT {cols}, ROW_NUMBER() OVER (PARTITION BY key_id ORDER BY "
                          f"webhook_next_at) AS rank FROM {{p}}jobs WHERE webhook_state = 'pending' AND "
                          f"webhook_next_at <= ?{skipped}) due WHERE rank <= ? ORDER BY webhook_next_at LIMIT ?",
                          (now, *skip, per_key, limit))
        return [self._row(r) for r in rows]

    def claim_webhooks(self, jobs: list[dict], now: float, lease_s: float = 60.0) -> list[dict]:
        """Those of `jobs` (from due_webhooks) this caller now owns: each one's next attempt moved `lease_s` ahead, so
        front doors sharing the store do not both deliver it; a caller that dies mid-delivery leaves it due again
        when the lease ends. A job another caller claimed first is left out."""
        return [job for job in jobs if self.execute(
            "UPDATE {p}jobs SET webhook_next_at = ? WHERE id = ? AND webhook_state = 'pending' AND webhook_next_at = ?",
            (now + lease_s, job["id"], job["webhook_next_at"]))]

    def webhook_outcome(self, job_id: str, state: str, attempts: int, next_at: float | None, error: str | None):
        self.execute("UPDATE {p}jobs SET webhook_state = ?, webhook_attempts = ?, webhook_next_at = ?, "
                     "webhook_last_error = ? WHERE id = ?", (state, attempts, next_at, error, job_id))
