"""The RabbitMQ topology, declared idempotently by every worker and client (RabbitMQ 3.10 to 4.x; on 4.x the queues
people read keep its default delivery limit of 20 unless a policy lifts it: docs/scaling.md).

    <p>.jobs      exchange (direct)  -> queue <p>.jobs (quorum, x-delivery-limit, at-least-once dead-lettering)
    <p>.dlx       exchange (direct)  -> queue <p>.dlq  (quorum): malformed, exhausted and poison jobs
                                     -> queue <p>.dlq.notify (quorum): a copy of each, for the workers to send a
                                        failure result for those the broker dead-lettered by itself
    <p>.retry     exchange (direct)  -> queues <p>.retry.<i> (quorum, x-message-ttl = delay i) that dead-letter
                                        back into <p>.jobs: retry with a growing delay
    <p>.results   exchange (topic)   -> queue <p>.results (quorum, bound result.#, at most `results_max` messages:
                                        the oldest are dropped, so a queue nobody reads cannot fill the broker);
                                        routing key result.<job_id>
    <p>.events    exchange (topic)   progress events, routing key progress.<job_id> (bind your own queue)
    <p>.control   exchange (fanout)  cancel messages; every worker consumer binds an exclusive, auto-deleted queue

Every queue that dead-letters uses `x-dead-letter-strategy=at-least-once` with `x-overflow=reject-publish` (the
default drop-head silently falls back to at-most-once), so a dead-lettered job is kept until the target confirms.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from .logs import log

JOB_KEY = "job"
DEAD_KEY = "dead"
REPLY_QUEUE_PREFIX = "amq.gen-"  # how RabbitMQ names a queue declared without a name (a submitter's reply queue)


@dataclass(frozen=True)
class Topology:
    prefix: str = "sonicflow"
    delivery_limit: int = 5
    retry_delays_s: tuple = (5.0, 30.0, 120.0, 600.0)
    results_max: int = 10000
    quorum_size: int = 0  # replicas of each queue (x-quorum-initial-group-size); 0: the broker's default

    @property
    def jobs_exchange(self): return f"{self.prefix}.jobs"
    @property
    def jobs_queue(self): return f"{self.prefix}.jobs"
    @property
    def dlx(self): return f"{self.prefix}.dlx"
    @property
    def dlq(self): return f"{self.prefix}.dlq"
    @property
    def dlq_notify(self): return f"{self.prefix}.dlq.notify"
    @property
    def retry_exchange(self): return f"{self.prefix}.retry"
    @property
    def results_exchange(self): return f"{self.prefix}.results"
    @property
    def results_queue(self): return f"{self.prefix}.results"
    @property
    def events_exchange(self): return f"{self.prefix}.events"
    @property
    def control_exchange(self): return f"{self.prefix}.control"
    @property
    def api_results_queue(self): return f"{self.prefix}.api.results"  # the front door's own, declared by it

    def retry_queue(self, i: int) -> str:
        return f"{self.prefix}.retry.{i}"

    def retry_tier(self, attempt: int) -> int:
        """Delay tier for the retry after `attempt` (1-based): grows with each attempt, capped at the longest."""
        return min(max(attempt, 1), len(self.retry_delays_s)) - 1

    def queue_names(self) -> list[str]:
        return [self.jobs_queue, self.dlq, self.dlq_notify, self.results_queue] + [self.retry_queue(i)
                                                                  for i in range(len(self.retry_delays_s))]

    def exchange_names(self) -> list[str]:
        return [self.jobs_exchange, self.dlx, self.retry_exchange, self.results_exchange, self.events_exchange,
                self.control_exchange]

    def quorum_args(self, **args) -> dict:
        """Arguments of a quorum queue of this topology (the front door's own results queue uses them too)."""
        size = {"x-quorum-initial-group-size": self.quorum_size} if self.quorum_size else {}
        return {"x-queue-type": "quorum", **size, **args}

    def _dead_letters_to(self, exchange: str, key: str) -> dict:
        return {"x-dead-letter-exchange": exchange, "x-dead-letter-routing-key": key,
                "x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}

    def jobs_queue_args(self) -> dict:
        return self.quorum_args(**{"x-delivery-limit": self.delivery_limit},
                                **self._dead_letters_to(self.dlx, DEAD_KEY))

    def results_queue_args(self) -> dict:
        # drop-head: a full queue drops its oldest result rather than refuse the worker's publish (which would send
        # the job back to the queue); a success stays in the store's ledger, a failure in the dead-letter queue
        return self.quorum_args(**{"x-max-length": self.results_max, "x-overflow": "drop-head"})

    def _declare_results_queue(self, channel) -> None:
        """On a channel of its own: a queue declared by an older version without the bound makes RabbitMQ refuse
        the declaration (PRECONDITION_FAILED closes the channel). That queue is then used as it is, and the log says
        how to bound it (docs/queue.md, "Upgrading")."""
        import pika.exceptions

        side = channel.connection.channel()
        try:
            side.queue_declare(self.results_queue, durable=True, arguments=self.results_queue_args())
            side.close()
        except pika.exceptions.ChannelClosedByBroker as e:
            if e.reply_code != 406:
                raise
            log("results_queue_unbounded", logging.WARNING, queue=self.results_queue,
                fix="no length bound (an older version declared it): bound it with a RabbitMQ policy, or delete "
                    "it and let a worker declare it again; docs/queue.md, Upgrading")

    def open_channel(self, connection):
        """A channel on `connection` with the topology in place: as the workers declared it if it exists (their
        delivery limit wins), else declared here."""
        import pika.exceptions

        channel = connection.channel()
        try:
            channel.queue_declare(self.jobs_queue, passive=True)
        except pika.exceptions.ChannelClosedByBroker:
            channel = connection.channel()
            self.declare(channel)
        return channel

    def declare(self, channel) -> None:
        """Declare everything (idempotent). A queue that already exists with other arguments makes RabbitMQ close
        the channel with PRECONDITION_FAILED: TopologyMismatch says which one and what to do."""
        import pika.exceptions

        try:
            channel.exchange_declare(self.jobs_exchange, "direct", durable=True)
            channel.exchange_declare(self.dlx, "direct", durable=True)
            channel.exchange_declare(self.retry_exchange, "direct", durable=True)
            channel.exchange_declare(self.results_exchange, "topic", durable=True)
            channel.exchange_declare(self.events_exchange, "topic", durable=True)
            channel.exchange_declare(self.control_exchange, "fanout", durable=True)
            channel.queue_declare(self.dlq, durable=True, arguments=self.quorum_args())
            channel.queue_bind(self.dlq, self.dlx, DEAD_KEY)
            # The broker dead-letters poison jobs (x-delivery-limit) without any worker seeing it. The DLQ must keep
            # them for `dlq list|replay`, so a consumer cannot take them from there: a second queue on the same
            # key gets a copy that the workers consume to publish the job's failure result.
            channel.queue_declare(self.dlq_notify, durable=True, arguments=self.quorum_args())
            channel.queue_bind(self.dlq_notify, self.dlx, DEAD_KEY)
            channel.queue_declare(self.jobs_queue, durable=True, arguments=self.jobs_queue_args())
            channel.queue_bind(self.jobs_queue, self.jobs_exchange, JOB_KEY)
            for i, delay in enumerate(self.retry_delays_s):
                channel.queue_declare(self.retry_queue(i), durable=True, arguments=self.quorum_args(
                    **{"x-message-ttl": int(delay * 1000)}, **self._dead_letters_to(self.jobs_exchange, JOB_KEY)))
                channel.queue_bind(self.retry_queue(i), self.retry_exchange, str(i))
            self._declare_results_queue(channel)
            channel.queue_bind(self.results_queue, self.results_exchange, "result.#")
        except pika.exceptions.ChannelClosedByBroker as e:
            if e.reply_code == 406:
                raise TopologyMismatch(f"{e.reply_text}. A queue or exchange of prefix '{self.prefix}' exists with "
                                       "other settings: give every worker and front door of the prefix the same "
                                       "--delivery-limit, --retry-delays and --quorum-size, or delete it "
                                       "(rabbitmqctl delete_queue NAME) once it is drained, or use another --prefix"
                                       ) from e
            raise

    def delete(self, channel) -> None:
        """Remove every queue and exchange of this prefix (the tests clean up with it)."""
        for q in self.queue_names():
            channel.queue_delete(q)
        for x in self.exchange_names():
            channel.exchange_delete(x)


class TopologyMismatch(RuntimeError):
    pass
