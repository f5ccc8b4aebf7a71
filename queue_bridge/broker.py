"""Connecting to RabbitMQ: one place for every connection the bridge and the front door make.

Several AMQP URLs (the nodes of a cluster) are tried in turn, from a starting point that differs between processes
so that workers spread over the nodes; a lost connection is opened again with a growing, jittered back-off, on the
next node first. pika does not recover connections by itself (unlike the Java and .NET clients), so every
long-lived user runs its session inside `Broker.run`.
"""
from __future__ import annotations

import logging
import random
import threading
import time

from .logs import log
from .topology import TopologyMismatch


class Broker:
    def __init__(self, urls, heartbeat: int = 30, name: str = "sonicflow"):
        import pika

        if isinstance(urls, str):
            urls = [urls]
        self.urls = [u for u in urls if u]
        if not self.urls:
            raise ValueError("no AMQP URL given (SONICFLOW_AMQP_URL or --amqp)")
        self.heartbeat, self.name = heartbeat, name
        self._next = random.randrange(len(self.urls))
        self.connected_node: str | None = None  # host:port of the node of the last connection
        self._pika = pika

    def parameters(self, heartbeat: int | None = None, socket_timeout: float = 5.0) -> list:
        """Connection parameters for every URL, starting from the next node in turn."""
        order = self.urls[self._next:] + self.urls[:self._next]
        out = []
        for url in order:
            p = self._pika.URLParameters(url)
            p.heartbeat = self.heartbeat if heartbeat is None else heartbeat
            p.blocked_connection_timeout = 60
            p.connection_attempts = 1
            p.socket_timeout = socket_timeout
            p.stack_timeout = socket_timeout * 3
            p.client_properties = {"connection_name": self.name}
            out.append(p)
        return out

    def connect(self, heartbeat: int | None = None, socket_timeout: float = 5.0):
        """A BlockingConnection to the first node that answers, trying each in turn."""
        params = self.parameters(heartbeat, socket_timeout)  # in turn, from this connection's starting node
        self._next = (self._next + 1) % len(self.urls)  # the next connection starts at another node
        errors = []
        for p in params:
            try:
                conn = self._pika.BlockingConnection(p)
            except self._pika.exceptions.AMQPConnectionError as e:
                errors.append(f"{p.host}:{p.port}: {type(e).__name__}")
                continue
            self.connected_node = f"{p.host}:{p.port}"  # where, for logs: never the URL (it holds the password)
            return conn
        raise self._pika.exceptions.AMQPConnectionError("no broker node answered (" + "; ".join(errors) + ")")

    def run(self, session, stop: threading.Event, what: str, on_state=None) -> None:
        """Until `stop` is set: connect, run `session(connection)` (it returns when `stop` is set, raises when the
        connection is lost), and after a loss connect again with back-off. `on_state(connected: bool)` is told of
        each change."""
        backoff, lost_at = 0.5, None
        while not stop.is_set():
            conn, started = None, None
            try:
                conn = self.connect()
                if on_state:
                    on_state(True)
                if lost_at is not None:
                    log("reconnected", what=what, broker=self.connected_node,
                        down_s=round(time.monotonic() - lost_at, 3))
                    lost_at = None
                started = time.monotonic()
                session(conn)
            except TopologyMismatch as e:  # settings that differ from the declared queues: said in full, and tried
                log("topology_mismatch", logging.ERROR, what=what, error=str(e))  # again (an operator may fix it)
            except Exception as e:  # noqa: BLE001 - broker lost, refused or failing over: connect again
                if not stop.is_set():
                    log("broker_lost", logging.WARNING, what=what, error=f"{type(e).__name__}: {e}"[:300])
                    lost_at = lost_at or time.monotonic()
            finally:
                if on_state:
                    on_state(False)
                close_quietly(conn)
            # a session that ran a while was a real connection: start the back-off again; one that failed at once
            # (a settings mismatch, a channel error on declare) keeps growing it, not a retry twice a second
            if started is not None and time.monotonic() - started > 30:
                backoff = 0.5
            stop.wait(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, 15.0)


def close_quietly(conn) -> None:
    try:
        if conn is not None and conn.is_open:
            conn.close()
    except Exception:  # noqa: BLE001 - already gone
        pass
