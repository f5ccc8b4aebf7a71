"""Long audio inside the real ComfyUI: a 10-minute job streams in bounded memory, and a cancel stops it."""
from __future__ import annotations

import io
import json
import os
import time
import wave

import numpy as np
import pytest

from devtools.demo import load_template, published_video
from devtools.ui_workflow import API, UI, to_ui
from queue_bridge.comfy_client import PromptFailed
from sonic_core.media.audio import load_audio

pytestmark = [pytest.mark.comfy]
FRAME_BYTES_512 = 512 * 512 * 3


def _long_speech(example_audio: str, seconds: float) -> bytes:
    speech = load_audio(example_audio).mono()
    reps = int(np.ceil(seconds * 16000 / speech.size))
    samples = np.tile(speech, reps)[: int(seconds * 16000)]
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes((samples * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def _rss(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))


def _prompt(comfy, example_image, audio_name, audio_bytes):
    prompt = load_template()
    with open(example_image, "rb") as f:
        prompt["1"]["inputs"]["image"] = comfy.upload(f.read(), "sonicflow_portrait.png")
    prompt["2"]["inputs"]["audio"] = comfy.upload(audio_bytes, audio_name)
    prompt["4"]["inputs"]["engine"] = "lite"
    prompt["5"]["inputs"]["preset"] = "ultrafast"
    return prompt


def test_ui_template_matches_api_template(comfy):
    with open(API) as f:
        api = json.load(f)
    with open(UI) as f:
        assert json.load(f) == to_ui(api, comfy.object_info()), "run: python -m devtools.ui_workflow"


def test_cancel_stops_a_long_job_and_leaves_no_file(comfy, comfy_server, example_image, example_audio):
    prompt = _prompt(comfy, example_image, "sonicflow_long_cancel.wav", _long_speech(example_audio, 300))
    prompt["5"]["inputs"]["filename_prefix"] = "sonicflow/cancelled"
    prompt_id = comfy.queue(prompt)
    temp = os.path.join(comfy_server.base, "temp", "sonicflow")
    deadline = time.monotonic() + 120
    while not (os.path.isdir(temp) and any(f.endswith(".part") for f in os.listdir(temp))):
        assert time.monotonic() < deadline, "the encode never started"
        time.sleep(0.2)
    comfy.interrupt(prompt_id)
    with pytest.raises(PromptFailed):
        comfy.wait(prompt_id, timeout=120)
    entry = comfy.history(prompt_id)
    assert "execution_interrupted" in [kind for kind, _ in entry["status"]["messages"]]
    assert not [f for f in os.listdir(temp) if f.startswith("cancelled")], "a half-written file was left behind"
    assert comfy.ready()


@pytest.mark.slow
def test_ten_minute_audio_streams_in_bounded_memory(comfy, comfy_server, example_image, example_audio):
    seconds = 600.0
    prompt = _prompt(comfy, example_image, "sonicflow_long.wav", _long_speech(example_audio, seconds))
    pid = comfy_server.proc.pid
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")  # reset the peak-RSS counter (VmHWM) so it measures this job alone
    before = _rss(pid, "VmRSS")
    entry = comfy.run(prompt, timeout=1800)
    growth = _rss(pid, "VmHWM") - before
    n_frames = int(seconds * 25)
    # Holding the frames would take n_frames * 512*512*3 bytes (11.8 GB as uint8, 4x as an IMAGE tensor).
    assert growth < 1.5e9, f"peak memory grew by {growth / 1e9:.2f} GB"
    assert growth < n_frames * FRAME_BYTES_512 / 8
    filename, subfolder, _ = published_video(entry)
    from sonic_core.media.encode import probe_video

    info = probe_video(os.path.join(comfy_server.base, "output", subfolder, filename))
    assert info.n_frames == n_frames and abs(info.duration - seconds) <= 1 / 25
