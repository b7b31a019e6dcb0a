"use strict";
// The raygrpo dashboard page. It polls the server's read-only JSON endpoints and redraws:
//   /api/status              header cards, links, worker table          (every POLL_MS)
//   /api/metrics?since=N     new metrics.jsonl rows -> Plotly charts    (every POLL_MS)
//   /api/samples             sample grids and per-sample rewards        (when the status moves)
// The held-out panel charts every heldout/* metric (rows without a held-out evaluation are
// gaps, bridged) and shows status.json's hacking_warning as a banner.
// Every chart trace carries its metric name in `meta`, and its values are the metrics.jsonl
// numbers as they are (the page computes only the reward band mean ± std).
// Polling stops once the run is finished or failed: the page then shows the final state.

const POLL_MS = 1000;
const PLOT_CONFIG = { displayModeBar: false, responsive: true };
const LINE_CHARTS = [
  { id: "chart-advantage", title: "advantage |A| mean, zero-std group ratio",
    keys: ["advantage/abs_mean", "zero_std_ratio"] },
  { id: "chart-ratio", title: "importance ratio (mean, min, max, first minibatch)",
    keys: ["learner/ratio_mean", "learner/ratio_min", "learner/ratio_max", "learner/ratio_mean_first"] },
  { id: "chart-clip", title: "clip fraction", keys: ["learner/clip_fraction"] },
  { id: "chart-kl", title: "approx KL", keys: ["learner/approx_kl"] },
  { id: "chart-loss", title: "loss, grad norm", keys: ["learner/loss", "learner/grad_norm"] },
  { id: "chart-staleness", title: "staleness (policy versions)", keys: ["staleness"] },
  { id: "chart-throughput", title: "images / s (iteration wall time)", keys: ["throughput/images_per_s"] },
];
const page = { rows: [], statusKey: null, samples: null, shownSample: null, shownEval: "", done: false };

const $ = (id) => document.getElementById(id);
const value = (x) => (x === undefined ? null : x); // a missing metric is a gap in the curve
const fixed = (x, digits) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits));

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

function layout(title, extra) {
  return Object.assign({
    title: { text: title, font: { size: 14 }, x: 0.02 },
    margin: { l: 52, r: 12, t: 34, b: 56 },
    legend: { orientation: "h", y: -0.18 },
    hovermode: "x unified",
    showlegend: true,
  }, extra || {});
}

// -- charts ------------------------------------------------------------------------------------
function drawLineCharts(rows) {
  const x = rows.map((r) => r.iteration);
  for (const chart of LINE_CHARTS) {
    const traces = chart.keys.map((key) => ({
      x, y: rows.map((r) => value(r[key])), name: key.split("/").pop(), meta: key,
      type: "scatter", mode: "lines+markers",
    }));
    Plotly.react($(chart.id), traces, layout(chart.title), PLOT_CONFIG);
  }
}

function rewardNames(rows) {
  const names = [];
  for (const row of rows) {
    for (const key of Object.keys(row)) {
      const m = key.match(/^reward\/(.+)\/mean$/);
      if (m && !names.includes(m[1])) names.push(m[1]);
    }
  }
  return names;
}

function drawRewardCharts(rows) {
  const x = rows.map((r) => r.iteration);
  for (const name of rewardNames(rows)) {
    let div = $(`chart-reward-${name}`);
    if (!div) {
      div = document.createElement("div");
      div.id = `chart-reward-${name}`;
      div.className = "chart";
      $("reward-charts").appendChild(div);
    }
    const mean = rows.map((r) => value(r[`reward/${name}/mean`]));
    const std = rows.map((r) => value(r[`reward/${name}/std`]));
    const band = (sign) => mean.map((m, i) => (m === null || std[i] === null ? null : m + sign * std[i]));
    const traces = [
      { x, y: band(-1), meta: `reward/${name}/mean-std`, name: "mean − std", type: "scatter", mode: "lines",
        line: { width: 0 }, showlegend: false, hoverinfo: "skip" },
      { x, y: band(+1), meta: `reward/${name}/mean+std`, name: "± std", type: "scatter", mode: "lines",
        line: { width: 0 }, fill: "tonexty", fillcolor: "rgba(31, 119, 180, 0.2)" },
      { x, y: mean, meta: `reward/${name}/mean`, name: "mean", type: "scatter", mode: "lines+markers",
        line: { color: "rgb(31, 119, 180)" } },
    ];
    Plotly.react(div, traces, layout(`reward: ${name}`), PLOT_CONFIG);
  }
}

