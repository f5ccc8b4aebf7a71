// Shared by the pages: the API key (kept in this browser only), fetch with the key, error display.
const KEY = "sonicflow.apiKey";

export function apiKey() { return localStorage.getItem(KEY) || ""; }

export function setupKeyForm() {
  const form = document.getElementById("keyform");
  const input = document.getElementById("apikey");
  input.value = apiKey();
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    localStorage.setItem(KEY, input.value.trim());
    const note = document.getElementById("keynote");
    note.textContent = input.value.trim() ? "Key saved in this browser." : "Key removed.";
    document.dispatchEvent(new Event("sonicflow:key"));
  });
}

export async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (apiKey()) headers.set("X-API-Key", apiKey());
  const resp = await fetch(path, { ...options, headers });
  if (!resp.ok) {
    let message = `HTTP ${resp.status}`, code = "http_error";
    try { const body = await resp.json(); message = body.error.message; code = body.error.code; } catch (_) { /* not JSON */ }
    const err = new Error(message); err.code = code; err.status = resp.status; throw err;
  }
  return resp;
}

export function showError(el, err) {
  el.textContent = err ? (err.code ? `${err.message} (${err.code})` : String(err.message || err)) : "";
}

export function fmtSeconds(s) { return `${(Math.round(s * 10) / 10).toFixed(1)} s`; }

export function fmtTime(iso) { return iso ? new Date(iso).toLocaleString() : ""; }

// Server-sent events over fetch (EventSource cannot send the API key header). Calls onJob(job) per event.
export async function followEvents(path, onJob, signal) {
  const resp = await api(path, { signal, headers: { Accept: "text/event-stream" } });
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += decoder.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, i); buf = buf.slice(i + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
      if (data) onJob(JSON.parse(data));
    }
  }
}
