"""Rate limits: token buckets per API key."""
from __future__ import annotations

import time


class Buckets:
    """Token buckets per key (per front-door process)."""

    def __init__(self):
        self.state: dict = {}

    def take(self, name: str, rate_per_min: float, burst: float) -> float:
        """0 when a token was taken, else the seconds until one is available."""
        now = time.monotonic()
        tokens, last = self.state.get(name, (float(burst), now))
        tokens = min(float(burst), tokens + (now - last) * rate_per_min / 60.0)
        if tokens >= 1.0:
            self.state[name] = (tokens - 1.0, now)
            return 0.0
        self.state[name] = (tokens, now)
        return (1.0 - tokens) * 60.0 / max(rate_per_min, 1e-6)
