// taskfit console: a single static page; every piece of data comes from the JSON APIs with the API key the user
// entered once (kept in sessionStorage: this tab only, never in a URL). User text is always put into the page as
// text nodes (never as HTML), so run names, labels and inputs in any language display as they are, safely.
"use strict";

const KEY = "taskfit.apiKey";
const state = { scopes: [], name: null, timers: [] };
const view = () => document.getElementById("view");

// ---- tiny DOM helper ---------------------------------------------------------------------------------------
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "checked" || k === "value" || k === "hidden" || k === "disabled") node[k] = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}
const fmt = (v) => (typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(4)) : v ?? "–");
const runLink = (name) => el("a", { href: "#/run/" + encodeURIComponent(name) }, name);

// ---- API -----------------------------------------------------------------------------------------------------
class ApiError extends Error {
  constructor(status, body) {
    super(typeof body?.detail === "string" ? body.detail : JSON.stringify(body?.detail ?? body));
    this.status = status;
    this.body = body;
  }
}

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  const key = sessionStorage.getItem(KEY);
  if (key) headers["X-API-Key"] = key;
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    options = { ...options, method: options.method || "POST", body: JSON.stringify(options.json) };
  }
  const res = await fetch(path, { ...options, headers });
  if (options.raw && res.ok) return res;
  const body = (res.headers.get("content-type") || "").includes("json") ? await res.json() : await res.text();
  if (res.status === 401) {
    showLogin(key ? "The key was refused: " + (body.detail || res.statusText) : "");
    throw new ApiError(401, body);
  }
  if (!res.ok) throw new ApiError(res.status, body);
  return body;
}

function showError(e) {
  view().replaceChildren(el("p", { class: "error", id: "page-error" }, String(e.message || e)));
}

// ---- key and navigation ------------------------------------------------------------------------------------
function showLogin(message) {
  document.getElementById("login").hidden = false;
  document.getElementById("nav").hidden = true;
  document.getElementById("logout").hidden = true;
  document.getElementById("key-error").textContent = message || "";
  view().replaceChildren();
}

async function startSession() {
  try {
    const me = await api("/v1/console/session");
    state.scopes = me.scopes;
    state.name = me.name;
  } catch (e) {
    if (e.status !== 401) showLogin(String(e.message));
    return false;
  }
  document.getElementById("login").hidden = true;
  document.getElementById("nav").hidden = false;
  document.getElementById("logout").hidden = !sessionStorage.getItem(KEY);
  document.getElementById("who").textContent =
    (state.name ? "key " + state.name : "no key needed") + " · " + state.scopes.join(", ");
  for (const a of document.querySelectorAll("#nav a")) a.hidden = !state.scopes.includes(a.dataset.scope);
  return true;
}

function stopTimers() {
  state.timers.forEach(clearInterval);
  state.timers = [];
}

async function route() {
  stopTimers();
  const hash = location.hash || (state.scopes.includes("admin") ? "#/runs" : "#/playground");
  const [path, query] = hash.slice(1).split("?");
  const parts = path.split("/").filter(Boolean);
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", hash.startsWith(a.hash));
  const pages = { runs: runsPage, run: runPage, compare: comparePage, launch: launchPage, job: jobPage,
                  playground: playgroundPage, registry: registryPage, alerts: alertsPage };
  const page = pages[parts[0]] || runsPage;
  view().replaceChildren(el("p", { class: "muted" }, "Loading…"));
  try {
    await page(parts.slice(1).map(decodeURIComponent), new URLSearchParams(query || ""));
  } catch (e) {
    if (e.status !== 401) showError(e);
  }
}

// ---- plots -------------------------------------------------------------------------------------------------
function plot(id, traces, layout) {
  const div = el("div", { id, class: "plot" });
  requestAnimationFrame(() =>
    Plotly.newPlot(div, traces, { margin: { t: 40, r: 20 }, legend: { orientation: "h" }, ...layout },
                   { displaylogo: false, responsive: true }));
  return div;
}

function lossTraces(history, prefix = "") {
  const t = history.train, v = history.valid;
  const traces = [{ x: t.map((r) => r.step), y: t.map((r) => r.train_loss), name: prefix + "train loss",
                    mode: "lines" }];
  if (v.some((r) => "valid_loss" in r))
    traces.push({ x: v.map((r) => r.step), y: v.map((r) => r.valid_loss), name: prefix + "valid loss",
                  mode: "lines+markers" });
  return traces;
}

