// The Pulse merchant dashboard: plain DOM + uPlot, talking only to this origin's public GraphQL
// API with the key from this tab's sessionStorage (never put in a URL). Two requests per refresh
// (report + comparison; breakdown), each drawn on arrival; the live panel and the freshness (a scan of the
// merchant's raw data: slower, so never in the way of the report) poll every few seconds.
"use strict";

const KEY = "pulse.apiKey";
const MERCHANT = "pulse.merchant";
const VIEWER = "pulse.viewer"; // who the key is (not a secret): spares a round trip on reload
const CURRENCY = "pulse.currency"; // the reporting currency last chosen in this tab
const ENDPOINT = new URL("graphql", document.baseURI).pathname;
const LIVE_EVERY_MS = 5000;
const RETRY_MS = { RATE_LIMITED: 15000, INTERNAL: 10000, NETWORK: 10000 };

// The KPI tiles; `kind` picks formatting and how a change is shown.
const TILES = [
  { metric: "GROSS_SALES", label: "Gross sales", kind: "money" },
  { metric: "NET_SALES", label: "Net sales", kind: "money" },
  { metric: "PAYMENTS", label: "Payments", kind: "count" },
  { metric: "PAYMENT_SUCCESS_RATE", label: "Success rate", kind: "rate" },
  { metric: "AVERAGE_TICKET", label: "Average ticket", kind: "money" },
  { metric: "UNIQUE_CUSTOMERS", label: "Unique customers", kind: "count" },
  // `upIsBad`: a rise is coloured as the bad news it is.
  { metric: "REFUND_RATE", label: "Refund rate", kind: "rate", upIsBad: true },
  { metric: "DISPUTES", label: "Disputes", kind: "count", upIsBad: true },
];
const REPORT_METRICS = [...TILES.map((t) => t.metric), "EVENTS"];
const KIND = Object.fromEntries([...TILES.map((t) => [t.metric, t.kind]), ["EVENTS", "count"]]);
const LABEL = Object.fromEntries([...TILES.map((t) => [t.metric, t.label]), ["EVENTS", "Events"]]);
const BREAKDOWN_METRICS = ["EVENTS", "PAYMENTS", "GROSS_SALES", "AVERAGE_TICKET", "PAYMENT_SUCCESS_RATE"];
// Until sign-in lists the API's own Dimension enum (new dimensions then appear by themselves).
const DIMENSIONS = ["EVENT_TYPE", "STATUS", "PAYMENT_METHOD", "COUNTRY", "CHANNEL", "DEVICE", "STORE_ID"];

const $ = (id) => document.getElementById(id);
const state = {
  key: null, viewer: null, merchant: null, filters: [], sort: { metric: "EVENTS", desc: true },
  seq: 0, retry: null, live: null, chart: null, liveChart: null, withCurrency: false,
};

// ---- time zones: calendar days of an IANA zone as instants --------------------------------

const partsFormat = new Map();
function zoneParts(tz, ms) {
  let fmt = partsFormat.get(tz);
  if (!fmt) {
    fmt = new Intl.DateTimeFormat("en-US", {
      timeZone: tz, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit",
    });
    partsFormat.set(tz, fmt);
  }
  const out = {};
  for (const p of fmt.formatToParts(new Date(ms))) out[p.type] = Number(p.value);
  return out;
}
function offsetMs(tz, ms) {
  const p = zoneParts(tz, ms);
  return Date.UTC(p.year, p.month - 1, p.day, p.hour, p.minute, p.second) - Math.floor(ms / 1000) * 1000;
}
/** The instant a local calendar day starts in `tz` (a day is {y, m, d}, m 1-based). */
function dayStart(tz, day) {
  const wall = Date.UTC(day.y, day.m - 1, day.d);
  let t = wall - offsetMs(tz, wall);
  t = wall - offsetMs(tz, t);
  return t;
}
function localDay(tz, ms) {
  const p = zoneParts(tz, ms);
  return { y: p.year, m: p.month, d: p.day };
}
function addDays(day, n) {
  const t = new Date(Date.UTC(day.y, day.m - 1, day.d + n));
  return { y: t.getUTCFullYear(), m: t.getUTCMonth() + 1, d: t.getUTCDate() };
}
const dayText = (day) => `${day.y}-${String(day.m).padStart(2, "0")}-${String(day.d).padStart(2, "0")}`;
function parseDay(text) {
  const [y, m, d] = text.split("-").map(Number);
  return y && m && d ? { y, m, d } : null;
}

