// #/ : jobs by type (types without a live worker highlighted) and the workers with what they run.

import { api, optional } from "./api.js";
import { knownStatuses, state } from "./state.js";
import { h, render, table, time } from "./dom.js";

export function mountOverview(root) {
  const types = h("div");
  const workers = h("div");
  root.append(
    h("h1", {}, "Overview"),
    h("section", { "aria-labelledby": "types-title" }, h("h2", { id: "types-title" }, "Job types"), types),
    h("section", { "aria-labelledby": "workers-title" }, h("h2", { id: "workers-title" }, "Workers"), workers),
  );

  async function refresh() {
    renderTypes(types);
    const answer = await optional("/workers");
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
