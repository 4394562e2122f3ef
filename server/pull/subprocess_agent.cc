// SPDX-License-Identifier: MIT
#include "pull/subprocess_agent.h"

#include "orch/thread_guard.h"

#include <fcntl.h>
#include <httplib.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>

namespace orch::server {
namespace {

std::chrono::microseconds micros(int64_t ms) { return std::chrono::milliseconds(ms); }

std::unique_ptr<httplib::Client> client_for(int port, int64_t timeout_ms, const std::string& token) {
  auto cli = std::make_unique<httplib::Client>("127.0.0.1", port);
  cli->set_tcp_nodelay(true);
  cli->set_connection_timeout(micros(std::min<int64_t>(timeout_ms, 5000)));
  cli->set_read_timeout(micros(timeout_ms));
  cli->set_write_timeout(micros(timeout_ms));
  if (!token.empty()) cli->set_bearer_token_auth(token);
  return cli;
}

AgentTurn parse_turn(const std::string& body) {
  AgentTurn turn;
  turn.output = body;
  auto parsed = parse_json(body);
  if (!parsed.ok() || !parsed->is_object()) return turn;
  const Value& doc = *parsed;
  for (const char* key : {"response", "output", "text", "message", "reply"}) {
    if (doc[key].is_string()) {
      turn.output = doc[key].as_string();
      break;
    }
  }
  turn.done = doc["done"].get_bool(false);
  if (doc["usage"].is_object()) turn.usage = doc["usage"];
  return turn;
}

}  // namespace

int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

Result<std::unique_ptr<SubprocessAgent>> SubprocessAgent::start(Options options) {
  std::unique_ptr<SubprocessAgent> agent(new SubprocessAgent(std::move(options)));
  const Options& o = agent->options_;
  SpawnOptions spawn;
  spawn.argv.push_back(o.command);
  spawn.argv.insert(spawn.argv.end(), o.args.begin(), o.args.end());
  spawn.argv.insert(spawn.argv.end(), {"--port", std::to_string(o.port), "--workdir", o.workdir});
  spawn.env = o.env;
  spawn.inherit = o.inherit_env;
  spawn.cwd = o.workdir;
  ORCH_ASSIGN_OR_RETURN(agent->child_, ChildProcess::spawn(spawn));
  agent->pid_ = agent->child_->pid();
  if (pipe2(agent->wake_pipe_, O_CLOEXEC) != 0) return Status::internal("pipe failed");
  agent->touch();
  agent->drain_thread_ = std::thread([a = agent.get()] { a->drain_loop_guarded(); });
  return agent;
}

SubprocessAgent::~SubprocessAgent() {
  if (drain_thread_.joinable()) {
    kill_now();
    char b = 1;
    (void)!write(wake_pipe_[1], &b, 1);
    drain_thread_.join();
  }
  for (int fd : wake_pipe_) {
    if (fd >= 0) close(fd);
  }
  // child_'s destructor reaps (and kills, had it survived).
}

void SubprocessAgent::drain_loop_guarded() {
  if (run_guarded("agent output drain", [this] { drain_loop(); })) return;
  // Whoever waits for the exit must not wait forever.
  std::lock_guard<std::mutex> lock(mu_);
  exit_text_ = "output drain failed (see the orch log)";
  exited_ = true;
  exited_cv_.notify_all();
}

void SubprocessAgent::drain_loop() {
  auto sink = [this](std::string_view text) {
    touch();
    std::lock_guard<std::mutex> lock(mu_);
    tail_.append(text);
  };
  // Runs until the agent exits or the destructor wakes it; reading keeps the
  // pipe from filling up however much the agent writes.
  bool exited = child_->wait_until(std::chrono::steady_clock::time_point::max(), sink, wake_pipe_[0]);
  std::lock_guard<std::mutex> lock(mu_);
  if (exited) {
    exit_text_ = child_->describe_exit();
    exited_ = true;
  }
  exited_cv_.notify_all();
}

void SubprocessAgent::touch() { last_activity_ms_ = steady_ms(); }

std::string SubprocessAgent::output_tail() const {
  std::lock_guard<std::mutex> lock(mu_);
  return tail_.text();
}

std::string SubprocessAgent::describe_exit() const {
  std::lock_guard<std::mutex> lock(mu_);
  return exited_ ? exit_text_ : "still running";
}

bool SubprocessAgent::wait_exit(int64_t ms) {
  std::unique_lock<std::mutex> lock(mu_);
  return exited_cv_.wait_for(lock, std::chrono::milliseconds(ms), [this] { return exited_.load(); });
}

void SubprocessAgent::kill_now() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!exited_ && pid_ > 0) (void)kill(-pid_, SIGKILL);
}

void SubprocessAgent::stop(int64_t grace_ms) {
  std::unique_lock<std::mutex> lock(mu_);
  if (exited_) return;
  (void)kill(-pid_, SIGTERM);
  if (!exited_cv_.wait_for(lock, std::chrono::milliseconds(grace_ms), [this] { return exited_.load(); })) {
    (void)kill(-pid_, SIGKILL);
    exited_cv_.wait_for(lock, std::chrono::seconds(10), [this] { return exited_.load(); });
  }
}

Status SubprocessAgent::check_health(int64_t timeout_ms) {
  if (exited_) return Status::unavailable("agent exited (" + describe_exit() + ")");
  auto cli = client_for(options_.port, timeout_ms, options_.token);
  auto r = cli->Get("/health");
  if (!r) return Status::unavailable("health check: " + httplib::to_string(r.error()));
  if (r->status < 200 || r->status >= 300) {
    return Status::unavailable("health check answered " + std::to_string(r->status));
  }
  touch();
  return Status();
}

Result<AgentTurn> SubprocessAgent::send_turn(const std::string& prompt, int64_t timeout_ms) {
  if (exited_) return Status::unavailable("agent exited (" + describe_exit() + ")");
  auto cli = client_for(options_.port, timeout_ms, options_.token);
  Value body = Value::object({{"message", prompt}});
  const int64_t started = steady_ms();
  auto r = cli->Post("/webhook", body.to_json(), "application/json");
  if (!r) {
    // A read error is a timeout only when the time is up; before that the
    // agent closed the connection (crashed, or was killed).
    if (r.error() == httplib::Error::Read && steady_ms() - started >= timeout_ms) {
      return Status::deadline_exceeded("no answer within " + std::to_string(timeout_ms) + " ms");
    }
    return Status::unavailable("no answer: " + httplib::to_string(r.error()));
  }
  touch();
  if (r->status < 200 || r->status >= 300) {
    std::string text = r->body.substr(0, 300);
    return Status::unavailable("agent answered " + std::to_string(r->status) + (text.empty() ? "" : ": " + text));
  }
  return parse_turn(r->body);
}

}  // namespace orch::server
