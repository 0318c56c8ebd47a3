// #/jobs?status=&type=&queue=&key=&since=&sort=&order=&limit=&cursor= : the job list, filtered,
// sorted and paged by the server; search by id or idempotency key; bulk retry and cancel.

import { api, optional, query } from "./api.js";
import { confirmAction, errorBox, h, render, statusBadge, table, time } from "./dom.js";
import { knownStatuses, state } from "./state.js";

// (The API's sort=created is submission order too: ids grow as jobs are created.)
const SORTS = { id: "Submission", priority: "Priority", finished: "Finished (finished jobs)" };
const ORDERS = { desc: "Descending", asc: "Ascending" };
const PAGE_SIZES = ["25", "50", "100", "500"];
// "Created within": the created_after of the filter, that long before now.
const SINCE = { "": "any time", "15m": "last 15 min", "1h": "last hour", "24h": "last day", "7d": "last 7 days" };
const SINCE_SECONDS = { "15m": 900, "1h": 3600, "24h": 86400, "7d": 604800 };
const RETRYABLE = ["failed", "cancelled"];
const CANCELLABLE = ["waiting", "scheduled", "queued", "running"];

// Cursors of the pages before this one, so that "Previous page" can go back.
let previousCursors = [];
let previousFilterKey = "";

function hashFor(params) {
  return `#/jobs${query(params)}`;
}

/** The filter the server applies, to the list and to the bulk actions alike. */
function serverFilter(filters) {
  const filter = {};
  for (const name of ["status", "type", "queue", "key"]) if (filters[name]) filter[name] = filters[name];
  if (SINCE_SECONDS[filters.since]) {
    filter.created_after = new Date(Date.now() - SINCE_SECONDS[filters.since] * 1000).toISOString();
  }
  return filter;
}

