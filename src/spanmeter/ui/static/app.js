// spanmeter dashboard: reads the collector's own API; no build step, no dependencies.
// Data from the API is only ever put in the page as text (textContent), never as HTML.
"use strict";

const KEY_STORE = "spanmeter.key"; // sessionStorage: this tab only
const PAGE_SIZE = 25;
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

function key() { return sessionStorage.getItem(KEY_STORE); }

async function api(path, params = {}) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") query.set(name, value);
  }
  const headers = { accept: "application/json" };
  if (key()) headers.authorization = `Bearer ${key()}`; // a header, never the URL
  const url = query.toString() ? `${path}?${query}` : path;
  const response = await fetch(url, { headers });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
    throw new ApiError(response.status, message);
  }
  return path === "/metrics" ? response.text() : response.json();
}

// --- formatting ------------------------------------------------------------------------------
const integer = new Intl.NumberFormat("en-US");
function usd(text) { // exact decimal string from the API -> "$1,234.5678"; never through a float
  if (text === null || text === undefined) return "—";
  const [whole, fraction = ""] = String(text).split(".");
  const digits = fraction.length > 6 ? fraction.slice(0, 6) : fraction.padEnd(2, "0");
  const sign = whole.startsWith("-") ? "-" : "";
  return `${sign}$${integer.format(BigInt(whole.replace("-", "")))}.${digits}`;
}
function compact(n) {
  return new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 1 }).format(n);
}
function utcDay(ms) { return new Date(ms).toISOString().slice(0, 10); }
function utcTime(iso) { return iso ? iso.replace("T", " ").replace(/\.\d+Z$/, "Z") : "—"; }

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value; else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}
function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}
function empty(message) { return el("p", { class: "empty" }, message); }
function showError(error) {
  const box = $("error");
  box.textContent = error ? String(error.message || error) : "";
  box.hidden = !error;
}

// --- bar chart (SVG) ---------------------------------------------------------------------------
function niceMax(value) {
  if (value <= 0) return 1;
  const step = 10 ** Math.floor(Math.log10(value));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * step >= value) return m * step;
  return 10 * step;
}

function barChart(container, points, { unit, format, label }) {
  container.replaceChildren();
  if (!points.some((p) => p.value > 0)) {
    container.append(empty(`No ${label} in the last 90 days.`));
    return;
  }
  const width = 640, height = 250, left = 70, right = 12, top = 12, bottom = 44;
  const plotW = width - left - right, plotH = height - top - bottom;
  const max = niceMax(Math.max(...points.map((p) => p.value)));
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": `${label} per day` });
  for (let i = 0; i <= 4; i++) {
    const y = top + plotH - (plotH * i) / 4;
    chart.append(svg("line", { x1: left, x2: width - right, y1: y, y2: y, class: "grid" }));
    chart.append(svg("text", { x: left - 6, y: y + 4, "text-anchor": "end" }, format((max * i) / 4)));
  }
  const slot = plotW / points.length;
  points.forEach((p, i) => {
    const h = (p.value / max) * plotH;
    const bar = svg("rect", {
      x: left + i * slot + slot * 0.15, y: top + plotH - h, width: Math.max(slot * 0.7, 1), height: h, class: "bar",
      "data-day": utcDay(p.timestamp), "data-value": p.text,
    });
    bar.append(svg("title", {}, `${utcDay(p.timestamp)}: ${p.title}`));
    chart.append(bar);
    if (i % 15 === 0 || i === points.length - 1) {
      chart.append(svg("text", { x: left + i * slot + slot / 2, y: top + plotH + 16, "text-anchor": "middle" },
        utcDay(p.timestamp).slice(5)));
    }
  });
  chart.append(svg("line", { x1: left, x2: width - right, y1: top + plotH, y2: top + plotH, stroke: "#8a93a3" }));
  chart.append(svg("text", { x: left + plotW / 2, y: height - 6, "text-anchor": "middle", class: "axis-title" },
    "day (UTC, MM-DD)"));
  chart.append(svg("text", { x: 12, y: top + plotH / 2, "text-anchor": "middle", class: "axis-title",
    transform: `rotate(-90 12 ${top + plotH / 2})` }, unit));
  container.append(chart);
}