/** The selected range and its previous period: [first day, first day + days) in the zone. */
function selectedRange() {
  const tz = $("zone").value;
  const today = localDay(tz, Date.now());
  const preset = $("preset").value;
  let first = today;
  let days = 1;
  if (preset === "yesterday") first = addDays(today, -1);
  else if (preset === "custom") {
    const from = parseDay($("from").value) || today;
    const to = parseDay($("to").value) || from;
    first = from;
    days = Math.max(1, Math.round((Date.UTC(to.y, to.m - 1, to.d) - Date.UTC(from.y, from.m - 1, from.d)) / 864e5) + 1);
  } else if (preset !== "today") {
    days = Number(preset);
    first = addDays(today, 1 - days);
  }
  const span = (a, n) => ({ start: new Date(dayStart(tz, a)).toISOString(), end: new Date(dayStart(tz, addDays(a, n))).toISOString() });
  const choice = $("granularity").value;
  const granularity = choice !== "auto" ? choice : days <= 7 ? "HOUR" : "DAY";
  return { tz, days, granularity, range: span(first, days), previous: span(addDays(first, -days), days) };
}

// ---- the API --------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(code, message, details = {}) { super(message); this.code = code; this.details = details; }
}

async function gql(query, variables) {
  let response;
  try {
    response = await fetch(ENDPOINT, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json", Authorization: `Bearer ${state.key}` },
      body: JSON.stringify({ query, variables }),
    });
  } catch (err) {
    throw new ApiError("NETWORK", "Pulse cannot be reached; retrying.");
  }
  let body = null;
  try { body = await response.json(); } catch (err) { body = null; }
  if (body && body.errors && body.errors.length) {
    const first = body.errors[0];
    const ext = first.extensions || {};
    throw new ApiError(ext.code || "INTERNAL", first.message, ext);
  }
  if (!response.ok || !body || !body.data) {
    throw new ApiError(response.status >= 500 ? "INTERNAL" : "NETWORK", `Pulse answered HTTP ${response.status}; retrying.`);
  }
  return body.data;
}

const VALUE_FIELDS = () => (state.withCurrency ? "metric value errorBound currency" : "metric value errorBound");
const REPORT_QUERY = () => `
query Report($m: ID!, $range: TimeRange!, $previous: TimeRange, $metrics: [Metric!]!, $g: Granularity!,
             $tz: String!, $filters: [DimensionFilter!]!, $cur: String) {
  report: metrics(merchantId: $m, range: $range, metrics: $metrics, granularity: $g, timezone: $tz,
                  filters: $filters, compareTo: $previous, reportingCurrency: $cur) {
    series { points { start complete values { ${VALUE_FIELDS()} } } }
    totals { ${VALUE_FIELDS()} }
    comparison { series { points { start values { metric value } } } totals { ${VALUE_FIELDS()} } }
    meta { sources watermark tookMs }
  }
}`;
// Apart from the report: a groupBy reads the detail rollups (slower), so tiles and chart never
// wait for it.
const BREAKDOWN_QUERY = () => `
query Breakdown($m: ID!, $range: TimeRange!, $tz: String!, $filters: [DimensionFilter!]!,
                $dims: [Dimension!]!, $bmetrics: [Metric!]!, $top: Int!, $cur: String) {
  breakdown: metrics(merchantId: $m, range: $range, metrics: $bmetrics, granularity: ALL, timezone: $tz,
                     filters: $filters, groupBy: $dims, limit: $top, reportingCurrency: $cur) {
    series { group { value } points { values { ${VALUE_FIELDS()} } } }
  }
}`;
const LIVE_QUERY = `
query Live($m: ID!, $range: TimeRange!, $tz: String!, $filters: [DimensionFilter!]!) {
  live: metrics(merchantId: $m, range: $range, metrics: [EVENTS, PAYMENTS], granularity: MINUTE,
                timezone: $tz, filters: $filters) {
    series { points { start complete values { metric value } } }
    totals { metric value }
  }
}`;
const FRESHNESS_QUERY = `query Freshness($m: ID!) { freshness(merchantId: $m) { ingestedThrough rolledUpThrough } }`;

