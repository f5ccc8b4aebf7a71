"""SonicFlow in ComfyUI's own frontend, in headless Chromium: the UI-format template (saved before the nodes moved to
the V3 schema) opens with no missing node, runs, and the video preview appears on Video Encode and Publish; PreData
shows the connected audio's length; the MP4 it made, dropped on a blank canvas, brings the graph back; the template
browser lists exactly the canvas templates, each with its thumbnail; the bridge panel reads GET
/sonicflow/bridge/state, which answers even when RabbitMQ is down."""
from __future__ import annotations

import json
import os

import pytest
import requests

from queue_bridge import Settings
from queue_bridge.panel import bridge_state

from .browser import chromium, screenshot_dir
from .conftest import ROOT, free_port

TEMPLATES = os.path.join(ROOT, "example_workflows")


def _open_comfyui(browser, url: str):
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    # A returning user: no first-run templates dialog over the canvas.
    requests.post(url + "/api/settings/Comfy.TutorialCompleted", json=True, timeout=10)
    page.goto(url + "/")
    page.wait_for_function("() => window.app && window.app.graph && window.LiteGraph", timeout=120_000)
    page.wait_for_function("() => !!window.LiteGraph.registered_node_types['SonicFlowPreData']", timeout=60_000)
    return page, errors


def _graph_on_canvas(page) -> tuple[list, list]:
    """(sorted [id, type] of the nodes, sorted [origin id, output slot, target id, input name] of the links) on the
    canvas. Links are compared by input name: the frontend gives widgets input slots of their own, so slot numbers of
    inputs differ from the saved file's."""
    nodes, links = page.evaluate("""() => {
        const g = window.app.graph;
        const links = g.links instanceof Map ? [...g.links.values()] : Object.values(g.links);
        return [g._nodes.map(n => [n.id, n.type]),
                links.map(l => [l.origin_id, l.origin_slot, l.target_id,
                                g.getNodeById(l.target_id).inputs[l.target_slot].name])];
    }""")
    return sorted(nodes), sorted(links)


def _graph_in_file(workflow: dict) -> tuple[list, list]:
    inputs = {n["id"]: [i["name"] for i in n["inputs"]] for n in workflow["nodes"]}
    return (sorted([n["id"], n["type"]] for n in workflow["nodes"]),
            sorted([origin, slot, target, inputs[target][target_slot]]
                   for _, origin, slot, target, target_slot, _ in workflow["links"]))