// --- tables ------------------------------------------------------------------------------------
function table(columns, rows, { onClick } = {}) {
  const head = el("tr", {}, ...columns.map((c) => el("th", { class: c.num ? "num" : "" }, c.title)));
  const body = el("tbody");
  for (const row of rows) {
    const tr = el("tr", onClick ? { class: "clickable", tabindex: "0" } : {});
    for (const c of columns) {
      const value = c.value(row);
      tr.append(el("td", { class: c.num ? "num" : c.bar ? "barcell" : "" }, value instanceof Node ? value : String(value)));
    }
    if (onClick) {
      tr.addEventListener("click", () => onClick(row, tr));
      tr.addEventListener("keydown", (e) => { if (e.key === "Enter") onClick(row, tr); });
    }
    body.append(tr);
  }
  return el("div", { class: "scroll" }, el("table", {}, el("thead", {}, head), body));
}

function bar(share) {
  const fill = el("div", { class: "bar-fill" });
  fill.style.width = `${Math.max(0, Math.min(100, share * 100)).toFixed(1)}%`;
  return el("div", { class: "bar-track", title: `${(share * 100).toFixed(1)}% of the largest` }, fill);
}

function topTable(rows, name) {
  if (!rows.length) return empty("No usage this month yet.");
  const sorted = rows.slice().sort((a, b) => Number(b.values.cost) - Number(a.values.cost)).slice(0, 10);
  const top = Math.max(...sorted.map((r) => Number(r.values.cost)), 0);
  return table([
    { title: name, value: (r) => r.group[name] ?? `(no ${name})` },
    { title: "cost (USD)", num: true, value: (r) => usd(r.values.cost) },
    { title: "share", bar: true, value: (r) => bar(top > 0 ? Number(r.values.cost) / top : 0) },
    { title: "tokens", num: true, value: (r) => integer.format(r.values.total_tokens) },
    { title: "records", num: true, value: (r) => integer.format(r.values.records) },
  ], sorted);
}

// --- overview ----------------------------------------------------------------------------------
function metricValue(text, name) {
  let total = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) total += Number(line.split(" ").pop());
  }
  return total;
}

async function loadOverview() {
  const [series, month] = await Promise.all([api("/api/v1/usage/series"), api("/api/v1/usage/snapshot")]);
  $("month-label").textContent = `${month.periodStart.slice(0, 10)} to ${month.periodEnd.slice(0, 10)} (UTC)`;
  const cards = [
    ["cost", usd(month.cost)], ["tokens", integer.format(month.tokens)], ["LLM calls", integer.format(month.messages)],
    ["conversations", integer.format(month.conversations)], ["events", integer.format(month.events)],
    ["meter records", integer.format(month.meterRecords)],
  ];
  $("month-totals").replaceChildren(...cards.map(([label, value]) =>
    el("div", { class: "card", "data-total": label }, el("div", { class: "label" }, label), el("div", { class: "value" }, value))));
  barChart($("cost-chart"), series.cost.map((p) => ({ timestamp: p.timestamp, value: Number(p.total), text: p.total, title: usd(p.total) })),
    { unit: "USD", label: "cost", format: (v) => `$${v < 10 ? v.toFixed(2) : compact(v)}` });
  barChart($("tokens-chart"), series.tokens.map((p) => ({ timestamp: p.timestamp, value: p.total, text: String(p.total), title: `${integer.format(p.total)} tokens` })),
    { unit: "tokens", label: "tokens", format: compact });
  const range = { from: month.periodStart, to: month.periodEnd, metric: "cost,total_tokens,records" };
  const [customers, models, counts] = await Promise.all([
    api("/api/v1/usage/aggregate", { ...range, group_by: "customer" }),
    api("/api/v1/usage/aggregate", { ...range, group_by: "model", kind: "llm" }),
    attentionCounts(),
  ]);
  $("top-customers").replaceChildren(topTable(customers.rows, "customer"));
  $("top-models").replaceChildren(topTable(models.rows, "model"));
  const attention = $("attention");
  attention.replaceChildren();
  if (counts !== null) {
    for (const [label, key, hint] of [
      ["unknown-model records", "unknownModelRecords", "LLM calls stored without a cost: add a price override"],
      ["rejected spans", "rejectedSpans", "spans refused for invalid values"],
    ]) {
      const n = counts.values[key];
      attention.append(el("div", { class: `card${n > 0 ? " warn" : ""}`, "data-attention": label, title: hint },
        el("div", { class: "label" }, `${label} (${counts.since})`), el("div", { class: "value" }, integer.format(n))));
    }
  }
}

