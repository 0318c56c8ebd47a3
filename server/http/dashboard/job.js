// #/jobs/12 : one job with its payload, result, error, attempts and logs (the running
// attempt's live, as its worker's heartbeats bring it); its dependants; cancel and retry.

import { api, optional } from "./api.js";
import { between, confirmAction, errorBox, h, pretty, render, statusBadge, table, time } from "./dom.js";

const CANCELLABLE = new Set(["waiting", "scheduled", "queued", "running"]);
const RETRYABLE = new Set(["failed", "cancelled"]);

export function mountJob(root, id) {
  const heading = h("h1", {}, `Job #${id}`);
  const actions = h("div", { class: "actions" });
  const message = h("div", { "aria-live": "polite" });
  const details = h("div");
  const live = h("section", { "aria-labelledby": "live-title", class: "live" });
  const attempts = h("section", { "aria-labelledby": "attempts-title" });
  const dependants = h("section", { "aria-labelledby": "dependants-title" });
  root.append(h("p", {}, h("a", { href: "#/jobs" }, "← All jobs")), heading, actions, message, details, live, attempts, dependants);
  let job = null;

  async function act(verb) {
    if (verb === "cancel") {
      const running = job && job.status === "running";
      const sure = await confirmAction(
        `Cancel job #${id}`,
        running
          ? `Job #${id} is running: its worker will be asked to stop it.`
          : `Job #${id} will not run (${job ? job.status : "?"} now).`,
        "Cancel job",
      );
      if (!sure) return;
    }
    try {
      job = await api(`/jobs/${id}/${verb}`, { method: "POST" });
      message.replaceChildren(h("p", { class: "ok-box" }, verb === "cancel" ? "Cancel requested." : "Queued again."));
    } catch (err) {
      message.replaceChildren(errorBox(err));
    }
    await refresh();
  }

  function renderActions() {
    const status = job.status;
    const cancellable = CANCELLABLE.has(status) && !job.cancel_requested;
    render(actions, JSON.stringify([status, cancellable]), () => [
      h(
        "button",
        { type: "button", class: "danger", disabled: !cancellable, onclick: () => act("cancel"), "aria-label": `Cancel job ${id}` },
        "Cancel",
      ),
      h(
        "button",
        { type: "button", disabled: !RETRYABLE.has(status), onclick: () => act("retry"), "aria-label": `Retry job ${id}` },
        "Retry",
      ),
    ]);
  }

  function renderDetails() {
    const facts = [
      ["Status", statusBadge(job.status), job.cancel_requested ? " (cancel requested)" : null],
      ["Type", h("a", { href: `#/jobs?type=${encodeURIComponent(job.type)}` }, job.type)],
      ["Queue", job.queue || "default"],
      [
        "Depends on",
        (job.depends_on || []).length
          ? (job.depends_on || []).map((dep, i) => [i ? ", " : "", h("a", { href: `#/jobs/${dep}` }, `#${dep}`)])
          : "—",
        (job.depends_on || []).length && job.on_dependency_failure === "run" ? " (runs even if one fails)" : null,
      ],
      ["Priority", String(job.priority)],
      ["Attempts", `${job.attempts} of ${job.max_attempts}`],
      ["Timeout", job.timeout == null ? "none" : `${job.timeout} s`],
      ["Created", time(job.created_at)],
      ["Run at", time(job.run_at)],
      ["Started", time(job.started_at)],
      ["Finished", time(job.finished_at)],
      ["Worker", job.worker_id ? h("code", {}, job.worker_id) : "—"],
      ["Idempotency key", job.idempotency_key ? h("code", {}, job.idempotency_key) : "—"],
    ];
    const block = (title, value, cls) =>
      h(
        "section",
        { "aria-label": title },
        h("h2", {}, title),
        value === null || value === undefined ? h("p", { class: "muted" }, "none") : h("pre", { class: cls }, typeof value === "string" ? value : pretty(value)),
      );
    render(details, JSON.stringify(job), () => [
      h("dl", { class: "facts" }, facts.map(([term, ...value]) => [h("dt", {}, term), h("dd", {}, ...value)])),
      job.status === "running"
        ? h("p", { class: "running-note" }, `Attempt ${job.attempts} is running on `, h("code", {}, job.worker_id || "?"), " since ", time(job.started_at), ".")
        : null,
      progressBlock(job),
      block("Payload", job.payload, "payload"),
      block("Result", job.result, "result"),
      job.error ? block("Error", job.error, "error") : null,
    ]);
  }

  function renderAttempts(list) {
    render(attempts, JSON.stringify(list), () => [
      h("h2", { id: "attempts-title" }, "Attempts"),
      list.length
        ? h(
            "ol",
            { class: "attempts" },
            list.map((a) =>
              h(
                "li",
                { class: "attempt" },
                h(
                  "p",
                  { class: "attempt-head" },
                  h("strong", {}, `Attempt ${a.attempt}`),
                  " ",
                  statusBadge(a.outcome),
                  " on ",
                  h("code", {}, a.worker_id || "?"),
                  " · started ",
                  time(a.started_at),
                  " · took ",
                  between(a.started_at, a.finished_at),
                ),
                a.error ? h("pre", { class: "error" }, a.error) : null,
                a.traceback
                  ? h("details", { open: true, class: "traceback" }, h("summary", {}, "Traceback"), h("pre", { class: "traceback" }, a.traceback))
                  : null,
                "log" in a
                  ? a.log
                    ? h("details", { open: true }, h("summary", {}, "Log"), h("pre", { class: "log" }, a.log))
                    : h("p", { class: "muted small" }, "No log lines.")
                  : h("p", { class: "muted small" }, "Logs not available on this server."),
              ),
            ),
          )
        : h("p", { class: "muted" }, "No finished attempt yet."),
    ]);
  }

  // What the running (or last) attempt reported with current_job().progress().
  function progressBlock(job) {
    const progress = job.progress;
    if (!progress || typeof progress.fraction !== "number") return null;
    const fraction = job.status === "succeeded" ? 1 : progress.fraction;
    const percent = Math.round(fraction * 100);
    return h(
      "section",
      { "aria-label": "Progress", class: "progress" },
      h("h2", {}, "Progress"),
      h("progress", { max: "1", value: String(fraction), "aria-label": `${percent}% done` }),
      h("span", { class: "progress-text" }, ` ${percent}%`, progress.message ? ` · ${progress.message}` : ""),
    );
  }

  // The running attempt's log so far, kept scrolled to its end unless the reader scrolled up.
  function renderLive(running) {
    if (!running) {
      render(live, "none", () => []);
      return;
    }
    const pre = live.querySelector("pre.live-log");
    const atEnd = !pre || pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    render(live, JSON.stringify(running), () => [
      h("h2", { id: "live-title" }, `Attempt ${running.attempt} log (live)`),
      running.log
        ? h("pre", { class: "log live-log", tabindex: "0", "aria-label": "Live log" }, running.log)
        : h("p", { class: "muted small" }, "No log line yet (the worker sends them with its heartbeats)."),
    ]);
    const shown = live.querySelector("pre.live-log");
    if (shown && atEnd) shown.scrollTop = shown.scrollHeight;
  }

  function renderDependants(answer) {
    const rows = (answer && answer.jobs) || [];
    const columns = [
      { label: "ID", cell: (j) => h("a", { href: `#/jobs/${j.id}`, "aria-label": `Dependant job ${j.id}` }, `#${j.id}`) },
      { label: "Type", cell: (j) => j.type },
      { label: "Status", cell: (j) => statusBadge(j.status) },
    ];
    render(dependants, JSON.stringify([rows, answer === null, answer && answer.next_cursor]), () =>
      answer === null
        ? []
        : [
            h("h2", { id: "dependants-title" }, "Jobs that depend on it"),
            table("Dependants", columns, rows, "No job depends on it."),
            answer.next_cursor !== null && answer.next_cursor !== undefined ? h("p", { class: "muted small" }, `The first ${rows.length} shown.`) : null,
          ],
    );
  }

  async function refresh() {
    const [fresh, history, dependantList] = await Promise.all([
      api(`/jobs/${id}`),
      api(`/jobs/${id}/attempts`),
      optional(`/jobs/${id}/dependants?limit=100`),
    ]);
    job = fresh;
    heading.textContent = `Job #${id} · ${job.type}`;
    document.title = `Job #${id} · taskframe`;
    renderActions();
    renderDetails();
    renderLive(history.running);
    renderAttempts(history.attempts || []);
    renderDependants(dependantList);
  }

  return { root, refresh, leave: () => (document.title = "taskframe") };
}
