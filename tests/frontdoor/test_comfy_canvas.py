"""SonicFlow in ComfyUI's own frontend, in headless Chromium: the UI-format template opens with no missing node, runs,
and the video preview appears on Video Encode and Publish (ComfyUI's frontend shows our animated mp4 output as a
<video>); PreData shows the connected audio's length; the bridge panel reads GET /sonicflow/bridge/state, which
answers even when RabbitMQ is down."""
from __future__ import annotations

import json
import os

import pytest
import requests

from queue_bridge.config import Settings
from queue_bridge.panel import bridge_state

from .browser import chromium, screenshot_dir
from .conftest import ROOT, free_port


def test_bridge_state_when_rabbitmq_is_down():
    state = bridge_state(Settings(amqp_url=f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F", prefix="nobroker"),
                         max_age_s=0)
    assert state["broker"] == "down" and state["error"]


def test_bridge_state_route_in_comfyui(comfy_server, rabbit):
    state = requests.get(comfy_server.url + "/sonicflow/bridge/state", timeout=30).json()
    assert state["broker"] == "up"
    assert {"queue_depth", "workers", "dead_letters"} <= set(state)


@pytest.mark.slow
def test_template_opens_runs_and_previews(comfy_server, tmp_path):
    shots = screenshot_dir(tmp_path)
    with open(os.path.join(ROOT, "example_workflows", "talking_head.json")) as f:
        workflow = json.load(f)
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        # A returning user: no first-run templates dialog over the canvas.
        requests.post(comfy_server.url + "/api/settings/Comfy.TutorialCompleted", json=True, timeout=10)
        page.goto(comfy_server.url + "/")
        page.wait_for_function("() => window.app && window.app.graph && window.LiteGraph", timeout=120_000)
        page.wait_for_function("() => !!window.LiteGraph.registered_node_types['SonicFlowPreData']", timeout=60_000)

        # Every node type of the template is registered (no missing node) and the graph loads as saved.
        types = sorted({n["type"] for n in workflow["nodes"]})
        missing = page.evaluate("(types) => types.filter(t => !window.LiteGraph.registered_node_types[t])", types)
        assert missing == []
        page.evaluate("async (wf) => { await window.app.loadGraphData(wf); }", workflow)
        # Every node on screen: the frontend builds a node's preview when it draws the node.
        page.evaluate("async () => { await window.app.extensionManager.command.execute('Comfy.Canvas.FitView'); }")
        loaded = page.evaluate("() => window.app.graph._nodes.map(n => n.type)")
        assert sorted(loaded) == sorted(n["type"] for n in workflow["nodes"])

        # PreData shows the length of the audio connected to it (the bundled 9.9 s speech).
        page.wait_for_function("() => window.app.graph._nodes.some(n => n.comfyClass === 'SonicFlowPreData' && "
                               "n.sonicflowAudioSeconds > 0)", timeout=60_000)
        text = page.evaluate("() => window.app.graph._nodes.find(n => n.comfyClass === 'SonicFlowPreData')"
                             ".sonicflowAudioText")
        assert text.startswith("audio: 9.9"), text

        # Run it as opened, but on the lite engine (what a machine without Sonic weights runs anyway).
        page.evaluate("""() => {
            const gen = window.app.graph._nodes.find(n => n.comfyClass === 'SonicFlowGenerate');
            gen.widgets.find(w => w.name === 'engine').value = 'lite';
        }""")
        page.evaluate("async () => { await window.app.queuePrompt(0, 1); }")
        # Both output nodes get a <video> preview from ComfyUI's own frontend, pointing at our mp4 via /view.
        page.wait_for_function("""() => {
            const vids = [...document.querySelectorAll('video')].filter(v => (v.currentSrc || v.src).includes('.mp4'));
            return vids.length >= 2 && vids.every(v => v.readyState >= 1);
        }""", timeout=400_000)
        srcs = page.evaluate("() => [...document.querySelectorAll('video')].map(v => v.currentSrc || v.src)")
        assert any("type=temp" in s for s in srcs) and any("type=output" in s for s in srcs), srcs
        page.wait_for_timeout(500)  # let the canvas draw the previews for the screenshot (no assertion on time)
        page.screenshot(path=os.path.join(shots, "comfy-canvas.png"))

        # The bridge panel in the sidebar.
        page.click("button.sonicflow-bridge-tab-button, [class*='sonicflow-bridge']", timeout=30_000)
        page.wait_for_selector("table.sonicflow-bridge td[data-sonicflow='broker']", timeout=30_000)
        assert page.text_content("table.sonicflow-bridge td[data-sonicflow='broker']") == "up"
        page.screenshot(path=os.path.join(shots, "comfy-panel.png"))
    assert not errors, errors
