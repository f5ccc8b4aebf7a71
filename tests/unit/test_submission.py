"""The front door's submission reading, in milliseconds: aiohttp's own request objects fed in-process (no server, no
broker, no database). The real-service tests (tests/frontdoor) stay the proof; these pin the parsing rules."""
from __future__ import annotations

import asyncio
import json
import os
from unittest import mock

import pytest
from aiohttp import streams
from aiohttp.test_utils import make_mocked_request

from queue_bridge import TemplateLibrary
from queue_bridge.front_door.api_errors import ApiError
from queue_bridge.front_door.api_settings import ApiSettings
from queue_bridge.front_door.pools import Pool, Slots
from queue_bridge.front_door.submission import SubmissionReader

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def reader() -> SubmissionReader:
    pool = Pool("test", 1)
    return SubmissionReader(ApiSettings(), TemplateLibrary(os.path.join(ROOT, "templates")), pool, pool,
                            Slots(2, 8, lambda scope: ApiError(429, "too_many_fetches", scope)))


def json_request(pieces: list[bytes]):
    """A POST whose body arrives in several reads, as it does over TCP."""
    loop = asyncio.get_running_loop()
    payload = streams.StreamReader(mock.Mock(_reading_paused=False), 2 ** 16, loop=loop)  # the connection's side

    async def feed():
        for piece in pieces:
            await asyncio.sleep(0.01)
            payload.feed_data(piece)
        payload.feed_eof()

    loop.create_task(feed())
    return make_mocked_request("POST", "/v1/jobs", headers={"Content-Type": "application/json"}, payload=payload)


def parse(pieces: list[bytes]):
    async def go():
        return await reader().parse(json_request(pieces))

    return asyncio.run(go())


def test_a_json_body_in_several_reads_is_read_whole():
    body = json.dumps({"image_url": "https://media.example.com/face.png",
                       "audio_url": "https://media.example.com/speech.wav", "parameters": {"seed": 7},
                       "metadata": {"order": "A-1"}}).encode()
    sub = parse([body[:10], body[10:40], body[40:]])
    assert sub.urls["image"].endswith("face.png") and sub.parameters == {"seed": 7}
    assert sub.metadata == {"order": "A-1"} and sub.files == {}  # nothing fetched at parse time


@pytest.mark.parametrize("body, status, code", [
    (b"[" * 20000 + b"]" * 20000, 400, "bad_json"),  # absurdly nested: refused, not a 500
    (b'{"image_url": "file:///etc/passwd", "audio_url": "https://a.example/s.wav"}', 422, "scheme_not_allowed"),
    (b'{"image_url": "https://a.example/f.png", "audio_url": "https://a.example/s.wav", "x": 1}', 400,
     "unknown_field"),
    (json.dumps({"image_url": "https://a.example/f.png", "audio_url": "https://a.example/s.wav",
                 "metadata": {str(i): i for i in range(17)}}).encode(), 400, "bad_field"),
    (json.dumps({"image_url": "https://a.example/f.png", "audio_url": "https://a.example/s.wav",
                 "parameters": {"engine": "wav2lip"}}).encode(), 422, "bad_parameter"),
    (b"x" * 70000, 413, "payload_too_large"),
])
def test_refusals(body, status, code):
    with pytest.raises(ApiError) as e:
        parse([body[:1000], body[1000:]])
    assert (e.value.status, e.value.code) == (status, code)
