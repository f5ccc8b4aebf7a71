"""Templates: API-format workflows whose SonicFlow Job Input / Job Result nodes declare the job interface.

Nothing here knows a node id: inputs are found by the `name` widget of each SonicFlowJobInput node, the loader a file
input replaces is the node linked into its `value`, and what a value must satisfy (type, range, allowed values) is
read from ComfyUI's /object_info for the inputs the Job Input feeds.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import dataclass, field

from sonicflow_contract import FILE_KINDS, JOB_INPUT_NODE, JOB_RESULT_NODE, RESULT_KEY

from .protocol import JobError

DEFAULTS_SUFFIX = ".bridge.json"  # optional sidecar: {"timeout_s": 600, "max_attempts": 3}


@dataclass
class Declared:
    name: str
    node_id: str
    kind: str
    default: str
    required: bool
    source: list | None  # [node_id, slot] linked into `value` (file kinds)


@dataclass
class Template:
    name: str
    path: str
    prompt: dict
    sha256: str
    inputs: dict = field(default_factory=dict)  # name -> Declared
    results: dict = field(default_factory=dict)  # node_id -> name
    timeout_s: float = 600.0
    max_attempts: int = 3

    def consumers(self, node_id: str) -> list[tuple[str, str]]:
        """(node id, input name) pairs fed by a node's first output."""
        return [(nid, name) for nid, node in self.prompt.items() for name, v in node.get("inputs", {}).items()
                if isinstance(v, list) and len(v) == 2 and str(v[0]) == node_id]


def _is_link(v) -> bool:
    return isinstance(v, list) and len(v) == 2 and isinstance(v[0], str)


class TemplateLibrary:
    def __init__(self, folder: str, default_timeout_s: float = 600.0, default_max_attempts: int = 3):
        self.folder = os.path.abspath(folder)
        self.default_timeout_s, self.default_max_attempts = default_timeout_s, default_max_attempts
        self._cache: dict[str, tuple[float, Template]] = {}

    def path_of(self, name: str) -> str | None:
        for candidate in (f"{name}_api.json", f"{name}.json"):
            path = os.path.join(self.folder, candidate)
            if os.path.isfile(path):
                return path
        return None

    def names(self) -> list[str]:
        return sorted(f[:-len("_api.json")] for f in os.listdir(self.folder) if f.endswith("_api.json"))

    def get(self, name: str) -> Template:
        path = self.path_of(name)
        if path is None:
            raise JobError("unknown_template",
                           f"no template '{name}' in {self.folder} (have: {', '.join(self.names())})")
        mtime = os.path.getmtime(path)
        hit = self._cache.get(name)
        if hit and hit[0] == mtime:
            return hit[1]
        with open(path, "rb") as f:
            raw = f.read()
        prompt = json.loads(raw)
        if not isinstance(prompt, dict) or "nodes" in prompt:
            raise JobError("unknown_template", f"{path} is not an API-format workflow (export it with Save (API))")
        t = Template(name, path, prompt, hashlib.sha256(raw).hexdigest(), timeout_s=self.default_timeout_s,
                     max_attempts=self.default_max_attempts)
        for nid, node in prompt.items():
            ins = node.get("inputs", {})
            if node.get("class_type") == JOB_INPUT_NODE:
                d = Declared(str(ins.get("name")), nid, str(ins.get("type", "string")), str(ins.get("default", "")),
                             bool(ins.get("required", False)), ins.get("value") if _is_link(ins.get("value")) else None)
                if d.name in t.inputs:
                    raise JobError("unknown_template", f"{path}: two Job Input nodes are named '{d.name}'")
                t.inputs[d.name] = d
            elif node.get("class_type") == JOB_RESULT_NODE:
                t.results[nid] = str(ins.get("name"))
        defaults = os.path.splitext(path)[0] + DEFAULTS_SUFFIX
        if os.path.isfile(defaults):
            with open(defaults) as f:
                conf = json.load(f)
            t.timeout_s = float(conf.get("timeout_s", t.timeout_s))
            t.max_attempts = int(conf.get("max_attempts", t.max_attempts))
        self._cache[name] = (mtime, t)
        return t


def _type_ok(kind: str, value) -> bool:
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "boolean":
        return isinstance(value, bool)
    return isinstance(value, str)


def _spec_of(object_info: dict, class_type: str, input_name: str):
    info = object_info.get(class_type, {}).get("input", {})
    for section in ("required", "optional"):
        if input_name in info.get(section, {}):
            return info[section][input_name]
    return None


