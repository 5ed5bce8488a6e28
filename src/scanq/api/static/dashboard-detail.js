// scanq dashboard, one scan's detail: its fields, its attempts and its result (findings first by severity).
// Only rendering: dashboard.js fetches GET /scans/{id} and calls renderDetail with the answer.
"use strict";

(() => {
  const dashboard = (window.scanqDashboard = window.scanqDashboard || {});
  const { $, TERMINAL, el, formatTime, took } = dashboard;

  const SEVERITY_RANK = { critical: 4, high: 3, medium: 2, low: 1, info: 0 };

  // The detail panel for one scan (GET /scans/{id}); isAuth: the service asks for tokens (the tenant is shown).
  function renderDetail(scan, { isAuth }) {
    $("detail-id").textContent = scan.scan_id;
    const status = $("detail-status");
    status.textContent = scan.status;
    status.dataset.status = scan.status;
    $("detail").dataset.status = scan.status;
    $("detail-cancel").disabled = TERMINAL.has(scan.status) || scan.cancel_requested === true;

    const fields = [
      ["Target", scan.target || "–"],
      ["Scanner", scan.scanner],
      ["Priority", String(scan.priority)],
      ["Attempt", `${scan.attempt} of ${scan.max_attempts}`],
      ["Created", formatTime(scan.created_at)],
      ["Started", formatTime(scan.started_at)],
      ["Finished", formatTime(scan.finished_at)],
      ["Took", took(scan)],
      ["Lease", scan.lease_owner ? `${scan.lease_owner} until ${formatTime(scan.lease_expires_at)}` : "–"],
      ["Options", JSON.stringify(scan.options || {})],
    ];
    if (isAuth) fields.splice(2, 0, ["Tenant", scan.tenant || "–"]);
    if (scan.submitted_by) fields.push(["Submitted by", actorText(scan.submitted_by)]);
    if (scan.cancelled_by) fields.push(["Cancelled by", actorText(scan.cancelled_by)]);
    if (scan.error) fields.push(["Error", scan.error]);
    if (scan.cancel_requested) fields.push(["Cancel", "requested"]);
    $("detail-fields").replaceChildren(...fields.flatMap(([name, value]) => [el("dt", { text: name }), el("dd", { text: value })]));

    const history = scan.history || [];
    const noAttempt = el("tr", {}, el("td", { colSpan: 6, class: "muted", text: "not started yet" }));
    $("detail-history").tBodies[0].replaceChildren(
      ...(history.length ? [] : [noAttempt]),
      ...history.map((entry) =>
        el(
          "tr",
          { "data-outcome": entry.outcome || "running" },
          el("td", { text: String(entry.attempt) }),
          el("td", {}, el("code", { text: entry.worker })),
          el("td", { text: formatTime(entry.started_at), title: entry.started_at }),
          el("td", { text: formatTime(entry.finished_at), title: entry.finished_at || "" }),
          el("td", { text: entry.outcome || "running" }),
          el("td", { text: entry.error || "" }),
        ),
      ),
    );
    renderResult(scan.result);
  }

  // {token_id, token_name} -> "name (tok_…)"
  function actorText(actor) {
    return actor.token_name ? `${actor.token_name} (${actor.token_id})` : actor.token_id;
  }

  function renderResult(result) {
    const target = $("detail-result");
    if (!result) {
      target.replaceChildren();
      return;
    }
    const parts = [el("h3", { text: "Result" })];
    const summary = [];
    if (result.grade !== undefined) summary.push(`grade ${result.grade} (score ${result.score})`);
    if (result.summary) summary.push(`${result.summary.pass ?? 0} passed, ${result.summary.fail ?? 0} failed`);
    if (summary.length) parts.push(el("p", { text: summary.join(" · ") }));
    if (Array.isArray(result.findings)) {
      parts.push(findingsTable(result.findings));
    } else {
      parts.push(el("pre", { text: JSON.stringify(result, null, 2) }));
    }
    target.replaceChildren(...parts);
  }

  function findingsTable(findings) {
    const sorted = [...findings].sort(
      (a, b) =>
        (a.status === "fail" ? 0 : 1) - (b.status === "fail" ? 0 : 1) ||
        (SEVERITY_RANK[b.severity] ?? 0) - (SEVERITY_RANK[a.severity] ?? 0) ||
        String(a.check_id).localeCompare(String(b.check_id)),
    );
    const asset = (a) =>
      a ? `${a.host}${a.port ? `:${a.port}` : ""}${a.ip && a.ip !== a.host ? ` (${a.ip})` : ""}` : "";
    const evidence = (e) => (e ? `expected ${e.expected}; got ${e.actual}` : "");
    return el(
      "table",
      { id: "findings", class: "findings" },
      el("thead", {}, el("tr", {}, ...["Severity", "Result", "Finding", "Asset", "Evidence"].map((h) => el("th", { text: h })))),
      el(
        "tbody",
        {},
        ...sorted.map((f) =>
          el(
            "tr",
            { "data-check": f.check_id || "" },
            el("td", { class: `sev sev-${f.severity}`, text: f.severity || "" }),
            el("td", { class: f.status === "fail" ? "fail" : "pass", text: f.status || "" }),
            el("td", {}, el("code", { text: f.check_id || "" }), el("div", { class: "title", text: f.title || "" })),
            el("td", { text: asset(f.asset) }),
            el(
              "td",
              {},
              el("div", { text: evidence(f.evidence) }),
              f.status === "fail" && f.remediation ? el("div", { class: "muted", text: `Fix: ${f.remediation}` }) : null,
            ),
          ),
        ),
      ),
    );
  }

  dashboard.renderDetail = renderDetail;
})();
