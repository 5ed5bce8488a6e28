// scanq dashboard, live updates: the page reads GET /events (server-sent events, every transition of the scans
// it may see) and refetches what an event changed, at most every EVENT_REFRESH_MS; while the stream is open the
// polls only keep relative times fresh. The stream is read with fetch(), not EventSource, because EventSource
// cannot send the Authorization header. It reconnects with backoff and resumes with Last-Event-ID; when the
// server has no stream (an older scanq: 404, 501) or it keeps failing, the page polls as before. The indicator
// in the bar (#live) says which: "live" (the stream) or "polling".
//
// dashboard.js makes one stream with createStream() and tells it when to start and stop; the stream asks the
// page (its hooks) for the token, the tenant filter and what to refetch.
"use strict";

(() => {
  const dashboard = (window.scanqDashboard = window.scanqDashboard || {});
  const { $, HttpError, TERMINAL } = dashboard;

  const EVENTS_PATH = "/events";
  const EVENT_REFRESH_MS = 250; // refetch at most this often however fast events arrive
  const STREAM_RETRY_MS = 2000; // the first reconnect's delay until the server's "retry:" says otherwise
  const STREAM_MAX_BACKOFF_MS = 30000;
  const STREAM_FAILURES_TO_POLL = 2; // failed attempts in a row before the indicator says "polling"
  const STREAM_STABLE_MS = 10000; // a stream open this long had no trouble: its end starts the backoff afresh
  const STREAM_PROBE_MS = 300000; // no stream on this server (404, 501 …): try again this rarely
  const STREAM_IDLE_MS = 45000; // the server sends a keep-alive every 15 s: silence this long is a dead stream
  const STREAM_MAX_LINE = 1 << 20; // characters; a longer line is not an event of ours
  const STREAM_UNAVAILABLE = new Set([403, 404, 405, 406, 501]);

  // The page's one event stream and its indicator.
  //
  // state: the page's state, read only: isSignedIn, isLive, offline (why GET /stats failed, "" if it did not),
  //   tenant, selected (the scan whose detail is open).
  // hooks.token(): the stored API token, "" for none. hooks.query(): "?tenant=…" for the tenant filter, or "".
  // hooks.isRefused(error, {token, tenant}): the page handled this refusal (a 401 shows the sign-in form, a 403
  //   for the tenant filter clears it and starts a new stream): this stream stops without retrying.
  // hooks.refresh(what): refetch now the parts named in the Set `what` ("list", "stats", "detail", "throughput").
  // hooks.refreshAll(): refetch what the polls read (the stream just ended: the polls carry the page).
  // hiddenRefreshMs: how rarely a background tab refetches.
  //
  // Answers {start, stop, showMode, setLastEventId, isOpen}.
  function createStream(state, hooks, { hiddenRefreshMs }) {
    const stream = {
      mode: "off", // "connecting", "open", "polling" (no stream here, or it keeps failing) or "off"
      controller: null, // aborts the current request; a stream whose controller is not this one is stale
      lastEventId: "", // the last event handled: a reconnect resumes after it (Last-Event-ID)
      retryMs: STREAM_RETRY_MS,
      failures: 0,
      openedAt: 0,
      timer: null, // the next attempt
    };

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
      const token = hooks.token();
      const headers = { Accept: "text/event-stream" };
      if (token) headers.Authorization = `Bearer ${token}`;
      if (stream.lastEventId) headers["Last-Event-ID"] = stream.lastEventId;
      const { tenant } = state;
      let outcome;
      try {
        const response = await fetch(`${EVENTS_PATH}${hooks.query()}`, { headers, signal: controller.signal, cache: "no-store" });
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
        if (hooks.isRefused(error, { token, tenant })) return "stopped";
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
      hooks.refreshAll(); // the polls carry the page until the stream is back
      stream.timer = setTimeout(connectStream, delayMs);
    }

    // Refetch what events changed, at most every EVENT_REFRESH_MS: a burst of events costs one refetch.
    const refresher = { timer: null, lastAt: 0, what: new Set() };

    function refreshSoon(...what) {
      for (const name of what) refresher.what.add(name);
      if (refresher.timer !== null) return;
      const everyMs = document.hidden ? hiddenRefreshMs : EVENT_REFRESH_MS;
      refresher.timer = setTimeout(runRefresh, Math.max(0, refresher.lastAt + everyMs - Date.now()));
    }

    function runRefresh() {
      refresher.timer = null;
      refresher.lastAt = Date.now();
      const { what } = refresher;
      refresher.what = new Set();
      hooks.refresh(what);
    }

    return {
      start: startStream,
      stop: stopStream,
      showMode,
      setLastEventId,
      isOpen: () => stream.mode === "open",
    };
  }

  dashboard.createStream = createStream;
})();
