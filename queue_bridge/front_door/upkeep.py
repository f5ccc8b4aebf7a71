"""The front door's periodic upkeep, one pass every few seconds on every front-door process:

- job rows left 'accepting' (written, then never confirmed by the broker: the process died between the insert and
  the confirm, or the confirm was lost) are published again, under the same job id, once they are older than
  `after_s`. Whether the first copy reached the broker cannot be known; a second copy is harmless (the workers'
  ledger answers a job id it has seen with the same result), while marking the job failed could contradict a
  result that is still coming. Each row is claimed before it is sent, so front doors do not race on it.
- the download links' secrets are read again, so a rotation (`sonicflow api rotate-link-secret`) reaches every
  process without a restart.
"""
from __future__ import annotations

import asyncio
import json
import logging
import time

from .messaging import MaybeQueued, NotQueued

log = logging.getLogger("sonicflow.api")
NOT_QUEUED = {"code": "not_queued", "message": "the front door stopped before the job was queued, and this row "
                                               "(from an older version) does not hold the job; submit it again"}


class Upkeep:
    def __init__(self, store, blocking, publisher, links, after_s: float):
        """`blocking(fn, *args)` runs a job-store call off the event loop."""
        self.store, self.blocking, self.publisher, self.links = store, blocking, publisher, links
        self.after_s = after_s
        self.every = max(0.5, min(30.0, after_s / 2))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            try:
                await self.once()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database may be briefly away; the next pass tries again
                log.warning("upkeep: this pass failed; trying again", exc_info=True)

    async def once(self) -> None:
        self.links.secrets = await self.blocking(self.store.link_secrets)
        for job_id, message in await self.blocking(self.store.stale_accepting, time.time() - self.after_s):
            await self.reconcile(job_id, message)

    async def reconcile(self, job_id: str, message: str | None) -> None:
        if message is None:
            await self.blocking(self.store.apply_result, job_id, {"job_id": job_id, "status": "failed",
                                                                  "error": NOT_QUEUED})
            log.warning("upkeep: job %s had no message to publish again; marked failed (not_queued)", job_id)
            return
        try:
            await self.publisher.publish(json.loads(message))
        except (NotQueued, MaybeQueued) as e:  # claimed again after `after_s`
            log.warning("upkeep: publishing job %s again: %s", job_id, e)
            return
        if await self.blocking(self.store.set_status, job_id, "queued", ("accepting",)):
            log.warning("upkeep: job %s was never confirmed by the broker; published it again", job_id)