// The stored counts (kept across restarts); a store without them: the process's own counters.
async function attentionCounts() {
  try {
    return { values: await api("/api/v1/usage/attention"), since: "all time" };
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 404) throw error;
    const metrics = await api("/metrics").catch(() => null);
    if (metrics === null) return null;
    return {
      since: "since the collector started",
      values: {
        unknownModelRecords: metricValue(metrics, "spanmeter_unknown_model_records_total"),
        rejectedSpans: metricValue(metrics, "spanmeter_rejected_spans_total"),
      },
    };
  }
}

// --- records -----------------------------------------------------------------------------------
const records = { filters: {}, cursors: [null], page: 0, next: null };

function readFilters() {
  const form = new FormData($("filters"));
  const filters = {};
  for (const [name, value] of form.entries()) {
    const text = String(value).trim();
    if (!text) continue;
    filters[name] = name === "from" || name === "to" ? `${text.length === 16 ? `${text}:00` : text}Z` : text;
  }
  return filters;
}

async function loadRecords() {
  const page = await api("/api/v1/usage/records", { ...records.filters, take: PAGE_SIZE, cursor: records.cursors[records.page] });
  records.next = page.cursor;
  $("page-label").textContent = `page ${records.page + 1}`;
  $("previous-page").disabled = records.page === 0;
  $("first-page").disabled = records.page === 0;
  $("next-page").disabled = !page.cursor;
  $("record-detail").hidden = true;
  if (!page.items.length) {
    $("records-table").replaceChildren(empty(Object.keys(records.filters).length
      ? "No record matches these filters." : "No records yet: point an OpenTelemetry SDK at this collector."));
    return;
  }
  $("records-table").replaceChildren(table([
    { title: "occurred (UTC)", value: (r) => utcTime(r.occurredAt) },
    { title: "kind", value: (r) => r.kind },
    { title: "type", value: (r) => r.type },
    { title: "customer", value: (r) => r.customerId ?? "—" },
    { title: "model", value: (r) => r.responseModel ?? r.requestModel ?? "—" },
    { title: "units", num: true, value: (r) => integer.format(r.count) },
    { title: "cost (USD)", num: true, value: (r) => usd(r.costUsd) },
  ], page.items, { onClick: showRecord }));
}

function showRecord(item, row) {
  for (const selected of document.querySelectorAll("tr.selected")) selected.classList.remove("selected");
  row.classList.add("selected");
  const first = ["id", "occurredAt", "kind", "type", "customerId", "costUsd", "costSource", "priceRef", "reportedCostUsd",
    "provider", "requestModel", "responseModel", "inputTokens", "outputTokens", "totalTokens"];
  const names = [...first.filter((n) => n in item), ...Object.keys(item).filter((n) => !first.includes(n)).sort()];
  const list = el("dl");
  for (const name of names) {
    const value = item[name];
    list.append(el("dt", {}, name), el("dd", { "data-field": name }, typeof value === "object" ? JSON.stringify(value) : String(value)));
  }
  const price = item.priceRef ? `${item.priceRef} (${item.costSource})` : `no price reference (cost source: ${item.costSource ?? "none"})`;
  const detail = $("record-detail");
  detail.replaceChildren(el("h3", {}, `Record ${item.id}`), el("p", { class: "price-ref" }, `Price: ${price}`), list);
  detail.hidden = false;
  detail.scrollIntoView({ block: "nearest" });
}

