// SPDX-License-Identifier: MIT
// Pull mode end to end: orch's tracker against a fake NullTickets, with
// in-process workers (dispatch) and the fake_agent program (subprocess).
// Intervals are tens of milliseconds; every wait is bounded by a few seconds.
#include <httplib.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <sstream>
#include <thread>

#include "app.h"
#include "catch.h"
#include "http/http_api.h"
#include "orch/dispatcher.h"
#include "support/fake_nulltickets.h"
#include "support/postgres_cluster.h"
#include "support/server_fixture.h"
#include "pull/tracker.h"
#include "pull/tracker_config.h"
#include "pull/workspace.h"

namespace {

using namespace std::chrono_literals;
using orch::Value;
using orch::testing::FakeNullTickets;
namespace fs = std::filesystem;
namespace srv = orch::server;

constexpr auto kWait = 5s;

struct TempDir {
  fs::path path;
  TempDir() {
    char tmpl[] = "/tmp/orch-trk-XXXXXX";
    path = fs::canonical(mkdtemp(tmpl));
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string str(const std::string& sub = "") const { return sub.empty() ? path.string() : (path / sub).string(); }
};

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<Value> read_json_lines(const std::string& path) {
  std::vector<Value> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    auto v = orch::parse_json(line);
    if (v.ok()) out.push_back(*v);
  }
  return out;
}

std::vector<Value> lines_with(const std::vector<Value>& lines, const std::string& event) {
  std::vector<Value> out;
  for (const Value& l : lines) {
    if (l["event"].get_string("") == event) out.push_back(l);
  }
  return out;
}

// Gone, or a zombie nobody reaped (PID 1 in a container may not reap).
bool process_gone(long long pid) {
  if (kill(static_cast<pid_t>(pid), 0) != 0) return true;
  std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  size_t paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'Z';
}

Value merge(Value base, const Value& over) {
  if (!base.is_object() || !over.is_object()) return over;
  for (const auto& [k, v] : over.as_object()) {
    const Value& cur = base;
    base.set(k, cur[k].is_object() && v.is_object() ? merge(cur[k], v) : v);
  }
  return base;
}

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout = kWait) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return pred();
}

// In-process workers for dispatch pipelines, scripted per test.
struct Workers {
  std::atomic<int> delay_ms{0};
  std::atomic<int> fail_first{0};  // this many calls fail
  std::atomic<int> calls{0};
  std::mutex mu;
  std::condition_variable cv;
  bool hold = false;  // calls wait until released (or 5 s)
  std::vector<std::string> prompts;

  std::shared_ptr<orch::InProcessWorkers> dispatcher() {
    auto d = std::make_shared<orch::InProcessWorkers>();
    d->add("w1", {}, [this](const orch::WorkerRequest& r) {
      orch::WorkerReply reply;
      int n = ++calls;
      {
        std::unique_lock<std::mutex> lock(mu);
        prompts.push_back(r.prompt);
        cv.wait_for(lock, 5s, [this] { return !hold; });
      }
      if (delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms.load()));
      if (n <= fail_first) {
        reply.status = orch::Status::unavailable("scripted worker failure " + std::to_string(n));
        reply.retryable = false;
        return reply;
      }
      reply.output = "done: " + r.prompt;
      return reply;
    });
    return d;
  }
  void release() {
    std::lock_guard<std::mutex> lock(mu);
    hold = false;
    cv.notify_all();
  }
};

// The server App with its HTTP API, pull mode pointed at a FakeNullTickets.
class PullServer {
 public:
  // `db`: ":memory:", or a PostgreSQL URI with `pg_schema` (instances sharing a database).
  PullServer(FakeNullTickets& nt, const TempDir& dir, const Value& tracker,
             std::shared_ptr<orch::Dispatcher> dispatcher = nullptr, bool start = true,
             const std::string& db = ":memory:", const std::string& pg_schema = "") {
    Value base = Value::object(
        {{"url", nt.url()},
         {"agent_id", "orch-test"},
         {"poll_interval_ms", 20},
         {"heartbeat_interval_ms", 50},
         {"lease_ttl_ms", 5000},
         {"http_timeout_ms", 2000},
         {"stall_timeout_ms", 5000},
         {"workflows_dir", dir.str("workflows")},
         {"workspace", Value::object({{"root", dir.str("ws")}, {"hook_timeout_ms", 2000}})},
         // Agent ports: a range per test process (ctest runs several at
         // once), below the kernel's ephemeral ports.
         {"subprocess", Value::object({{"command", ORCH_FAKE_AGENT},
                                       {"base_port", 10000 + static_cast<int>(getpid() % 20) * 1000},
                                       {"args", Value::array()},
                                       {"health_check_interval_ms", 20},
                                       {"health_check_retries", 150}})}});
    srv::ServerConfig config;
    config.db = db;
    if (!pg_schema.empty()) config.postgres.schema = pg_schema;
    config.tracker = merge(base, tracker);
    auto app = srv::open_app(config, std::move(dispatcher));
    REQUIRE(app.ok());
    app_ = std::move(app).value();
    srv::install_api(*app_, svr_);
    port_ = svr_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { svr_.listen_after_bind(); });
    while (!svr_.is_running()) std::this_thread::sleep_for(1ms);
    if (start) {
      orch::Status s = srv::start_tracker(*app_);
      INFO(s.to_string());
      REQUIRE(s.ok());
    }
  }
  ~PullServer() {
    srv::stop_tracker(*app_);
    app_->stopping = true;
    app_->hub.close();
    svr_.stop();
    thread_.join();
  }

  srv::App& app() { return *app_; }
  srv::Tracker& tracker() { return *app_->tracker; }
  std::unique_ptr<httplib::Client> client() {
    auto c = std::make_unique<httplib::Client>("127.0.0.1", port_);
    c->set_read_timeout(5, 0);
    return c;
  }
  Value task(const std::string& id) { return app_->tracker->task_json(id).value_or(Value()); }
  std::string state(const std::string& id) { return task(id)["state"].get_string(""); }
  bool wait_state(const std::string& id, const std::string& s, std::chrono::milliseconds t = kWait) {
    return wait_until([&] { return state(id) == s; }, t);
  }
  std::vector<orch::RunRecord> runs_for(const std::string& task_id) {
    orch::RunFilter f;
    f.limit = 1000;
    std::vector<orch::RunRecord> out;
    auto runs = app_->store->list_runs(f);
    if (!runs.ok()) return out;
    for (const auto& r : *runs) {
      const Value& config = r.config;
      if (config["task_id"].get_string("") == task_id) out.push_back(r);
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
      const Value& ca = a.config;
      const Value& cb = b.config;
      return ca["attempt"].get_int(0) < cb["attempt"].get_int(0);
    });
    return out;
  }
  std::vector<std::string> event_kinds(const std::string& run_id) {
    std::vector<std::string> kinds;
    auto events = app_->store->list_events(run_id, 0, 1000);
    if (events.ok()) {
      for (const auto& e : *events) kinds.push_back(e.kind);
    }
    return kinds;
  }

 private:
  std::unique_ptr<srv::App> app_;
  httplib::Server svr_;
  int port_ = 0;
  std::thread thread_;
};

