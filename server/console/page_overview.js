// Overview: the server's health, runs by status, and step latency from the
// Prometheus text of /metrics.
import { get, text } from "./api.js";
import { h, reportError } from "./dom.js";

export const STATUSES = ["pending", "running", "interrupted", "completed", "failed", "cancelled"];

// Prometheus text -> {name: [{labels, value}]}.
export function parseMetrics(body) {
  const out = {};
  for (const line of body.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    for (const pair of (m[3] || "").split(",")) {
      const kv = pair.match(/^\s*([a-zA-Z_]+)="(.*)"\s*$/);
      if (kv) labels[kv[1]] = kv[2];
    }
    (out[m[1]] = out[m[1]] || []).push({ labels, value: Number(m[4]) });
  }
  return out;
}

// The le bound under which `q` of the observations fall (bucket resolution).
export function quantile(buckets, q) {
  const total = buckets.length ? buckets[buckets.length - 1].value : 0;
  if (!total) return null;
  for (const b of buckets) if (b.value >= q * total) return b.labels.le;
  return "+Inf";
}

function latencyTable(metrics, name, title) {
  const buckets = (metrics[name + "_bucket"] || []).slice().sort((a, b) => Number(a.labels.le) - Number(b.labels.le));
  const count = (metrics[name + "_count"] || [{ value: 0 }])[0].value;
  const sum = (metrics[name + "_sum"] || [{ value: 0 }])[0].value;
  const fmt = (s) => (s === null ? "–" : s === "+Inf" ? "> largest bucket" : "≤ " + (Number(s) * 1000).toFixed(0) + " ms");
  return h("section", { class: "card" }, h("h2", {}, title),
    h("table", {},
      h("tbody", {},
        h("tr", {}, h("th", { scope: "row" }, "observations"), h("td", {}, String(count))),
        h("tr", {}, h("th", { scope: "row" }, "mean"), h("td", {}, count ? ((sum / count) * 1000).toFixed(1) + " ms" : "–")),
        h("tr", {}, h("th", { scope: "row" }, "median"), h("td", {}, fmt(quantile(buckets, 0.5)))),
        h("tr", {}, h("th", { scope: "row" }, "95th percentile"), h("td", {}, fmt(quantile(buckets, 0.95)))),
        h("tr", {}, h("th", { scope: "row" }, "99th percentile"), h("td", {}, fmt(quantile(buckets, 0.99)))))));
}

async function countRuns(status) {
  // The API has no count: up to 1000 per status, "1000+" beyond.
  const page = await get("/runs?status=" + status + "&limit=1000");
  return page.items.length + (page.has_more ? "+" : "");
}

export async function render(main) {
  main.append(h("h1", {}, "Overview"));
  const health = await get("/health");
  main.append(h("section", { class: "card" }, h("h2", {}, "Server"),
    h("p", {}, "Version " + health.version + ", status " + health.status + ", " + health.active_runs +
      " active runs, " + health.total_workers + " workers" + (health.draining ? ", draining" : "") + ".")));

  const byStatus = h("div", { class: "tiles" });
  main.append(h("section", { class: "card" }, h("h2", {}, "Runs by status"), byStatus));
  const counts = await Promise.all(STATUSES.map((s) => countRuns(s).catch((e) => (reportError(e, s), "?"))));
  STATUSES.forEach((s, i) =>
    byStatus.append(h("a", { class: "tile status-" + s, href: "#/runs?status=" + s },
      h("span", { class: "tile-count" }, String(counts[i])), h("span", {}, s))));

  try {
    const metrics = parseMetrics(await text("/metrics"));
    main.append(h("div", { class: "grid2" },
      latencyTable(metrics, "orch_step_duration_seconds", "Node (step) latency"),
      latencyTable(metrics, "orch_http_request_duration_seconds", "API latency")));
    const counters = ["orch_runs_created_total", "orch_runs_completed_total", "orch_runs_failed_total",
      "orch_runs_cancelled_total", "orch_steps_completed_total", "orch_steps_failed_total", "orch_steps_retry_scheduled_total"];
    main.append(h("section", { class: "card" }, h("h2", {}, "Since the server started"),
      h("table", {}, h("tbody", {}, counters.filter((c) => metrics[c]).map((c) =>
        h("tr", {}, h("th", { scope: "row" }, c.replace(/^orch_|_total$/g, "").replace(/_/g, " ")), h("td", {}, String(metrics[c][0].value))))))));
  } catch (e) {
    main.append(h("p", { class: "problem" }, "Metrics unavailable: " + e.message));
  }
}
