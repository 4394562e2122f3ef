// The web console in a real headless Chromium (Debian's `chromium`, driven by
// puppeteer-core from .cache/console-browser, installed by scripts/bootstrap.sh).
// Starts `orch serve` with a token and the example echo worker, then works the
// console as a person would: token, workflows, a live run, a checkpoint diff, a
// fork, resuming an interrupt, cancelling, an error; measures the budgets and
// writes a screenshot of each page.
//
//   node console_test.mjs --orch BIN --worker MOCK_WORKER --modules DIR --images DIR
//
// A missing browser or package is a failure (exit 1), never a skip.
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import { mkdtempSync, mkdirSync, existsSync, appendFileSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import net from "node:net";
import http from "node:http";
import path from "node:path";

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []));
const TOKEN = "console-test-token";
const EXAMPLES = args.examples;
const IMAGES = process.env.ORCH_SCREENSHOTS_DIR || args.images;
const children = [];
const figures = [];
// The servers' state directories: removed however the test ends.
const tempDirs = [];
process.on("exit", () => {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

function fail(message) {
  console.error("console_test: FAILED: " + message);
  for (const c of children) c.kill("SIGKILL");
  process.exit(1);
}
function check(condition, message) {
  if (!condition) throw new Error(message);
}
function figure(line) {
  console.log("figure: " + line);
  figures.push(line);
  if (process.env.ORCH_FIGURES_FILE) appendFileSync(process.env.ORCH_FIGURES_FILE, "console_test: " + line + "\n");
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- prerequisites: loud failures -----------------------------------------
for (const key of ["orch", "worker", "modules", "examples"]) if (!args[key]) fail("missing --" + key);
const chromium = process.env.ORCH_CHROMIUM || ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find(existsSync);
if (!chromium) fail("no Chromium found (install Debian's chromium: scripts/bootstrap.sh) or set ORCH_CHROMIUM");
let puppeteer;
try {
  puppeteer = createRequire(path.resolve(args.modules, "x.js"))("puppeteer-core");
} catch (e) {
  fail("puppeteer-core is not installed in " + args.modules + " (run scripts/bootstrap.sh): " + e.message);
}

// ---- processes --------------------------------------------------------------
function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const port = s.address().port;
      s.close(() => resolve(port));
    });
  });
}

