"""The batch bridge: AMQP (pika) to RabbitMQ, HTTP to ComfyUI; imports neither torch nor ComfyUI.

The front door (queue_bridge.front_door) is built on it and takes these names from here; the bridge never imports
the front door.
"""
from .broker import Broker
from .client import BridgeClient, NotAccepted
from .inputs import InputPolicy, check_addresses, fetch
from .logs import setup_logging
from .panel import bridge_state
from .protocol import JobError, make_job
from .settings import Settings
from .store import open_store
from .template import TemplateLibrary, check_interface

__all__ = ["Broker", "BridgeClient", "NotAccepted", "InputPolicy", "check_addresses", "fetch", "setup_logging",
           "bridge_state", "JobError", "make_job", "Settings", "open_store", "TemplateLibrary", "check_interface"]
