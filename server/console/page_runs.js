// Runs: a page at a time (limit/offset, newest first), filtered by status
// and workflow, refreshed every few seconds while the page is open.
import { get, enc } from "./api.js";
import { h, clear, field, formatTime, statusBadge, reportError, button } from "./dom.js";
import { STATUSES } from "./page_overview.js";

const PAGE = 50;
const REFRESH_MS = 3000;

export async function render(main, { params }) {
  const status = params.get("status") || "";
  const workflowId = params.get("workflow_id") || "";
  const offset = Math.max(0, Number(params.get("offset")) || 0);
  main.append(h("h1", {}, "Runs"));

  const statusSelect = h("select", { id: "filter-status" }, h("option", { value: "" }, "any"),
    STATUSES.map((s) => h("option", { value: s, selected: s === status }, s)));
  const workflowInput = h("input", { id: "filter-workflow", type: "text", value: workflowId, list: "workflow-ids", autocomplete: "off" });
  const datalist = h("datalist", { id: "workflow-ids" });
  const live = h("input", { id: "live-refresh", type: "checkbox", checked: true });
  const form = h("form", { class: "filters", role: "search" },
    field("Status", statusSelect), field("Workflow", workflowInput), datalist,
    h("button", { type: "submit" }, "Filter"),
    h("div", { class: "field inline" }, live, h("label", { for: "live-refresh" }, "Live updates")));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    if (statusSelect.value) q.set("status", statusSelect.value);
    if (workflowInput.value.trim()) q.set("workflow_id", workflowInput.value.trim());
    location.hash = "#/runs" + (q.toString() ? "?" + q : "");
  });
  main.append(form);
  get("/workflows").then((ws) => ws.forEach((w) => datalist.append(h("option", { value: w.id })))).catch(() => {});

  const table = h("div", { id: "runs-table", "aria-live": "polite" });
  const pager = h("nav", { class: "pager", "aria-label": "Pages of runs" });
  main.append(table, pager);

  function pageLink(label, newOffset, enabled) {
    const q = new URLSearchParams(params);
    q.set("offset", String(newOffset));
    return enabled ? h("a", { href: "#/runs?" + q, class: "button" }, label) : h("span", { class: "button disabled", "aria-disabled": "true" }, label);
  }

  async function load() {
    const q = new URLSearchParams({ limit: String(PAGE), offset: String(offset) });
    if (status) q.set("status", status);
    if (workflowId) q.set("workflow_id", workflowId);
    const page = await get("/runs?" + q);
    clear(table);
    if (page.items.length === 0) table.append(h("p", { class: "muted" }, "No runs" + (status || workflowId ? " match the filter." : " yet.")));
    else table.append(h("div", { class: "table-wrap" }, h("table", { class: "list" },
      h("thead", {}, h("tr", {}, ["Run", "Status", "Workflow", "Created", "Updated"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, page.items.map((r) => h("tr", { "data-run": r.id },
        h("td", {}, h("a", { href: "#/runs/" + enc(r.id), class: "mono" }, r.id)),
        h("td", {}, statusBadge(r.status)),
        h("td", {}, r.workflow_id ? h("a", { href: "#/workflows/" + enc(r.workflow_id) }, r.workflow_id) : h("span", { class: "muted" }, "inline")),
        h("td", {}, formatTime(r.created_at_ms)), h("td", {}, formatTime(r.updated_at_ms))))))));
    clear(pager);
    pager.append(pageLink("← Newer", Math.max(0, offset - PAGE), offset > 0),
      h("span", { class: "muted" }, "runs " + (page.items.length ? offset + 1 : 0) + "–" + (offset + page.items.length)),
      pageLink("Older →", offset + PAGE, page.has_more));
    table.dataset.loadedAt = String(performance.now());
  }
  await load();
  const timer = setInterval(() => {
    if (live.checked && !document.hidden) load().catch((e) => reportError(e, "Refreshing runs"));
  }, REFRESH_MS);
  main.append(button("Refresh now", () => load().catch((e) => reportError(e, "Refreshing runs"))));
  return () => clearInterval(timer);
}
