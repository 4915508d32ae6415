// The Exodus operator console: plain JavaScript, no build step. Every call goes to the REST API or the stream
// with the caller's own credential, so the API decides what is shown and allowed; the page only hides controls
// the caller's roles would be refused (GET /api/v1/me says which).
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const state = {
  token: sessionStorage.getItem("exodus.token") || "",
  me: null,
  since: null, // the stream position to resume from
  streamUp: false,
  orders: new Map(), // orderId -> order (blotter)
  selected: new Set(),
  filters: { status: "", account: "", symbol: "", broker: "", clientId: "" },
  onEvent: null, // the current page's stream handler
  rendered: null, // the HTML the breaks page shows (an event that changes nothing does not re-render it)
};
const ACTIVE = ["RECEIVED", "PENDING_NEW", "ACCEPTED", "PARTIALLY_FILLED", "PENDING_CANCEL", "PENDING_UPDATE"];

function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}
function can(permission) {
  return !!state.me && state.me.permissions.includes(permission);
}
function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const utc = d.toISOString().replace("T", " ").slice(0, 19) + "Z";
  return `<time datetime="${esc(iso)}" title="${esc(d.toLocaleString())} (local)">${esc(utc)}</time>`;
}
function num(value, digits) {
  if (value === null || value === undefined || value === "") return "";
  const n = Number(value);
  if (!Number.isFinite(n)) return esc(value);
  return esc(digits === undefined ? String(value) : n.toFixed(digits));
}
function badge(status) {
  return `<span class="st st-${esc(status)}">${esc(status)}</span>`;
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.message || body.detail)) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { ...options, headers, body: options.body === undefined ? undefined : JSON.stringify(options.body) });
  const text = await r.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = { message: text }; }
  if (!r.ok) {
    if (r.status === 401) showLogin("Your credential was refused (401). Sign in again.");
    throw new ApiError(r.status, body);
  }
  return body;
}

function banner(message, ok = false) {
  const el = $("#banner");
  el.textContent = message;
  el.className = ok ? "ok" : "";
  el.hidden = !message;
  if (ok) setTimeout(() => { if (el.textContent === message) el.hidden = true; }, 4000);
}
function failed(e) {
  const reasons = (e.body && e.body.reasons) || [];
  banner(reasons.length ? reasons.map((r) => r.message).join("; ") : e.message);
}

// ------------------------------------------------------------------------------------------------ sign-in

function showLogin(message) {
  $("#login").hidden = false;
  $("#page").hidden = true;
  $("#login-error").textContent = message || "";
}

$("#login").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  state.token = $("#token").value.trim();
  sessionStorage.setItem("exodus.token", state.token);
  await start();
});
$("#logout").addEventListener("click", () => {
  sessionStorage.removeItem("exodus.token");
  location.reload();
});

async function start() {
  try {
    state.me = await api("/api/v1/me");
  } catch (e) {
    if (e.status !== 401) showLogin(`The API refused: ${e.message}`);
    return;
  }
  $("#login").hidden = true;
  $("#page").hidden = false;
  $("#who").textContent = `${state.me.name} (${state.me.roles.join(", ")})${state.me.authDisabled ? " — authentication disabled" : ""}`;
  $("#logout").hidden = state.me.authDisabled;
  stream();
  refreshGlobalState();
  route();
}

// ------------------------------------------------------------------------------------------------ the stream

async function stream() {
  if (!can("orders:read")) {
    setStream(false, "stream: not available to this role");
    return;
  }
  for (;;) {
    try {
      const query = state.since === null ? "" : `?since=${state.since}`;
      const headers = { Accept: "text/event-stream" };
      if (state.token) headers.Authorization = `Bearer ${state.token}`;
      const r = await fetch(`/api/v1/stream${query}`, { headers });
      if (r.status === 410) { // the position was pruned: start live again and reload what the page shows
        resetStream("the stream no longer holds the events after the last one this page saw");
        continue;
      }
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      const reader = r.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const frame = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const data = frame.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
          if (data) onMessage(JSON.parse(data));
        }
      }
      setStream(false, "stream: disconnected, reconnecting");
    } catch (e) {
      setStream(false, `stream: disconnected (${e.message}), reconnecting`);
    }
    await new Promise((resolve) => setTimeout(resolve, 1500));
  }
}

function resetStream(why) {
  state.since = null;
  setStream(false, "stream: reloading");
  banner(`Stream reset: ${why}. The page was reloaded from the API.`);
  if (state.me) route();
}

function setStream(up, text) {
  state.streamUp = up;
  const el = $("#stream-state");
  el.textContent = text;
  el.className = `pill ${up ? "up" : "down"}`;
}

function onMessage(m) {
  if (m.type === "hello") {
    setStream(true, "stream: live");
    if (state.since === null) state.since = m.seq;
  } else if (m.type === "heartbeat") {
    state.since = m.seq;
    setStream(true, "stream: live");
  } else if (m.type === "reset") {
    resetStream(m.message);
  } else if (m.type === "lagging") {
    state.since = m.seq;
    setStream(false, "stream: fell behind, resuming");
  } else if (m.type === "event") {
    state.since = m.seq;
    if (m.topic === "trading_state") refreshGlobalState();
    if (state.onEvent) state.onEvent(m);
  }
}

