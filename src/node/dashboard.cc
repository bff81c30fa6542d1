#include "node/dashboard.h"

namespace nexus {

namespace {

// Polls /api/cluster every second (this node gathers every ring member's /metrics over gRPC)
// and derives rates and latency percentiles from counter and histogram deltas between two
// polls, per node and for the whole cluster (percentiles from the summed bucket deltas).
constexpr std::string_view kHtml = R"HTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>nexuscache dashboard</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 2rem; background: #fafafa; color: #222; }
  h1 { font-size: 1.4rem; }
  h2 { font-size: 1.1rem; margin-top: 2rem; }
  .grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(14rem, 1fr)); gap: 1rem; }
  .card { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 1rem; }
  .label { color: #666; font-size: .85rem; }
  .value { font-size: 1.6rem; font-variant-numeric: tabular-nums; }
  table { border-collapse: collapse; background: #fff; font-variant-numeric: tabular-nums; }
  th, td { border: 1px solid #ddd; padding: .4rem .8rem; text-align: right; }
  th:first-child, td:first-child, td.status { text-align: left; }
  td.down { color: #b00; }
  #status { color: #888; font-size: .8rem; }
</style>
</head>
<body>
<h1>nexuscache cluster <span class="label">seen from <span id="node"></span>, ring generation
<span id="gen">-</span></span></h1>
<div class="grid">
  <div class="card"><div class="label">requests / s</div><div class="value" id="rps">-</div></div>
  <div class="card"><div class="label">GET hit rate</div><div class="value" id="hit">-</div></div>
  <div class="card"><div class="label">latency p50 / p95 / p99</div><div class="value" id="lat">-</div></div>
  <div class="card"><div class="label">cache bytes (main + hot)</div><div class="value" id="bytes">-</div></div>
  <div class="card"><div class="label">process memory (RSS)</div><div class="value" id="rss">-</div></div>
  <div class="card"><div class="label">ring members up</div><div class="value" id="up">-</div></div>
</div>
<h2>Nodes</h2>
<table>
  <thead><tr><th>node</th><th>status</th><th>req/s</th><th>GET hit rate</th><th>p50</th>
  <th>p95</th><th>p99</th><th>cache bytes</th><th>RSS</th></tr></thead>
  <tbody id="nodes"></tbody>
</table>
<p id="status">loading…</p>
<script>
"use strict";
const previous = new Map();  // node name -> {at, samples}

function parseMetrics(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/);
    if (!m) continue;
    const labels = {};
    if (m[3]) for (const kv of m[3].matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[kv[1]] = kv[2];
    samples.push({ name: m[1], labels, value: parseFloat(m[4]) });
  }
  return samples;
}

function sum(samples, name, match = {}) {
  return samples.filter(s => s.name === name &&
      Object.entries(match).every(([k, v]) => s.labels[k] === v))
    .reduce((a, s) => a + s.value, 0);
}

// Cumulative latency bucket counts by upper bound, over every op.
function buckets(samples) {
  const by = new Map();
  for (const s of samples) {
    if (s.name !== "nexuscache_request_duration_seconds_bucket") continue;
    const le = s.labels.le === "+Inf" ? Infinity : parseFloat(s.labels.le);
    by.set(le, (by.get(le) || 0) + s.value);
  }
  return by;
}

function addInto(target, source, sign = 1) {
  for (const [k, v] of source) target.set(k, (target.get(k) || 0) + sign * v);
}

function quantile(q, delta) {
  const sorted = [...delta.entries()].sort((a, b) => a[0] - b[0]);
  const total = sorted.length ? sorted[sorted.length - 1][1] : 0;
  if (total <= 0) return null;
  for (const [le, c] of sorted) if (c >= q * total) return le;
  return null;
}

function fmtSeconds(s) {
  if (s === null) return "-";
  if (s === Infinity) return ">1 s";
  return s < 0.001 ? (s * 1e6).toFixed(0) + " µs" : (s * 1000).toFixed(1) + " ms";
}

function fmtBytes(b) {
  const u = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (b >= 1024 && i < u.length - 1) { b /= 1024; i++; }
  return b.toFixed(i ? 1 : 0) + " " + u[i];
}

function fmtRate(hits, gets) {
  return gets > 0 ? (100 * hits / gets).toFixed(1) + " %" : "-";
}

// Rates of one node between its previous poll and this one; null on its first poll.
function nodeRates(now, before) {
  if (!before) return null;
  const secs = (now.at - before.at) / 1000;
  const s = now.samples, p = before.samples;
  const delta = buckets(s);
  addInto(delta, buckets(p), -1);
  const get = { op: "get" }, hit = { op: "get", status: "hit" };
  return {
    requests: sum(s, "nexuscache_requests_total") - sum(p, "nexuscache_requests_total"),
    secs,
    hits: sum(s, "nexuscache_requests_total", hit) - sum(p, "nexuscache_requests_total", hit),
    gets: sum(s, "nexuscache_requests_total", get) - sum(p, "nexuscache_requests_total", get),
    delta,
  };
}

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

async function tick() {
  try {
    const cluster = await fetch("/api/cluster").then(r => r.json());
    const at = performance.now();
    document.getElementById("node").textContent = cluster.self;
    document.getElementById("gen").textContent = cluster.generation;
    const totals = { rps: 0, hits: 0, gets: 0, delta: new Map(), bytes: 0, rss: 0, up: 0,
                     measured: false };
    const rows = [];
    for (const node of cluster.nodes) {
      const tr = document.createElement("tr");
      tr.dataset.node = node.name;
      tr.appendChild(cell(node.name + (node.self ? " (this node)" : "")));
      if (!node.ok) {
        previous.delete(node.name);
        tr.appendChild(cell("down: " + node.error, "status down"));
        for (let i = 0; i < 7; i++) tr.appendChild(cell("-"));
        rows.push(tr);
        continue;
      }
      totals.up++;
      const now = { at, samples: parseMetrics(node.metrics) };
      const r = nodeRates(now, previous.get(node.name));
      previous.set(node.name, now);
      const bytes = sum(now.samples, "nexuscache_cache_size_bytes");
      const rss = sum(now.samples, "nexuscache_process_resident_memory_bytes");
      totals.bytes += bytes;
      totals.rss += rss;
      tr.appendChild(cell("up", "status"));
      if (r) {
        totals.measured = true;
        totals.rps += r.requests / r.secs;
        totals.hits += r.hits;
        totals.gets += r.gets;
        addInto(totals.delta, r.delta);
        tr.appendChild(cell((r.requests / r.secs).toFixed(1), "rps"));
        tr.appendChild(cell(fmtRate(r.hits, r.gets), "hit"));
        for (const q of [0.5, 0.95, 0.99]) tr.appendChild(cell(fmtSeconds(quantile(q, r.delta))));
      } else {
        for (let i = 0; i < 5; i++) tr.appendChild(cell("-"));
      }
      tr.appendChild(cell(fmtBytes(bytes)));
      tr.appendChild(cell(fmtBytes(rss)));
      rows.push(tr);
    }
    document.getElementById("nodes").replaceChildren(...rows);
    document.getElementById("up").textContent = totals.up + " / " + cluster.nodes.length;
    document.getElementById("bytes").textContent = fmtBytes(totals.bytes);
    document.getElementById("rss").textContent = fmtBytes(totals.rss);
    if (totals.measured) {
      document.getElementById("rps").textContent = totals.rps.toFixed(1);
      document.getElementById("hit").textContent = fmtRate(totals.hits, totals.gets);
      document.getElementById("lat").textContent = [0.5, 0.95, 0.99]
          .map(q => fmtSeconds(quantile(q, totals.delta))).join(" / ");
    }
    document.getElementById("status").textContent =
        "updated " + new Date().toLocaleTimeString() + " (every second)";
  } catch (e) {
    document.getElementById("status").textContent = "cannot reach the node: " + e;
  }
}

tick();
setInterval(tick, 1000);
</script>
</body>
</html>
)HTML";

}  // namespace

std::string_view DashboardHtml() { return kHtml; }

}  // namespace nexus
