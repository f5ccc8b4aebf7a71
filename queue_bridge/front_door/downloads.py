"""GET /v1/jobs/{id}/files/{name}: a result file through its signed link, which needs no API key. The link's
signature (views.Links) and expiry are checked, and so is the key that made the job: a revoked key's links stop
working. Local stores serve the file (Range supported); S3 stores redirect to a short-lived pre-signed URL."""
from __future__ import annotations

import functools
import os
from urllib.parse import urlparse

from aiohttp import web

from .api_errors import ApiError


class Downloads:
    def __init__(self, links, store, db, work, objects):
        self.links, self.store, self.db, self.work, self.objects = links, store, db, work, objects

    async def get_file(self, request):
        job_id, name = request.match_info["id"], request.match_info["name"]
        self.links.check(job_id, name, request.query.get("exp"), request.query.get("sig"))
        job = await self.db.run(self.store.get_job, job_id)
        if job is not None and await self.db.run(self.store.key_revoked, job["key_id"]):
            raise ApiError(403, "key_revoked", "the API key that made this job was revoked; its links no longer work")
        outputs = ((job or {}).get("result") or {}).get("outputs") or []
        out = next((o for o in outputs if o.get("name") == name), None)
        if out is None:
            raise ApiError(404, "not_found", "no such file")
        url = out["url"]
        ext = {"video/mp4": ".mp4"}.get(out.get("content_type"), os.path.splitext(urlparse(url).path)[1])
        disposition = "attachment" if request.query.get("download") == "1" else "inline"
        headers = {"Content-Disposition": f'{disposition}; filename="sonicflow-{job_id[:12]}-{name}{ext}"',
                   "Cache-Control": "private, max-age=86400"}
        if url.startswith("file://"):
            path = os.path.realpath(url[len("file://"):])
            root = os.path.realpath(getattr(self.objects, "root", "/nonexistent"))
            if os.path.commonpath([path, root]) != root or not os.path.isfile(path):
                raise ApiError(404, "not_found", "the file is not in this front door's store")
            resp = web.FileResponse(path, headers=headers)
            if out.get("content_type"):
                resp.content_type = out["content_type"]
            return resp
        if url.startswith("s3://"):
            if not url.startswith(self.objects.url):  # signed with our credentials: only what is in our store
                raise ApiError(404, "not_found", "the file is not in this front door's store")
            p = urlparse(url)
            signed = await self.work.run(functools.partial(
                self.objects.client.generate_presigned_url, "get_object", Params={
                    "Bucket": p.netloc, "Key": p.path.lstrip("/"),
                    "ResponseContentDisposition": headers["Content-Disposition"]}, ExpiresIn=3600))
            raise web.HTTPFound(signed)
        raise web.HTTPFound(url)
