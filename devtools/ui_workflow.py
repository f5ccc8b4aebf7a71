"""Writes the UI-format workflow (what people open in the canvas) from the API-format template (what scripts
run), using ComfyUI's own node definitions, so the two never drift apart.

    python -m devtools.ui_workflow        # rewrites example_workflows/talking_head.json
"""
from __future__ import annotations

import json
import os

from devtools.comfyui import ROOT, ComfyServer, scratch_base
from queue_bridge.comfy_client import ComfyClient

API = os.path.join(ROOT, "templates", "talking_head_api.json")
UI = os.path.join(ROOT, "example_workflows", "talking_head.json")
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN"}
# Widgets the frontend adds on its own, saved after the widget they belong to.
EXTRA_VALUES = {"image_upload": ["image"], "audio_upload": [None, None]}


def _is_widget(spec) -> bool:
    return isinstance(spec[0], list) or spec[0] in WIDGET_TYPES or spec[0] == "COMBO"


def to_ui(api: dict, object_info: dict) -> dict:
    order = sorted(api, key=int)
    links, nodes, link_id = [], [], 0
    out_links: dict[tuple[str, int], list[int]] = {}
    for column, node_id in enumerate(order):
        node, info = api[node_id], object_info[api[node_id]["class_type"]]
        inputs, widgets = [], []
        for section in ("required", "optional"):
            for name, spec in info["input"].get(section, {}).items():
                value = node["inputs"].get(name)
                linked = isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
                if _is_widget(spec):
                    # A widget fed by a link (e.g. from a Job Input) keeps its slot in widgets_values.
                    widgets.append(spec[1].get("default") if linked or name not in node["inputs"] else value)
                    if name in ("seed", "noise_seed"):
                        widgets.append("fixed")
                    for flag, extra in EXTRA_VALUES.items():
                        if spec[1].get(flag):
                            widgets.extend(extra)
                if linked:
                    kind = spec[0] if isinstance(spec[0], str) else "COMBO"
                    link_id += 1
                    links.append([link_id, int(value[0]), value[1], int(node_id), len(inputs), kind])
                    out_links.setdefault((value[0], value[1]), []).append(link_id)
                    inputs.append({"name": name, "type": kind, "link": link_id,
                                   **({"widget": {"name": name}} if _is_widget(spec) else {})})
                elif not _is_widget(spec):
                    inputs.append({"name": name, "type": spec[0], "link": None})
        nodes.append({"id": int(node_id), "type": node["class_type"], "title": node.get("_meta", {}).get("title"),
                      "pos": [60 + 340 * column, 120 + 60 * (column % 2)], "size": [300, 160], "flags": {},
                      "order": column, "mode": 0, "inputs": inputs,
                      "outputs": [{"name": n, "type": t, "links": [], "slot_index": i}
                                  for i, (n, t) in enumerate(zip(info["output_name"], info["output"]))],
                      "properties": {"Node name for S&R": node["class_type"], "cnr_id": "sonicflow"},
                      "widgets_values": widgets})
    for node in nodes:
        for out in node["outputs"]:
            out["links"] = out_links.get((str(node["id"]), out["slot_index"]), [])
    return {"last_node_id": max(map(int, order)), "last_link_id": link_id, "nodes": nodes, "links": links,
            "groups": [], "config": {}, "extra": {"ds": {"scale": 1.0, "offset": [0, 0]}}, "version": 0.4}


def main() -> None:
    with open(API) as f:
        api = json.load(f)
    with ComfyServer(scratch_base("comfy-ui-workflow")) as server:
        ui = to_ui(api, ComfyClient(server.url).object_info())
    with open(UI, "w") as f:
        json.dump(ui, f, indent=1)
        f.write("\n")
    print(f"wrote {UI}")


if __name__ == "__main__":
    main()