function start(binary, argv) {
  const child = spawn(binary, argv, { stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  let err = "";
  child.stderr.on("data", (d) => (err = (err + d).slice(-4000)));
  child.on("exit", (code) => {
    if (!shuttingDown) fail(path.basename(binary) + " exited early (" + code + "): " + err);
  });
  return child;
}
let shuttingDown = false;

async function startWorker() {
  const child = start(args.worker, ["--port", "0", "--delay-ms", "300"]);
  const port = await new Promise((resolve) => child.stdout.once("data", (d) => resolve(Number(String(d).trim()))));
  return port;
}

// A worker that never answers: a run on it stays running until cancelled.
async function startStuckWorker() {
  const server = http.createServer(() => {});
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return { port: server.address().port, server };
}

let BASE;
async function api(method, route, body) {
  const res = await fetch(BASE + route, {
    method,
    headers: { Authorization: "Bearer " + TOKEN, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(method + " " + route + ": " + res.status + " " + text);
  return text ? JSON.parse(text) : null;
}

async function startServer() {
  const port = await freePort();
  const dir = mkdtempSync(path.join(tmpdir(), "orch-console-"));
  tempDirs.push(dir);
  start(args.orch, ["serve", "--host", "127.0.0.1", "--port", String(port), "--db", path.join(dir, "orch.db"), "--token", TOKEN]);
  BASE = "http://127.0.0.1:" + port;
  for (let i = 0; i < 300; i++) {
    try {
      if ((await fetch(BASE + "/health")).ok) return;
    } catch (_) {}
    await sleep(100);
  }
  fail("orch serve did not answer /health");
}

async function waitRun(id, statuses, timeoutMs = 30000) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const run = await api("GET", "/runs/" + id);
    if (statuses.includes(run.status)) return run;
    if (Date.now() > until) throw new Error("run " + id + " is " + run.status + ", expected " + statuses.join("/"));
    await sleep(50);
  }
}

// ---- the test ---------------------------------------------------------------
async function main() {
  const workerPort = await startWorker();
  const stuck = await startStuckWorker();
  await startServer();
  const example = (name) => JSON.parse(readFileSync(path.join(EXAMPLES, name + ".json"), "utf8"));
  await api("POST", "/workflows", example("review_loop"));
  await api("POST", "/workflows", example("approval"));
  await api("POST", "/workflows", { id: "stuck", nodes: { wait: { type: "task", worker_tags: ["stuck"], prompt_template: "wait", timeout_ms: 600000 } },
    edges: [["__start__", "wait"], ["wait", "__end__"]] });
  await api("POST", "/workers", { id: "echo", url: "http://127.0.0.1:" + workerPort + "/webhook", tags: ["writer", "reviewer"], max_concurrent: 4 });
  await api("POST", "/workers", { id: "stuck", url: "http://127.0.0.1:" + stuck.port + "/webhook", tags: ["stuck"] });

  const browser = await puppeteer.launch({
    executablePath: chromium,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"],
  });
  try {
    await exercise(browser);
  } finally {
    await browser.close();
  }
}

async function exercise(browser) {
  const page = await browser.newPage();
  page.on("dialog", (d) => d.accept());  // confirm() before replay and delete
  await page.setViewport({ width: 1280, height: 800 });
  const consoleErrors = [];
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  page.on("console", (m) => {
    // Refused requests (the 401 before the token, the 404 and 400 this test
    // provokes) are logged by Chromium; script errors are what must not happen.
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) consoleErrors.push(m.text());
  });
  if (IMAGES) mkdirSync(IMAGES, { recursive: true });
  const shot = async (name) => {
    if (IMAGES) await page.screenshot({ path: path.join(IMAGES, "console-" + name + ".png"), fullPage: false });
  };
  const go = async (hash) => {
    await page.evaluate((h) => (location.hash = h), hash);
  };
  const text = (sel) => page.$eval(sel, (el) => el.textContent);

  // 1. The token is asked once, kept for the tab.
  await page.goto(BASE + "/ui/", { waitUntil: "domcontentloaded" });
  await page.waitForSelector("#token-dialog[open]", { timeout: 10000 });
  await page.type("#token-input", TOKEN);
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => !document.querySelector("#token-dialog").open && document.querySelector("main h1")?.textContent === "Overview", { timeout: 10000 });
  await page.waitForSelector(".tiles .tile", { timeout: 10000 });
  await page.reload({ waitUntil: "domcontentloaded" });
  await page.waitForSelector(".tiles .tile", { timeout: 10000 });
  check(!(await page.$eval("#token-dialog", (d) => d.open)), "the token was asked again after a reload");
  console.log("ok: token asked once and kept in sessionStorage");

  // Keyboard: Tab from the top reaches the section links.
  await page.keyboard.press("Tab");
  await page.keyboard.press("Tab");
  const focused = await page.evaluate(() => document.activeElement?.textContent);
  check(["Overview", "Workflows"].includes(focused), "Tab did not reach the navigation (focused: " + focused + ")");

  // 2. Workflows: the list, then review_loop with its graph and inline problems.
  await go("#/workflows");
  await page.waitForSelector("#workflow-table a");
  await shot("workflows");
  await go("#/workflows/review_loop");
  await page.waitForSelector("#workflow-graph svg g.node title", { timeout: 10000 });
  const titles = await page.$$eval("#workflow-graph svg g.node title", (ts) => ts.map((t) => t.textContent));
  for (const n of ["write", "review", "check", "note"]) check(titles.includes(n), "graph lacks node " + n);
  await page.waitForSelector("#validity");
  check((await text("#validity")).startsWith("Valid"), "review_loop is not shown valid");
  await shot("workflow");
  console.log("ok: workflow page draws the graph (" + titles.length + " nodes)");

  // An invalid workflow: its problems inline under the node's line, and
  // starting it shows the server's refusal (a failed API call from a form).
  await api("POST", "/workflows", { id: "broken", nodes: { a: { type: "transform", updates: {} }, "<img src=x onerror=alert(1)>": { type: "task" } },
    edges: [["__start__", "a"], ["a", "__end__"]] });
  await go("#/workflows/broken");
  await page.waitForSelector("#workflow-json .json-problem", { timeout: 10000 });
  const inline = await page.$$eval("#workflow-json .json-line.has-problem + .json-problem", (ps) => ps.map((p) => p.textContent));
  check(inline.some((t) => t.includes("unreachable_node") && t.includes("<img src=x onerror=alert(1)>")), "the unreachable node's problem is not shown inline: " + inline.join(" | "));
  check(!(await page.$("#workflow-json img, #workflow-graph img")), "a node name became markup");
  check((await text("#validity")).startsWith("Invalid"), "the broken workflow is not shown invalid");
  await page.click("#start-run button[type=submit]");
  await page.waitForFunction(() => document.querySelector("#start-run .problem").textContent.includes("validation errors"), { timeout: 10000 });
  await shot("workflow-invalid");
  console.log("ok: validation problems inline, hostile name shown as text, refused start shown");
  await go("#/workflows/review_loop");
  await page.waitForSelector("#workflow-graph svg g.node title", { timeout: 10000 });

  // 3. Start review_loop from the form and watch its nodes change state live.
  await page.$eval("#run-input", (el) => (el.value = '{"topic": "graphs"}'));
  await page.click("#start-run button[type=submit]");
  await page.waitForFunction(() => /^#\/runs\/./.test(location.hash), { timeout: 10000 });
  const runId = decodeURIComponent(await page.evaluate(() => location.hash.slice("#/runs/".length)));
  await page.waitForSelector("#run-graph svg g.node", { timeout: 10000 });
  // Record every state change of the picture's nodes from now on.
  await page.evaluate(() => {
    window.__changes = [];
    const svg = document.querySelector("#run-graph svg");
    new MutationObserver((records) => {
      for (const r of records) window.__changes.push([r.target.querySelector("title")?.textContent, r.target.getAttribute("data-state")]);
    }).observe(svg, { attributes: true, attributeFilter: ["data-state"], subtree: true });
  });
  await page.waitForFunction(() => document.querySelector("main").dataset.status === "completed", { timeout: 30000 });
  await sleep(600);
  const changes = await page.evaluate(() => window.__changes);
  const seen = new Set(changes.map(([n, s]) => n + ":" + s));
  check(changes.length >= 3, "the graph changed state only " + changes.length + " times while the run went on");
  check(seen.has("review:completed") && seen.has("check:completed"), "live states lack review/check completed: " + [...seen].join(", "));
  const nodeStates = await page.$$eval("#run-graph svg g.node", (gs) => Object.fromEntries(gs.map((g) => [g.querySelector("title").textContent, g.getAttribute("data-state")])));
  check(nodeStates.write === "completed" && nodeStates.note === "completed", "final node states wrong: " + JSON.stringify(nodeStates));
  check((await page.$$("#step-timeline tbody tr")).length >= 7, "step timeline is missing steps");
  await page.waitForFunction(() => Number(document.querySelector("#event-count").textContent) > 5);
  console.log("ok: run " + runId + " watched live: " + changes.length + " node state changes (" + [...seen].join(", ") + ")");
  await shot("run");

  // 4. A checkpoint and its diff to the previous one: after "write", the draft changed.
  await page.waitForSelector("#checkpoint-list button.cp");
  const cpLabels = await page.$$eval("#checkpoint-list button.cp", (bs) => bs.map((b) => b.textContent));
  const writeIndex = cpLabels.findIndex((l) => l.endsWith("· write"));
  check(writeIndex > 0, "no checkpoint after write in " + cpLabels.join(", "));
  await (await page.$$("#checkpoint-list button.cp"))[writeIndex].click();
  await page.waitForSelector("#checkpoint-diff tr.diff-changed");
  const draftRow = await page.$$eval("#checkpoint-diff tbody tr", (trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent)).find((r) => r[0] === "draft"));
  check(draftRow && draftRow[1] === "changed" && draftRow[3].includes("echo: Write a short paragraph about graphs"),
    "the diff after write does not show the new draft: " + JSON.stringify(draftRow));
  await page.$eval("#checkpoint-detail", (el) => el.scrollIntoView());
  await shot("checkpoint");
  console.log("ok: checkpoint after write shows the draft changing (" + draftRow[2] + " -> " + draftRow[3].slice(0, 40) + "...)");

  // 5. Fork that checkpoint with an edited value; the fork completes.
  await page.$eval("#fork-state", (el) => {
    const state = JSON.parse(el.value);
    state.topic = "forked topic";
    el.value = JSON.stringify(state, null, 2);
  });
  await page.click("#fork-form button[type=submit]");
  await page.waitForFunction((old) => location.hash.startsWith("#/runs/") && !location.hash.endsWith(encodeURIComponent(old)), { timeout: 10000 }, runId);
  await page.waitForFunction(() => document.querySelector("main").dataset.status === "completed", { timeout: 30000 });
  const forkState = JSON.parse(await text("#run-state"));
  check(forkState.topic === "forked topic", "the fork did not keep the edited topic: " + JSON.stringify(forkState));
  console.log("ok: fork with an edited topic completed");

  // Replay the fork from its first checkpoint: it runs again, live.
  await page.waitForSelector("#checkpoint-list button.cp");
  await sleep(500);
  const eventsBefore = Number(await text("#event-count"));
  await (await page.$$("#checkpoint-list button.cp"))[0].click();
  await page.click("#replay-run");
  await page.waitForFunction((n) => Number(document.querySelector("#event-count").textContent) > n &&
    document.querySelector("main").dataset.status === "completed", { timeout: 30000 }, eventsBefore);
  console.log("ok: replay from a checkpoint ran again (" + eventsBefore + " -> " + (await text("#event-count")) + " events)");

  // 6. Resume an interrupted run from the page.
  const approval = await api("POST", "/workflows/approval/run", { input: { request: "a day off" } });
  await waitRun(approval.id, ["interrupted"]);
  await go("#/runs/" + encodeURIComponent(approval.id));
  await page.waitForSelector("#resume-form", { timeout: 10000 });
  // First inject state into the waiting run: the state shown follows.
  await page.click("details.inject summary");
  await page.$eval("#inject-updates", (el) => (el.value = '{"request": "two days off"}'));
  await page.click("#inject-form button[type=submit]");
  await page.waitForFunction(() => document.querySelector("#run-state").textContent.includes("two days off"), { timeout: 10000 });
  console.log("ok: state injected from the page");
  await page.$eval("#resume-updates", (el) => (el.value = '{"approved": true}'));
  await page.click("#resume-form button[type=submit]");
  await page.waitForFunction(() => document.querySelector("main").dataset.status === "completed", { timeout: 30000 });
  check(JSON.parse(await text("#run-state")).outcome === "accepted", "resumed run did not take the approval");
  console.log("ok: interrupted run resumed from the page");

  // 7. Cancel a running run.
  const stuckRun = await api("POST", "/workflows/stuck/run", {});
  await go("#/runs/" + encodeURIComponent(stuckRun.id));
  await page.waitForSelector("#cancel-run", { timeout: 10000 });
  await page.waitForFunction(() => document.querySelector('#run-graph svg g.node[data-state="running"]'), { timeout: 10000 });
  await shot("run-running");
  await page.click("#cancel-run");
  await page.waitForFunction(() => document.querySelector("main").dataset.status === "cancelled", { timeout: 10000 });
  check((await api("GET", "/runs/" + stuckRun.id)).status === "cancelled", "the server does not say cancelled");
  console.log("ok: running run cancelled from the page");

  // 8. A failed API call shows an error, never a blank page.
  await go("#/runs/no-such-run");
  await page.waitForSelector(".page-error", { timeout: 10000 });
  check((await text(".page-error")).includes("run not found"), "the 404 is not shown");
  check((await text("#errors")).includes("run not found"), "the error banner is empty");
  await shot("error");
  console.log("ok: failed API call shown to the user");

  // 9. Workers page.
  await go("#/workers");
  await page.waitForSelector("#worker-table tr[data-worker=echo]");
  check((await text("#worker-table")).includes("closed"), "worker circuit not shown");
  await shot("workers");

  // 10. Budgets. (a) 10 000 runs: the first page of the list.
  const tiny = { id: "tiny", nodes: { t: { type: "transform", updates: { done: true } } }, edges: [["__start__", "t"], ["t", "__end__"]] };
  await api("POST", "/workflows", tiny);
  const t0 = Date.now();
  let made = 0;
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (made < 10000) {
      made++;
      await api("POST", "/workflows/tiny/run", {});
    }
  }));
  figure("created 10000 runs through the API in " + (Date.now() - t0) + " ms");
  await go("#/overview");
  await page.waitForSelector(".tiles .tile");
  await shot("overview");
  const listMs = await page.evaluate(async () => {
    const start = performance.now();
    location.hash = "#/runs";
    for (;;) {
      const table = document.querySelector("#runs-table");
      if (table && Number(table.dataset.loadedAt) > start && table.querySelectorAll("tbody tr").length === 50) return performance.now() - start;
      await new Promise((r) => requestAnimationFrame(r));
    }
  });
  figure("run list with 10000+ runs: first page shown in " + listMs.toFixed(0) + " ms (budget 1000)");
  check(listMs < 1000, "run list first page took " + listMs.toFixed(0) + " ms");
  check(await page.$(".pager a.button"), "no link to older runs");
  await shot("runs");
  // Filtered by status, then the next page.
  await page.select("#filter-status", "completed");
  // The filtered table is a new one: wait for it (loaded after the click, with
  // its pager), not for the unfiltered one still on screen meanwhile.
  const filteredAfter = await page.evaluate(() => performance.now());
  await page.click(".filters button[type=submit]");
  await page.waitForFunction((after) => {
    const table = document.querySelector("#runs-table");
    return location.hash.includes("status=completed") && table && Number(table.dataset.loadedAt) > after &&
      table.querySelectorAll("tbody tr").length === 50 && document.querySelector(".pager a.button");
  }, { timeout: 10000 }, filteredAfter);
  await page.click(".pager a.button:last-of-type");
  await page.waitForFunction(() => location.hash.includes("offset=50") && document.querySelector(".pager").textContent.includes("51–100"), { timeout: 10000 });

  // (b) A 200-node graph.
  const nodes = {};
  const edges = [["__start__", "n0"]];
  const isRoute = (i) => i % 10 === 5;
  for (let i = 0; i < 200; i++) {
    nodes["n" + i] = isRoute(i) ? { type: "route", input: "state.v", routes: { a: "n" + (i + 1) }, default: "a" } : { type: "task", prompt_template: "x" };
  }
  for (let i = 1; i < 200; i++) edges.push([isRoute(i - 1) ? "n" + (i - 1) + ":a" : "n" + (i - 1), "n" + i]);
  for (let i = 0; i + 7 < 200; i += 13) if (!isRoute(i)) edges.push(["n" + i, "n" + (i + 7)]);
  edges.push(["n199", "__end__"]);
  await api("POST", "/workflows", { id: "big200", nodes, edges });
  const graphMs = await page.evaluate(async () => {
    const start = performance.now();
    location.hash = "#/workflows/big200";
    for (;;) {
      if (document.querySelectorAll("#workflow-graph svg g.node").length >= 202) return performance.now() - start;
      await new Promise((r) => requestAnimationFrame(r));
    }
  });
  figure("200-node graph rendered in " + graphMs.toFixed(0) + " ms (budget 1000)");
  check(graphMs < 1000, "200-node graph took " + graphMs.toFixed(0) + " ms");

  // (c) 100 events/s into a run's live view.
  const live = await api("POST", "/workflows/approval/run", { input: { request: "x" } });
  await waitRun(live.id, ["interrupted"]);
  await go("#/runs/" + encodeURIComponent(live.id));
  await page.waitForSelector("#resume-form");
  await sleep(500);
  const base = Number(await text("#event-count"));
  const total = 500;
  let worstLag = 0;
  const sendStart = Date.now();
  for (let i = 0; i < total; i++) {
    const due = sendStart + i * 10;  // 100 per second
    const wait = due - Date.now();
    if (wait > 0) await sleep(wait);
    await api("POST", "/internal/agent-events/" + encodeURIComponent(live.id) + "/ask", { iteration: i, tool: "tool", status: "running" });
    if (i % 50 === 49) {
      const shown = Number(await text("#event-count")) - base;
      worstLag = Math.max(worstLag, i + 1 - shown);
    }
  }
  const sendSeconds = (Date.now() - sendStart) / 1000;
  const doneAt = Date.now();
  await page.waitForFunction((want) => Number(document.querySelector("#event-count").textContent) >= want, { timeout: 10000 }, base + total);
  const drainMs = Date.now() - doneAt;
  figure("live view: " + total + " events at " + (total / sendSeconds).toFixed(0) + "/s, all shown " + drainMs +
    " ms after the last was sent, worst backlog " + worstLag + " events (budget: under 100, i.e. 1 s)");
  check(total / sendSeconds >= 80, "could only send " + (total / sendSeconds).toFixed(0) + " events/s");
  check(drainMs < 1000 && worstLag < 100, "the live view fell behind");
  await shot("run-events");

  // 11. Narrow width: nothing wider than the screen on the run page.
  await page.setViewport({ width: 390, height: 844 });
  await go("#/runs/" + encodeURIComponent(runId));
  await page.waitForSelector("#run-graph svg", { timeout: 10000 });
  await sleep(300);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 1, "the run page is " + overflow + " px wider than a 390 px screen");
  await shot("narrow");
  // Every form control on the page has a label.
  const unlabelled = await page.$$eval("input, select, textarea", (els) => els.filter((e) => !e.labels?.length && !e.getAttribute("aria-label")).map((e) => e.id || e.outerHTML.slice(0, 60)));
  check(unlabelled.length === 0, "controls without a label: " + unlabelled.join(", "));
  check(consoleErrors.length === 0, "the page logged errors: " + consoleErrors.join(" | "));
}

const timer = setTimeout(() => fail("timed out after 280 s"), 280000);
main()
  .then(() => {
    shuttingDown = true;
    clearTimeout(timer);
    for (const c of children) c.kill("SIGTERM");
    console.log("console_test: all passed\n" + figures.map((f) => "  " + f).join("\n"));
    process.exit(0);
  })
  .catch((e) => fail(e.stack || String(e)));
