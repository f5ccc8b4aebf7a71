"""Job protocol v1: parsing and validating a job message, error codes, and the result message.

A job's `job_id` is its idempotency key. Errors carry a stable `code`; `retryable` says whether the worker retries
(with a growing delay) or dead-letters the job at once. docs/queue.md lists every code.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field

SCHEMA_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "job_schema.json")
PROTOCOL_VERSION = 1

# Codes of jobs that no retry can fix: dead-lettered at once.
PERMANENT = {
    "bad_json": "the message body is not a JSON object",
    "schema_violation": "the job does not match queue_bridge/job_schema.json",
    "unsupported_version": "the job's protocol version is not 1",
    "unknown_template": "no template of that name on the worker",
    "missing_input": "the template requires an input or parameter the job leaves out",
    "unknown_input": "the job names an input or parameter the template does not declare",
    "bad_parameter": "a parameter has the wrong type, is out of range or not one of the allowed values",
    "scheme_not_allowed": "an input location uses a scheme other than s3, http(s) or a path",
    "host_not_allowed": "an http(s) input's host is not on the worker's allow-list",
    "private_address": "an http(s) input's host resolves to a private, loopback or link-local address",
    "path_outside_root": "a path input points outside the worker's input root",
    "input_not_found": "an input file or object does not exist",
    "input_too_large": "an input is larger than the worker's limit",
    "unsupported_media": "an input's bytes are not a supported image/audio/video format",
    "checksum_mismatch": "an input's bytes do not match the sha256 the job gave",
    "output_not_allowed": "the job's output location is not one the worker may write to",
    "media_rejected": "ComfyUI's nodes refused the input (corrupt, no face, silent audio...)",
    "prompt_rejected": "ComfyUI refused the filled template (400 from POST /prompt)",
    "execution_failed": "the workflow failed in ComfyUI for a reason that a retry would repeat",
    "no_result": "the workflow finished without a Job Result output",
}
# Codes worth retrying; after max_attempts the job is dead-lettered with the same code.
RETRYABLE = {
    "comfy_unavailable": "ComfyUI could not be reached before the job started",
    "comfy_crashed": "ComfyUI went away while running the job (counted by the queue's delivery limit)",
    "storage_unavailable": "the object store failed",
    "input_unavailable": "an input could not be fetched (network or server error)",
    "timeout": "the job ran longer than its timeout; ComfyUI was interrupted",
    "internal_error": "an unexpected error in the worker",
}
# Set by the broker itself (x-death reason), shown by `sonicflow dlq list` and sent as the failure result's code.
BROKER_REASONS = {"delivery_limit": "delivered more times than the jobs queue's x-delivery-limit (poison job)",
                  "rejected": "rejected without requeue", "expired": "its message TTL ran out",
                  "maxlen": "the jobs queue was over its length limit"}


class JobError(Exception):
    def __init__(self, code: str, message: str, retryable: bool | None = None):
        assert code in PERMANENT or code in RETRYABLE or code in BROKER_REASONS, code
        self.code, self.message = code, message
        self.retryable = code in RETRYABLE if retryable is None else retryable
        super().__init__(f"{code}: {message}")


_validator = None


def validator():
    global _validator
    if _validator is None:
        import jsonschema

        with open(SCHEMA_PATH) as f:
            schema = json.load(f)
        _validator = jsonschema.Draft202012Validator(schema)
    return _validator


@dataclass
class Job:
    job_id: str
    template: str
    inputs: dict  # name -> {"url": ..., "sha256": optional}
    parameters: dict
    timeout_s: float | None = None
    max_attempts: int | None = None
    output_url: str | None = None
    metadata: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict)


def parse_job(body: bytes) -> Job:
    """The job in a message body, or JobError(bad_json / unsupported_version / schema_violation)."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:  # RecursionError: absurdly nested
        raise JobError("bad_json", f"body is not JSON: {type(e).__name__}") from None
    if not isinstance(doc, dict):
        raise JobError("bad_json", f"body is JSON {type(doc).__name__}, not an object")
    if "version" in doc and doc["version"] != PROTOCOL_VERSION:
        raise JobError("unsupported_version", f"version {doc['version']!r}; this worker speaks {PROTOCOL_VERSION}")
    errors = sorted(validator().iter_errors(doc), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        where = "/".join(str(p) for p in e.absolute_path) or "(top)"
        raise JobError("schema_violation", f"{where}: {e.message}"[:500])
    inputs = {k: (v if isinstance(v, dict) else {"url": v}) for k, v in doc["inputs"].items()}
    return Job(job_id=doc["job_id"], template=doc["template"], inputs=inputs, parameters=doc.get("parameters", {}),
               timeout_s=doc.get("timeout_s"), max_attempts=doc.get("max_attempts"),
               output_url=(doc.get("output") or {}).get("url"), metadata=doc.get("metadata", {}), raw=doc)


def valid_job_id(text: str) -> bool:
    """A job id the schema accepts (also what may name a key in the store)."""
    return isinstance(text, str) and validator().is_valid({"version": PROTOCOL_VERSION, "job_id": text,
                                                           "template": "t", "inputs": {}})


def job_id_hint(body: bytes) -> str | None:
    """The job id of a message that may be malformed, for logs and the dead-letter record."""
    try:
        doc = json.loads(body)
        jid = doc.get("job_id") if isinstance(doc, dict) else None
        return jid if isinstance(jid, str) else None
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def make_job(job_id: str, template: str, inputs: dict, parameters: dict | None = None, **extra) -> dict:
    """A v1 job document (what `sonicflow submit` sends)."""
    doc = {"version": PROTOCOL_VERSION, "job_id": job_id, "template": template, "inputs": inputs}
    if parameters:
        doc["parameters"] = parameters
    doc.update({k: v for k, v in extra.items() if v is not None})
    return doc


def _result(status: str, job_id: str | None, template: str | None, attempt: int, worker: str, timings: dict | None,
            metadata: dict | None, **extra) -> dict:
    """The fields every result message has, and `extra`."""
    return {"version": PROTOCOL_VERSION, "job_id": job_id, "status": status, "template": template, **extra,
            "attempt": attempt, "worker": worker, "timings": {k: round(v, 4) for k, v in (timings or {}).items()},
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "metadata": metadata or {}}


def success_result(job: Job, outputs: list, values: dict, engine: str | None, timings: dict, cache_hit: bool,
                   attempt: int, worker: str) -> dict:
    return _result("succeeded", job.job_id, job.template, attempt, worker, timings, job.metadata, outputs=outputs,
                   values=values, engine=engine, cache_hit=cache_hit, duration_s=round(timings.get("total", 0.0), 3))


def cancelled_result(job: Job, attempt: int, worker: str, timings: dict) -> dict:
    """The result of a job cancelled before or while it ran: no outputs."""
    return _result("cancelled", job.job_id, job.template, attempt, worker, timings, job.metadata)


def cancel_message(job_id: str) -> bytes:
    """What goes to the control exchange: every worker's consumers hear it."""
    return json.dumps({"type": "cancel", "job_id": job_id}).encode()


def cancelled_job_id(body: bytes) -> str | None:
    """The job id of a cancel message, or None for anything else."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    ok = isinstance(doc, dict) and doc.get("type") == "cancel" and isinstance(doc.get("job_id"), str)
    return doc["job_id"] if ok else None


def failure_result(job_id: str | None, template: str | None, err: JobError, attempt: int, worker: str,
                   timings: dict | None = None, metadata: dict | None = None) -> dict:
    return _result("failed", job_id, template, attempt, worker, timings, metadata,
                   error={"code": err.code, "message": err.message, "retryable": err.retryable})
