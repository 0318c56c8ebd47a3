// #/ : charts over time, jobs by type (types without a live worker highlighted), queues
// (pause, resume), limits (view, edit), schedules (create, pause, resume, delete) and workers.

import { api, optional } from "./api.js";
import { mountCharts } from "./charts.js";
import { knownStatuses, state } from "./state.js";
import { confirmAction, errorBox, h, render, table, time } from "./dom.js";

export function mountOverview(root) {
  const charts = h("section", { "aria-labelledby": "charts-title" }, h("h2", { id: "charts-title" }, "Over time"));
  const types = h("div");
  const queues = h("div");
  const limits = h("div");
  const schedules = h("div");
  const workers = h("div");
  const message = h("div", { "aria-live": "polite" });
  const section = (id, title, ...body) => h("section", { "aria-labelledby": id }, h("h2", { id }, title), ...body);
  root.append(
    h("h1", {}, "Overview"),
    message,
    charts,
    section("types-title", "Job types", types),
    section("queues-title", "Queues", queues),
    section("limits-title", "Limits", limits, limitForm(act)),
    section("schedules-title", "Schedules", schedules, scheduleForm(act)),
    section("workers-title", "Workers", workers),
  );
  const chartView = mountCharts(charts);

  /** Run an action, say how it went, and draw the page again. */
  async function act(call, done) {
    try {
      await call();
      message.replaceChildren(h("p", { class: "ok-box" }, done));
    } catch (err) {
      message.replaceChildren(errorBox(err));
    }
    await refresh();
  }

  async function refresh() {
    renderTypes(types);
    fillTypeChoice(root.querySelector("#schedule-type"));
    // In parallel: the refresh takes no longer than it did with workers alone.
    const [answer, queueList, scheduleList, limitList] = await Promise.all([
      optional("/workers"),
      optional("/queues"),
      optional("/schedules"),
      optional("/limits"),
      chartView.refresh(),
    ]);
    renderQueues(queues, queueList, act);
    renderLimits(limits, limitList, act);
    renderSchedules(schedules, scheduleList, act);
    // Which jobs each worker runs: the running jobs name their worker.
    const running = answer ? (await api("/jobs?status=running&limit=500")).jobs || [] : [];
    renderWorkers(workers, answer, running);
  }
  return { root, refresh };
}

function renderTypes(el) {
  const stats = state.stats && !state.stats.error ? state.stats : null;
  const installed = (state.jobTypes && state.jobTypes.job_types) || [];
  const byType = (stats && stats.by_type) || {};
  const stuck = new Set((stats && stats.stuck_types) || []);
  const names = [...new Set([...installed.map((t) => t.name), ...Object.keys(byType)])].sort();
  const statuses = knownStatuses();
  const descriptions = Object.fromEntries(installed.map((t) => [t.name, t.description]));
  const rows = names.map((name) => ({
    name,
    counts: byType[name] || {},
    stuck: stuck.has(name),
    className: stuck.has(name) ? "stuck-row" : null,
  }));
  const columns = [
    {
      label: "Type",
      cell: (r) => [
        h("a", { href: `#/jobs?type=${encodeURIComponent(r.name)}` }, r.name),
        r.stuck ? h("span", { class: "badge stuck-badge" }, "no live worker") : null,
        descriptions[r.name] ? h("div", { class: "muted small" }, descriptions[r.name]) : null,
      ],
    },
    ...(stats
      ? statuses.map((status) => ({ label: status, cell: (r) => String(r.counts[status] || 0) }))
      : []),
    {
      label: "Submit",
      cell: (r) =>
        h("a", { href: `#/submit?type=${encodeURIComponent(r.name)}`, "aria-label": `Submit a ${r.name} job` }, "New job"),
    },
  ];
  render(el, JSON.stringify([rows, statuses, !!stats]), () => [
    stats ? null : h("p", { class: "muted" }, "Counts by type not available: this server has no GET /stats."),
    table("Job types", columns, rows, "No job type is installed."),
  ]);
}

