// Job page: live progress (server-sent events, polling as a fallback), then the video, download and copy link; a
// queued or running job can be cancelled.
import { api, followEvents, fmtSeconds, setupKeyForm, showError } from "./common.mjs";

const jobId = location.pathname.split("/").filter(Boolean).pop();
let shown = false;
const FINAL = ["succeeded", "failed", "cancelled"];

function render(job) {
  const status = document.getElementById("status");
  const progress = document.getElementById("progress");
  const node = document.getElementById("node");
  const labels = { queued: "Queued: waiting for a worker…", running: "Making the video…", succeeded: "Done.", failed: "Failed.",
    cancelled: "Cancelled: no video will be made." };
  status.textContent = labels[job.status] || job.status;
  status.className = job.status === "succeeded" ? "ok" : job.status === "failed" ? "alert" : "";
  progress.value = job.status === "succeeded" ? 1 : job.progress || 0;
  document.getElementById("cancel-row").hidden = FINAL.includes(job.status);
  node.textContent = job.status === "running" && job.progress_node ? `(step ${job.progress_node}, ${Math.round((job.progress || 0) * 100)}%)` : "";
  if (job.status === "failed") showError(document.getElementById("error"), job.error || new Error("the job failed"));
  if (job.status === "succeeded" && !shown) {
    const video = job.results.find((r) => r.name === "video") || job.results[0];
    if (!video) return;
    shown = true;
    const abs = new URL(video.url, location.href).href;
    document.getElementById("video").src = video.url;
    const dl = document.getElementById("download");
    dl.href = `${video.url}&download=1`;
    dl.setAttribute("download", `sonicflow-${job.id.slice(0, 12)}.mp4`);
    document.getElementById("link").value = abs;
    const dur = job.inputs && job.inputs.audio ? `, ${fmtSeconds(job.inputs.audio.duration_s)}` : "";
    document.getElementById("details").textContent = `Engine ${job.engine || "?"}${dur}, ${Math.round(video.size / 1024)} KiB, sha256 ${video.sha256.slice(0, 16)}…`;
    document.getElementById("result").hidden = false;
  }
}

async function poll() {
  for (;;) {
    const job = await (await api(`/v1/jobs/${jobId}`)).json();
    render(job);
    if (FINAL.includes(job.status)) return;
    await new Promise((r) => setTimeout(r, 2000));
  }
}

async function follow() {
  showError(document.getElementById("error"), null);
  try {
    render(await (await api(`/v1/jobs/${jobId}`)).json());
    await followEvents(`/v1/jobs/${jobId}/events`, render);
  } catch (err) {
    if (err.status) { showError(document.getElementById("error"), err); return; }
    try { await poll(); } catch (err2) { showError(document.getElementById("error"), err2); }
  }
}

document.getElementById("cancel").addEventListener("click", async (e) => {
  e.target.disabled = true;
  try { render(await (await api(`/v1/jobs/${jobId}`, { method: "DELETE" })).json()); }
  catch (err) { showError(document.getElementById("error"), err); }
  finally { e.target.disabled = false; }
});

document.getElementById("copy").addEventListener("click", async () => {
  const link = document.getElementById("link");
  const note = document.getElementById("copied");
  try { await navigator.clipboard.writeText(link.value); note.textContent = "Link copied."; }
  catch (_) { link.select(); note.textContent = "Press Ctrl+C (or long-press) to copy the selected link."; }
});

setupKeyForm();
document.addEventListener("sonicflow:key", follow);
follow();
