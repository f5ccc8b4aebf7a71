"""The batch bridge and the front door: AMQP (pika) to RabbitMQ, HTTP to ComfyUI; imports neither torch nor ComfyUI."""
from .config import Settings
from .panel import bridge_state

__all__ = ["Settings", "bridge_state"]
