"""Messages that used to stall a worker (issue #10 M2), hostile inputs that reach ComfyUI's nodes (M4 and the
loaders' formats), and passwords in input URLs (never echoed): a real worker on a real ComfyUI, lite engine.

A message the runner could not even start on (an attempt header that is not an integer, a body nested past the JSON
parser's stack) raised before the job's error handling: it stayed unacked, and with prefetch 1 the consumer took
nothing else while its health said ok. Each must be dead-lettered with its reason, and the next good job must run."""
from __future__ import annotations

import datetime
import json
import os
import pathlib

from devtools import hostile_media
from sonicflow_contract import ATTEMPT_HEADER

from .conftest import wait_until


def _unknown_template(job_id: str) -> dict:
    """Cheap to refuse once parsed: only the headers make these poison."""
    return {"version": 1, "job_id": job_id, "template": "no_such_template", "inputs": {"image": "portrait.png"}}


def _job(bridge, job_id: str, **inputs) -> dict:
    job = bridge.talking_job(job_id)
    job["inputs"].update(inputs)
    return job


def test_poison_messages_are_dead_lettered_and_the_worker_goes_on(bridge, media_root):
    (media_root / "poison").mkdir(exist_ok=True)
    (media_root / "poison" / "bomb.flac").write_bytes(hostile_media.flac(655350, 8, declared_s=590))
    worker = bridge.worker()
    deep_object = b'{"version": 1, "job_id": "poison-deep-object", "metadata": ' + \
        hostile_media.nested_json(50000) + b"}"
    cases = [  # (body, headers, code)
        (_unknown_template("poison-attempt-text"), {ATTEMPT_HEADER: "abc"}, "unknown_template"),
        (_unknown_template("poison-attempt-timestamp"), {ATTEMPT_HEADER: datetime.datetime(2026, 1, 1)},
         "unknown_template"),
        (_unknown_template("poison-attempt-table"), {ATTEMPT_HEADER: {"n": 1}}, "unknown_template"),
        (_unknown_template("poison-delivery-count-text"), {"x-delivery-count": "many"}, "unknown_template"),
        (hostile_media.nested_json(100000), None, "bad_json"),
        (deep_object, None, "bad_json"),
        (_job(bridge, "poison-password-in-url", image="ftp://user:s3cr3t@example.com/a.png"), None,
         "scheme_not_allowed"),
        (_job(bridge, "poison-audio-bomb", audio="poison/bomb.flac"), None, "media_rejected"),
    ]
    for body, headers, _code in cases:
        bridge.submit(json.dumps(body).encode() if isinstance(body, dict) else body, expect="dead", headers=headers)
    good = bridge.talking_job("poison-then-good")
    bridge.submit(good)

    result = bridge.wait_results([good["job_id"]], 120)[good["job_id"]]
    assert result["status"] == "succeeded", result
    wait_until(lambda: len(bridge.dead()) >= len(cases), 60, "every poison message in the dead-letter queue")
    dead = {d["body"]: d for d in bridge.dead()}
    for body, _headers, code in cases:
        text = (json.dumps(body) if isinstance(body, dict) else body.decode())[:2000]
        assert dead[text]["code"] == code, (text[:80], dead[text])
    bomb = next(d for d in dead.values() if d["job_id"] == "poison-audio-bomb")
    assert "[sonicflow:audio_too_large]" in bomb["message"] and "655350 Hz" in bomb["message"]
    # the password in the URL is in the job (the submitter's own message) and nowhere the worker wrote
    password = next(d for d in dead.values() if d["job_id"] == "poison-password-in-url")
    failure = next(r for r in bridge.results if r["job_id"] == "poison-password-in-url")
    assert "s3cr3t" not in password["message"] and "s3cr3t" not in json.dumps(failure)
    assert "***@example.com" in failure["error"]["message"]
    assert "s3cr3t" not in pathlib.Path(worker.log_path).read_text()
    # nothing left unacked, one connection all along, still alive
    wait_until(lambda: bridge.queue_counts(bridge.client.topology.jobs_queue) == (0, 0), 30, "jobs queue empty")
    assert worker.alive() and sum(e["event"] == "connected" for e in worker.events()) == 1


def _prompt(image: str, audio: str) -> dict:
    from .conftest import ROOT

    with open(os.path.join(ROOT, "templates", "talking_head_api.json")) as f:
        prompt = json.load(f)
    prompt["1"]["inputs"]["image"], prompt["2"]["inputs"]["audio"] = image, audio
    prompt["10"]["inputs"]["default"], prompt["11"]["inputs"]["default"] = "lite", "256"
    return prompt


def test_loaders_decode_only_the_formats_we_accept(bridge_comfy, media_root):
    """Pillow and FFmpeg open dozens of formats; SonicFlow's Load Image and Load Audio nodes hand a file only to the
    decoder of the format its bytes are, and only for PNG/JPEG/WebP and wav/mp3/flac/ogg/m4a (or a video's sound)."""
    from queue_bridge.comfy_client import ComfyClient, PromptFailed

    comfy = ComfyClient(bridge_comfy.url)
    face = comfy.upload((media_root / "portrait.png").read_bytes(), "poison_face.png")
    speech = comfy.upload((media_root / "speech.wav").read_bytes(), "poison_speech.wav")
    cases = [(comfy.upload(hostile_media.image("TIFF"), "poison_tiff.png"), speech, "image_unreadable"),
             (face, comfy.upload(hostile_media.aiff(), "poison_aiff.wav"), "audio_unreadable")]
    for image, audio, code in cases:
        try:
            comfy.run(_prompt(image, audio), timeout=180)
            raise AssertionError(f"{image} + {audio} ran")
        except PromptFailed as e:
            assert f"[sonicflow:{code}]" in str(e), str(e)[:500]
