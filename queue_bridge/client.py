"""Submitting jobs (publisher confirms, mandatory routing), waiting for results, queue status, the dead-letter queue."""
from __future__ import annotations

import json
import time
import uuid

from sonicflow_contract import ATTEMPT_HEADER, ERROR_CODE_HEADER, ERROR_MESSAGE_HEADER, REPLAYED_HEADER

from .broker import Broker, close_quietly
from .protocol import BROKER_REASONS, cancel_message
from .settings import Settings
from .topology import JOB_KEY


class NotAccepted(Exception):
    """The broker did not take the job (unroutable, or nacked): it was NOT queued; the caller must act."""


class Unconfirmed(Exception):
    """No broker node confirmed the job (each connection was lost before its confirm): it may or may not be queued.
    Publishing the same job again is safe: its job id is the idempotency key."""


class BridgeClient:
    """A connection for submitting and inspecting. It starts at one node of the cluster and moves to the next when
    its connection is lost while publishing or waiting for a result (`Broker`)."""

    def __init__(self, settings: Settings | None = None, declare: bool = True):
        self.settings = settings or Settings()
        self.topology = self.settings.topology()
        self.broker = Broker(self.settings.amqp_urls, self.settings.heartbeat, "sonicflow client")
        self.connects = 0  # connections opened: a reply queue lives only as long as the connection that made it
        self._reply_queue: str | None = None
        self._open(declare)

    def _open(self, declare: bool = False) -> None:
        self.connection = self.broker.connect()
        self.connects += 1
        self._reply_queue = None
        self.channel = self.topology.open_channel(self.connection) if declare else self.connection.channel()
        self.channel.confirm_delivery()

    def _reopen(self) -> None:
        """A new connection, through the next node first."""
        close_quietly(self.connection)
        self._open()

    def close(self):
        close_quietly(self.connection)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def publish_job(self, job: dict, routing_key: str = JOB_KEY, headers: dict | None = None,
                    reply_to: str | None = None) -> None:
        """Publish one job; returns once the cluster confirmed it (replicated to a quorum), else NotAccepted (refused:
        not queued) or Unconfirmed (not known). A connection lost before the confirm is tried again through the
        next node, each node once: a copy that did arrive costs nothing, the job id being the idempotency key."""
        import pika

        body = json.dumps(job).encode() if isinstance(job, dict) else job
        props = pika.BasicProperties(delivery_mode=2, content_type="application/json", headers=headers or None,
                                     message_id=job.get("job_id") if isinstance(job, dict) else None,
                                     reply_to=reply_to)
        lost = []
        for attempt in range(len(self.broker.urls) + 1):
            try:
                if attempt:
                    self._reopen()
                self.channel.basic_publish(self.topology.jobs_exchange, routing_key, body, props, mandatory=True)
                return
            except pika.exceptions.UnroutableError as e:
                raise NotAccepted(f"unroutable: no queue is bound to {self.topology.jobs_exchange} with key "
                                  f"'{routing_key}' ({e}); the job was not queued") from e
            except (pika.exceptions.NackError, pika.exceptions.ChannelClosedByBroker) as e:
                raise NotAccepted(f"the broker refused the job ({e}); it was not queued") from e
            except (pika.exceptions.AMQPConnectionError, pika.exceptions.ChannelWrongStateError) as e:
                lost.append(f"{type(e).__name__}: {e}"[:200])
        raise Unconfirmed("no broker node confirmed the job (" + "; ".join(lost) + "); it may or may not be "
                          "queued: publishing it again with the same job id is safe")

    def broadcast_cancel(self, job_id: str) -> None:
        """Tell every connected worker to interrupt `job_id` if it runs it (confirmed). The store's cancel marker
        must be written first: it is what a worker that is not listening now finds later."""
        import pika

        self.channel.exchange_declare(self.topology.control_exchange, "fanout", durable=True)  # workers may be older
        self.channel.basic_publish(self.topology.control_exchange, "", cancel_message(job_id),
                                   pika.BasicProperties(content_type="application/json"))

    def reply_queue(self) -> str:
        """This connection's private queue for results: a job published with it as `reply_to` has its result sent
        there too (declared once per connection; no binding per job, which on a cluster is a transaction of all
        nodes)."""
        if self._reply_queue is None:
            self._reply_queue = self.channel.queue_declare("", exclusive=True).method.queue
        return self._reply_queue

    def wait_result(self, queue: str, timeout: float = 3600.0, job_id: str | None = None) -> dict | None:
        """The next result on `queue` (pushed by the broker as soon as it is published), of `job_id` if given (others,
        e.g. of an earlier wait that gave up, are dropped), or None after `timeout`."""
        deadline = time.monotonic() + timeout
        try:
            for method, _props, body in self.channel.consume(queue, inactivity_timeout=min(0.25, max(0.01, timeout))):
                if time.monotonic() > deadline:
                    return None
                if method is None:
                    continue
                self.channel.basic_ack(method.delivery_tag)
                result = json.loads(body)
                if job_id is None or result.get("job_id") == job_id:
                    return result
        finally:
            if self.channel.is_open:  # (after a lost connection pika's cancel fails on its own bookkeeping)
                self.channel.cancel()  # unacked deliveries go back to the queue for the next call
        return None

    def submit(self, job: dict, wait: bool = False, timeout: float = 3600.0) -> dict | None:
        """Publish `job` (confirmed); with `wait`, return its result message (None after `timeout`). A connection
        lost while waiting takes the private reply queue with it: the job is asked for again through another node
        (its id makes that safe: a job that ran is answered from the ledger)."""
        if not wait:
            self.publish_job(job)
            return None
        import pika

        deadline = time.monotonic() + timeout
        for _ in range(len(self.broker.urls) + 1):
            try:
                connects = self.connects
                q = self.reply_queue()
                self.publish_job(job, reply_to=q)
                if self.connects != connects:  # published through a new connection: its reply queue is gone
                    continue
                return self.wait_result(q, max(0.01, deadline - time.monotonic()), job["job_id"])
            except (pika.exceptions.AMQPConnectionError, pika.exceptions.ChannelWrongStateError):
                try:
                    self._reopen()
                except pika.exceptions.AMQPConnectionError:
                    pass  # no node now: the next turn goes through each node again, the last ends in Unconfirmed
        raise Unconfirmed(f"job {job['job_id']}: the connection was lost {len(self.broker.urls) + 1} times while "
                          "waiting for its result; asking again with the same job id is safe")

    def _declared(self, queue: str):
        """The queue's Declare-Ok, or None when it does not exist (the broker closed the channel: a new one takes its
        place)."""
        import pika

        try:
            return self.channel.queue_declare(queue, passive=True).method
        except pika.exceptions.ChannelClosedByBroker:
            self.channel = self.connection.channel()
            self.channel.confirm_delivery()
            return None

    def status(self) -> dict:
        """Messages and consumers of each queue of the prefix (queues that do not exist, e.g. retry tiers the
        workers were not configured with, are left out)."""
        out = {}
        names = self.topology.queue_names() + [self.topology.retry_queue(i) for i in
                                               range(len(self.topology.retry_delays_s), 12)]
        for q in names:
            if ok := self._declared(q):
                out[q] = {"messages": ok.message_count, "consumers": ok.consumer_count}
        return out

    # -- dead-letter queue -----------------------------------------------------------------------------------------

    @staticmethod
    def describe_dead(props, body: bytes) -> dict:
        headers = props.headers or {}
        code = headers.get(ERROR_CODE_HEADER)
        message = headers.get(ERROR_MESSAGE_HEADER)
        if not code:  # dead-lettered by the broker itself (x-death)
            deaths = headers.get("x-death") or []
            code = (headers.get("x-first-death-reason") or (deaths[0].get("reason") if deaths else None) or "unknown")
            code = code.decode() if isinstance(code, bytes) else code
            message = BROKER_REASONS.get(code, f"dead-lettered by the broker: {code}")
        try:
            doc = json.loads(body)
            job_id = doc.get("job_id") if isinstance(doc, dict) else None
        except (ValueError, UnicodeDecodeError, RecursionError):
            job_id = None
        return {"job_id": job_id, "code": code, "message": message, "attempt": headers.get(ATTEMPT_HEADER),
                "deliveries": headers.get("x-delivery-count"), "body": body.decode("utf-8", "replace")[:2000]}

    def has_dlq(self) -> bool:
        """Whether the prefix's dead-letter queue exists (a worker or front door declared it)."""
        return self._declared(self.topology.dlq) is not None

    def dlq_list(self, limit: int = 1000) -> list[dict]:
        """Every dead-lettered job (up to `limit`), left in the queue."""
        if not self.has_dlq():
            return []
        items, tags = [], []
        for _ in range(limit):
            method, props, body = self.channel.basic_get(self.topology.dlq, auto_ack=False)
            if method is None:
                break
            tags.append(method.delivery_tag)
            items.append(self.describe_dead(props, body))
        if tags:
            self.channel.basic_nack(tags[-1], multiple=True, requeue=True)
        return items

    def dlq_replay(self, job_ids: set | None = None, code: str | None = None, limit: int = 1000) -> list[str]:
        """Publish dead-lettered jobs (all, or those with these ids / this code) back to the jobs queue, attempt 1.
        Each is acked in the DLQ only after the jobs queue confirmed its copy."""
        import pika

        if not self.has_dlq():
            return []
        replayed, keep = [], []
        for _ in range(limit):
            method, props, body = self.channel.basic_get(self.topology.dlq, auto_ack=False)
            if method is None:
                break
            d = self.describe_dead(props, body)
            if (job_ids and d["job_id"] not in job_ids) or (code and d["code"] != code):
                keep.append(method.delivery_tag)
                continue
            self.channel.basic_publish(self.topology.jobs_exchange, JOB_KEY, body, pika.BasicProperties(
                delivery_mode=2, content_type="application/json", headers={REPLAYED_HEADER: 1}),
                mandatory=True)
            self.channel.basic_ack(method.delivery_tag)
            replayed.append(d["job_id"])
        for tag in keep:
            self.channel.basic_nack(tag, requeue=True)
        return replayed


def new_job_id() -> str:
    return uuid.uuid4().hex


__all__ = ["BridgeClient", "NotAccepted", "Unconfirmed", "new_job_id"]
