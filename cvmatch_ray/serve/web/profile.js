// The detail view of a parsed CV, contact hidden until revealed, and deleting a CV.

import { api, describe } from "./api.js";
import { announce, chips, el, months, words } from "./ui.js";
import { cvLabel, forgetCv, rememberCv, state } from "./state.js";
import { markDeleted } from "./upload.js";

let current = null; // {cv, revealed, opener}

function contact(cv, revealed) {
  const c = cv.profile.contact;
  if (!revealed) {
    const found = cv.stats.pii_fields_found.length ? cv.stats.pii_fields_found.join(", ") : "none";
    return el("p", { class: "hidden-contact", id: "contact" }, `Contact details hidden (blind mode). Found in the CV: ${found}.`);
  }
  const rows = [["Name", c.name], ["E-mail", c.email], ["Phone", c.phone], ["Location", c.location], ["Links", c.links.join(", ")]];
  return el("dl", { id: "contact", class: "contact" }, rows.filter(([, v]) => v).map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

function dates(e) {
  const end = e.current ? "present" : e.end || "?";
  const span = e.start || e.end ? `${e.start || "?"} – ${end}` : "dates not found";
  return e.months ? `${span} (${months(e.months)})` : span;
}

function render() {
  const { cv, revealed } = current;
  const p = cv.profile;
  const name = revealed && p.contact.name ? p.contact.name : cvLabel(cv.cv_id);
  document.getElementById("profile-h").textContent = name;
  const reveal = document.getElementById("reveal");
  reveal.setAttribute("aria-pressed", String(revealed));
  reveal.textContent = revealed ? "Hide contact details" : "Reveal contact details";
  const body = [
    el("h3", {}, "Contact"), contact(cv, revealed),
    el("p", {},
      p.headline ? el("strong", {}, p.headline) : null, p.headline ? " · " : null,
      `${words(p.seniority)} · ${months(p.total_experience_months) || "no"} dated experience`,
      revealed && cv.filename ? ` · ${cv.filename}` : null),
    p.summary ? el("p", {}, p.summary) : null,
    cv.flags.length ? el("p", { class: "error" }, `Flags: ${cv.flags.map(words).join(", ")}`) : null,
    el("h3", {}, "Experience"),
    p.experience.length
      ? el("ul", { class: "plain" }, p.experience.map((e) => el(
        "li", {},
        el("strong", {}, e.title || "Untitled role"), e.company ? ` at ${e.company}` : "",
        el("div", { class: "when" }, dates(e)),
        e.responsibilities.length ? el("ul", {}, e.responsibilities.slice(0, 6).map((r) => el("li", {}, r))) : null,
        e.skills.length ? chips(e.skills, "", "Skills in this role") : null,
      )))
      : el("p", { class: "muted" }, "none found"),
    el("h3", {}, "Education"),
    p.education.length
      ? el("ul", { class: "plain" }, p.education.map((e) => el(
        "li", {}, el("strong", {}, e.degree || words(e.level)), e.field ? `, ${e.field}` : "",
        e.institution ? ` — ${e.institution}` : "", e.year ? el("span", { class: "when" }, ` (${e.year})`) : null,
      )))
      : el("p", { class: "muted" }, "none found"),
    el("h3", {}, "Skills"), chips(p.skills.map((s) => s.name), "", "Skills"),
    el("h3", {}, "Languages"),
    p.languages.length
      ? chips(p.languages.map((l) => (l.level && l.level !== "unknown" ? `${l.name} (${words(l.level)})` : l.name)), "", "Languages")
      : el("p", { class: "muted" }, "none found"),
    p.certifications.length ? [el("h3", {}, "Certifications"), el("ul", {}, p.certifications.map((c) => el("li", {}, c)))] : null,
  ];
  document.getElementById("profile-body").replaceChildren(...body.flat().filter(Boolean));
}

/** Open the profile of `cvId`; focus returns to `opener` when it closes. */
export async function openProfile(cvId, opener) {
  const dialog = document.getElementById("profile");
  try {
    const cv = await api(`/api/cvs/${encodeURIComponent(cvId)}`);
    rememberCv(cv.cv_id, cv.filename);
    current = { cv, revealed: !state.blind, opener };
    render();
    dialog.dataset.cvId = cvId;
    dialog.showModal();
    document.getElementById("profile-close").focus();
  } catch (err) {
    announce(describe(err));
    window.alert(describe(err));
  }
}

/** Delete a CV everywhere after the recruiter confirms; true when it was deleted. */
export async function deleteCv(cvId) {
  if (!window.confirm(`Delete ${cvLabel(cvId)}? Its profile, vectors, file and match results are removed.`)) return false;
  // The answer comes once the CV is erased from disk, which takes some seconds.
  announce(`Deleting ${cvLabel(cvId)}: erasing it from disk...`);
  try {
    await api(`/api/cvs/${encodeURIComponent(cvId)}`, { method: "DELETE" });
  } catch (err) {
    window.alert(describe(err));
    return false;
  }
  const dialog = document.getElementById("profile");
  if (dialog.open && dialog.dataset.cvId === cvId) dialog.close();
  markDeleted(cvId);
  forgetCv(cvId);
  announce(`${cvLabel(cvId)} deleted.`);
  return true;
}

export function setupProfile() {
  const dialog = document.getElementById("profile");
  document.getElementById("profile-close").addEventListener("click", () => dialog.close());
  document.getElementById("reveal").addEventListener("click", () => {
    current.revealed = !current.revealed;
    render();
  });
  document.getElementById("delete-cv").addEventListener("click", () => deleteCv(current.cv.cv_id));
  dialog.addEventListener("close", () => current?.opener?.isConnected && current.opener.focus());
  // A click on the backdrop (outside the dialog's box) closes it too.
  dialog.addEventListener("click", (e) => { if (e.target === dialog) dialog.close(); });
}
