"""What happens to a job after an attempt: one decision, made in one place.

    success, duplicate, cached        -> ACK      (its result published first, confirmed)
    cancelled, before or while it ran -> ACK      (a `cancelled` result published first)
    ComfyUI went away under the job   -> REQUEUE  (basic.reject: counts toward the queue's x-delivery-limit, so a job
                                                   that kills ComfyUI every time ends as a poison job)
    retryable, attempts left          -> RETRY    (re-published to the retry tier for this attempt, then acked)
    anything else                     -> DEAD     (failure result published, job dead-lettered with its reason)
    SIGTERM ran out of grace          -> GIVE_BACK (basic.nack + requeue: another worker takes it)
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .protocol import JobError


class Action(enum.Enum):
    ACK = "ack"
    RETRY = "retry"
    DEAD = "dead"
    REQUEUE = "requeue"
    GIVE_BACK = "give_back"


@dataclass
class Outcome:
    action: Action
    label: str                      # metrics and logs: succeeded, cached, duplicate, cancelled, retried, ...
    result: bytes | None = None     # the result message body (ACK, DEAD)
    error: JobError | None = None
    attempt: int = 1
    job_id: str | None = None
    timings: dict = field(default_factory=dict)


def decide(err: JobError, attempt: int, max_attempts: int) -> tuple[Action, str]:
    """(action, label) for a failed attempt."""
    if err.code == "comfy_crashed":
        return Action.REQUEUE, "requeued"
    if err.retryable and attempt < max_attempts:
        return Action.RETRY, "retried"
    return Action.DEAD, "dead_lettered"