size_t count_of(const std::vector<std::string>& v, const std::string& s) {
  return static_cast<size_t>(std::count(v.begin(), v.end(), s));
}

Value graph(const std::string& prompt) {
  return Value::object({{"nodes", Value::object({{"work", Value::object({{"type", "task"},
                                                                          {"prompt_template", prompt},
                                                                          {"output_key", "result"}})}})},
                        {"edges", Value::array({Value::array({"__start__", "work"}), Value::array({"work", "__end__"})})},
                        {"state_schema", Value::object({{"result", Value::object({{"type", "string"}, {"reducer", "last_value"}})}})}});
}

Value dispatch_pipeline(const std::string& pipeline, const std::string& role, Value extra = Value::object()) {
  return merge(Value::object({{"pipeline_id", pipeline},
                              {"claim_roles", Value::array({role})},
                              {"execution", "dispatch"},
                              {"workflow", graph("Do {{task.title}} (attempt {{config.attempt}})")},
                              {"on_success", Value::object({{"transition_to", "complete"}})}}),
               extra);
}

Value agent_pipeline(const std::string& pipeline, Value args, Value extra = Value::object()) {
  return merge(Value::object({{"pipeline_id", pipeline},
                              {"claim_roles", Value::array({"coder"})},
                              {"execution", "subprocess"},
                              {"prompt_template", "Task {{task.id}}: {{task.title}} (attempt {{attempt}})"},
                              {"subprocess", Value::object({{"args", std::move(args)},
                                                            {"max_turns", 3},
                                                            {"continuation_prompt", "continue {{state.turn}} after: {{state.last_output}}"}})},
                              {"on_success", Value::object({{"transition_to", "complete"}})}}),
               extra);
}

// backlog (coder) --complete--> review (reviewer) --approve--> done
void add_dev_pipeline(FakeNullTickets& nt, const std::string& id) {
  nt.add_pipeline(id, {{"backlog", "coder"}, {"review", "reviewer"}},
                  {{"backlog", "review", "complete"}, {"review", "done", "approve"}, {"backlog", "cancelled", "drop"}});
}

// A failed task is offered again only after `retry_delay_ms` (NullTickets'
// retry policy), so by default a test sees each failure once.
void add_task(FakeNullTickets& nt, const std::string& id, const std::string& pipeline, const std::string& title = "",
              int64_t retry_delay_ms = 60000) {
  nt.add_task(Value::object({{"id", id}, {"pipeline_id", pipeline}, {"stage", "backlog"},
                             {"title", title.empty() ? "task " + id : title},
                             {"retry_delay_ms", static_cast<long long>(retry_delay_ms)}}));
}

}  // namespace

