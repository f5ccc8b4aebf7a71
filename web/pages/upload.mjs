// Upload page: drag and drop or choose files, previews, the audio's duration, parameters, submit -> job page.
import { api, fmtSeconds, setupKeyForm, showError } from "./common.mjs";

const files = { image: null, audio: null };

function pick(kind, file) {
  files[kind] = file;
  if (kind === "image") {
    const img = document.getElementById("image-preview");
    img.src = URL.createObjectURL(file);
    img.hidden = false;
  } else {
    const audio = document.getElementById("audio-preview");
    const out = document.getElementById("audio-duration");
    out.textContent = "Reading the audio…";
    audio.src = URL.createObjectURL(file);
    audio.hidden = false;
    audio.addEventListener("loadedmetadata", () => {
      const d = audio.duration;
      out.textContent = Number.isFinite(d) ? `Duration: ${fmtSeconds(d)}; the video will last as long.` : "";
      out.dataset.seconds = Number.isFinite(d) ? String(d) : "";
    }, { once: true });
    audio.addEventListener("error", () => { out.textContent = "This browser cannot play the audio; the server will still check it."; }, { once: true });
  }
}

function setupDrop(kind) {
  const zone = document.getElementById(`${kind}-drop`);
  const input = document.getElementById(kind);
  input.addEventListener("change", () => { if (input.files[0]) pick(kind, input.files[0]); });
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault(); zone.classList.remove("over");
    const file = e.dataTransfer.files[0];
    if (file) {
      try { const dt = new DataTransfer(); dt.items.add(file); input.files = dt.files; } catch (_) { /* old browsers */ }
      pick(kind, file);
    }
  });
}

async function submit(e) {
  e.preventDefault();
  const error = document.getElementById("error");
  const busy = document.getElementById("busy");
  const button = document.getElementById("submit");
  showError(error, null);
  for (const kind of ["image", "audio"]) {
    if (!files[kind]) { showError(error, new Error(`Choose a ${kind === "image" ? "portrait photo" : "speech file"} first.`)); document.getElementById(kind).focus(); return; }
  }
  const form = new FormData();
  form.append("image", files.image, files.image.name);
  form.append("audio", files.audio, files.audio.name);
  form.append("engine", document.getElementById("engine").value);
  form.append("seed", document.getElementById("seed").value || "0");
  form.append("min_resolution", document.getElementById("min_resolution").value);
  const hook = document.getElementById("webhook_url").value.trim();
  if (hook) form.append("webhook_url", hook);
  button.disabled = true; busy.textContent = "Uploading and checking…";
  try {
    const resp = await api("/v1/jobs", { method: "POST", body: form, headers: { "Idempotency-Key": crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) } });
    const job = await resp.json();
    busy.textContent = "Queued.";
    location.assign(`/jobs/${job.id}`);
  } catch (err) {
    busy.textContent = ""; showError(error, err); button.disabled = false;
  }
}

setupKeyForm();
setupDrop("image");
setupDrop("audio");
document.getElementById("upload").addEventListener("submit", submit);
