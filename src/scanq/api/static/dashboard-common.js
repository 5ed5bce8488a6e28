// scanq dashboard, shared parts: building elements, formatting times, the API's errors.
// The page's scripts are plain (no modules, no build step) and run in the order the page lists them, each in
// its own function scope; what one gives the others goes on window.scanqDashboard. This one runs first.
// Every value from the server goes into the page through textContent, never HTML.
"use strict";

(() => {
  const dashboard = (window.scanqDashboard = window.scanqDashboard || {});

  const STATUSES = ["Accepted", "Running", "Complete", "Error", "Cancelled"];
  const TERMINAL = new Set(["Complete", "Error", "Cancelled"]);

  const $ = (id) => document.getElementById(id);

  // An answer other than 2xx: the server's message ({"error": {"message"}}), and its status code.
  class HttpError extends Error {
    constructor(status, body) {
      super((body && body.error && body.error.message) || (body && body.status) || `HTTP ${status}`);
      this.status = status;
    }
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

  function setMessage(id, text, isBad = false) {
    const node = $(id);
    node.textContent = text;
    node.classList.toggle("bad", isBad);
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

  Object.assign(dashboard, {
    STATUSES,
    TERMINAL,
    $,
    HttpError,
    el,
    badge,
    setMessage,
    formatTime,
    formatSeconds,
    ago,
    took,
  });
})();