// ---- formatting ----------------------------------------------------------------------------

const numberFmt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const moneyFmt = new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const pctFmt = new Intl.NumberFormat(undefined, { style: "percent", minimumFractionDigits: 1, maximumFractionDigits: 1 });
function format(kind, value, currency) {
  if (value === null || value === undefined) return "–";
  if (kind === "money") return currency ? `${moneyFmt.format(value)} ${currency}` : moneyFmt.format(value);
  if (kind === "rate") return pctFmt.format(value);
  return numberFmt.format(value);
}
const byMetric = (values) => Object.fromEntries((values || []).map((v) => [v.metric, v]));
function timeText(iso, tz, withDate = true, seconds = false) {
  if (!iso) return "never";
  const opts = { timeZone: tz, hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
  if (seconds) opts.second = "2-digit";
  if (withDate) Object.assign(opts, { month: "short", day: "numeric" });
  return new Intl.DateTimeFormat(undefined, opts).format(new Date(iso));
}

// ---- states ----------------------------------------------------------------------------------

function setState(name, message = "", tone = "") {
  document.body.dataset.state = name;
  const status = $("status");
  status.textContent = message;
  status.className = `status ${tone}`;
}

function handleError(err, again) {
  if (!(err instanceof ApiError)) {
    console.warn(err); // a bug of ours: keep the page usable, show what happened
    setState("error", String(err && err.message ? err.message : err), "error");
    return;
  }
  if (err.code === "UNAUTHENTICATED") return signOut("That key was not accepted: it is unknown or revoked.");
  const retry = RETRY_MS[err.code];
  if (err.code === "RATE_LIMITED") setState("rate-limited", `Rate limit reached for this key. Retrying in ${retry / 1000} s. ${err.message}`, "warn");
  else if (err.code === "INTERNAL") setState("engine-down", `The analytics engine is unavailable (${err.message}). Retrying in ${retry / 1000} s.`, "error");
  else if (err.code === "NETWORK") setState("offline", err.message, "error");
  else setState(err.code === "FORBIDDEN" ? "forbidden" : "bad-input", err.message, "error");
  if (retry && again) {
    clearTimeout(state.retry);
    state.retry = setTimeout(again, retry);
  }
}

// ---- sign-in -------------------------------------------------------------------------------

/** Sign in with `key`. `known` is what a previous sign-in of this tab learnt about the key
 * (viewer, currency support): a reload then starts the report at once instead of asking again;
 * a key revoked meanwhile still ends in UNAUTHENTICATED, from the report itself. */
async function signIn(key, known = null) {
  state.key = key;
  $("sign-in-error").hidden = true;
  setState("loading", "Checking the key…", "loading");
  let info = known;
  if (!info) {
    try {
      const data = await gql(`{ viewer { keyId admin merchantId }
        value: __type(name: "MetricValue") { fields { name } } dims: __type(name: "Dimension") { enumValues { name } } }`, {});
      info = {
        viewer: data.viewer,
        withCurrency: (data.value.fields || []).some((f) => f.name === "currency"),
        dimensions: (data.dims.enumValues || []).map((v) => v.name), // every dimension the API has
      };
    } catch (err) {
      showSignIn("");
      handleError(err, () => signIn(key)); // a bad key signs out; an engine outage retries
      return;
    }
  }
  state.viewer = info.viewer;
  state.withCurrency = info.withCurrency;
  if (info.dimensions && info.dimensions.length) fillDimensions(info.dimensions);
  sessionStorage.setItem(KEY, key);
  sessionStorage.setItem(VIEWER, JSON.stringify(info));
  $("sign-in").hidden = true;
  $("app").hidden = false;
  $("sign-out").hidden = false;
  const admin = state.viewer.admin;
  $("merchant-field").hidden = !admin;
  state.merchant = admin ? sessionStorage.getItem(MERCHANT) || "m00000" : state.viewer.merchantId;
  $("merchant").value = state.merchant;
  $("who").textContent = admin ? "admin key" : `merchant ${state.merchant}`;
  await refresh();
  startLive(); // after the first report: its requests never compete with the report's
}

function showSignIn(message) {
  $("sign-in").hidden = false;
  $("app").hidden = true;
  $("sign-out").hidden = true;
  $("merchant-field").hidden = true;
  $("who").textContent = "";
  const error = $("sign-in-error");
  error.textContent = message || "";
  error.hidden = !message;
}

function signOut(message) {
  sessionStorage.removeItem(KEY);
  sessionStorage.removeItem(VIEWER);
  state.key = null;
  state.viewer = null;
  clearInterval(state.live);
  clearTimeout(state.retry);
  showSignIn(message);
  setState(message ? "bad-key" : "signed-out");
}

// ---- the report ----------------------------------------------------------------------------

async function refresh() {
  if (!state.key || !state.merchant) return;
  const seq = ++state.seq;
  const current = () => seq === state.seq; // else a newer refresh is on its way
  writeView();
  const sel = selectedRange();
  setState("loading", "Loading…", "loading");
  const metricFirst = [state.sort.metric, ...BREAKDOWN_METRICS.filter((m) => m !== state.sort.metric)];
  const common = { m: state.merchant, range: sel.range, tz: sel.tz, filters: state.filters, cur: $("currency").value || null };
  const report = gql(REPORT_QUERY(), {
    ...common, previous: $("compare").checked ? sel.previous : null, metrics: REPORT_METRICS, g: sel.granularity,
  }).then((data) => {
    if (!current()) return data;
    performance.mark("pulse:fetched");
    renderReport(data.report, sel);
    performance.mark("pulse:rendered"); // tiles and chart on screen
    return data;
  });
  // The breakdown goes once the report is answered: on a busy server the two would share it.
  const breakdown = report.then(() => gql(BREAKDOWN_QUERY(), {
    ...common, dims: [$("dimension").value], bmetrics: metricFirst, top: Number($("top").value),
  })).then((data) => {
    if (current()) {
      renderBreakdown(data.breakdown);
      performance.mark("pulse:breakdown");
    }
    return data;
  });
  try {
    const [data] = await Promise.all([report, breakdown]);
    if (!current()) return;
    const empty = !(byMetric(data.report.totals).EVENTS || {}).value;
    setState(empty ? "empty" : "ready", empty ? "No events in this range." : "");
  } catch (err) {
    if (!current()) return;
    if (offerCurrencies(err)) refresh();
    else handleError(err, refresh);
  }
}

/** A merchant selling in several currencies makes every money value an error until one
 * currency is chosen: offer those the API named (error extensions.currencies), pick the one
 * last chosen in this tab or the first, and say so. True when the report should be asked again. */
function offerCurrencies(err) {
  const found = err instanceof ApiError && err.code === "BAD_USER_INPUT" && err.details.currencies;
  if (!found || !found.length || $("currency").value) return false;
  const select = $("currency");
  const known = new Set([...select.options].map((o) => o.value));
  for (const code of found) if (!known.has(code)) select.append(new Option(code, code));
  const last = sessionStorage.getItem(CURRENCY);
  select.value = found.includes(last) ? last : found[0];
  $("currency-field").hidden = false;
  return true;
}

function resetCurrency() {
  const select = $("currency");
  select.replaceChildren(new Option("as sold", ""));
  $("currency-field").hidden = true;
}

function renderReport(report, sel) {
  renderTiles(report);
  renderChart(report, sel);
  if (report.meta.watermark) renderWatermark(report.meta.watermark, sel.tz);
  const meta = report.meta;
  const converted = $("currency").value ? ` · money converted to ${$("currency").value} at daily rates` : "";
  $("report-meta").textContent = `${sel.granularity.toLowerCase()} buckets in ${sel.tz} · answered from ${meta.sources.join(" + ") || "nothing"} in ${meta.tookMs} ms${converted}`;
}

function renderTiles(report) {
  const now = byMetric(report.totals);
  const before = report.comparison ? byMetric(report.comparison.totals) : null;
  const tiles = $("tiles");
  tiles.replaceChildren(...TILES.map((tile) => {
    const cur = now[tile.metric] || {};
    const el = document.createElement("article");
    el.className = "tile";
    el.dataset.metric = tile.metric;
    el.dataset.value = cur.value === null || cur.value === undefined ? "" : String(cur.value);
    const approx = cur.errorBound ? `≈ ` : "";
    el.innerHTML = `<h3></h3><div class="value"></div><div class="change"></div>`;
    el.querySelector("h3").textContent = tile.label;
    el.querySelector(".value").textContent = approx + format(tile.kind, cur.value, cur.currency);
    if (cur.errorBound) el.querySelector(".value").title = `± ${numberFmt.format(cur.errorBound)} (95%)`;
    const change = el.querySelector(".change");
    if (before) {
      const prev = (before[tile.metric] || {}).value;
      el.dataset.previous = prev === null || prev === undefined ? "" : String(prev);
      Object.assign(change, describeChange(tile.kind, cur.value, prev));
      if (tile.upIsBad) change.classList.add("inverse"); // the class still says which way it went
    } else {
      change.textContent = "";
    }
    return el;
  }));
}

function describeChange(kind, cur, prev) {
  if (cur === null || cur === undefined || prev === null || prev === undefined) return { textContent: "no comparison", className: "change flat" };
  if (kind === "rate") {
    const pts = (cur - prev) * 100;
    const dir = Math.abs(pts) < 0.05 ? "flat" : pts > 0 ? "up" : "down";
    return { textContent: `${pts >= 0 ? "+" : "−"}${Math.abs(pts).toFixed(1)} pts vs previous`, className: `change ${dir}` };
  }
  if (prev === 0) return { textContent: cur === 0 ? "±0% vs previous" : "new vs previous (was 0)", className: `change ${cur === 0 ? "flat" : "up"}` };
  const pct = (cur - prev) / Math.abs(prev);
  const dir = Math.abs(pct) < 0.0005 ? "flat" : pct > 0 ? "up" : "down";
  return { textContent: `${pct >= 0 ? "+" : "−"}${pctFmt.format(Math.abs(pct))} vs previous`, className: `change ${dir}` };
}

// ---- the time-series chart -----------------------------------------------------------------

function seriesOf(report, metric) {
  const points = (report.series[0] || { points: [] }).points;
  return points.map((p) => ({ t: Date.parse(p.start) / 1000, start: p.start, complete: p.complete, value: (byMetric(p.values)[metric] || {}).value ?? null }));
}

function chartData(report, metric) {
  const pts = seriesOf(report, metric);
  const done = pts.map((p) => (p.complete ? p.value : null));
  // In-progress points are drawn dashed; the last complete point before one joins the two lines.
  const open = pts.map((p, i) => (!p.complete || (pts[i + 1] && !pts[i + 1].complete) ? p.value : null));
  const prev = report.comparison ? seriesOf(report.comparison, metric).map((p) => p.value) : pts.map(() => null);
  while (prev.length < pts.length) prev.push(null);
  return { pts, data: [pts.map((p) => p.t), done, open, prev.slice(0, pts.length)] };
}

function renderChart(report, sel) {
  const metric = $("chart-metric").value;
  const { pts, data } = chartData(report, metric);
  const kind = KIND[metric];
  const el = $("chart");
  const width = el.clientWidth || 600;
  const opts = {
    width, height: 260, tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), sel.tz),
    cursor: { drag: { x: false, y: false } }, legend: { show: false },
    scales: { x: { time: true }, y: { range: (u, min, max) => [Math.min(0, min), Math.max(1, max * 1.1)] } },
    axes: [{}, { size: 64, values: (u, ticks) => ticks.map((v) => format(kind === "rate" ? "rate" : "count", v)) }],
    series: [
      {},
      { label: LABEL[metric], stroke: "#3559e0", width: 2, fill: "rgba(53,89,224,.08)", points: { show: false } },
      { label: "in progress", stroke: "#3559e0", width: 2, dash: [6, 5], points: { show: true, size: 6, fill: "#fff" } },
      { label: "previous period", stroke: "#a3aab8", width: 1.5, points: { show: false } },
    ],
  };
  if (state.chart) state.chart.destroy();
  el.replaceChildren();
  state.chart = new uPlot(opts, data, el);
  $("chart-empty").hidden = pts.some((p) => p.value);
  const rows = pts.map((p) => {
    const tr = document.createElement("tr");
    tr.dataset.complete = String(p.complete);
    tr.dataset.value = p.value === null ? "" : String(p.value);
    for (const text of [timeText(p.start, sel.tz), format(kind, p.value), p.complete ? "yes" : "in progress"]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.append(td);
    }
    return tr;
  });
  $("points").tBodies[0].replaceChildren(...rows);
}

