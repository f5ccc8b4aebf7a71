"""The bridge worker: one RabbitMQ consumer per ComfyUI instance (one instance per GPU).

Per consumer: prefetch 1; the job runs on its own thread while the connection's thread keeps serving heartbeats;
the outcome (publish result / retry / dead-letter, then ack) goes back to the connection's thread through
`add_callback_threadsafe`. Results are published with publisher confirms *before* the job is acked, and the result
is committed to the store's ledger before that, so a crash anywhere costs at most a re-run that the ledger or the
result cache answers. Lost broker connections are re-opened with back-off; SIGTERM stops taking jobs, lets the
running one finish within the grace period, else interrupts it in ComfyUI and requeues it, then exits.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import random
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from importlib import metadata

import requests

from .comfy_client import ComfyClient, PromptFailed, PromptRejected
from .config import Settings
from .inputs import InputPolicy, fetch_input
from .ops import Metrics, log
from .protocol import BROKER_REASONS, JobError, failure_result, job_id_hint, parse_job, success_result
from .store import open_store
from .template import (FILE_KINDS, TemplateLibrary, check_interface, check_values, fill, resolved_parameters,
                       results_of)
from .topology import DEAD_KEY

PROMPT_NS = uuid.UUID("6f1c3f4e-5b1d-4a53-9a59-7c2b8e6d0a11")
ATTEMPT_HEADER = "x-sonicflow-attempt"
CONTENT_TYPES = {".mp4": "video/mp4", ".webm": "video/webm", ".png": "image/png", ".jpg": "image/jpeg",
                 ".wav": "audio/wav", ".json": "application/json", ".txt": "text/plain"}


@dataclass
class Outcome:
    action: str  # "ack" (result published first), "retry", "dead", "requeue" (reject: counts as a delivery), "nack"
    result: bytes | None = None  # the result message body
    error: JobError | None = None
    attempt: int = 1
    job_id: str | None = None
    label: str = "succeeded"  # metrics outcome
    timings: dict = field(default_factory=dict)


def prompt_id_for(job_id: str, attempt: int, salt: str = "") -> str:
    return str(uuid.uuid5(PROMPT_NS, f"{job_id}/{attempt}{salt}"))


def _package_version() -> str:
    try:
        return metadata.version("sonicflow")
    except metadata.PackageNotFoundError:
        return "dev"


class Interrupted(Exception):
    """SIGTERM arrived and the grace period ran out: the job was interrupted in ComfyUI."""


class JobRunner:
    """Runs one job against one ComfyUI; knows nothing about AMQP."""

    def __init__(self, settings: Settings, comfy_url: str, templates: TemplateLibrary, stop_event: threading.Event,
                 progress=None):
        self.s, self.comfy = settings, ComfyClient(comfy_url, timeout=30)
        self.templates, self.stop_event, self.progress = templates, stop_event, progress or (lambda *a: None)
        self.policy = InputPolicy(input_root=settings.input_root or None, http_allow=settings.http_allow,
                                  allow_private_networks=settings.allow_private_networks,
                                  max_bytes=settings.max_input_bytes, s3_endpoint=settings.s3_endpoint)
        self.default_store = open_store(settings.store_url, settings.s3_endpoint)
        self._object_info: dict = {}
        self._engine_version: str | None = None
        self.client_id = f"sonicflow-bridge-{uuid.uuid4().hex[:8]}"
        self.grace_deadline: float | None = None

    # -- helpers ---------------------------------------------------------------------------------------------------

    def object_info(self, classes) -> dict:
        for c in classes:
            if c not in self._object_info:
                self._object_info.update(self.comfy.object_info(c))
        return self._object_info

    def engine_version(self) -> str:
        if self._engine_version is None:
            comfy = self.comfy.system_stats().get("system", {}).get("comfyui_version", "?")
            self._engine_version = f"sonicflow={_package_version()};comfyui={comfy};{self.s.engine_version}"
        return self._engine_version

    def store_for(self, job):
        if not job.output_url:
            return self.default_store
        allowed = [self.default_store.url] + self.s.output_allow
        if not any(job.output_url.startswith(a) for a in allowed) or ".." in job.output_url:
            raise JobError("output_not_allowed", f"{job.output_url} is not under {', '.join(allowed)}")
        return open_store(job.output_url, self.s.s3_endpoint)

    # -- the job ---------------------------------------------------------------------------------------------------

    def process(self, body: bytes, headers: dict, redelivered: bool) -> Outcome:
        t0 = time.monotonic()
        timings: dict = {}
        attempt = int((headers or {}).get(ATTEMPT_HEADER, 1))
        delivery = int((headers or {}).get("x-delivery-count", 0)) + 1
        job_id, job, max_attempts = job_id_hint(body), None, self.s.max_attempts

        def lap(name, since):
            timings[name] = time.monotonic() - since
            return time.monotonic()

        try:
            job = parse_job(body)
            t = self.templates.get(job.template)
            max_attempts = job.max_attempts or t.max_attempts
            check_interface(t, job.inputs, job.parameters)
            store = self.store_for(job)
            ledger_key = f"ledger/{job.job_id}.json"
            done = store.get(ledger_key)
            if done is not None:  # already committed by an earlier delivery: send the same result again
                log("duplicate", job_id=job.job_id, attempt=attempt, delivery=delivery)
                return Outcome("ack", done, attempt=attempt, job_id=job.job_id, label="duplicate")
            s = time.monotonic()
            fetched = {name: fetch_input(name, t.inputs[name].kind, spec, self.policy)
                       for name, spec in job.inputs.items()}
            s = lap("fetch_inputs", s)
            try:
                info = self.object_info({n["class_type"] for n in t.prompt.values()})
                engine_version = self.engine_version()
            except requests.RequestException as e:
                raise JobError("comfy_unavailable", f"{self.comfy.base}: {e}") from None
            check_values(t, job.parameters, info)
            params = resolved_parameters(t, job.parameters)
            key = hashlib.sha256(json.dumps({"inputs": {n: f.sha256 for n, f in sorted(fetched.items())},
                                             "parameters": params, "template": t.sha256, "engine": engine_version},
                                            sort_keys=True).encode()).hexdigest()
            cached = store.get(f"cache/{key}.json")
            s = lap("cache_lookup", s)
            if cached is not None:
                entry = json.loads(cached)
                timings["total"] = time.monotonic() - t0
                result = success_result(job, entry["outputs"], entry["values"], entry.get("engine"), timings, True,
                                        attempt, self.s.worker_id)
                return self._commit(store, ledger_key, job, result, attempt, "cached")

            outputs, values, engine = self._run_in_comfy(job, t, fetched, info, attempt, delivery, timings, store)
            s = time.monotonic()
            store.put_if_absent(f"cache/{key}.json", json.dumps(
                {"outputs": outputs, "values": values, "engine": engine, "job_id": job.job_id}, sort_keys=True).encode())
            lap("cache_store", s)
            timings["total"] = time.monotonic() - t0
            result = success_result(job, outputs, values, engine, timings, False, attempt, self.s.worker_id)
            return self._commit(store, ledger_key, job, result, attempt, "succeeded")
        except Interrupted:
            return Outcome("nack", attempt=attempt, job_id=job_id, label="requeued")
        except JobError as err:
            return self._failed(err, body, job, job_id, attempt, delivery, max_attempts, timings, t0)
        except Exception as e:  # noqa: BLE001 - never let a job kill the worker
            log("internal_error", logging.ERROR, exc_info=True, job_id=job_id, attempt=attempt)
            err = JobError("internal_error", f"{type(e).__name__}: {e}"[:400])
            return self._failed(err, body, job, job_id, attempt, delivery, max_attempts, timings, t0)

    def _failed(self, err, body, job, job_id, attempt, delivery, max_attempts, timings, t0) -> Outcome:
        timings["total"] = time.monotonic() - t0
        fields = dict(job_id=job_id, attempt=attempt, delivery=delivery, code=err.code, error=err.message)
        if err.code == "comfy_crashed":
            log("requeue", logging.WARNING, **fields)
            return Outcome("requeue", error=err, attempt=attempt, job_id=job_id, label="requeued", timings=timings)
        if err.retryable and attempt < max_attempts:
            log("retry", logging.WARNING, **fields)
            return Outcome("retry", error=err, attempt=attempt, job_id=job_id, label="retried", timings=timings)
        log("dead_letter", logging.WARNING, **fields)
        result = failure_result(job_id, job.template if job else None, err, attempt, self.s.worker_id, timings,
                                job.metadata if job else None)
        return Outcome("dead", json.dumps(result, sort_keys=True).encode(), err, attempt, job_id, "dead_lettered",
                       timings)

    def _commit(self, store, ledger_key, job, result, attempt, label) -> Outcome:
        body = json.dumps(result, sort_keys=True).encode()
        if store.put_if_absent(ledger_key, body):
            log("committed", job_id=job.job_id, attempt=attempt, cache_hit=result["cache_hit"],
                timings=result["timings"])
        else:  # another delivery committed first: its result is the one
            body = store.get(ledger_key) or body
            label = "duplicate"
            log("duplicate", job_id=job.job_id, attempt=attempt)
        return Outcome("ack", body, attempt=attempt, job_id=job.job_id, label=label, timings=result["timings"])

    def dead_letter_result(self, body: bytes, headers: dict, jobs_queue: str) -> Outcome | None:
        """The one result of a job the broker dead-lettered by itself, or None if the broker did not (the worker
        that dead-lettered a job already sent its result) or the body has no job id (nobody to answer).

        The broker does it to a poison job: ComfyUI or the worker went away on every delivery, so no worker lived
        to answer. Several workers may see copies (a redelivery after a crash before the ack, or the same job id
        submitted twice): the create-only write of deadletters/<job_id>.json picks the bytes they all send. It is
        not the ledger, so `dlq replay` still runs the job again."""
        def text(v):
            return v.decode() if isinstance(v, bytes) else v

        death = (headers.get("x-death") or [{}])[0]  # the latest dead-lettering comes first
        job_id = job_id_hint(body)
        if text(death.get("queue")) != jobs_queue or job_id is None:
            return None
        try:
            job = parse_job(body)
            store = self.store_for(job)
        except JobError:  # a malformed job that killed the worker: answer it, keyed by a hash of its id
            job, store = None, self.default_store
        attempt = int(headers.get(ATTEMPT_HEADER, 1))
        done = store.get(f"ledger/{job.job_id}.json") if job else None
        if done is not None:  # it had succeeded, and lost its ack on every delivery: that is its one result
            return Outcome("ack", done, attempt=attempt, job_id=job_id, label="duplicate")
        reason = text(death.get("reason"))
        reason = reason if reason in BROKER_REASONS else "rejected"
        limit = self.s.delivery_limit
        message = (f"delivered {limit + 1} times (x-delivery-limit {limit}) and ComfyUI or the worker went away "
                   "each time: a poison job, dead-lettered by the broker" if reason == "delivery_limit"
                   else f"dead-lettered by the broker: {BROKER_REASONS[reason]}")
        result = failure_result(job_id, job.template if job else None, JobError(reason, message), attempt,
                                self.s.worker_id, metadata=job.metadata if job else None)
        if reason == "delivery_limit":
            result["deliveries"] = limit + 1
        key = f"deadletters/{job.job_id if job else 'sha256-' + hashlib.sha256(job_id.encode()).hexdigest()}.json"
        out = json.dumps(result, sort_keys=True).encode()
        if store.put_if_absent(key, out):
            log("committed", job_id=job_id, attempt=attempt, code=reason)
            return Outcome("ack", out, attempt=attempt, job_id=job_id, label="dead_lettered")
        log("duplicate", job_id=job_id, attempt=attempt, code=reason)
        return Outcome("ack", store.get(key) or out, attempt=attempt, job_id=job_id, label="duplicate")

    def _run_in_comfy(self, job, t, fetched, info, attempt, delivery, timings, store):
        s = time.monotonic()
        try:
            uploaded = {name: self.comfy.upload(f.data, f"sfjob_{f.sha256[:20]}{f.ext}") for name, f in fetched.items()
                        if t.inputs[name].kind in FILE_KINDS}
        except requests.RequestException as e:
            raise JobError("comfy_unavailable", f"upload to {self.comfy.base}: {e}") from None
        prompt = fill(t, uploaded, job.parameters, info)
        timings["upload"] = time.monotonic() - s
        s = time.monotonic()
        timeout = float(job.timeout_s or t.timeout_s)
        prompt_id = prompt_id_for(job.job_id, attempt)
        accepted = False
        ws = None
        try:
            entry = self.comfy.history(prompt_id)
            if entry and entry.get("status", {}).get("status_str") not in ("success", None):
                prompt_id = prompt_id_for(job.job_id, attempt, f"/d{delivery}")  # an earlier delivery failed
                entry = None
            if not entry and not self.comfy.is_queued(prompt_id):
                ws = self.comfy.open_ws(self.client_id)
                accepted = True  # from here a lost ComfyUI may be this job's doing (a poison job): count it
                try:
                    self.comfy.queue(prompt, prompt_id=prompt_id, client_id=self.client_id)
                except PromptRejected as e:
                    raise JobError("prompt_rejected", str(e)[:500]) from None
            accepted = True
            log("prompt_queued", job_id=job.job_id, attempt=attempt, prompt_id=prompt_id, comfy=self.comfy.base)
            entry = entry or self._follow(job, prompt_id, timeout, ws)
        except requests.RequestException as e:
            if accepted:
                raise JobError("comfy_crashed", f"{self.comfy.base} went away running {prompt_id}: {e}") from None
            raise JobError("comfy_unavailable", f"{self.comfy.base}: {e}") from None
        finally:
            if ws is not None:
                try:
                    ws.close()
                except Exception:  # noqa: BLE001
                    pass
        timings["execute"] = time.monotonic() - s
        s = time.monotonic()
        outputs, values, engine = [], {}, None
        items = results_of(t, entry)
        if not items:
            raise JobError("no_result", f"template {t.name} produced no Job Result output")
        for item in items:
            if item.get("kind") == "file":
                try:
                    data = self.comfy.view(item["filename"], item.get("subfolder", ""), item.get("type", "output"))
                except requests.RequestException as e:
                    raise JobError("comfy_crashed", f"fetching {item['filename']}: {e}") from None
                ext = os.path.splitext(item["filename"])[1].lower()
                put = store.put_content(data, ext, CONTENT_TYPES.get(ext, "application/octet-stream"))
                meta = item.get("meta") or {}
                engine = engine or meta.get("engine")
                outputs.append({"name": item["name"], **put,
                                **({"media_duration_s": meta["duration"]} if "duration" in meta else {})})
            elif item.get("kind") == "url":
                outputs.append({"name": item["name"], "url": item["url"]})
            else:
                values[item["name"]] = item.get("value")
        timings["collect"] = time.monotonic() - s
        return outputs, values, engine

    def _follow(self, job, prompt_id: str, timeout: float, ws) -> dict:
        """Wait for the prompt, reading progress from the websocket; /history decides. Interrupt on timeout."""
        deadline = time.monotonic() + timeout
        next_poll = 0.0
        fast_until = 0.0  # after a "done" message, look at the history often until it shows the prompt
        last_progress = 0.0
        while True:
            now = time.monotonic()
            if self.stop_event.is_set() and self.grace_deadline and now > self.grace_deadline:
                self._interrupt(prompt_id)
                raise Interrupted()
            if now > deadline:
                self._interrupt(prompt_id)
                raise JobError("timeout", f"ran longer than its timeout of {timeout:g} s; prompt {prompt_id} "
                                          "interrupted in ComfyUI")
            if now >= next_poll:
                entry = self.comfy.history(prompt_id)
                if entry and entry.get("status", {}).get("completed") is not None:
                    if entry["status"].get("status_str") != "success":
                        raise self._classify(PromptFailed(prompt_id, entry))
                    return entry
                next_poll = now + (0.02 if now < fast_until else 1.0 if ws is not None else 0.05)
            if ws is None:
                time.sleep(0.02)
                continue
            try:
                ws.settimeout(max(0.005, min(0.5, next_poll - time.monotonic())))
                raw = ws.recv()
            except Exception as e:  # noqa: BLE001 - timeouts, or a socket that went away
                if type(e).__name__ != "WebSocketTimeoutException":
                    ws = None
                continue
            if not isinstance(raw, str):
                continue
            try:
                msg = json.loads(raw)
            except ValueError:
                continue
            data = msg.get("data") or {}
            if data.get("prompt_id") != prompt_id:
                continue
            kind = msg.get("type")
            if kind in ("execution_success", "execution_error", "execution_interrupted") or (
                    kind == "executing" and data.get("node") is None):
                next_poll, fast_until = 0.0, now + 2.0  # the history is written at task_done: look now and often
            elif kind == "progress" and now - last_progress > 0.5:
                last_progress = now
                self.progress(job.job_id, {"node": data.get("node"), "value": data.get("value"),
                                           "max": data.get("max")})

    def _interrupt(self, prompt_id: str) -> None:
        try:
            self.comfy.delete_pending(prompt_id)
            self.comfy.interrupt(prompt_id)
            log("interrupted", prompt_id=prompt_id, comfy=self.comfy.base)
        except requests.RequestException:
            pass

    @staticmethod
    def _classify(e: PromptFailed) -> JobError:
        kind = e.error.get("exception_type", "") or ""
        messages = [m[0] for m in e.entry.get("status", {}).get("messages", [])]
        if "execution_interrupted" in messages:
            return JobError("comfy_crashed", f"prompt {e.prompt_id} was interrupted by someone else")
        if kind.endswith("SonicFlowNodeError") or "Fix:" in str(e):
            return JobError("media_rejected", str(e)[:500])
        return JobError("execution_failed", str(e)[:500], retryable=True)


class Consumer(threading.Thread):
    """One broker connection + consumer, feeding one ComfyUI."""

    def __init__(self, settings: Settings, comfy_url: str, templates: TemplateLibrary, metrics: Metrics,
                 stop_event: threading.Event, index: int):
        super().__init__(name=f"consumer-{index}", daemon=True)
        self.s, self.metrics, self.stop_event = settings, metrics, stop_event
        self.topology = settings.topology()
        self.comfy_url = comfy_url
        self.runner = JobRunner(settings, comfy_url, templates, stop_event, progress=self._progress)
        self.connection = None
        self.channel = None
        self.job_thread: threading.Thread | None = None
        self.consumer_tag: str | None = None
        self.comfy_down = threading.Event()
        self.connects = 0
        self.finished = threading.Event()

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
            outcome = self.runner.process(body, props.headers or {}, method.redelivered)
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
            persistent = dict(delivery_mode=2, content_type="application/json")
            if outcome.action == "requeue" or (outcome.error and outcome.error.code == "comfy_unavailable"):
                # Stop consuming *before* giving the job back: a message prefetched meanwhile would be returned on
                # cancel, and on RabbitMQ < 4.3 that return counts toward the delivery limit.
                self._cancel()
                self.comfy_down.set()
            if outcome.action == "ack":
                ch.basic_publish(self.topology.results_exchange, f"result.{outcome.job_id}", outcome.result,
                                 pika.BasicProperties(**persistent), mandatory=True)
                ch.basic_ack(tag)
            elif outcome.action == "retry":
                tier = self.topology.retry_tier(outcome.attempt)
                headers = {k: v for k, v in (props.headers or {}).items() if not k.startswith("x-")}
                headers.update({ATTEMPT_HEADER: outcome.attempt + 1, "x-sonicflow-last-error": outcome.error.code,
                                "x-sonicflow-last-message": outcome.error.message[:500]})
                ch.basic_publish(self.topology.retry_exchange, str(tier), body,
                                 pika.BasicProperties(headers=headers, **persistent), mandatory=True)
                ch.basic_ack(tag)
            elif outcome.action == "dead":
                ch.basic_publish(self.topology.results_exchange, f"result.{outcome.job_id}", outcome.result,
                                 pika.BasicProperties(**persistent), mandatory=True)
                headers = dict(props.headers or {})
                headers.update({"x-sonicflow-error-code": outcome.error.code,
                                "x-sonicflow-error-message": outcome.error.message[:1000],
                                ATTEMPT_HEADER: outcome.attempt, "x-sonicflow-worker": self.s.worker_id,
                                "x-sonicflow-dead-at": int(time.time())})
                ch.basic_publish(self.topology.dlx, DEAD_KEY, body,
                                 pika.BasicProperties(headers=headers, **persistent), mandatory=True)
                ch.basic_ack(tag)
            elif outcome.action == "requeue":
                ch.basic_reject(tag, requeue=True)  # counts toward x-delivery-limit (poison jobs)
            else:  # nack: put back for another worker (SIGTERM)
                ch.basic_nack(tag, requeue=True)
            self.metrics.jobs.labels(outcome.label).inc()
            log("finished", job_id=outcome.job_id, attempt=outcome.attempt, outcome=outcome.label,
                code=outcome.error.code if outcome.error else None, timings=outcome.timings)
        except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as e:
            log("publish_refused", logging.ERROR, job_id=outcome.job_id, error=str(e))
            if ch.is_open:
                ch.basic_reject(tag, requeue=True)

    def _on_dead_letter(self, ch, method, props, body):
        """A copy of a dead letter (<p>.dlq.notify; the original stays in <p>.dlq). For one the broker made, publish
        the job's failure result (confirmed) before the ack: a crash in between only sends the same result again.
        Runs on the connection's thread: a store lookup and write are short."""
        import pika

        try:
            outcome = self.runner.dead_letter_result(body, props.headers or {}, self.topology.jobs_queue)
            if outcome is not None:
                ch.basic_publish(self.topology.results_exchange, f"result.{outcome.job_id}", outcome.result,
                                 pika.BasicProperties(delivery_mode=2, content_type="application/json"),
                                 mandatory=True)
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
            if self.runner.comfy.ready():
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
        import pika

        backoff = 0.5
        while not self.stop_event.is_set():
            try:
                if self._busy():  # a job from a lost connection: let it finish (its result goes to the ledger)
                    self.job_thread.join()
                self._wait_for_comfy(lambda s: self.stop_event.wait(s))
                if self.stop_event.is_set():
                    break
                self.connection = pika.BlockingConnection(self.s.connection_parameters())
                self.channel = self.connection.channel()
                self.topology.declare(self.channel)
                self.channel.confirm_delivery()
                self.channel.basic_qos(prefetch_count=1)
                self.connects += 1
                if self.connects > 1:
                    self.metrics.reconnects.inc()
                log("connected", comfy=self.comfy_url, worker=self.s.worker_id)
                self.metrics.set_health(self.name, broker=True)
                backoff = 0.5
                self.comfy_down.clear()
                self._consume()
                # Kept while ComfyUI is down (only the jobs consumer is cancelled then): a poison job's last crash
                # leaves ComfyUI down exactly when its dead letter needs answering.
                self.channel.basic_consume(self.topology.dlq_notify, self._on_dead_letter)
                next_depth = 0.0
                while not self.stop_event.is_set():
                    self.connection.process_data_events(time_limit=0.2)
                    if time.monotonic() > next_depth:
                        self._update_depth()
                        next_depth = time.monotonic() + 5
                    if self.comfy_down.is_set() and not self._busy():
                        self._cancel()
                        self._wait_for_comfy(lambda s: self.connection.process_data_events(time_limit=s))
                        self.comfy_down.clear()
                        if not self.stop_event.is_set():
                            self._consume()
                self._shutdown()
                return
            except Exception as e:  # noqa: BLE001 - broker lost (or refused): reconnect with back-off
                self.metrics.set_health(self.name, broker=False)
                log("broker_lost", logging.WARNING, comfy=self.comfy_url, error=f"{type(e).__name__}: {e}")
                try:
                    if self.connection is not None and self.connection.is_open:
                        self.connection.close()
                except Exception:  # noqa: BLE001
                    pass
                self.stop_event.wait(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, 15.0)
        self.finished.set()

    def _shutdown(self):
        """SIGTERM: take no more jobs; give the running one the grace period, else interrupt + requeue it."""
        try:
            self._cancel()
            self.runner.grace_deadline = time.monotonic() + self.s.grace_s
            while self._busy():
                self.connection.process_data_events(time_limit=0.2)
            self.connection.process_data_events(time_limit=0.5)  # deliver the last ack
            self.connection.close()
        except Exception as e:  # noqa: BLE001
            log("shutdown_error", logging.WARNING, error=f"{type(e).__name__}: {e}")
        finally:
            self.finished.set()


def run_worker(settings: Settings) -> int:
    from .ops import serve, setup_logging

    setup_logging()
    settings.worker_id = settings.worker_id or f"{os.uname().nodename}:{os.getpid()}"
    if not settings.comfy_urls:
        raise SystemExit("sonicflow worker: give at least one --comfy URL (or SONICFLOW_COMFY_URL)")
    metrics = Metrics()
    if settings.metrics_port:
        serve(metrics, settings.metrics_port)
    stop = threading.Event()
    templates = TemplateLibrary(settings.templates, settings.timeout_s, settings.max_attempts)

    def on_signal(signum, _frame):
        log("stopping", worker=settings.worker_id, code=f"signal {signum}")
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    consumers = [Consumer(settings, url, templates, metrics, stop, i) for i, url in enumerate(settings.comfy_urls)]
    log("worker_start", worker=settings.worker_id, comfy=settings.comfy_urls)
    for c in consumers:
        c.start()
    while not stop.is_set():
        stop.wait(0.5)
        if all(not c.is_alive() for c in consumers):
            break
    for c in consumers:
        c.join(settings.grace_s + 30)
    log("worker_exit", worker=settings.worker_id)
    return 0