TEST_CASE("tracker config is parsed strictly, with clear errors", "[tracker][config]") {
  auto parse = [](const char* json, const std::string& base = "") {
    return srv::parse_tracker_config(*orch::parse_json(json), base);
  };
  auto error_of = [&](const char* json) {
    auto r = parse(json);
    return r.ok() ? std::string("OK") : r.status().message();
  };
  auto d = parse(R"({"url":"http://nt:7700/"})");
  REQUIRE(d.ok());
  CHECK(d->url == "http://nt:7700");
  CHECK(d->poll_interval_ms == 10000);
  CHECK(d->agent_id == "nullboiler");
  CHECK(d->max_concurrent_tasks == 10);
  CHECK(d->lease_ttl_ms == 60000);
  CHECK(d->heartbeat_interval_ms == 30000);
  CHECK(d->command == "nullclaw");
  CHECK(d->args == std::vector<std::string>{"gateway"});
  CHECK(parse(R"({"url":null})")->url.empty());

  CHECK(error_of(R"({"url":"http://x","bogus":1})") == "tracker.bogus: unknown key");
  CHECK(error_of(R"({"url":"http://x","concurrency":{"per_rolee":{}}})") == "tracker.concurrency.per_rolee: unknown key");
  CHECK(error_of(R"({"url":"http://x","concurrency":{"per_role":{"coder":-1}}})") ==
        "tracker.concurrency.per_role.coder: expected a non-negative integer");
  CHECK(error_of(R"({"url":"http://x","concurrency":{"max_concurrent_tasks":"3"}})") ==
        "tracker.concurrency.max_concurrent_tasks: expected a non-negative integer");
  CHECK(error_of(R"({"url":"ftp://x"})") == "tracker.url: expected an http:// or https:// URL, got 'ftp://x'");
  CHECK(error_of(R"({"url":"http://x","poll_interval_ms":0})") == "tracker.poll_interval_ms: expected a positive integer");
  CHECK(error_of(R"({"url":"http://x","workspace":{"hooks":{"after_run":3}}})") ==
        "tracker.workspace.hooks.after_run: expected a string");
  CHECK(error_of(R"({"url":"http://x","lease_ttl_ms":1000,"heartbeat_interval_ms":1000})") ==
        "tracker.heartbeat_interval_ms (1000) must be less than tracker.lease_ttl_ms (1000)");
  CHECK(error_of(R"({"url":"http://x","subprocess":{"continuation_prompt":"{% if state.x"}})").find(
            "tracker.subprocess.continuation_prompt: template error") == 0);

  auto anchored = parse(R"({"url":"http://x","workspace":{"root":"ws"},"workflows_dir":"wf"})", "/etc/orch");
  REQUIRE(anchored.ok());
  CHECK(anchored->workspace_root == "/etc/orch/ws");
  CHECK(anchored->workflows_dir == "/etc/orch/wf");

  auto def_error = [](const char* json) {
    auto r = srv::parse_pipeline_def(*orch::parse_json(json), "p.json");
    return r.ok() ? std::string("OK") : r.status().message();
  };
  CHECK(def_error(R"({"pipeline_id":"p","prompt_template":"x"})") == "OK");
  CHECK(def_error(R"({"prompt_template":"x"})") == "p.json: pipeline_id is required");
  CHECK(def_error(R"({"pipeline_id":"p","prompt_template":"x","on_sucess":{}})") == "p.json.on_sucess: unknown key");
  CHECK(def_error(R"({"pipeline_id":"p","execution":"threads"})") ==
        "p.json.execution: expected \"subprocess\" or \"dispatch\", got \"threads\"");
  CHECK(def_error(R"({"pipeline_id":"p"})") == "p.json: subprocess execution needs a prompt_template");
  CHECK(def_error(R"({"pipeline_id":"p","execution":"dispatch"})") ==
        "p.json: dispatch execution needs a workflow_id, a workflow or a prompt_template");
  CHECK(def_error(R"({"pipeline_id":"p","prompt_template":"{% if task.x"})").find("p.json.prompt_template: template error") == 0);

  // The workflows directory: graph workflows are skipped, pipeline files read.
  TempDir dir;
  fs::create_directories(dir.str("wf"));
  std::ofstream(dir.str("wf/graph.json")) << R"({"nodes":{},"edges":[]})";
  std::ofstream(dir.str("wf/dev.json")) << R"({"id":"wf-dev","pipeline_id":"dev","claim_roles":["coder"],"prompt_template":"go"})";
  srv::TrackerConfig cfg;
  cfg.workflows_dir = dir.str("wf");
  auto defs = srv::load_pipeline_defs(cfg);
  REQUIRE(defs.ok());
  REQUIRE(defs->size() == 1);
  CHECK((*defs)[0].id == "wf-dev");
  std::ofstream(dir.str("wf/bad.json")) << R"({"pipeline_id":"x","claim_role":["coder"]})";
  auto bad = srv::load_pipeline_defs(cfg);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message() == dir.str("wf/bad.json") + ".claim_role: unknown key");
}

TEST_CASE("workspaces stay inside their root", "[tracker][workspace]") {
  TempDir dir;
  using WM = srv::WorkspaceManager;
  CHECK(*WM::dir_name_for("TASK-1") == "TASK-1");
  CHECK(WM::dir_name_for("a b")->rfind("a_b-", 0) == 0);
  CHECK(*WM::dir_name_for("a b") != *WM::dir_name_for("a_b"));  // no collisions after sanitizing
  CHECK(WM::dir_name_for(".hidden")->rfind("_hidden-", 0) == 0);
  for (const char* bad : {"../evil", "/etc/passwd", "..", ".", "", "a/../../b", "a\\b"}) {
    INFO(bad);
    CHECK_FALSE(WM::dir_name_for(bad).ok());
  }

  WM ws(dir.str("root"));
  REQUIRE(ws.init().ok());
  CHECK(ws.root() == dir.str("root"));
  auto w = ws.prepare("t1");
  REQUIRE(w.ok());
  CHECK(w->path == dir.str("root/t1"));
  CHECK(w->fresh);
  std::ofstream(w->path + "/file") << "x";
  auto again = ws.prepare("t1");
  REQUIRE(again.ok());
  CHECK_FALSE(again->fresh);  // reused across attempts, with its content
  CHECK_FALSE(ws.prepare("../escape").ok());
  CHECK_FALSE(fs::exists(dir.str("escape")));

  // A symlink planted in the root is refused, never followed.
  fs::create_directories(dir.str("outside"));
  fs::create_directory_symlink(dir.str("outside"), dir.str("root/evil"));
  auto evil = ws.prepare("evil");
  REQUIRE_FALSE(evil.ok());
  CHECK(evil.status().message().find("symlink") != std::string::npos);

  CHECK_FALSE(ws.remove(dir.str("outside")).ok());
  CHECK_FALSE(ws.remove(dir.str("root/../outside")).ok());
  CHECK_FALSE(ws.remove(dir.str("root")).ok());

  // Stale cleanup removes only the workspaces orch created (their marker):
  // not links, not their targets, not files, not directories someone else made.
  std::ofstream(dir.str("outside/keep")) << "x";
  std::ofstream(dir.str("root/plain-file")) << "x";
  fs::create_directories(dir.str("root/someone-elses"));
  std::ofstream(dir.str("root/someone-elses/data")) << "x";
  CHECK(fs::exists(dir.str("root/t1/") + srv::WorkspaceManager::kMarker));
  CHECK(ws.remove_stale() == 1);
  CHECK_FALSE(fs::exists(dir.str("root/t1")));
  CHECK(fs::is_symlink(dir.str("root/evil")));
  CHECK(fs::exists(dir.str("outside/keep")));
  CHECK(fs::exists(dir.str("root/plain-file")));
  CHECK(fs::exists(dir.str("root/someone-elses/data")));
  CHECK(ws.remove(dir.str("root/someone-elses")).ok());  // refused quietly: not orch's
  CHECK(fs::exists(dir.str("root/someone-elses/data")));
}

TEST_CASE("a workspace root is created 0700, and one others may write to is refused", "[tracker][workspace][hardening]") {
  TempDir dir;
  srv::WorkspaceManager fresh(dir.str("new-root"));
  REQUIRE(fresh.init().ok());
  CHECK((fs::status(dir.str("new-root")).permissions() & fs::perms::all) == fs::perms::owner_all);
  fs::create_directories(dir.str("open-root"));
  fs::permissions(dir.str("open-root"), fs::perms::all);  // 0777, like /tmp without the sticky bit
  srv::WorkspaceManager open(dir.str("open-root"));
  orch::Status s = open.init();
  CHECK_FALSE(s.ok());
  CHECK(s.message().find("writable by other users") != std::string::npos);
  srv::WorkspaceManager tmp("/tmp");
  CHECK_FALSE(tmp.init().ok());
}

TEST_CASE("hooks and agents see only allow-listed variables of orch's environment", "[tracker][hooks][hardening]") {
  TempDir dir;
  setenv("ORCH_API_TOKEN", "server-secret", 1);
  setenv("AWS_SECRET_ACCESS_KEY", "cloud-secret", 1);
  setenv("MY_TOOL_HOME", "/opt/tool", 1);
  auto r = srv::run_hook("after_create", "env > env.txt", dir.str(), {{"ORCH_TASK_ID", "T-1"}}, 2000, {"MY_TOOL_*"});
  REQUIRE(r.ok);
  std::string env = read_file(dir.str("env.txt"));
  CHECK(env.find("server-secret") == std::string::npos);
  CHECK(env.find("cloud-secret") == std::string::npos);
  CHECK(env.find("MY_TOOL_HOME=/opt/tool") != std::string::npos);  // allowed by the prefix
  CHECK(env.find("ORCH_TASK_ID=T-1") != std::string::npos);        // the task's own
  CHECK(env.find("PATH=") != std::string::npos);                   // always
  unsetenv("ORCH_API_TOKEN");
  unsetenv("AWS_SECRET_ACCESS_KEY");
  unsetenv("MY_TOOL_HOME");
}

TEST_CASE("hooks get the task environment, failures and timeouts are reported", "[tracker][hooks]") {
  TempDir dir;
  auto ok = srv::run_hook("after_create", "echo \"$ORCH_TASK_ID $ORCH_HOOK $(pwd)\" > out.txt", dir.str(),
                          {{"ORCH_TASK_ID", "T-9"}}, 2000);
  CHECK(ok.ok);
  CHECK(read_file(dir.str("out.txt")) == "T-9 after_create " + dir.str() + "\n");

  auto failed = srv::run_hook("before_run", "echo oops >&2; exit 3", dir.str(), {}, 2000);
  CHECK_FALSE(failed.ok);
  CHECK(failed.exit_code == 3);
  CHECK(failed.error == "hook before_run failed (exit status 3): oops");

  // The whole process group goes at the timeout, background children included.
  auto start = std::chrono::steady_clock::now();
  auto slow = srv::run_hook("after_run", "sleep 30 & echo $! > child.pid; sleep 30", dir.str(), {}, 100);
  CHECK(std::chrono::steady_clock::now() - start < 3s);
  CHECK_FALSE(slow.ok);
  CHECK(slow.timed_out);
  CHECK(slow.error == "hook after_run timed out after 100 ms");
  long long child = std::atoll(read_file(dir.str("child.pid")).c_str());
  REQUIRE(child > 0);
  CHECK(wait_until([&] { return process_gone(child); }, 2s));
}

TEST_CASE("dispatch: claim, workspace and hooks, an orch run, transition", "[tracker][e2e]") {
  TempDir dir;
  FakeNullTickets nt;
  add_dev_pipeline(nt, "dev");
  add_task(nt, "T1", "dev", "Fix the bug");
  Workers workers;
  const std::string log = dir.str("hooks.log");
  auto line = [&](const char* name) {
    return std::string("echo \"") + name + " $ORCH_TASK_ID $ORCH_ATTEMPT $ORCH_PIPELINE_ID $ORCH_AGENT_ROLE " +
           "$ORCH_TASK_STAGE $(basename \"$PWD\") $ORCH_OUTCOME\" >> " + log;
  };
  fs::create_directories(dir.str("ws/stale-from-last-time"));  // a workspace an earlier orch made
  std::ofstream(dir.str("ws/stale-from-last-time/") + srv::WorkspaceManager::kMarker) << "";
  fs::create_directories(dir.str("ws/not-orchs"));  // someone else's: kept
  PullServer server(nt, dir,
                    Value::object({{"pipelines", Value::array({dispatch_pipeline("dev", "coder")})},
                                   {"workspace", Value::object({{"hooks", Value::object({{"after_create", line("after_create")},
                                                                                        {"before_run", line("before_run")},
                                                                                        {"after_run", line("after_run")},
                                                                                        {"before_remove", line("before_remove")}})}})}}),
                    workers.dispatcher());
  CHECK_FALSE(fs::exists(dir.str("ws/stale-from-last-time")));  // cleaned at start
  CHECK(fs::exists(dir.str("ws/not-orchs")));

  REQUIRE(server.wait_state("T1", "completed"));
  CHECK(nt.task("T1")["stage"].get_string("") == "review");
  auto claims = nt.calls("POST", "/leases/claim");
  REQUIRE(claims.size() >= 1);
  CHECK(claims[0].body["agent_id"].get_string("") == "orch-test");
  CHECK(claims[0].body["agent_role"].get_string("") == "coder");
  CHECK(claims[0].body["lease_ttl_ms"].get_int(0) == 5000);
  auto transitions = nt.calls("POST", "/transition");
  REQUIRE(transitions.size() == 1);
  CHECK(transitions[0].body["trigger"].get_string("") == "complete");
  CHECK(transitions[0].body["expected_stage"].get_string("") == "backlog");
  CHECK(transitions[0].body["expected_task_version"].get_int(0) == 1);
  CHECK(transitions[0].bearer == "token-1");
  CHECK(transitions[0].status == 200);
  CHECK(nt.count("POST", "/fail") == 0);

  // The work is an ordinary orch run, with the task in its config.
  auto runs = server.runs_for("T1");
  REQUIRE(runs.size() == 1);
  const orch::RunRecord& run = runs[0];
  CHECK(run.status == orch::RunStatus::kCompleted);
  const Value& config = run.config;
  CHECK(config["task"]["title"].get_string("") == "Fix the bug");
  CHECK(config["attempt"].get_int(0) == 1);
  CHECK(config["tracker_run_id"].get_string("") == "run-1");
  const Value& state = run.state;
  CHECK(state["result"].get_string("") == "done: Do Fix the bug (attempt 1)");
  CHECK(workers.prompts == std::vector<std::string>{"Do Fix the bug (attempt 1)"});
  auto steps = server.app().store->list_steps(run.id);
  REQUIRE(steps.ok());
  CHECK(steps->size() == 1);
  CHECK(count_of(server.event_kinds(run.id), "run.completed") == 1);
  auto http = server.client()->Get(("/runs/" + run.id).c_str());
  REQUIRE(http);
  CHECK(http->status == 200);

  Value t = server.task("T1");
  CHECK(t["run_id"].get_string("") == run.id);
  CHECK(t["attempt"].get_int(0) == 1);
  CHECK(t["execution"].get_string("") == "dispatch");
  CHECK(wait_until([&] { return !fs::exists(dir.str("ws/T1")); }));
  CHECK(read_file(log) ==
        "after_create T1 1 dev coder backlog T1 \n"
        "before_run T1 1 dev coder backlog T1 \n"
        "after_run T1 1 dev coder backlog T1 succeeded\n"
        "before_remove T1 1 dev coder backlog T1 \n");
  Value stats = server.tracker().stats_json();
  CHECK(stats["completed"].get_int(0) == 1);
  CHECK(stats["failed"].get_int(0) == 0);
  CHECK(stats["running"].get_int(0) == 0);
}

TEST_CASE("subprocess: an agent's turns, visible as an orch run", "[tracker][subprocess]") {
  TempDir dir;
  FakeNullTickets nt;
  add_dev_pipeline(nt, "dev");
  add_task(nt, "S1", "dev", "Write docs");
  const std::string log = dir.str("agent.log");

  SECTION("the agent says done after two turns; orch transitions the task") {
    PullServer server(nt, dir,
                      Value::object({{"pipelines", Value::array({agent_pipeline("dev", Value::array({"--done-after", "2", "--log", log}))})}}));
    REQUIRE(server.wait_state("S1", "completed"));
    CHECK(nt.task("S1")["stage"].get_string("") == "review");
    auto lines = read_json_lines(log);
    auto turns = lines_with(lines, "turn");
    REQUIRE(turns.size() == 2);
    CHECK(turns[0]["message"].get_string("") == "Task S1: Write docs (attempt 1)");
    CHECK(turns[1]["message"].get_string("") == "continue 2 after: turn 1: Task S1: Write docs (attempt 1)");
    CHECK(turns[0]["auth"].get_string("").rfind("Bearer ", 0) == 0);
    auto start = lines_with(lines, "start");
    REQUIRE(start.size() == 1);
    CHECK(start[0]["cwd"].get_string("") == dir.str("ws/S1"));
    CHECK(start[0]["workdir"].get_string("") == dir.str("ws/S1"));
    CHECK(start[0]["task_id"].get_string("") == "S1");
    CHECK(start[0]["attempt"].get_string("") == "1");
    CHECK(wait_until([&] { return process_gone(start[0]["pid"].get_int(0)); }));

    auto runs = server.runs_for("S1");
    REQUIRE(runs.size() == 1);
    CHECK(runs[0].status == orch::RunStatus::kCompleted);
    auto kinds = server.event_kinds(runs[0].id);
    CHECK(count_of(kinds, "agent.spawned") == 1);
    CHECK(count_of(kinds, "agent.turn") == 2);
    CHECK(count_of(kinds, "run.completed") == 1);
    auto steps = server.app().store->list_steps(runs[0].id);
    REQUIRE(steps.ok());
    REQUIRE(steps->size() == 1);
    CHECK((*steps)[0].status == orch::StepStatus::kCompleted);
    CHECK((*steps)[0].node_name == "agent");
    CHECK(runs[0].input_tokens == 20);
    CHECK(runs[0].output_tokens == 10);

    auto transitions = nt.calls("POST", "/transition");
    REQUIRE(transitions.size() == 1);
    CHECK(transitions[0].body["usage"]["input_tokens"].get_int(0) == 20);
    CHECK(transitions[0].body["usage"]["output_tokens"].get_int(0) == 10);
    auto events = nt.calls("POST", "/events");
    REQUIRE(events.size() == 3);
    CHECK(events[0].body["kind"].get_string("") == "agent_started");
    CHECK(events[1].body["kind"].get_string("") == "turn_completed");
    CHECK(events[2].body["data"]["turn"].get_int(0) == 2);
    CHECK(server.task("S1")["current_turn"].get_int(0) == 2);
    CHECK(server.task("S1")["max_turns"].get_int(0) == 3);
  }

  SECTION("an agent that moves its task itself ends the turn loop; orch does not transition again") {
    PullServer server(nt, dir,
                      Value::object({{"pipelines", Value::array({agent_pipeline("dev", Value::array({"--transition", "complete", "--log", log}))})}}));
    REQUIRE(server.wait_state("S1", "completed"));
    CHECK(lines_with(read_json_lines(log), "turn").size() == 1);
    auto transitions = nt.calls("POST", "/transition");
    REQUIRE(transitions.size() == 1);  // the agent's own, with orch's lease token
    CHECK(transitions[0].bearer == "token-1");
    CHECK(nt.task("S1")["stage"].get_string("") == "review");
    CHECK(server.runs_for("S1")[0].status == orch::RunStatus::kCompleted);
  }

  SECTION("a heartbeat refused because the agent moved its task counts as finished upstream, not as a lost lease") {
    // The ordering that made the section above flaky under load: the agent
    // transitions its task (NullTickets ends the claim's run and its lease),
    // the next heartbeat is refused, and only then does orch read the task.
    nt.hold_task_reads_until_refused_heartbeat();
    PullServer server(nt, dir,
                      Value::object({{"pipelines", Value::array({agent_pipeline("dev", Value::array({"--transition", "complete", "--log", log}))})}}));
    REQUIRE(server.wait_state("S1", "completed"));
    bool refused = false;
    for (const auto& hb : nt.calls("POST", "/heartbeat")) refused |= hb.status == 404;
    CHECK(refused);
    CHECK(server.task("S1")["error"].is_null());
    REQUIRE(nt.count("POST", "/transition") == 1);  // the agent's own
    CHECK(nt.count("POST", "/fail") == 0);
    CHECK(nt.task("S1")["stage"].get_string("") == "review");
    CHECK(server.runs_for("S1")[0].status == orch::RunStatus::kCompleted);
  }

  SECTION("an agent that crashes fails the task and its run") {
    PullServer server(nt, dir, Value::object({{"pipelines", Value::array({agent_pipeline("dev", Value::array({"--fail", "crash"}))})}}));
    REQUIRE(server.wait_state("S1", "failed"));
    auto fails = nt.calls("POST", "/fail");
    REQUIRE(fails.size() == 1);
    CHECK(fails[0].body["error"].get_string("").find("agent exited (exit status 3) during turn 1") != std::string::npos);
    auto runs = server.runs_for("S1");
    REQUIRE(runs.size() == 1);
    CHECK(runs[0].status == orch::RunStatus::kFailed);
    CHECK(runs[0].error.find("agent exited") != std::string::npos);
  }

  SECTION("an agent that never becomes healthy fails the task") {
    PullServer server(nt, dir,
                      Value::object({{"pipelines", Value::array({agent_pipeline("dev", Value::array({"--fail", "health"}))})},
                                     {"subprocess", Value::object({{"health_check_retries", 3}})}}));
    REQUIRE(server.wait_state("S1", "failed"));
    CHECK(server.task("S1")["error"].get_string("").find("not healthy after 3 checks") != std::string::npos);
  }

  SECTION("a chatty agent never blocks on its output pipe") {
    PullServer server(nt, dir, Value::object({{"pipelines", Value::array({agent_pipeline("dev", Value::array({"--chatty", "512", "--done-after", "1"}))})}}));
    REQUIRE(server.wait_state("S1", "completed"));
  }
}

TEST_CASE("heartbeats keep the lease of a long task", "[tracker][lease]") {
  TempDir dir;
  FakeNullTickets nt;
  add_dev_pipeline(nt, "dev");
  add_task(nt, "H1", "dev");
  Workers workers;
  workers.delay_ms = 800;
  PullServer server(nt, dir,
                    Value::object({{"pipelines", Value::array({dispatch_pipeline("dev", "coder")})},
                                   {"lease_ttl_ms", 250},
                                   {"heartbeat_interval_ms", 60}}),
                    workers.dispatcher());
  REQUIRE(server.wait_state("H1", "completed"));
  // Without heartbeats the 250 ms lease would have expired and the transition answered 410.
  CHECK(nt.count("POST", "/leases/lease-1/heartbeat") >= 5);
  // The lease never expired. A heartbeat that crosses orch's own transition
  // under load finds the lease ended by it (404), and is harmless then.
  int renewed = 0;
  for (const auto& hb : nt.calls("POST", "/heartbeat")) {
    CHECK(hb.bearer == "token-1");
    CHECK((hb.status == 200 || hb.status == 404));
    renewed += hb.status == 200;
  }
  CHECK(renewed >= 5);
  REQUIRE(nt.count("POST", "/transition") == 1);
  CHECK(nt.calls("POST", "/transition")[0].status == 200);
  CHECK(server.task("H1")["heartbeats"].get_int(0) >= 5);
}

TEST_CASE("a lost lease cancels the run without reporting to NullTickets", "[tracker][lease]") {
  TempDir dir;
  FakeNullTickets nt;
  add_dev_pipeline(nt, "dev");
  add_task(nt, "L1", "dev");
  nt.set_heartbeat_status(410);
  Workers workers;
  workers.hold = true;
  PullServer server(nt, dir,
                    Value::object({{"pipelines", Value::array({dispatch_pipeline("dev", "coder")})}}),
                    workers.dispatcher());
  REQUIRE(server.wait_state("L1", "failed"));
  workers.release();
  CHECK(server.task("L1")["error"].get_string("").find("lease lost: heartbeat NullTickets answered 410") == 0);
  auto runs = server.runs_for("L1");
  REQUIRE(runs.size() == 1);
  CHECK(runs[0].status == orch::RunStatus::kCancelled);
  CHECK(nt.count("POST", "/fail") == 0);
  CHECK(nt.count("POST", "/transition") == 0);
}

TEST_CASE("a stalled agent is killed and its task failed as stalled", "[tracker][stall]") {
  TempDir dir;
  FakeNullTickets nt;
  add_dev_pipeline(nt, "dev");
  add_task(nt, "ST1", "dev");
  const std::string log = dir.str("agent.log");
  PullServer server(nt, dir,
                    Value::object({{"pipelines", Value::array({agent_pipeline("dev", Value::array({"--hang", "turn", "--child", "--log", log}))})},
                                   {"stall_timeout_ms", 300}}));
  auto start = std::chrono::steady_clock::now();
  REQUIRE(server.wait_state("ST1", "stalled"));
  CHECK(std::chrono::steady_clock::now() - start < 4s);
  auto fails = nt.calls("POST", "/fail");
  REQUIRE(fails.size() == 1);
  CHECK(fails[0].body["error"].get_string("").rfind("subprocess stalled: no activity for", 0) == 0);
  auto runs = server.runs_for("ST1");
  REQUIRE(runs.size() == 1);
  CHECK(runs[0].status == orch::RunStatus::kFailed);
  CHECK(runs[0].error.find("subprocess stalled") != std::string::npos);
  auto lines = read_json_lines(log);
  auto started = lines_with(lines, "start");
  REQUIRE(started.size() == 1);
  CHECK(wait_until([&] { return process_gone(started[0]["pid"].get_int(0)); }));
  CHECK(wait_until([&] { return process_gone(started[0]["child_pid"].get_int(0)); }));  // the whole group
}

TEST_CASE("a task moved to a terminal stage upstream cancels its run", "[tracker][reconcile]") {
  TempDir dir;
  FakeNullTickets nt;
  add_dev_pipeline(nt, "dev");
  add_task(nt, "R1", "dev");
  const std::string log = dir.str("agent.log");
  PullServer server(nt, dir,
                    Value::object({{"pipelines", Value::array({agent_pipeline("dev", Value::array({"--delay-ms", "20000", "--log", log}))})}}));
  REQUIRE(wait_until([&] { return lines_with(read_json_lines(log), "turn").size() == 1; }));
  // A transient error reading the task does not drop it.
  nt.set_task_read_status(503);
  std::this_thread::sleep_for(100ms);
  CHECK(server.state("R1") == "running");
  nt.set_task_read_status(0);

  auto moved = std::chrono::steady_clock::now();
  nt.set_stage("R1", "cancelled");
  REQUIRE(server.wait_state("R1", "cancelled"));
  CHECK(std::chrono::steady_clock::now() - moved < 3s);
  CHECK(server.task("R1")["error"].get_string("") == "the task reached terminal stage 'cancelled' upstream");
  auto runs = server.runs_for("R1");
  REQUIRE(runs.size() == 1);
  CHECK(runs[0].status == orch::RunStatus::kCancelled);
  CHECK(nt.count("POST", "/fail") == 0);
  CHECK(nt.count("POST", "/transition") == 0);
  auto started = lines_with(read_json_lines(log), "start");
  REQUIRE(started.size() == 1);
  CHECK(wait_until([&] { return process_gone(started[0]["pid"].get_int(0)); }));
  Value stats = server.tracker().stats_json();
  CHECK(stats["cancelled"].get_int(0) == 1);
  CHECK(stats["failed"].get_int(0) == 0);
}

TEST_CASE("concurrency limits hold per pipeline, per role and overall", "[tracker][limits]") {
  TempDir dir;
  FakeNullTickets nt;
  nt.add_pipeline("pa", {{"todo", "a"}}, {{"todo", "done", "complete"}});
  nt.add_pipeline("pb", {{"todo", "b"}}, {{"todo", "done", "complete"}});
  for (int i = 0; i < 3; ++i) {
    nt.add_task(Value::object({{"id", "A" + std::to_string(i)}, {"pipeline_id", "pa"}, {"stage", "todo"}}));
    nt.add_task(Value::object({{"id", "B" + std::to_string(i)}, {"pipeline_id", "pb"}, {"stage", "todo"}}));
  }
  Workers workers;
  workers.delay_ms = 120;
  PullServer server(nt, dir,
                    Value::object({{"pipelines", Value::array({dispatch_pipeline("pa", "a"), dispatch_pipeline("pb", "b")})},
                                   {"concurrency", Value::object({{"max_concurrent_tasks", 3},
                                                                  {"per_pipeline", Value::object({{"pa", 1}})},
                                                                  {"per_role", Value::object({{"b", 2}})}})}}),
                    workers.dispatcher());
  REQUIRE(wait_until([&] { return server.tracker().stats_json()["completed"].get_int(0) == 6; }, 10s));
  CHECK(nt.max_leases_for_pipeline("pa") == 1);
  CHECK(nt.max_leases_for_role("b") == 2);
  CHECK(nt.max_leases() <= 3);
  CHECK(nt.count("POST", "/fail") == 0);  // limits are checked before claiming
}

TEST_CASE("a claimed task that is not run releases its lease", "[tracker][release]") {
  TempDir dir;
  FakeNullTickets nt;
  add_dev_pipeline(nt, "dev");
  Workers workers;

  SECTION("per_state limit (sent to NullTickets, and checked again after the claim)") {
    nt.set_honour_per_state(false);
    add_task(nt, "P1", "dev", "", 0);
    add_task(nt, "P2", "dev", "", 0);
    workers.delay_ms = 150;
    PullServer server(nt, dir,
                      Value::object({{"pipelines", Value::array({dispatch_pipeline("dev", "coder")})},
                                     {"concurrency", Value::object({{"per_state", Value::object({{"backlog", 1}})}})}}),
                      workers.dispatcher());
    REQUIRE(wait_until([&] { return server.tracker().stats_json()["completed"].get_int(0) == 2; }));
    CHECK(nt.calls("POST", "/leases/claim")[0].body["concurrency"]["per_state"]["backlog"].get_int(0) == 1);
    auto fails = nt.calls("POST", "/fail");
    REQUIRE(fails.size() >= 1);
    CHECK(fails[0].body["error"].get_string("") == "released by orch: per_state limit of 1 reached for stage backlog");
    CHECK(fails[0].status == 200);
    CHECK(nt.max_leases_for_role("coder") == 2);  // only for the moment between claim and release
  }

  SECTION("a task of a pipeline without a pull-mode workflow") {
    nt.add_pipeline("other", {{"backlog", "coder"}}, {{"backlog", "done", "complete"}});
    nt.add_task(Value::object({{"id", "X1"}, {"pipeline_id", "other"}, {"stage", "backlog"}}));
    PullServer server(nt, dir, Value::object({{"pipelines", Value::array({dispatch_pipeline("dev", "coder")})}}),
                      workers.dispatcher());
    REQUIRE(nt.wait_for([&] { return nt.count("POST", "/fail") >= 1; }, kWait));
    auto fail = nt.calls("POST", "/fail")[0];
    CHECK(fail.body["error"].get_string("") == "released by orch: no pull-mode workflow for pipeline 'other' and role 'coder'");
    CHECK(fail.status == 200);
    // The release ended the claim's run and its lease (the next poll may
    // claim the task again at once, so other leases are not counted).
    const std::string run_id = fail.path.substr(6, fail.path.size() - 6 - 5);  // /runs/{id}/fail
    CHECK(nt.run(run_id)["status"].get_string("") == "failed");
    CHECK(wait_until([&] { return server.tracker().status_json()["released_count"].get_int(0) >= 1; }));
  }

  SECTION("a task id that would escape the workspace root") {
    add_task(nt, "../../etc", "dev");
    PullServer server(nt, dir, Value::object({{"pipelines", Value::array({dispatch_pipeline("dev", "coder")})}}),
                      workers.dispatcher());
    REQUIRE(nt.wait_for([&] { return nt.count("POST", "/fail") >= 1; }, kWait));
    CHECK(nt.calls("POST", "/fail")[0].body["error"].get_string("") ==
          "released by orch: task id '../../etc' cannot name a workspace (path syntax)");
    CHECK(workers.calls == 0);
    CHECK(fs::is_empty(dir.str("ws")));
  }
}

TEST_CASE("hook failures and hook timeouts fail the task", "[tracker][hooks]") {
  TempDir dir;
  FakeNullTickets nt;
  add_dev_pipeline(nt, "dev");
  add_task(nt, "K1", "dev");
  Workers workers;

  SECTION("before_run exits non-zero") {
    PullServer server(nt, dir,
                      Value::object({{"pipelines", Value::array({dispatch_pipeline("dev", "coder")})},
                                     {"workspace", Value::object({{"hooks", Value::object({{"before_run", "echo no disk >&2; exit 7"}})}})}}),
                      workers.dispatcher());
    REQUIRE(server.wait_state("K1", "failed"));
    auto fails = nt.calls("POST", "/fail");
    REQUIRE(fails.size() == 1);
    CHECK(fails[0].body["error"].get_string("") == "execution failed: hook before_run failed (exit status 7): no disk");
    CHECK(server.runs_for("K1").empty());
    CHECK(workers.calls == 0);
    CHECK(wait_until([&] { return !fs::exists(dir.str("ws/K1")); }));
  }

  SECTION("after_create times out") {
    PullServer server(nt, dir,
                      Value::object({{"pipelines", Value::array({dispatch_pipeline("dev", "coder")})},
                                     {"workspace", Value::object({{"hook_timeout_ms", 100},
                                                                  {"hooks", Value::object({{"after_create", "sleep 30"}})}})}}),
                      workers.dispatcher());
    REQUIRE(server.wait_state("K1", "failed"));
    CHECK(server.task("K1")["error"].get_string("") == "hook after_create timed out after 100 ms");
  }

  SECTION("after_run and before_remove failures are only logged") {
    PullServer server(nt, dir,
                      Value::object({{"pipelines", Value::array({dispatch_pipeline("dev", "coder")})},
                                     {"workspace", Value::object({{"hooks", Value::object({{"after_run", "exit 1"}, {"before_remove", "exit 1"}})}})}}),
                      workers.dispatcher());
    REQUIRE(server.wait_state("K1", "completed"));
  }
}

TEST_CASE("failed attempts retry within the claim and the count is kept", "[tracker][retry]") {
  TempDir dir;
  FakeNullTickets nt;
  add_dev_pipeline(nt, "dev");
  add_task(nt, "F1", "dev", "", 0);
  Workers workers;
  Value retry = Value::object({{"on_failure", Value::object({{"retry", true}})},
                               {"retry", Value::object({{"max_attempts", 3}, {"backoff_base_ms", 20}})}});

  SECTION("two failures, then success") {
    workers.fail_first = 2;
    PullServer server(nt, dir, Value::object({{"pipelines", Value::array({dispatch_pipeline("dev", "coder", retry)})}}),
                      workers.dispatcher());
    REQUIRE(server.wait_state("F1", "completed"));
    CHECK(server.task("F1")["attempt"].get_int(0) == 3);
    CHECK(nt.count("POST", "/leases/claim") >= 1);
    CHECK(nt.count("POST", "/fail") == 0);  // the lease was kept through the cooldowns
    CHECK(nt.count("POST", "/transition") == 1);
    auto runs = server.runs_for("F1");
    REQUIRE(runs.size() == 3);
    CHECK(runs[0].status == orch::RunStatus::kFailed);
    CHECK(runs[1].status == orch::RunStatus::kFailed);
    CHECK(runs[2].status == orch::RunStatus::kCompleted);
    CHECK(workers.prompts.back() == "Do task F1 (attempt 3)");
  }

  SECTION("every attempt fails: one failure reported after max_attempts, and the count is kept") {
    workers.fail_first = 100;
    PullServer server(nt, dir, Value::object({{"pipelines", Value::array({dispatch_pipeline("dev", "coder", retry)})},
                                              {"poll_interval_ms", 60000}}),
                      workers.dispatcher());
    REQUIRE(server.wait_state("F1", "failed"));
    CHECK(server.task("F1")["attempt"].get_int(0) == 3);
    auto fails = nt.calls("POST", "/fail");
    REQUIRE(fails.size() == 1);
    CHECK(fails[0].body["error"].get_string("").find("scripted worker failure 3") != std::string::npos);
    // NullTickets offers the task again: attempt 4, with no local retries left.
    server.tracker().refresh();
    REQUIRE(nt.wait_for([&] { return nt.count("POST", "/fail") == 2; }, kWait));
    REQUIRE(server.wait_state("F1", "failed"));
    CHECK(server.task("F1")["attempt"].get_int(0) == 4);
    CHECK(workers.calls == 4);
  }
}

TEST_CASE("an orch run cancelled through the API releases its task", "[tracker][reconcile]") {
  TempDir dir;
  FakeNullTickets nt;
  add_dev_pipeline(nt, "dev");
  add_task(nt, "C1", "dev");
  Workers workers;
  workers.hold = true;
  PullServer server(nt, dir, Value::object({{"pipelines", Value::array({dispatch_pipeline("dev", "coder")})},
                                            {"poll_interval_ms", 60000}}),
                    workers.dispatcher());
  REQUIRE(wait_until([&] { return workers.calls == 1; }));
  std::string run_id = server.task("C1")["run_id"].get_string("");
  REQUIRE(!run_id.empty());
  auto r = server.client()->Post(("/runs/" + run_id + "/cancel").c_str());
  REQUIRE(r);
  CHECK(r->status == 200);
  REQUIRE(server.wait_state("C1", "cancelled"));
  workers.release();
  auto fails = nt.calls("POST", "/fail");
  REQUIRE(fails.size() == 1);
  CHECK(fails[0].body["error"].get_string("") == "released by orch: the orch run " + run_id + " was cancelled");
}

TEST_CASE("stopping the tracker kills agents and releases leases", "[tracker][stop]") {
  TempDir dir;
  FakeNullTickets nt;
  add_dev_pipeline(nt, "dev");
  add_task(nt, "Z1", "dev");
  const std::string log = dir.str("agent.log");
  PullServer server(nt, dir,
                    Value::object({{"pipelines", Value::array({agent_pipeline("dev", Value::array({"--delay-ms", "20000", "--log", log}))})}}));
  REQUIRE(wait_until([&] { return lines_with(read_json_lines(log), "turn").size() == 1; }));
  auto start = std::chrono::steady_clock::now();
  srv::stop_tracker(server.app());
  CHECK(std::chrono::steady_clock::now() - start < 4s);
  auto fails = nt.calls("POST", "/fail");
  REQUIRE(fails.size() == 1);
  CHECK(fails[0].body["error"].get_string("") == "released by orch: shutting down");
  CHECK(nt.active_leases() == 0);
  auto started = lines_with(read_json_lines(log), "start");
  REQUIRE(started.size() == 1);
  CHECK(process_gone(started[0]["pid"].get_int(0)));
  CHECK(server.runs_for("Z1")[0].status == orch::RunStatus::kCancelled);
}

TEST_CASE("/tracker routes", "[tracker][api]") {
  SECTION("without a tracker every route answers 404 tracker_disabled") {
    orch::testing::TestServer server;
    auto cli = server.client();
    for (const char* path : {"/tracker/status", "/tracker/tasks", "/tracker/tasks/x", "/tracker/stats"}) {
      auto r = cli->Get(path);
      REQUIRE(r);
      CHECK(r->status == 404);
      CHECK(r->body == R"({"error":{"code":"tracker_disabled","message":"pull-mode tracker is not configured"}})");
    }
    auto r = cli->Post("/tracker/refresh");
    REQUIRE(r);
    CHECK(r->status == 404);
  }

  SECTION("with a tracker: status, tasks, stats, refresh") {
    TempDir dir;
    FakeNullTickets nt;
    add_dev_pipeline(nt, "dev");
    Workers workers;
    workers.hold = true;
    PullServer server(nt, dir,
                      Value::object({{"pipelines", Value::array({dispatch_pipeline("dev", "coder")})},
                                     {"poll_interval_ms", 60000}}),
                      workers.dispatcher());
    auto cli = server.client();
    REQUIRE(nt.wait_for([&] { return nt.count("POST", "/leases/claim") >= 1; }, kWait));
    add_task(nt, "A1", "dev", "Routes");
    std::this_thread::sleep_for(50ms);
    CHECK(nt.count("POST", "/leases/claim") == 1);  // the next poll is a minute away...
    auto refresh = cli->Post("/tracker/refresh");
    REQUIRE(refresh);
    CHECK(refresh->status == 200);
    CHECK(refresh->body == R"({"status":"ok","message":"refresh requested"})");
    REQUIRE(wait_until([&] { return workers.calls == 1; }, 2s));  // ...but refresh polls now

    auto status = cli->Get("/tracker/status");
    REQUIRE(status);
    CHECK(status->status == 200);
    Value s = *orch::parse_json(status->body);
    CHECK(s["mode"].get_string("") == "pull");
    CHECK(s["running_count"].get_int(-1) == 1);
    CHECK(s["max_concurrent"].get_int(-1) == 10);
    CHECK(s["completed_count"].get_int(-1) == 0);
    CHECK(s["failed_count"].get_int(-1) == 0);
    CHECK(s["poll_interval_ms"].get_int(-1) == 60000);
    REQUIRE(s["running"].size() == 1);
    const Value& task = *s["running"].at(0);
    for (const char* key : {"task_id", "task_title", "pipeline_id", "agent_role", "execution", "current_turn", "max_turns",
                            "started_at_ms", "last_activity_ms", "state"}) {
      INFO(key);
      CHECK(task.find(key) != nullptr);
    }
    CHECK(task["task_id"].get_string("") == "A1");
    CHECK(task["task_title"].get_string("") == "Routes");
    CHECK(task["state"].get_string("") == "running");

    auto tasks = cli->Get("/tracker/tasks");
    REQUIRE(tasks);
    CHECK(orch::parse_json(tasks->body)->size() == 1);
    auto one = cli->Get("/tracker/tasks/A1");
    REQUIRE(one);
    CHECK(one->status == 200);
    auto missing = cli->Get("/tracker/tasks/nope");
    REQUIRE(missing);
    CHECK(missing->status == 404);
    CHECK(missing->body == R"({"error":{"code":"not_found","message":"task not found"}})");

    workers.release();
    REQUIRE(server.wait_state("A1", "completed"));
    auto stats = cli->Get("/tracker/stats");
    REQUIRE(stats);
    Value st = *orch::parse_json(stats->body);
    CHECK(st["running"].get_int(-1) == 0);
    CHECK(st["completed"].get_int(-1) == 1);
    CHECK(st["failed"].get_int(-1) == 0);
    CHECK(st["total"].get_int(-1) == 1);
    CHECK(st["max_concurrent"].get_int(-1) == 10);
  }
}

TEST_CASE("two orch serve on one PostgreSQL poll NullTickets one at a time, and the other takes over when the poller stops", "[tracker][postgres][singleton]") {
  auto pg = orch::testing::shared_postgres_cluster();
  INFO("starting a private PostgreSQL server: " << pg.status().to_string());
  REQUIRE(pg.ok());
  TempDir dir_a;
  TempDir dir_b;
  FakeNullTickets nt;
  add_dev_pipeline(nt, "dev");
  Workers workers;
  // poll_interval_ms 300: the "tracker_poll" lease lasts 600 ms.
  auto tracker_of = [](const std::string& agent) {
    return Value::object({{"agent_id", agent}, {"poll_interval_ms", 300},
                          {"pipelines", Value::array({dispatch_pipeline("dev", "coder")})}});
  };
  const std::string db = (*pg)->uri();
  auto a = std::make_unique<PullServer>(nt, dir_a, tracker_of("orch-a"), workers.dispatcher(), true, db, "tracker_two");
  auto b = std::make_unique<PullServer>(nt, dir_b, tracker_of("orch-b"), workers.dispatcher(), true, db, "tracker_two");
  auto claims_by = [&](const std::string& agent) {
    size_t n = 0;
    for (const auto& c : nt.calls("POST", "/leases/claim")) n += c.body["agent_id"].get_string("") == agent ? 1 : 0;
    return n;
  };
  REQUIRE(wait_until([&] { return nt.count("POST", "/leases/claim") >= 4; }, 30s));
  // One instance polls; the other never asked.
  const bool a_polls = claims_by("orch-a") > 0;
  const std::string poller = a_polls ? "orch-a" : "orch-b";
  const std::string other = a_polls ? "orch-b" : "orch-a";
  CHECK(claims_by(other) == 0);

  // A task runs on the poller: its run, heartbeats and transition as ever.
  add_task(nt, "T1", "dev", "first");
  PullServer& polling = a_polls ? *a : *b;
  REQUIRE(polling.wait_state("T1", "completed", 30s));
  CHECK(nt.task("T1")["stage"].get_string("") == "review");
  CHECK(claims_by(other) == 0);

  // The poller stops (its lease is not handed over): the other polls once
  // the lease has run out, and runs the next task.
  if (a_polls) a.reset(); else b.reset();
  PullServer& survivor = a ? *a : *b;
  REQUIRE(wait_until([&] { return claims_by(other) > 0; }, 30s));
  add_task(nt, "T2", "dev", "second");
  CHECK(survivor.wait_state("T2", "completed", 30s));
  CHECK(nt.task("T2")["stage"].get_string("") == "review");
}
