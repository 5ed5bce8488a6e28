// scanq dashboard: follows the status service (this page's origin) and calls the ingest service for writes.
// It reads only GET /stats (cheap by store contract), bounded pages of GET /scans and GET /stats/throughput
// (the whole window once when the page opens, then only its last steps), so it stays fast with millions of
// scans. Every value from the server goes into the page through textContent, never HTML.
//
// Live updates: the page reads GET /events (server-sent events, every transition of the scans it may see) and
// refetches what an event changed, at most every EVENT_REFRESH_MS; while the stream is open the polls only
// keep relative times fresh. The stream is read with fetch(), not EventSource, because EventSource cannot
// send the Authorization header. It reconnects with backoff and resumes with Last-Event-ID; when the server
// has no stream (an older scanq: 404, 501) or it keeps failing, the page polls as before. The indicator in
// the bar says which: "live" (the stream) or "polling".
//
// API tokens: when the status service requires them (its "scanq-auth" meta tag says "tokens") or any call
// answers 401, the page shows a sign-in form instead of the dashboard. The token is kept in sessionStorage
// (this tab only, never localStorage, never in a URL) and sent as "Authorization: Bearer …" to status and
// ingest. A later 401 (token revoked or expired) drops it and shows the form again with the server's message.
"use strict";

