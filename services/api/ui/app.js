// The recsys-stream dashboard: a live view polled from /dashboard/status and an explorer over
// the recommendation routes. Plain DOM and SVG, no dependencies; text goes in through
// textContent only, never as HTML.

const POLL_MS = 2000;
const LIST_POLL_MS = 100;
const LIST_WAIT_MS = 30000;
const COLOURS = { learner: "#1f5fbf", most_popular: "#c0392b", recent_popular: "#d68910",
  cooc_knn: "#23845a" };
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

const state = { writes: "disabled", user: null, movie: null, listUpdatedAt: null, k: 10 };

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function api(path, options = {}) {
  const response = await fetch(path, { cache: "no-store", ...options });
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const error = body && body.error ? body.error : { code: "http_" + response.status, message: response.statusText };
    throw new ApiError(response.status, error.code, error.message);
  }
  return body;
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "class") node.className = value;
    else if (key === "on") for (const [type, fn] of Object.entries(value)) node.addEventListener(type, fn);
    else if (key === "data") Object.assign(node.dataset, value);
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

const fmt = (v, d = 4) => (v == null || Number.isNaN(v) ? "–" : Number(v).toFixed(d));
const count = (v) => (v == null ? "–" : Number(v).toLocaleString("en"));
const seconds = (s) => (s == null ? "–" : s < 1 ? Math.round(s * 1000) + " ms" : s.toFixed(2) + " s");
const titleOf = (item) => (item.title ?? "item " + item.item_id) + (item.year ? ` (${item.year})` : "");

// ---------------------------------------------------------------------------------- charts

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

function niceRange(values) {
  let lo = Math.min(...values), hi = Math.max(...values);
  if (!Number.isFinite(lo)) return [0, 1];
  if (hi - lo < 1e-9) { lo -= 0.05 * (Math.abs(lo) || 1); hi += 0.05 * (Math.abs(hi) || 1); }
  const pad = (hi - lo) * 0.08;
  return [Math.max(0, lo - pad), hi + pad];
}

