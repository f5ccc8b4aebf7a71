"""The job store's schema as numbered forward migrations, applied in order when a JobStore opens the database.

The version lives in the meta table (`schema_version`). Each migration runs in its own transaction, together with
the version it brings, under a lock that every front door takes first (PostgreSQL: a transaction-level advisory lock
named after the table prefix; SQLite: the database's write lock, BEGIN IMMEDIATE), so front doors starting at once
migrate one after the other: the second finds the work done. A database written before versions existed reads as
version 0: migrations 1 and 2 are written to find its tables (and maybe its `message` column) already there.
A database newer than this code is refused at start: an older front door must not write a schema it does not know.
"""
from __future__ import annotations

import logging

log = logging.getLogger("sonicflow.api")


class SchemaTooNew(RuntimeError):
    """The job store was migrated by a newer SonicFlow than this one."""


def _v1_tables(run, real: str, postgres: bool) -> None:
    """The first release's tables (before job rows kept their message)."""
    run(f"""CREATE TABLE IF NOT EXISTS {{p}}api_keys (id TEXT PRIMARY KEY, name TEXT NOT NULL,
            secret_hash TEXT NOT NULL, webhook_secret TEXT NOT NULL, rate_per_min {real} NOT NULL,
            burst INTEGER NOT NULL, daily_quota INTEGER NOT NULL, created_at {real} NOT NULL,
            revoked INTEGER NOT NULL DEFAULT 0)""")
    run(f"""CREATE TABLE IF NOT EXISTS {{p}}jobs (id TEXT PRIMARY KEY, key_id TEXT NOT NULL, idem_key TEXT,
            fingerprint TEXT, status TEXT NOT NULL, progress {real} NOT NULL DEFAULT 0, progress_node TEXT,
            template TEXT NOT NULL, parameters TEXT, inputs TEXT, result TEXT, error TEXT, webhook_url TEXT,
            webhook_state TEXT, webhook_attempts INTEGER NOT NULL DEFAULT 0, webhook_next_at {real},
            webhook_last_error TEXT, created_at {real} NOT NULL, updated_at {real} NOT NULL,
            seq INTEGER NOT NULL DEFAULT 1)""")
    run("CREATE UNIQUE INDEX IF NOT EXISTS {p}jobs_idem ON {p}jobs (key_id, idem_key)")
    run("CREATE INDEX IF NOT EXISTS {p}jobs_key_created ON {p}jobs (key_id, created_at)")
    run("CREATE INDEX IF NOT EXISTS {p}jobs_webhook ON {p}jobs (webhook_state, webhook_next_at)")


def _v2_job_message(run, real: str, postgres: bool) -> None:
    """Job rows keep the message they are published as (the upkeep publishes unconfirmed rows again). A database
    from between the hardening change and versioning has the column already."""
    if postgres:
        run("ALTER TABLE {p}jobs ADD COLUMN IF NOT EXISTS message TEXT")
    elif "message" not in [r[1] for r in run("PRAGMA table_info({p}jobs)").fetchall()]:
        run("ALTER TABLE {p}jobs ADD COLUMN message TEXT")
    run("CREATE INDEX IF NOT EXISTS {p}jobs_status ON {p}jobs (status, updated_at)")


def _v3_rate_limits(run, real: str, postgres: bool) -> None:
    """Token buckets shared by every front door on this database (ratelimit.py)."""
    run(f"CREATE TABLE IF NOT EXISTS {{p}}rate_limits (name TEXT PRIMARY KEY, tokens {real} NOT NULL, "
        f"updated_at {real} NOT NULL)")


MIGRATIONS = (_v1_tables, _v2_job_message, _v3_rate_limits)  # migration n is MIGRATIONS[n - 1]
LATEST = len(MIGRATIONS)


def migrate(store) -> int:
    """Bring the store's tables to LATEST, one migration per transaction; returns the version found at start."""
    real = "DOUBLE PRECISION" if store.postgres else "REAL"
    found = None
    while True:
        with store.transaction() as c:
            def run(sql: str, args: tuple = ()):
                return c.execute(store.sql(sql), args)

            if store.postgres:  # held until this transaction ends; other prefixes are other locks
                run("SELECT pg_advisory_xact_lock(hashtext(?::text))", (f"sonicflow schema {store.p}",))
            run("CREATE TABLE IF NOT EXISTS {p}meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
            row = run("SELECT value FROM {p}meta WHERE name = 'schema_version'").fetchone()
            version = int(row[0]) if row else 0
            found = version if found is None else found
            if version > LATEST:
                raise SchemaTooNew(f"the job store's tables ({store.p}*) are at schema version {version}; this "
                                   f"SonicFlow knows versions up to {LATEST}: run the newer SonicFlow")
            if version == LATEST:
                return found
            MIGRATIONS[version](run, real, store.postgres)
            if row:
                run("UPDATE {p}meta SET value = ? WHERE name = 'schema_version'", (str(version + 1),))
            else:
                run("INSERT INTO {p}meta (name, value) VALUES ('schema_version', ?)", (str(version + 1),))
            log.info("job store %s*: schema migrated to version %d", store.p, version + 1)
