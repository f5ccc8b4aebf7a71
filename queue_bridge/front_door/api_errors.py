"""The front door's errors: always JSON, `{"error": {"code", "message", "field"?}}` (docs/api.md lists the codes)."""
from __future__ import annotations

from aiohttp import web


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None, field: str | None = None):
        self.status, self.code, self.message, self.headers, self.field = status, code, message, headers or {}, field
        super().__init__(message)


def error_response(status: int, code: str, message: str, headers: dict | None = None, field: str | None = None):
    body = {"error": {"code": code, "message": message}}
    if field:
        body["error"]["field"] = field
    return web.json_response(body, status=status, headers=headers)
