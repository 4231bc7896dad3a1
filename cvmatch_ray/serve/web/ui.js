// Small DOM and formatting helpers. Text always goes in as text: nothing from a CV is parsed as HTML.

/** An element with attributes (`class`, `data-*`, aria...) and children (nodes or strings). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "onclick") node.addEventListener("click", value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** A list of chips, one per skill; `kind` is "matched", "missing", "preferred" or "". */
export function chips(names, kind = "", label = "") {
  if (!names || names.length === 0) return el("span", { class: "muted" }, "none");
  return el("ul", { class: "chips", "aria-label": label || null }, names.map((n) => el("li", { class: `chip ${kind}` }, n)));
}

/** A horizontal bar for a value in [0, 1]. */
export function bar(value, label) {
  const fill = el("span");
  fill.style.setProperty("width", `${Math.round(Math.max(0, Math.min(1, value ?? 0)) * 100)}%`);
  return el("div", { class: "bar", role: "img", "aria-label": label }, fill);
}

export function announce(message) {
  const live = document.getElementById("announce");
  live.textContent = "";
  // A new text node after a tick, so that screen readers announce a repeated message too.
  setTimeout(() => { live.textContent = message; }, 50);
}

export function showError(id, message) {
  const node = document.getElementById(id);
  node.textContent = message || "";
  node.hidden = !message;
}

export function seconds(s) {
  if (s === null || s === undefined) return "–";
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const m = Math.floor(s / 60);
  return `${m} min ${Math.round(s - 60 * m)} s`;
}

export function months(n) {
  if (!n) return "";
  const y = Math.floor(n / 12), m = n % 12;
  return [y ? `${y} y` : "", m ? `${m} m` : ""].filter(Boolean).join(" ");
}

export function words(enumValue) {
  return enumValue ? String(enumValue).replaceAll("_", " ") : "";
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