async function refreshGlobalState() {
  const el = $("#global-state");
  if (!can("trading-state:read")) { el.hidden = true; return; }
  try {
    const states = await api("/api/v1/operator/trading-state");
    const global = states.find((s) => s.scope === "GLOBAL");
    const halted = states.filter((s) => s.state !== "ACTIVE");
    el.hidden = false;
    el.innerHTML = `global: ${badge(global ? global.state : "ACTIVE")}${halted.length ? ` · ${halted.length} restricted` : ""}`;
    el.dataset.state = global ? global.state : "ACTIVE";
  } catch { el.hidden = true; }
}

// ------------------------------------------------------------------------------------------------ pages

const PAGES = { blotter, order, trading, risk, positions, breaks, brokers };

function route() {
  const [page, arg] = (location.hash.replace(/^#\//, "") || "blotter").split("/");
  const render = PAGES[page] || blotter;
  document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("active", a.dataset.page === page));
  state.onEvent = null;
  state.rendered = null;
  $("#page").innerHTML = "";
  render(arg ? decodeURIComponent(arg) : undefined).catch(failed);
}
window.addEventListener("hashchange", () => { if (state.me) route(); });
document.addEventListener("keydown", (ev) => {
  if (ev.key === "/" && !/INPUT|TEXTAREA|SELECT/.test(document.activeElement.tagName)) {
    const first = $("#page input, #page select");
    if (first) { ev.preventDefault(); first.focus(); }
  }
  if (ev.key === "Escape") banner("");
});

// --- blotter

function orderRow(o) {
  const checked = state.selected.has(o.internalOrderId) ? "checked" : "";
  const active = ACTIVE.includes(o.status);
  return `<tr data-id="${esc(o.internalOrderId)}" data-status="${esc(o.status)}">
    <td>${active && can("orders:cancel") ? `<input type="checkbox" class="pick" aria-label="select ${esc(o.internalOrderId)}" ${checked}>` : ""}</td>
    <td>${when(o.createdAt)}</td>
    <td><a href="#/order/${esc(o.internalOrderId)}">${esc(o.internalOrderId)}</a></td>
    <td>${esc(o.clientId)}</td><td>${esc(o.account)}</td><td>${esc(o.symbol)}</td><td>${esc(o.side)}</td>
    <td>${esc(o.type)}</td><td class="num">${num(o.qty)}</td><td class="num">${num(o.price)}</td>
    <td class="num filled">${num(o.filledQty)}</td><td class="num">${num(o.avgPrice)}</td>
    <td class="status">${badge(o.status)}</td><td>${esc(o.broker)}</td></tr>`;
}

function matchesFilters(o) {
  const f = state.filters;
  return (!f.status || (f.status === "ACTIVE" ? ACTIVE.includes(o.status) : o.status === f.status))
    && (!f.account || o.account === f.account) && (!f.symbol || o.symbol === f.symbol.toUpperCase())
    && (!f.broker || o.broker === f.broker) && (!f.clientId || o.clientId === f.clientId);
}

async function blotter() {
  const f = state.filters;
  const statuses = ["", "ACTIVE", "RECEIVED", "ACCEPTED", "PARTIALLY_FILLED", "FILLED", "CANCELED", "REJECTED", "DENIED", "EXPIRED"];
  $("#page").innerHTML = `<h1>Blotter</h1>
    <form class="inline" id="filters">
      <label>Status <select name="status">${statuses.map((s) => `<option ${s === f.status ? "selected" : ""} value="${s}">${s || "any"}</option>`).join("")}</select></label>
      ${["account", "symbol", "broker", "clientId"].map((k) => `<label>${k === "clientId" ? "Client" : k[0].toUpperCase() + k.slice(1)} <input name="${k}" value="${esc(f[k])}" size="12"></label>`).join("")}
      <button type="submit">Filter</button>
      ${can("orders:cancel") ? `<button type="button" id="cancel-selected" class="danger">Cancel selected</button>` : ""}
    </form>
    <table id="blotter"><thead><tr><th></th><th>Created (UTC)</th><th>Order</th><th>Client</th><th>Account</th><th>Symbol</th><th>Side</th><th>Type</th>
      <th class="num">Qty</th><th class="num">Price</th><th class="num">Filled</th><th class="num">Avg</th><th>Status</th><th>Broker</th></tr></thead>
      <tbody></tbody></table>`;
  $("#filters").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const data = new FormData(ev.target);
    for (const k of Object.keys(f)) f[k] = String(data.get(k) || "").trim();
    blotter().catch(failed);
  });
  const cancel = $("#cancel-selected");
  if (cancel) cancel.addEventListener("click", cancelSelected);
  $("#blotter tbody").addEventListener("change", (ev) => {
    if (!ev.target.classList.contains("pick")) return;
    const id = ev.target.closest("tr").dataset.id;
    if (ev.target.checked) state.selected.add(id); else state.selected.delete(id);
  });
  const params = new URLSearchParams({ limit: "200" });
  if (f.status && f.status !== "ACTIVE") params.append("status", f.status);
  if (f.status === "ACTIVE") ACTIVE.forEach((s) => params.append("status", s));
  for (const k of ["account", "symbol", "broker", "clientId"]) if (f[k]) params.set(k, f[k]);
  const page = await api(`/api/v1/orders?${params}`);
  state.orders = new Map(page.data.map((o) => [o.internalOrderId, o]));
  $("#blotter tbody").innerHTML = page.data.map(orderRow).join("");
  state.onEvent = async (m) => {
    if (m.topic !== "order" || !m.orderId) return;
    let o = state.orders.get(m.orderId);
    if (o) {
      const d = m.data.order || {};
      o = { ...o, status: d.status || o.status, filledQty: d.filledQty ?? o.filledQty, avgPrice: d.avgPrice ?? o.avgPrice,
            qty: d.qty ?? o.qty, price: d.price ?? o.price };
    } else {
      try { o = await api(`/api/v1/orders/${encodeURIComponent(m.orderId)}`); } catch { return; }
    }
    state.orders.set(m.orderId, o);
    const tbody = $("#blotter tbody");
    if (!tbody) return;
    const existing = tbody.querySelector(`tr[data-id="${CSS.escape(m.orderId)}"]`);
    if (!matchesFilters(o)) { if (existing) existing.remove(); return; }
    const tmp = document.createElement("tbody");
    tmp.innerHTML = orderRow(o);
    const row = tmp.firstElementChild;
    if (existing) { // an event that changes nothing the row shows leaves it (and a click on it) alone
      const shown = existing.cloneNode(true);
      shown.classList.remove("flash");
      if (!shown.classList.length) shown.removeAttribute("class");
      if (shown.isEqualNode(row)) return;
    }
    row.classList.add("flash");
    if (existing) existing.replaceWith(row); else tbody.prepend(row);
  };
}

