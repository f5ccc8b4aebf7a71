"""What a client sees of a job (GET /v1/jobs/{id}, the events stream, webhooks: one document), and the signed
download links in it, which need no API key."""
from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import quote

from .api_errors import ApiError


def _iso(t: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) if t else None


# --- views and signed links -------------------------------------------------------------------------------------------

class Links:
    """Signs links with the first of `secrets` and accepts any of them (the previous secret during a rotation's
    grace period); `secrets` is replaced when the job store says they changed."""

    def __init__(self, secrets: list[bytes], ttl_days: int):
        self.secrets, self.ttl_days = secrets, ttl_days

    @staticmethod
    def _sig(secret: bytes, job_id: str, name: str, exp: int) -> str:
        return hmac.new(secret, f"{job_id}/{name}/{exp}".encode(), hashlib.sha256).hexdigest()[:40]

    def file_url(self, job_id: str, name: str) -> str:
        exp = (int(time.time()) // 86400 + self.ttl_days + 1) * 86400  # stable for a day: caches and pages agree
        return f"/v1/jobs/{job_id}/files/{quote(name)}?exp={exp}&sig={self._sig(self.secrets[0], job_id, name, exp)}"

    def check(self, job_id: str, name: str, exp: str, sig: str) -> None:
        try:
            e = int(exp)
        except (TypeError, ValueError):
            raise ApiError(403, "bad_signature", "the link is not valid") from None
        given = (sig or "").encode("utf-8", "replace")
        if not any(hmac.compare_digest(self._sig(s, job_id, name, e).encode(), given) for s in self.secrets):
            raise ApiError(403, "bad_signature", "the link is not valid")
        if e < time.time():
            raise ApiError(410, "link_expired", "the link has expired; open the job again for a fresh one")


def job_view(job: dict, links: Links, base: str = "") -> dict:
    """The job document; `base` makes its links absolute (the service's public URL)."""
    result = job.get("result") or {}
    outputs = []
    for o in result.get("outputs") or []:
        item = {k: o.get(k) for k in ("name", "sha256", "size", "content_type")}
        item["url"] = base + links.file_url(job["id"], o["name"])
        outputs.append(item)
    error = job.get("error")
    if job["status"] == "failed" and not error:
        error = {"code": "failed", "message": "the job failed"}
    return {
        "id": job["id"], "status": "queued" if job["status"] == "accepting" else job["status"],
        "progress": round(job.get("progress") or 0.0, 4), "progress_node": job.get("progress_node"),
        "template": job.get("template"), "parameters": job.get("parameters"), "inputs": job.get("inputs"),
        "results": outputs, "engine": result.get("engine"), "error": error,
        "created_at": _iso(job.get("created_at")), "updated_at": _iso(job.get("updated_at")),
        "status_url": f"{base}/v1/jobs/{job['id']}", "events_url": f"{base}/v1/jobs/{job['id']}/events",
        "page_url": f"{base}/jobs/{job['id']}",
        "webhook": ({"url": job["webhook_url"], "state": job.get("webhook_state"),
                     "attempts": job.get("webhook_attempts")} if job.get("webhook_url") else None),
    }
