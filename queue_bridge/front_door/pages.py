"""The pages people use (upload, job, job list: static files in web/pages, no outside assets) and the security
headers every answer carries."""
from __future__ import annotations

import os

from aiohttp import web

from .. import ROOT, data_dir

PAGES = data_dir("web", "pages")
ICON = os.path.join(ROOT, "web", "icon.png")   # the checkout's only: an installed front door has no favicon
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
       "media-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": CSP,
                    "Referrer-Policy": "no-referrer"}


async def page(request):
    name = {"/": "upload.html", "/jobs": "jobs.html"}.get(request.path, "job.html")
    return web.FileResponse(os.path.join(PAGES, name), headers={"Content-Type": "text/html; charset=utf-8"})


def add_routes(router) -> None:
    for path in ("/", "/jobs", "/jobs/{id}"):
        router.add_get(path, page)
    if os.path.isfile(ICON):
        router.add_get("/favicon.ico", lambda _r: web.FileResponse(ICON, headers={"Content-Type": "image/png"}))
    router.add_static("/static/", PAGES, show_index=False, follow_symlinks=False)
