"""SonicFlow, as a ComfyUI custom-node pack: clone this folder into ComfyUI/custom_nodes/.

The nodes use ComfyUI's V3 schema, registered through `comfy_entrypoint`; this module must not define
NODE_CLASS_MAPPINGS (ComfyUI would then take the pack for a V1 one and never call the entrypoint)."""
import importlib.util
import os
import sys

WEB_DIRECTORY = "./web"


def _load_contract() -> None:
    """sonicflow_contract is imported by absolute name everywhere (it is a top-level module of the installed
    package); ComfyUI loads this folder as a package without putting it on sys.path, so register it by file."""
    if "sonicflow_contract" not in sys.modules:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sonicflow_contract.py")
        spec = importlib.util.spec_from_file_location("sonicflow_contract", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["sonicflow_contract"] = module
        spec.loader.exec_module(module)


if importlib.util.find_spec("folder_paths") is not None:  # inside ComfyUI
    _load_contract()
    from .nodes import SonicFlowExtension
    from .server_routes import register

    register()  # GET /sonicflow/bridge/state for the canvas panel

    async def comfy_entrypoint() -> SonicFlowExtension:
        return SonicFlowExtension()

    __all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
else:  # imported outside ComfyUI (pytest collecting this folder, a plain `pip install`): nothing to register
    __all__ = ["WEB_DIRECTORY"]