(() => {
  const STATUSES = ["Accepted", "Running", "Complete", "Error", "Cancelled"];
  const TERMINAL = new Set(["Complete", "Error", "Cancelled"]);
  const LIST_LIMIT = 50;
  const LIST_POLL_MS = 1500;
  const STATS_POLL_MS = 2000;
  const DETAIL_POLL_MS = 1000;
  const HIDDEN_POLL_MS = 10000; // a background tab polls rarely
  const THROUGHPUT_POLL_MS = 5000;
  const BUCKET_S = 10;
  const WINDOW_S = 300;
  const FINISHED = ["Complete", "Error", "Cancelled"];
  const X_TICK_S = 60;
  const SEVERITY_RANK = { critical: 4, high: 3, medium: 2, low: 1, info: 0 };
  const TOKEN_KEY = "scanq.token";
  const TENANT_PATTERN = /^[A-Za-z0-9._-]{1,64}$/; // as the server checks ?tenant=
  // The event stream (GET /events).
  const EVENTS_PATH = "/events";
  const EVENT_REFRESH_MS = 250; // refetch at most this often however fast events arrive
  const LIVE_POLL_MS = 15000; // with the stream open, polls only keep "ago" and "took" fresh
  const LIVE_THROUGHPUT_POLL_MS = BUCKET_S * 1000; // the chart's window moves with the clock, events or not
  const STREAM_RETRY_MS = 2000; // the first reconnect's delay until the server's "retry:" says otherwise
  const STREAM_MAX_BACKOFF_MS = 30000;
  const STREAM_FAILURES_TO_POLL = 2; // failed attempts in a row before the indicator says "polling"
  const STREAM_STABLE_MS = 10000; // a stream open this long had no trouble: its end starts the backoff afresh
  const STREAM_PROBE_MS = 300000; // no stream on this server (404, 501 …): try again this rarely
  const STREAM_IDLE_MS = 45000; // the server sends a keep-alive every 15 s: silence this long is a dead stream
  const STREAM_MAX_LINE = 1 << 20; // characters; a longer line is not an event of ours
  const STREAM_UNAVAILABLE = new Set([403, 404, 405, 406, 501]);

  const ingestUrl = document.querySelector('meta[name="scanq-ingest-url"]').content.replace(/\/+$/, "");
  const authMeta = document.querySelector('meta[name="scanq-auth"]');
  const $ = (id) => document.getElementById(id);

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

  const stream = {
    mode: "off", // "connecting", "open", "polling" (no stream here, or it keeps failing) or "off"
    controller: null, // aborts the current request; a stream whose controller is not this one is stale
    lastEventId: "", // the last event handled: a reconnect resumes after it (Last-Event-ID)
    retryMs: STREAM_RETRY_MS,
    failures: 0,
    openedAt: 0,
    timer: null, // the next attempt
  };

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

  class HttpError extends Error {
    constructor(status, body) {
      super((body && body.error && body.error.message) || (body && body.status) || `HTTP ${status}`);
      this.status = status;
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

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null) continue;
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else if (key.startsWith("data-")) node.setAttribute(key, value);
      else if (key === "style.height") node.style.height = value; // CSSOM, allowed by the page's CSP
      else if (key === "style.left") node.style.left = value;
      else node[key] = value;
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }

  function badge(status) {
    return el("span", { class: "badge", "data-status": status, text: status });
  }

  // "2025-01-01T00:00:01.123456Z" -> "2025-01-01 00:00:01.123 UTC" (the title keeps the exact value).
  function formatTime(value) {
    if (!value) return "–";
    const match = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(\.\d{1,3})?\d*(Z|[+-]\d{2}:\d{2})$/.exec(value);
    if (!match) return value;
    const zone = match[4] === "Z" || match[4] === "+00:00" ? "UTC" : match[4];
    return `${match[1]} ${match[2]}${match[3] || ""} ${zone}`;
  }

  function parseTime(value) {
    return value ? new Date(value) : null;
  }

  function formatSeconds(seconds) {
    if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "–";
    if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
    if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
    return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
  }

  function ago(value) {
    const time = parseTime(value);
    return time ? `${formatSeconds(Math.max(0, (Date.now() - time) / 1000))} ago` : "–";
  }

  function took(scan) {
    const started = parseTime(scan.started_at);
    if (!started) return "–";
    const end = parseTime(scan.finished_at) || (scan.status === "Running" ? new Date() : null);
    return end ? formatSeconds(Math.max(0, (end - started) / 1000)) : "–";
  }

  function setLive(stateName, text, title = "") {
    const live = $("live");
    live.dataset.state = stateName;
    live.textContent = text;
    live.title = title;
  }

  // The indicator: how the page learns about changes now.
  function showMode() {
    if (!state.isSignedIn) setLive("signed-out", "sign in");
    else if (!state.isLive) setLive("paused", "paused", "live updates are off");
    else if (state.offline) setLive("offline", state.offline);
    else if (stream.mode === "open") setLive("live", "live", "updated as scans change (server-sent events)");
    else if (stream.mode === "polling") setLive("polling", "polling", "no event stream: the page asks every few seconds");
    else setLive("connecting", "connecting…");
  }

  function setMessage(id, text, isBad = false) {
    const node = $(id);
    node.textContent = text;
    node.classList.toggle("bad", isBad);
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
    showMode();
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
    startStream();
  }

  // What one token showed must not stay on the page for the next one.
  function clearData() {
    stopStream();
    setLastEventId("");
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
          const wait = stream.mode === "open" ? liveIntervalMs : intervalMs;
          timer = setTimeout(run, document.hidden ? Math.max(HIDDEN_POLL_MS, wait) : wait);
        }
      }
    };
    return run;
  }

  // -- the event stream: GET /events, server-sent events read with fetch() ----------------------------------

  // The stream for the current token and tenant filter, instead of any earlier one.
  function startStream() {
    stopStream();
    connectStream();
  }

  function stopStream() {
    clearTimeout(stream.timer);
    stream.timer = null;
    const { controller } = stream;
    stream.controller = null; // first: the aborted request must see that it is stale
    if (controller) controller.abort();
    stream.mode = "off";
  }

  async function connectStream() {
    stream.timer = null;
    if (!state.isSignedIn || !state.isLive) return;
    const controller = new AbortController();
    stream.controller = controller;
    if (stream.mode !== "polling") stream.mode = "connecting";
    showMode();
    const token = storedToken();
    const headers = { Accept: "text/event-stream" };
    if (token) headers.Authorization = `Bearer ${token}`;
    if (stream.lastEventId) headers["Last-Event-ID"] = stream.lastEventId;
    const { tenant } = state;
    let outcome;
    try {
      const response = await fetch(`${EVENTS_PATH}${tenantQuery()}`, { headers, signal: controller.signal, cache: "no-store" });
      outcome = await followStream(response, controller, token, tenant);
    } catch (error) {
      if (!controller.signal.aborted) console.warn("event stream:", error);
      outcome = "failed"; // the network, or the idle watchdog's abort
    }
    if (stream.controller !== controller) return; // stopped, or replaced by a newer stream meanwhile
    stream.controller = null;
    retryStream(outcome);
  }

  // Check the answer, then handle its events until it ends: "ended", "failed", "unavailable" or "stopped".
  async function followStream(response, controller, token, tenant) {
    if (!response.ok) {
      const body = await response.json().catch(() => null);
      const error = new HttpError(response.status, body);
      if (response.status === 401) {
        showLogin(error.message, { failedToken: token, isBad: true });
        return "stopped";
      }
      if (tenantRefused(error, tenant)) return "stopped"; // the filter is cleared and the stream starts again
      // An event id this store never made (another database behind the same URL): start again from now.
      if (response.status === 422 && stream.lastEventId) setLastEventId("");
      return STREAM_UNAVAILABLE.has(response.status) ? "unavailable" : "failed";
    }
    const type = response.headers.get("Content-Type") || "";
    if (!/^text\/event-stream\b/i.test(type) || !response.body) return "unavailable";
    if (stream.controller !== controller) return "stopped";
    stream.mode = "open";
    stream.openedAt = Date.now();
    showMode();
    // What changed before the stream began (or while it was down) is not in it: read the page's data again.
    refreshSoon("list", "stats", "detail", "throughput");
    await readEvents(response.body, controller);
    return "ended";
  }

  // The text/event-stream format: lines end with CRLF, LF or CR; "field: value" lines build an event and an
  // empty line dispatches it; a line starting with ":" is a comment (the server's keep-alive).
  async function readEvents(body, controller) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    let event = { id: null, data: [] };
    let idle = null;
    const watch = () => {
      clearTimeout(idle);
      idle = setTimeout(() => controller.abort(), STREAM_IDLE_MS);
    };
    const handleLine = (line) => {
      if (line === "") {
        if (event.id !== null) setLastEventId(event.id);
        if (event.data.length) handleEvent(event.data.join("\n"));
        event = { id: null, data: [] };
        return;
      }
      if (line.startsWith(":")) return;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? "" : line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
      if (field === "data") event.data.push(value);
      else if (field === "id" && !value.includes("\0")) event.id = value;
      else if (field === "retry" && /^\d+$/.test(value)) stream.retryMs = Number(value);
    };
    watch();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || stream.controller !== controller) return;
        watch();
        buffer += decoder.decode(value, { stream: true });
        // A CR at the very end may be the first half of a CRLF: it stays in the buffer for the next chunk.
        const lines = buffer.split(/\r\n|\r(?!$)|\n/);
        buffer = lines.pop();
        if (buffer.length > STREAM_MAX_LINE) throw new Error("event stream: line too long");
        for (const line of lines) handleLine(line);
      }
    } finally {
      clearTimeout(idle);
      reader.cancel().catch(() => {});
    }
  }

  // Where a reconnect resumes; also on the indicator (data-last-event-id), for whoever debugs the page.
  function setLastEventId(eventId) {
    stream.lastEventId = eventId;
    if (eventId) $("live").dataset.lastEventId = eventId;
    else delete $("live").dataset.lastEventId;
  }

  // One scan event (its "event:" line is its "type" again): {"event_id", "type", "scan_id", "tenant", "status",
  // "attempt", "at"}. Which rows, counts or steps it changed is read again from the server.
  function handleEvent(data) {
    let scanEvent;
    try {
      scanEvent = JSON.parse(data);
    } catch {
      return;
    }
    if (!scanEvent || typeof scanEvent !== "object") return;
    const what = ["list", "stats"];
    if (scanEvent.scan_id && scanEvent.scan_id === state.selected) what.push("detail");
    if (TERMINAL.has(scanEvent.status)) what.push("throughput");
    refreshSoon(...what);
  }

  // After a stream ends: poll meanwhile, and try again later (with backoff and jitter, so a restarted server
  // is not met by every page at once).
  function retryStream(outcome) {
    if (outcome === "stopped") return;
    let delayMs;
    if (outcome === "unavailable") {
      stream.mode = "polling";
      stream.failures = 0;
      delayMs = STREAM_PROBE_MS;
    } else {
      const wasStable = stream.mode === "open" && Date.now() - stream.openedAt >= STREAM_STABLE_MS;
      stream.failures = wasStable ? 1 : stream.failures + 1;
      stream.mode = stream.failures >= STREAM_FAILURES_TO_POLL ? "polling" : "connecting";
      const backoffMs = Math.min(STREAM_MAX_BACKOFF_MS, stream.retryMs * 2 ** (stream.failures - 1));
      delayMs = backoffMs * (0.5 + Math.random() / 2);
    }
    showMode();
    refreshAll(); // the polls carry the page until the stream is back
    stream.timer = setTimeout(connectStream, delayMs);
  }

  // Refetch what events changed, at most every EVENT_REFRESH_MS: a burst of events costs one refetch.
  const refresher = { timer: null, lastAt: 0, what: new Set() };

  function refreshSoon(...what) {
    for (const name of what) refresher.what.add(name);
    if (refresher.timer !== null) return;
    const everyMs = document.hidden ? HIDDEN_POLL_MS : EVENT_REFRESH_MS;
    refresher.timer = setTimeout(runRefresh, Math.max(0, refresher.lastAt + everyMs - Date.now()));
  }

  function runRefresh() {
    refresher.timer = null;
    refresher.lastAt = Date.now();
    const { what } = refresher;
    refresher.what = new Set();
    if (what.has("list")) listPoll(true);
    if (what.has("stats")) statsPoll(true);
    if (what.has("detail")) detailPoll(true);
    if (what.has("throughput")) throughputPoll(true);
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
      showMode();
      return;
    }
    if (generation !== state.generation) return;
    state.offline = "";
    showMode();
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
    renderThroughput();
  }

  function resetThroughput() {
    state.buckets.clear();
    state.until = null;
    state.fetchedAt = null;
    for (const id of ["throughput", "throughput-y", "throughput-x"]) $(id).replaceChildren();
    $("rate").textContent = "–";
  }

  function renderThroughput() {
    if (state.until === null) return;
    const count = WINDOW_S / BUCKET_S;
    const first = state.until - WINDOW_S * 1000;
    const empty = { counts: { Complete: 0, Error: 0, Cancelled: 0 }, total: 0 };
    const steps = Array.from({ length: count }, (_, i) => {
      const start = first + i * BUCKET_S * 1000;
      return { start, ...(state.buckets.get(start) || empty) };
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
    for (let t = Math.ceil(first / (X_TICK_S * 1000)) * X_TICK_S * 1000; t < state.until; t += X_TICK_S * 1000) {
      ticks.push(el("span", { text: formatClock(t), "style.left": `${(100 * (t - first)) / (WINDOW_S * 1000)}%` }));
    }
    $("throughput-x").replaceChildren(...ticks);
    const last = steps[steps.length - 2]; // the last full step (the final one is still filling)
    $("rate").textContent = `${(last.total / BUCKET_S).toFixed(1)} scans/s`;
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
    setLastEventId(""); // another tenant's stream starts from now: the refetches above cover the past
    if (state.isSignedIn) startStream();
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
      renderDetail(await requestJson(`/scans/${encodeURIComponent(scanId)}`));
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

  function renderDetail(scan) {
    if (scan.scan_id !== state.selected) return;
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
    if (state.isAuth) fields.splice(2, 0, ["Tenant", scan.tenant || "–"]);
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
      setLastEventId(""); // everything is read again: no need to replay what happened while paused
      refreshAll();
      startStream();
    } else {
      stopStream();
      showMode();
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
