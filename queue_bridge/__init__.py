"""The batch bridge: AMQP (pika) to RabbitMQ, HTTP to ComfyUI; imports neither torch nor ComfyUI.

The front door (queue_bridge.front_door) is built on it and takes these names from here; the bridge never imports
the front door.
"""
from .broker import Broker
from .client import BridgeClient, NotAccepted
from .inputs import InputPolicy, check_addresses, fetch
from .logs import setup_logging
from .panel import bridge_state
from .paths import OUT, ROOT, data_dir
from .protocol import JobError, make_job
from .settings import Declared, Settings, setting
from .store import open_store
from .template import TemplateLibrary, check_interface

__all__ = ["Broker", "BridgeClient", "NotAccepted", "InputPolicy", "check_addresses", "fetch", "setup_logging",
           "bridge_state", "OUT", "ROOT", "data_dir", "JobError", "make_job", "Declared", "Settings", "setting",
           "open_store", "TemplateLibrary", "check_interface"]