function metricTraces(history) {
  const keys = [...new Set(history.valid.flatMap((r) => Object.keys(r)))]
    .filter((k) => k.startsWith("valid_") && k !== "valid_loss");
  return keys.map((k) => ({ x: history.valid.map((r) => r.step), y: history.valid.map((r) => r[k]),
                            name: k.slice(6), mode: "lines+markers" }));
}

// ---- runs list ---------------------------------------------------------------------------------------------
async function runsPage() {
  const data = await api("/v1/console/runs");
  const rows = data.runs.map((r) =>
    el("tr", { "data-run": r.name },
       el("td", {}, el("input", { type: "checkbox", class: "pick", value: r.name, "aria-label": "select " + r.name })),
       el("td", {}, runLink(r.name)), el("td", {}, r.task), el("td", {}, r.model), el("td", {}, r.method),
       el("td", { class: "num" }, r.metric ? `${r.split} ${r.metric} ${fmt(r.value)}` : "–"),
       el("td", {}, r.time ? r.time.replace("T", " ").slice(0, 19) : "–"),
       el("td", { class: "status-" + r.status }, r.job ? el("a", { href: "#/job/" + r.job }, r.status) : r.status)));
  const compare = el("button", { type: "button", id: "compare-btn", onclick: () => {
    const picked = [...document.querySelectorAll("input.pick:checked")].map((c) => c.value);
    if (picked.length < 2) return alert("Select two or more runs to compare.");
    location.hash = "#/compare?" + picked.map((n) => "runs=" + encodeURIComponent(n)).join("&");
  } }, "Compare selected");
  view().replaceChildren(
    el("h1", {}, "Runs"), el("p", { class: "muted" }, data.root),
    data.runs.length ? el("table", { id: "runs-table" },
      el("tr", {}, ["", "name", "task", "model", "method", "metric", "time", "status"].map((h) => el("th", {}, h))),
      rows) : el("p", {}, "No runs yet: launch one."),
    compare);
}

// ---- one run -----------------------------------------------------------------------------------------------
async function runPage([name]) {
  const d = await api("/v1/console/runs/" + encodeURIComponent(name));
  const s = d.summary;
  const out = [el("h1", {}, s.name),
               el("p", {}, `${s.task} · ${s.model} · ${s.method} · `, el("span", { class: "status-" + s.status },
                  s.status), ` · ${s.time}`)];
  const docs = el("p", { id: "files" }, "Documents: ", d.files.length ? d.files.map((f) =>
    el("button", { type: "button", "data-file": f, onclick: () => openFile(s.name, f) }, f)) : "none yet");
  out.push(docs, el("div", { id: "doc-viewer" }));
  const splits = Object.keys(d.metrics);
  if (splits.length) {
    const keys = [...new Set(splits.flatMap((sp) => Object.keys(d.metrics[sp])))];
    out.push(el("h2", {}, "Metrics"), el("table", { id: "metrics-table" },
      el("tr", {}, el("th", {}, "metric"), splits.map((sp) => el("th", {}, sp))),
      keys.map((k) => el("tr", {}, el("td", {}, k), splits.map((sp) => el("td", { class: "num" },
        fmt(d.metrics[sp][k])))))));
  }
  const plots = el("div", { class: "grid" });
  if (d.history.train.length) plots.append(plot("loss-plot", lossTraces(d.history),
    { title: { text: "loss" }, xaxis: { title: { text: "step" } } }));
  const mt = metricTraces(d.history);
  if (mt.length) plots.append(plot("metric-plot", mt, { title: { text: "validation metrics" },
                                                        xaxis: { title: { text: "step" } } }));
  if (d.confusion) {
    const c = d.confusion;
    plots.append(plot("confusion-plot", [{ type: "heatmap", z: c.matrix, x: c.labels, y: c.labels,
      colorscale: "Blues", reversescale: true, text: c.matrix, texttemplate: "%{text}", hovertemplate: "true %{y}<br>predicted %{x}: %{z}<extra></extra>" }],
      { title: { text: `confusion matrix (${c.source})` }, xaxis: { title: { text: "predicted" } },
        yaxis: { title: { text: "true" }, autorange: "reversed" } }));
  }
  if (d.fairness && Array.isArray(d.fairness.groups)) plots.append(fairnessPlot(d.fairness));
  out.push(el("h2", {}, "Curves"), plots);
  if (d.explanations.length) out.push(el("h2", {}, "Token attributions"), explanations(d.explanations));
  out.push(el("h2", {}, "Recipe"), el("pre", {}, d.recipe));
  view().replaceChildren(...out);
}

