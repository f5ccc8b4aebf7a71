"""Errors shown in the ComfyUI canvas: sonic_core's messages already name the input and the fix. Each carries its
code in the contract's parseable tag, so the bridge reads why a job failed from ComfyUI's history."""
from __future__ import annotations

from sonicflow_contract import tag_error

from ..sonic_core import SonicFlowError


class SonicFlowNodeError(Exception):
    def __init__(self, message: str, code: str = "bad_input"):
        self.code = code
        super().__init__(tag_error(code, message))


def user_errors(fn):
    """Re-raise sonic_core errors without their deep traceback noise, prefixed with the node's title."""

    def wrapped(self, *args, **kwargs):
        try:
            return fn(self, *args, **kwargs)
        except SonicFlowError as e:
            raise SonicFlowNodeError(f"SonicFlow {type(self).TITLE}: {e}", e.code) from None

    wrapped.__name__ = fn.__name__
    return wrapped
