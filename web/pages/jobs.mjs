// This key's jobs, newest first.
import { api, fmtTime, setupKeyForm, showError } from "./common.mjs";

async function load() {
  const rows = document.getElementById("rows");
  const error = document.getElementById("error");
  showError(error, null);
  try {
    const { jobs } = await (await api("/v1/jobs?limit=100")).json();
    rows.replaceChildren(...jobs.map((job) => {
      const tr = document.createElement("tr");
      const link = document.createElement("a");
      link.href = `/jobs/${job.id}`; link.textContent = job.id.slice(0, 12);
      const cells = [link, job.status + (job.status === "running" ? ` ${Math.round(job.progress * 100)}%` : ""), job.engine || "", fmtTime(job.created_at)];
      cells.forEach((c, i) => {
        const td = document.createElement("td");
        if (i >= 2) td.className = "optional";
        if (typeof c === "string") td.textContent = c; else td.append(c);
        tr.append(td);
      });
      return tr;
    }));
    document.getElementById("count").textContent = `${jobs.length} job${jobs.length === 1 ? "" : "s"}`;
  } catch (err) { showError(error, err); }
}

setupKeyForm();
document.getElementById("refresh").addEventListener("click", load);
document.addEventListener("sonicflow:key", load);
load();
