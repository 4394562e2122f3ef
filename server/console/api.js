// The HTTP API, as NullBoiler and orch document it (docs/api.md). Only public
// routes. The bearer token, when the server wants one, is asked once and kept
// in sessionStorage (this tab only).

const TOKEN_KEY = "orch.token";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}
export function setToken(t) {
  if (t) sessionStorage.setItem(TOKEN_KEY, t);
  else sessionStorage.removeItem(TOKEN_KEY);
}

// Called with no argument when the server answers 401; resolves once the user
// gave a token (app.js shows the dialog). One question at a time.
let askToken = null;
let pendingAsk = null;
export function onTokenNeeded(fn) {
  askToken = fn;
}
async function needToken(problem) {
  if (!askToken) throw new ApiError(401, "unauthorized", "missing or invalid bearer token");
  if (!pendingAsk) pendingAsk = askToken(problem).finally(() => (pendingAsk = null));
  return pendingAsk;
}

function headers(extra) {
  const h = { ...extra };
  const t = token();
  if (t) h["Authorization"] = "Bearer " + t;
  return h;
}

async function errorOf(res) {
  let code = "http_" + res.status;
  let message = res.status + " " + res.statusText;
  try {
    const body = await res.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
      if (Array.isArray(body.error.details) && body.error.details.length) {
        message += ": " + body.error.details.map((d) => (typeof d === "string" ? d : d.message || JSON.stringify(d))).join("; ");
      }
    }
  } catch (_) {
    // not JSON: keep the status line
  }
  return new ApiError(res.status, code, message);
}

// fetch with the token; on 401 asks for a token and tries once more.
export async function request(method, path, { body, accept, retried } = {}) {
  const init = { method, headers: headers(accept ? { Accept: accept } : {}) };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, "network", "the server did not answer (" + e.message + ")");
  }
  if (res.status === 401 && !retried) {
    await needToken(token() ? "The token was refused; enter it again." : "");
    return request(method, path, { body, accept, retried: true });
  }
  if (!res.ok) throw await errorOf(res);
  return res;
}

export async function getJson(path) {
  const res = await request("GET", path);
  return { body: await res.json(), headers: res.headers };
}
export async function get(path) {
  return (await getJson(path)).body;
}
export async function post(path, body = {}) {
  const res = await request("POST", path, { body });
  return res.json();
}
export async function put(path, body) {
  const res = await request("PUT", path, { body });
  return res.json();
}
export async function del(path) {
  const res = await request("DELETE", path);
  return res.json();
}
export async function text(path, accept) {
  const res = await request("GET", path, { accept });
  return res.text();
}

export const enc = encodeURIComponent;

// GET /runs/{id}/stream as Server-Sent Events, read with fetch (EventSource
// cannot send the Authorization header). Calls onEvent({seq, kind, data,
// ts_ms, mode}) per frame; reconnects after a dropped connection from the
// last seq seen (or `afterSeq` to begin with), so nothing is lost or
// repeated. Returns a stop function.
export function streamRun(runId, { onEvent, onEnd, onError, afterSeq = 0 }) {
  let stopped = false;
  let lastSeq = afterSeq;
  let controller = null;
  async function connect() {
    while (!stopped) {
      controller = new AbortController();
      try {
        const h = headers({ Accept: "text/event-stream" });
        if (lastSeq) h["Last-Event-ID"] = String(lastSeq);
        const res = await fetch("/runs/" + enc(runId) + "/stream", { headers: h, signal: controller.signal });
        if (res.status === 401) {
          await needToken("");
          continue;
        }
        if (!res.ok) throw await errorOf(res);
        const reader = res.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const frame = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            const parsed = parseFrame(frame);
            if (parsed) {
              lastSeq = parsed.seq || lastSeq;
              onEvent(parsed);
            }
          }
        }
        // The server ends the stream when the run ends.
        if (!stopped && onEnd) onEnd();
        return;
      } catch (e) {
        if (stopped) return;
        if (onError) onError(e);
        if (e instanceof ApiError && e.status !== 503) return;
        await new Promise((r) => setTimeout(r, 2000));
      }
    }
  }
  connect();
  return () => {
    stopped = true;
    if (controller) controller.abort();
  };
}

function parseFrame(frame) {
  let mode = "message";
  let data = "";
  for (const line of frame.split("\n")) {
    if (line.startsWith(":")) continue;  // keep-alive comment
    if (line.startsWith("event:")) mode = line.slice(6).trim();
    else if (line.startsWith("data:")) data += line.slice(5).trimStart();
  }
  if (!data) return null;
  try {
    const event = JSON.parse(data);
    event.mode = mode;
    return event;
  } catch (_) {
    return null;
  }
}