async function cancelSelected() {
  const ids = [...state.selected].filter((id) => ACTIVE.includes((state.orders.get(id) || {}).status));
  if (!ids.length) { banner("Select working orders first."); return; }
  if (!confirm(`Cancel ${ids.length} order(s)?\n${ids.join("\n")}`)) return;
  const failures = [];
  for (const id of ids) {
    try { await api(`/api/v1/orders/${id}/cancel`, { method: "POST", body: { reason: "canceled from the console" } }); }
    catch (e) { failures.push(`${id}: ${e.message}`); }
    state.selected.delete(id);
  }
  banner(failures.length ? `Some cancels were refused: ${failures.join("; ")}` : `Cancel requested for ${ids.length} order(s).`, !failures.length);
}

// --- order page

function riskDecision(o, deny) {
  const r = o.risk;
  const valued = r && r.referencePrice != null
    ? ` at reference ${num(r.referencePrice)}${r.notional != null ? `, notional ${num(r.notional, 2)}` : ""}` : "";
  const at = r && r.decidedAt ? ` (${when(r.decidedAt)})` : "";
  const reasons = r && r.reasons && r.reasons.length ? r.reasons.map((x) => `<li><b>${esc(x.code)}</b>: ${esc(x.message)}${x.field ? ` <i>(${esc(x.field)})</i>` : ""}</li>`)
    : deny.flatMap((e) => Object.entries(e.data || {}).map(([code, msg]) => `<li><b>${esc(code)}</b>: ${esc(msg)}</li>`).concat(Object.keys(e.data || {}).length ? [] : [`<li>${esc(e.detail)}</li>`]));
  if (r && r.approved) return `<p id="risk-decision">Approved${valued}${at}.</p>`;
  if (r || deny.length || o.status === "DENIED") return `<p id="risk-decision">Denied${at}.</p>${reasons.length ? `<ul>${reasons.join("")}</ul>` : `<p>${esc(o.reason || "")}</p>`}`;
  return `<p id="risk-decision">Not decided yet.</p>`;
}

