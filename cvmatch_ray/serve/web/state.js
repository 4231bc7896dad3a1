// What the page knows between views: the CVs it has seen, the current job and ranking, blind mode.

const CVS_STORE = "cvmatch.cvs";

export const state = {
  /** cv_id -> {filename}: CVs uploaded or ranked in this browser session (the API has no list). */
  cvs: new Map(JSON.parse(sessionStorage.getItem(CVS_STORE) || "[]")),
  jd: null,
  jobId: null,
  results: [],
  blind: true,
  listeners: new Set(),
};

/** Call `fn` whenever the known CVs, the ranking or blind mode change. */
export function onChange(fn) {
  state.listeners.add(fn);
}

export function changed() {
  sessionStorage.setItem(CVS_STORE, JSON.stringify([...state.cvs]));
  for (const fn of state.listeners) fn();
}

export function rememberCv(cvId, filename) {
  const known = state.cvs.get(cvId);
  if (known && (known.filename || !filename)) return;
  state.cvs.set(cvId, { filename: filename || null });
  changed();
}

export function forgetCv(cvId) {
  state.cvs.delete(cvId);
  state.results = state.results.filter((r) => r.cv_id !== cvId);
  changed();
}

/** How a CV is named on the page: a neutral label in blind mode, else its file name. */
export function cvLabel(cvId) {
  const short = `Candidate ${cvId.slice(0, 8)}`;
  if (state.blind) return short;
  return state.cvs.get(cvId)?.filename || short;
}
