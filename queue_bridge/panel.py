"""The bridge at a glance, for ComfyUI's SonicFlow panel (server_routes.py): queue depth, workers, dead letters.

Read with passive declares on a short-lived connection; when RabbitMQ cannot be reached the answer says so
(`"broker": "down"` and why) instead of failing, so the panel keeps working while the broker is away.
"""
from __future__ import annotations

import time

from .broker import Broker
from .settings import Settings

_cache: dict = {}


def bridge_state(settings: Settings | None = None, max_age_s: float = 2.0) -> dict:
    s = settings or Settings()
    key = (s.amqp_urls, s.prefix)
    hit = _cache.get(key)
    if hit and time.monotonic() - hit[0] < max_age_s:
        return hit[1]
    t = s.topology()
    out = {"broker": "up", "prefix": s.prefix, "checked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        import logging

        import pika

        logging.getLogger("pika").setLevel(logging.WARNING)  # ComfyUI logs at DEBUG: one read would log 40 lines
        conn = Broker(s.amqp_urls, name="sonicflow canvas panel").connect(heartbeat=0, socket_timeout=2)
    except ModuleNotFoundError as e:  # a canvas user's install: the bridge's packages are an extra
        out.update(broker="unavailable", error=f"the batch bridge needs the Python package '{e.name}': run "
                   "pip install '.[bridge]' in the SonicFlow folder, with ComfyUI's Python")
        _cache[key] = (time.monotonic(), out)
        return out
    except Exception as e:  # noqa: BLE001 - refused, timed out, bad credentials: the broker is down for us
        out.update(broker="down", error=f"{type(e).__name__}: {e}"[:300] or type(e).__name__)
        _cache[key] = (time.monotonic(), out)
        return out
    try:
        queues = {"jobs": t.jobs_queue, "dead_letters": t.dlq, "results": t.results_queue}
        for i in range(len(t.retry_delays_s)):
            queues[f"retry_{i}"] = t.retry_queue(i)
        counts = {}
        for name, q in queues.items():
            ch = conn.channel()
            try:
                ok = ch.queue_declare(q, passive=True).method
                counts[name] = {"messages": ok.message_count, "consumers": ok.consumer_count}
                ch.close()
            except pika.exceptions.ChannelClosedByBroker:
                counts[name] = None  # not declared yet (no worker ever ran with this prefix)
        jobs = counts.get("jobs") or {"messages": 0, "consumers": 0}
        out.update(queue_depth=jobs["messages"], workers=jobs["consumers"],
                   dead_letters=(counts.get("dead_letters") or {"messages": 0})["messages"],
                   retrying=sum(c["messages"] for n, c in counts.items() if n.startswith("retry_") and c),
                   declared=counts.get("jobs") is not None, queues=counts)
    except Exception as e:  # noqa: BLE001 - lost while reading: the answer says so, still a 200
        out.update(broker="down", error=f"{type(e).__name__}: {e}"[:300])
    finally:
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - already gone
            pass
    _cache[key] = (time.monotonic(), out)
    return out