function fairnessPlot(f) {
  const groups = f.groups.map((g) => g.group);
  const keys = ["accuracy", "macro_f1", "selection_rate", "tpr", "fpr", "mae", "rmse", "mean_prediction"]
    .filter((k) => f.groups.some((g) => typeof g[k] === "number"));
  return plot("fairness-plot", keys.map((k) => ({ type: "bar", name: k, x: groups, y: f.groups.map((g) => g[k]) })),
              { barmode: "group", title: { text: `fairness by ${f.group_column} (${f.split})` } });
}

function explanations(items) {
  return el("div", { id: "explanations" }, items.map((e) => {
    const scale = Math.max(1e-12, ...e.words.map((w) => Math.abs(w.score || 0)));
    const line = el("p", { class: "tokens" });
    let pos = 0;
    for (const w of e.words) {
      line.append(e.text.slice(pos, w.start));
      const a = 0.1 + 0.7 * Math.min(Math.abs(w.score || 0) / scale, 1);
      const color = (w.score || 0) >= 0 ? `rgba(26,127,55,${a})` : `rgba(207,34,46,${a})`;
      line.append(el("span", { style: `background:${color}`, title: `${w.word}: ${w.score}` }, w.word));
      pos = w.end;
    }
    line.append(e.text.slice(pos));
    const head = "label" in e ? `predicted ${e.label} (${fmt(e.probability)})` +
      ("true_label" in e ? `, true ${e.true_label}` : "") : `prediction ${fmt(e.prediction)}`;
    return el("div", { class: "explanation" }, el("p", { class: "muted" }, head), line);
  }));
}

async function openFile(run, file) {
  const res = await api(`/v1/console/runs/${encodeURIComponent(run)}/files/${encodeURIComponent(file)}`,
                        { raw: true });
  const text = await res.text();
  const box = document.getElementById("doc-viewer");
  // A report is shown in a sandboxed frame: it keeps its own styles and cannot run scripts or reach the key.
  const shown = file.endsWith(".html") ? el("iframe", { class: "doc", sandbox: "", title: file, srcdoc: text })
                                       : el("pre", {}, text);
  box.replaceChildren(el("h3", {}, file), shown);
}

// ---- compare -----------------------------------------------------------------------------------------------
async function comparePage(_, params) {
  const names = params.getAll("runs");
  const d = await api("/v1/console/compare?" + names.map((n) => "runs=" + encodeURIComponent(n)).join("&"));
  const head = el("tr", {}, el("th", {}, "metric"), d.runs.map((r) => el("th", {}, runLink(r.summary.name),
    el("div", { class: "muted" }, `${r.summary.method} · ${r.split}`))));
  const best = (vals, k) => { const nums = vals.filter((v) => typeof v === "number");
    if (!nums.length || k === "n") return null;  // a row count is not better or worse
    return /loss|ece|error|mae|rmse/.test(k) ? Math.min(...nums) : Math.max(...nums); };
  const body = d.table.map((row) => { const b = best(row.values, row.metric);
    return el("tr", {}, el("td", {}, row.metric), row.values.map((v) =>
      el("td", { class: "num" }, v === b && d.runs.length > 1 ? el("b", {}, fmt(v)) : fmt(v)))); });
  const traces = d.runs.flatMap((r) => lossTraces(r.history, r.summary.name + ": "));
  view().replaceChildren(el("h1", {}, "Compare"), el("table", { id: "compare-table" }, head, body),
    plot("compare-plot", traces, { title: { text: "loss" }, xaxis: { title: { text: "step" } } }));
}

// ---- launch ------------------------------------------------------------------------------------------------
async function launchPage() {
  const form = await api("/v1/console/form");
  const node = el("form", { id: "launch-form", novalidate: true });
  const groups = new Map();
  const groupOf = (f) => f.block || f.key.split(".")[0];
  for (const f of form.fields) {
    const g = groupOf(f);
    if (!groups.has(g)) groups.set(g, []);
    groups.get(g).push(f);
  }
  const open = new Set(["task", "data", "model", "method", "train", "output"]);
  node.append(el("p", { class: "field-error", "data-for": "" }));
  for (const [g, fields] of groups) {
    const box = el("fieldset", { "data-group": g }, el("legend", {}, g));
    if (g in form.blocks) {
      box.append(el("label", {}, el("input", { type: "checkbox", class: "block-switch", "data-block": g,
        onchange: () => refreshForm(node) }), ` use ${g}: ${form.blocks[g]}`));
    }
    fields.forEach((f) => box.append(fieldRow(f)));
    node.append(open.has(g) ? box : el("details", {}, el("summary", {}, g), box));
  }
  node.append(el("button", { type: "submit", id: "launch-btn" }, "Validate and launch"));
  node.addEventListener("submit", (ev) => { ev.preventDefault(); submitLaunch(node, form); });
  node.addEventListener("change", () => refreshForm(node));
  view().replaceChildren(el("h1", {}, "Launch a run"),
    el("p", { class: "muted" }, "Fields come from the recipe schema; empty fields keep their defaults. The run is " +
      "checked like `taskfit validate` before `taskfit train` starts."), node);
  refreshForm(node);
}

