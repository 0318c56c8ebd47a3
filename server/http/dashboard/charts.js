// Charts over time, drawn as inline SVG from GET /stats/history (no library, no CDN).

import { optional, query } from "./api.js";
import { h, render, s, seconds } from "./dom.js";

const WIDTH = 400;
const HEIGHT = 160;
const PAD = { left: 44, right: 8, top: 10, bottom: 22 };
const WINDOWS = { hour: "Last hour", day: "Last day" };
// The rollup moves every 10 s: the charts ask every 10 s at most (the page polls every 2 s).
const REFRESH_MS = 10000;

/** One line chart: several series over the same points; each drawn value > 0 gets a dot. */
function lineChart(title, points, series, format) {
  const values = series.flatMap((one) => points.map((p) => p[one.key] ?? 0));
  const top = Math.max(1, ...values);
  const x = (i) => PAD.left + (i * (WIDTH - PAD.left - PAD.right)) / Math.max(1, points.length - 1);
  const y = (v) => HEIGHT - PAD.bottom - (v / top) * (HEIGHT - PAD.top - PAD.bottom);
  const lines = series.map((one) => {
    const coords = points.map((p, i) => `${x(i).toFixed(1)},${y(p[one.key] ?? 0).toFixed(1)}`);
    const dots = points
      .map((p, i) => [p[one.key] ?? 0, i])
      .filter(([v]) => v > 0)
      .map(([v, i]) =>
        s("circle", { class: `dot ${one.cls}`, cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: 2.5 }, s("title", {}, `${points[i].time}: ${format(v)}`)),
      );
    return s("g", { class: `series ${one.cls}`, "data-series": one.key, "data-points": dots.length }, s("polyline", { points: coords.join(" ") }), dots);
  });
  const first = points[0] ? points[0].time.slice(11, 16) : "";
  const last = points.length ? points[points.length - 1].time.slice(11, 16) : "";
  const totals = series.map((one) => `${one.label}: ${format(Math.max(0, ...points.map((p) => p[one.key] ?? 0)))} at most`);
  return h(
    "figure",
    { class: "chart" },
    h("figcaption", {}, h("strong", {}, title), " ", series.map((one) => h("span", { class: `legend ${one.cls}` }, one.label))),
    s(
      "svg",
      { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-label": `${title}. ${totals.join("; ")}` },
      s("line", { class: "axis", x1: PAD.left, y1: HEIGHT - PAD.bottom, x2: WIDTH - PAD.right, y2: HEIGHT - PAD.bottom }),
      s("line", { class: "axis", x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: HEIGHT - PAD.bottom }),
      s("text", { class: "tick", x: PAD.left - 4, y: PAD.top + 8, "text-anchor": "end" }, format(top)),
      s("text", { class: "tick", x: PAD.left - 4, y: HEIGHT - PAD.bottom, "text-anchor": "end" }, "0"),
      s("text", { class: "tick", x: PAD.left, y: HEIGHT - 6 }, first),
      s("text", { class: "tick", x: WIDTH - PAD.right, y: HEIGHT - 6, "text-anchor": "end" }, last),
      lines,
    ),
  );
}

const whole = (v) => String(Math.round(v));

export function mountCharts(root) {
  const controls = h("form", { class: "filters chart-filters", "aria-label": "Chart filters" });
  const area = h("div", { class: "charts" });
  root.append(controls, area);
  const choice = { window: "hour", type: "", queue: "" };
  let known = { types: [], queues: [] };
  let asked = { key: "", at: 0 };

  function renderControls() {
    const select = (id, label, key, options) =>
      h(
        "div",
        { class: "field" },
        h("label", { for: id }, label),
        h(
          "select",
          {
            id,
            onchange: (e) => {
              choice[key] = e.target.value;
              refresh();
            },
          },
          options.map(([value, text]) => h("option", { value, selected: value === choice[key] }, text)),
        ),
      );
    render(controls, JSON.stringify([choice, known]), () => [
      select("chart-window", "Period", "window", Object.entries(WINDOWS)),
      select("chart-type", "Chart type", "type", [["", "every type"], ...known.types.map((t) => [t, t])]),
      select("chart-queue", "Chart queue", "queue", [["", "every queue"], ...known.queues.map((q) => [q, q])]),
    ]);
  }

  async function refresh() {
    renderControls();
    const path = `/stats/history${query(choice)}`;
    if (asked.key === path && Date.now() - asked.at < REFRESH_MS) return;
    asked = { key: path, at: Date.now() };
    const answer = await optional(path);
    if (answer === null) {
      render(area, "none", () => h("p", { class: "muted" }, "Charts not available: this server has no GET /stats/history."));
      return;
    }
    known = { types: answer.types || [], queues: answer.queues || [] };
    renderControls();
    const points = answer.points || [];
    const per = answer.step === 60 ? "minute" : `${Math.round(answer.step / 60)} minutes`;
    render(area, JSON.stringify([points, choice]), () => [
      lineChart(`Jobs finished per ${per}`, points, [
        { key: "succeeded", label: "succeeded", cls: "ok" },
        { key: "failed", label: "failed", cls: "bad" },
      ], whole),
      lineChart("Queue depth", points, [{ key: "depth", label: "ready jobs", cls: "depth" }], whole),
      lineChart("Oldest ready job", points, [{ key: "oldest_age", label: "waited", cls: "age" }], seconds),
    ]);
  }
  return { refresh };
}
