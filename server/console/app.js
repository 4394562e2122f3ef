// The console's shell: the hash router (#/runs/ID ...), the token dialog, the
// error banner and the server line in the header. Each page is a module
// exporting render(main, params) that returns an optional cleanup function.
import { onTokenNeeded, setToken, token, get } from "./api.js";
import { h, clear, reportError } from "./dom.js";
import * as overview from "./page_overview.js";
import * as workflows from "./page_workflows.js";
import * as workflow from "./page_workflow.js";
import * as runs from "./page_runs.js";
import * as run from "./page_run.js";
import * as workers from "./page_workers.js";

const routes = [
  [/^\/overview$/, overview, "overview"],
  [/^\/workflows$/, workflows, "workflows"],
  [/^\/workflows\/(.+)$/, workflow, "workflows"],
  [/^\/runs$/, runs, "runs"],
  [/^\/runs\/(.+)$/, run, "runs"],
  [/^\/workers$/, workers, "workers"],
];

function askToken(problem) {
  const dialog = document.getElementById("token-dialog");
  const form = document.getElementById("token-form");
  const input = document.getElementById("token-input");
  document.getElementById("token-problem").textContent = problem || "";
  input.value = "";
  return new Promise((resolve, reject) => {
    const done = () => {
      form.removeEventListener("submit", submit);
      dialog.removeEventListener("cancel", cancel);
    };
    const submit = (ev) => {
      ev.preventDefault();
      if (!input.value.trim()) return;
      setToken(input.value.trim());
      done();
      dialog.close();
      document.getElementById("sign-out").hidden = false;
      resolve();
    };
    // Escape closes the dialog: the call that needed the token fails and says why.
    const cancel = () => {
      done();
      reject(new Error("this server needs an API token; reload the page to enter it"));
    };
    form.addEventListener("submit", submit);
    dialog.addEventListener("cancel", cancel);
    if (!dialog.open) dialog.showModal();
    input.focus();
  });
}

let cleanup = null;

async function route() {
  const hash = location.hash.replace(/^#/, "") || "/overview";
  const [path, query] = hash.split("?");
  const params = new URLSearchParams(query || "");
  const main = document.getElementById("main");
  if (cleanup) {
    try {
      cleanup();
    } catch (_) {}
    cleanup = null;
  }
  clear(main);
  // The page's state attributes go with it: a run page says its run's status
  // only once it has read that run (a test or script waiting on it must not
  // see the previous page's).
  for (const key of Object.keys(main.dataset)) delete main.dataset[key];
  clear(document.getElementById("errors"));  // errors belong to the page they came from
  for (const [pattern, page, section] of routes) {
    const m = path.match(pattern);
    if (!m) continue;
    for (const a of document.querySelectorAll("nav a")) {
      if (a.dataset.section === section) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    try {
      cleanup = (await page.render(main, { id: m[1] ? decodeURIComponent(m[1]) : undefined, params })) || null;
    } catch (e) {
      // A page that failed still says why.
      main.append(h("div", { class: "page-error", role: "alert" }, h("h1", {}, "Could not show this page"), h("p", {}, e.message)));
      reportError(e);
    }
    return;
  }
  main.append(h("h1", {}, "Not found"), h("p", {}, "No console page " + path + ". "), h("a", { href: "#/overview" }, "Go to the overview"));
}

async function showServer() {
  try {
    const health = await get("/health");
    document.getElementById("server-info").textContent =
      "orch " + health.version + " · " + health.active_runs + " active · " + health.status;
  } catch (e) {
    document.getElementById("server-info").textContent = "server unreachable";
  }
}

onTokenNeeded(askToken);
window.addEventListener("hashchange", route);
window.addEventListener("unhandledrejection", (ev) => reportError(ev.reason));
document.addEventListener("DOMContentLoaded", () => {
  const signOut = document.getElementById("sign-out");
  signOut.hidden = !token();
  signOut.addEventListener("click", () => {
    setToken("");
    signOut.hidden = true;
    route();
  });
  showServer();
  setInterval(showServer, 10000);
  route();
});
