"""SonicFlow Job Input and Job Result: a saved workflow declares its own batch-job interface.

The queue bridge (queue_bridge/template.py) finds these nodes by class and fills them *by name* from a job, so no
node id is written anywhere. In the canvas they are harmless: a Job Input passes its linked loader's output through
(file inputs) or emits its default (values), and a Job Result just reports what it was given.
"""
from __future__ import annotations

import json
import os

import folder_paths
from comfy_api.latest import io

from sonicflow_contract import FILE_KINDS, INPUT_KINDS, RESULT_KEY

from .base import SonicFlowNode, SonicFlowNodeError


def parse_value(kind: str, text: str):
    """A Job Input's default (always typed as text in the canvas) as the value its kind means."""
    text = text.strip()
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    if kind == "boolean":
        if text.lower() in ("true", "1", "yes", "on"):
            return True
        if text.lower() in ("false", "0", "no", "off", ""):
            return False
        raise ValueError(f"{text!r} is not a boolean")
    return text


class SonicFlowJobInput(SonicFlowNode):
    TITLE = "Job Input"

    @classmethod
    def define_schema(cls):
        return cls.schema(
            "Declares one input of this workflow for batch jobs (RabbitMQ bridge), filled by name. File kinds "
            "(image, audio, video, file): link a loader's output into `value`; the bridge puts the job's file into "
            "that loader. Value kinds (string, int, float, boolean): link the output where the value goes; `default` "
            "is used when you run it by hand or the job leaves it out.",
            inputs=[
                io.String.Input("name", default="input",
                                tooltip="The name a job uses for this input (e.g. image, seed)."),
                io.Combo.Input("type", options=list(INPUT_KINDS), default="string",
                               tooltip="What the job must give: a file of this kind, or a value of this type."),
                io.String.Input("default", default="", tooltip="Value kinds: the value when the job leaves it out "
                                                               "(written as text: 7, 0.5, true, lite)."),
                io.Boolean.Input("required", default=False, tooltip="A job that leaves this input out is refused."),
                io.AnyType.Input("value", optional=True, tooltip="File kinds: link the loader's output here (its "
                                                                 "file is what the job replaces)."),
            ],
            outputs=[io.AnyType.Output(display_name="value", tooltip="The linked loader's output (file kinds) or the "
                                                                     "value (value kinds).")])

    @classmethod
    def execute(cls, name, type, default, required, value=None):
        kind = type
        if value is not None:
            return io.NodeOutput(value)
        if kind in FILE_KINDS:
            raise SonicFlowNodeError(f"SonicFlow Job Input '{name}': value: a {kind} input needs a loader linked "
                                     "into `value`. Fix: connect a Load Image / Load Audio output to it.")
        try:
            return io.NodeOutput(parse_value(kind, default))
        except ValueError:
            raise SonicFlowNodeError(f"SonicFlow Job Input '{name}': default: {default!r} is not a valid {kind}. "
                                     f"Fix: type a {kind} value.") from None


def _describe(value) -> dict:
    """What the bridge needs to fetch a result: a file ComfyUI can serve through /view, a URL, or a plain value."""
    if isinstance(value, str):
        path = value[len("file://"):] if value.startswith("file://") else value
        if os.path.isabs(path) and os.path.isfile(path):
            for kind, root in (("output", folder_paths.get_output_directory()),
                               ("temp", folder_paths.get_temp_directory()),
                               ("input", folder_paths.get_input_directory())):
                root = os.path.abspath(root)
                if os.path.commonpath([os.path.abspath(path), root]) == root:
                    sub = os.path.relpath(os.path.dirname(os.path.abspath(path)), root)
                    item = {"kind": "file", "filename": os.path.basename(path),
                            "subfolder": "" if sub == "." else sub, "type": kind}
                    sidecar = os.path.splitext(path)[0] + ".json"
                    if os.path.isfile(sidecar):
                        try:
                            with open(sidecar) as f:
                                item["meta"] = json.load(f)
                        except (OSError, ValueError):
                            pass
                    return item
        if "://" in value:
            return {"kind": "url", "url": value}
        return {"kind": "value", "value": value}
    if isinstance(value, (bool, int, float)) or value is None:
        return {"kind": "value", "value": value}
    return {"kind": "value", "value": str(value)}


class SonicFlowJobResult(SonicFlowNode):
    TITLE = "Job Result"

    @classmethod
    def define_schema(cls):
        return cls.schema(
            "Marks what this workflow returns to a batch job, under a name (e.g. link Publish's url as 'video'). The "
            "bridge fetches files it names and stores them where the job asked.",
            inputs=[io.String.Input("name", default="video",
                                    tooltip="The name of this result in the job's result message."),
                    io.AnyType.Input("value", tooltip="What is returned: a file path or URL (e.g. Publish's url), "
                                                      "or a value.")],
            outputs=[], is_output_node=True)

    @classmethod
    def execute(cls, name, value):
        return io.NodeOutput(ui={RESULT_KEY: [{"name": name, **_describe(value)}]})