async function order(id) {
  const o = await api(`/api/v1/orders/${encodeURIComponent(id)}`);
  const active = ACTIVE.includes(o.status);
  const deny = (o.events || []).filter((e) => e.kind === "DENY");
  const flagged = (o.events || []).filter((e) => /BREAK|OVERFILL|OUT_OF_STATE|IGNORED/.test(e.kind));
  const breaks = can("breaks:read")
    ? (await api(`/api/v1/breaks?orderId=${encodeURIComponent(o.internalOrderId)}&status=all&limit=500`)).data : [];
  $("#page").innerHTML = `<h1>Order ${esc(o.internalOrderId)} ${badge(o.status)}</h1>
    <dl class="terms">
      <dt>Client / order id</dt><dd>${esc(o.clientId)} / ${esc(o.clientOrderId)}</dd>
      <dt>Account</dt><dd>${esc(o.account)}</dd><dt>Instrument</dt><dd>${esc(o.side)} ${num(o.qty)} ${esc(o.symbol)}</dd>
      <dt>Type / TIF</dt><dd>${esc(o.type)} ${o.price ? "@ " + num(o.price) : ""} ${o.stopPrice ? "stop " + num(o.stopPrice) : ""} / ${esc(o.timeInForce)}</dd>
      <dt>Filled</dt><dd class="num" style="text-align:left">${num(o.filledQty)} (leaves ${num(o.leavesQty)}) avg ${num(o.avgPrice)}</dd>
      <dt>Broker</dt><dd>${esc(o.broker)} ${esc(o.brokerOrderId || "")}</dd>
      <dt>Reason</dt><dd>${esc(o.reason || "")}</dd><dt>Flags</dt><dd>${esc((o.flags || []).join(", "))}</dd>
      <dt>Created / updated</dt><dd>${when(o.createdAt)} / ${when(o.updatedAt)}</dd>
      <dt>Temporal</dt><dd><a href="${esc(state.me.temporalUi)}/${esc(encodeURIComponent(o.workflowId))}" target="_blank" rel="noopener">${esc(o.workflowId)}</a></dd>
    </dl>
    <h2>Risk decision</h2>${riskDecision(o, deny)}
    ${active ? `<h2>Actions</h2><form class="inline" id="amend">
        ${can("orders:cancel") ? `<button type="button" id="cancel" class="danger">Cancel order</button>` : ""}
        ${can("orders:amend") ? `<label>New qty <input name="qty" size="8"></label><label>New price <input name="price" size="8"></label><button type="submit">Amend</button>` : ""}
      </form>` : ""}
    <h2>Fills</h2>
    <table><thead><tr><th>Exec id</th><th class="num">Qty</th><th class="num">Price</th><th class="num">Fee</th><th>Filled (UTC)</th></tr></thead>
      <tbody>${(o.fills || []).map((f) => `<tr><td>${esc(f.execId)}</td><td class="num">${num(f.qty)}</td><td class="num">${num(f.price)}</td><td class="num">${num(f.fee)}</td><td>${when(f.filledAt)}</td></tr>`).join("")}</tbody></table>
    <h2>Breaks</h2>${breaks.length ? breakTable(breaks, { order: false }) : `<p id="no-breaks">${can("breaks:read") ? "No break recorded for this order." : "Your roles do not include reading breaks."}</p>`}
    ${flagged.length ? `<p>On the timeline:</p><ul>${flagged.map((e) => `<li>${esc(e.kind)}: ${esc(e.detail)}</li>`).join("")}</ul>` : ""}
    <h2>Timeline</h2>
    <table><thead><tr><th class="num">#</th><th>At (UTC)</th><th>Kind</th><th>Status</th><th>Detail</th><th>Actor</th></tr></thead>
      <tbody>${(o.events || []).map((e) => `<tr><td class="num">${esc(e.seq)}</td><td>${when(e.at)}</td><td>${esc(e.kind)}</td><td>${badge(e.status)}</td><td>${esc(e.detail)}</td><td>${esc(e.actor || "")}</td></tr>`).join("")}</tbody></table>`;
  const cancel = $("#cancel");
  if (cancel) cancel.addEventListener("click", async () => {
    if (!confirm(`Cancel order ${o.internalOrderId}?`)) return;
    try { await api(`/api/v1/orders/${o.internalOrderId}/cancel`, { method: "POST", body: { reason: "canceled from the console" } }); banner("Cancel requested.", true); }
    catch (e) { failed(e); }
  });
  const amend = $("#amend");
  if (amend) amend.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const data = new FormData(amend);
    const body = {};
    if (data.get("qty")) body.qty = String(data.get("qty"));
    if (data.get("price")) body.price = String(data.get("price"));
    if (!Object.keys(body).length || !confirm(`Amend order ${o.internalOrderId}: ${JSON.stringify(body)}?`)) return;
    try { await api(`/api/v1/orders/${o.internalOrderId}`, { method: "PATCH", body }); banner("Amend sent.", true); order(id).catch(failed); }
    catch (e) { failed(e); }
  });
  wireResolve(() => order(id));
  state.onEvent = (m) => { if (m.orderId === o.internalOrderId) order(id).catch(failed); };
}

// --- trading state

