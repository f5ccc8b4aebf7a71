"""What every SonicFlow node shares: its id (the class name, as saved workflows name it), its display name, its
category, and errors shown in the canvas (sonic_core's messages already name the input and the fix)."""
from __future__ import annotations

import functools

from comfy_api.latest import io

from sonicflow_contract import tag_error

from ..sonic_core import SonicFlowError

CATEGORY = "SonicFlow"


class SonicFlowNodeError(Exception):
    """Carries its code in the contract's parseable tag, so the bridge reads why a job failed from ComfyUI's
    history."""

    def __init__(self, message: str, code: str = "bad_input"):
        self.code = code
        super().__init__(tag_error(code, message))


class SonicFlowNode(io.ComfyNode):
    TITLE = ""  # the display name is "SonicFlow <TITLE>"

    @classmethod
    def schema(cls, description: str, inputs: list, outputs: list, **options) -> io.Schema:
        return io.Schema(node_id=cls.__name__, display_name=f"SonicFlow {cls.TITLE}", category=CATEGORY,
                         description=description, inputs=inputs, outputs=outputs, **options)


def user_errors(fn):
    """Re-raise sonic_core errors without their deep traceback noise, prefixed with the node's name."""

    @functools.wraps(fn)
    def wrapped(cls, *args, **kwargs):
        try:
            return fn(cls, *args, **kwargs)
        except SonicFlowError as e:
            raise SonicFlowNodeError(f"SonicFlow {cls.TITLE}: {e}", e.code) from None

    return wrapped
