// Reverse matching: the best stored jobs for one CV.

import { api, describe } from "./api.js";
import { announce, chips, el, showError } from "./ui.js";
import { cvLabel, onChange, state } from "./state.js";

const titles = new Map(); // jd_id -> title, read once per page

async function jobTitle(jdId) {
  if (!titles.has(jdId)) {
    try {
      const jd = await api(`/api/jds/${encodeURIComponent(jdId)}`);
      titles.set(jdId, jd.profile.title || jd.filename || `Job ${jdId.slice(0, 8)}`);
    } catch {
      return `Job ${jdId.slice(0, 8)}`;
    }
  }
  return titles.get(jdId);
}

function fillChoices() {
  const select = document.getElementById("reverse-cv");
  const chosen = select.value;
  const options = [...state.cvs.keys()].map((id) => el("option", { value: id }, cvLabel(id)));
  if (!options.length) options.push(el("option", { value: "" }, "Upload or rank a CV first"));
  select.replaceChildren(...options);
  if (state.cvs.has(chosen)) select.value = chosen;
}

/** Rank the stored jobs for `cvId` and show them. */
export async function bestJobs(cvId) {
  const select = document.getElementById("reverse-cv");
  select.value = cvId;
  showError("reverse-error", "");
  const table = document.getElementById("jobs-table");
  try {
    const body = await api("/api/match-jobs", { method: "POST", json: { cv_id: cvId } });
    const rows = await Promise.all(body.results.map(async (r, i) => el(
      "tr", { "data-jd-id": r.jd_id },
      el("td", { "data-label": "Rank" }, String(i + 1)),
      el("td", { "data-label": "Job", class: "job" }, await jobTitle(r.jd_id)),
      el("td", { "data-label": "Score" }, el("span", { class: "score" }, r.score.toFixed(1))),
      el("td", { "data-label": "Matched skills" }, chips(r.matched_skills, "matched", "Matched skills")),
      el("td", { "data-label": "Missing skills" }, chips(r.missing_required, "missing", "Missing required skills")),
    )));
    table.querySelector("tbody").replaceChildren(...rows);
    table.hidden = false;
    table.dataset.cvId = cvId;
    announce(`${rows.length} job${rows.length === 1 ? "" : "s"} ranked for ${cvLabel(cvId)}.`);
    document.getElementById("reverse").scrollIntoView({ block: "start" });
  } catch (err) {
    showError("reverse-error", describe(err));
  }
}

export function setupReverse() {
  document.getElementById("reverse-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const cvId = document.getElementById("reverse-cv").value;
    if (cvId) bestJobs(cvId);
  });
  onChange(fillChoices);
  fillChoices();
}
