"""HTTP routes SonicFlow adds to ComfyUI's server (PromptServer.instance.routes), for the canvas extension
(web/js/sonicflow.js). Registered by the pack's entry (docs/architecture.md: `__init__.py` holds the server routes),
so nodes/ keeps to sonic_core and the bridge's code is reached only from here:

    GET /sonicflow/bridge/state   queue depth, workers, dead letters of the batch bridge (broker "down" when RabbitMQ
                                  cannot be reached: the route still answers 200)

The broker and prefix come from ComfyUI's environment (SONICFLOW_AMQP_URL, SONICFLOW_PREFIX), never from the request.
"""
from __future__ import annotations

import asyncio

from aiohttp import web

from .queue_bridge import Settings, bridge_state


async def bridge_state_route(request):
    state = await asyncio.get_running_loop().run_in_executor(None, bridge_state, Settings())
    return web.json_response(state, headers={"Cache-Control": "no-store"})


def register() -> bool:
    try:
        from server import PromptServer
    except ImportError:  # not inside ComfyUI
        return False
    if getattr(PromptServer, "instance", None) is None:
        return False
    PromptServer.instance.routes.get("/sonicflow/bridge/state")(bridge_state_route)
    return True
