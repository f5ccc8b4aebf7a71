"""DELETE /v1/jobs/{id}: cancel a job (docs/api.md, docs/queue.md).

The store's cancel marker is written first (a worker that takes the job later, or that misses the broadcast, finds it
and skips or drops the run), then the job row becomes `cancelled` (its webhook `job.cancelled` due), then every
worker hears the cancel on the control exchange and interrupts the job in ComfyUI if it runs it. The answer is the job,
`cancelled`; cancelling it again answers the same; a job that had already succeeded or failed is `409 already_finished`.
"""
from __future__ import annotations

import logging

from aiohttp import web

from .. import JobError
from .api_errors import ApiError
from .jobstore import TERMINAL
from .messaging import MaybeQueued, NotQueued

log = logging.getLogger("sonicflow.api")


def _finished(job: dict) -> ApiError:
    return ApiError(409, "already_finished", f"the job already {job['status']}; there is nothing to cancel")


async def cancel_job(door, request):
    key = await door.auth(request)
    await door.limit(key, "read")
    job = await door.own_job(request, key)
    if job["status"] in TERMINAL and job["status"] != "cancelled":
        raise _finished(job)
    if job["status"] != "cancelled":
        try:
            await door.work.run(door.objects.mark_cancelled, job["id"], f"api key {key['id']}")
        except JobError as e:
            raise ApiError(503, "storage_unavailable", e.message, {"Retry-After": "5"}) from None
        if await door.db.run(door.store.cancel_job, job["id"]):
            door.changed(job["id"], True)  # event streams end, the webhook is sent
        try:
            await door.publisher.broadcast_cancel(job["id"])
        except (NotQueued, MaybeQueued) as e:  # the marker holds: a worker running it drops its result
            log.warning("job %s cancelled, but the broker did not take the cancel message (%s): a worker running it "
                        "finishes the run and reports it cancelled", job["id"], e)
        job = await door.db.run(door.store.get_job, job["id"])
        if job["status"] != "cancelled":  # it finished between the read and the update
            raise _finished(job)
    return web.json_response(door.document(job))
