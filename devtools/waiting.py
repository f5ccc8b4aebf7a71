"""Polling for tests and tools: wait for a condition with a generous bound on a hang (never a timing assertion)."""
from __future__ import annotations

import time


def wait_until(predicate, timeout: float, what: str, poll: float = 0.2):
    """Poll until predicate() is truthy and return its value; raise AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"gave up waiting ({timeout:.0f} s) for: {what}")