async function trading() {
  const states = can("trading-state:read") ? await api("/api/v1/operator/trading-state") : [];
  const restrict = can("trading-state:restrict");
  const lift = can("trading-state:lift");
  const options = ["HALTED", "REDUCING"].concat(lift ? ["ACTIVE"] : []);
  $("#page").innerHTML = `<h1>Trading state</h1>
    <table id="states"><thead><tr><th>Scope</th><th>Key</th><th>State</th><th>Reason</th><th>By</th><th>At (UTC)</th></tr></thead>
      <tbody>${states.map((s) => `<tr data-scope="${esc(s.scope)}" data-key="${esc(s.scopeKey)}"><td>${esc(s.scope)}</td><td>${esc(s.scopeKey)}</td><td>${badge(s.state)}</td><td>${esc(s.reason)}</td><td>${esc(s.updatedBy)}</td><td>${when(s.updatedAt)}</td></tr>`).join("")}</tbody></table>
    ${restrict ? `<h2>Set a trading state (kill switch)</h2>
    <form class="inline" id="set-state">
      <label>Scope <select name="scope"><option>GLOBAL</option><option>ACCOUNT</option><option>SYMBOL</option><option>BROKER</option></select></label>
      <label>Key <input name="key" size="12" placeholder="empty for GLOBAL"></label>
      <label>State <select name="state">${options.map((s) => `<option>${s}</option>`).join("")}</select></label>
      <label>Reason <input name="reason" size="30" required></label>
      <button type="submit" class="danger">Apply</button>
    </form>` : ""}
    ${can("orders:cancel-all") ? `<h2>Cancel all working orders</h2>
    <form class="inline" id="cancel-all">
      <label>Scope <select name="scope"><option>all</option><option>account</option><option>client</option><option>symbol</option><option>broker</option></select></label>
      <label>Value <input name="value" size="12" placeholder="empty for all"></label>
      <label>Reason <input name="reason" size="30" required></label>
      <button type="submit" class="danger">Cancel all</button>
    </form>` : ""}`;
  const set = $("#set-state");
  if (set) set.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const d = new FormData(set);
    const body = { scope: d.get("scope"), state: d.get("state"), reason: d.get("reason") };
    if (d.get("key")) body.key = d.get("key");
    if (!confirm(`Set ${body.scope}${body.key ? " " + body.key : ""} to ${body.state}?`)) return;
    try { await api("/api/v1/operator/trading-state", { method: "POST", body }); banner(`${body.scope} is ${body.state}.`, true); refreshGlobalState(); trading().catch(failed); }
    catch (e) { failed(e); }
  });
  const all = $("#cancel-all");
  if (all) all.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const d = new FormData(all);
    const body = { scope: d.get("scope"), reason: d.get("reason") };
    if (d.get("value")) body.value = d.get("value");
    if (!confirm(`Cancel every working order (${body.scope}${body.value ? " " + body.value : ""})?`)) return;
    try { const r = await api("/api/v1/operator/cancel-all", { method: "POST", body }); banner(`Cancel-all sent: ${JSON.stringify(r)}`, true); }
    catch (e) { failed(e); }
  });
  state.onEvent = (m) => { if (m.topic === "trading_state") trading().catch(failed); };
}

// --- risk

async function risk() {
  if (!can("risk:read")) {
    $("#page").innerHTML = `<h1>Risk</h1><p>Your roles do not include reading the risk policy.</p>`;
    return;
  }
  const [policy, history, reservations] = await Promise.all([
    api("/api/v1/risk/policy"), api("/api/v1/risk/policy/history?limit=50"), api("/api/v1/risk/reservations"),
  ]);
  const editable = can("risk:write");
  $("#page").innerHTML = `<h1>Risk</h1>
    <h2>Policy in force</h2>
    ${editable ? `<form id="policy-edit"><textarea name="policy" rows="16" cols="100" spellcheck="false">${esc(JSON.stringify(policy.policy ?? policy, null, 2))}</textarea><br>
      <label>Reason <input name="reason" size="40" required></label> <button type="submit">Save new version</button></form>`
      : `<pre id="policy-view">${esc(JSON.stringify(policy, null, 2))}</pre>`}
    <h2>History</h2>
    <table><thead><tr><th class="num">Version</th><th>Scope</th><th>Key</th><th>Who</th><th>When (UTC)</th><th>Why</th></tr></thead>
      <tbody>${history.map((h) => `<tr><td class="num">${esc(h.version)}</td><td>${esc(h.scope)}</td><td>${esc(h.key || "")}</td><td>${esc(h.changedBy)}</td><td>${when(h.changedAt)}</td><td>${esc(h.reason)}</td></tr>`).join("")}</tbody></table>
    <h2>Reservations per account</h2>
    <table id="reservation-totals"><thead><tr><th>Account</th><th class="num">Orders</th><th class="num">Notional</th><th class="num">Margin</th></tr></thead>
      <tbody>${(reservations.totals || []).map((t) => `<tr><td>${esc(t.account)}</td><td class="num">${num(t.orders)}</td><td class="num">${num(t.notional, 2)}</td><td class="num">${num(t.margin, 2)}</td></tr>`).join("") || `<tr><td colspan="4" class="muted">No working order holds anything.</td></tr>`}</tbody></table>
    <h2>Reservations of working orders</h2>
    <table id="reservations"><thead><tr><th>Order</th><th>Account</th><th>Client</th><th>Symbol</th><th>Side</th><th class="num">Open qty</th><th class="num">Price</th><th class="num">Notional</th><th class="num">Margin</th><th>Since (UTC)</th></tr></thead>
      <tbody>${(reservations.data || []).map((r) => `<tr><td><a href="#/order/${esc(r.order_id)}">${esc(r.order_id)}</a></td><td>${esc(r.account)}</td><td>${esc(r.client_id)}</td><td>${esc(r.symbol)}</td><td>${esc(r.side)}</td>
        <td class="num">${num(r.qty_open)}</td><td class="num">${num(r.price)}</td><td class="num">${num(r.notional, 2)}</td><td class="num">${num(r.margin, 2)}</td><td>${when(r.created_at)}</td></tr>`).join("")}</tbody></table>`;
  const form = $("#policy-edit");
  if (form) form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const d = new FormData(form);
    let doc;
    try { doc = JSON.parse(String(d.get("policy"))); } catch (e) { banner(`policy: not JSON (${e.message})`); return; }
    if (!confirm("Store this policy as a new version?")) return;
    try { await api("/api/v1/risk/policy", { method: "PUT", body: { policy: doc, reason: d.get("reason") } }); banner("Policy stored.", true); risk().catch(failed); }
    catch (e) { failed(e); }
  });
}

