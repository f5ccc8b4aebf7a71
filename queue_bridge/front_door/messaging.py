"""The front door's RabbitMQ side: publishing jobs with confirms, and following results and progress.

Results come from a durable quorum queue `<p>.api.results` bound to `result.#` (results that arrive while the front
door is down wait for it); progress from a private queue bound to `progress.#`. Both use the bridge's Broker: several
nodes tried in turn, reconnection with back-off.
"""
from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
import time

from .. import Broker, BridgeClient, NotAccepted, Settings
from .jobstore import JobStore

log = logging.getLogger("sonicflow.api")


class Publisher:
    """A few threads, each with its own BridgeClient (pika connections are not thread-safe); publish() waits for the
    broker's confirm without blocking the event loop."""

    def __init__(self, settings: Settings, threads: int):
        self.settings = settings
        self.q: queue.Queue = queue.Queue()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True, name=f"publisher-{i}") for i in range(threads)]
        for t in self.threads:
            t.start()

    def _run(self):
        client = None
        while not self.stop.is_set():
            try:
                job, fut, loop = self.q.get(timeout=1.0)
            except queue.Empty:
                if client is not None:
                    try:
                        client.connection.process_data_events(0)  # heartbeats while idle
                    except Exception:  # noqa: BLE001 - lost while idle: the next job connects again
                        client = None
                continue
            err = None
            for _ in range(2):  # one reconnect (to the next node): a retransmit is safe, the job id is the key
                try:
                    if client is None or not client.connection.is_open:
                        client = BridgeClient(self.settings)
                    client.publish_job(job)
                    err = None
                    break
                except NotAccepted as e:
                    err = e
                    break
                except Exception as e:  # noqa: BLE001 - connection lost: reconnect once
                    err = e
                    try:
                        client and client.close()
                    except Exception:  # noqa: BLE001 - already gone
                        pass
                    client = None
            loop.call_soon_threadsafe(_settle, fut, err)
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - already gone
                pass

    async def publish(self, job: dict) -> None:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self.q.put((job, fut, loop))
        await fut

    def close(self):
        self.stop.set()
        for t in self.threads:
            t.join(5)


def _settle(fut, err):
    if fut.done():
        return
    if err is None:
        fut.set_result(None)
    else:
        fut.set_exception(err)


class Follower(threading.Thread):
    """Consumes result messages and progress events into the job store; `on_change(job_id, terminal)` is called
    (on this thread) after each change."""

    def __init__(self, settings: Settings, store: JobStore, on_change):
        super().__init__(daemon=True, name="follower")
        self.settings, self.store, self.on_change = settings, store, on_change
        self.topology = settings.topology()
        self.broker = Broker(settings.amqp_urls, 30, "sonicflow api follower")
        self.stop = threading.Event()
        self.connected = False

    def run(self):
        self.broker.run(self._session, self.stop, "follower", on_state=self._set_connected)

    def _set_connected(self, up: bool) -> None:
        self.connected = up

    def _session(self, conn) -> None:
        import pika

        t = self.topology
        ch = conn.channel()
        try:
            ch.queue_declare(t.jobs_queue, passive=True)
        except pika.exceptions.ChannelClosedByBroker:
            ch = conn.channel()
            t.declare(ch)
        ch.queue_declare(t.api_results_queue, durable=True, arguments=t.quorum_args())
        ch.queue_bind(t.api_results_queue, t.results_exchange, "result.#")
        events = ch.queue_declare("", exclusive=True, auto_delete=True,
                                  arguments={"x-message-ttl": 60000}).method.queue
        ch.queue_bind(events, t.events_exchange, "progress.#")
        ch.basic_qos(prefetch_count=50)
        ch.basic_consume(t.api_results_queue, self._on_result)
        ch.basic_consume(events, self._on_event, auto_ack=True)
        while not self.stop.is_set():
            conn.process_data_events(time_limit=0.3)

    def _on_result(self, ch, method, _props, body):
        try:
            doc = json.loads(body)
            job_id = doc.get("job_id") if isinstance(doc, dict) else None
        except (ValueError, UnicodeDecodeError, RecursionError):
            ch.basic_ack(method.delivery_tag)
            return
        if not isinstance(job_id, str):
            ch.basic_ack(method.delivery_tag)
            return
        try:
            changed = self.store.apply_result(job_id, doc)
        except Exception:  # noqa: BLE001 - database away: give the message back, try again shortly
            log.exception("follower: storing the result of %s", job_id)
            time.sleep(1.0)
            ch.basic_nack(method.delivery_tag, requeue=True)
            return
        ch.basic_ack(method.delivery_tag)
        if changed:
            self.on_change(job_id, True)

    def _on_event(self, _ch, _method, _props, body):
        try:
            doc = json.loads(body)
            job_id = doc["job_id"]
            value, maximum = float(doc.get("value") or 0), float(doc.get("max") or 0)
            fraction = value / maximum if maximum > 0 else 0.0
            if self.store.apply_progress(job_id, fraction, str(doc.get("node") or "")[:64] or None):
                self.on_change(job_id, False)
        except Exception:  # noqa: BLE001 - progress is best effort
            pass