def test_bridge_state_when_rabbitmq_is_down():
    state = bridge_state(Settings(amqp_urls=(f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F",), prefix="nobroker"),
                         max_age_s=0)
    assert state["broker"] == "down" and state["error"]


def test_bridge_state_route_in_comfyui(comfy_server, rabbit):
    state = requests.get(comfy_server.url + "/sonicflow/bridge/state", timeout=30).json()
    assert state["broker"] == "up"
    assert {"queue_depth", "workers", "dead_letters"} <= set(state)


@pytest.mark.slow
def test_template_opens_runs_previews_and_its_video_brings_the_graph_back(comfy_server, tmp_path):
    shots = screenshot_dir(tmp_path)
    with open(os.path.join(TEMPLATES, "talking_head.json")) as f:
        workflow = json.load(f)
    with chromium() as browser:
        page, errors = _open_comfyui(browser, comfy_server.url)

        # Every node type of the template is registered (no missing node) and the graph loads as saved.
        types = sorted({n["type"] for n in workflow["nodes"]})
        missing = page.evaluate("(types) => types.filter(t => !window.LiteGraph.registered_node_types[t])", types)
        assert missing == []
        page.evaluate("async (wf) => { await window.app.loadGraphData(wf); }", workflow)
        # Every node on screen: the frontend builds a node's preview when it draws the node.
        page.evaluate("async () => { await window.app.extensionManager.command.execute('Comfy.Canvas.FitView'); }")
        assert _graph_on_canvas(page) == _graph_in_file(workflow)

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
        page.click("button.sonicflow-bridge-tab-button, [class*='sonicflow-bridge']")  # closed again

        # The published MP4, dropped on a blank canvas, brings the graph back (the frontend reads the `workflow`
        # tag Video Encode wrote, as it does for core SaveVideo's files).
        published = next(s for s in srcs if "type=output" in s)
        with open(os.path.join(shots, "comfy-published.mp4"), "wb") as f:
            f.write(requests.get(published, timeout=30).content)
        page.evaluate("async () => { await window.app.extensionManager.command.execute('Comfy.NewBlankWorkflow'); }")
        page.wait_for_function("() => window.app.graph._nodes.length === 0", timeout=30_000)
        page.evaluate("""async (url) => {
            const blob = await (await fetch(url)).blob();
            const data = new DataTransfer();
            data.items.add(new File([blob], 'talking_head.mp4', { type: 'video/mp4' }));
            document.dispatchEvent(new DragEvent('drop', { dataTransfer: data, bubbles: true, cancelable: true }));
        }""", published)
        page.wait_for_function(f"() => window.app.graph._nodes.length === {len(workflow['nodes'])}", timeout=60_000)
        assert _graph_on_canvas(page) == _graph_in_file(workflow)
        engine = page.evaluate("() => window.app.graph._nodes.find(n => n.comfyClass === 'SonicFlowGenerate')"
                               ".widgets.find(w => w.name === 'engine').value")
        assert engine == "lite"  # the graph as it ran, not the template as saved
        page.evaluate("async () => { await window.app.extensionManager.command.execute('Comfy.Canvas.FitView'); }")
        page.wait_for_timeout(500)
        page.screenshot(path=os.path.join(shots, "comfy-dropped-mp4.png"))
    assert not errors, errors


@pytest.mark.slow
def test_template_browser_shows_the_canvas_templates_with_thumbnails(comfy_server, tmp_path):
    shots = screenshot_dir(tmp_path)
    canvas = sorted(f[:-len(".json")] for f in os.listdir(TEMPLATES) if f.endswith(".json"))
    with chromium() as browser:
        page, errors = _open_comfyui(browser, comfy_server.url)
        thumbnails = {}
        page.on("response", lambda r: thumbnails.update({r.url: (r.status, r.headers.get("content-type", ""))})
                if "/workflow_templates/SonicFlow/" in r.url and not r.url.endswith(".json") else None)
        page.evaluate("async () => { await window.app.extensionManager.command.execute('Comfy.BrowseTemplates'); }")
        page.get_by_role("dialog").get_by_text("SonicFlow", exact=True).click()
        cards = page.locator("[data-testid^='template-workflow-']")
        cards.first.wait_for(timeout=30_000)
        names = sorted(t[len("template-workflow-"):]
                       for t in cards.evaluate_all("els => els.map(e => e.dataset.testid)"))
        assert names == canvas
        page.wait_for_function("() => [...document.querySelectorAll(\"[data-testid^='template-workflow-'] img\")]"
                               ".every(i => i.complete && i.naturalWidth > 0)", timeout=30_000)
        assert sorted(url.rsplit("/", 1)[1] for url in thumbnails) == [f"{n}.jpg" for n in canvas]
        assert all(status == 200 and kind.startswith("image/") for status, kind in thumbnails.values()), thumbnails
        page.screenshot(path=os.path.join(shots, "comfy-templates.png"))

        # Picking it opens the graph, every node known.
        cards.first.click()
        page.wait_for_function("() => window.app.graph._nodes.some(n => n.comfyClass === 'SonicFlowGenerate')",
                               timeout=60_000)
        with open(os.path.join(TEMPLATES, canvas[0] + ".json")) as f:
            assert _graph_on_canvas(page) == _graph_in_file(json.load(f))
        assert not page.evaluate("() => window.app.graph._nodes.filter(n => n.has_errors).map(n => n.type)")
        page.screenshot(path=os.path.join(shots, "comfy-template-opened.png"))
    assert not errors, errors
