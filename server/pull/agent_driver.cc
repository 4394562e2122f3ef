// SPDX-License-Identifier: MIT
#include "pull/agent_driver.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include "orch/id.h"
#include "pull/subprocess_agent.h"
#include "pull/task_workflows.h"
#include "pull/upstream_view.h"

namespace orch::server {
namespace {

constexpr int64_t kAgentStopGraceMs = 2000;  // SIGTERM → SIGKILL

std::string clip(const std::string& s, size_t n) { return s.size() <= n ? s : s.substr(0, n) + "..."; }

std::string tail(const std::string& s, size_t n) {
  std::string t = s.size() <= n ? s : "..." + s.substr(s.size() - n);
  while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
  return t;
}

bool port_free(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return ok;
}

WorkerReply refused(const std::string& message) {
  WorkerReply reply;
  reply.status = Status::unavailable(message);
  reply.retryable = false;
  return reply;
}

class AgentDispatcher : public Dispatcher {
 public:
  explicit AgentDispatcher(std::weak_ptr<AgentDriver> driver) : driver_(std::move(driver)) {}
  void dispatch(const WorkerRequest& request, Callback done) override {
    if (auto driver = driver_.lock()) return driver->on_dispatch(request, std::move(done));
    done(refused("the pull-mode tracker has stopped"));
  }
  void cancel(const std::string& call_id) override {
    if (auto driver = driver_.lock()) driver->on_cancel(call_id);
  }

