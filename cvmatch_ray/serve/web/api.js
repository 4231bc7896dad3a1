// Calls to the JSON API under /api, with the recruiter's key, and refusals put into words.

const KEY_STORE = "cvmatch.apiKey";

export function apiKey() {
  return sessionStorage.getItem(KEY_STORE) || "";
}

export function setApiKey(value) {
  if (value) sessionStorage.setItem(KEY_STORE, value);
  else sessionStorage.removeItem(KEY_STORE);
}

/** A refusal: the HTTP status and the body's `detail` ({code, stage, message}, a string or a list). */
export class ApiError extends Error {
  constructor(status, detail) {
    super(typeof detail === "object" && detail && detail.message ? detail.message : String(detail ?? status));
    this.status = status;
    this.code = typeof detail === "object" && detail ? detail.code || null : null;
    this.stage = typeof detail === "object" && detail ? detail.stage || null : null;
  }
}

/** What each error code of cvmatch_ray/errors.py means to a recruiter. */
const CODE_WORDS = {
  empty_document: "The file is empty.",
  encrypted_document: "The PDF is password-protected: save a copy without a password.",
  no_text_layer: "The document has no text (a scan or a photo): it needs OCR first.",
  corrupt_document: "The file is damaged and could not be read.",
  unsupported_document_type: "Not a CV format the server reads: use PDF, DOCX, text, Markdown or HTML.",
  document_too_large: "The file is larger than the server's upload limit.",
  too_many_pages: "The document has more pages than the server accepts.",
  archive_too_large: "The document unpacks to more than the server accepts.",
  extraction_failed: "The text of the file could not be read.",
  standardization_failed: "The text could not be turned into a profile.",
  embedding_failed: "The server could not process the CV; try again.",
  internal_error: "The server could not store the CV; try again.",
};

/** A reason in words for an error code, and the server's own message beside it. */
export function reasonInWords(code, message) {
  const words = CODE_WORDS[code];
  if (words) return { words, detail: message && !message.startsWith(code) ? `${code}: ${message}` : message || code };
  return { words: message || "The request failed.", detail: code || "" };
}

/** One sentence for any error a call can end with. */
export function describe(err) {
  if (err instanceof ApiError) {
    if (err.status === 401) return "The server needs an API key: enter it at the top of the page.";
    if (err.status === 404) return "Not found: it may have been deleted.";
    if (err.status === 503) return "A backend is busy or unavailable; try again in a few seconds.";
    if (err.code) return reasonInWords(err.code, err.message).words;
    return `The server refused the request (${err.status}): ${err.message}`;
  }
  return `The server could not be reached: ${err.message}`;
}

/** Call `path` with an optional JSON or FormData body; the parsed JSON answer, or an ApiError. */
export async function api(path, { method = "GET", json, form } = {}) {
  const headers = { Accept: "application/json" };
  const key = apiKey();
  if (key) headers["X-API-Key"] = key;
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form) {
    body = form;
  }
  const response = await fetch(path, { method, headers, body });
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { detail: text };
  }
  if (!response.ok) throw new ApiError(response.status, data && data.detail !== undefined ? data.detail : text);
  return data;
}
