// Job description, the match job with its chunk progress, and the ranked candidates.

import { api, describe } from "./api.js";
import { announce, bar, chips, el, seconds, showError, sleep, words } from "./ui.js";
import { cvLabel, onChange, rememberCv, state } from "./state.js";

/** The score components of cvmatch_ray.schemas.ScoreBreakdown shown as bars, in order. */
export const COMPONENTS = [
  ["required_skills", "Required"], ["preferred_skills", "Preferred"], ["semantic", "Semantic"],
  ["experience", "Experience"], ["education", "Education"], ["title", "Title"],
];
const POLL_MS = 500;

function showJd(jd) {
  const p = jd.profile;
  document.getElementById("jd-title").textContent = p.title || "not found";
  document.getElementById("jd-required").replaceChildren(chips(p.required_skills, "", "Required skills"));
  document.getElementById("jd-preferred").replaceChildren(chips(p.preferred_skills, "", "Preferred skills"));
  document.getElementById("jd-years").textContent = p.min_years !== null && p.min_years !== undefined ? `${p.min_years} years` : "not stated";
  document.getElementById("jd-education").textContent = p.education_level ? words(p.education_level) : "not stated";
  document.getElementById("jd-seniority").textContent = p.seniority && p.seniority !== "unknown" ? words(p.seniority) : "not stated";
  document.getElementById("jd-profile").hidden = false;
  document.getElementById("jd-profile").dataset.jdId = jd.jd_id;
  document.getElementById("match-btn").disabled = false;
  document.getElementById("match-hint").textContent = "Check what was understood, then match every stored CV against it.";
}

async function readJob(event) {
  event.preventDefault();
  // Sent as pasted: the same text always gets the same jd_id, here and through the API.
  const text = document.getElementById("jd-text").value;
  if (!text.trim()) return;
  const button = event.submitter || event.target.querySelector("button");
  showError("jd-error", "");
  button.disabled = true;
  try {
    state.jd = await api("/api/upload-jd", { method: "POST", json: { text } });
    showJd(state.jd);
    announce(`Job read: ${state.jd.profile.title || "untitled"}, ${state.jd.profile.required_skills.length} required skills.`);
  } catch (err) {
    showError("jd-error", describe(err));
  } finally {
    button.disabled = false;
  }
}

function progressText(p) {
  const parts = [`${p.current_chunk} of ${p.total_chunks} chunks`, `${p.processed} of ${p.total} CVs`];
  if (p.seconds_per_chunk) parts.push(`${seconds(p.seconds_per_chunk)} per chunk`);
  if (p.status !== "succeeded" && p.eta_seconds !== null && p.eta_seconds !== undefined) parts.push(`about ${seconds(p.eta_seconds)} left`);
  if (p.failed) parts.push(`${p.failed} failed`);
  return `${words(p.status)}: ${parts.join(" · ")}`;
}

function resultRow(r, rank) {
  const comps = el("div", { class: "comps" });
  for (const [key, label] of COMPONENTS) {
    const v = r.breakdown[key];
    const shown = v === null || v === undefined ? "n/a" : `${Math.round(v * 100)}%`;
    comps.append(el("span", {}, label), bar(v, `${label}: ${shown}`), el("span", { class: "value" }, shown));
  }
  const evidence = el(
    "details", {},
    el("summary", {}, `Why (${r.evidence.length} evidence line${r.evidence.length === 1 ? "" : "s"})`),
    r.explanation ? el("p", {}, r.explanation) : null,
    el("ul", { class: "evidence" }, r.evidence.map((e) => el("li", {}, el("strong", {}, words(e.component)), `: ${e.requirement} ← ${e.cv_text}`))),
  );
  const skills = el(
    "td", { "data-label": "Skills and evidence" },
    chips(r.matched_skills, "matched", "Matched skills"),
    r.missing_required.length ? chips(r.missing_required, "missing", "Missing required skills") : null,
    r.missing_preferred.length ? chips(r.missing_preferred, "preferred", "Missing preferred skills") : null,
    evidence,
  );
  const label = cvLabel(r.cv_id);
  return el(
    "tr", { "data-cv-id": r.cv_id },
    el("td", { "data-label": "Rank" }, String(rank)),
    el("td", { "data-label": "Candidate", class: "candidate" }, label),
    el("td", { "data-label": "Score" }, el("span", { class: "score" }, r.score.toFixed(1))),
    el("td", { "data-label": "Components" }, comps),
    skills,
    el(
      "td", { "data-label": "Actions" },
      el("div", { class: "actions" },
        el("button", { type: "button", class: "small", "data-action": "profile", "aria-label": `Profile of ${label}` }, "Profile"),
        el("button", { type: "button", class: "small", "data-action": "jobs", "aria-label": `Best jobs for ${label}` }, "Best jobs"),
        el("button", { type: "button", class: "small danger", "data-action": "delete", "aria-label": `Delete ${label}` }, "Delete")),
    ),
  );
}

