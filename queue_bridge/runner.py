"""One job, start to finish, without AMQP: parse it, answer it from the ledger or the result cache when it ran
before, fetch its inputs, run it on ComfyUI (comfy_run), commit its result, and decide what the consumer does with
the message (policy). A crash anywhere costs at most a re-run that the ledger or the cache answers.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time

import requests

from sonicflow_contract import ATTEMPT_HEADER

from .comfy_run import Cancelled, ComfyExecutor, Interrupted
from .inputs import InputPolicy, fetch_input
from .logs import log
from .policy import Action, Outcome, decide
from .protocol import BROKER_REASONS, JobError, cancelled_result, failure_result, job_id_hint, parse_job, success_result
from .settings import Settings
from .store import open_store
from .template import TemplateLibrary, check_interface, check_values, resolved_parameters


def header_int(headers: dict, name: str, default: int) -> int:
    """An integer header that a hostile or broken publisher may have set to anything: the default then."""
    try:
        value = int(headers.get(name, default))
    except (TypeError, ValueError, ArithmeticError):  # a table, text, NaN or infinity
        return default
    return value if 0 < value < 1_000_000 else default


class JobRunner:
    def __init__(self, settings: Settings, executor: ComfyExecutor, templates: TemplateLibrary):
        self.s, self.executor, self.templates = settings, executor, templates
        self.policy = InputPolicy(input_root=settings.input_root or None, http_allow=list(settings.http_allow),
                                  allow_private_networks=settings.allow_private_networks,
                                  max_bytes=settings.max_input_bytes, s3_endpoint=settings.s3_endpoint)
        self.default_store = open_store(settings.store_url, settings.s3_endpoint)

    def store_for(self, job):
        if not job.output_url:
            return self.default_store
        allowed = [self.default_store.url] + list(self.s.output_allow)
        if not any(job.output_url.startswith(a) for a in allowed) or ".." in job.output_url:
            raise JobError("output_not_allowed", f"{job.output_url} is not under {', '.join(allowed)}")
        return open_store(job.output_url, self.s.s3_endpoint)

    def process(self, body: bytes, headers: dict) -> Outcome:
        t0 = time.monotonic()
        timings: dict = {}
        headers = headers if isinstance(headers, dict) else {}
        attempt = header_int(headers, ATTEMPT_HEADER, 1)
        delivery = header_int(headers, "x-delivery-count", 0) + 1
        job_id, job, max_attempts = job_id_hint(body), None, self.s.max_attempts
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
                return Outcome(Action.ACK, "duplicate", done, attempt=attempt, job_id=job.job_id)
            if self.default_store.cancelled(job.job_id):  # the cancel marker is in the workers' own store
                return self._cancelled(job, attempt, timings, t0)
            s = time.monotonic()
            fetched = {name: fetch_input(name, t.inputs[name].kind, spec, self.policy)
                       for name, spec in job.inputs.items()}
            timings["fetch_inputs"] = time.monotonic() - s
            s = time.monotonic()
            try:
                info = self.executor.object_info({n["class_type"] for n in t.prompt.values()})
                engine_version = self.executor.engine_version()
            except requests.RequestException as e:
                raise JobError("comfy_unavailable", f"{self.executor.comfy.base}: {e}") from None
            check_values(t, job.parameters, info)
            params = resolved_parameters(t, job.parameters)
            key = hashlib.sha256(json.dumps({"inputs": {n: f.sha256 for n, f in sorted(fetched.items())},
                                             "parameters": params, "template": t.sha256, "engine": engine_version},
                                            sort_keys=True).encode()).hexdigest()
            cached = store.get(f"cache/{key}.json")
            timings["cache_lookup"] = time.monotonic() - s
            if cached is not None:
                entry = json.loads(cached)
                timings["total"] = time.monotonic() - t0
                result = success_result(job, entry["outputs"], entry["values"], entry.get("engine"), timings, True,
                                        attempt, self.s.worker_id)
                return self._commit(store, ledger_key, job, result, attempt, "cached")
            outputs, values, engine = self.executor.run(job, t, fetched, info, attempt, delivery, timings, store)
            s = time.monotonic()
            store.put_if_absent(f"cache/{key}.json", json.dumps(
                {"outputs": outputs, "values": values, "engine": engine, "job_id": job.job_id},
                sort_keys=True).encode())
            timings["cache_store"] = time.monotonic() - s
            if self.default_store.cancelled(job.job_id):  # cancelled while it ran, and this worker missed the message
                return self._cancelled(job, attempt, timings, t0)
            timings["total"] = time.monotonic() - t0
            result = success_result(job, outputs, values, engine, timings, False, attempt, self.s.worker_id)
            return self._commit(store, ledger_key, job, result, attempt, "succeeded")
        except Interrupted:
            return Outcome(Action.GIVE_BACK, "requeued", attempt=attempt, job_id=job_id)
        except Cancelled:
            return self._cancelled(job, attempt, timings, t0)
        except JobError as err:
            return self._failed(err, job, job_id, attempt, delivery, max_attempts, timings, t0)
        except Exception as e:  # noqa: BLE001 - never let a job kill the worker
            log("internal_error", logging.ERROR, exc_info=True, job_id=job_id, attempt=attempt)
            err = JobError("internal_error", f"{type(e).__name__}: {e}"[:400])
            return self._failed(err, job, job_id, attempt, delivery, max_attempts, timings, t0)

    def unexpected(self, body: bytes, error: Exception) -> Outcome:
        """A message that broke the runner itself (a bug): dead-lettered with internal_error, never left unacked
        (an unacked message holds the consumer's only prefetch slot: the worker would take nothing else)."""
        job_id = job_id_hint(body)
        log("internal_error", logging.ERROR, exc_info=error, job_id=job_id)
        err = JobError("internal_error", f"{type(error).__name__}: {error}"[:400], retryable=False)
        result = json.dumps(failure_result(job_id, None, err, 1, self.s.worker_id), sort_keys=True).encode()
        return Outcome(Action.DEAD, "dead_lettered", result, err, 1, job_id)

    def _cancelled(self, job, attempt, timings, t0) -> Outcome:
        """Cancelled before or while it ran: a `cancelled` result, the message acked, nothing in the ledger (a copy
        delivered again finds the marker and ends the same way)."""
        timings["total"] = time.monotonic() - t0
        log("cancelled", job_id=job.job_id, attempt=attempt)
        body = json.dumps(cancelled_result(job, attempt, self.s.worker_id, timings), sort_keys=True).encode()
        return Outcome(Action.ACK, "cancelled", body, attempt=attempt, job_id=job.job_id, timings=timings)

    def _failed(self, err, job, job_id, attempt, delivery, max_attempts, timings, t0) -> Outcome:
        timings["total"] = time.monotonic() - t0
        action, label = decide(err, attempt, max_attempts)
        log({Action.REQUEUE: "requeue", Action.RETRY: "retry", Action.DEAD: "dead_letter"}[action], logging.WARNING,
            job_id=job_id, attempt=attempt, delivery=delivery, code=err.code, error=err.message)
        result = None
        if action is Action.DEAD:
            result = json.dumps(failure_result(job_id, job.template if job else None, err, attempt, self.s.worker_id,
                                               timings, job.metadata if job else None), sort_keys=True).encode()
        return Outcome(action, label, result, err, attempt, job_id, timings)

    def _commit(self, store, ledger_key, job, result, attempt, label) -> Outcome:
        body = json.dumps(result, sort_keys=True).encode()
        if store.put_if_absent(ledger_key, body):
            log("committed", job_id=job.job_id, attempt=attempt, cache_hit=result["cache_hit"],
                timings=result["timings"])
        else:  # another delivery committed first: its result is the one
            body = store.get(ledger_key) or body
            label = "duplicate"
            log("duplicate", job_id=job.job_id, attempt=attempt)
        return Outcome(Action.ACK, label, body, attempt=attempt, job_id=job.job_id, timings=result["timings"])

    def dead_letter_result(self, body: bytes, headers: dict, jobs_queue: str) -> Outcome | None:
        """The one result of a job the broker dead-lettered by itself, or None if the broker did not (the worker
        that dead-lettered a job already sent its result) or the body has no job id (nobody to answer).

        The broker does it to a poison job: ComfyUI or the worker went away on every delivery, so no worker lived
        to answer. Several workers may see copies (a redelivery after a crash before the ack, or the same job id
        submitted twice): the create-only write of deadletters/<job_id>.json picks the bytes they all send. It is
        not the ledger, so `dlq replay` still runs the job again."""
        def text(v):
            return v.decode() if isinstance(v, bytes) else v

        deaths = headers.get("x-death")
        death = deaths[0] if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict) else {}
        job_id = job_id_hint(body)
        if text(death.get("queue")) != jobs_queue or job_id is None:
            return None
        try:
            job = parse_job(body)
            store = self.store_for(job)
        except JobError:  # a malformed job that killed the worker: answer it, keyed by a hash of its id
            job, store = None, self.default_store
        attempt = header_int(headers, ATTEMPT_HEADER, 1)
        done = store.get(f"ledger/{job.job_id}.json") if job else None
        if done is not None:  # it had succeeded, and lost its ack on every delivery: that is its one result
            return Outcome(Action.ACK, "duplicate", done, attempt=attempt, job_id=job_id)
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
            return Outcome(Action.ACK, "dead_lettered", out, attempt=attempt, job_id=job_id)
        log("duplicate", job_id=job_id, attempt=attempt, code=reason)
        return Outcome(Action.ACK, "duplicate", store.get(key) or out, attempt=attempt, job_id=job_id)