// --- positions

async function positions() {
  const [book, quotes] = await Promise.all([
    api("/api/v1/positions"), can("market-data:read") ? api("/api/v1/quotes").catch(() => null) : null,
  ]);
  const mids = {};
  for (const q of (quotes && (quotes.data || quotes)) || []) {
    if (q.bid && q.ask) mids[q.symbol] = (Number(q.bid) + Number(q.ask)) / 2;
  }
  const rows = book.data.map((p) => {
    const mid = mids[p.symbol];
    const unreal = mid !== undefined && p.avgPrice ? (mid - Number(p.avgPrice)) * Number(p.qty) : null;
    return `<tr><td>${esc(p.account)}</td><td>${esc(p.symbol)}</td><td class="num">${num(p.qty)}</td><td class="num">${num(p.avgPrice)}</td>
      <td class="num">${mid === undefined ? "" : num(mid, 4)}</td><td class="num">${num(p.realizedPnl, 2)}</td><td class="num">${unreal === null ? "n/a" : num(unreal, 2)}</td></tr>`;
  });
  $("#page").innerHTML = `<h1>Positions and P&amp;L</h1>
    <table><thead><tr><th>Account</th><th>Symbol</th><th class="num">Qty</th><th class="num">Avg price</th><th class="num">Mid</th><th class="num">Realized</th><th class="num">Unrealized</th></tr></thead>
      <tbody>${rows.join("")}</tbody></table>
    <h2>Cash</h2><table><thead><tr><th>Account</th><th>Currency</th><th class="num">Balance</th></tr></thead>
      <tbody>${(book.cash || []).map((c) => `<tr><td>${esc(c.account)}</td><td>${esc(c.currency)}</td><td class="num">${num(c.balance, 2)}</td></tr>`).join("")}</tbody></table>`;
  state.onEvent = (m) => { if (m.kind === "FILL" || m.kind === "PARTIAL_FILL") positions().catch(failed); };
}

// --- breaks and unmatched reports

function breakTable(rows, { order = true } = {}) {
  const resolver = can("breaks:resolve");
  return `<table class="breaks"><thead><tr><th class="num">#</th><th>Detected (UTC)</th>${order ? "<th>Order</th><th>Account</th>" : ""}<th>Broker</th><th>Kind</th><th>Detail</th><th>State</th><th>Resolution</th></tr></thead>
    <tbody>${rows.map((b) => `<tr data-break="${esc(b.id)}"><td class="num">${esc(b.id)}</td><td>${when(b.detectedAt)}</td>
      ${order ? `<td>${b.orderId ? `<a href="#/order/${esc(b.orderId)}">${esc(b.orderId)}</a>` : `<span class="muted">none</span>`}</td><td>${esc(b.account || "")}</td>` : ""}
      <td>${esc(b.broker)}</td><td>${esc(b.kind)}</td><td class="wrap">${esc(b.detail)}</td>
      <td>${badge(b.resolvedAt ? "RESOLVED" : b.acknowledgedAt ? "ACKNOWLEDGED" : "OPEN")}</td>
      <td class="wrap">${b.resolvedAt ? `${esc(b.resolution)} <span class="muted">— ${esc(b.resolvedBy)}, ${when(b.resolvedAt)}</span>`
        : `${b.acknowledgedAt ? `<span class="ack">${esc(b.acknowledgement)} <span class="muted">— ${esc(b.acknowledgedBy)}, ${when(b.acknowledgedAt)}</span></span> ` : ""}${resolver
          ? `${b.acknowledgedAt ? "" : `<button type="button" class="acknowledge" data-id="${esc(b.id)}">Acknowledge…</button> `}<button type="button" class="resolve" data-kind="breaks" data-id="${esc(b.id)}">Resolve…</button>` : ""}`}</td></tr>`).join("")}</tbody></table>`;
}

