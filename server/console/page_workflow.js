// One workflow: its graph, its JSON with the validation problems beside the
// lines they are about, editing, and a form to start a run.
import { get, post, put, enc } from "./api.js";
import { h, clear, field, pretty, parseJsonField, reportError, button } from "./dom.js";
import { showGraph, graphPaths } from "./graph.js";

// The definition as numbered lines; a problem about a node is shown under the
// line that opens that node ("name": { inside "nodes").
function annotatedJson(definition, problems) {
  const lines = pretty(definition).split("\n");
  const byLine = new Map();
  const general = [];
  let nodesLine = lines.findIndex((l) => /^ {2}"nodes": \{/.test(l));
  for (const p of problems) {
    let at = -1;
    if (p.node && nodesLine >= 0) {
      const key = "    " + JSON.stringify(p.node) + ":";
      at = lines.findIndex((l, i) => i > nodesLine && l.startsWith(key));
    }
    if (at < 0 && p.key) {
      const key = JSON.stringify(p.key) + ":";
      at = lines.findIndex((l) => l.trimStart().startsWith(key));
    }
    if (at < 0) general.push(p);
    else byLine.set(at, [...(byLine.get(at) || []), p]);
  }
  const problemLine = (p) => h("div", { class: "json-problem " + (p.warning ? "warning" : "error"), role: "note" },
    (p.warning ? "warning " : "error ") + p.type + (p.node ? " (" + p.node + ")" : "") + ": " + p.message);
  const code = h("div", { class: "json-lines", "aria-label": "workflow definition with problems inline" });
  lines.forEach((l, i) => {
    code.append(h("div", { class: "json-line" + (byLine.has(i) ? " has-problem" : "") }, h("span", { class: "ln", "aria-hidden": "true" }, String(i + 1)), h("code", {}, l)));
    for (const p of byLine.get(i) || []) code.append(problemLine(p));
  });
  return h("div", {}, general.map(problemLine), code);
}

function plural(n, word) {
  return n + " " + word + (n === 1 ? "" : "s");
}

function runForm(id) {
  const input = h("textarea", { rows: 4, spellcheck: "false", class: "code", id: "run-input" }, "{}");
  const config = h("textarea", { rows: 3, spellcheck: "false", class: "code", id: "run-config" }, "{}");
  const key = h("input", { type: "text", autocomplete: "off", id: "run-idempotency" });
  const problem = h("p", { class: "problem", role: "alert" });
  const form = h("form", { class: "card", id: "start-run" }, h("h2", {}, "Start a run"),
    field("Input (JSON object)", input), field("Config (JSON object)", config),
    field("Idempotency key (optional)", key), problem, h("button", { type: "submit" }, "Start run"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    problem.textContent = "";
    try {
      const body = { input: parseJsonField(input.value, "Input"), config: parseJsonField(config.value, "Config") };
      if (key.value.trim()) body.idempotency_key = key.value.trim();
      const started = await post("/workflows/" + enc(id) + "/run", body);
      location.hash = "#/runs/" + enc(started.id);
    } catch (e) {
      problem.textContent = e.message;
      reportError(e, "Start run");
    }
  });
  return form;
}

export async function render(main, { id }) {
  const w = await get("/workflows/" + enc(id));
  main.append(h("h1", {}, "Workflow ", h("span", { class: "mono" }, w.id)),
    h("p", { class: "muted" }, w.name + " · version " + w.version + " · ", h("a", { href: "#/runs?workflow_id=" + enc(w.id) }, "its runs")));
  const graph = h("div", { class: "graph card", id: "workflow-graph" });
  const layout = h("div", { class: "grid2" }, graph, runForm(w.id));
  main.append(layout);
  showGraph(graph, ...graphPaths.workflow(w.id));

  const jsonBox = h("section", { class: "card", id: "workflow-json" });
  main.append(jsonBox);
  async function showJson(definition) {
    clear(jsonBox);
    jsonBox.append(h("h2", {}, "Definition"));
    let problems = [];
    try {
      const v = await post("/workflows/" + enc(w.id) + "/validate");
      problems = [...(v.errors || []), ...(v.warnings || [])];
      jsonBox.append(h("p", { class: v.valid ? "ok" : "problem", id: "validity" },
        v.valid ? "Valid" + (problems.length ? " (" + plural(problems.length, "warning") + ")" : "") : "Invalid: " + plural((v.errors || []).length, "error")));
    } catch (e) {
      jsonBox.append(h("p", { class: "problem" }, "Validation failed: " + e.message));
    }
    jsonBox.append(annotatedJson(definition, problems));
    jsonBox.append(button("Edit", () => edit(definition)));
  }
  function edit(definition) {
    clear(jsonBox);
    const area = h("textarea", { rows: 24, spellcheck: "false", class: "code" }, pretty(definition));
    const problem = h("p", { class: "problem", role: "alert" });
    const form = h("form", {}, field("Definition (JSON)", area), problem,
      h("div", { class: "row" }, h("button", { type: "submit" }, "Save and validate"), button("Cancel", () => showJson(definition))));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        const def = parseJsonField(area.value, "The definition");
        await put("/workflows/" + enc(w.id), { definition_json: def });
        showGraph(graph, ...graphPaths.workflow(w.id));
        showJson(def);
      } catch (e) {
        problem.textContent = e.message;
        reportError(e, "Save workflow");
      }
    });
    jsonBox.append(h("h2", {}, "Edit definition"), form);
    area.focus();
  }
  showJson(w.definition);
}
