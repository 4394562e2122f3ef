// Workers: health, circuit breaker, load and the rate limits they reported;
// a form to register one and a button to remove one.
import { get, post, del, enc } from "./api.js";
import { h, field, formatTime, statusBadge, reportError, button } from "./dom.js";

export async function render(main) {
  main.append(h("h1", {}, "Workers"));
  const [workers, limits] = await Promise.all([get("/workers"), get("/rate-limits")]);
  if (!workers.length) main.append(h("p", { class: "muted" }, "No workers registered."));
  else main.append(h("div", { class: "table-wrap" }, h("table", { class: "list", id: "worker-table" },
    h("thead", {}, h("tr", {}, ["Id", "Health", "Circuit", "Load", "Failures", "Protocol", "Tags", "URL", "Last error", ""].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, workers.map((w) => {
      const remove = button("Remove", async () => {
        if (!confirm("Remove worker " + w.id + "?")) return;
        try {
          await del("/workers/" + enc(w.id));
          location.reload();
        } catch (e) {
          reportError(e, "Remove worker");
        }
      }, { class: "link", "aria-label": "Remove worker " + w.id });
      return h("tr", { "data-worker": w.id },
        h("td", { class: "mono" }, w.id), h("td", {}, statusBadge(w.status)),
        h("td", {}, (w.circuit || "closed") + (w.circuit_open_until_ms ? " until " + formatTime(w.circuit_open_until_ms) : "")),
        h("td", {}, (w.in_flight || 0) + " / " + w.max_concurrent),
        h("td", {}, String(w.consecutive_failures || 0)),
        h("td", {}, w.protocol), h("td", {}, (w.tags || []).join(", ")),
        h("td", { class: "mono" }, w.url), h("td", {}, w.last_error_text ? h("span", { class: "problem" }, w.last_error_text) : ""),
        h("td", {}, remove));
    })))));

  main.append(h("h2", {}, "Rate limits"));
  if (!limits.length) main.append(h("p", { class: "muted" }, "No worker has reported a rate limit."));
  else main.append(h("div", { class: "table-wrap" }, h("table", { class: "list", id: "rate-limit-table" },
    h("thead", {}, h("tr", {}, ["Worker", "Remaining", "Limit", "Resets in", "Reported"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, limits.map((l) => h("tr", {}, h("td", { class: "mono" }, l.worker_id), h("td", {}, String(l.remaining)),
      h("td", {}, String(l.limit)), h("td", {}, l.reset_ms + " ms"), h("td", {}, formatTime(l.updated_at_ms))))))));

  const id = h("input", { type: "text", required: true, autocomplete: "off" });
  const url = h("input", { type: "url", required: true, autocomplete: "off", placeholder: "http://127.0.0.1:9001/webhook" });
  const protocol = h("select", {}, ["webhook", "api_chat", "openai_chat", "a2a", "mqtt", "redis_stream"].map((p) => h("option", { value: p }, p)));
  const tags = h("input", { type: "text", autocomplete: "off", placeholder: "writer, reviewer" });
  const max = h("input", { type: "number", min: "1", value: "1" });
  const problem = h("p", { class: "problem", role: "alert" });
  const form = h("form", { class: "card" }, h("h2", {}, "Register a worker"),
    h("div", { class: "grid2" }, field("Id", id), field("URL", url), field("Protocol", protocol), field("Tags (comma-separated)", tags), field("Max concurrent calls", max)),
    problem, h("button", { type: "submit" }, "Register"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await post("/workers", { id: id.value.trim(), url: url.value.trim(), protocol: protocol.value,
        tags: tags.value.split(",").map((t) => t.trim()).filter(Boolean), max_concurrent: Number(max.value) || 1 });
      location.reload();
    } catch (e) {
      problem.textContent = e.message;
      reportError(e, "Register worker");
    }
  });
  main.append(form);
}
