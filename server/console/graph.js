// Graph pictures: the SVG orch draws with Graphviz (GET .../graph.svg),
// cleaned of anything active before it joins the page, with nodes that can be
// recoloured live by name. When the server has no Graphviz (501) or refuses
// the drawing (too large), the Mermaid text is shown instead.
import { request, text, enc } from "./api.js";
import { h, clear } from "./dom.js";

const SVG_NS = "http://www.w3.org/2000/svg";

// Parses SVG text without running it, keeps only drawing elements.
function cleanSvg(svgText) {
  const doc = new DOMParser().parseFromString(svgText, "image/svg+xml");
  const svg = doc.documentElement;
  if (!svg || svg.namespaceURI !== SVG_NS || svg.nodeName !== "svg") throw new Error("the server sent no SVG picture");
  for (const bad of svg.querySelectorAll("script, foreignObject, iframe, image, use, a, style")) {
    if (bad.nodeName === "a") bad.replaceWith(...bad.childNodes);
    else bad.remove();
  }
  for (const el of [svg, ...svg.querySelectorAll("*")]) {
    for (const attr of [...el.attributes]) {
      const name = attr.name.toLowerCase();
      if (name.startsWith("on") || name === "href" || name === "xlink:href" || name === "style") el.removeAttribute(attr.name);
    }
  }
  return document.importNode(svg, true);
}

// Shows a graph in `container`: `svgPath` for the picture, `mermaidPath`
// (may be null) for the fallback. Returns {setStates(map), nodes} or null.
export async function showGraph(container, svgPath, mermaidPath) {
  clear(container);
  container.append(h("p", { class: "muted" }, "Drawing…"));
  let reason;
  try {
    const res = await request("GET", svgPath);
    const svg = cleanSvg(await res.text());
    // Natural size (Graphviz's points), shrunk to fit the box, never enlarged.
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", "workflow graph");
    clear(container);
    container.append(svg);
    const nodes = new Map();
    for (const g of svg.querySelectorAll("g.node")) {
      const title = g.querySelector("title");
      if (title) nodes.set(title.textContent, g);
    }
    return {
      nodes,
      setStates(states) {
        for (const [name, g] of nodes) {
          const s = states[name];
          if (s) g.setAttribute("data-state", s);
          else g.removeAttribute("data-state");
        }
      },
    };
  } catch (e) {
    reason = e.message;
  }
  clear(container);
  container.append(h("p", { class: "notice" }, "No picture: " + reason + (mermaidPath ? " Showing the Mermaid text instead." : "")));
  if (mermaidPath) {
    try {
      const mermaid = await text(mermaidPath);
      container.append(h("pre", { class: "mermaid-text", "aria-label": "Mermaid flowchart text" }, mermaid));
    } catch (e) {
      container.append(h("p", { class: "problem" }, "Mermaid text unavailable too: " + e.message));
    }
  }
  return null;
}

export const graphPaths = {
  workflow: (id) => ["/workflows/" + enc(id) + "/graph.svg", "/workflows/" + enc(id) + "/mermaid"],
  run: (id, workflowId) => ["/runs/" + enc(id) + "/graph.svg", workflowId ? "/workflows/" + enc(workflowId) + "/mermaid" : null],
};

// Node name -> state of its latest step, from a run's steps (oldest first).
export function nodeStates(steps) {
  const states = {};
  for (const s of steps || []) states[s.def_step_id] = s.status;
  return states;
}
