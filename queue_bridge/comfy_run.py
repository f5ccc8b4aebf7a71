"""Running one filled template on one ComfyUI: upload the inputs, queue the prompt under a prompt id derived from the
job (so a redelivered job finds its earlier run instead of starting another), follow it (progress from the
websocket; /history decides), interrupt it on timeout, shutdown or cancel, and collect its Job Result outputs into
the store. Knows nothing of AMQP."""
from __future__ import annotations

import json
import os
import threading
import time
import uuid
from importlib import metadata

import requests

from sonicflow_contract import CONTENT_TYPES, ENVIRONMENT_ERRORS, FILE_KINDS, error_code

from .comfy_client import ComfyClient, PromptFailed, PromptRejected
from .logs import log
from .protocol import JobError
from .template import fill, results_of

PROMPT_NS = uuid.UUID("6f1c3f4e-5b1d-4a53-9a59-7c2b8e6d0a11")


def prompt_id_for(job_id: str, attempt: int, salt: str = "") -> str:
    return str(uuid.uuid5(PROMPT_NS, f"{job_id}/{attempt}{salt}"))


def _package_version() -> str:
    try:
        return metadata.version("sonicflow")
    except metadata.PackageNotFoundError:
        return "dev"


class Interrupted(Exception):
    """The worker is stopping and the grace period ran out: the job was interrupted in ComfyUI."""


class Cancelled(Exception):
    """A cancel for the job arrived while it was held here: its prompt, if queued, was interrupted in ComfyUI."""


CANCEL_MEMORY_S = 3600.0  # how long a cancel heard for a job this executor has not (yet) run is remembered