// ---- the breakdown -------------------------------------------------------------------------

function renderBreakdown(breakdown) {
  const table = $("breakdown");
  const head = document.createElement("tr");
  const dim = $("dimension").value;
  for (const col of [dim, ...BREAKDOWN_METRICS]) {
    const th = document.createElement("th");
    th.textContent = col === dim ? dim.toLowerCase().replace("_", " ") : LABEL[col];
    if (col !== dim) {
      th.dataset.metric = col;
      if (col === state.sort.metric) {
        th.className = "sorted";
        th.textContent += state.sort.desc ? " ▼" : " ▲";
      }
    }
    head.append(th);
  }
  table.tHead.replaceChildren(head);
  const rows = breakdown.series.map((s) => ({ value: s.group[0].value, values: byMetric(s.points[0] ? s.points[0].values : []) }));
  const key = (r) => (r.values[state.sort.metric] || {}).value;
  rows.sort((a, b) => {
    const x = key(a), y = key(b);
    if (x === y) return a.value < b.value ? -1 : 1;
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    return state.sort.desc ? y - x : x - y;
  });
  table.tBodies[0].replaceChildren(...rows.map((r) => {
    const tr = document.createElement("tr");
    tr.dataset.value = r.value;
    tr.title = `Filter by ${dim.toLowerCase()} = ${r.value}`;
    const cells = [r.value === "__none__" ? "(none)" : r.value, ...BREAKDOWN_METRICS.map((m) => format(KIND[m] || (m === "AVERAGE_TICKET" ? "money" : "count"), (r.values[m] || {}).value, (r.values[m] || {}).currency))];
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      td.textContent = text;
      if (i > 0) td.dataset.raw = String((r.values[BREAKDOWN_METRICS[i - 1]] || {}).value ?? "");
      tr.append(td);
    });
    return tr;
  }));
  if (!rows.length) {
    const tr = document.createElement("tr");
    tr.innerHTML = `<td colspan="${BREAKDOWN_METRICS.length + 1}" class="empty">No data</td>`;
    table.tBodies[0].append(tr);
  }
}

