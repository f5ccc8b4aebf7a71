"""A webhook receiver for the tests: a customer's endpoint on loopback, verifying what it gets with the Standard
Webhooks library."""
from __future__ import annotations

import http.server
import threading

import standardwebhooks


class Receiver:
    """A webhook receiver on loopback that verifies signature + timestamp + id, like a customer's endpoint should:
    with the `standardwebhooks` library."""

    def __init__(self, fail_first: int = 0):
        self.secret = None
        self.seen: set = set()
        self.accepted: list = []
        self.refused: list = []
        self.raw: list = []
        self.fail_first = fail_first
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.raw.append(({k.lower(): v for k, v in self.headers.items()}, body))
                if outer.fail_first > 0:
                    outer.fail_first -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                try:  # the Standard Webhooks library checks the signature and the timestamp; the id is ours
                    payload = standardwebhooks.Webhook(outer.secret).verify(body, dict(self.headers))
                except standardwebhooks.WebhookVerificationError as e:
                    outer.refused.append(str(e))
                    self.send_response(401)
                else:
                    duplicate = self.headers["webhook-id"] in outer.seen
                    outer.seen.add(self.headers["webhook-id"])
                    if not duplicate:
                        outer.accepted.append(payload)
                    self.send_response(409 if duplicate else 200)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
