"""Writes the canvas template's thumbnail for ComfyUI's template browser from the template's own output: the bundled
API-format template (the same graph) is run on the bundled sample in a private headless ComfyUI, and one frame of the
video it publishes becomes example_workflows/talking_head.jpg (the frontend asks for <template name>.jpg).

    python -m devtools.template_thumbnail
"""
from __future__ import annotations

import io
import os

import av
from PIL import Image

from devtools.comfyui import ROOT, ComfyServer, scratch_base
from devtools.demo import run_talking_head
from queue_bridge.comfy_client import ComfyClient

THUMBNAIL = os.path.join(ROOT, "example_workflows", "talking_head.jpg")
SIZE = 384  # the template browser shows cards of about 256 px; 384 stays sharp on high-density screens
AT = 0.6  # where in the video the frame is taken (a moment of speech, well past the 2 s AI label)


def frame_at(video: bytes, fraction: float) -> Image.Image:
    with av.open(io.BytesIO(video)) as c:
        frames = [f.to_image() for f in c.decode(video=0)]
    return frames[min(len(frames) - 1, int(len(frames) * fraction))]


def main() -> None:
    with ComfyServer(scratch_base("comfy-thumbnail")) as server:
        video, _ = run_talking_head(ComfyClient(server.url))
    image = frame_at(video, AT).convert("RGB")
    image.thumbnail((SIZE, SIZE), Image.LANCZOS)
    image.save(THUMBNAIL, "JPEG", quality=85, optimize=True)
    print(f"wrote {THUMBNAIL} ({os.path.getsize(THUMBNAIL)} bytes)")


if __name__ == "__main__":
    main()