// Draws one line per model over the events axis; every polyline carries its model name and the
// svg its scale (data-*), so that a test can read back the values drawn.
function drawChart(node, xs, lines, markers, digits) {
  const W = 420, H = 190, L = 44, R = 8, T = 8, B = 24;
  node.replaceChildren();
  const values = lines.flatMap((line) => line.values.filter((v) => v != null));
  if (!xs.length || !values.length) {
    node.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }));
    node.lastChild.textContent = "waiting for the first report…";
    node.dataset.points = "0";
    return false;
  }
  const [y0, y1] = niceRange(values);
  const x0 = xs[0], x1 = xs[xs.length - 1] > x0 ? xs[xs.length - 1] : x0 + 1;
  const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y) => H - B - ((y - y0) / (y1 - y0)) * (H - T - B);
  Object.assign(node.dataset, { ymin: y0, ymax: y1, xmin: x0, xmax: x1, top: T, bottom: H - B,
    left: L, right: W - R, points: xs.length });
  for (let j = 0; j <= 4; j++) {
    const y = y0 + ((y1 - y0) * j) / 4;
    node.append(svg("line", { class: "grid", x1: L, x2: W - R, y1: sy(y), y2: sy(y) }));
    const label = svg("text", { x: L - 4, y: sy(y) + 3, "text-anchor": "end" });
    label.textContent = y.toFixed(digits);
    node.append(label);
  }
  node.append(svg("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
  const shown = new Set();
  for (const [x, anchor] of [[x0, "start"], [(x0 + x1) / 2, "middle"], [x1, "end"]]) {
    const text = x >= 1e6 ? (x / 1e6).toFixed(1) + "M" : x >= 1e3 ? Math.round(x / 1e3) + "k" : String(Math.round(x));
    if (shown.has(text)) continue;
    shown.add(text);
    const label = svg("text", { x: sx(x), y: H - 8, "text-anchor": anchor });
    label.textContent = text;
    node.append(label);
  }
  for (const marker of markers) {
    if (marker.events < x0 || marker.events > x1) continue;
    const line = svg("line", { class: "retrain", x1: sx(marker.events), x2: sx(marker.events), y1: T, y2: H - B });
    const tip = svg("title", {});
    tip.textContent = `model version ${marker.model_version} from ${count(marker.events)} events`;
    line.append(tip);
    node.append(line);
  }
  for (const line of lines) {
    const pts = [];
    line.values.forEach((v, j) => { if (v != null) pts.push(`${sx(xs[j]).toFixed(1)},${sy(v).toFixed(1)}`); });
    const poly = svg("polyline", { points: pts.join(" "), stroke: line.colour,
      "stroke-width": line.name === "learner" ? 2.6 : 1.6, "data-model": line.name });
    const tip = svg("title", {});
    tip.textContent = `${line.name}: ${fmt(line.values[line.values.length - 1])}`;
    poly.append(tip);
    node.append(poly);
    if (pts.length === 1) {
      // A lone point draws no line: mark it.
      const [cx, cy] = pts[0].split(",");
      node.append(svg("circle", { cx, cy, r: 3, fill: line.colour }));
    }
  }
  return true;
}

let firstChart = false;

function renderStatus(status) {
  state.writes = status.writes;
  $("key-form").hidden = status.writes !== "key";
  const live = status.live;
  const k = live ? live.k : 10;
  state.k = k;
  $("stat-events").textContent = count(live && live.events);
  $("stat-rate").textContent = status.events_per_second == null ? "–" : count(Math.round(status.events_per_second));
  $("stat-lag").textContent = live && live.consumer_lag != null ? count(live.consumer_lag) : "n/a";
  const fresh = status.freshness;
  $("stat-fresh").textContent = fresh.samples ? `${seconds(fresh.p50_s)} / ${seconds(fresh.p99_s)}` : "no posted events yet";
  $("stat-version").textContent = live ? `v${live.model_version} (${count(status.retrains_completed)} retrains)` : "–";
  $("stat-dead").textContent = count(live && live.dead_letters);
  $("stat-users").textContent = live ? `${count(status.users)} / ${count(status.items)}` : "–";
  $("stat-age").textContent = live ? `${Math.max(0, Math.round(status.now - live.published_at))} s ago` : "–";
  const series = status.series;
  const names = Object.keys(series.models).sort((a, b) => (a === "learner" ? -1 : b === "learner" ? 1 : a.localeCompare(b)));
  $("legend").replaceChildren(...names.map((name) => {
    const swatch = el("i");
    // Through the CSSOM: the page's security policy refuses style attributes.
    swatch.style.background = COLOURS[name] || "#777";
    return el("span", {}, swatch, name);
  }));
  const linesOf = (metric, only) => names
    .filter((name) => !only || name === only)
    .map((name) => ({ name, colour: COLOURS[name] || "#777", values: series.models[name][metric] || [] }))
    .filter((line) => line.values.some((v) => v != null));
  $("cap-hr").textContent = `HR@${k}, sliding window`;
  $("cap-ndcg").textContent = `NDCG@${k}, sliding window`;
  const drawn = drawChart($("chart-hr"), series.events, linesOf(`hr@${k}_window`), status.retrains, 3);
  drawChart($("chart-ndcg"), series.events, linesOf(`ndcg@${k}_window`), status.retrains, 3);
  drawChart($("chart-rmse"), series.events, linesOf("rmse", "learner"), status.retrains, 3);
  if (drawn && !firstChart) {
    firstChart = true;
    document.documentElement.dataset.firstChartMs = Math.round(performance.now());
  }
}

let pollTimer = null;

// A poll now, not at the next tick: after a rating, its event shows in the counters at once.
function refreshNow() {
  clearTimeout(pollTimer);
  poll();
}

async function poll() {
  try {
    renderStatus(await api("/dashboard/status"));
    $("conn").textContent = "live: updated " + new Date().toLocaleTimeString("en-GB");
    $("conn").className = "";
  } catch (error) {
    $("conn").textContent = "cannot read the figures: " + error.message;
    $("conn").className = "err";
  }
  clearTimeout(pollTimer);
  pollTimer = setTimeout(poll, document.hidden ? POLL_MS * 5 : POLL_MS);
}

// -------------------------------------------------------------------------------- explorer

function movieButton(item) {
  return el("button", { type: "button", class: "link", on: { click: () => showMovie(item) } }, titleOf(item));
}

function itemRow(item, extra, isNew) {
  return el("li", { class: isNew ? "new" : "", data: { itemId: item.item_id } },
    movieButton(item), extra, item.genres && item.genres.length ? el("span", { class: "g" }, item.genres.join(", ")) : null);
}

function renderRecs(recs, previous) {
  const before = new Set(previous || []);
  $("recs").replaceChildren(...recs.items.map((item) =>
    itemRow(item, el("span", { class: "g" }, "score " + fmt(item.score, 3)), previous && !before.has(item.item_id))));
  const when = recs.updated_at ? new Date(recs.updated_at * 1000).toLocaleTimeString("en-GB") : "–";
  $("user-meta").replaceChildren(
    "answered from ", el("span", { class: "badge", id: "recs-source" }, recs.source.replace("_", " ")),
    ` · model v${recs.model_version} · list of ${when}`);
  state.listUpdatedAt = recs.updated_at;
  state.listIds = recs.items.map((item) => item.item_id);
}

async function showUser(id) {
  const userId = Number(id);
  state.user = userId;
  $("user-id").value = String(userId);
  $("user-view").hidden = false;
  $("user-title").textContent = `User ${userId}`;
  updateRateForm();
  try {
    const [recs, history] = await Promise.all([
      api(`/users/${userId}/recommendations?k=${state.k}`),
      api(`/users/${userId}/history?limit=10`),
    ]);
    $("recs-title").textContent = `Top ${recs.k}`;
    renderRecs(recs, null);
    renderHistory(history);
  } catch (error) {
    $("user-meta").textContent = "cannot load this user: " + error.message;
  }
}

function renderHistory(history) {
  $("hist-title").textContent = history.known
    ? `Recent ratings (${count(history.ratings_total)} known)` : "Recent ratings (not known to the model yet)";
  $("history").replaceChildren(...history.ratings.map((r) =>
    itemRow(r, el("span", { class: "r", "aria-label": `rated ${r.rating}` }, "★ " + r.rating), false)));
}

async function showMovie(item) {
  state.movie = item;
  $("movie-view").hidden = false;
  $("movie-title").textContent = titleOf(item);
  $("movie-meta").textContent = (item.genres || []).join(", ") || "no genres";
  updateRateForm();
  try {
    const similar = await api(`/items/${item.item_id}/similar?k=10`);
    $("similar").replaceChildren(...similar.items.map((s) =>
      itemRow(s, el("span", { class: "g" }, "cos " + fmt(s.score, 2)), false)));
  } catch (error) {
    const why = error.code === "unknown_item"
      ? "this movie is not in the model snapshot yet (it comes with the next one)" : error.message;
    $("similar").replaceChildren(el("li", {}, "no similar movies: " + why));
  }
}

async function search(query) {
  const found = await api(`/items/search?q=${encodeURIComponent(query)}&limit=10`);
  $("results").replaceChildren(...(found.items.length
    ? found.items.map((item) => el("li", {}, movieButton(item), el("span", { class: "g" }, item.genres.join(", "))))
    : [el("li", {}, "no movie matches “" + query + "”")]));
}

function updateRateForm() {
  const ready = state.user != null && state.movie != null && state.writes !== "disabled";
  $("rate-button").disabled = !ready;
  $("movie-rate").disabled = state.user == null;
  $("rate-movie").textContent = state.movie
    ? `Movie: ${titleOf(state.movie)}` + (state.writes === "disabled" ? " (writing is disabled: no API key is configured)" : "")
    : "Pick a movie: search on the right, or a title above.";
}

async function rate() {
  const result = $("rate-result");
  const headers = { "Content-Type": "application/json" };
  if (state.writes === "loopback") headers["X-Recsys-Page"] = "1";
  else {
    const key = sessionStorage.getItem("recsys-api-key");
    if (!key) { result.className = "err"; result.textContent = "Enter the API key first."; $("api-key").focus(); return; }
    headers["X-API-Key"] = key;
  }
  const userId = state.user, item = state.movie, before = state.listUpdatedAt, previous = state.listIds;
  const started = performance.now();
  result.className = ""; result.textContent = "sent; waiting for the model to learn it…";
  delete result.dataset.clickToListMs;
  try {
    await api("/events", { method: "POST", headers,
      body: JSON.stringify({ user_id: userId, item_id: item.item_id, rating: Number($("rate-value").value) }) });
    for (;;) {
      const recs = await api(`/users/${userId}/recommendations?k=${state.k}`);
      if (recs.source === "cache" && (before == null || recs.updated_at > before)) {
        const ms = Math.round(performance.now() - started);
        renderRecs(recs, previous);
        result.dataset.clickToListMs = String(ms);
        result.textContent = `${titleOf(item)} rated; the list was updated ${seconds(ms / 1000)} after the click.`;
        renderHistory(await api(`/users/${userId}/history?limit=10`));
        refreshNow();
        return;
      }
      if (performance.now() - started > LIST_WAIT_MS) throw new Error("the list did not change within 30 s");
      await new Promise((done) => setTimeout(done, LIST_POLL_MS));
    }
  } catch (error) {
    result.className = "err";
    result.textContent = "Not rated: " + error.message;
  }
}

function init() {
  $("user-form").addEventListener("submit", (event) => { event.preventDefault(); showUser($("user-id").value); });
  $("search-form").addEventListener("submit", (event) => { event.preventDefault(); search($("search-q").value); });
  $("rate-form").addEventListener("submit", (event) => { event.preventDefault(); rate(); });
  $("movie-rate").addEventListener("click", () => { updateRateForm(); $("rate-value").focus(); });
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem("recsys-api-key", $("api-key").value);
    $("api-key").value = "";
    $("rate-result").className = ""; $("rate-result").textContent = "Key kept for this tab.";
  });
  poll();
}

init();