function addFilter(dimension, value) {
  if (state.filters.some((f) => f.dimension === dimension)) state.filters = state.filters.filter((f) => f.dimension !== dimension);
  state.filters.push({ dimension, values: [value], exclude: false });
  renderFilters();
  refresh();
}

function renderFilters() {
  $("filters").replaceChildren(...state.filters.map((f, i) => {
    const chip = document.createElement("span");
    chip.className = "chip";
    chip.dataset.dimension = f.dimension;
    chip.textContent = `${f.dimension.toLowerCase().replace("_", " ")} = ${f.values.join(", ")}`;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "×";
    remove.setAttribute("aria-label", `Remove filter ${f.dimension}`);
    remove.addEventListener("click", () => { state.filters.splice(i, 1); renderFilters(); refresh(); });
    chip.append(remove);
    return chip;
  }));
}

// ---- freshness and the live panel ----------------------------------------------------------

function renderFreshness(freshness, watermark, tz) {
  const el = $("freshness");
  const ingested = freshness && freshness.ingestedThrough;
  const rolled = (freshness && freshness.rolledUpThrough) || watermark;
  const lag = ingested ? Math.max(0, Math.round((Date.now() - Date.parse(ingested)) / 1000)) : null;
  el.textContent = `Ingested through ${timeText(ingested, tz)}${lag === null ? "" : ` (${lag < 120 ? `${lag} s` : `${Math.round(lag / 60)} min`} ago)`} · rolled up through ${timeText(rolled, tz)}`;
  el.dataset.ingested = ingested || "";
  el.dataset.rolledUp = rolled || "";
  el.classList.toggle("stale", lag === null || lag > 3600);
}

