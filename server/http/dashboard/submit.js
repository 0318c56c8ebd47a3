// #/submit?type=sleep : a form for any installed job type, built from its payload's JSON schema.

import { api } from "./api.js";
import { errorBox, flattenErrors, h, pretty, render } from "./dom.js";
import { state } from "./state.js";

// The job's own fields, the same for every type (see POST /jobs).
const JOB_FIELDS = [
  { name: "priority", label: "Priority", type: "integer", minimum: 1, maximum: 10, value: "5", hint: "1 to 10, higher runs first" },
  { name: "max_attempts", label: "Max attempts", type: "integer", minimum: 1, placeholder: "3" },
  { name: "timeout", label: "Timeout (s)", type: "number", minimum: 0, placeholder: "server default", hint: "limit of one attempt" },
  { name: "delay", label: "Delay (s)", type: "number", minimum: 0, placeholder: "0", hint: "run no earlier than this" },
  { name: "idempotency_key", label: "Idempotency key", type: "string", placeholder: "optional" },
];

const fieldId = (path) => `f-${path.replace(/[^A-Za-z0-9_-]/g, "-")}`;
const errorId = (path) => `err-${path.replace(/[^A-Za-z0-9_-]/g, "-")}`;

function isJsonField(prop) {
  return !prop.type || prop.type === "object" || prop.type === "array" || Array.isArray(prop.type);
}

/** One labelled input for a payload property (or a job field) with its hint and error slot. */
function input(path, name, prop, required) {
  const id = fieldId(path);
  const hintId = `${id}-hint`;
  const describedBy = `${hintId} ${errorId(path)}`;
  const common = { id, name: path, "aria-describedby": describedBy, required: required || null };
  let control;
  if (Array.isArray(prop.enum)) {
    const options = required ? [] : [h("option", { value: "" }, "—")];
    control = h(
      "select",
      common,
      options,
      prop.enum.map((v) => h("option", { value: String(v), selected: v === prop.default }, String(v))),
    );
  } else if (prop.type === "boolean") {
    control = h("input", { ...common, type: "checkbox", checked: prop.default === true });
  } else if (prop.type === "integer" || prop.type === "number") {
    control = h("input", {
      ...common,
      type: "number",
      inputmode: prop.type === "integer" ? "numeric" : "decimal",
      step: prop.type === "integer" ? "1" : "any",
      min: prop.minimum,
      max: prop.maximum,
      value: prop.value,
      placeholder: prop.placeholder ?? (prop.default !== undefined ? `default ${prop.default}` : null),
    });
  } else if (isJsonField(prop)) {
    control = h("textarea", { ...common, rows: 3, spellcheck: "false", placeholder: "JSON, e.g. {} or [] or \"text\"" });
  } else {
    control = h("input", {
      ...common,
      type: "text",
      autocomplete: "off",
      minlength: prop.minLength,
      maxlength: prop.maxLength,
      placeholder: prop.placeholder ?? (prop.default !== undefined ? `default ${prop.default}` : null),
    });
  }
  control.dataset.kind = isJsonField(prop) && !prop.enum ? "json" : prop.type || "string";
  return h(
    "div",
    { class: `field${prop.type === "boolean" ? " check" : ""}` },
    h("label", { for: id }, prop.label || name, required ? h("span", { class: "req" }, " (required)") : null),
    control,
    h("small", { id: hintId, class: "hint" }, [prop.description || prop.hint || "", isJsonField(prop) ? " (JSON)" : ""]),
    h("small", { id: errorId(path), class: "field-error" }),
  );
}

/** The value of one control, or undefined when left empty (the server's default applies). */
function valueOf(control) {
  const kind = control.dataset.kind;
  if (kind === "boolean") return control.checked;
  const raw = control.value;
  if (raw.trim() === "") return undefined;
  if (kind === "integer" || kind === "number") return Number(raw);
  if (kind === "json") {
    try {
      return JSON.parse(raw);
    } catch (err) {
      throw Object.assign(new Error(`not valid JSON: ${err.message}`), { field: control.name });
    }
  }
  return raw;
}

export function mountSubmit(root, params) {
  const picker = h("div");
  const formSlot = h("div");
  root.append(h("h1", {}, "Submit a job"), picker, formSlot);

  function build(types) {
    const chosen = types.find((t) => t.name === params.get("type")) || types[0];
    render(picker, JSON.stringify([types.map((t) => t.name), chosen && chosen.name]), () =>
      h(
        "div",
        { class: "field" },
        h("label", { for: "submit-type" }, "Job type"),
        h(
          "select",
          { id: "submit-type", onchange: (e) => (location.hash = `#/submit?type=${encodeURIComponent(e.target.value)}`) },
          types.map((t) => h("option", { value: t.name, selected: t === chosen }, t.name)),
        ),
        chosen && chosen.description ? h("small", { class: "hint" }, chosen.description) : null,
      ),
    );
    if (!chosen) {
      render(formSlot, "none", () => h("p", { class: "muted" }, "No job type is installed on this server."));
      return;
    }
    render(formSlot, JSON.stringify(chosen), () => form(chosen));
  }

  async function refresh() {
    if (state.jobTypes) build(state.jobTypes.job_types || []);
  }
  return { root, refresh };
}

