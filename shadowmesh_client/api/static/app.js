// ShadowMesh dashboard: vanilla JS, no external assets. Reads the local API with the bearer token taken from
// the URL fragment (#token=..., never sent to the server) or typed in; live updates from /api/v1/stream
// (server-sent events read with fetch, so the token travels in a header, not in the URL).
"use strict";

const HISTORY = 120;            // samples shown in the charts (x interval: 2 min at 1 s)
const state = { token: null, samples: [], peerSeries: new Map(), lastEvent: 0, streamOpen: false };

function readToken() {
  const m = /(?:^|[#&])token=([^&]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem("shadowmesh-token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname);   // the token leaves the address bar
  }
  return sessionStorage.getItem("shadowmesh-token");
}

async function api(path, options = {}) {
  const res = await fetch(path, { ...options, headers: { ...(options.headers || {}), Authorization: `Bearer ${state.token}` } });
  if (res.status === 401) { showLogin("the token was refused"); throw new Error("unauthorized"); }
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
  return res.json();
}

function showLogin(message) {
  document.getElementById("app").hidden = true;
  document.getElementById("login").hidden = false;
  document.getElementById("login-error").textContent = message || "";
}

const $ = (id) => document.getElementById(id);
const short = (key) => (key || "").slice(0, 12);
function rate(bps) {
  if (bps == null) return "–";
  const units = ["bit/s", "kbit/s", "Mbit/s", "Gbit/s"];
  let i = 0;
  while (bps >= 1000 && i < units.length - 1) { bps /= 1000; i++; }
  return `${bps.toFixed(bps < 10 && i ? 1 : 0)} ${units[i]}`;
}
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

// ---- charts: an SVG polyline per series, scaled to the largest value shown -----------------------------
function points(values, max, width, height) {
  const n = values.length;
  if (!n) return "";
  return values.map((v, i) => `${(width * (HISTORY - n + i) / (HISTORY - 1)).toFixed(1)},${(height - 2 - (height - 4) * v / max).toFixed(1)}`).join(" ");
}
function drawMain() {
  const ins = state.samples.map((s) => s.in_bps), outs = state.samples.map((s) => s.out_bps);
  const max = Math.max(1000, ...ins, ...outs);
  $("line-in").setAttribute("points", points(ins, max, 600, 160));
  $("line-out").setAttribute("points", points(outs, max, 600, 160));
  $("chart-max").textContent = `top: ${rate(max)}`;
  $("chart-window").textContent = `(last ${state.samples.length} samples)`;
}
function sparkline(key) {
  const series = state.peerSeries.get(key) || [];
  const max = Math.max(1000, ...series);
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 120 24");
  svg.setAttribute("preserveAspectRatio", "none");
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("class", "in");
  line.setAttribute("points", series.map((v, i) => `${(120 * (HISTORY - series.length + i) / (HISTORY - 1)).toFixed(1)},${(22 - 20 * v / max).toFixed(1)}`).join(" "));
  svg.append(line);
  return svg;
}

function addSample(s) {
  state.samples.push(s);
  if (state.samples.length > HISTORY) state.samples.shift();
  const seen = new Set(Object.keys(s.peers || {}));
  for (const [key, [rin, rout]] of Object.entries(s.peers || {})) {
    const series = state.peerSeries.get(key) || [];
    series.push(rin + rout);
    if (series.length > HISTORY) series.shift();
    state.peerSeries.set(key, series);
  }
  for (const [key, series] of state.peerSeries) if (!seen.has(key)) { series.push(0); if (series.length > HISTORY) series.shift(); }
  $("rate-in").textContent = rate(s.in_bps);
  $("rate-out").textContent = rate(s.out_bps);
  if (s.peers_connected != null) $("peers-connected").textContent = s.peers_connected;
  if (s.findings_open != null) $("findings-open").textContent = s.findings_open;
  drawMain();
}

// ---- panels ----------------------------------------------------------------------------------------------
async function loadStatus() {
  const st = await api("/api/v1/status");
  $("kind").textContent = st.kind;
  $("identity").textContent = `${short(st.public_key)}…` + (st.overlay ? `  ·  ${st.overlay}` : "") + `  ·  up ${Math.round(st.uptime_s)} s`;
  $("peers-connected").textContent = st.peers_connected;
  $("findings-open").textContent = st.findings_open;
  const d = st.directory || {};
  $("sync").textContent = d.synced_block != null ? `block ${d.synced_block}` : "–";
  $("sync").className = "big " + (d.error ? "bad" : "ok");
}

async function loadPeers() {
  const { peers } = await api("/api/v1/peers");
  const last = state.samples[state.samples.length - 1] || { peers: {} };
  const body = $("peers").querySelector("tbody");
  body.replaceChildren(...peers.map((p) => {
    const r = (last.peers || {})[p.public_key] || [0, 0];
    const others = (p.relay_paths || []).map((x) => `${x.name} ${x.up ? (x.rtt_ms ?? "?") + " ms" : "down"}`).join(", ");
    return el("tr", { "data-key": p.public_key, "data-path": p.path || "" },
      el("td", { title: p.public_key }, short(p.public_key)), el("td", {}, p.overlay || "–"),
      el("td", { class: p.session === "established" ? "ok" : "warn" }, p.session || "–"),
      el("td", {}, p.path || "–"), el("td", {}, p.rtt_ms != null ? `${p.rtt_ms} ms` : "–"),
      el("td", { class: "muted" }, others || "–"), el("td", {}, rate(r[0] + r[1])),
      el("td", {}, sparkline(p.public_key)));
  }));
  if (!peers.length) body.append(el("tr", {}, el("td", { colspan: 8, class: "muted" }, "no peers yet")));
}

async function loadFindings() {
  const f = await api("/api/v1/findings");
  const items = [...f.recent].reverse().slice(0, 20);
  $("findings").replaceChildren(...(items.length ? items.map((x) => el("li", { class: `sev-${x.severity}`, "data-kind": x.kind },
    el("div", {}, el("strong", {}, `${x.severity} · ${x.kind}`), x.open ? "  (open)" : "  (closed)"),
    el("div", {}, x.summary), el("div", { class: "action" }, `→ ${x.action}`)))
    : [el("li", { class: "muted" }, "no findings: nothing unusual seen")]));
  $("findings-open").textContent = f.active.length;
}

async function loadSuggestions() {
  const s = await api("/api/v1/agents/suggestions");
  $("suggestions").replaceChildren(...(s.optimizations.length ? s.optimizations.map((o) => el("li", {},
    el("div", {}, o.summary), el("div", { class: "action" }, `→ ${o.action}`)))
    : [el("li", { class: "muted" }, "no changes suggested: every peer is on its best path")]));
}

async function loadEarnings() {
  const e = await api("/api/v1/earnings");
  $("earnings").textContent = JSON.stringify(e, null, 2);
}

async function loadEvents() {
  const { events } = await api(`/api/v1/events?since=${state.lastEvent}`);
  const list = $("events");
  for (const e of events) {
    state.lastEvent = Math.max(state.lastEvent, e.seq);
    if (e.kind === "log" && e.level === "DEBUG") continue;
    const t = new Date(e.t * 1000).toLocaleTimeString();
    list.prepend(el("li", { class: e.level === "WARNING" || e.level === "ERROR" ? "warn" : "" }, `${t}  ${e.kind}: ${e.message}`));
  }
  while (list.children.length > 100) list.lastChild.remove();
}

async function loadHistory() {
  const { samples } = await api(`/api/v1/traffic?seconds=${HISTORY}`);
  for (const s of samples.slice(-HISTORY)) addSample(s);
}

// ---- live stream ---------------------------------------------------------------------------------------
async function stream() {
  for (;;) {
    try {
      const res = await fetch("/api/v1/stream", { headers: { Authorization: `Bearer ${state.token}` } });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      setLive(true);
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          handle(buffer.slice(0, cut));
          buffer = buffer.slice(cut + 2);
        }
      }
    } catch (err) { /* reconnect below */ }
    setLive(false);
    await new Promise((r) => setTimeout(r, 2000));
  }
}
function setLive(on) { state.streamOpen = on; $("conn").className = `dot ${on ? "on" : "off"}`; }
function handle(block) {
  let event = "message", data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith("event: ")) event = line.slice(7);
    else if (line.startsWith("data: ")) data += line.slice(6);
  }
  if (!data) return;
  const msg = JSON.parse(data);
  if (event === "sample") {
    addSample(msg);
    if (msg.last_event > state.lastEvent) loadEvents().catch(() => {});
  } else if (event === "finding") {
    loadFindings().catch(() => {});
  }
}

async function refresh() {
  await Promise.all([loadStatus(), loadPeers(), loadFindings(), loadEarnings()]);
}

async function start() {
  state.token = readToken();
  if (!state.token) { showLogin(); return; }
  try {
    await loadHistory();
    await refresh();
    await Promise.all([loadEvents(), loadSuggestions()]);
  } catch (err) { if (err.message !== "unauthorized") $("identity").textContent = `error: ${err.message}`; return; }
  $("login").hidden = true;
  $("app").hidden = false;
  stream();
  setInterval(() => refresh().catch(() => {}), 2000);
  setInterval(() => loadSuggestions().catch(() => {}), 10000);
}

document.addEventListener("DOMContentLoaded", () => {
  $("login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem("shadowmesh-token", $("token").value.trim());
    start();
  });
  start();
});
