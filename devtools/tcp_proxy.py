"""A loopback TCP relay a test can cut and restore: the network between a service and its database or broker,
failing the way a real one does (established connections reset, new ones refused) without stopping the server,
which other tests share. It can also hold the traffic (a peer that hangs: connections stay open, bytes stop), in
both directions or only the answers (what the server sends is held: a lost confirm)."""
from __future__ import annotations

import socket
import threading

from devtools.comfyui import free_port


class TcpProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1", port: int | None = None):
        self.target = (target_host, target_port)
        self.port = port or free_port()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._flowing = {"up": threading.Event(), "down": threading.Event()}  # client->target, target->client
        for e in self._flowing.values():
            e.set()

    def start(self) -> "TcpProxy":
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # cut
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b, way in ((client, upstream, "up"), (upstream, client, "down")):
                threading.Thread(target=self._pipe, args=(a, b, self._flowing[way]), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket, flowing: threading.Event) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                flowing.wait()  # held: these bytes wait here, the connection stays open
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        """Refuse new connections and reset every open one."""
        # shutdown() first: it wakes the threads blocked in accept() and recv() on these sockets, which a bare
        # close() would not (the kernel keeps a socket open while a call is still inside it)
        with self._lock:
            socks, self._conns = self._conns + [self._listener], []
            self._listener = None
        for s in socks:
            if s is None:
                continue
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        self.release()  # after the shutdown: held bytes die with their sockets, the pipes end

    def restore(self) -> None:
        self.start()

    def hold(self, answers_only: bool = False) -> None:
        """Stop passing bytes (only what the target sends, with `answers_only`), keeping every connection open."""
        self._flowing["down"].clear()
        if not answers_only:
            self._flowing["up"].clear()

    def release(self) -> None:
        for e in self._flowing.values():
            e.set()

    stop = cut