function fieldRow(f) {
  const id = "f-" + f.key;
  const common = { id, name: f.key, "data-kind": f.kind };
  let input;
  if (f.kind === "bool") input = el("input", { ...common, type: "checkbox", checked: f.default === true });
  else if (f.kind === "select")
    input = el("select", common, (f.required ? [] : [el("option", { value: "" }, "(default)")]),
      f.options.map((o) => el("option", { value: o, selected: o === f.default }, o)));
  else input = el("input", { ...common, type: "text",
    placeholder: f.default === null || f.default === undefined ? "" : String(typeof f.default === "object" ?
      JSON.stringify(f.default) : f.default) });
  const row = el("div", { class: "field", "data-key": f.key },
    el("label", { for: id }, f.key + (f.required ? " *" : "")), input,
    el("span", { class: "help" }, f.description), el("div", { class: "field-error", "data-for": f.key }));
  if (f.when) row.dataset.when = JSON.stringify(f.when);
  if (f.block) row.dataset.block = f.block;
  return row;
}

function refreshForm(node) {
  const value = (key) => node.querySelector(`[name="${CSS.escape(key)}"]`)?.value;
  for (const row of node.querySelectorAll(".field[data-when]")) {
    const when = JSON.parse(row.dataset.when);
    row.hidden = !Object.entries(when).every(([k, v]) => value(k) === v);
  }
  for (const sw of node.querySelectorAll(".block-switch"))
    for (const row of node.querySelectorAll(`.field[data-block="${CSS.escape(sw.dataset.block)}"]`))
      row.querySelectorAll("input,select").forEach((i) => (i.disabled = !sw.checked));
}

async function submitLaunch(node, form) {
  const values = {};
  const defaults = Object.fromEntries(form.fields.map((f) => [f.key, f.default]));
  for (const row of node.querySelectorAll(".field")) {
    if (row.hidden) continue;
    const input = row.querySelector("input,select");
    if (input.disabled) continue;
    const key = input.name;
    if (input.type === "checkbox") { if (input.checked !== (defaults[key] === true)) values[key] = input.checked; }
    else if (input.value !== "" && (input.tagName !== "SELECT" || input.value !== defaults[key] || key.endsWith(".name")))
      values[key] = input.value;
  }
  const blocks = [...node.querySelectorAll(".block-switch:checked")].map((s) => s.dataset.block);
  node.querySelectorAll(".field-error").forEach((e) => (e.textContent = ""));
  node.querySelectorAll(".field.invalid").forEach((e) => e.classList.remove("invalid"));
  try {
    const job = await api("/v1/console/launch", { json: { values, blocks } });
    location.hash = "#/job/" + job.job;
  } catch (e) {
    const errors = e.body?.errors || { "": [e.message] };
    for (const [key, msgs] of Object.entries(errors)) {
      const slot = node.querySelector(`.field-error[data-for="${CSS.escape(key)}"]`) ||
                   node.querySelector('.field-error[data-for=""]');
      slot.textContent = (slot.textContent ? slot.textContent + " " : "") + msgs.join(" ");
      slot.closest(".field")?.classList.add("invalid");
      slot.closest("details")?.setAttribute("open", "");
    }
  }
}

// ---- a launched training -----------------------------------------------------------------------------------
async function jobPage([id]) {
  const status = el("p", { id: "job-status" });
  const chart = el("div", { id: "job-plot", class: "plot" });
  const log = el("pre", { id: "job-log" });
  view().replaceChildren(el("h1", {}, "Training"), status, chart, el("h2", {}, "Log"), log);
  const tick = async () => {
    const j = await api("/v1/console/jobs/" + encodeURIComponent(id));
    status.replaceChildren(`run ${j.run}: `, el("span", { class: "status-" + j.status }, j.status),
      ` · step ${j.step}${j.max_steps ? " / " + j.max_steps : ""}`,
      ...(j.status === "running" ? [] : [" · ", runLink(j.run)]));
    log.textContent = j.log;
    if (j.history.train.length)
      Plotly.react(chart, lossTraces(j.history), { title: { text: "loss (live)" }, margin: { t: 40, r: 20 },
                                                   xaxis: { title: { text: "step" } } });
    if (j.status !== "running") stopTimers();
  };
  await tick();
  state.timers.push(setInterval(() => tick().catch(showError), 1000));
}