 private:
  std::weak_ptr<AgentDriver> driver_;
};

}  // namespace

std::shared_ptr<Dispatcher> make_agent_dispatcher(std::weak_ptr<AgentDriver> driver) {
  return std::make_shared<AgentDispatcher>(std::move(driver));
}

AgentDriver::AgentDriver(Deps deps) : d_(std::move(deps)) {
  auto continuation = Template::compile(d_.cfg.continuation_prompt);  // validated by parse_tracker_config
  if (continuation.ok()) default_continuation_ = *continuation;
}

void AgentDriver::on_dispatch(const WorkerRequest& request, Dispatcher::Callback done) {
  std::unique_lock<std::mutex> lock(d_.board.mu);
  auto it = d_.board.by_run.find(request.run_id);
  if (it == d_.board.by_run.end() || it->second->has_request || it->second->serving_closed) {
    lock.unlock();
    done(refused("no pull-mode task holds run " + request.run_id + " (its agent is gone, e.g. after a restart)"));
    return;
  }
  TrackedTask& t = *it->second;
  t.has_request = true;
  t.request = request;
  t.done = std::move(done);
  t.step_id = request.step_id;
  t.cv.notify_all();
}

void AgentDriver::on_cancel(const std::string& call_id) {
  const std::string step_id(step_of_call_id(call_id));
  std::lock_guard<std::mutex> lock(d_.board.mu);
  for (auto& [id, t] : d_.board.tasks) {
    if (t->step_id != step_id || !t->has_request) continue;
    t->engine_cancelled = true;
    if (t->agent) t->agent->kill_now();
    t->cv.notify_all();
  }
}

void AgentDriver::serve(const std::shared_ptr<TrackedTask>& t, Engine& engine) {
  WorkerRequest request;
  Dispatcher::Callback done;
  std::string run_id;
  {
    std::unique_lock<std::mutex> lock(d_.board.mu);
    t->cv.wait(lock, [&] { return t->has_request || t->run_terminal || t->abort != Abort::kNone; });
    run_id = t->run_id;
    if (!t->has_request) {
      t->serving_closed = true;  // a late call is answered by on_dispatch
      if (t->run_terminal) return;
      lock.unlock();
      (void)engine.cancel_run(run_id);
      return;
    }
    request = t->request;
    done = std::move(t->done);
    t->done = nullptr;
  }
  WorkerReply reply = drive(t, request);
  Abort abort;
  {
    std::lock_guard<std::mutex> lock(d_.board.mu);
    abort = t->abort;
    t->serving_closed = true;
  }
  if (abort != Abort::kNone && abort != Abort::kStalled && abort != Abort::kFinishedUpstream) {
    // Cancel first, so the run ends cancelled rather than failed by the reply.
    (void)engine.cancel_run(run_id);
  }
  done(std::move(reply));
}

WorkerReply AgentDriver::drive(const std::shared_ptr<TrackedTask>& t, const WorkerRequest& request) {
  TaskBoard& board = d_.board;
  const TrackerConfig& cfg = d_.cfg;
  const PipelineDef& def = *t->def;
  const int64_t max_turns = def.max_turns.value_or(cfg.max_turns);
  const int64_t turn_timeout = def.turn_timeout_ms.value_or(cfg.turn_timeout_ms);
  const std::string step_id = request.step_id;

  SubprocessAgent::Options options;
  options.command = def.command.empty() ? cfg.command : def.command;
  options.args = def.args ? *def.args : cfg.args;
  options.port = allocate_port();
  if (options.port == 0) {
    return refused("no free port in " + std::to_string(cfg.base_port) + ".." + std::to_string(cfg.base_port + 999));
  }
  options.token = new_uuid();
  options.inherit_env = cfg.inherit_env;
  {
    std::lock_guard<std::mutex> lock(board.mu);
    options.env = task_env_locked(*t, cfg.url);
    options.workdir = t->workspace;
    // What an agent needs to report on (or move) its own task.
    options.env.emplace_back("ORCH_LEASE_TOKEN", t->lease_token);
  }
  options.env.emplace_back("ORCH_AGENT_PORT", std::to_string(options.port));
  options.env.emplace_back("ORCH_AGENT_TOKEN", options.token);
  const int port = options.port;
  auto spawned = SubprocessAgent::start(std::move(options));
  if (!spawned.ok()) {
    release_port(port);
    return refused(spawned.status().message());
  }
  std::shared_ptr<SubprocessAgent> agent(std::move(spawned).value());
  {
    std::lock_guard<std::mutex> lock(board.mu);
    t->agent = agent;
    if (t->abort != Abort::kNone) agent->kill_now();
  }
  // Whatever happens below, the agent and its port go at the end.
  struct Cleanup {
    AgentDriver* self;
    const std::shared_ptr<TrackedTask>& task;
    std::shared_ptr<SubprocessAgent> agent;
    int port;
    ~Cleanup() {
      agent->stop(kAgentStopGraceMs);
      {
        std::lock_guard<std::mutex> lock(self->d_.board.mu);
        task->agent.reset();
      }
      self->release_port(port);
    }
  } cleanup{this, t, agent, port};
  auto stop_reason = [&]() -> std::string {
    std::lock_guard<std::mutex> lock(board.mu);
    if (t->abort == Abort::kStalled) return "subprocess stalled: " + t->abort_message;
    if (t->abort != Abort::kNone) return t->abort_message;
    if (t->engine_cancelled) return "the orch run abandoned the agent call";
    return "";
  };
  auto with_output = [&agent](std::string message) {
    std::string out = tail(agent->output_tail(), 300);
    if (!out.empty()) message += "; agent output: " + out;
    return message;
  };

  append_run_event(request.run_id, "agent.spawned",
                   Value::object({{"step_id", step_id}, {"pid", static_cast<long long>(agent->pid())}, {"port", port}}));
  (void)d_.client.post_event(t->tracker_run_id, t->lease_token, "agent_started", Value::object({{"port", port}}));

  Status health = Status::unavailable("not checked");
  for (int64_t i = 0; i < cfg.health_check_retries; ++i) {
    if (!stop_reason().empty()) break;
    health = agent->check_health(std::min<int64_t>(cfg.http_timeout_ms, 2000));
    if (health.ok() || agent->exited()) break;
    if (!board.wait_interruptible(*t, cfg.health_check_interval_ms)) break;
  }
  if (std::string why = stop_reason(); !why.empty()) return refused(why);
  if (!health.ok()) {
    std::string message = "agent on port " + std::to_string(port) + " not healthy after " +
                          std::to_string(cfg.health_check_retries) + " checks: " + health.message();
    if (agent->exited()) message += " (" + agent->describe_exit() + ")";
    return refused(with_output(message));
  }
  board.set_state(*t, TaskState::kRunning);

  std::string output;
  int64_t input_tokens = 0;
  int64_t output_tokens = 0;
  for (int64_t turn = 1; turn <= max_turns; ++turn) {
    std::string prompt;
    if (turn == 1) {
      prompt = request.prompt;
    } else {
      Value state = Value::object({{"turn", static_cast<long long>(turn)}, {"last_output", output}});
      const Template& tpl = def.continuation ? *def.continuation : default_continuation_;
      auto rendered = render_for_task(board, *t, tpl, &state);
      if (!rendered.ok()) return refused("continuation_prompt: " + rendered.status().message());
      prompt = std::move(rendered).value();
    }
    {
      std::lock_guard<std::mutex> lock(board.mu);
      t->current_turn = turn;
    }
    auto answer = agent->send_turn(prompt, turn_timeout);
    {
      std::lock_guard<std::mutex> lock(board.mu);
      t->last_activity_wall = wall_ms();
      if (t->abort == Abort::kFinishedUpstream) break;  // the agent moved the task: done
    }
    if (std::string why = stop_reason(); !why.empty()) return refused(with_output(why));
    if (!answer.ok()) {
      if (agent->wait_exit(500)) {
        return refused(with_output("agent exited (" + agent->describe_exit() + ") during turn " + std::to_string(turn)));
      }
      return refused(with_output("turn " + std::to_string(turn) + " failed: " + answer.status().message()));
    }
    output = answer->output;
    const Value& usage = answer->usage;
    input_tokens += usage["input_tokens"].get_int(0);
    output_tokens += usage["output_tokens"].get_int(0);
    append_run_event(request.run_id, "agent.turn",
                     Value::object({{"step_id", step_id},
                                    {"node", request.node_name},
                                    {"turn", static_cast<long long>(turn)},
                                    {"done", answer->done},
                                    {"output", clip(output, 2000)}}));
    (void)d_.client.post_event(t->tracker_run_id, t->lease_token, "turn_completed",
                               Value::object({{"turn", static_cast<long long>(turn)}}));
    if (answer->done || turn == max_turns) break;
    // Did the agent move the task itself (NullBoiler's success signal)?
    TrackerReply fresh = d_.client.get_task(t->task_id);
    if (fresh.ok() && fresh.json.is_object()) {
      std::lock_guard<std::mutex> lock(board.mu);
      apply_upstream_view_locked(board, cfg.terminal_stages, *t, fresh.json);
      if (t->abort == Abort::kFinishedUpstream) break;
    }
    if (std::string why = stop_reason(); !why.empty()) return refused(why);
  }
  WorkerReply reply;
  reply.output = output;
  reply.envelope = Value::object();
  if (input_tokens || output_tokens) {
    reply.envelope.set("usage", Value::object({{"input_tokens", static_cast<long long>(input_tokens)},
                                               {"output_tokens", static_cast<long long>(output_tokens)}}));
  }
  return reply;
}

void AgentDriver::append_run_event(const std::string& run_id, const std::string& kind, Value data) {
  EventRecord e;
  e.run_id = run_id;
  e.kind = kind;
  e.data = std::move(data);
  e.created_at_ms = wall_ms();
  if (d_.store.append_event(std::move(e)).ok()) d_.publish(run_id);
}

int AgentDriver::allocate_port() {
  std::lock_guard<std::mutex> lock(ports_mu_);
  for (int64_t p = d_.cfg.base_port; p < d_.cfg.base_port + 1000; ++p) {
    int port = static_cast<int>(p);
    // Ask the OS too: another program may hold a port of the range.
    if (!ports_.count(port) && port_free(port)) {
      ports_.insert(port);
      return port;
    }
  }
  return 0;
}

void AgentDriver::release_port(int port) {
  std::lock_guard<std::mutex> lock(ports_mu_);
  ports_.erase(port);
}

}  // namespace orch::server
