"""Rate limits: a token bucket per API key (and kind of request), kept in the job store, so every front door on one
database draws from the same bucket: N processes together allow the key's rate, not N times it.

A bucket is one row (tokens, updated_at). Taking a token is a single UPDATE that refills the bucket for the time
since its last change and takes one only if one is there; the database applies concurrent UPDATEs of a row one
after the other (PostgreSQL re-checks the condition on the row the first one wrote), so two front doors cannot both
take the last token. On SQLite the same statement runs under the database file's write lock: it holds across the
processes of one machine (SQLite is a single-host store anyway). Time is each process's clock: a few milliseconds
of skew between hosts only moves a refill by as much, and a bucket never goes back in time.
"""
from __future__ import annotations

import time


class RateLimiter:
    def __init__(self, store):
        self.store = store
        least, greatest = ("LEAST", "GREATEST") if store.postgres else ("MIN", "MAX")
        available = f"{least}(?, tokens + {greatest}(0, ? - updated_at) * ?)"
        self._take = (f"UPDATE {{p}}rate_limits SET tokens = {available} - 1, updated_at = {greatest}(updated_at, ?) "
                      f"WHERE name = ? AND {available} >= 1")

    def take(self, name: str, rate_per_min: float, burst: float) -> float:
        """0 when a token was taken, else the seconds until one will be there (blocking: run it off the loop)."""
        now, per_s = time.time(), max(rate_per_min, 1e-6) / 60.0
        for _ in range(2):
            if self.store.execute(self._take, (burst, now, per_s, now, name, burst, now, per_s)):
                return 0.0
            # no row yet (a new bucket starts full, then the UPDATE takes from it), or the row is short of a token
            if not self.store.execute("INSERT INTO {p}rate_limits (name, tokens, updated_at) VALUES (?, ?, ?) "
                                      "ON CONFLICT (name) DO NOTHING", (name, float(burst), now)):
                break
        rows = self.store.query("SELECT tokens, updated_at FROM {p}rate_limits WHERE name = ?", (name,))
        tokens, updated = rows[0] if rows else (0.0, now)
        available = min(burst, tokens + max(0.0, now - updated) * per_s)
        return max(1.0 - available, 1e-3) / per_s  # never 0: the UPDATE found no token
