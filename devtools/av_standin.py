"""Import sonic_core where PyAV is missing (the lent GPU machines' image has none; its wheel is 36 MB).

sonic_core's package __init__ imports the media modules, which import PyAV at module level. Tools that never read
or write media (bench/sonic_gpu.py, devtools/make_tiny_checkpoints.py) call `import_sonic_core()` first: without
PyAV, a stand-in module is in sys.modules only while sonic_core is imported (any use of it raises ImportError),
then removed, so that other libraries' availability probes still find no PyAV. With PyAV it does nothing special.
"""
from __future__ import annotations

import sys
import types


def import_sonic_core() -> bool:
    """Import sonic_core; True when the PyAV stand-in was needed."""
    try:
        import av  # noqa: F401
    except ImportError:
        pass
    else:
        import sonic_core  # noqa: F401
        return False
    stub = types.ModuleType("av")

    def _missing(name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise ImportError(f"PyAV is not installed (stand-in from devtools/av_standin.py): av.{name} is unavailable")

    stub.__getattr__ = _missing
    sys.modules["av"] = stub
    try:
        import sonic_core  # noqa: F401
    finally:
        if sys.modules.get("av") is stub:
            del sys.modules["av"]
    return True
