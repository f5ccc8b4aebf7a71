"""Errors shown in the ComfyUI canvas: sonic_core's messages already name the input and the fix."""
from __future__ import annotations

from ..sonic_core import SonicFlowError


class SonicFlowNodeError(Exception):
    pass


def user_errors(fn):
    """Re-raise sonic_core errors without their deep traceback noise, prefixed with the node's title."""

    def wrapped(self, *args, **kwargs):
        try:
            return fn(self, *args, **kwargs)
        except SonicFlowError as e:
            raise SonicFlowNodeError(f"SonicFlow {type(self).TITLE}: {e}") from None

    wrapped.__name__ = fn.__name__
    return wrapped
