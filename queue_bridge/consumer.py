"""One RabbitMQ consumer feeding one ComfyUI (one per GPU).

Prefetch 1; the job runs on its own thread while the connection's thread keeps serving heartbeats; the outcome
(publish the result / retry / dead-letter, then ack) goes back to the connection's thread through
`add_callback_threadsafe`. Results are published with publisher confirms *before* the job is acked. While ComfyUI is
down the consumer takes no jobs (it keeps answering dead letters). On stop it takes no more jobs and lets the running
one finish within the grace period, else interrupts it in ComfyUI and gives it back.
"""
from __future__ import annotations

import functools
import json
import logging
import threading
import time

from sonicflow_contract import (
    ATTEMPT_HEADER,
    DEAD_AT_HEADER,
    ERROR_CODE_HEADER,
    ERROR_MESSAGE_HEADER,
    LAST_ERROR_HEADER,
    LAST_MESSAGE_HEADER,
    WORKER_HEADER,
)

from .broker import Broker
from .comfy_run import ComfyExecutor
from .logs import log
from .metrics import Metrics
from .policy import Action, Outcome
from .protocol import cancelled_job_id
from .runner import JobRunner
from .settings import Settings
from .template import TemplateLibrary
from .topology import DEAD_KEY, REPLY_QUEUE_PREFIX

PERSISTENT = dict(delivery_mode=2, content_type="application/json")


