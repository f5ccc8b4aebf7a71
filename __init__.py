"""SonicFlow, as a ComfyUI custom-node pack: clone this folder into ComfyUI/custom_nodes/."""
import importlib.util

WEB_DIRECTORY = "./web"

if importlib.util.find_spec("folder_paths") is not None:  # inside ComfyUI
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
    from .server_routes import register

    register()  # GET /sonicflow/bridge/state for the canvas panel
else:  # imported outside ComfyUI (pytest collecting this folder, a plain `pip install`): nothing to register
    NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS = {}, {}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
