// Building the page from data without ever parsing data as HTML: every string becomes a text node.

/** h("a", {href: "#/"}, "text", child, ...): an element; on* attributes become listeners. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** Replace the children of ``el``, but only when ``key`` changed (keeps focus and scroll). */
export function render(el, key, build) {
  if (el.dataset.key === key) return;
  el.dataset.key = key;
  el.replaceChildren(...[build()].flat(Infinity).filter((c) => c !== null && c !== undefined));
}

export function statusBadge(status) {
  return h("span", { class: `badge status-${status || "unknown"}` }, status || "unknown");
}

/** A table that turns into one card per row on a narrow screen (labels from data-label). */
export function table(caption, columns, rows, emptyText) {
  if (!rows.length) return h("p", { class: "empty" }, emptyText);
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "cards" },
      h("caption", { class: "visually-hidden" }, caption),
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c.label)))),
      h(
        "tbody",
        {},
        rows.map((row) =>
          h(
            "tr",
            { class: row.className || null },
            columns.map((c) => h("td", { "data-label": c.label }, c.cell(row))),
          ),
        ),
      ),
    ),
  );
}

export function errorBox(err) {
  const lines = [];
  if (err && err.body && err.body.errors) flattenErrors(err.body.errors, "", lines);
  return h(
    "div",
    { class: "error-box", role: "alert" },
    h("strong", {}, err && err.status ? `${err.status} ` : "", (err && err.body && err.body.title) || "Error"),
    h("p", {}, (err && err.message) || String(err)),
    lines.length ? h("ul", {}, lines.map(([field, msg]) => h("li", {}, h("code", {}, field), ": ", msg))) : null,
  );
}

/** {"payload": {"duration": ["bad"]}} -> [["payload.duration", "bad"]]. */
export function flattenErrors(errors, prefix, out) {
  if (Array.isArray(errors)) {
    for (const item of errors) {
      if (typeof item === "string") out.push([prefix || "request", item]);
      else flattenErrors(item, prefix, out);
    }
  } else if (errors && typeof errors === "object") {
    for (const [key, value] of Object.entries(errors)) {
      flattenErrors(value, prefix ? `${prefix}.${key}` : key, out);
    }
  } else if (errors !== undefined && errors !== null) {
    out.push([prefix || "request", String(errors)]);
  }
  return out;
}

// -- formatting -------------------------------------------------------------------

export function pretty(value) {
  return JSON.stringify(value, null, 2);
}

export function seconds(total) {
  if (total === null || total === undefined || Number.isNaN(total)) return "—";
  const s = Math.max(0, total);
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 90) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} d`;
}

export function ago(iso) {
  if (!iso) return "—";
  const then = Date.parse(iso);
  if (Number.isNaN(then)) return String(iso);
  const delta = (Date.now() - then) / 1000;
  return delta >= 0 ? `${seconds(delta)} ago` : `in ${seconds(-delta)}`;
}

/** A <time> showing "12 s ago" with the exact UTC time as its title. */
export function time(iso) {
  if (!iso) return "—";
  return h("time", { datetime: iso, title: iso }, ago(iso));
}

export function between(start, end) {
  if (!start || !end) return "—";
  return seconds((Date.parse(end) - Date.parse(start)) / 1000);
}

// -- confirmation -------------------------------------------------------------------

/**
 * Ask before an action that cannot be undone: a modal dialog naming what will happen.
 * Resolves true when the user pressed the action's button, false otherwise.
 */
export function confirmAction(title, message, actionLabel) {
  return new Promise((resolve) => {
    const dialog = h(
      "dialog",
      { class: "confirm", "aria-labelledby": "confirm-title", "aria-describedby": "confirm-message" },
      h(
        "form",
        { method: "dialog" },
        h("h2", { id: "confirm-title" }, title),
        h("p", { id: "confirm-message" }, message),
        h(
          "div",
          { class: "actions" },
          h("button", { value: "yes", class: "danger" }, actionLabel),
          h("button", { value: "no", formnovalidate: true }, "Keep as is"),
        ),
      ),
    );
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "yes");
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

// -- inline SVG ---------------------------------------------------------------------

const SVG_NS = "http://www.w3.org/2000/svg";

/** s("path", {d: "M0 0"}, child...): an SVG element (attributes set as given). */
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value !== undefined && value !== null && value !== false) el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}
