"""The pack inside a real headless ComfyUI: node registry, the API-format template end to end, bad inputs."""
from __future__ import annotations

import hashlib
import json
import os
import struct
import zlib

import av
import numpy as np
import pytest
import requests

from devtools.comfyui import ROOT
from devtools.demo import load_template, published_video, run_talking_head
from devtools.ui_workflow import UI
from queue_bridge.comfy_client import PromptFailed
from sonic_core.media.audio import load_audio
from sonic_core.media.encode import probe_video
from sonic_core.media.face import detect_face
from sonic_core.provenance import read_provenance
from sonic_core.publish.labels import check_labels
from sonic_core.sync import measure_sync

pytestmark = pytest.mark.comfy

NODES = ["SonicFlowLoadImage", "SonicFlowLoadAudio", "SonicFlowPreData", "SonicFlowGenerate", "SonicFlowVideoEncode",
         "SonicFlowPublish", "SonicFlowFramesToImages", "SonicFlowImagesToFrames", "SonicFlowJobInput",
         "SonicFlowJobResult"]


def test_object_info_lists_every_sonicflow_node(comfy):
    info = comfy.object_info()
    for name in NODES:
        node = info[name]
        assert node["category"] == "SonicFlow" and node["display_name"].startswith("SonicFlow ")
        for section in ("required", "optional"):
            for inp, spec in node["input"].get(section, {}).items():
                assert spec[1].get("tooltip"), f"{name}.{inp} has no tooltip"
    assert info["SonicFlowPreData"]["input"]["required"]["image"][0] == "IMAGE"
    assert info["SonicFlowPreData"]["input"]["required"]["audio"][0] == "AUDIO"
    assert info["SonicFlowVideoEncode"]["output"][0] == "VIDEO"
    assert info["SonicFlowPublish"]["input"]["required"]["video"][0] == "VIDEO"
    template = load_template()
    assert {n["class_type"] for n in template.values()} <= set(info)


def _graph(prompt: dict) -> dict:
    """An API-format prompt without what ComfyUI adds while running it (each loader's is_changed)."""
    return {node_id: (node["class_type"], node["inputs"]) for node_id, node in prompt.items()}


