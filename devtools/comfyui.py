"""A private, headless ComfyUI for the demo and the tests: started on a free loopback port with this repo
linked into its custom_nodes/, waited on until it answers, and stopped cleanly.

    python -m devtools.comfyui [--base DIR]     # start, print the URL, stop on Ctrl-C

Base folders live outside the repository (see `scratch_base`): the pack is linked into each base's custom_nodes,
and a link back to the repository inside the repository makes tools that walk the tree (pip's editable install,
setuptools' file lists) loop forever.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMFY_DIR = os.environ.get("SONICFLOW_COMFYUI_DIR", os.path.join(ROOT, ".comfyui"))
PYTHON = os.environ.get("SONICFLOW_COMFYUI_PYTHON", os.path.join(ROOT, ".venv", "bin", "python"))
PACK_NAME = "SonicFlow"


def scratch_base(name: str) -> str:
    """A ComfyUI base folder for `name` in the system's temp folder, the same on every run (so logs are findable)."""
    return os.path.join(tempfile.gettempdir(), f"sonicflow-{name}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyServer:
    def __init__(self, base: str, port: int | None = None, extra_args: tuple[str, ...] = (), python: str = PYTHON):
        """`python`: the interpreter of the environment ComfyUI runs in (a fresh user install, in one test)."""
        self.base, self.port = os.path.abspath(base), port or free_port()
        self.extra_args, self.python = extra_args, python
        self.proc: subprocess.Popen | None = None
        self.log_path = os.path.join(self.base, "comfyui.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _prepare(self) -> None:
        if not os.path.isfile(os.path.join(COMFY_DIR, "main.py")):
            raise RuntimeError(f"no ComfyUI at {COMFY_DIR}: run scripts/bootstrap.sh (make test / make demo do)")
        for sub in ("custom_nodes", "input", "output", "temp", "user", "models"):
            os.makedirs(os.path.join(self.base, sub), exist_ok=True)
        link = os.path.join(self.base, "custom_nodes", PACK_NAME)
        if os.path.islink(link) and os.readlink(link) != ROOT:
            os.remove(link)
        if not os.path.lexists(link):
            os.symlink(ROOT, link)

    def start(self, timeout: float = 180.0) -> "ComfyServer":
        self._prepare()
        cmd = [self.python, os.path.join(COMFY_DIR, "main.py"), "--cpu", "--listen", "127.0.0.1",
               "--port", str(self.port), "--base-directory", self.base, "--disable-auto-launch", "--disable-api-nodes",
               "--database-url", f"sqlite:///{self.base}/user/comfyui.db", *self.extra_args]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, cwd=COMFY_DIR, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        import requests

        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode}; see {self.log_path}:\n"
                                   f"{self.log_tail()}")
            try:
                if requests.get(self.url + "/system_stats", timeout=2).ok:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"ComfyUI did not answer within {timeout:.0f} s; see {self.log_path}")

    def log_tail(self, n: int = 40) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 15.0) -> None:
        if not self.alive():
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default=scratch_base("comfy"))
    ap.add_argument("--port", type=int)
    args = ap.parse_args()
    with ComfyServer(args.base, args.port) as server:
        print(f"ComfyUI with SonicFlow at {server.url} (log: {server.log_path}); Ctrl-C stops it", flush=True)
        try:
            while server.alive():
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    sys.exit(0)


if __name__ == "__main__":
    main()
