"""What every SonicFlow node shares: its id (the class name, as saved workflows name it), its display name, its
category, and errors shown in the canvas (sonic_core's messages already name the input and the fix)."""
from __future__ import annotations

import functools

from comfy_api.latest import io

from ..sonic_core import SonicFlowError

CATEGORY = "SonicFlow"


class SonicFlowNodeError(Exception):
    pass


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
            raise SonicFlowNodeError(f"SonicFlow {cls.TITLE}: {e}") from None

    return wrapped
