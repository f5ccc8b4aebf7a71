"""A small client for ComfyUI's HTTP API (no torch, no ComfyUI import): queue a prompt, wait for its history
entry (the truth; websocket messages can be missed), fetch outputs, upload inputs, interrupt."""
from __future__ import annotations

import time
import uuid

import requests


class ComfyError(Exception):
    pass


class PromptRejected(ComfyError):
    """ComfyUI refused the prompt (400): `error` and per-node `node_errors` say why."""

    def __init__(self, body: dict):
        self.body = body
        err = body.get("error", {})
        nodes = "; ".join(f"node {nid} ({e.get('class_type')}): " + ", ".join(x.get("details") or x.get("message", "")
                                                                           for x in e.get("errors", []))
                          for nid, e in (body.get("node_errors") or {}).items())
        super().__init__(f"{err.get('message', 'prompt rejected')} {err.get('details', '')} {nodes}".strip())


class PromptFailed(ComfyError):
    def __init__(self, prompt_id: str, entry: dict):
        self.prompt_id, self.entry = prompt_id, entry
        self.error = next((data for kind, data in entry.get("status", {}).get("messages", [])
                           if kind == "execution_error"), {})
        super().__init__(f"prompt {prompt_id} failed in node {self.error.get('node_type', '?')}: "
                         f"{self.error.get('exception_message', entry.get('status', {}).get('status_str'))}".strip())


class ComfyClient:
    def __init__(self, base_url: str, timeout: float = 30.0):
        self.base = base_url.rstrip("/")
        self.http = requests.Session()
        self.timeout = timeout

    def _get(self, path: str, **params):
        r = self.http.get(self.base + path, params=params, timeout=self.timeout)
        r.raise_for_status()
        return r

    def ready(self) -> bool:
        try:
            return self.http.get(self.base + "/system_stats", timeout=2).ok
        except requests.RequestException:
            return False

    def object_info(self, node: str | None = None) -> dict:
        return self._get("/object_info" + (f"/{node}" if node else "")).json()

    def upload(self, data: bytes, name: str) -> str:
        """Store a file in ComfyUI's input folder (replacing one of that name: names are content hashes); returns
        the name to put in a loader's widget."""
        r = self.http.post(self.base + "/upload/image", files={"image": (name, data)},
                           data={"type": "input", "overwrite": "true"}, timeout=self.timeout)
        r.raise_for_status()
        body = r.json()
        return f"{body['subfolder']}/{body['name']}" if body.get("subfolder") else body["name"]

    def queue(self, prompt: dict, prompt_id: str | None = None, client_id: str | None = None) -> str:
        prompt_id = prompt_id or str(uuid.uuid4())
        r = self.http.post(self.base + "/prompt", json={"prompt": prompt, "prompt_id": prompt_id,
                                                        "client_id": client_id or "sonicflow"}, timeout=self.timeout)
        if r.status_code == 400:
            raise PromptRejected(r.json())
        r.raise_for_status()
        return r.json()["prompt_id"]

    def history(self, prompt_id: str) -> dict | None:
        return self._get(f"/history/{prompt_id}").json().get(prompt_id)

    def wait(self, prompt_id: str, timeout: float = 600.0, poll: float = 0.25) -> dict:
        """Block until the prompt is in the history; return its entry, or raise PromptFailed/TimeoutError."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.history(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None:
                if entry["status"].get("status_str") != "success":
                    raise PromptFailed(prompt_id, entry)
                return entry
            time.sleep(poll)
        raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout:.0f} s")

    def run(self, prompt: dict, timeout: float = 600.0) -> dict:
        return self.wait(self.queue(prompt), timeout)

    def view(self, filename: str, subfolder: str = "", kind: str = "output") -> bytes:
        return self._get("/view", filename=filename, subfolder=subfolder, type=kind).content

    def interrupt(self, prompt_id: str | None = None) -> None:
        self.http.post(self.base + "/interrupt", json={"prompt_id": prompt_id} if prompt_id else {},
                       timeout=self.timeout).raise_for_status()

    # --- used by the queue bridge -----------------------------------------------------------------------------------

    def system_stats(self) -> dict:
        return self._get("/system_stats").json()

    def queue_state(self) -> dict:
        """{"queue_running": [...], "queue_pending": [...]}; items are (number, prompt_id, prompt, extra, outputs)."""
        return self._get("/queue").json()

    def is_queued(self, prompt_id: str) -> bool:
        state = self.queue_state()
        return any(item[1] == prompt_id for key in ("queue_running", "queue_pending") for item in state.get(key, []))

    def delete_pending(self, prompt_id: str) -> None:
        self.http.post(self.base + "/queue", json={"delete": [prompt_id]}, timeout=self.timeout).raise_for_status()

    def open_ws(self, client_id: str, timeout: float = 2.0):
        """A websocket for progress messages, or None when it cannot be opened (the history is the truth anyway)."""
        try:
            import websocket

            ws = websocket.create_connection(self.base.replace("http", "ws", 1) + f"/ws?clientId={client_id}",
                                             timeout=timeout)
            ws.settimeout(0.5)
            return ws
        except Exception:  # noqa: BLE001 - progress is optional
            return None