/** Until the live poll brings the freshness, the report's own watermark says how far rollups go. */
function renderWatermark(watermark, tz) {
  const el = $("freshness");
  if (el.dataset.ingested) return;
  el.textContent = `Rolled up through ${timeText(watermark, tz)}`;
  el.dataset.rolledUp = watermark;
}

function liveRange() {
  const end = Math.floor(Date.now() / 60000) * 60000 + 60000;
  return { start: new Date(end - 30 * 60000).toISOString(), end: new Date(end).toISOString() };
}

async function pollLive() {
  if (!state.key || !state.merchant || document.hidden) return;
  const tz = $("zone").value;
  const m = state.merchant;
  const [live, fresh] = await Promise.allSettled([
    gql(LIVE_QUERY, { m, range: liveRange(), tz, filters: state.filters }),
    gql(FRESHNESS_QUERY, { m }),
  ]);
  if (m !== state.merchant || !state.key) return; // switched or signed out meanwhile
  if (fresh.status === "fulfilled") renderFreshness(fresh.value.freshness, null, tz);
  if (live.status === "fulfilled") {
    renderLive(live.value.live, tz);
    if (["engine-down", "offline"].includes(document.body.dataset.state)) refresh();
  } else {
    handleError(live.reason, null);
  }
}

function renderLive(report, tz) {
  const pts = seriesOf(report, "EVENTS");
  const el = $("live");
  const data = [pts.map((p) => p.t), pts.map((p) => p.value)];
  if (!state.liveChart) {
    el.replaceChildren();
    state.liveChart = new uPlot({
      width: el.clientWidth || 400, height: 180, legend: { show: false },
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), $("zone").value),
      cursor: { drag: { x: false, y: false } }, scales: { y: { range: (u, min, max) => [0, Math.max(1, max * 1.15)] } },
      series: [{}, { label: "events / min", stroke: "#0f7b3f", fill: "rgba(15,123,63,.25)", width: 1, paths: uPlot.paths.bars({ size: [0.7, 40] }), points: { show: false } }],
    }, data, el);
  } else {
    state.liveChart.setData(data);
  }
  const totals = byMetric(report.totals);
  const latest = pts.filter((p) => p.complete).pop();
  el.dataset.points = String(pts.length);
  el.dataset.events = String((totals.EVENTS || {}).value ?? "");
  $("live-total").textContent = `${numberFmt.format((totals.EVENTS || {}).value || 0)} events, ${numberFmt.format((totals.PAYMENTS || {}).value || 0)} payments in 30 min · last full minute ${latest ? numberFmt.format(latest.value || 0) : "–"} events`;
  $("live-note").textContent = `updated ${timeText(new Date().toISOString(), tz, false, true)}, every ${LIVE_EVERY_MS / 1000} s`;
}

