// The dashboard: a hash router (#/, #/jobs, #/jobs/12, #/submit), live counts and a 2 s poll.

import { api, getToken, onUnauthorized, optional, setToken } from "./api.js";
import { ago, errorBox, h, render } from "./dom.js";
import { mountJob } from "./job.js";
import { mountJobs } from "./jobs.js";
import { mountOverview } from "./overview.js";
import { mountSubmit } from "./submit.js";
import { knownStatuses, state } from "./state.js";

const POLL_MS = 2000;

let current = null; // { refresh(), leave?() } of the view on screen
let timer = null;
let ticking = false;
let again = false;
let pendingFocus = ""; // the id focused before a view change, focused again once drawn

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, search = ""] = raw.split("?");
  return { parts: path.split("/").filter(Boolean), params: new URLSearchParams(search) };
}

function route() {
  const { parts, params } = parseHash();
  // A filter or pager change redraws the view: keep keyboard focus on the same control.
  const active = document.activeElement;
  pendingFocus = active && active.id && document.getElementById("view").contains(active) ? active.id : "";
  if (current && current.leave) current.leave();
  // Each view draws in its own element: a late answer for the previous view lands nowhere.
  const view = h("div", { class: "view-root" });
  document.getElementById("view").replaceChildren(view);
  let name = "overview";
  if (parts[0] === "jobs" && /^\d+$/.test(parts[1] || "")) {
    name = "job";
    current = mountJob(view, Number(parts[1]));
  } else if (parts[0] === "jobs") {
    name = "jobs";
    current = mountJobs(view, params);
  } else if (parts[0] === "submit") {
    name = "submit";
    current = mountSubmit(view, params);
  } else {
    current = mountOverview(view);
  }
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.view === name.replace(/^job$/, "jobs")) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  tick();
}

async function loadShared() {
  const [stats, jobTypes, health] = await Promise.allSettled([
    optional("/stats"),
    state.jobTypes ? Promise.resolve(state.jobTypes) : api("/job-types"),
    api("/health"),
  ]);
  state.stats = stats.status === "fulfilled" ? stats.value : { error: stats.reason };
  if (jobTypes.status === "fulfilled") state.jobTypes = jobTypes.value;
  if (health.status === "fulfilled") {
    state.health = health.value;
  } else {
    // A 503 still has a body ({status: "unavailable", error}); no answer at all has none.
    const body = health.reason && health.reason.body;
    state.health = { status: (body && body.status) || "unreachable", error: health.reason };
  }
  // Every view needs the job types: without them, say why instead of drawing half a page.
  return state.jobTypes ? null : jobTypes.reason;
}

function renderHealth() {
  const el = document.getElementById("health");
  const health = state.health || {};
  const ok = health.status === "ok";
  const warnings = Array.isArray(health.warnings) ? health.warnings : [];
  const text = ok ? ["ok", health.backend].filter(Boolean).join(" · ") : health.status || "unknown";
  el.className = `health ${ok && !warnings.length ? "ok" : "bad"}`;
  el.textContent = warnings.length ? `${text} · ${warnings.length} warning(s)` : text;
  el.title = warnings.map((w) => (typeof w === "string" ? w : JSON.stringify(w))).join("\n");
  // A plugin that failed to load means its job types are missing: say so on every page.
  const failures = Object.entries(health.plugin_failures || {});
  render(document.getElementById("problems"), JSON.stringify(failures), () =>
    failures.length
      ? h(
          "div",
          { class: "stuck", role: "alert" },
          "Plugins that failed to load on the server: ",
          failures.map(([name, error], i) => [i ? "; " : "", h("code", {}, name), ": ", String(error)]),
        )
      : [],
  );
}

function renderCounts() {
  const el = document.getElementById("counts");
  const stats = state.stats;
  if (stats === null) {
    render(el, "none", () =>
      h("p", { class: "muted" }, "Live counts not available: this server has no GET /stats."),
    );
    return;
  }
  if (!stats || stats.error) {
    render(el, `error:${stats && stats.error && stats.error.message}`, () =>
      h("p", { class: "muted" }, "Live counts not available: ", (stats && stats.error && stats.error.message) || "loading"),
    );
    return;
  }
  const byStatus = stats.by_status || {};
  const stuck = stats.stuck_types || [];
  render(el, JSON.stringify(stats), () => [
    h(
      "ul",
      { class: "count-list", "aria-label": "Jobs by status" },
      knownStatuses().map((status) =>
        h(
          "li",
          {},
          h(
            "a",
            { class: `count status-${status}`, href: `#/jobs?status=${encodeURIComponent(status)}` },
            h("span", { class: "count-n", "data-status": status }, String(byStatus[status] || 0)),
            h("span", { class: "count-label" }, status),
          ),
        ),
      ),
    ),
    h(
      "p",
      { class: "queue-facts" },
      "Oldest ready job: ",
      h("strong", {}, stats.oldest_ready_age == null ? "none" : `${Math.round(stats.oldest_ready_age)} s`),
      " · Live workers: ",
      h("strong", {}, String(stats.workers_alive ?? "—")),
    ),
    stuck.length
      ? h(
          "p",
          { class: "stuck", role: "alert" },
          "No live worker runs these types, their jobs wait: ",
          stuck.map((t, i) => [i ? ", " : "", h("a", { href: `#/jobs?type=${encodeURIComponent(t)}&status=queued` }, t)]),
        )
      : null,
  ]);
}

async function tick() {
  if (ticking) {
    again = true;
    return;
  }
  ticking = true;
  clearTimeout(timer);
  const view = current;
  try {
    const problem = await loadShared();
    renderHealth();
    renderCounts();
    if (problem) throw problem;
    if (view) await view.refresh();
    if (pendingFocus && view === current) {
      const target = document.getElementById(pendingFocus);
      if (target) target.focus();
      pendingFocus = "";
    }
    render(document.getElementById("notice"), "", () => []);
  } catch (err) {
    // The view keeps its last good state; the problem shows above it until the next success.
    if (view === current) {
      render(document.getElementById("notice"), `error:${err.status}:${err.message}`, () => errorBox(err));
    }
  } finally {
    for (const el of document.querySelectorAll("time[datetime]")) {
      el.textContent = ago(el.getAttribute("datetime"));
    }
    ticking = false;
    if (again) {
      again = false;
      tick();
    } else {
      timer = setTimeout(tick, document.hidden ? POLL_MS * 5 : POLL_MS);
    }
  }
}

// -- the token dialog ---------------------------------------------------------------

function setupToken() {
  const dialog = document.getElementById("token-dialog");
  const input = document.getElementById("token-input");
  const reason = document.getElementById("token-reason");
  const button = document.getElementById("token-button");
  let dismissed = false; // after "Cancel", a 401 no longer reopens the dialog by itself
  const show = (why) => {
    reason.textContent = why || "";
    input.value = getToken();
    if (!dialog.open) dialog.showModal();
    input.focus();
  };
  const label = () => {
    button.textContent = getToken() ? "Token ✓" : "Token";
  };
  button.addEventListener("click", () => show(""));
  dialog.addEventListener("close", () => {
    const choice = dialog.returnValue;
    dialog.returnValue = "";
    if (choice === "save") setToken(input.value.trim());
    if (choice === "forget") setToken("");
    label();
    dismissed = choice !== "save" && choice !== "forget";
    if (!dismissed) {
      state.jobTypes = null;
      route();
    }
  });
  onUnauthorized((err) => {
    if (!dismissed) show(`The server answered 401 Unauthorized: ${err.message}`);
  });
  label();
}

setupToken();
window.addEventListener("hashchange", route);
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) tick();
});
route();