function renderWorkers(el, answer, running) {
  if (answer === null) {
    render(el, "none", () => h("p", { class: "muted" }, "Workers not available: this server has no GET /workers."));
    return;
  }
  const byWorker = {};
  for (const job of running) {
    if (job.worker_id) (byWorker[job.worker_id] = byWorker[job.worker_id] || []).push(job);
  }
  const rows = (answer.workers || []).map((w) => ({
    ...w,
    jobs: byWorker[w.id] || [],
    className: w.alive === false ? "dead-row" : null,
  }));
  const columns = [
    { label: "Worker", cell: (w) => [h("code", {}, w.id), w.host ? h("div", { class: "muted small" }, w.host) : null] },
    { label: "State", cell: (w) => h("span", { class: `badge ${w.alive ? "alive" : "gone"}` }, w.alive ? "alive" : "gone") },
    { label: "Types", cell: (w) => (w.types || []).join(", ") || "—" },
    { label: "Slots", cell: (w) => `${w.running ?? 0} / ${w.slots ?? "?"} busy` },
    {
      label: "Running",
      cell: (w) =>
        w.jobs.length
          ? w.jobs.slice(0, 20).map((job, i) => [i ? " " : "", h("a", { href: `#/jobs/${job.id}` }, `#${job.id} ${job.type}`)])
          : "—",
    },
    { label: "Last seen", cell: (w) => time(w.last_seen) },
  ];
  render(el, JSON.stringify(rows), () => table("Workers", columns, rows, "No worker was seen recently."));
}

const enc = encodeURIComponent;

function renderQueues(el, answer, act) {
  if (answer === null) {
    render(el, "none", () => h("p", { class: "muted" }, "Queues not available: this server has no GET /queues."));
    return;
  }
  const rows = answer.queues || [];
  const statuses = knownStatuses();
  const columns = [
    {
      label: "Queue",
      cell: (q) => [
        h("a", { href: `#/jobs?queue=${enc(q.name)}` }, h("code", {}, q.name)),
        q.paused ? h("span", { class: "badge paused-badge" }, "paused") : null,
      ],
    },
    ...statuses.map((status) => ({ label: status, cell: (q) => String((q.counts || {})[status] || 0) })),
    {
      label: "Action",
      cell: (q) => {
        const verb = q.paused ? "resume" : "pause";
        return h(
          "button",
          {
            type: "button",
            "aria-label": `${q.paused ? "Resume" : "Pause"} queue ${q.name}`,
            onclick: () => act(() => api(`/queues/${enc(q.name)}/${verb}`, { method: "POST" }), `Queue ${q.name} ${verb}d.`),
          },
          q.paused ? "Resume" : "Pause",
        );
      },
    },
  ];
  render(el, JSON.stringify([rows, statuses]), () => table("Queues", columns, rows, "No job was submitted yet."));
}

function renderSchedules(el, answer, act) {
  if (answer === null) {
    render(el, "none", () => h("p", { class: "muted" }, "Schedules not available: this server has no GET /schedules."));
    return;
  }
  const rows = answer.schedules || [];
  const columns = [
    {
      label: "Schedule",
      cell: (s) => [h("code", {}, s.name), s.paused ? h("span", { class: "badge paused-badge" }, "paused") : null],
    },
    { label: "Cron", cell: (s) => h("code", {}, s.cron) },
    { label: "Time zone", cell: (s) => s.timezone },
    { label: "Job", cell: (s) => `${(s.job && s.job.type) || "?"}${s.job && s.job.queue ? ` in ${s.job.queue}` : ""}` },
    { label: "Next fire", cell: (s) => time(s.next_fire_at) },
    { label: "Last fire", cell: (s) => time(s.last_fire_at) },
    {
      label: "Action",
      cell: (s) => {
        const verb = s.paused ? "resume" : "pause";
        const path = `/schedules/${enc(s.name)}`;
        return h(
          "div",
          { class: "row-actions" },
          h(
            "button",
            {
              type: "button",
              "aria-label": `${s.paused ? "Resume" : "Pause"} schedule ${s.name}`,
              onclick: () => act(() => api(`${path}/${verb}`, { method: "POST" }), `Schedule ${s.name} ${verb}d.`),
            },
            s.paused ? "Resume" : "Pause",
          ),
          h(
            "button",
            {
              type: "button",
              class: "danger",
              "aria-label": `Delete schedule ${s.name}`,
              onclick: async () => {
                if (await confirmAction("Delete schedule", `Delete schedule ${s.name}? It fires no more.`, "Delete")) {
                  act(() => api(path, { method: "DELETE" }), `Schedule ${s.name} deleted.`);
                }
              },
            },
            "Delete",
          ),
        );
      },
    },
  ];
  render(el, JSON.stringify(rows), () => table("Schedules", columns, rows, "No schedule."));
}