function startLive() {
  clearInterval(state.live);
  if (state.liveChart) { state.liveChart.destroy(); state.liveChart = null; }
  pollLive();
  state.live = setInterval(pollLive, LIVE_EVERY_MS);
}

// ---- the view in the URL fragment (shareable; never the key) -------------------------------

const VIEW = { range: "preset", from: "from", to: "to", zone: "zone", by: "granularity", dim: "dimension", top: "top", chart: "chart-metric", cur: "currency" };
function readView() {
  const params = new URLSearchParams(location.hash.slice(1));
  const cur = params.get("cur");
  if (cur && /^[A-Z]{3}$/.test(cur)) { // a shared view in a reporting currency
    $("currency").append(new Option(cur, cur));
    $("currency-field").hidden = false;
  }
  for (const [name, id] of Object.entries(VIEW)) {
    const value = params.get(name);
    if (value !== null && [...($(id).options || [])].some((o) => o.value === value)) $(id).value = value;
    else if (value !== null && $(id).type === "date") $(id).value = value;
  }
  if (params.get("compare") === "0") $("compare").checked = false;
  $("custom").hidden = $("preset").value !== "custom";
}
function writeView() {
  const params = new URLSearchParams();
  for (const [name, id] of Object.entries(VIEW)) {
    if (name === "cur" && !$(id).value) continue;
    if ((name !== "from" && name !== "to") || $("preset").value === "custom") params.set(name, $(id).value);
  }
  if (!$("compare").checked) params.set("compare", "0");
  history.replaceState(null, "", `#${params}`);
}