// ---- playground --------------------------------------------------------------------------------------------
async function playgroundPage() {
  const { models } = await api("/v1/models");
  if (!models.length) {
    view().replaceChildren(el("h1", {}, "Playground"),
      el("p", {}, "No model is served. Start the console with --serve RUN_DIR to try a model here."));
    return;
  }
  const select = el("select", { id: "pg-model" }, models.map((m) =>
    el("option", { value: JSON.stringify([m.name, m.version]) }, `${m.name} v${m.version} (${m.task})`)));
  const text = el("textarea", { id: "pg-text", placeholder: "Type a text (any language)…" });
  const result = el("div", { id: "pg-result" });
  const go = el("button", { type: "button", id: "pg-go", onclick: async () => {
    const [model, version] = JSON.parse(select.value);
    result.replaceChildren(el("p", { class: "muted" }, "…"));
    try {
      const r = await api("/v1/predict", { json: { text: text.value, model, version, top_k: 5 } });
      result.replaceChildren(...r.predictions.map(predictionView));
    } catch (e) {
      result.replaceChildren(el("p", { class: "error" }, e.message));
    }
  } }, "Predict");
  view().replaceChildren(el("h1", {}, "Playground"), select, text, go, result);
}

function predictionView(p) {
  const top = p.top || (p.label !== undefined ? [{ label: p.label, score: p.score }] : []);
  const rest = Object.fromEntries(Object.entries(p).filter(([k]) => !["top", "request_id"].includes(k)));
  return el("div", { class: "prediction" },
    p.label !== undefined ? el("p", {}, "label: ", el("b", { class: "pg-label" }, p.label),
                               p.score !== undefined ? ` (${fmt(p.score)})` : "") : null,
    top.length ? el("table", { class: "pg-top" }, top.map((t) => el("tr", {}, el("td", {}, t.label),
      el("td", { class: "num" }, fmt(t.score)),
      el("td", {}, el("span", { class: "bar", style: `width:${Math.round(200 * t.score)}px` })))))
      : el("pre", {}, JSON.stringify(rest, null, 2)),
    el("p", { class: "muted" }, "request " + p.request_id));
}

// ---- registry and alerts -----------------------------------------------------------------------------------
async function registryPage() {
  const { versions } = await api("/v1/console/registry");
  const admin = state.scopes.includes("admin");
  const act = async (path, body) => {
    try { await api(path, { json: body }); await registryPage(); } catch (e) { alert(e.message); }
  };
  const names = [...new Set(versions.map((v) => v.name))];
  view().replaceChildren(el("h1", {}, "Model registry"), versions.length ? el("table", { id: "registry-table" },
    el("tr", {}, ["name", "version", "stage", "path", "created", "promoted", ""].map((h) => el("th", {}, h))),
    versions.map((v) => el("tr", {}, el("td", {}, v.name), el("td", {}, v.version), el("td", {}, v.stage),
      el("td", {}, v.path), el("td", {}, v.created_at || "–"), el("td", {}, v.promoted_at || "–"),
      el("td", {}, admin && v.stage !== "production" ? el("button", { type: "button", onclick: () =>
        act(`/v1/console/registry/${encodeURIComponent(v.name)}/promote`, { version: v.version }) }, "promote")
        : "")))) : el("p", {}, "No registered models."),
    admin ? el("p", {}, names.map((n) => el("button", { type: "button", onclick: () =>
      act(`/v1/console/registry/${encodeURIComponent(n)}/rollback`, {}) }, `roll back ${n}`))) : "");
}

async function alertsPage() {
  const { alerts } = await api("/v1/console/alerts");
  view().replaceChildren(el("h1", {}, "Alerts"), alerts.length ? el("table", { id: "alerts-table" },
    el("tr", {}, ["time", "rule", "model", "value", "message"].map((h) => el("th", {}, h))),
    alerts.map((a) => el("tr", {}, el("td", {}, a.created_at), el("td", {}, a.rule), el("td", {}, a.model || "–"),
      el("td", { class: "num" }, fmt(a.value)), el("td", {}, a.message)))) : el("p", {}, "No alerts."));
}

// ---- start -------------------------------------------------------------------------------------------------
document.getElementById("key-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(KEY, document.getElementById("key-input").value.trim());
  if (await startSession()) route();
});
document.getElementById("logout").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  showLogin("");
});
window.addEventListener("hashchange", () => { if (!document.getElementById("nav").hidden) route(); });
startSession().then((ok) => ok && route());