function drawHeldout(rows) {
  const keys = [];
  for (const row of rows) {
    for (const k of Object.keys(row)) {
      if (k.startsWith("heldout/") && k !== "heldout/hacking" && !keys.includes(k)) keys.push(k);
    }
  }
  $("heldout-empty").hidden = keys.length > 0;
  if (!keys.length) return;
  const x = rows.map((r) => r.iteration);
  const traces = keys.map((k) => ({
    x, y: rows.map((r) => value(r[k])), name: k.replace(/^heldout\//, "").replace(/\/mean$/, ""), meta: k,
    type: "scatter", mode: "lines+markers", connectgaps: true,
  }));
  const flagged = rows.filter((r) => r["heldout/hacking"] === 1);
  traces.push({ x: flagged.map((r) => r.iteration), y: flagged.map((r) => value(r["heldout/train_reward"])),
    name: "hacking suspected", meta: "heldout/hacking:flagged", type: "scatter", mode: "markers",
    marker: { symbol: "x", size: 12, color: "rgb(214, 39, 40)" } });
  Plotly.react($("chart-heldout"), traces, layout("held-out judges and trained scorers (mean)"), PLOT_CONFIG);
}

function showWarning(s) {
  const text = [s.hacking_warning, s.stopped_early ? `run stopped: ${s.stopped_early}` : null].filter(Boolean).join(" — ");
  $("hacking-warning").hidden = !text;
  $("hacking-warning").textContent = text ? `⚠ ${text}` : "";
}

function drawTimings(rows) {
  const keys = [];
  for (const row of rows) for (const k of Object.keys(row)) if (k.startsWith("time/") && !keys.includes(k)) keys.push(k);
  const x = rows.map((r) => r.iteration);
  const traces = keys.map((k) => ({ type: "bar", x, y: rows.map((r) => value(r[k])), name: k.slice(5), meta: k }));
  Plotly.react($("chart-timings"), traces, layout("phase timings (s per iteration)", { barmode: "stack" }), PLOT_CONFIG);
}

// -- status and workers ------------------------------------------------------------------------
function setCard(id, text, raw) {
  $(id).textContent = text;
  $(id).dataset.value = raw === null || raw === undefined ? "" : String(raw);
}

function showStatus(s) {
  $("state").textContent = s.state;
  $("state").className = `badge ${s.state}`;
  $("run-dir").textContent = s.run_dir || "";
  const done = s.iteration === null || s.iteration === undefined ? 0 : s.iteration + 1;
  setCard("stat-iteration", `${done} / ${s.iterations ?? "?"}`, s.iteration);
  setCard("stat-phase", s.phase || "–", s.phase);
  setCard("stat-elapsed", duration(s.elapsed_s), s.elapsed_s);
  setCard("stat-eta", duration(s.eta_s), s.eta_s);
  setCard("stat-images-per-s", fixed(s.images_per_s, 2), s.images_per_s);
  setCard("stat-iteration-s", fixed(s.iteration_s, 1), s.iteration_s);
  const last = page.rows[page.rows.length - 1];
  setCard("stat-policy-version", last ? String(last.policy_version) : "–", last ? last.policy_version : null);
  if (s.ray_dashboard_url) {
    $("link-ray").href = s.ray_dashboard_url;
    $("link-ray").textContent = s.ray_dashboard_url;
  }
  $("tb-command").textContent = s.tensorboard_command || "";
  showWarning(s);
  showWorkers(s.workers || []);
}

function showWorkers(workers) {
  const rows = workers.map((w) => {
    const tr = document.createElement("tr");
    tr.dataset.role = w.role;
    tr.dataset.index = w.index;
    tr.dataset.pid = w.pid ?? "";
    const cells = [w.scorer ? `${w.role} · ${w.scorer}` : w.role, w.index, w.node ?? "–", w.pid ?? "–",
      w.state ?? "–", w.policy_version ?? "–", w.images ?? "–", fixed(w.images_per_s, 2), w.restarts ?? 0];
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      td.textContent = String(text);
      if (i >= 5) td.className = "num";
      tr.appendChild(td);
    });
    return tr;
  });
  $("workers").tBodies[0].replaceChildren(...rows);
}

