// scanq dashboard, the throughput chart: scans finished per step (BUCKET_S) over the last WINDOW_S, stacked by
// status, with its axes and the last full step's rate. Only drawing: dashboard.js reads GET /stats/throughput
// (every step of the window, oldest first) into a Map of steps and calls render with it.
"use strict";

(() => {
  const dashboard = (window.scanqDashboard = window.scanqDashboard || {});
  const { $, el } = dashboard;

  const BUCKET_S = 10;
  const WINDOW_S = 300;
  const FINISHED = ["Complete", "Error", "Cancelled"];
  const X_TICK_S = 60;

  function formatClock(ms, withSeconds = false) {
    const d = new Date(ms);
    const pad = (n) => String(n).padStart(2, "0");
    return `${pad(d.getHours())}:${pad(d.getMinutes())}${withSeconds ? `:${pad(d.getSeconds())}` : ""}`;
  }

  // 1, 2 or 5 times a power of ten: the top of the y axis.
  function niceCeiling(value) {
    if (value <= 1) return 1;
    const power = 10 ** Math.floor(Math.log10(value));
    return [1, 2, 5, 10].map((m) => m * power).find((top) => top >= value);
  }

  // An empty chart (no steps read yet, or they belonged to another tenant or token).
  function clearThroughput() {
    for (const id of ["throughput", "throughput-y", "throughput-x"]) $(id).replaceChildren();
    $("rate").textContent = "–";
  }

  // buckets: step start (ms) -> {counts: {Complete, Error, Cancelled}, total}; until: the end (ms) of the last
  // step the server answered for, null before the first answer. A step missing from buckets finished nothing.
  function renderThroughput(buckets, until) {
    if (until === null) return;
    const count = WINDOW_S / BUCKET_S;
    const first = until - WINDOW_S * 1000;
    const empty = { counts: { Complete: 0, Error: 0, Cancelled: 0 }, total: 0 };
    const steps = Array.from({ length: count }, (_, i) => {
      const start = first + i * BUCKET_S * 1000;
      return { start, ...(buckets.get(start) || empty) };
    });
    const top = niceCeiling(Math.max(...steps.map((step) => step.total)));
    $("throughput").replaceChildren(
      ...steps.map((step) => {
        const parts = FINISHED.filter((s) => step.counts[s]).map((s) => `${step.counts[s].toLocaleString()} ${s}`);
        const when = `${formatClock(step.start, true)}–${formatClock(step.start + BUCKET_S * 1000, true)}`;
        return el(
          "div",
          {
            class: "step",
            "data-start": new Date(step.start).toISOString(),
            "data-total": String(step.total),
            "style.height": `${(100 * step.total) / top}%`,
            title: `${when}: ${parts.length ? parts.join(", ") : "none"} finished`,
          },
          ...FINISHED.filter((s) => step.counts[s]).map((s) =>
            el("div", {
              "data-status": s,
              "data-count": String(step.counts[s]),
              "style.height": `${(100 * step.counts[s]) / step.total}%`,
            }),
          ),
        );
      }),
    );
    $("throughput-y").replaceChildren(
      ...[top, top / 2, 0].map((value) => el("span", { text: Number.isInteger(value) ? value.toLocaleString() : value.toFixed(1) })),
    );
    const ticks = [];
    for (let t = Math.ceil(first / (X_TICK_S * 1000)) * X_TICK_S * 1000; t < until; t += X_TICK_S * 1000) {
      ticks.push(el("span", { text: formatClock(t), "style.left": `${(100 * (t - first)) / (WINDOW_S * 1000)}%` }));
    }
    $("throughput-x").replaceChildren(...ticks);
    const last = steps[steps.length - 2]; // the last full step (the final one is still filling)
    $("rate").textContent = `${(last.total / BUCKET_S).toFixed(1)} scans/s`;
  }

  dashboard.throughputChart = { BUCKET_S, WINDOW_S, clear: clearThroughput, render: renderThroughput };
})();
