// SonicFlow's ComfyUI canvas extension.
//  - Video Encode / Publish previews: nothing to add. Their `{"images": [...mp4], "animated": [true]}` output is already
//    shown as a video player by ComfyUI's frontend (it treats an animated output that is not webp/png as a video);
//    tests/frontdoor/test_comfy_canvas.py checks that the <video> appears.
//  - PreData shows the length of the audio connected to it (read by the browser from ComfyUI's /view).
//  - A sidebar panel with the batch bridge's state (queue depth, workers, dead letters) from GET /sonicflow/bridge/state.
import { app } from "../../../scripts/app.js";
import { api } from "../../../scripts/api.js";

const durations = new Map(); // "subfolder/filename" -> seconds (or NaN while unknown)

function upstream(node, names) {
  for (const name of names) {
    const input = (node.inputs || []).find((i) => i.name === name);
    if (!input || input.link == null) continue;
    const link = app.graph.links.get?.(input.link) ?? app.graph.links[input.link];
    if (link) return app.graph.getNodeById(link.origin_id);
  }
  return null;
}

function audioSource(node) {
  // The file behind PreData's `audio` input: the first node upstream with an `audio` file widget (SonicFlow Load
  // Audio, core LoadAudio), following pass-through nodes such as SonicFlow Job Input (`value`).
  let source = upstream(node, ["audio"]);
  for (let hops = 0; source && hops < 8; hops++) {
    const widget = source.widgets?.find((w) => w.name === "audio");
    if (widget && typeof widget.value === "string" && widget.value) return widget.value;
    source = upstream(source, ["value", "audio"]);
  }
  return null;
}

function measure(name) {
  if (durations.has(name)) return durations.get(name);
  durations.set(name, NaN);
  const parts = name.split("/");
  const filename = parts.pop();
  const params = new URLSearchParams({ filename, type: "input", subfolder: parts.join("/") });
  const el = new Audio();
  el.preload = "metadata";
  el.addEventListener("loadedmetadata", () => { durations.set(name, el.duration); app.graph.setDirtyCanvas(true); }, { once: true });
  el.addEventListener("error", () => durations.set(name, -1), { once: true });
  el.src = api.apiURL(`/view?${params}`);
  return NaN;
}

function describe(seconds) {
  if (Number.isNaN(seconds)) return "audio: measuring…";
  if (seconds < 0) return "audio: length unknown";
  return `audio: ${seconds.toFixed(2)} s → video ${seconds.toFixed(2)} s`;
}

function refreshPreData() {
  for (const node of app.graph?._nodes || []) {
    if (node.comfyClass !== "SonicFlowPreData") continue;
    const name = audioSource(node);
    const seconds = name ? measure(name) : null;
    const text = name ? describe(seconds) : "";
    if (text !== node.sonicflowAudioText) {
      node.sonicflowAudioText = text;
      node.sonicflowAudioSeconds = Number.isFinite(seconds) && seconds >= 0 ? seconds : null;
      app.graph.setDirtyCanvas(true, false);
    }
  }
}

// --- bridge panel ------------------------------------------------------------------------------------------------------

function row(label, value, title) {
  const tr = document.createElement("tr");
  const th = document.createElement("th");
  th.textContent = label; th.scope = "row"; th.style.textAlign = "left"; th.style.padding = "4px 12px 4px 0";
  const td = document.createElement("td");
  td.textContent = value; if (title) td.title = title;
  td.dataset.sonicflow = label;
  tr.append(th, td);
  return tr;
}

function renderPanel(el) {
  el.replaceChildren();
  el.style.padding = "12px";
  const h = document.createElement("h3");
  h.textContent = "SonicFlow bridge";
  h.style.margin = "0 0 8px";
  const status = document.createElement("p");
  status.setAttribute("role", "status");
  const table = document.createElement("table");
  table.className = "sonicflow-bridge";
  el.append(h, status, table);
  let timer = null;
  async function load() {
    try {
      const r = await api.fetchApi("/sonicflow/bridge/state", { cache: "no-store" });
      const s = await r.json();
      if (s.broker !== "up") {
        status.textContent = s.broker === "unavailable" ? "the batch bridge is not installed" : "RabbitMQ is down";
        status.title = s.error || "";
        table.replaceChildren(row("broker", s.broker, s.error));
      } else {
        status.textContent = s.declared ? `prefix ${s.prefix}` : `prefix ${s.prefix}: no worker has declared it yet`;
        table.replaceChildren(row("broker", "up"), row("queue depth", String(s.queue_depth)),
          row("workers", String(s.workers)), row("dead letters", String(s.dead_letters)),
          row("retrying", String(s.retrying)));
      }
    } catch (e) {
      status.textContent = `cannot read the bridge state: ${e}`;
    }
  }
  load();
  timer = setInterval(() => { if (el.isConnected) load(); else clearInterval(timer); }, 3000);
}

// ComfyUI may serve this folder twice (WEB_DIRECTORY under the folder's name and pyproject's [tool.comfy] web under the
// project's name, when the two differ, e.g. custom_nodes/SonicFlow): register once.
const first = !globalThis.__sonicflowCanvas;
globalThis.__sonicflowCanvas = true;

if (first) app.registerExtension({
  name: "sonicflow.canvas",
  async setup() {
    setInterval(refreshPreData, 1000);
    const manager = app.extensionManager;
    if (manager?.registerSidebarTab) {
      manager.registerSidebarTab({ id: "sonicflow-bridge", icon: "pi pi-server", title: "SonicFlow bridge",
                                   tooltip: "SonicFlow bridge: queue depth, workers, dead letters", type: "custom",
                                   render: renderPanel });
    } else { // older frontends: a small floating box
      const box = document.createElement("div");
      box.id = "sonicflow-bridge";
      Object.assign(box.style, { position: "fixed", right: "8px", bottom: "8px", zIndex: 1000,
                                 background: "var(--comfy-menu-bg, #222)", color: "var(--fg-color, #ddd)",
                                 borderRadius: "8px", fontSize: "13px" });
      document.body.append(box);
      renderPanel(box);
    }
  },
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.name === "SonicFlowLoadAudio") {
      // ComfyUI's audio upload widget needs the audio player widget ("audioUI") before it, but the frontend adds that
      // only to its own loaders' classes: without it, creating the node throws and the upload button is missing.
      const req = nodeData.input?.required;
      if (req && req.audio?.[1]?.audio_upload && !req.audioUI) {
        const entries = Object.entries(req);
        for (const [k] of entries) delete req[k];
        for (const [k, v] of entries) {
          req[k] = v;
          if (k === "audio") req.audioUI = ["AUDIO_UI", {}];
        }
      }
      return;
    }
    if (nodeData.name !== "SonicFlowPreData") return;
    const draw = nodeType.prototype.onDrawForeground;
    nodeType.prototype.onDrawForeground = function (ctx) {
      const r = draw?.apply(this, arguments);
      if (this.sonicflowAudioText && !this.flags?.collapsed) {
        ctx.save();
        ctx.font = "12px sans-serif";
        ctx.fillStyle = "#9fd3a0";
        ctx.textAlign = "left";
        ctx.fillText(this.sonicflowAudioText, 10, this.size[1] + 16);
        ctx.restore();
      }
      return r;
    };
  },
});
