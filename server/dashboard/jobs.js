// #/jobs?status=&type=&sort=&limit=&cursor= : the job list with filters, paging and sorting.

import { api, query } from "./api.js";
import { h, render, statusBadge, table, time } from "./dom.js";
import { knownStatuses, state } from "./state.js";

const SORTS = {
  newest: { label: "Newest first", compare: (a, b) => b.id - a.id },
  oldest: { label: "Oldest first", compare: (a, b) => a.id - b.id },
  priority: { label: "Priority, highest first", compare: (a, b) => b.priority - a.priority || a.id - b.id },
};
const PAGE_SIZES = ["25", "50", "100", "500"];

// Cursors of the pages before this one, so that "Previous page" can go back.
let previousCursors = [];
let previousFilterKey = "";

function hashFor(params) {
  return `#/jobs${query(params)}`;
}

export function mountJobs(root, params) {
  const filters = {
    status: params.get("status") || "",
    type: params.get("type") || "",
    sort: SORTS[params.get("sort")] ? params.get("sort") : "newest",
    limit: PAGE_SIZES.includes(params.get("limit")) ? params.get("limit") : "50",
  };
  const cursor = params.get("cursor") || "";
  const filterKey = JSON.stringify(filters);
  if (filterKey !== previousFilterKey || !cursor) previousCursors = [];
  previousFilterKey = filterKey;

  const form = h("form", { class: "filters", "aria-label": "Filter jobs" });
  const list = h("div");
  const pager = h("nav", { class: "pager", "aria-label": "Pages" });
  root.append(h("h1", {}, "Jobs"), form, list, pager);

  const go = (changes) => {
    location.hash = hashFor({ ...filters, cursor: "", ...changes });
  };

  function renderForm() {
    const statuses = knownStatuses();
    const types = ((state.jobTypes && state.jobTypes.job_types) || []).map((t) => t.name);
    const select = (id, label, options, value, key) =>
      h(
        "div",
        { class: "field" },
        h("label", { for: id }, label),
        h(
          "select",
          { id, name: key, onchange: (e) => go({ [key]: e.target.value }) },
          options.map(([v, text]) => h("option", { value: v, selected: v === value }, text)),
        ),
      );
    render(form, JSON.stringify([statuses, types, filters]), () => [
      select("filter-status", "Status", [["", "any"], ...statuses.map((s) => [s, s])], filters.status, "status"),
      select("filter-type", "Type", [["", "any"], ...types.map((t) => [t, t])], filters.type, "type"),
      select("filter-sort", "Sort", Object.entries(SORTS).map(([k, s]) => [k, s.label]), filters.sort, "sort"),
      select("filter-limit", "Per page", PAGE_SIZES.map((n) => [n, n]), filters.limit, "limit"),
    ]);
  }

  async function refresh() {
    renderForm();
    const answer = await api(
      `/jobs${query({ status: filters.status, type: filters.type, limit: filters.limit, cursor })}`,
    );
    const jobs = [...(answer.jobs || [])].sort(SORTS[filters.sort].compare);
    const columns = [
      { label: "ID", cell: (j) => h("a", { href: `#/jobs/${j.id}`, "aria-label": `Job ${j.id}` }, `#${j.id}`) },
      { label: "Type", cell: (j) => j.type },
      { label: "Status", cell: (j) => statusBadge(j.status) },
      { label: "Priority", cell: (j) => String(j.priority ?? "—") },
      { label: "Attempts", cell: (j) => `${j.attempts ?? "?"} / ${j.max_attempts ?? "?"}` },
      { label: "Created", cell: (j) => time(j.created_at) },
      { label: "Worker", cell: (j) => (j.worker_id ? h("code", {}, j.worker_id) : "—") },
    ];
    const note = filters.sort === "newest" ? null : "Sorted within this page; pages follow submission order.";
    render(list, JSON.stringify([jobs, filters]), () => [
      note ? h("p", { class: "muted small" }, note) : null,
      table("Jobs", columns, jobs, "No job matches these filters."),
    ]);
    const next = answer.next_cursor;
    render(pager, JSON.stringify([cursor, next, previousCursors]), () => [
      cursor
        ? h(
            "a",
            {
              id: "page-previous",
              href: hashFor({ ...filters, cursor: previousCursors[previousCursors.length - 1] || "" }),
              onclick: () => previousCursors.pop(),
            },
            "← Previous page",
          )
        : null,
      cursor ? h("a", { id: "page-first", href: hashFor(filters) }, "First page") : null,
      next !== null && next !== undefined
        ? h(
            "a",
            { id: "page-next", href: hashFor({ ...filters, cursor: next }), onclick: () => previousCursors.push(cursor) },
            "Next page →",
          )
        : null,
    ]);
  }
  return { root, refresh };
}