export function mountJobs(root, params) {
  const pick = (name, allowed, fallback) => (allowed.includes(params.get(name)) ? params.get(name) : fallback);
  const filters = {
    status: params.get("status") || "",
    type: params.get("type") || "",
    queue: params.get("queue") || "",
    key: params.get("key") || "",
    since: pick("since", Object.keys(SINCE), ""),
    sort: pick("sort", Object.keys(SORTS), "id"),
    order: pick("order", Object.keys(ORDERS), "desc"),
    limit: pick("limit", PAGE_SIZES, "50"),
  };
  const cursor = params.get("cursor") || "";
  const filterKey = JSON.stringify(filters);
  if (filterKey !== previousFilterKey || !cursor) previousCursors = [];
  previousFilterKey = filterKey;

  const search = searchForm();
  const form = h("form", { class: "filters", "aria-label": "Filter jobs" });
  const bulk = h("div", { class: "actions bulk" });
  const message = h("div", { "aria-live": "polite" });
  const list = h("div");
  const pager = h("nav", { class: "pager", "aria-label": "Pages" });
  root.append(h("h1", {}, "Jobs"), search, form, bulk, message, list, pager);
  let queues = [];

  const go = (changes) => {
    location.hash = hashFor({ ...filters, cursor: "", ...changes });
  };

  function searchForm() {
    const input = h("input", {
      id: "job-search",
      type: "search",
      placeholder: "job id or idempotency key",
      autocomplete: "off",
      spellcheck: "false",
    });
    const el = h(
      "form",
      { class: "search", role: "search", "aria-label": "Find a job" },
      h("label", { for: "job-search" }, "Search"),
      input,
      h("button", {}, "Find"),
    );
    el.addEventListener("submit", async (event) => {
      event.preventDefault();
      const text = input.value.trim();
      if (!text) return;
      if (/^\d+$/.test(text)) {
        try {
          await api(`/jobs/${text}`);
          location.hash = `#/jobs/${text}`;
          return;
        } catch (err) {
          if (err.status !== 404) {
            message.replaceChildren(errorBox(err));
            return;
          }
        }
      }
      // Not a job's id: an idempotency key (a number may be one too).
      location.hash = hashFor({ key: text });
    });
    return el;
  }

  function renderForm() {
    const statuses = knownStatuses();
    const types = ((state.jobTypes && state.jobTypes.job_types) || []).map((t) => t.name);
    const queueNames = [...new Set([...queues, ...(filters.queue ? [filters.queue] : [])])].sort();
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
    render(form, JSON.stringify([statuses, types, queueNames, filters]), () => [
      select("filter-status", "Status", [["", "any"], ...statuses.map((s) => [s, s])], filters.status, "status"),
      select("filter-type", "Type", [["", "any"], ...types.map((t) => [t, t])], filters.type, "type"),
      select("filter-queue", "Queue", [["", "any"], ...queueNames.map((q) => [q, q])], filters.queue, "queue"),
      select("filter-since", "Created", Object.entries(SINCE), filters.since, "since"),
      select("filter-sort", "Sort", Object.entries(SORTS), filters.sort, "sort"),
      select("filter-order", "Order", Object.entries(ORDERS), filters.order, "order"),
      select("filter-limit", "Per page", PAGE_SIZES.map((n) => [n, n]), filters.limit, "limit"),
      filters.key
        ? h("p", { class: "key-filter" }, "Key ", h("code", {}, filters.key), " ", h("a", { href: hashFor({ ...filters, key: "" }) }, "clear"))
        : null,
    ]);
  }

  /** Bulk retry or cancel of every job the filter matches, after saying how many. */
  async function bulkAction(action) {
    const filter = serverFilter(filters); // the list's own filter: what it shows is what is touched
    try {
      const counted = await api(`/jobs/${action}`, { method: "POST", body: { ...filter, dry_run: true } });
      const n = counted.matched;
      if (!n) {
        message.replaceChildren(h("p", { class: "ok-box" }, `No job matching these filters can be ${action === "retry" ? "retried" : "cancelled"}.`));
        return;
      }
      const verb = action === "retry" ? "Retry" : "Cancel";
      const what = describe(filter);
      const sure = await confirmAction(
        `${verb} ${n} job(s)`,
        `This will ${action} ${n} job(s)${what ? ` (${what})` : ""}.`,
        `${verb} ${n} job(s)`,
      );
      if (!sure) return;
      const done = await api(`/jobs/${action}`, { method: "POST", body: filter });
      const text = action === "retry" ? `${done.changed} job(s) queued again.` : `${done.changed} job(s) cancelled.`;
      message.replaceChildren(h("p", { class: "ok-box" }, text));
    } catch (err) {
      message.replaceChildren(errorBox(err));
    }
    await refresh();
  }

  function renderBulk() {
    const retryOk = !filters.status || RETRYABLE.includes(filters.status);
    const cancelOk = !filters.status || CANCELLABLE.includes(filters.status);
    render(bulk, JSON.stringify([retryOk, cancelOk]), () => [
      h("button", { type: "button", disabled: !retryOk, onclick: () => bulkAction("retry") }, "Retry matching…"),
      h("button", { type: "button", class: "danger", disabled: !cancelOk, onclick: () => bulkAction("cancel") }, "Cancel matching…"),
    ]);
  }

  async function refresh() {
    const [answer, queueList] = await Promise.all([
      api(`/jobs${query({ ...serverFilter(filters), sort: filters.sort, order: filters.order, limit: filters.limit, cursor })}`),
      optional("/queues"),
    ]);
    queues = ((queueList && queueList.queues) || []).map((q) => q.name);
    renderForm();
    renderBulk();
    const jobs = answer.jobs || [];
    const columns = [
      { label: "ID", cell: (j) => h("a", { href: `#/jobs/${j.id}`, "aria-label": `Job ${j.id}` }, `#${j.id}`) },
      { label: "Type", cell: (j) => j.type },
      { label: "Status", cell: (j) => statusBadge(j.status) },
      { label: "Queue", cell: (j) => j.queue || "default" },
      { label: "Priority", cell: (j) => String(j.priority ?? "—") },
      { label: "Attempts", cell: (j) => `${j.attempts ?? "?"} / ${j.max_attempts ?? "?"}` },
      { label: filters.sort === "finished" ? "Finished" : "Created", cell: (j) => time(filters.sort === "finished" ? j.finished_at : j.created_at) },
      { label: "Worker", cell: (j) => (j.worker_id ? h("code", {}, j.worker_id) : "—") },
    ];
    render(list, JSON.stringify([jobs, filters]), () => h("div", { class: "job-list" }, table("Jobs", columns, jobs, "No job matches these filters.")));
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

function describe(filter) {
  const parts = [];
  if (filter.status) parts.push(`status ${filter.status}`);
  if (filter.type) parts.push(`type ${filter.type}`);
  if (filter.queue) parts.push(`queue ${filter.queue}`);
  if (filter.key) parts.push(`idempotency key ${filter.key}`);
  if (filter.created_after) parts.push(`created since ${filter.created_after.slice(0, 16).replace("T", " ")} UTC`);
  return parts.length ? parts.join(", ") : "every job it applies to";
}