// ---- wiring --------------------------------------------------------------------------------

// ICU (so the browser) still lists some zones under their old IANA names; show the current ones.
const MODERN_ZONE = {
  "Asia/Calcutta": "Asia/Kolkata", "Asia/Katmandu": "Asia/Kathmandu", "Asia/Saigon": "Asia/Ho_Chi_Minh",
  "Asia/Rangoon": "Asia/Yangon", "Europe/Kiev": "Europe/Kyiv", "America/Godthab": "America/Nuuk",
  "Atlantic/Faeroe": "Atlantic/Faroe", "America/Buenos_Aires": "America/Argentina/Buenos_Aires",
};
const modern = (z) => MODERN_ZONE[z] || z;

function fillDimensions(names) {
  const select = $("dimension");
  const chosen = select.value || new URLSearchParams(location.hash.slice(1)).get("dim") || "EVENT_TYPE";
  select.replaceChildren(...names.map((d) => new Option(d.toLowerCase().replaceAll("_", " "), d)));
  select.value = names.includes(chosen) ? chosen : names[0];
}

function fillSelects() {
  const here = modern(Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC");
  const listed = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
  const zones = new Set(listed.map(modern));
  for (const z of ["UTC", here]) zones.add(z);
  $("zone").replaceChildren(...[...zones].sort().map((z) => new Option(z, z, z === here, z === here)));
  $("chart-metric").replaceChildren(...REPORT_METRICS.map((m) => new Option(LABEL[m], m, m === "GROSS_SALES", m === "GROSS_SALES")));
  fillDimensions(DIMENSIONS);
  const today = localDay(here, Date.now());
  $("from").value = dayText(addDays(today, -13));
  $("to").value = dayText(today);
}

function wire() {
  $("sign-in-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const key = $("key").value.trim();
    $("key").value = "";
    if (key) signIn(key);
  });
  $("sign-out").addEventListener("click", () => signOut(""));
  $("preset").addEventListener("change", () => { $("custom").hidden = $("preset").value !== "custom"; refresh(); });
  for (const id of ["from", "to", "granularity", "compare", "top", "dimension"]) $(id).addEventListener("change", refresh);
  $("currency").addEventListener("change", () => {
    if ($("currency").value) sessionStorage.setItem(CURRENCY, $("currency").value);
    refresh();
  });
  $("zone").addEventListener("change", () => { refresh(); startLive(); });
  $("chart-metric").addEventListener("change", refresh);
  $("merchant").addEventListener("change", () => {
    const m = $("merchant").value.trim();
    if (!m) return;
    state.merchant = m;
    sessionStorage.setItem(MERCHANT, m);
    state.filters = [];
    renderFilters();
    resetCurrency(); // another merchant sells in other currencies, or in one
    refresh();
    startLive();
  });
  $("breakdown").tHead.addEventListener("click", (e) => {
    const th = e.target.closest("th");
    if (!th || !th.dataset.metric) return;
    const metric = th.dataset.metric;
    state.sort = { metric, desc: state.sort.metric === metric ? !state.sort.desc : true };
    refresh();
  });
  $("breakdown").tBodies[0].addEventListener("click", (e) => {
    const tr = e.target.closest("tr");
    if (tr && tr.dataset.value !== undefined) addFilter($("dimension").value, tr.dataset.value);
  });
  // Charts follow their container's width (window resizes, a scrollbar appearing, rotation).
  const fit = new ResizeObserver((entries) => {
    for (const entry of entries) {
      const chart = entry.target.id === "chart" ? state.chart : state.liveChart;
      const width = Math.floor(entry.contentRect.width);
      if (chart && width > 0 && Math.abs(chart.width - width) > 1) chart.setSize({ width, height: chart.height });
    }
  });
  fit.observe($("chart"));
  fit.observe($("live"));
  document.addEventListener("visibilitychange", () => { if (!document.hidden) pollLive(); });
}

fillSelects();
readView();
wire();
const saved = sessionStorage.getItem(KEY);
let known = null;
try { known = JSON.parse(sessionStorage.getItem(VIEWER) || "null"); } catch (err) { known = null; }
if (saved) signIn(saved, known && known.viewer ? known : null);
else showSignIn("");