function renderLimits(el, answer, act) {
  if (answer === null) {
    render(el, "none", () => h("p", { class: "muted" }, "Limits not available: this server has no GET /limits."));
    return;
  }
  const rows = answer.limits || [];
  const columns = [
    { label: "Kind", cell: (l) => l.kind },
    { label: "Name", cell: (l) => h("code", {}, l.name) },
    { label: "At most running", cell: (l) => String(l.max_running) },
    {
      label: "Action",
      cell: (l) =>
        h(
          "button",
          {
            type: "button",
            "aria-label": `Remove the limit of ${l.kind} ${l.name}`,
            onclick: () =>
              act(() => api(`/limits/${l.kind}/${enc(l.name)}`, { method: "DELETE" }), `${l.kind} ${l.name}: no limit.`),
          },
          "Remove",
        ),
    },
  ];
  render(el, JSON.stringify(rows), () => table("Limits", columns, rows, "No concurrency limit is set."));
}

/** A labelled input in a form's grid. */
function field(id, label, attrs = {}) {
  return h("div", { class: "field" }, h("label", { for: id }, label), h("input", { id, name: id, type: "text", ...attrs }));
}

function limitForm(act) {
  const form = h(
    "form",
    { class: "inline-form", "aria-label": "Set a limit" },
    h(
      "div",
      { class: "field" },
      h("label", { for: "limit-kind" }, "Limit kind"),
      h("select", { id: "limit-kind" }, h("option", { value: "type" }, "type"), h("option", { value: "queue" }, "queue")),
    ),
    field("limit-name", "Limit name", { required: true, autocomplete: "off" }),
    field("limit-max", "At most running", { type: "number", min: "0", required: true }),
    h("button", { class: "primary" }, "Set limit"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const kind = form.querySelector("#limit-kind").value;
    const name = form.querySelector("#limit-name").value.trim();
    const max = Number(form.querySelector("#limit-max").value);
    act(
      () => api(`/limits/${kind}/${enc(name)}`, { method: "PUT", body: { max_running: max } }),
      `${kind} ${name}: at most ${max} running.`,
    );
  });
  return h("details", { class: "form-box" }, h("summary", {}, "Set a limit"), form);
}

/** The installed job types as a select's options, once they are known. */
function fillTypeChoice(select) {
  const types = ((state.jobTypes && state.jobTypes.job_types) || []).map((t) => t.name);
  if (select && !select.options.length && types.length) {
    select.replaceChildren(...types.map((t) => h("option", { value: t }, t)));
  }
}

function scheduleForm(act) {
  const form = h(
    "form",
    { class: "inline-form", "aria-label": "Create a schedule" },
    field("schedule-name", "Schedule name", { required: true, autocomplete: "off", placeholder: "nightly-report" }),
    field("schedule-cron", "Cron", { required: true, placeholder: "30 2 * * *" }),
    field("schedule-timezone", "Time zone", { placeholder: "UTC" }),
    h(
      "div",
      { class: "field" },
      h("label", { for: "schedule-type" }, "Schedule job type"),
      h("select", { id: "schedule-type", required: true }),
    ),
    field("schedule-queue", "Schedule queue", { placeholder: "default" }),
    h(
      "div",
      { class: "field wide" },
      h("label", { for: "schedule-payload" }, "Schedule payload (JSON)"),
      h("textarea", { id: "schedule-payload", rows: "2", spellcheck: "false" }, "{}"),
    ),
    h("button", { class: "primary" }, "Create schedule"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = (id) => form.querySelector(`#${id}`).value.trim();
    const name = value("schedule-name");
    act(async () => {
      const job = { type: value("schedule-type"), payload: JSON.parse(value("schedule-payload") || "{}") };
      if (value("schedule-queue")) job.queue = value("schedule-queue");
      const body = { name, cron: value("schedule-cron"), job };
      if (value("schedule-timezone")) body.timezone = value("schedule-timezone");
      await api("/schedules", { method: "POST", body });
    }, `Schedule ${name} created.`);
  });
  return h("details", { class: "form-box" }, h("summary", {}, "Create a schedule"), form);
}