// -- samples -----------------------------------------------------------------------------------
function rewardCell(row, col, scorer, reward, lo, hi) {
  const td = document.createElement("td");
  td.className = "num reward";
  Object.assign(td.dataset, { row, col, scorer, value: String(reward) });
  td.textContent = fixed(reward, 3);
  const t = hi > lo && reward !== null ? (reward - lo) / (hi - lo) : 0.5;
  td.style.background = `hsl(130, 45%, ${Math.round(96 - 34 * t)}%)`;
  return td;
}

function showRewards(meta) {
  const body = $("sample-rewards").tBodies[0];
  if (!meta) {
    body.replaceChildren();
    return;
  }
  const all = meta.rows.flatMap((r) => Object.values(r.rewards).flat()).filter((v) => v !== null);
  const lo = Math.min(...all), hi = Math.max(...all);
  const trs = [];
  meta.rows.forEach((r, ri) => {
    Object.entries(r.rewards).forEach(([scorer, values], si) => {
      const tr = document.createElement("tr");
      if (si === 0) {
        const td = document.createElement("td");
        td.className = "prompt";
        td.rowSpan = Object.keys(r.rewards).length;
        td.textContent = r.label ?? r.prompt;  // E-GRPO rows are window columns: "prompt · SDE window s–e"
        tr.appendChild(td);
      }
      const name = document.createElement("td");
      name.textContent = scorer;
      tr.appendChild(name);
      values.forEach((v, col) => tr.appendChild(rewardCell(ri, col, scorer, v, lo, hi)));
      trs.push(tr);
    });
  });
  body.replaceChildren(...trs);
}

function showSample() {
  const it = Number($("sample-iter").value);
  const sample = page.samples && page.samples.iterations.find((e) => e.iteration === it);
  if (!sample || page.shownSample === sample.image) return;
  page.shownSample = sample.image;
  $("sample-grid").src = `/samples/${sample.image}`;
  $("sample-grid").dataset.iteration = sample.iteration;
  const version = sample.meta ? `, policy version ${sample.meta.policy_version}` : "";
  const rows = sample.meta && sample.meta.row_kind ? `, one row per ${sample.meta.row_kind}` : "";
  $("sample-caption").textContent = `iteration ${sample.iteration}${version}${rows}`;
  showRewards(sample.meta);
}

function showEval(evals) {
  const key = evals.map((e) => e.image).join();
  if (key === page.shownEval) return;
  page.shownEval = key;
  $("eval-samples").replaceChildren(...evals.map((e) => {
    const figure = document.createElement("figure");
    const img = document.createElement("img");
    img.src = `/samples/${e.image}`;
    img.alt = `held-out samples ${e.tag} training`;
    const caption = document.createElement("figcaption");
    caption.textContent = `held-out prompts, ODE samples, ${e.tag} training`;
    figure.append(caption, img);
    return figure;
  }));
}

async function refreshSamples() {
  page.samples = await getJSON("/api/samples");
  const select = $("sample-iter");
  const newest = page.samples.iterations.length ? page.samples.iterations[0].iteration : null;
  const wanted = $("sample-follow").checked || select.value === "" ? newest : Number(select.value);
  select.replaceChildren(...page.samples.iterations.map((s) => new Option(String(s.iteration), String(s.iteration))));
  if (wanted !== null) select.value = String(wanted);
  showSample();
  showEval(page.samples.eval);
}

// -- polling -----------------------------------------------------------------------------------
async function getJSON(url) {
  const response = await fetch(url, { cache: "no-store" });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

async function poll() {
  try {
    const status = await getJSON("/api/status");
    const fresh = await getJSON(`/api/metrics?since=${page.rows.length}`);
    if (fresh.start === 0 || fresh.rows.length) {
      page.rows = fresh.start === 0 ? fresh.rows : page.rows.concat(fresh.rows);
      drawRewardCharts(page.rows);
      drawHeldout(page.rows);
      drawLineCharts(page.rows);
      drawTimings(page.rows);
    }
    showStatus(status);
    const key = `${status.iteration}|${status.state}|${status.phase}`;
    if (key !== page.statusKey) {
      page.statusKey = key;
      await refreshSamples();
    }
    page.done = status.state === "finished" || status.state === "failed";
    $("conn").textContent = page.done ? "run ended: final view" : `updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    $("conn").textContent = `server unreachable (${err.message}); retrying`;
  }
  if (!page.done) setTimeout(poll, POLL_MS);
}

$("sample-iter").addEventListener("change", () => {
  $("sample-follow").checked = false;
  showSample();
});
$("sample-follow").addEventListener("change", () => refreshSamples());
poll();