export function renderRanking() {
  const table = document.getElementById("ranking-table");
  table.hidden = state.results.length === 0 && !state.jobId;
  table.querySelector("tbody").replaceChildren(...state.results.map((r, i) => resultRow(r, i + 1)));
  document.getElementById("export-csv").disabled = state.results.length === 0;
}

async function showResults(jobId) {
  const body = await api(`/api/match-results/${encodeURIComponent(jobId)}`);
  if (jobId !== state.jobId) return body;
  for (const r of body.results) rememberCv(r.cv_id, null);
  const before = JSON.stringify(state.results.map((r) => [r.cv_id, r.score]));
  state.results = body.results;
  if (JSON.stringify(state.results.map((r) => [r.cv_id, r.score])) !== before) renderRanking();
  return body;
}

async function runMatch(event) {
  event.preventDefault();
  if (!state.jd) return;
  const button = document.getElementById("match-btn");
  const chunkSize = Number(document.getElementById("chunk-size").value) || 50;
  showError("match-error", "");
  button.disabled = true;
  const barNode = document.getElementById("match-bar");
  const status = document.getElementById("match-status");
  const cancel = document.getElementById("match-cancel");
  document.getElementById("match-progress").hidden = false;
  barNode.value = 0;
  status.textContent = "starting…";
  state.results = [];
  try {
    const job = await api("/api/match", { method: "POST", json: { jd_id: state.jd.jd_id, chunk_size: chunkSize } });
    state.jobId = job.job_id;
    cancel.hidden = false;
    cancel.disabled = false;
    document.getElementById("ranking").dataset.jobId = job.job_id;
    renderRanking();
    for (;;) {
      const p = await api(`/api/matching-progress/${encodeURIComponent(job.job_id)}`);
      barNode.value = p.percent;
      status.textContent = progressText(p);
      const results = await showResults(job.job_id);
      if (["succeeded", "failed", "cancelled"].includes(p.status) && results.complete) {
        if (p.error) showError("match-error", p.error);
        document.getElementById("ranking").dataset.complete = "true";
        announce(`Match ${words(p.status)}: ${results.count} candidates ranked.`);
        break;
      }
      document.getElementById("ranking").dataset.complete = "false";
      await sleep(POLL_MS);
    }
  } catch (err) {
    showError("match-error", describe(err));
  } finally {
    button.disabled = false;
    cancel.hidden = true;
  }
}

/** Ask the server to stop the running match: no chunk starts after it; results so far stay. */
async function cancelMatch() {
  const button = document.getElementById("match-cancel");
  if (!state.jobId) return;
  button.disabled = true;
  try {
    await api(`/api/match/${encodeURIComponent(state.jobId)}/cancel`, { method: "POST" });
    announce("Cancelling the match…");
  } catch (err) {
    showError("match-error", describe(err));
    button.disabled = false;
  }
}

function csvCell(value) {
  let s = value === null || value === undefined ? "" : String(value);
  // A cell a spreadsheet would run as a formula is kept as text.
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\n\r]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

/** The ranking as CSV text, in the order shown; file names only when blind mode is off. */
export function rankingCsv() {
  const head = ["rank", "cv_id", ...(state.blind ? [] : ["filename"]), "score", ...COMPONENTS.map(([k]) => k),
    "matched_skills", "missing_required", "missing_preferred", "explanation"];
  const lines = [head.join(",")];
  state.results.forEach((r, i) => {
    lines.push([
      i + 1, r.cv_id, ...(state.blind ? [] : [state.cvs.get(r.cv_id)?.filename || ""]), r.score.toFixed(2),
      ...COMPONENTS.map(([k]) => (r.breakdown[k] === null || r.breakdown[k] === undefined ? "" : r.breakdown[k].toFixed(4))),
      r.matched_skills.join("; "), r.missing_required.join("; "), r.missing_preferred.join("; "), r.explanation,
    ].map(csvCell).join(","));
  });
  return `${lines.join("\r\n")}\r\n`;
}

function exportCsv() {
  const blob = new Blob([rankingCsv()], { type: "text/csv;charset=utf-8" });
  const link = el("a", { href: URL.createObjectURL(blob), download: `ranking-${state.jd?.jd_id?.slice(0, 8) || "job"}.csv` });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  announce("Ranking exported as CSV.");
}

export function setupMatch({ openProfile, bestJobs, deleteCv }) {
  document.getElementById("jd-form").addEventListener("submit", readJob);
  document.getElementById("match-form").addEventListener("submit", runMatch);
  document.getElementById("match-cancel").addEventListener("click", cancelMatch);
  document.getElementById("export-csv").addEventListener("click", exportCsv);
  document.querySelector("#ranking-table tbody").addEventListener("click", (e) => {
    const button = e.target.closest("button[data-action]");
    if (!button) return;
    const cvId = button.closest("tr").dataset.cvId;
    if (button.dataset.action === "profile") openProfile(cvId, button);
    else if (button.dataset.action === "jobs") bestJobs(cvId);
    else if (button.dataset.action === "delete") deleteCv(cvId);
  });
  onChange(renderRanking);
}