def check_interface(t: Template, job_inputs: dict, parameters: dict) -> None:
    """Names and presence (no ComfyUI needed): missing_input / unknown_input / bad_parameter(type)."""
    for name in job_inputs:
        d = t.inputs.get(name)
        if d is None:
            raise JobError("unknown_input",
                           f"template {t.name} has no input '{name}' (has: {', '.join(sorted(t.inputs))})")
        if d.kind not in FILE_KINDS:
            raise JobError("unknown_input", f"'{name}' is a {d.kind} value: give it in parameters, not inputs")
    for name, value in parameters.items():
        d = t.inputs.get(name)
        if d is None:
            raise JobError("unknown_input",
                           f"template {t.name} has no parameter '{name}' (has: {', '.join(sorted(t.inputs))})")
        if d.kind in FILE_KINDS:
            raise JobError("unknown_input", f"'{name}' is a {d.kind} file: give it in inputs, not parameters")
        if not _type_ok(d.kind, value):
            raise JobError("bad_parameter",
                           f"parameter '{name}' must be {d.kind}, got {type(value).__name__} {value!r}")
    for d in t.inputs.values():
        if d.required and d.name not in job_inputs and d.name not in parameters:
            raise JobError("missing_input", f"template {t.name} requires '{d.name}' ({d.kind})")


def check_values(t: Template, parameters: dict, object_info: dict) -> None:
    """Ranges and allowed values, read from ComfyUI's node definitions of the inputs each parameter feeds."""
    for name, value in parameters.items():
        d = t.inputs[name]
        for nid, inp in t.consumers(d.node_id):
            spec = _spec_of(object_info, t.prompt[nid]["class_type"], inp)
            if not spec:
                continue
            options = spec[0] if isinstance(spec[0], list) else (spec[1].get("options") if spec[0] == "COMBO" and
                                                                  len(spec) > 1 else None)
            extra = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            if options is not None and value not in options:
                raise JobError("bad_parameter", f"parameter '{name}' = {value!r} is not one of {options}")
            if spec[0] in ("INT", "FLOAT") and isinstance(value, (int, float)):
                if "min" in extra and value < extra["min"] or "max" in extra and value > extra["max"]:
                    raise JobError("bad_parameter", f"parameter '{name}' = {value} is outside "
                                                    f"[{extra.get('min')}, {extra.get('max')}]")
                if spec[0] == "INT" and not isinstance(value, int):
                    raise JobError("bad_parameter", f"parameter '{name}' must be an integer")


def _file_widget(object_info: dict, class_type: str) -> str | None:
    info = object_info.get(class_type, {}).get("input", {})
    combos = []
    for section in ("required", "optional"):
        for name, spec in info.get(section, {}).items():
            extra = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            if any(extra.get(flag) for flag in ("image_upload", "audio_upload", "video_upload", "upload")):
                return name
            if isinstance(spec[0], list) or spec[0] == "COMBO":
                combos.append(name)
    return combos[0] if combos else None


def fill(t: Template, uploaded: dict, parameters: dict, object_info: dict) -> dict:
    """A copy of the template with each file input's loader pointing at its uploaded file and each value set."""
    prompt = copy.deepcopy(t.prompt)
    for name, filename in uploaded.items():
        d = t.inputs[name]
        if d.source is None:
            raise JobError("unknown_template",
                           f"{t.path}: Job Input '{name}' ({d.kind}) has no loader linked into value")
        loader = prompt[d.source[0]]
        widget = _file_widget(object_info, loader["class_type"])
        if widget is None:
            raise JobError("unknown_template", f"{t.path}: {loader['class_type']} (linked into Job Input '{name}') "
                                               "has no file widget")
        loader["inputs"][widget] = filename
    for name, value in parameters.items():
        d = t.inputs[name]
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        prompt[d.node_id]["inputs"]["default"] = text
    return prompt


def resolved_parameters(t: Template, parameters: dict) -> dict:
    """Every value input with the job's value or the template default (part of the result-cache key)."""
    out = {}
    for d in t.inputs.values():
        if d.kind not in FILE_KINDS:
            out[d.name] = parameters.get(d.name, d.default)
    return out


def results_of(t: Template, entry: dict) -> list[dict]:
    """The Job Result items of a finished prompt's history entry."""
    items = []
    for nid in t.results:
        for item in (entry.get("outputs", {}).get(nid) or {}).get(RESULT_KEY, []):
            items.append(item)
    return items
