// One run: status and actions, the graph with live node states, the step
// timeline, checkpoints (state, diff to the previous one, fork, replay), the
// current state and the event log. Live: the SSE stream feeds the log and
// marks the run stale; the run is re-read at most every REFRESH_MS, so a
// burst of events costs a few requests, not one each.
import { get, getJson, post, del, enc, streamRun } from "./api.js";
import { h, clear, field, button, formatTime, formatDuration, statusBadge, pretty, parseJsonField, reportError } from "./dom.js";
import { showGraph, graphPaths, nodeStates } from "./graph.js";
import { jsonDiff } from "./diff.js";

const REFRESH_MS = 400;
const LOG_ROWS = 500;  // rows kept on the page; the count covers them all
const TERMINAL = new Set(["completed", "failed", "cancelled"]);

function actionForm(title, id, fields, submitLabel, onSubmit) {
  const problem = h("p", { class: "problem", role: "alert" });
  const form = h("form", { class: "card action", id }, h("h3", {}, title), fields, problem, h("button", { type: "submit" }, submitLabel));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    problem.textContent = "";
    const submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    try {
      await onSubmit();
    } catch (e) {
      problem.textContent = e.message;
      reportError(e, title);
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

function timeline(steps) {
  if (!steps.length) return h("p", { class: "muted" }, "No steps yet.");
  const starts = steps.map((s) => s.started_at_ms || s.created_at_ms).filter(Boolean);
  const t0 = Math.min(...starts);
  const t1 = Math.max(...steps.map((s) => s.ended_at_ms || s.updated_at_ms || t0), t0 + 1);
  return h("div", { class: "table-wrap" }, h("table", { class: "list timeline", id: "step-timeline" },
    h("thead", {}, h("tr", {}, ["Node", "Type", "Status", "Attempt", "Started", "Duration", "", "Worker / error"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, steps.map((s) => {
      const start = s.started_at_ms || s.created_at_ms;
      const end = s.ended_at_ms || (TERMINAL.has(s.status) || s.status === "skipped" ? s.updated_at_ms : Date.now());
      const left = ((start - t0) / (t1 - t0)) * 100;
      const width = Math.max(0.8, ((end - start) / (t1 - t0)) * 100);
      return h("tr", { "data-node": s.def_step_id },
        h("td", { class: "mono" }, s.def_step_id + (s.item_index !== undefined ? "[" + s.item_index + "]" : "")),
        h("td", {}, s.type), h("td", {}, statusBadge(s.status)),
        h("td", {}, s.attempt + " / " + s.max_attempts),
        h("td", {}, formatTime(start)),
        h("td", {}, s.ended_at_ms && start ? formatDuration(s.ended_at_ms - start) : ""),
        h("td", { class: "bar-cell", "aria-hidden": "true" }, h("div", { class: "bar status-" + s.status, style: null, "data-left": left.toFixed(2), "data-width": Math.min(width, 100 - left).toFixed(2) })),
        h("td", {}, s.error_text ? h("span", { class: "problem" }, s.error_text) : s.worker_id || ""));
    }))));
}

// Bars are placed with CSSOM (the CSP forbids inline style attributes).
function placeBars(root) {
  for (const bar of root.querySelectorAll(".bar[data-left]")) {
    bar.style.marginLeft = bar.dataset.left + "%";
    bar.style.width = bar.dataset.width + "%";
  }
}

function diffView(changes) {
  if (!changes.length) return h("p", { class: "muted" }, "No change to the previous checkpoint.");
  const show = (v) => (v === undefined ? "" : JSON.stringify(v));
  return h("div", { class: "table-wrap" }, h("table", { class: "list diff" },
    h("thead", {}, h("tr", {}, ["Path", "Change", "Before", "After"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, changes.map((c) => h("tr", { class: "diff-" + c.kind },
      h("td", { class: "mono" }, c.path), h("td", {}, c.kind),
      h("td", { class: "mono before" }, show(c.before)), h("td", { class: "mono after" }, show(c.after)))))));
}

export async function render(main, { id }) {
  let run = await get("/runs/" + enc(id));
  const head = h("div", { class: "run-head" });
  const actions = h("div", { class: "actions", id: "run-actions" });
  const graphBox = h("div", { class: "graph card", id: "run-graph" });
  const stepsBox = h("section", { class: "card", id: "run-steps" });
  const cpList = h("ol", { class: "checkpoints", id: "checkpoint-list" });
  const cpDetail = h("div", { id: "checkpoint-detail" });
  const stateBox = h("pre", { class: "code state", id: "run-state", tabindex: "0" });
  const logCount = h("span", { id: "event-count" }, "0");
  const logBody = h("tbody", {});
  const logTable = h("table", { class: "list log", id: "event-log" },
    h("thead", {}, h("tr", {}, ["Seq", "Time", "Mode", "Kind", "Data"].map((t) => h("th", { scope: "col" }, t)))), logBody);

  main.append(head, actions,
    h("div", { class: "grid2" }, graphBox, h("section", { class: "card" }, h("h2", {}, "State"), stateBox)),
    stepsBox,
    h("section", { class: "card", id: "run-checkpoints" }, h("h2", {}, "Checkpoints"), h("div", { class: "cp-layout" }, cpList, cpDetail)),
    h("section", { class: "card" }, h("h2", {}, "Events (", logCount, ")"), h("div", { class: "log-scroll", tabindex: "0", "aria-label": "event log" }, logTable)));

  let graph = null;
  let startStream = null;  // set once the page is drawn
  let reviveStream = () => {};
  let checkpoints = [];
  let selectedCp = null;

  function renderHead() {
    clear(head);
    head.append(...[h("h1", {}, "Run ", h("span", { class: "mono" }, run.id), " ", h("span", { id: "run-status" }, statusBadge(run.status))),
      h("p", { class: "muted" },
        run.workflow_id ? ["workflow ", h("a", { href: "#/workflows/" + enc(run.workflow_id) }, run.workflow_id), " · "] : "inline workflow · ",
        "created " + formatTime(run.created_at_ms) + " · updated " + formatTime(run.updated_at_ms) +
        " · " + run.checkpoint_count + " checkpoints · " + run.total_tokens + " tokens"),
      run.error_text ? h("p", { class: "problem", id: "run-error" }, run.error_text) : null].filter(Boolean));
  }

  // Rebuilt only when the status changes, so a refresh never wipes what the
  // user is typing into a form.
  let actionsFor = null;
  function renderActions() {
    if (actionsFor === run.status) return;
    actionsFor = run.status;
    clear(actions);
    if (!TERMINAL.has(run.status)) {
      actions.append(button("Cancel run", async () => {
        try {
          await post("/runs/" + enc(run.id) + "/cancel");
          await refresh();
        } catch (e) {
          reportError(e, "Cancel");
        }
      }, { id: "cancel-run", class: "danger" }));
    }
    if (run.status === "failed") {
      actions.append(button("Retry failed nodes", async () => {
        try {
          await post("/runs/" + enc(run.id) + "/retry");
          await refresh();
          reviveStream(true);
        } catch (e) {
          reportError(e, "Retry");
        }
      }, { id: "retry-run" }));
    }
    if (run.status === "interrupted") {
      const updates = h("textarea", { rows: 3, class: "code", spellcheck: "false", id: "resume-updates" }, "{}");
      actions.append(actionForm("Resume the interrupted run", "resume-form", field("State updates (JSON object)", updates), "Resume", async () => {
        await post("/runs/" + enc(run.id) + "/resume", { state_updates: parseJsonField(updates.value, "State updates") });
        await refresh();
        reviveStream(true);
      }));
    }
    // orch takes injections only into runs that have not ended (409 after).
    if (!TERMINAL.has(run.status)) {
      const inject = h("textarea", { rows: 3, class: "code", spellcheck: "false", id: "inject-updates" }, "{}");
      const after = h("input", { type: "text", id: "inject-after", autocomplete: "off" });
      const injectBox = h("details", { class: "inject" }, h("summary", {}, "Inject state…"));
      actions.append(injectBox);
      injectBox.append(actionForm("Inject state", "inject-form",
        [field("Updates (JSON object)", inject), field("Apply after node (optional)", after, "empty: apply now")], "Inject", async () => {
          const body = { updates: parseJsonField(inject.value, "Updates") };
          if (after.value.trim()) body.apply_after_step = after.value.trim();
          await post("/runs/" + enc(run.id) + "/state", body);
          await refresh();
        }));
    }
    if (TERMINAL.has(run.status)) {
      actions.append(button("Delete run", async () => {
        if (!confirm("Delete run " + run.id + " and its history?")) return;
        try {
          await del("/runs/" + enc(run.id));
          location.hash = "#/runs";
        } catch (e) {
          reportError(e, "Delete");
        }
      }, { id: "delete-run", class: "danger" }));
    }
    // Buttons first, forms after.
    for (const b of [...actions.querySelectorAll(":scope > button")].reverse()) actions.prepend(b);
  }

  // Checkpoints in pages of 1000 (X-Next-After-Version). Live updates fetch
  // only those after the last one shown; `fromStart` (first load, replay)
  // reads them all again. At most 10 000 are listed.
  async function loadCheckpoints(fromStart = false) {
    if (fromStart) checkpoints = [];
    let after = checkpoints.length ? checkpoints[checkpoints.length - 1].version : -1;
    for (let i = 0; i < 10 && checkpoints.length < 10000; i++) {
      const { body, headers } = await getJson("/runs/" + enc(run.id) + "/checkpoints?after_version=" + after);
      checkpoints = checkpoints.concat(body);
      const next = headers.get("X-Next-After-Version");
      if (!next) break;
      after = Number(next);
    }
    if (fromStart || cpList.querySelector(".muted")) clear(cpList);
    for (let i = cpList.children.length; i < checkpoints.length; i++) {
      const cp = checkpoints[i];
      const b = button("v" + cp.version + " · " + cp.step_id, () => selectCheckpoint(i), { class: "cp", "data-version": cp.version, "aria-pressed": selectedCp === cp.id ? "true" : "false" });
      cpList.append(h("li", {}, b));
    }
    if (!checkpoints.length) cpList.append(h("li", { class: "muted" }, "No checkpoints yet."));
  }

  function selectCheckpoint(i) {
    const cp = checkpoints[i];
    selectedCp = cp.id;
    for (const b of cpList.querySelectorAll("button")) b.setAttribute("aria-pressed", b.dataset.version === String(cp.version) ? "true" : "false");
    clear(cpDetail);
    const prev = i > 0 ? checkpoints[i - 1] : null;
    const edited = h("textarea", { rows: 10, class: "code", spellcheck: "false", id: "fork-state" }, pretty(cp.state));
    cpDetail.append(
      h("h3", {}, "Checkpoint v" + cp.version + " (" + cp.step_id + ")"),
      h("p", { class: "muted" }, formatTime(cp.created_at_ms) + " · completed: " + (cp.completed_nodes || []).join(", ")),
      h("h4", {}, prev ? "Diff to v" + prev.version : "Diff (first checkpoint: to an empty state)"),
      h("div", { id: "checkpoint-diff" }, diffView(jsonDiff(prev ? prev.state : {}, cp.state))),
      h("details", {}, h("summary", {}, "State at this checkpoint"), h("pre", { class: "code" }, pretty(cp.state))),
      actionForm("Fork from this checkpoint", "fork-form", field("State (edit values to override them in the fork)", edited), "Fork", async () => {
        const changed = parseJsonField(edited.value, "The state");
        // Only the keys that differ are sent: the rest carries over as is.
        const overrides = {};
        for (const [k, v] of Object.entries(changed)) if (JSON.stringify(v) !== JSON.stringify(cp.state[k])) overrides[k] = v;
        const forked = await post("/runs/fork", { checkpoint_id: cp.id, state_overrides: overrides });
        location.hash = "#/runs/" + enc(forked.id);
      }),
      button("Replay this run from here", async () => {
        if (!confirm("Replay from checkpoint v" + cp.version + "? Later history of this run is dropped.")) return;
        try {
          await post("/runs/" + enc(run.id) + "/replay", { from_checkpoint_id: cp.id });
          await refresh();
          reviveStream(true);
          await loadCheckpoints(true);
        } catch (e) {
          reportError(e, "Replay");
        }
      }, { id: "replay-run" }));
  }

  async function refresh() {
    run = await get("/runs/" + enc(id));
    renderHead();
    renderActions();
    clear(stepsBox);
    stepsBox.append(h("h2", {}, "Steps"), timeline(run.steps || []));
    placeBars(stepsBox);
    stateBox.textContent = pretty(run.state_json || {});
    if (graph) graph.setStates(nodeStates(run.steps));
    main.dataset.status = run.status;
    reviveStream();
  }

  // Events: queued as they come, drawn once per frame.
  let queue = [];
  let total = 0;
  let drawScheduled = false;
  function draw() {
    drawScheduled = false;
    const batch = queue;
    queue = [];
    const frag = document.createDocumentFragment();
    for (const e of batch.slice(-LOG_ROWS)) {
      let data = JSON.stringify(e.data);
      if (data && data.length > 300) data = data.slice(0, 300) + "…";
      frag.append(h("tr", {}, h("td", {}, String(e.seq)), h("td", {}, e.ts_ms ? new Date(e.ts_ms).toLocaleTimeString(undefined, { hour12: false }) : ""),
        h("td", {}, e.mode), h("td", { class: "mono" }, e.kind), h("td", { class: "mono" }, data)));
    }
    logBody.append(frag);
    while (logBody.children.length > LOG_ROWS) logBody.firstChild.remove();
    logCount.textContent = String(total);
    logTable.dataset.lastSeq = batch.length ? String(batch[batch.length - 1].seq) : logTable.dataset.lastSeq || "0";
  }
  let refreshTimer = null;
  let lastRefresh = 0;
  let checkpointsStale = false;
  function scheduleRefresh() {
    if (refreshTimer) return;
    const wait = Math.max(0, REFRESH_MS - (performance.now() - lastRefresh));
    refreshTimer = setTimeout(async () => {
      refreshTimer = null;
      lastRefresh = performance.now();
      try {
        await refresh();
        if (checkpointsStale) {
          checkpointsStale = false;
          await loadCheckpoints();
        }
      } catch (e) {
        reportError(e, "Refreshing the run");
      }
    }, wait);
  }

  await refresh();
  const [svgPath, mermaidPath] = graphPaths.run(run.id, run.workflow_id);
  showGraph(graphBox, svgPath, mermaidPath).then((g) => {
    graph = g;
    if (graph) graph.setStates(nodeStates(run.steps));
  });
  await loadCheckpoints(true);

  // The stream ends with the run; a run revived by retry or replay gets a
  // new one, resuming after the last event shown.
  let stopStream = null;
  let streaming = false;
  let lastSeq = 0;
  startStream = () => {
    streaming = true;
    stopStream = streamRun(run.id, {
      afterSeq: lastSeq,
      onEvent(e) {
        lastSeq = e.seq || lastSeq;
        queue.push(e);
        total++;
        if (!drawScheduled) {
          drawScheduled = true;
          requestAnimationFrame(draw);
        }
        if (/checkpoint|values/.test(e.kind) || e.mode === "values") checkpointsStale = true;
        // Agent progress does not change the run: no re-read for it.
        if (e.kind !== "agent_event") scheduleRefresh();
      },
      onEnd() {
        streaming = false;
        checkpointsStale = true;
        scheduleRefresh();
      },
      onError(e) {
        reportError(e, "Live updates");
      },
    });
  };
  // `revived`: the run was just resumed, retried or replayed; it may have ended again
  // before the page re-read it, and its new events are still to be shown.
  reviveStream = (revived = false) => {
    if (!streaming && (revived || !TERMINAL.has(run.status))) startStream();
  };
  startStream();
  return () => {
    if (stopStream) stopStream();
    if (refreshTimer) clearTimeout(refreshTimer);
  };
}
