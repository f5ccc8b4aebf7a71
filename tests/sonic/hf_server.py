"""A real HTTP server on 127.0.0.1 that serves files under Hugging Face's `/<repo>/resolve/main/<path>` URLs, with
Range requests (206), and on request: a dropped connection after N bytes, corrupted or short bodies, a token gate
(401) and a redirect to another host name (as huggingface.co redirects to its CDN). Every request is logged."""
from __future__ import annotations

import os
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class HFServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, files: dict[str, str]):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files = files          # URL path -> local file
        self.log: list[dict] = []   # path, range, auth, status, sent (body bytes)
        self.drops: dict[str, list[int]] = {}   # URL path -> bytes to send before dropping, one per coming request
        self.corrupt: dict[str, str] = {}       # URL path -> "flip" (one byte changed) or "short" (last 100 B cut)
        self.token: str | None = None           # when set, /<repo>/ paths need "Authorization: Bearer <token>"
        self.redirect: set[str] = set()         # URL paths answered with 302 to http://localhost:<port>/cdn<path>
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def requests_for(self, path: str) -> list[dict]:
        return [e for e in self.log if e["path"].removeprefix("/cdn") == path]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: HFServer

    def log_message(self, *args):
        pass

    def do_GET(self):
        srv, path = self.server, self.path
        entry = {"path": path, "range": self.headers.get("Range"), "auth": self.headers.get("Authorization"),
                 "status": None, "sent": 0}
        srv.log.append(entry)
        cdn = path.startswith("/cdn/")
        path = path.removeprefix("/cdn")
        if not cdn and srv.token and entry["auth"] != f"Bearer {srv.token}":
            return self._empty(entry, 401)
        if not cdn and path in srv.redirect:
            return self._empty(entry, 302, {"Location": f"http://localhost:{srv.server_address[1]}/cdn{path}"})
        if path not in srv.files:
            return self._empty(entry, 404)
        with open(srv.files[path], "rb") as f:
            data = f.read()
        mode = srv.corrupt.get(path)
        if mode == "flip":
            data = data[:len(data) // 2] + bytes([data[len(data) // 2] ^ 0xFF]) + data[len(data) // 2 + 1:]
        elif mode == "short":
            data = data[:-100]
        start = int(m.group(1)) if (m := re.fullmatch(r"bytes=(\d+)-", entry["range"] or "")) else 0
        headers = {"Content-Length": str(len(data) - start), "Accept-Ranges": "bytes"}
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = data[start:]
        drops = srv.drops.get(path)
        if drops:
            body = body[:drops.pop(0)]
        self._head(entry, 206 if start else 200, headers)
        self.wfile.write(body)
        entry["sent"] = len(body)
        if drops is not None and len(body) < len(data) - start:  # cut short: close as a failing network would
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True

    def _head(self, entry: dict, status: int, headers: dict) -> None:
        entry["status"] = status
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()

    def _empty(self, entry: dict, status: int, headers: dict | None = None) -> None:
        self._head(entry, status, {**(headers or {}), "Content-Length": "0"})


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def file_map(root: str, manifest) -> dict[str, str]:
    """URL path of every manifest file -> the same file in an official-layout folder."""
    from urllib.parse import urlsplit

    return {urlsplit(f.url("http://x")).path: os.path.join(root, *f.official.split("/")) for f in manifest}