function form(jobType) {
  const schema = jobType.payload_schema || {};
  const properties = schema.properties || {};
  const required = new Set(schema.required || []);
  const summary = h("div", { "aria-live": "assertive" });
  const rawJson = h("textarea", {
    id: "f-payload-json",
    name: "payload",
    rows: 6,
    spellcheck: "false",
    "aria-describedby": "err-payload",
  });
  const rawBlock = h(
    "div",
    { class: "field", hidden: true },
    h("label", { for: "f-payload-json" }, "Payload (JSON object)"),
    rawJson,
    h("small", { id: "err-payload", class: "field-error" }),
  );
  const fieldsBlock = h(
    "fieldset",
    {},
    h("legend", {}, `Payload of ${jobType.name}`),
    Object.entries(properties).map(([name, prop]) => input(`payload.${name}`, name, prop, required.has(name))),
  );
  const toggle = h("input", { id: "f-raw", type: "checkbox" });
  const payloadFromFields = () => {
    const payload = {};
    for (const name of Object.keys(properties)) {
      const value = valueOf(document.getElementById(fieldId(`payload.${name}`)));
      if (value !== undefined) payload[name] = value;
    }
    return payload;
  };
  toggle.addEventListener("change", () => {
    if (toggle.checked) {
      try {
        rawJson.value = pretty(payloadFromFields());
      } catch {
        rawJson.value = "{}";
      }
    }
    rawBlock.hidden = !toggle.checked;
    fieldsBlock.hidden = toggle.checked;
    fieldsBlock.disabled = toggle.checked; // its required fields no longer block the form
  });

  const el = h(
    "form",
    { class: "submit-form", "aria-label": `Submit a ${jobType.name} job` },
    summary,
    fieldsBlock,
    h("div", { class: "field check" }, toggle, h("label", { for: "f-raw" }, "Edit the payload as JSON")),
    rawBlock,
    h(
      "fieldset",
      {},
      h("legend", {}, "Job options"),
      h("div", { class: "grid" }, JOB_FIELDS.map((f) => input(f.name, f.name, f, false))),
    ),
    h("button", { type: "submit", class: "primary" }, "Submit job"),
  );

  el.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const slot of el.querySelectorAll(".field-error")) slot.textContent = "";
    for (const bad of el.querySelectorAll("[aria-invalid]")) bad.removeAttribute("aria-invalid");
    summary.replaceChildren();
    const body = { type: jobType.name };
    try {
      body.payload = toggle.checked ? (valueOf(rawJson) ?? {}) : payloadFromFields();
      for (const f of JOB_FIELDS) {
        const value = valueOf(document.getElementById(fieldId(f.name)));
        if (value !== undefined) body[f.name] = value;
      }
    } catch (err) {
      showFieldErrors(el, [[err.field || "payload", err.message]]);
      summary.replaceChildren(errorBox(err));
      return;
    }
    const button = el.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const job = await api("/jobs", { method: "POST", body });
      location.hash = `#/jobs/${job.id}`;
    } catch (err) {
      showFieldErrors(el, flattenErrors((err.body && err.body.errors) || {}, "", []));
      summary.replaceChildren(errorBox(err));
    } finally {
      button.disabled = false;
    }
  });
  rawJson.dataset.kind = "json";
  return el;
}

/** Put each message under its field ("payload.duration" -> that input), marking it invalid. */
function showFieldErrors(el, pairs) {
  for (const [path, message] of pairs) {
    // The nearest visible field: with the JSON editor on, payload.x errors go to the payload.
    const visible = (id) => {
      const slot = document.getElementById(id);
      return slot && !slot.closest("[hidden]");
    };
    let target = path;
    while (target && !visible(errorId(target))) {
      target = target.includes(".") ? target.slice(0, target.lastIndexOf(".")) : "";
    }
    const slot = target && document.getElementById(errorId(target));
    if (!slot) continue;
    const text = target === path ? message : `${path.slice(target.length + 1)}: ${message}`;
    slot.textContent = slot.textContent ? `${slot.textContent} ${text}` : text;
    const control = document.getElementById(fieldId(target)) || (target === "payload" ? el.querySelector("#f-payload-json") : null);
    if (control) control.setAttribute("aria-invalid", "true");
  }
}
