#include "node/dashboard.h"

namespace nexus {

namespace {

// Polls this node's /metrics and /api/ring every second and derives rates and latency
// percentiles from counter and histogram deltas between two scrapes.
constexpr std::string_view kHtml = R"HTML(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>nexuscache dashboard</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 2rem; background: #fafafa; color: #222; }
  h1 { font-size: 1.4rem; }
  .grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(14rem, 1fr)); gap: 1rem; }
  .card { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 1rem; }
  .label { color: #666; font-size: .85rem; }
  .value { font-size: 1.6rem; font-variant-numeric: tabular-nums; }
  ul { margin: .3rem 0 0 1rem; padding: 0; }
  #status { color: #888; font-size: .8rem; }
</style>
</head>
<body>
<h1>nexuscache <span id="node"></span></h1>
<div class="grid">
  <div class="card"><div class="label">requests / s</div><div class="value" id="rps">-</div></div>
  <div class="card"><div class="label">GET hit rate</div><div class="value" id="hit">-</div></div>
  <div class="card"><div class="label">latency p50 / p95 / p99</div><div class="value" id="lat">-</div></div>
  <div class="card"><div class="label">cache bytes (main + hot)</div><div class="value" id="bytes">-</div></div>
  <div class="card"><div class="label">process memory (RSS)</div><div class="value" id="rss">-</div></div>
  <div class="card"><div class="label">ring (generation <span id="gen">-</span>)</div><ul id="members"></ul></div>
</div>
<p id="status">loading…</p>
<script>
"use strict";
let previous = null;

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

function buckets(samples) {
  const by = new Map();
  for (const s of samples) {
    if (s.name !== "nexuscache_request_duration_seconds_bucket") continue;
    const le = s.labels.le === "+Inf" ? Infinity : parseFloat(s.labels.le);
    by.set(le, (by.get(le) || 0) + s.value);
  }
  return [...by.entries()].sort((a, b) => a[0] - b[0]);
}

function quantile(q, now, before) {
  const b = buckets(now), a = new Map(buckets(before));
  const delta = b.map(([le, c]) => [le, c - (a.get(le) || 0)]);
  const total = delta.length ? delta[delta.length - 1][1] : 0;
  if (total <= 0) return null;
  for (const [le, c] of delta) if (c >= q * total) return le;
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

async function tick() {
  try {
    const [metricsText, ring] = await Promise.all([
      fetch("/metrics").then(r => r.text()),
      fetch("/api/ring").then(r => r.json()),
    ]);
    const now = { at: performance.now(), samples: parseMetrics(metricsText) };
    document.getElementById("node").textContent = ring.self;
    document.getElementById("gen").textContent = ring.generation;
    const ul = document.getElementById("members");
    ul.replaceChildren(...ring.members.map(m => {
      const li = document.createElement("li");
      li.textContent = m.name + "  " + m.grpc;
      return li;
    }));
    const s = now.samples;
    document.getElementById("bytes").textContent = fmtBytes(sum(s, "nexuscache_cache_size_bytes"));
    document.getElementById("rss").textContent =
        fmtBytes(sum(s, "nexuscache_process_resident_memory_bytes"));
    if (previous) {
      const secs = (now.at - previous.at) / 1000;
      const p = previous.samples;
      const reqs = sum(s, "nexuscache_requests_total") - sum(p, "nexuscache_requests_total");
      document.getElementById("rps").textContent = (reqs / secs).toFixed(1);
      const hits = sum(s, "nexuscache_requests_total", { op: "get", status: "hit" }) -
                   sum(p, "nexuscache_requests_total", { op: "get", status: "hit" });
      const gets = sum(s, "nexuscache_requests_total", { op: "get" }) -
                   sum(p, "nexuscache_requests_total", { op: "get" });
      document.getElementById("hit").textContent =
          gets > 0 ? (100 * hits / gets).toFixed(1) + " %" : "-";
      document.getElementById("lat").textContent = [0.5, 0.95, 0.99]
          .map(q => fmtSeconds(quantile(q, s, p))).join(" / ");
    }
    previous = now;
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
