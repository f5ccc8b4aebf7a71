"""The front door: the HTTP service before the queue (aiohttp). Uses the bridge; the bridge never imports it."""
from .app import make_app, run_api
from .jobstore import JobStore
from .settings import ApiSettings

__all__ = ["ApiSettings", "JobStore", "make_app", "run_api"]
