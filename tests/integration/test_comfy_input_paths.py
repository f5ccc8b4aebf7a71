"""SonicFlow Load Image / Load Audio read only files in ComfyUI's input folder (and its annotated [output] / [temp]
forms), resolved through links: a prompt naming an absolute path, a `../` path, a link out of the folder or a device
file is refused at validation, with the same answer whether or not that path exists (no oracle), and no node hangs.
Anyone who can reach ComfyUI's /prompt can write such a prompt."""
from __future__ import annotations

import os

import pytest
import requests

from devtools.demo import load_template

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _sample(name: str) -> bytes:
    with open(os.path.join(ROOT, "sample_media", name), "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def escape_link(comfy_server, tmp_path_factory):
    """A link inside the input folder pointing at a real image outside it."""
    outside = tmp_path_factory.mktemp("outside") / "secret.png"
    outside.write_bytes(_sample("portrait.png"))
    link = os.path.join(comfy_server.base, "input", "innocent.png")
    if os.path.lexists(link):
        os.remove(link)
    os.symlink(outside, link)
    return "innocent.png"


def _validate(comfy_server, which: str, value: str) -> requests.Response:
    prompt = load_template()
    prompt["1"]["inputs"]["image"] = "sonicflow_portrait.png"
    prompt["2"]["inputs"]["audio"] = "sonicflow_speech.wav"
    prompt["3"]["inputs"]["duration"] = 1.0
    prompt["1" if which == "image" else "2"]["inputs"][which] = value
    return requests.post(comfy_server.url + "/prompt", json={"prompt": prompt, "client_id": "sonicflow-test"},
                         timeout=30)


def _refusal(r: requests.Response, value: str) -> str:
    assert r.status_code == 400, r.text
    errors = [e for node in r.json()["node_errors"].values() for e in node["errors"]]
    text = " ".join(str(e.get("details", "")) + str(e.get("message", "")) for e in errors)
    assert "input folder" in text, text
    return text.replace(repr(value), "<name>")


@pytest.mark.parametrize("which, existing, missing", [
    ("image", "/etc/hostname", "/etc/no-such-file.png"),
    ("image", "../../../../../../etc/hostname", "../../../../../../etc/no-such-file.png"),
    ("audio", "/dev/zero", "/dev/no-such-device"),
    ("audio", "/etc/hostname [output]", "/etc/no-such-file [output]"),
])
def test_paths_outside_the_input_folder_are_refused_alike(comfy, comfy_server, which, existing, missing):
    said_existing = _refusal(_validate(comfy_server, which, existing), existing)
    said_missing = _refusal(_validate(comfy_server, which, missing), missing)
    assert said_existing == said_missing  # nothing tells whether the path exists or what it is
    assert comfy.ready()


def test_a_link_out_of_the_input_folder_is_refused(comfy, comfy_server, escape_link):
    _refusal(_validate(comfy_server, "image", escape_link), escape_link)


def test_files_in_the_input_folder_still_load(comfy, comfy_server):
    name = comfy.upload(_sample("portrait.png"), "sonicflow_portrait.png")
    comfy.upload(_sample("speech.wav"), "sonicflow_speech.wav")
    r = _validate(comfy_server, "image", name)
    assert r.status_code == 200, r.text
    comfy.wait(r.json()["prompt_id"], timeout=300)


def test_publish_does_not_write_through_a_link_out_of_the_output_folder(comfy, comfy_server, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    link = os.path.join(comfy_server.base, "output", "shared")
    if os.path.lexists(link):
        os.remove(link)
    os.symlink(outside, link)
    prompt = load_template()
    prompt["1"]["inputs"]["image"] = comfy.upload(_sample("portrait.png"), "sonicflow_portrait.png")
    prompt["2"]["inputs"]["audio"] = comfy.upload(_sample("speech.wav"), "sonicflow_speech.wav")
    prompt["3"]["inputs"]["duration"] = 1.0
    prompt["6"]["inputs"]["prefix"] = "shared/"
    from queue_bridge.comfy_client import PromptFailed

    with pytest.raises(PromptFailed) as err:
        comfy.run(prompt, timeout=300)
    assert "outside the output folder" in err.value.error.get("exception_message", "")
    assert list(outside.iterdir()) == []