class Consumer(threading.Thread):
    def __init__(self, settings: Settings, comfy_url: str, templates: TemplateLibrary, metrics: Metrics,
                 stop_event: threading.Event, index: int):
        super().__init__(name=f"consumer-{index}", daemon=True)
        self.s, self.metrics, self.stop_event = settings, metrics, stop_event
        self.topology = settings.topology()
        self.comfy_url = comfy_url
        self.broker = Broker(settings.amqp_urls, settings.heartbeat, f"sonicflow worker {settings.worker_id}")
        self.executor = ComfyExecutor(comfy_url, stop_event, settings.engine_version, progress=self._progress)
        self.runner = JobRunner(settings, self.executor, templates)
        self.connection = None
        self.channel = None
        self.job_thread: threading.Thread | None = None
        self.consumer_tag: str | None = None
        self.comfy_down = threading.Event()
        self.connects = 0

    # -- job thread side -------------------------------------------------------------------------------------------

    def _progress(self, job_id: str, data: dict) -> None:
        conn, ch = self.connection, self.channel
        body = json.dumps({"job_id": job_id, "type": "progress", **data}).encode()

        def publish():
            if ch is not None and ch.is_open:
                import pika

                ch.basic_publish(self.topology.events_exchange, f"progress.{job_id}", body,
                                 pika.BasicProperties(content_type="application/json"))
        try:
            conn.add_callback_threadsafe(publish)
        except Exception:  # noqa: BLE001 - progress is best effort
            pass

    def _work(self, conn, ch, method, props, body):
        self.metrics.in_flight.inc()
        t0 = time.monotonic()
        try:
            outcome = self.runner.process(body, props.headers or {})
        except Exception as e:  # noqa: BLE001 - whatever the message holds, it gets an outcome
            outcome = self.runner.unexpected(body, e)
        finally:
            self.metrics.in_flight.dec()
        self.metrics.duration.labels(outcome.label).observe(time.monotonic() - t0)
        try:
            conn.add_callback_threadsafe(functools.partial(self._finish, ch, method.delivery_tag, props, body, outcome))
        except Exception:  # noqa: BLE001 - the connection is gone: the broker requeues the job by itself
            log("ack_lost", logging.WARNING, job_id=outcome.job_id, attempt=outcome.attempt)

    # -- connection thread side ------------------------------------------------------------------------------------

    def _finish(self, ch, tag, props, body, outcome: Outcome) -> None:
        import pika

        if not ch.is_open:
            log("ack_lost", logging.WARNING, job_id=outcome.job_id, attempt=outcome.attempt)
            return
        try:
            if outcome.action is Action.REQUEUE or (outcome.error and outcome.error.code == "comfy_unavailable"):
                # Stop consuming *before* giving the job back: a message prefetched meanwhile would be returned on
                # cancel, and on RabbitMQ < 4.3 that return counts toward the delivery limit.
                self._cancel()
                self.comfy_down.set()
            if outcome.action is Action.ACK:
                self._publish_result(ch, outcome, props.reply_to)
                ch.basic_ack(tag)
            elif outcome.action is Action.RETRY:
                tier = self.topology.retry_tier(outcome.attempt)
                headers = {k: v for k, v in (props.headers or {}).items() if not k.startswith("x-")}
                headers.update({ATTEMPT_HEADER: outcome.attempt + 1, LAST_ERROR_HEADER: outcome.error.code,
                                LAST_MESSAGE_HEADER: outcome.error.message[:500]})
                ch.basic_publish(self.topology.retry_exchange, str(tier), body,
                                 pika.BasicProperties(headers=headers, reply_to=props.reply_to, **PERSISTENT),
                                 mandatory=True)
                ch.basic_ack(tag)
            elif outcome.action is Action.DEAD:
                self._publish_result(ch, outcome, props.reply_to)
                headers = dict(props.headers or {})
                headers.update({ERROR_CODE_HEADER: outcome.error.code,
                                ERROR_MESSAGE_HEADER: outcome.error.message[:1000],
                                ATTEMPT_HEADER: outcome.attempt, WORKER_HEADER: self.s.worker_id,
                                DEAD_AT_HEADER: int(time.time())})
                ch.basic_publish(self.topology.dlx, DEAD_KEY, body,
                                 pika.BasicProperties(headers=headers, **PERSISTENT), mandatory=True)
                ch.basic_ack(tag)
            elif outcome.action is Action.REQUEUE:
                ch.basic_reject(tag, requeue=True)  # counts toward x-delivery-limit (poison jobs)
            else:  # GIVE_BACK: put back for another worker (stopping)
                ch.basic_nack(tag, requeue=True)
            self.metrics.jobs.labels(outcome.label).inc()
            log("finished", job_id=outcome.job_id, attempt=outcome.attempt, outcome=outcome.label,
                code=outcome.error.code if outcome.error else None, timings=outcome.timings)
        except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as e:
            log("publish_refused", logging.ERROR, job_id=outcome.job_id, error=str(e))
            if ch.is_open:
                ch.basic_reject(tag, requeue=True)

    def _publish_result(self, ch, outcome: Outcome, reply_to: str | None) -> None:
        """To the results exchange (confirmed; the front door's queue and any binding), then to the submitter's
        reply queue when the job named one (`sonicflow submit --wait`: no binding per job, which costs a cluster-wide
        transaction). Only a broker-named queue: a job cannot send its result into another queue."""
        import pika

        ch.basic_publish(self.topology.results_exchange, f"result.{outcome.job_id}", outcome.result,
                         pika.BasicProperties(**PERSISTENT), mandatory=True)
        if reply_to and reply_to.startswith(REPLY_QUEUE_PREFIX):  # gone with its submitter: dropped
            ch.basic_publish("", reply_to, outcome.result, pika.BasicProperties(content_type="application/json"))

    def _on_dead_letter(self, ch, method, props, body):
        """A copy of a dead letter (<p>.dlq.notify; the original stays in <p>.dlq). For one the broker made, publish
        the job's failure result (confirmed) before the ack: a crash in between only sends the same result again.
        Runs on the connection's thread: a store lookup and write are short."""
        try:
            outcome = self.runner.dead_letter_result(body, props.headers or {}, self.topology.jobs_queue)
            if outcome is not None:
                self._publish_result(ch, outcome, props.reply_to)
                self.metrics.jobs.labels(outcome.label).inc()
            ch.basic_ack(method.delivery_tag)
        except Exception as e:  # noqa: BLE001 - store or publish failed: give the copy back later, not in a tight loop
            log("dead_letter_result_failed", logging.WARNING, exc_info=True, error=f"{type(e).__name__}: {e}")

            def retry():
                if ch.is_open:
                    ch.basic_nack(method.delivery_tag, requeue=True)
            try:
                self.connection.call_later(5, retry)
            except Exception:  # noqa: BLE001 - the connection is gone: the broker returns the copy by itself
                pass

    def _on_control(self, _ch, _method, _props, body):
        """A cancel (any worker may run the job): the executor interrupts it if it holds it, now or soon."""
        job_id = cancelled_job_id(body)
        if job_id:
            self.executor.request_cancel(job_id)
            log("cancel_heard", job_id=job_id, comfy=self.comfy_url)

    def _on_message(self, ch, method, props, body):
        self.job_thread = threading.Thread(target=self._work, args=(self.connection, ch, method, props, body),
                                           name=f"{self.name}-job", daemon=True)
        self.job_thread.start()

    def _consume(self):
        self.consumer_tag = self.channel.basic_consume(self.topology.jobs_queue, self._on_message)

    def _cancel(self):
        if self.consumer_tag and self.channel and self.channel.is_open:
            self.channel.basic_cancel(self.consumer_tag)
        self.consumer_tag = None

    def _busy(self) -> bool:
        return self.job_thread is not None and self.job_thread.is_alive()

    def _wait_for_comfy(self, pump) -> bool:
        """Until this consumer's ComfyUI answers (or stop); `pump` keeps the broker connection served meanwhile."""
        logged = False
        while not self.stop_event.is_set():
            if self.executor.comfy.ready():
                self.metrics.comfy_up.labels(self.comfy_url).set(1)
                self.metrics.set_health(self.name, comfy=True)
                if logged:
                    log("comfy_up", comfy=self.comfy_url)
                return True
            self.metrics.comfy_up.labels(self.comfy_url).set(0)
            self.metrics.set_health(self.name, comfy=False)
            if not logged:
                log("comfy_down", logging.WARNING, comfy=self.comfy_url)
                logged = True
            pump(1.0)
        return False

    def _update_depth(self):
        for q in (self.topology.jobs_queue, self.topology.dlq):
            ok = self.channel.queue_declare(q, passive=True)
            self.metrics.queue_depth.labels(q).set(ok.method.message_count)

    def run(self):
        self._wait_for_comfy(lambda s: self.stop_event.wait(s))
        self.broker.run(self._session, self.stop_event, "consumer",
                        on_state=lambda up: self.metrics.set_health(self.name, broker=up))

    def _session(self, connection) -> None:
        """One broker connection's life: consume until stop (then shut down cleanly) or until it is lost (raises)."""
        while self._busy():  # a job from a lost connection: let it finish (its result goes to the ledger), serving
            connection.process_data_events(time_limit=0.5)  # this connection's heartbeats meanwhile (minutes on a GPU)
        self.connection = connection
        self.channel = connection.channel()
        self.topology.declare(self.channel)
        self.channel.confirm_delivery()
        self.channel.basic_qos(prefetch_count=1)
        control = self.channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
        self.channel.queue_bind(control, self.topology.control_exchange)
        self.channel.basic_consume(control, self._on_control, auto_ack=True)
        self.connects += 1
        if self.connects > 1:
            self.metrics.reconnects.inc()
        log("connected", comfy=self.comfy_url, worker=self.s.worker_id, broker=self.broker.connected_node)
        self.comfy_down.clear()
        # Consumed from the start and while ComfyUI is down (only the jobs consumer waits for it): a poison job's last
        # crash leaves ComfyUI down exactly when its dead letter needs answering, and answering needs only the store.
        self.channel.basic_consume(self.topology.dlq_notify, self._on_dead_letter)
        if self._wait_for_comfy(lambda s: connection.process_data_events(time_limit=s)):
            self._consume()
        next_depth = 0.0
        while not self.stop_event.is_set():
            connection.process_data_events(time_limit=0.2)
            if time.monotonic() > next_depth:
                self._update_depth()
                next_depth = time.monotonic() + 5
            if self.comfy_down.is_set() and not self._busy():
                self._cancel()
                self._wait_for_comfy(lambda s: connection.process_data_events(time_limit=s))
                self.comfy_down.clear()
                if not self.stop_event.is_set():
                    self._consume()
        self._shutdown()

    def _shutdown(self):
        """Stop: take no more jobs; give the running one the grace period, else interrupt + give it back."""
        try:
            self._cancel()
            self.executor.grace_deadline = time.monotonic() + self.s.grace_s
            while self._busy():
                self.connection.process_data_events(time_limit=0.2)
            self.connection.process_data_events(time_limit=0.5)  # deliver the last ack
        except Exception as e:  # noqa: BLE001
            log("shutdown_error", logging.WARNING, error=f"{type(e).__name__}: {e}")
