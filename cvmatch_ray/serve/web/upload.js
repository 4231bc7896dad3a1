// Upload: many files at once, one row each, its progress followed step by step until done or failed.

import { api, ApiError, describe, reasonInWords } from "./api.js";
import { announce, el } from "./ui.js";
import { rememberCv } from "./state.js";

/** The steps of cvmatch_ray.progress.UploadStep a CV goes through, in order. */
const STEPS = ["queued", "extracting", "standardizing", "embedding", "storing", "done"];
const PARALLEL = 3;
const POLL_MS = 400;

const queue = [];
let running = 0;

function row(file) {
  const progress = el("progress", { max: 100, value: 0, "aria-label": `Progress of ${file.name}` });
  const steps = el("ol", { class: "steps", "aria-label": "Steps" }, STEPS.map((s) => el("li", { "data-step": s }, s)));
  const status = el("div", { class: "status" }, el("span", { class: "badge" }, "waiting"));
  const tr = el(
    "tr",
    { "data-file": file.name, "data-state": "waiting" },
    el("td", { "data-label": "File" }, el("span", { class: "filename" }, file.name)),
    el("td", { "data-label": "Progress" }, progress, steps),
    el("td", { "data-label": "Status" }, status),
  );
  return { tr, progress, steps, status };
}

function setStep(view, step, percent) {
  const at = STEPS.indexOf(step);
  for (const li of view.steps.children) {
    const i = STEPS.indexOf(li.dataset.step);
    li.dataset.state = step === "failed" ? (li.dataset.state === "done" ? "done" : "") : i < at || step === "done" ? "done" : i === at ? "current" : "";
  }
  if (percent !== null && percent !== undefined) view.progress.value = percent;
}

function setStatus(view, state, badge, kind, reason) {
  view.tr.dataset.state = state;
  view.status.replaceChildren(el("span", { class: `badge ${kind}` }, badge));
  if (reason) view.status.append(el("p", { class: "reason" }, reason.words, reason.detail ? el("small", {}, reason.detail) : null));
}

function failed(view, code, message, stage) {
  const reason = reasonInWords(code, message);
  if (stage) reason.detail = `${reason.detail} (at ${stage})`;
  // The last step reached stays marked; the failure is said in words below the badge.
  for (const li of view.steps.children) if (li.dataset.state === "current") li.dataset.state = "failed";
  setStatus(view, "failed", "failed", "bad", reason);
  announce(`${view.tr.dataset.file}: ${reason.words}`);
}

async function follow(view, cvId, duplicate) {
  for (;;) {
    let p;
    try {
      p = await api(`/api/cv-upload-progress/${encodeURIComponent(cvId)}`);
    } catch (err) {
      if (err instanceof ApiError && err.status === 503) { await new Promise((r) => setTimeout(r, 1000)); continue; }
      setStatus(view, "failed", "unknown", "bad", { words: describe(err), detail: "" });
      return;
    }
    setStep(view, p.step, p.percent);
    if (p.step === "done") {
      setStatus(view, duplicate ? "duplicate" : "done", duplicate ? "already stored" : "stored", "ok",
        p.stats ? { words: `${p.stats.skills_count} skills found`, detail: p.total_seconds ? `${p.total_seconds.toFixed(1)} s` : "" } : null);
      rememberCv(cvId, view.tr.dataset.file);
      announce(`${view.tr.dataset.file} is stored.`);
      return;
    }
    if (p.step === "failed" || p.status === "failed" || p.status === "cancelled") {
      failed(view, p.error_code, p.error && p.error_code ? p.error.slice(p.error_code.length + 2) : p.error, p.error_stage);
      return;
    }
    setStatus(view, "running", p.step, "warn");
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

async function upload(file, view) {
  view.tr.dataset.state = "uploading";
  setStatus(view, "uploading", "uploading", "warn");
  const form = new FormData();
  form.append("file", file, file.name);
  let accepted;
  try {
    accepted = await api("/api/upload-cv", { method: "POST", form });
  } catch (err) {
    if (err instanceof ApiError && err.code) failed(view, err.code, err.message, err.stage);
    else setStatus(view, "failed", "refused", "bad", { words: describe(err), detail: err instanceof ApiError ? `HTTP ${err.status}` : "" });
    return;
  }
  view.tr.dataset.cvId = accepted.cv_id;
  if (accepted.duplicate && accepted.status === "done") {
    setStep(view, "done", 100);
    setStatus(view, "duplicate", "already stored", "ok", { words: "These bytes were uploaded before; nothing was processed again.", detail: "" });
    rememberCv(accepted.cv_id, file.name);
    return;
  }
  await follow(view, accepted.cv_id, accepted.duplicate);
}

async function pump() {
  while (running < PARALLEL && queue.length) {
    const { file, view } = queue.shift();
    running += 1;
    upload(file, view).finally(() => { running -= 1; pump(); });
  }
}

/** Queue `files` (a FileList or an array of File) for upload; each gets its row at once. */
export function addFiles(files) {
  const table = document.getElementById("uploads");
  table.hidden = false;
  const body = table.querySelector("tbody");
  for (const file of files) {
    const view = row(file);
    body.append(view.tr);
    queue.push({ file, view });
  }
  announce(`${files.length} file${files.length === 1 ? "" : "s"} queued for upload.`);
  pump();
}

/** Mark the upload row of a deleted CV. */
export function markDeleted(cvId) {
  for (const tr of document.querySelectorAll("#uploads tbody tr")) {
    if (tr.dataset.cvId !== cvId) continue;
    tr.dataset.state = "deleted";
    tr.querySelector(".status").replaceChildren(el("span", { class: "badge" }, "deleted"));
  }
}

export function setupUpload() {
  const input = document.getElementById("cv-files");
  input.addEventListener("change", () => {
    if (input.files.length) addFiles([...input.files]);
    input.value = "";
  });
  const drop = document.getElementById("drop");
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const files = [...(e.dataTransfer?.files || [])];
    if (files.length) addFiles(files);
  });
}
