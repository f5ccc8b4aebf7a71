"""The front door's blocking work runs on bounded pools, one per kind (database, URL fetches, media checks and
storage), so a kind that stalls (a server that drips bytes) cannot take the threads the others need; `/healthz`
reads how backed up each pool is."""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager


class Pool:
    def __init__(self, name: str, threads: int):
        self.name, self.threads = name, threads
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix=f"sonicflow-{name}")
        self.pending = 0  # submitted and not finished (counted on the event loop's thread only)

    async def run(self, fn, *args):
        self.pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)
        finally:
            self.pending -= 1

    def state(self) -> dict:
        """Threads, work in flight, and whether it is backed up (more waiting than four rounds of its threads)."""
        return {"threads": self.threads, "pending": self.pending, "backed_up": self.pending > 4 * self.threads}

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


class Slots:
    """Admission for one kind of long work (URL fetches, event streams): at most `per_key` at once for one API key
    and `total` for everyone. `take` raises what `refuse(scope)` returns when either is used up; scope is 'key' or
    'total'."""

    def __init__(self, per_key: int, total: float, refuse):
        self.per_key, self.total, self.refuse = per_key, total, refuse
        self.by_key: dict[str, int] = {}
        self.used = 0

    @contextmanager
    def take(self, key_id: str):
        if self.by_key.get(key_id, 0) >= self.per_key:
            raise self.refuse("key")
        if self.used >= self.total:
            raise self.refuse("total")
        self.by_key[key_id] = self.by_key.get(key_id, 0) + 1
        self.used += 1
        try:
            yield
        finally:
            self.used -= 1
            self.by_key[key_id] -= 1
            if not self.by_key[key_id]:
                del self.by_key[key_id]
