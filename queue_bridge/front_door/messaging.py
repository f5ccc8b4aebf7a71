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

from .. import BridgeClient, Broker, NotAccepted, Settings
from .jobstore import JobStore, StoreUnavailable

log = logging.getLogger("sonicflow.api")


class NotQueued(Exception):
    """The job was certainly not queued: the broker refused it, or it never left this process."""


class MaybeQueued(Exception):
    """The job was sent but its confirm did not come (in time, or the connection was lost): the broker may have it.
    `confirmed` is the future that still settles when the publishing connection finally answers."""

    def __init__(self, message: str, confirmed):
        super().__init__(message)
        self.confirmed = confirmed


class _Item:
    def __init__(self, send, fut, loop):
        self.send, self.fut, self.loop = send, fut, loop  # send(client): publish, confirmed
        self.state = "waiting"  # -> "cancelled" (by the waiter), or "connecting" -> "sending" (by a thread)


class Publisher:
    """A few threads, each with its own BridgeClient (pika connections are not thread-safe). publish() waits for the
    broker's confirm without blocking the event loop, and not for ever: at most `backlog` jobs wait for a thread,
    and a job waits at most `wait_s`. What it raises says whether the job may have reached the broker."""

    def __init__(self, settings: Settings, threads: int, backlog: int, wait_s: float, on_outcome=None):
        """`on_outcome(outcome)` hears how each job's publish ended: ok, refused (certainly not queued) or
        unconfirmed (maybe queued)."""
        self.settings, self.wait_s = settings, wait_s
        self.on_outcome = on_outcome or (lambda outcome: None)
        self.q: queue.Queue = queue.Queue(maxsize=backlog)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True, name=f"publisher-{i}") for i in range(threads)]
        for t in self.threads:
            t.start()

    def alive(self) -> bool:
        return all(t.is_alive() for t in self.threads)

    def state(self) -> dict:
        """Threads, jobs waiting for one, and whether the backlog is full (then submissions get 503)."""
        return {"threads": len(self.threads), "waiting": self.q.qsize(), "backed_up": self.q.full()}

    def _run(self):
        client = None
        while not self.stop.is_set():
            try:
                item = self.q.get(timeout=1.0)
            except queue.Empty:
                if client is not None:
                    try:
                        client.connection.process_data_events(0)  # heartbeats while idle
                    except Exception:  # noqa: BLE001 - lost while idle: the next job connects again
                        client = None
                continue
            with self.lock:
                if item.state == "cancelled":  # its waiter gave up before a thread was free: never sent
                    continue
                item.state = "connecting"
            err, client = self._send(item, client)
            if item.state != "cancelled":
                item.loop.call_soon_threadsafe(_settle, item.fut, err)
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - already gone
                pass

    def _send(self, item: _Item, client):
        """(None, client) once confirmed, else (NotQueued or MaybeQueued, client)."""
        maybe = False  # a copy went out on a connection that was then lost: the broker may have it
        err = None
        for _ in range(2):  # one reconnect (to the next node): a retransmit is safe, the job id is the key
            sending = False
            try:
                if client is None or not client.connection.is_open:
                    client = BridgeClient(self.settings)
                with self.lock:
                    if item.state == "cancelled":
                        return NotQueued("the wait ran out before the job was sent"), client
                    item.state = "sending"
                sending = True
                item.send(client)
                return None, client
            except NotAccepted as e:  # the broker refused this copy
                err = e
                break
            except Exception as e:  # noqa: BLE001 - connection lost: reconnect once
                err, maybe = e, maybe or sending
                try:
                    client and client.close()
                except Exception:  # noqa: BLE001 - already gone
                    pass
                client = None
        text = f"{type(err).__name__}: {err}"[:300]
        return (MaybeQueued(text, item.fut) if maybe else NotQueued(text)), client

    async def publish(self, job: dict) -> None:
        """Returns once the broker confirmed `job`; NotQueued when it certainly did not take it, MaybeQueued when
        it may have (sent, then no confirm within `wait_s`, or the connection lost after sending)."""
        try:
            await self._send_on_a_thread(lambda client: client.publish_job(job))
        except NotQueued:
            self.on_outcome("refused")
            raise
        except MaybeQueued:
            self.on_outcome("unconfirmed")
            raise
        self.on_outcome("ok")

    async def broadcast_cancel(self, job_id: str) -> None:
        """The cancel message to every worker (confirmed), with publish()'s answers."""
        await self._send_on_a_thread(lambda client: client.broadcast_cancel(job_id))

    async def _send_on_a_thread(self, send) -> None:
        loop = asyncio.get_running_loop()
        item = _Item(send, loop.create_future(), loop)
        item.fut.add_done_callback(lambda f: f.cancelled() or f.exception())  # a late outcome nobody awaits is fine
        try:
            self.q.put_nowait(item)
        except queue.Full:
            raise NotQueued(f"{self.q.maxsize} jobs already wait for the broker") from None
        try:
            await asyncio.wait_for(asyncio.shield(item.fut), self.wait_s)
        except asyncio.TimeoutError:
            with self.lock:
                if item.state in ("waiting", "connecting"):
                    item.state = "cancelled"
                    raise NotQueued(f"the broker did not take the job within {self.wait_s:g} s; it was not sent") \
                        from None
            raise MaybeQueued(f"the broker did not confirm within {self.wait_s:g} s", item.fut) from None

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
    (on this thread) after each change, `on_depth(queue, messages)` with the jobs queue's depth every 5 s."""

    def __init__(self, settings: Settings, store: JobStore, on_change, on_depth=None):
        super().__init__(daemon=True, name="follower")
        self.settings, self.store, self.on_change = settings, store, on_change
        self.on_depth = on_depth or (lambda queue, messages: None)
        self.topology = settings.topology()
        self.broker = Broker(settings.amqp_urls, settings.heartbeat, "sonicflow api follower")
        self.stop = threading.Event()
        self.connected = False

    def run(self):
        self.broker.run(self._session, self.stop, "follower", on_state=self._set_connected)

    def _set_connected(self, up: bool) -> None:
        if not up:  # up only once consuming (_session): a front door is not ready before its queues exist
            self.connected = False

    def _session(self, conn) -> None:
        t = self.topology
        ch = t.open_channel(conn)
        ch.queue_declare(t.api_results_queue, durable=True, arguments=t.quorum_args())
        ch.queue_bind(t.api_results_queue, t.results_exchange, "result.#")
        events = ch.queue_declare("", exclusive=True, auto_delete=True,
                                  arguments={"x-message-ttl": 60000}).method.queue
        ch.queue_bind(events, t.events_exchange, "progress.#")
        ch.basic_qos(prefetch_count=50)
        ch.basic_consume(t.api_results_queue, self._on_result)
        ch.basic_consume(events, self._on_event, auto_ack=True)
        self.connected = True
        next_depth = 0.0
        while not self.stop.is_set():
            conn.process_data_events(time_limit=0.3)
            if time.monotonic() > next_depth:
                self.on_depth(t.jobs_queue, ch.queue_declare(t.jobs_queue, passive=True).method.message_count)
                next_depth = time.monotonic() + 5

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
        except StoreUnavailable:  # the database is away: give the message back, try again shortly
            log.warning("follower: the job store is unavailable; the result of %s goes back to the queue", job_id)
            time.sleep(1.0)
            ch.basic_nack(method.delivery_tag, requeue=True)
            return
        except Exception:  # this document cannot be stored: requeued, it would stall every later one
            log.exception("follower: the result of %s cannot be stored; dropped", job_id[:128])
            changed = False
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