function unmatchedTable(rows) {
  const resolver = can("breaks:resolve");
  return `<table id="unmatched"><thead><tr><th class="num">#</th><th>Received (UTC)</th><th>Broker</th><th>Exec id</th><th>Client order id</th><th>Why no order took it</th><th>State</th><th>Resolution</th></tr></thead>
    <tbody>${rows.map((u) => `<tr data-unmatched="${esc(u.id)}"><td class="num">${esc(u.id)}</td><td>${when(u.receivedAt)}</td><td>${esc(u.broker)}</td>
      <td>${esc(u.execId)}</td><td>${esc(u.clientOrderId)}</td><td class="wrap" title="${esc(JSON.stringify(u.report))}">${esc(u.reason)}</td>
      <td>${badge(u.resolvedAt ? "RESOLVED" : "OPEN")}</td>
      <td class="wrap">${u.resolvedAt ? `${esc(u.resolution)} <span class="muted">— ${esc(u.resolvedBy)}, ${when(u.resolvedAt)}</span>`
        : resolver ? `<button type="button" class="resolve" data-kind="unmatched-reports" data-id="${esc(u.id)}">Resolve…</button>` : ""}</td></tr>`).join("")}</tbody></table>`;
}

function wireResolve(reload) {
  document.querySelectorAll("#page button.acknowledge").forEach((button) => button.addEventListener("click", async () => {
    const { id } = button.dataset;
    const note = prompt(`Acknowledge break #${id}: what is being done? (kept with it and in the audit log)`);
    if (note === null) return;
    if (!note.trim()) { banner("A note is required to acknowledge."); return; }
    try {
      await api(`/api/v1/breaks/${id}/acknowledge`, { method: "POST", body: { reason: note.trim() } });
      banner(`Acknowledged break #${id}.`, true);
      reload().catch(failed);
    } catch (e) { failed(e); }
  }));
  document.querySelectorAll("#page button.resolve").forEach((button) => button.addEventListener("click", async () => {
    const { kind, id } = button.dataset;
    const what = kind === "breaks" ? `break #${id}` : `unmatched report #${id}`;
    const reason = prompt(`Resolve ${what}: why? (kept with it and in the audit log)`);
    if (reason === null) return;
    if (!reason.trim()) { banner("A reason is required to resolve."); return; }
    try {
      await api(`/api/v1/${kind}/${id}/resolve`, { method: "POST", body: { reason: reason.trim() } });
      banner(`Resolved ${what}.`, true);
      reload().catch(failed);
    } catch (e) { failed(e); }
  }));
}

function runTable(rows) {
  return `<table id="reconciliations"><thead><tr><th>Finished (UTC)</th><th>Broker</th><th>Day</th><th>Compared</th><th>Differences</th><th class="num">New breaks</th><th>Report</th></tr></thead>
    <tbody>${rows.map((r) => `<tr data-run="${esc(r.id)}"><td>${when(r.finishedAt)}</td><td>${esc(r.broker)}</td><td>${esc(r.date)}</td><td>${esc(r.compared.join(", "))}</td>
      <td class="wrap">${Object.entries(r.counts).filter(([, n]) => n > 0).map(([k, n]) => `${esc(k)} <span class="num">${num(n)}</span>`).join(", ") || `<span class="muted">none</span>`}</td>
      <td class="num">${num(r.newBreaks)}</td><td><button type="button" class="run-csv" data-id="${esc(r.id)}">CSV</button></td></tr>`).join("")}</tbody></table>`;
}

async function downloadCsv(id) {
  const headers = state.token ? { Authorization: `Bearer ${state.token}` } : {};
  const r = await fetch(`/api/v1/reconciliations/${encodeURIComponent(id)}?format=csv`, { headers });
  if (!r.ok) throw new ApiError(r.status, { message: await r.text() });
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([await r.text()], { type: "text/csv" }));
  link.download = `${id}.csv`;
  link.click();
  URL.revokeObjectURL(link.href);
}