class ComfyExecutor:
    """One ComfyUI: what its nodes accept (/object_info, cached), its version, and running prompts on it."""

    def __init__(self, comfy_url: str, stop_event: threading.Event, engine_version: str = "", progress=None):
        self.comfy = ComfyClient(comfy_url, timeout=30)
        self.stop_event, self.progress = stop_event, progress or (lambda *a: None)
        self.extra_version = engine_version
        self.client_id = f"sonicflow-bridge-{uuid.uuid4().hex[:8]}"
        self.grace_deadline: float | None = None
        self._object_info: dict = {}
        self._engine_version: str | None = None
        self._cancels: dict[str, float] = {}  # job id -> when its cancel was heard

    def request_cancel(self, job_id: str) -> None:
        """A cancel message for `job_id` (from the consumer's connection thread): the job, if it runs here now or
        is taken soon, is interrupted. Replaced, never mutated in place, as the job thread reads it."""
        now = time.monotonic()
        kept = {j: t for j, t in self._cancels.items() if now - t < CANCEL_MEMORY_S}
        self._cancels = {**kept, job_id: now}

    def _check_cancel(self, job_id: str, prompt_id: str | None = None) -> None:
        if job_id in self._cancels:
            if prompt_id:
                self.interrupt(prompt_id)
            raise Cancelled()

    def object_info(self, classes) -> dict:
        for c in classes:
            if c not in self._object_info:
                self._object_info.update(self.comfy.object_info(c))
        return self._object_info

    def engine_version(self) -> str:
        """What the result cache's key must change with: SonicFlow's and ComfyUI's versions, and the operator's text."""
        if self._engine_version is None:
            comfy = self.comfy.system_stats().get("system", {}).get("comfyui_version", "?")
            self._engine_version = f"sonicflow={_package_version()};comfyui={comfy};{self.extra_version}"
        return self._engine_version

    def run(self, job, t, fetched: dict, info: dict, attempt: int, delivery: int, timings: dict, store):
        """(outputs, values, engine) of the job's run; JobError, Interrupted or Cancelled otherwise."""
        self._check_cancel(job.job_id)
        s = time.monotonic()
        try:
            uploaded = {name: self.comfy.upload(f.data, f"sfjob_{f.sha256[:20]}{f.ext}") for name, f in fetched.items()
                        if t.inputs[name].kind in FILE_KINDS}
        except requests.RequestException as e:
            raise JobError("comfy_unavailable", f"upload to {self.comfy.base}: {e}") from None
        prompt = fill(t, uploaded, job.parameters, info)
        timings["upload"] = time.monotonic() - s
        s = time.monotonic()
        entry = self._execute(job, prompt, float(job.timeout_s or t.timeout_s), attempt, delivery)
        timings["execute"] = time.monotonic() - s
        s = time.monotonic()
        collected = self._collect(t, entry, store)
        timings["collect"] = time.monotonic() - s
        return collected

    def _execute(self, job, prompt: dict, timeout: float, attempt: int, delivery: int) -> dict:
        prompt_id = prompt_id_for(job.job_id, attempt)
        accepted = False
        ws = None
        try:
            entry = self.comfy.history(prompt_id)
            if entry and entry.get("status", {}).get("status_str") not in ("success", None):
                prompt_id = prompt_id_for(job.job_id, attempt, f"/d{delivery}")  # an earlier delivery failed
                entry = None
            if not entry and not self.comfy.is_queued(prompt_id):
                ws = self.comfy.open_ws(self.client_id)
                accepted = True  # from here a lost ComfyUI may be this job's doing (a poison job): count it
                try:
                    self.comfy.queue(prompt, prompt_id=prompt_id, client_id=self.client_id)
                except PromptRejected as e:
                    raise JobError("prompt_rejected", str(e)[:500]) from None
            accepted = True
            log("prompt_queued", job_id=job.job_id, attempt=attempt, prompt_id=prompt_id, comfy=self.comfy.base)
            return entry or self._follow(job, prompt_id, timeout, ws)
        except requests.RequestException as e:
            if accepted:
                raise JobError("comfy_crashed", f"{self.comfy.base} went away running {prompt_id}: {e}") from None
            raise JobError("comfy_unavailable", f"{self.comfy.base}: {e}") from None
        finally:
            if ws is not None:
                try:
                    ws.close()
                except Exception:  # noqa: BLE001 - already closed
                    pass

    def _collect(self, t, entry: dict, store):
        outputs, values, engine = [], {}, None
        items = results_of(t, entry)
        if not items:
            raise JobError("no_result", f"template {t.name} produced no Job Result output")
        for item in items:
            if item.get("kind") == "file":
                try:
                    data = self.comfy.view(item["filename"], item.get("subfolder", ""), item.get("type", "output"))
                except requests.RequestException as e:
                    raise JobError("comfy_crashed", f"fetching {item['filename']}: {e}") from None
                ext = os.path.splitext(item["filename"])[1].lower()
                put = store.put_content(data, ext, CONTENT_TYPES.get(ext, "application/octet-stream"))
                meta = item.get("meta") or {}
                engine = engine or meta.get("engine")
                outputs.append({"name": item["name"], **put,
                                **({"media_duration_s": meta["duration"]} if "duration" in meta else {})})
            elif item.get("kind") == "url":
                outputs.append({"name": item["name"], "url": item["url"]})
            else:
                values[item["name"]] = item.get("value")
        return outputs, values, engine

    def _follow(self, job, prompt_id: str, timeout: float, ws) -> dict:
        """Wait for the prompt, reading progress from the websocket; /history decides. Interrupt on timeout."""
        deadline = time.monotonic() + timeout
        next_poll = 0.0
        fast_until = 0.0  # after a "done" message, look at the history often until it shows the prompt
        last_progress = 0.0
        while True:
            now = time.monotonic()
            self._check_cancel(job.job_id, prompt_id)
            if self.stop_event.is_set() and self.grace_deadline and now > self.grace_deadline:
                self.interrupt(prompt_id)
                raise Interrupted()
            if now > deadline:
                self.interrupt(prompt_id)
                raise JobError("timeout", f"ran longer than its timeout of {timeout:g} s; prompt {prompt_id} "
                                          "interrupted in ComfyUI")
            if now >= next_poll:
                entry = self.comfy.history(prompt_id)
                if entry and entry.get("status", {}).get("completed") is not None:
                    if entry["status"].get("status_str") != "success":
                        raise classify(PromptFailed(prompt_id, entry))
                    return entry
                next_poll = now + (0.02 if now < fast_until else 1.0 if ws is not None else 0.05)
            if ws is None:
                time.sleep(0.02)
                continue
            try:
                ws.settimeout(max(0.005, min(0.5, next_poll - time.monotonic())))
                raw = ws.recv()
            except Exception as e:  # noqa: BLE001 - timeouts, or a socket that went away
                if type(e).__name__ != "WebSocketTimeoutException":
                    ws = None
                continue
            if not isinstance(raw, str):
                continue
            try:
                msg = json.loads(raw)
            except ValueError:
                continue
            data = msg.get("data") or {}
            if data.get("prompt_id") != prompt_id:
                continue
            kind = msg.get("type")
            if kind in ("execution_success", "execution_error", "execution_interrupted") or (
                    kind == "executing" and data.get("node") is None):
                next_poll, fast_until = 0.0, now + 2.0  # the history is written at task_done: look now and often
            elif kind == "progress" and now - last_progress > 0.5:
                last_progress = now
                self.progress(job.job_id, {"node": data.get("node"), "value": data.get("value"),
                                           "max": data.get("max")})

    def interrupt(self, prompt_id: str) -> None:
        try:
            self.comfy.delete_pending(prompt_id)
            self.comfy.interrupt(prompt_id)
            log("interrupted", prompt_id=prompt_id, comfy=self.comfy.base)
        except requests.RequestException:
            pass


def classify(e: PromptFailed) -> JobError:
    """Why a prompt failed: interrupted by someone else (retry elsewhere); a SonicFlow node's tagged code: the
    storage failed (retry later), this ComfyUI lacks weights or libraries (retry, elsewhere), else the input is at
    fault (permanent); anything else is retryable (a crash may not repeat)."""
    messages = [m[0] for m in e.entry.get("status", {}).get("messages", [])]
    if "execution_interrupted" in messages:
        return JobError("comfy_crashed", f"prompt {e.prompt_id} was interrupted by someone else")
    code = error_code(str(e))
    if code == "storage_error":
        return JobError("storage_unavailable", str(e)[:500])
    if code is None or code in ENVIRONMENT_ERRORS:
        return JobError("execution_failed", str(e)[:500], retryable=True)
    return JobError("media_rejected", str(e)[:500])
