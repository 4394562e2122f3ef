// Building the page. Every piece of data goes in as text (textContent or an
// attribute value), never as markup: workflow names, state values and errors
// come from users and workers and may hold anything.

// h("a", {href: "#/x", class: "c"}, "text", child, ...): an element.
// Attributes named on* are refused: handlers are attached with addEventListener.
export function h(tag, attributes = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) throw new Error("h(): use addEventListener, not " + name);
    if (name === "text") el.textContent = String(value);
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

// A button that runs `action` on click (Enter and Space work: it is a <button>).
export function button(label, action, attributes = {}) {
  const b = h("button", { type: "button", ...attributes }, label);
  b.addEventListener("click", action);
  return b;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

// A labelled field: <label for=id> + the control.
export function field(label, control, hint) {
  const id = control.id || "f-" + Math.random().toString(36).slice(2);
  control.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), control,
           hint ? h("small", { class: "muted" }, hint) : null);
}

export function formatTime(ms) {
  if (!ms) return "";
  const d = new Date(ms);
  return d.toLocaleString(undefined, { hour12: false });
}

export function formatDuration(ms) {
  if (ms === undefined || ms === null || ms < 0) return "";
  if (ms < 1000) return ms + " ms";
  if (ms < 60000) return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s";
  return Math.floor(ms / 60000) + " min " + Math.round((ms % 60000) / 1000) + " s";
}

export function statusBadge(status) {
  return h("span", { class: "badge status-" + String(status).replace(/[^a-z_]/g, ""), "data-status": status }, status);
}

export function pretty(value) {
  return JSON.stringify(value, null, 2);
}

// Parses a JSON text field; throws an Error naming the field when it is not JSON.
export function parseJsonField(text, what, { object = true } = {}) {
  const t = text.trim();
  if (t === "") return object ? {} : null;
  let v;
  try {
    v = JSON.parse(t);
  } catch (e) {
    throw new Error(what + " is not valid JSON: " + e.message);
  }
  if (object && (v === null || typeof v !== "object" || Array.isArray(v))) throw new Error(what + " must be a JSON object");
  return v;
}

// Errors of API calls the pages did not show themselves: never a blank page.
export function reportError(error, context) {
  const box = document.getElementById("errors");
  const message = (context ? context + ": " : "") + (error && error.message ? error.message : String(error));
  const item = h("div", { class: "error" }, h("span", {}, message));
  const close = h("button", { type: "button", class: "link", "aria-label": "Dismiss error" }, "×");
  close.addEventListener("click", () => item.remove());
  item.append(close);
  box.append(item);
  while (box.children.length > 4) box.firstChild.remove();
}