def _frames(path: str) -> np.ndarray:
    with av.open(path) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def test_template_makes_a_talking_video(comfy, comfy_server, example_audio, tmp_path):
    video, entry = run_talking_head(comfy)
    path = tmp_path / "out.mp4"
    path.write_bytes(video)
    info = probe_video(str(path))
    audio_seconds = load_audio(example_audio).duration

    assert (info.video_codec, info.pix_fmt, info.audio_codec) == ("h264", "yuv420p", "aac")
    assert abs(info.duration - audio_seconds) <= 1 / 25
    assert abs(info.audio_duration - audio_seconds) <= 1 / 25
    assert info.n_frames == round(audio_seconds * 25)
    prov = read_provenance(info.metadata)
    assert prov["engine"] == "lite" and "auto" in prov["note"]
    # The graph that made it, as core SaveVideo embeds it (no canvas workflow: it came through POST /prompt).
    assert _graph(json.loads(info.metadata["prompt"])) == _graph(entry["prompt"][2]) and "workflow" not in info.metadata

    frames = _frames(str(path))
    face = detect_face(frames[0])
    assert face is not None, "the person is no longer recognisable as a face"
    mouth = frames[:, face.y0 + face.height * 2 // 3: face.y1, face.x0 + face.width // 4: face.x1 - face.width // 4]
    corner = frames[:, -32:, -32:]  # the top-left one carries the AI label for 2 s
    mouth_motion = np.abs(mouth.astype(np.int16) - mouth[:1]).mean(axis=(1, 2, 3)).max()
    corner_motion = np.abs(corner.astype(np.int16) - corner[:1]).mean(axis=(1, 2, 3)).max()
    assert mouth_motion > 8 and corner_motion < 2, (mouth_motion, corner_motion)

    labels = check_labels(str(path))  # on by default: 'AI生成' for 2 s and the AIGC metadata
    assert labels.visible and labels.implicit["Label"] == "1"

    sync = measure_sync(str(path))
    assert abs(sync.offset_frames) <= 1 and sync.peak >= 0.5, sync.to_dict()

    # Publish kept it under its content hash, with the provenance sidecar beside it.
    name, subfolder, _ = published_video(entry)
    assert name.startswith(hashlib.sha256(video).hexdigest()[:16])
    sidecar = json.load(open(os.path.join(comfy_server.base, "output", subfolder, name[:-4] + ".json")))
    assert sidecar["engine"] == "lite" and sidecar["size"] == len(video)
    assert sidecar["inputs"]["audio_sha256"] and sidecar["params"]["seed"] == 0


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares a huge size; its pixels are never needed because the size check comes first."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _wav(samples: np.ndarray, rate: int = 16000) -> bytes:
    import io
    import wave

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def _flat_png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    gray = np.tile(np.linspace(60, 200, 512, dtype=np.uint8), (512, 1))
    Image.fromarray(gray[..., None].repeat(3, 2)).save(buf, "PNG")
    return buf.getvalue()


def _example_bytes(name: str) -> bytes:
    with open(os.path.join(ROOT, "sample_media", name), "rb") as f:
        return f.read()


BAD_INPUTS = [
    # (case, node input replaced, file name, bytes factory, words the error must contain)
    ("corrupt image", "image", "broken.png", lambda: b"\x89PNG\r\n\x1a\n" + os.urandom(2000), ["image:", "Fix:"]),
    ("image with no face", "image", "noface.png", _flat_png, ["no face", "animate_centre"]),
    ("20000x20000 image", "image", "huge.png", lambda: _png_header_only(20000, 20000), ["40 MP limit", "Fix:"]),
    ("corrupt audio", "audio", "broken.wav", lambda: b"RIFF" + os.urandom(3000), ["audio:", "Fix:"]),
    ("silent audio", "audio", "silent.wav", lambda: _wav(np.zeros(32000)), ["silent", "Fix:"]),
    ("zero-length audio", "audio", "empty.wav", lambda: _wav(np.zeros(0)), ["audio:", "Fix:"]),
    ("image behind an audio extension", "audio", "photo.wav", lambda: _example_bytes("portrait.png"),
     ["PNG image", "Fix:"]),
]


@pytest.mark.parametrize("case,which,name,make,words", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_gets_a_clear_error_and_comfyui_stays_up(comfy, case, which, name, make, words):
    prompt = load_template()
    node = "1" if which == "image" else "2"
    prompt["1"]["inputs"]["image"] = comfy.upload(_example_bytes("portrait.png"), "sonicflow_portrait.png")
    prompt["2"]["inputs"]["audio"] = comfy.upload(_example_bytes("speech.wav"), "sonicflow_speech.wav")
    prompt[node]["inputs"][which] = comfy.upload(make(), name)
    with pytest.raises(PromptFailed) as err:
        comfy.run(prompt, timeout=120)
    message = err.value.error.get("exception_message", "")
    for word in words:
        assert word in message, f"{case}: {message!r} lacks {word!r}"
    assert "Traceback" not in message
    assert comfy.ready()


def test_frames_chain_with_core_video_nodes(comfy, comfy_server):
    """Frames to Images feeds core CreateVideo + SaveVideo; Images to Frames brings a core IMAGE batch back."""
    prompt = load_template()
    prompt["1"]["inputs"]["image"] = comfy.upload(_example_bytes("portrait.png"), "sonicflow_portrait.png")
    prompt["2"]["inputs"]["audio"] = comfy.upload(_example_bytes("speech.wav"), "sonicflow_speech.wav")
    prompt["3"]["inputs"]["duration"] = 2.0
    prompt.update({
        "110": {"class_type": "SonicFlowFramesToImages", "inputs": {"frames": ["4", 0], "max_frames": 100}},
        "111": {"class_type": "CreateVideo", "inputs": {"images": ["110", 0], "fps": ["110", 1], "audio": ["4", 2]}},
        "112": {"class_type": "SaveVideo", "inputs": {"video": ["111", 0], "filename_prefix": "sonicflow/core",
                                                     "format": "auto", "codec": "auto"}},
        "113": {"class_type": "SonicFlowImagesToFrames", "inputs": {"images": ["110", 0], "fps": ["110", 1]}},
    })
    prompt["5"]["inputs"]["frames"] = ["113", 0]
    entry = comfy.run(prompt, timeout=300)
    saved = entry["outputs"]["112"]["images"][0]
    core = probe_video(os.path.join(comfy_server.base, "output", saved["subfolder"], saved["filename"]))
    assert core.n_frames == 50 and core.audio_codec == "aac"
    ours = entry["outputs"]["6"]["images"][0]
    mine = probe_video(os.path.join(comfy_server.base, "output", ours["subfolder"], ours["filename"]))
    assert mine.n_frames == 50 and abs(mine.duration - 2.0) <= 1 / 25


def test_labels_off_leaves_no_label(comfy):
    video, _ = run_talking_head(comfy, overrides={"3": {"duration": 2.0}, "5": {"ai_label": "off"}})
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".mp4") as f:
        f.write(video)
        f.flush()
        labels = check_labels(f.name)
    assert labels.implicit is None and not labels.visible


def test_video_carries_the_canvas_workflow_beside_labels_and_provenance(comfy, comfy_server, tmp_path):
    """What the frontend sends with a run (extra_pnginfo.workflow) goes into the MP4 under `workflow`, as core
    SaveVideo writes it, next to the AIGC label field and SonicFlow's provenance."""
    with open(UI) as f:
        workflow = json.load(f)
    prompt = load_template()
    prompt["1"]["inputs"]["image"] = comfy.upload(_example_bytes("portrait.png"), "sonicflow_portrait.png")
    prompt["2"]["inputs"]["audio"] = comfy.upload(_example_bytes("speech.wav"), "sonicflow_speech.wav")
    prompt["3"]["inputs"]["duration"] = 1.0
    r = requests.post(comfy_server.url + "/prompt", json={"prompt": prompt, "client_id": "sonicflow-test",
                                                           "extra_data": {"extra_pnginfo": {"workflow": workflow}}},
                      timeout=30)
    entry = comfy.wait(r.json()["prompt_id"], timeout=300)
    path = tmp_path / "out.mp4"
    path.write_bytes(comfy.view(*published_video(entry)))
    meta = probe_video(str(path)).metadata
    assert json.loads(meta["workflow"]) == workflow
    assert _graph(json.loads(meta["prompt"])) == _graph(prompt)
    assert json.loads(meta["AIGC"])["Label"] == "1" and read_provenance(meta)["engine"] == "lite"


def test_zh_translations_cover_every_node_input_and_output(comfy, comfy_server):
    """ComfyUI merges locales/zh into /i18n; every SonicFlow node, each input /object_info lists and each output has
    a Chinese name and tooltip (a new input without one fails here)."""
    info = {name: node for name, node in comfy.object_info().items() if node["category"] == "SonicFlow"}
    assert sorted(info) == sorted(NODES)
    zh = requests.get(comfy_server.url + "/i18n", timeout=30).json()["zh"]["nodeDefs"]

    def chinese(text: str) -> bool:
        return any("\u4e00" <= ch <= "\u9fff" for ch in text)

    for name, node in info.items():
        t = zh[name]
        assert chinese(t["display_name"]) and chinese(t["description"]), name
        inputs = [inp for section in ("required", "optional") for inp in node["input"].get(section, {})]
        assert sorted(t["inputs"]) == sorted(inputs), name
        for inp in inputs:
            assert t["inputs"][inp]["name"] and chinese(t["inputs"][inp]["tooltip"]), f"{name}.{inp}"
        outputs = t.get("outputs", {})
        assert sorted(outputs) == [str(i) for i in range(len(node["output"]))], name
        assert all(o["name"] and chinese(o["tooltip"]) for o in outputs.values()), name


def test_template_browser_lists_only_the_canvas_templates(comfy_server):
    listed = requests.get(comfy_server.url + "/workflow_templates", timeout=30).json()["SonicFlow"]
    canvas = [f[:-len(".json")] for f in os.listdir(os.path.join(ROOT, "example_workflows")) if f.endswith(".json")]
    assert sorted(listed) == sorted(canvas) == ["talking_head"]
