// Workflows: the stored ones (newest first) and a form to add one.
import { get, post, enc } from "./api.js";
import { h, field, formatTime, parseJsonField, reportError } from "./dom.js";

export async function render(main) {
  main.append(h("h1", {}, "Workflows"));
  const list = await get("/workflows");
  if (list.length === 0) main.append(h("p", { class: "muted" }, "No stored workflows yet."));
  else {
    main.append(h("div", { class: "table-wrap" }, h("table", { class: "list", id: "workflow-table" },
      h("thead", {}, h("tr", {}, ["Id", "Name", "Version", "Nodes", "Updated"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, list.map((w) => {
        const nodes = w.definition && typeof w.definition.nodes === "object" && w.definition.nodes ? Object.keys(w.definition.nodes).length : "?";
        return h("tr", {},
          h("td", {}, h("a", { href: "#/workflows/" + enc(w.id) }, w.id)),
          h("td", {}, w.name), h("td", {}, String(w.version)), h("td", {}, String(nodes)),
          h("td", {}, formatTime(w.updated_at_ms)));
      })))));
  }

  const definition = h("textarea", { rows: 10, spellcheck: "false", class: "code" });
  const id = h("input", { type: "text", autocomplete: "off" });
  const problem = h("p", { class: "problem", role: "alert" });
  const form = h("form", { class: "card", "aria-labelledby": "new-workflow" },
    h("h2", { id: "new-workflow" }, "Add a workflow"),
    field("Id (optional: taken from the definition or generated)", id),
    field("Definition (JSON)", definition),
    problem,
    h("button", { type: "submit" }, "Add workflow"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    problem.textContent = "";
    try {
      const def = parseJsonField(definition.value, "The definition");
      const body = { definition_json: def };
      const wid = id.value.trim() || def.id;
      if (wid) body.id = wid;
      if (def.name) body.name = def.name;
      const created = await post("/workflows", body);
      location.hash = "#/workflows/" + enc(created.id);
    } catch (e) {
      problem.textContent = e.message;
      reportError(e, "Add workflow");
    }
  });
  main.append(form);
}
