// SPDX-License-Identifier: MIT
//
// GET /runs/{id}/stream: real Server-Sent Events (SPEC.md §9), or the
// NullBoiler JSON snapshot when the client asks for application/json.
//
// A stream reads stored events after its cursor, so reconnecting with
// Last-Event-ID (or after_seq) resumes with nothing lost and nothing repeated.
// Each stream pins one HTTP pool thread; their number is capped (503 beyond)
// so the rest of the API always has threads. Waits are short so stop() is quick.
#include <httplib.h>

#include <fmt/format.h>

#include <set>

#include "orch/event_kinds.h"
#include "http/http_api.h"

namespace orch::server {
namespace {

constexpr auto kWakeInterval = std::chrono::milliseconds(500);
constexpr auto kKeepAlive = std::chrono::seconds(15);

// Which stream mode an event kind belongs to.
std::string mode_of(const std::string& kind) {
  if (kind == event_kind::kValues) return "values";
  if (kind == event_kind::kUpdates || kind == event_kind::kAgentEvent) return "updates";
  if (kind == event_kind::kTaskStart || kind == event_kind::kTaskResult) return "tasks";
  if (kind == event_kind::kCustom) return "custom";
  return "debug";  // run.*, step.*, checkpoint.*, state.* lifecycle events
}

// The modes named by ?mode=a,b (all when absent). Unknown names are a 400.
bool parse_modes(const httplib::Request& req, httplib::Response& res, std::set<std::string>* modes) {
  static const std::set<std::string> kAll = {"values", "updates", "tasks", "debug", "custom"};
  if (!req.has_param("mode")) {
    *modes = kAll;
    return true;
  }
  std::string list = req.get_param_value("mode");
  size_t i = 0;
  while (i <= list.size()) {
    size_t j = list.find(',', i);
    if (j == std::string::npos) j = list.size();
    std::string m = list.substr(i, j - i);
    if (!m.empty()) {
      if (!kAll.count(m)) {
        send_error(res, 400, "bad_request", "unknown stream mode '" + m + "' (expected values, updates, tasks, debug, custom)");
        return false;
      }
      modes->insert(m);
    }
    i = j + 1;
  }
  if (modes->empty()) *modes = kAll;
  return true;
}

int64_t cursor_of(const httplib::Request& req) {
  std::string v = req.get_header_value("Last-Event-ID");
  if (v.empty()) v = req.get_param_value("after_seq");
  char* end = nullptr;
  long long n = std::strtoll(v.c_str(), &end, 10);
  return (v.empty() || *end != '\0' || n < 0) ? 0 : n;
}

void json_snapshot(App& app, const RunRecord& run, const std::set<std::string>& modes, int64_t after,
                   httplib::Response& res) {
  auto events = app.store->list_events(run.id, after, 100000);
  Value lifecycle = Value::array();
  Value stream = Value::array();
  // next_stream_seq is the run's last event (NullBoiler: "the last buffered
  // entry"), also for a cursor past it, and 0 for a run with none.
  int64_t last = 0;
  if (events.ok() && events->empty() && after > 0) {
    auto all = app.store->list_events(run.id, 0, 100000);
    if (all.ok() && !all->empty()) last = all->back().seq;
  }
  if (events.ok()) {
    for (const EventRecord& e : *events) {
      last = e.seq;
      std::string mode = mode_of(e.kind);
      if (mode == "debug" && after == 0) {  // NullBoiler: the event log only with no cursor
        lifecycle.push_back(Value::object({{"kind", e.kind}, {"data", e.data}, {"ts_ms", static_cast<long long>(e.created_at_ms)}}));
      }
      if (!modes.count(mode)) continue;
      stream.push_back(Value::object({{"seq", static_cast<long long>(e.seq)}, {"event", e.kind}, {"mode", mode}, {"data", e.data}}));
    }
  }
  Value body = Value::object({{"status", std::string(run_status_name(run.status))}, {"state", run.state}});
  body.set("events", lifecycle);
  body.set("stream_events", stream);
  body.set("next_stream_seq", static_cast<long long>(last));
  // Every event of a run is kept: the oldest is its first, when it has one.
  body.set("stream_oldest_seq", static_cast<long long>(last > 0 ? 1 : 0));
  body.set("stream_gap", false);
  send_json(res, 200, body);
}

void stream(App& app, const httplib::Request& req, httplib::Response& res, const Params& p) {
  auto run = app.engine->get_run(p[0]);
  if (!run.ok()) return send_error(res, 404, "not_found", "run not found");
  std::set<std::string> modes;
  if (!parse_modes(req, res, &modes)) return;
  int64_t cursor = cursor_of(req);
  std::string accept = req.get_header_value("Accept");
  if (accept.find("application/json") != std::string::npos && accept.find("text/event-stream") == std::string::npos) {
    return json_snapshot(app, *run, modes, cursor, res);
  }
  if (app.sse_clients.fetch_add(1) >= app.config.max_sse_clients) {
    app.sse_clients.fetch_sub(1);
    res.set_header("Retry-After", "5");
    return send_error(res, 503, "unavailable", "too many open streams; retry later");
  }
  struct StreamState {
    int64_t cursor;
    std::chrono::steady_clock::time_point last_write;
  };
  auto state = std::make_shared<StreamState>(StreamState{cursor, std::chrono::steady_clock::now()});
  std::string run_id = p[0];
  app.follow_run(run_id);  // until the stream ends: its run's writes are announced
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  res.set_chunked_content_provider(
      "text/event-stream",
      [&app, state, run_id, modes](size_t, httplib::DataSink& sink) {
        uint64_t epoch = app.hub.epoch(run_id);
        // Status first: a run's last event is stored before it shows as ended.
        auto now = app.engine->get_run(run_id);
        bool ended = !now.ok() || is_terminal(now->status) || app.stopping;
        auto events = app.store->list_events(run_id, state->cursor, 500);
        if (!events.ok()) {  // the run was deleted
          sink.done();
          return true;
        }
        std::string frames;
        for (const EventRecord& e : *events) {
          state->cursor = e.seq;
          std::string mode = mode_of(e.kind);
          if (!modes.count(mode)) continue;
          Value data = Value::object({{"seq", static_cast<long long>(e.seq)}, {"kind", e.kind}, {"data", e.data},
                                      {"ts_ms", static_cast<long long>(e.created_at_ms)}});
          fmt::format_to(std::back_inserter(frames), "id: {}\nevent: {}\ndata: {}\n\n", e.seq, mode, data.to_json());
        }
        if (!frames.empty()) {
          state->last_write = std::chrono::steady_clock::now();
          if (!sink.write(frames.data(), frames.size())) return false;  // client went away
        }
        if (!events->empty()) return true;  // there may be more
        if (ended) {
          sink.done();
          return true;
        }
        if (std::chrono::steady_clock::now() - state->last_write >= kKeepAlive) {
          state->last_write = std::chrono::steady_clock::now();
          static const char kPing[] = ": keep-alive\n\n";
          if (!sink.write(kPing, sizeof(kPing) - 1)) return false;
        }
        app.hub.wait(run_id, epoch, kWakeInterval);
        return true;
      },
      [&app, run_id](bool) {
        app.unfollow_run(run_id);
        app.sse_clients.fetch_sub(1);
      });
}

}  // namespace

std::vector<Route> stream_routes() { return {{"GET", "/runs/{}/stream", stream}}; }

}  // namespace orch::server