async function breaks() {
  if (!can("breaks:read")) {
    $("#page").innerHTML = `<h1>Breaks</h1><p>Your roles do not include reading breaks.</p>`;
    return;
  }
  const status = state.breakStatus || "open";
  const unmatchedStatus = status.endsWith("acknowledged") ? "open" : status;
  const firmOnly = (e) => (e.status === 403 ? null : Promise.reject(e));
  const [list, unmatched, runs] = await Promise.all([
    api(`/api/v1/breaks?status=${status}&limit=500`),
    api(`/api/v1/unmatched-reports?status=${unmatchedStatus}&limit=500`).catch(firmOnly),
    api("/api/v1/reconciliations?limit=20").catch(firmOnly),
  ]);
  const html = `<h1>Breaks and unmatched reports</h1>
    <form class="inline" id="break-filter"><label>Show <select name="status">${["open", "unacknowledged", "acknowledged", "resolved", "all"].map((s) => `<option ${s === status ? "selected" : ""}>${s}</option>`).join("")}</select></label></form>
    <h2>Reconciliation breaks <span class="muted">(${list.count}${list.nextBefore ? "+" : ""})</span></h2>
    ${list.data.length ? breakTable(list.data) : `<p id="no-breaks">No ${status === "all" ? "" : status + " "}break.</p>`}
    <h2>Unmatched reports</h2>
    ${unmatched === null ? `<p class="muted">Unmatched reports belong to no order: they are shown to firm-wide scopes only.</p>`
      : unmatched.data.length ? unmatchedTable(unmatched.data) : `<p id="no-unmatched">No ${status === "all" ? "" : unmatchedStatus + " "}unmatched report.</p>`}
    <h2>End-of-day reconciliation runs</h2>
    ${runs === null ? `<p class="muted">A reconciliation covers every account of its broker: runs are shown to firm-wide scopes only.</p>`
      : runs.data.length ? runTable(runs.data) : `<p id="no-runs">No reconciliation run yet.</p>`}`;
  // A stream event that changed nothing shown (another scope's break, a repeat) leaves the page as it is: replacing
  // it would take the button from under an operator's pointer mid-click.
  if (!location.hash.startsWith("#/breaks") || state.rendered === html) return;
  state.rendered = html;
  $("#page").innerHTML = html;
  document.querySelectorAll("#page button.run-csv").forEach((button) => button.addEventListener("click", () => downloadCsv(button.dataset.id).catch(failed)));
  $("#break-filter select").addEventListener("change", (ev) => { state.breakStatus = ev.target.value; breaks().catch(failed); });
  wireResolve(breaks);
  state.onEvent = (m) => { if (m.topic === "break" || m.topic === "unmatched") breaks().catch(failed); };
}

// --- broker health

function age(seconds) {
  if (seconds === null || seconds === undefined) return `<span class="muted">never</span>`;
  const s = Number(seconds);
  const text = s < 120 ? `${s.toFixed(1)} s` : s < 7200 ? `${(s / 60).toFixed(1)} min` : `${(s / 3600).toFixed(1)} h`;
  return `<span class="num">${esc(text)}</span>`;
}

async function brokers() {
  const h = await api("/api/v1/brokers/health");
  $("#page").innerHTML = `<h1>Broker health <span class="muted">as of ${when(h.at)}</span></h1>
    <h2>Sessions</h2>
    <table id="sessions"><thead><tr><th>Broker</th><th>Session</th><th>State</th><th>Detail</th><th>Since (UTC)</th><th class="num">Owner heartbeat</th><th class="num">Last successful call</th></tr></thead>
      <tbody>${h.sessions.map((s) => `<tr data-broker="${esc(s.broker)}"><td>${esc(s.broker)}</td><td>${esc(s.session)}</td><td>${badge(s.state)}</td><td class="wrap">${esc(s.detail)}</td>
        <td>${when(s.changedAt)}</td><td class="num" title="${esc(s.heartbeatAt)}">${age(s.heartbeatAgeSeconds)} ago</td>
        <td class="num">${s.lastCallAt ? `<span title="${esc(s.lastCallAt)}">${age(s.lastCallAgeSeconds)} ago</span>` : `<span class="muted">n/a</span>`}</td></tr>`).join("") || `<tr><td colspan="7" class="muted">No broker session recorded (the paper broker has none).</td></tr>`}</tbody></table>
    <h2>MetaTrader 5 terminals</h2>
    <table id="terminals"><thead><tr><th>Account</th><th>State</th><th>Login / server</th><th>EA</th><th class="num">Last heartbeat</th><th class="num">Timeout</th><th>Disconnected (UTC)</th></tr></thead>
      <tbody>${h.terminals.map((t) => `<tr data-account="${esc(t.account)}"><td>${esc(t.account)}</td><td>${badge(t.state)}</td><td>${esc(t.login ?? "")} ${esc(t.server || "")}</td><td>${esc(t.eaVersion || "")}</td>
        <td class="num">${t.lastHeartbeatAt ? `<span title="${esc(t.lastHeartbeatAt)}">${age(t.heartbeatAgeSeconds)} ago</span>` : age(null)}</td><td class="num">${num(t.heartbeatTimeoutSeconds)} s</td><td>${when(t.disconnectedAt)}</td></tr>`).join("") || `<tr><td colspan="7" class="muted">No MT5 bridge account.</td></tr>`}</tbody></table>
    <h2>Quotes per source</h2>
    <table id="quote-sources"><thead><tr><th>Source</th><th>State</th><th class="num">Symbols</th><th class="num">Stale</th><th class="num">Newest quote age</th></tr></thead>
      <tbody>${h.quotes.map((q) => `<tr data-source="${esc(q.source)}"><td>${esc(q.source)}</td><td>${badge(q.state)}</td><td class="num">${num(q.symbols)}</td><td class="num">${num(q.staleSymbols)}</td><td class="num">${age(q.newestAgeSeconds)}</td></tr>`).join("") || `<tr><td colspan="5" class="muted">No quote stored.</td></tr>`}</tbody></table>`;
  clearTimeout(state.healthTimer);
  state.healthTimer = setTimeout(() => { if (location.hash.startsWith("#/brokers")) brokers().catch(failed); }, 10000);
}

start();
