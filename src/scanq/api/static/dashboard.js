// scanq dashboard: follows the status service (this page's origin) and calls the ingest service for writes.
// It reads only GET /stats (cheap by store contract), bounded pages of GET /scans and GET /stats/throughput
// (the whole window once when the page opens, then only its last steps), so it stays fast with millions of
// scans. Every value from the server goes into the page through textContent, never HTML.
//
// The page's other scripts run before this one: dashboard-common.js (building elements, formatting times),
// dashboard-stream.js (live updates: GET /events, read with fetch(), reconnecting with Last-Event-ID, and the
// live/polling indicator; with the stream open the polls here only keep relative times fresh),
// dashboard-detail.js (one scan's detail) and dashboard-chart.js (drawing the throughput chart). This one holds
// the page's state, signing in, the polls, the counts, the list and the writes, and wires them together.
//
// API tokens: when the status service requires them (its "scanq-auth" meta tag says "tokens") or any call
// answers 401, the page shows a sign-in form instead of the dashboard. The token is kept in sessionStorage
// (this tab only, never localStorage, never in a URL) and sent as "Authorization: Bearer …" to status and
// ingest. A later 401 (token revoked or expired) drops it and shows the form again with the server's message.
"use strict";

(() => {
  const dashboard = window.scanqDashboard;
  const { STATUSES, TERMINAL, $, HttpError, el, setMessage, badge, formatSeconds, ago, took } = dashboard;
  const { createStream, renderDetail, throughputChart } = dashboard;
  const { BUCKET_S, WINDOW_S } = throughputChart;

  const LIST_LIMIT = 50;
  const LIST_POLL_MS = 1500;
  const STATS_POLL_MS = 2000;
  const DETAIL_POLL_MS = 1000;
  const HIDDEN_POLL_MS = 10000; // a background tab polls rarely
  const THROUGHPUT_POLL_MS = 5000;
  const TOKEN_KEY = "scanq.token";
  const TENANT_PATTERN = /^[A-Za-z0-9._-]{1,64}$/; // as the server checks ?tenant=
  // With the event stream open (dashboard-stream.js), events bring the changes and the polls wait longer.
  const LIVE_POLL_MS = 15000; // polls only keep "ago" and "took" fresh
  const LIVE_THROUGHPUT_POLL_MS = BUCKET_S * 1000; // the chart's window moves with the clock, events or not

  const ingestUrl = document.querySelector('meta[name="scanq-ingest-url"]').content.replace(/\/+$/, "");
  const authMeta = document.querySelector('meta[name="scanq-auth"]');

  const state = {
    isLive: true,
    status: "",
    cursor: null, // null: the newest page
    cursors: [], // previous pages' cursors, for "Newest"
    nextCursor: null,
    selected: null,
    buckets: new Map(), // start (ms) -> {counts: {Complete, Error, Cancelled}, total}, from GET /stats/throughput
    until: null, // the end (ms) of the last step the server answered for
    fetchedAt: null, // when the throughput was last read (ms)
    isAuth: Boolean(authMeta && authMeta.content === "tokens"), // the service asks for a token
    isSignedIn: true, // false while the sign-in form is shown: nothing is polled
    tenant: "", // the tenant filter (?tenant=), "" for every tenant the token may read
    generation: 0, // bumped when the tenant or the token changes: answers to older requests are dropped
    offline: "", // why GET /stats failed last, "" once it answers
  };

  const stream = createStream(
    state,
    {
      token: storedToken,
      query: () => tenantQuery(),
      isRefused: (error, { token, tenant }) => {
        if (error.status === 401) {
          showLogin(error.message, { failedToken: token, isBad: true });
          return true;
        }
        return tenantRefused(error, tenant); // the filter is cleared and the stream starts again
      },
      refresh: (what) => {
        if (what.has("list")) listPoll(true);
        if (what.has("stats")) statsPoll(true);
        if (what.has("detail")) detailPoll(true);
        if (what.has("throughput")) throughputPoll(true);
      },
      refreshAll: () => refreshAll(),
    },
    { hiddenRefreshMs: HIDDEN_POLL_MS },
  );

  // -- the API token -------------------------------------------------------------------------------------

  function storedToken() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || "";
    } catch {
      return ""; // storage disabled: the page works without auth only
    }
  }

  function storeToken(token) {
    try {
      if (token) sessionStorage.setItem(TOKEN_KEY, token);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch {
      // nothing to keep it in; the next call answers 401 and the form comes back
    }
  }

  // Every call goes through here: the token (if any) in the Authorization header, a 401 shows the sign-in form.
  async function requestJson(url, options = {}) {
    const token = storedToken();
    const headers = { Accept: "application/json", ...options.headers };
    if (token) headers.Authorization = `Bearer ${token}`;
    const response = await fetch(url, { ...options, headers });
    const body = await response.json().catch(() => null);
    if (!response.ok) {
      const error = new HttpError(response.status, body);
      if (response.status === 401) showLogin(error.message, { failedToken: token, isBad: true });
      throw error;
    }
    return body;
  }

  // -- signing in and out ----------------------------------------------------------------------------------

  // The sign-in form in place of the dashboard; the stored token is dropped. A 401 for a token that is no
  // longer the stored one (the user signed in again while the request ran) changes nothing.
  function showLogin(message, { failedToken = "", isBad = false } = {}) {
    const current = storedToken();
    if (current && current !== failedToken) return;
    storeToken("");
    state.isAuth = true;
    document.body.dataset.auth = "tokens";
    state.isSignedIn = false;
    clearData();
    $("main").hidden = true;
    $("sign-out").hidden = true;
    $("login").hidden = false;
    stream.showMode();
    setMessage("login-message", message || "", isBad);
    $("login-token").focus();
  }

  function showDashboard() {
    state.isSignedIn = true;
    state.generation += 1;
    document.body.dataset.auth = state.isAuth ? "tokens" : "off";
    $("login").hidden = true;
    $("main").hidden = false;
    $("sign-out").hidden = !storedToken();
    $("tenant-filter-label").hidden = !state.isAuth;
    setMessage("login-message", "");
    refreshAll();
    stream.start();
  }

  // What one token showed must not stay on the page for the next one.
  function clearData() {
    stream.stop();
    stream.setLastEventId("");
    state.generation += 1;
    state.offline = "";
    state.selected = null;
    state.cursor = null;
    state.cursors = [];
    state.nextCursor = null;
    state.tenant = "";
    resetThroughput();
    $("tenant-filter").value = "";
    $("detail").hidden = true;
    $("counts").replaceChildren();
    $("oldest").textContent = "–";
    $("tenant-rows").replaceChildren();
    $("tenant-queues").hidden = true;
    $("scan-rows").replaceChildren();
    $("list-note").textContent = "";
    $("submit-form").reset();
    $("lookup-form").reset();
    for (const id of ["submit-result", "lookup-result", "detail-message", "tenant-message"]) setMessage(id, "");
  }

  async function signIn(event) {
    event.preventDefault();
    const token = $("login-token").value.trim();
    $("login-token").value = "";
    if (!token) {
      setMessage("login-message", "paste an API token (scanq_…)", true);
      return;
    }
    storeToken(token);
    $("login-button").disabled = true;
    setMessage("login-message", "checking…");
    try {
      await requestJson("/stats"); // a 401 puts the form back with the server's message
    } catch (error) {
      // Not a 401 (a token without the read scope, the service down): signed in; the panels say what fails.
      if (error.status !== 401) console.error(error);
    } finally {
      $("login-button").disabled = false;
    }
    if (storedToken() === token) showDashboard();
  }

  function signOut() {
    showLogin("Signed out.", { failedToken: storedToken() });
  }

  // -- polling: one setTimeout chain per source, so a slow answer never stacks requests --------------

  // ``run()`` from a timer runs only while live; ``run(true)`` (a user action, an event) always runs. A call
  // during a request runs once more right after it instead of starting a second chain of timers. While the
  // event stream is open the timer waits ``liveIntervalMs`` instead: events bring the changes.
  function poll(task, intervalMs, liveIntervalMs = intervalMs) {
    let timer = null;
    let isRunning = false;
    let isAgain = false;
    const run = async (isForced = false) => {
      clearTimeout(timer);
      timer = null;
      if (isRunning) {
        isAgain = true;
        return;
      }
      isRunning = true;
      try {
        if (state.isSignedIn && (isForced === true || state.isLive)) await task();
      } catch (error) {
        console.error(error);
      } finally {
        isRunning = false;
        if (isAgain) {
          isAgain = false;
          run(true);
        } else {
          const wait = stream.isOpen() ? liveIntervalMs : intervalMs;
          timer = setTimeout(run, document.hidden ? Math.max(HIDDEN_POLL_MS, wait) : wait);
        }
      }
    };
    return run;
  }

  // -- counts and throughput ---------------------------------------------------------------------------

  // GET /stats answers {"counts": {"Accepted": n, ...}, "total": n, "oldest_accepted_age_s": seconds | null,
  // "tenants": [{"tenant", "accepted", "running", "oldest_accepted_age_s"}, ...]}; "tenants" holds the tenants
  // with waiting or running scans, busiest first (every tenant for an admin token or without auth, else the
  // token's own; only the filtered one with ?tenant=).
  function readStats(body) {
    const counts = Object.fromEntries(STATUSES.map((s) => [s, Number(body.counts[s] || 0)]));
    const tenants = Array.isArray(body.tenants) ? body.tenants : [];
    return { counts, oldestAge: body.oldest_accepted_age_s, tenants };
  }

  // "?tenant=…" when the tenant filter is set (an admin token's choice; the server refuses others with 403).
  function tenantQuery(params = new URLSearchParams()) {
    if (state.tenant) params.set("tenant", state.tenant);
    const query = params.toString();
    return query ? `?${query}` : "";
  }

  // A 403 for the tenant filter: say why and show what the token may read instead. True if it was that.
  function tenantRefused(error, tenant) {
    if (error.status !== 403 || !tenant || tenant !== state.tenant) return false;
    setMessage("tenant-message", `tenant filter cleared: ${error.message}`, true);
    setTenant("");
    return true;
  }

  async function refreshStats() {
    const { generation, tenant } = state;
    let stats;
    try {
      stats = readStats(await requestJson(`/stats${tenantQuery()}`));
    } catch (error) {
      if (error.status === 401 || tenantRefused(error, tenant)) return;
      const why = error.status === 403 ? "refused" : "unreachable";
      state.offline = `status service ${why} (${error.message})`;
      stream.showMode();
      return;
    }
    if (generation !== state.generation) return;
    state.offline = "";
    stream.showMode();
    renderCounts(stats);
    renderTenants(stats.tenants);
  }

  function renderCounts({ counts, oldestAge }) {
    const total = STATUSES.reduce((sum, s) => sum + counts[s], 0);
    const cards = STATUSES.map((status) =>
      el(
        "div",
        { class: "count", "data-status": status, title: `show ${status} scans`, onclick: () => setFilter(status) },
        el("b", { text: counts[status].toLocaleString(), "data-count": status }),
        el("span", { text: status }),
      ),
    );
    cards.push(
      el("div", { class: "count", onclick: () => setFilter("") }, el("b", { text: total.toLocaleString() }), el("span", { text: "Total" })),
    );
    $("counts").replaceChildren(...cards);
    $("oldest").textContent = counts.Accepted ? formatSeconds(oldestAge) : "none waiting";
  }

  // "12 s", "3 min", "2 h 5 min", "3 d 4 h": how long a tenant's oldest scan has waited, at a glance.
  function formatAge(seconds) {
    if (seconds === null || seconds === undefined || !Number.isFinite(Number(seconds))) return "–";
    const s = Math.max(0, Math.floor(Number(seconds)));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min`;
    if (s < 86400) {
      const minutes = Math.floor((s % 3600) / 60);
      return `${Math.floor(s / 3600)} h${minutes ? ` ${minutes} min` : ""}`;
    }
    const hours = Math.floor((s % 86400) / 3600);
    return `${Math.floor(s / 86400)} d${hours ? ` ${hours} h` : ""}`;
  }

  // The per-tenant queue: hidden while no tenant has a waiting or running scan.
  function renderTenants(tenants) {
    $("tenant-rows").replaceChildren(...tenants.map(tenantRow));
    $("tenant-queues").hidden = tenants.length === 0;
  }

  function tenantRow(queue) {
    const tenant = String(queue.tenant);
    const accepted = Number(queue.accepted || 0);
    const running = Number(queue.running || 0);
    const age = queue.oldest_accepted_age_s;
    const isFiltered = tenant === state.tenant;
    // A tenant's name sets the tenant filter (shown only while tokens are required); again, clears it.
    const name =
      state.isAuth && TENANT_PATTERN.test(tenant)
        ? el("button", {
            type: "button",
            text: tenant,
            title: isFiltered ? "show every tenant" : `show only ${tenant}'s scans`,
            onclick: () => pickTenant(isFiltered ? "" : tenant),
          })
        : el("span", { text: tenant });
    return el(
      "tr",
      { "data-tenant": tenant, class: isFiltered ? "selected" : null },
      el("td", { class: "tenant-name" }, name),
      el("td", { class: "num", "data-field": "accepted", text: accepted.toLocaleString() }),
      el("td", { class: "num", "data-field": "running", text: running.toLocaleString() }),
      el("td", {
        "data-field": "oldest",
        text: accepted ? formatAge(age) : "–",
        title: accepted && Number.isFinite(Number(age)) ? `${Number(age).toFixed(1)} s` : null,
      }),
    );
  }

  function pickTenant(tenant) {
    setMessage("tenant-message", "");
    setTenant(tenant);
  }

  // -- the throughput chart: GET /stats/throughput answers every step of the window, oldest first ------------
  // (dashboard-chart.js draws it)

  async function refreshThroughput() {
    // The whole window when the page opens (or after a long pause), else only the steps that may still change.
    const since = state.fetchedAt === null ? 0 : (Date.now() - state.fetchedAt) / 1000;
    const steps = state.fetchedAt === null ? WINDOW_S / BUCKET_S : Math.min(WINDOW_S / BUCKET_S, Math.ceil(since / BUCKET_S) + 2);
    const fetchedAt = Date.now();
    const { generation, tenant } = state;
    const params = new URLSearchParams({ window: `${steps * BUCKET_S}s`, step: `${BUCKET_S}s` });
    let body;
    try {
      body = await requestJson(`/stats/throughput${tenantQuery(params)}`);
    } catch (error) {
      if (error.status === 401 || tenantRefused(error, tenant)) return;
      throw error;
    }
    if (generation !== state.generation) return; // another tenant's or token's steps must not mix in
    state.fetchedAt = fetchedAt;
    for (const bucket of body.buckets) {
      state.buckets.set(Date.parse(bucket.start), { counts: bucket.counts, total: bucket.total });
    }
    state.until = Date.parse(body.until);
    for (const start of state.buckets.keys()) {
      if (start < state.until - WINDOW_S * 1000) state.buckets.delete(start);
    }
    throughputChart.render(state.buckets, state.until);
  }

  function resetThroughput() {
    state.buckets.clear();
    state.until = null;
    state.fetchedAt = null;
    throughputChart.clear();
  }

  // -- the list ------------------------------------------------------------------------------------------

  async function refreshList() {
    const params = new URLSearchParams({ limit: String(LIST_LIMIT) });
    if (state.status) params.set("status", state.status);
    if (state.cursor) params.set("cursor", state.cursor);
    const { generation, tenant } = state;
    let page;
    try {
      page = await requestJson(`/scans${tenantQuery(params)}`);
    } catch (error) {
      if (error.status === 401 || tenantRefused(error, tenant)) return;
      $("list-note").textContent = `could not load scans: ${error.message}`;
      return;
    }
    if (generation !== state.generation) return;
    state.nextCursor = page.next_cursor || null;
    $("page-older").disabled = !state.nextCursor;
    $("page-newest").disabled = !state.cursor;
    $("list-note").textContent = page.scans.length ? "" : "no scans";
    $("scan-rows").replaceChildren(...page.scans.map(scanRow));
  }

  function scanRow(scan) {
    const row = el(
      "tr",
      { "data-scan-id": scan.scan_id, "data-status": scan.status, onclick: () => openDetail(scan.scan_id) },
      el("td", {}, el("code", { text: scan.scan_id, title: scan.scan_id })),
      el("td", {}, badge(scan.status)),
      el("td", { class: "col-tenant", text: scan.tenant || "–" }),
      el("td", { class: "col-target", text: scan.target || "–", title: scan.target || "" }),
      el("td", { text: scan.scanner }),
      el("td", { text: `${scan.attempt}/${scan.max_attempts}` }),
      el("td", { text: ago(scan.created_at), title: scan.created_at }),
      el("td", { text: took(scan) }),
    );
    if (scan.scan_id === state.selected) row.classList.add("selected");
    return row;
  }

  function setFilter(status) {
    $("status-filter").value = status;
    state.status = status;
    resetPaging();
  }

  function resetPaging() {
    state.cursor = null;
    state.cursors = [];
    listPoll(true);
  }

  // The list, the counts and the chart of one tenant ("" for all the token may read).
  function setTenant(tenant) {
    $("tenant-filter").value = tenant;
    if (tenant === state.tenant) return;
    state.tenant = tenant;
    state.generation += 1;
    resetThroughput();
    resetPaging();
    statsPoll(true);
    throughputPoll(true);
    stream.setLastEventId(""); // another tenant's stream starts from now: the refetches above cover the past
    if (state.isSignedIn) stream.start();
  }

  function applyTenantFilter() {
    const tenant = $("tenant-filter").value.trim();
    if (tenant && !TENANT_PATTERN.test(tenant)) {
      setMessage("tenant-message", "a tenant is 1 to 64 letters, digits, '-', '_' or '.'", true);
      return;
    }
    setMessage("tenant-message", "");
    setTenant(tenant);
  }

  // -- one scan's detail --------------------------------------------------------------------------------

  async function openDetail(scanId) {
    state.selected = scanId;
    for (const row of $("scan-rows").children) row.classList.toggle("selected", row.dataset.scanId === scanId);
    setMessage("detail-message", "");
    await refreshDetail();
    if (state.selected !== scanId) return; // not found, signed out, or another scan opened meanwhile
    $("detail").hidden = false;
    $("detail").scrollIntoView({ behavior: "smooth", block: "nearest" });
  }

  async function refreshDetail() {
    const scanId = state.selected;
    if (!scanId) return;
    try {
      const scan = await requestJson(`/scans/${encodeURIComponent(scanId)}`);
      if (scan.scan_id === state.selected) renderDetail(scan, { isAuth: state.isAuth });
    } catch (error) {
      if (error.status === 401) return;
      if (error.status === 404) {
        state.selected = null;
        $("detail").hidden = true;
        setMessage("lookup-result", `no scan ${scanId}`, true);
      } else {
        setMessage("detail-message", `could not load: ${error.message}`, true);
      }
    }
  }

  // -- writes: the ingest service ---------------------------------------------------------------------

  async function submitScans(event) {
    event.preventDefault();
    const scan = {};
    const target = $("submit-target").value.trim();
    const scanner = $("submit-scanner").value.trim();
    const priority = Number.parseInt($("submit-priority").value, 10);
    const count = Math.max(1, Number.parseInt($("submit-count").value, 10) || 1);
    if (target) scan.target = target;
    if (scanner) scan.scanner = scanner;
    if (priority) scan.priority = priority;
    $("submit-button").disabled = true;
    try {
      const post = (path, body) =>
        requestJson(`${ingestUrl}${path}`, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify(body),
        });
      if (count === 1) {
        const created = await post("/scans", scan);
        setMessage("submit-result", `submitted ${created.scan_id}`);
        $("submit-result").dataset.scanId = created.scan_id;
        openDetail(created.scan_id);
      } else {
        const created = await post("/scans/batch", { scans: Array.from({ length: count }, () => scan) });
        const scans = created.scans || created;
        setMessage("submit-result", `submitted ${scans.length} scans`);
      }
      resetPaging();
      statsPoll(true);
    } catch (error) {
      if (error.status === 401) return;
      setMessage("submit-result", `submit failed: ${error.message}`, true);
    } finally {
      $("submit-button").disabled = false;
    }
  }

  async function cancelSelected() {
    const scanId = state.selected;
    if (!scanId) return;
    $("detail-cancel").disabled = true;
    try {
      // A browser's POST must declare JSON even without a body (the ingest service's cross-site rules).
      const scan = await requestJson(`${ingestUrl}/scans/${encodeURIComponent(scanId)}/cancel`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
      });
      setMessage("detail-message", scan.status === "Cancelled" ? "cancelled" : "cancel requested");
    } catch (error) {
      if (error.status === 401) return;
      const why = error.status === 409 ? "already finished" : error.message;
      setMessage("detail-message", `cancel failed: ${why}`, true);
    }
    await refreshDetail();
    listPoll(true);
  }

  // -- wiring -----------------------------------------------------------------------------------------

  const statsPoll = poll(refreshStats, STATS_POLL_MS, LIVE_POLL_MS);
  const throughputPoll = poll(refreshThroughput, THROUGHPUT_POLL_MS, LIVE_THROUGHPUT_POLL_MS);
  const listPoll = poll(refreshList, LIST_POLL_MS, LIVE_POLL_MS);
  const detailPoll = poll(
    async () => {
      if (state.selected && $("detail").dataset.status !== undefined && !TERMINAL.has($("detail").dataset.status)) {
        await refreshDetail();
      }
    },
    DETAIL_POLL_MS,
    LIVE_POLL_MS,
  );

  $("submit-form").addEventListener("submit", submitScans);
  $("lookup-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const scanId = $("lookup-id").value.trim();
    setMessage("lookup-result", "");
    if (scanId) openDetail(scanId);
  });
  $("status-filter").addEventListener("change", (event) => setFilter(event.target.value));
  $("tenant-filter").addEventListener("change", applyTenantFilter);
  $("login-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", signOut);
  $("page-older").addEventListener("click", () => {
    state.cursors.push(state.cursor);
    state.cursor = state.nextCursor;
    listPoll(true);
  });
  $("page-newest").addEventListener("click", resetPaging);
  $("detail-cancel").addEventListener("click", cancelSelected);
  $("detail-close").addEventListener("click", () => {
    state.selected = null;
    $("detail").hidden = true;
    for (const row of $("scan-rows").children) row.classList.remove("selected");
  });
  $("live-toggle").addEventListener("change", (event) => {
    state.isLive = event.target.checked;
    if (!state.isSignedIn) return;
    if (state.isLive) {
      stream.setLastEventId(""); // everything is read again: no need to replay what happened while paused
      refreshAll();
      stream.start();
    } else {
      stream.stop();
      stream.showMode();
    }
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) refreshAll();
  });

  function refreshAll() {
    statsPoll(true);
    throughputPoll(true);
    listPoll(true);
  }

  // Tokens required and none kept in this tab: the form first, no call that could only answer 401.
  if (state.isAuth && !storedToken()) {
    showLogin("");
  } else {
    showDashboard();
  }
  detailPoll(true);
})();