// --- exporters ---------------------------------------------------------------------------------
function exporterState(e) {
  if (e.dead > 0) return ["dead deliveries", "state-bad"];
  if (e.attempts > 0) return ["retrying", "state-bad"];
  if (e.behind > 0) return ["catching up", ""];
  return ["up to date", "state-ok"];
}

async function loadExporters() {
  let body;
  try {
    body = await api("/api/v1/exporters");
  } catch (error) {
    if (error.status === 403) {
      $("exporters-table").replaceChildren(empty(`Exporter status needs a key with the admin scope (${error.message}).`));
      return;
    }
    throw error;
  }
  if (!body.exporters.length) {
    $("exporters-table").replaceChildren(empty("No exporter has run on this database yet: configure one under exporters: and service::pipelines."));
    return;
  }
  $("exporters-table").replaceChildren(table([
    { title: "exporter", value: (e) => e.exporter },
    { title: "state", value: (e) => { const [text, cls] = exporterState(e); return el("span", { class: cls }, text); } },
    { title: "configured", value: (e) => (e.configured ? "yes" : "no") },
    { title: "records behind", num: true, value: (e) => integer.format(e.behind) },
    { title: "dead deliveries", num: true, value: (e) => integer.format(e.dead) },
    { title: "re-sent, pending", num: true, value: (e) => integer.format(e.pending_retry) },
    { title: "failed attempts", num: true, value: (e) => integer.format(e.attempts) },
    { title: "next attempt (UTC)", value: (e) => utcTime(e.next_attempt_at) },
    { title: "last error", value: (e) => e.last_error ?? "—" },
    { title: "skipped, never sent", num: true, value: (e) => el("span", {
      title: e.skips.map((k) => `${k.count} ${k.reason}; latest: ${k.latest}`).join("\n"),
    }, integer.format(e.skipped)) },
  ], body.exporters));
}

// --- navigation and the key --------------------------------------------------------------------
const TABS = { overview: loadOverview, records: loadRecords, exporters: loadExporters };

async function show(tab) {
  if (!(tab in TABS)) tab = "overview";
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.tab === tab) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
  }
  for (const name of Object.keys(TABS)) $(name).hidden = name !== tab;
  $("key-panel").hidden = true;
  showError(null);
  try {
    await TABS[tab]();
  } catch (error) {
    if (error.status === 401) return askForKey(key() ? `The collector refused this key: ${error.message}.` : null);
    showError(error);
  }
}

function askForKey(message) {
  for (const name of Object.keys(TABS)) $(name).hidden = true;
  $("key-panel").hidden = false;
  $("key-error").textContent = message || "";
  $("key-error").hidden = !message;
  $("forget-key").hidden = true;
  $("key-input").focus();
}

function start() {
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY_STORE, $("key-input").value.trim());
    $("key-input").value = "";
    $("key-panel").hidden = true;
    $("forget-key").hidden = false;
    show(location.hash.slice(1));
  });
  $("forget-key").addEventListener("click", () => { sessionStorage.removeItem(KEY_STORE); location.reload(); });
  $("forget-key").hidden = !key();
  $("filters").addEventListener("submit", (event) => {
    event.preventDefault();
    Object.assign(records, { filters: readFilters(), cursors: [null], page: 0 });
    show("records");
  });
  $("filters").addEventListener("reset", () => {
    Object.assign(records, { filters: {}, cursors: [null], page: 0 });
    setTimeout(() => show("records"));
  });
  $("next-page").addEventListener("click", () => {
    if (!records.next) return;
    records.cursors[records.page + 1] = records.next;
    records.page += 1;
    show("records");
  });
  $("previous-page").addEventListener("click", () => { records.page = Math.max(0, records.page - 1); show("records"); });
  $("first-page").addEventListener("click", () => { records.page = 0; show("records"); });
  window.addEventListener("hashchange", () => show(location.hash.slice(1)));
  show(location.hash.slice(1));
}

document.addEventListener("DOMContentLoaded", start);
