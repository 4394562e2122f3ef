// SPDX-License-Identifier: MIT
// Interop with the official A2A JavaScript SDK: orch's a2a protocol (v0.3
// message/send) drives an agent built with @a2a-js/sdk (a v1.0 server with its
// v0.3 compatibility layer), through the engine. Skipped, with a message, when
// node or the SDK (installed by scripts/bootstrap.sh) is missing.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "catch.h"
#include "orch/engine.h"
#include "orch/worker_registry.h"
#include "support/engine_fixture.h"
#include "support/registry.h"

using namespace std::chrono_literals;
using orch::RunStatus;
using orch::testing::json;
using orch::testing::make_engine;
using orch::testing::make_workflow;
using orch::testing::run_to_end;

namespace {

// Says why the test did not run, on the console and in the report.
#define ORCH_SKIP(msg)                                    \
  do {                                                    \
    std::fprintf(stderr, "%s\n", std::string(msg).c_str()); \
    WARN(msg);                                            \
    return;                                               \
  } while (0)

const std::string kTestsDir = std::string(ORCH_TEST_DATA_DIR) + "/..";

bool is_file(const std::string& path) { return access(path.c_str(), R_OK) == 0; }

std::string find_node() {
  if (const char* env = std::getenv("ORCH_NODE")) return is_file(env) ? env : "";
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/bin:/usr/local/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (!dir.empty() && access((dir + "/node").c_str(), X_OK) == 0) return dir + "/node";
  }
  return "";
}

std::string sdk_dir() {
  if (const char* env = std::getenv("ORCH_A2A_SDK_DIR")) return env;
  return kTestsDir + "/../.cache/a2a-sdk";
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The SDK agent as a child process. Closing its stdin stops it.
class SdkAgent {
 public:
  SdkAgent(const std::string& node, const std::string& dir, const std::string& script) {
    int in[2], out[2];
    if (pipe(in) != 0) return;
    if (pipe(out) != 0) {
      close(in[0]);
      close(in[1]);
      return;
    }
    // Everything the child needs is prepared before fork (only exec-safe calls after).
    std::vector<std::string> args = {node, "--input-type=module", "-e", script};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_ = fork();
    if (pid_ == 0) {
      dup2(in[0], STDIN_FILENO);
      dup2(out[1], STDOUT_FILENO);
      close(in[0]);
      close(in[1]);
      close(out[0]);
      close(out[1]);
      // ES modules resolve bare imports from the working directory under --eval.
      if (chdir(dir.c_str()) != 0) _exit(126);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(in[0]);
    close(out[1]);
    stdin_ = in[1];
    stdout_ = out[0];
    if (pid_ < 0) return;
    // Wait for "PORT <n>".
    std::string line;
    const auto give_up = std::chrono::steady_clock::now() + 20s;
    while (std::chrono::steady_clock::now() < give_up) {
      pollfd p{stdout_, POLLIN, 0};
      if (poll(&p, 1, 200) <= 0) continue;
      char c;
      if (read(stdout_, &c, 1) != 1) break;
      if (c != '\n') {
        line.push_back(c);
        continue;
      }
      if (line.rfind("PORT ", 0) == 0) {
        port_ = std::atoi(line.c_str() + 5);
        break;
      }
      line.clear();
    }
  }

  ~SdkAgent() {
    if (stdin_ >= 0) close(stdin_);
    if (pid_ > 0) {
      int status = 0;
      for (int i = 0; i < 300; ++i) {
        if (waitpid(pid_, &status, WNOHANG) == pid_) {
          pid_ = -1;
          break;
        }
        std::this_thread::sleep_for(10ms);
      }
      if (pid_ > 0) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
      }
    }
    if (stdout_ >= 0) close(stdout_);
  }

  int port() const { return port_; }

 private:
  pid_t pid_ = -1;
  int stdin_ = -1;
  int stdout_ = -1;
  int port_ = 0;
};

orch::WorkerInfo a2a_worker(int port) {
  orch::WorkerInfo w;
  w.id = "sdk-agent";
  w.url = "http://127.0.0.1:" + std::to_string(port);
  w.protocol = "a2a";
  w.max_concurrent = 4;
  return w;
}

}  // namespace

TEST_CASE("interop: an agent built with the official A2A JavaScript SDK", "[a2a][interop]") {
  const std::string node = find_node();
  if (node.empty()) ORCH_SKIP("skipped: node is not installed (set ORCH_NODE to a node binary)");
  const std::string dir = sdk_dir();
  if (!is_file(dir + "/node_modules/@a2a-js/sdk/package.json")) {
    ORCH_SKIP("skipped: @a2a-js/sdk is not installed in " + dir + " (run scripts/bootstrap.sh)");
  }
  SdkAgent agent(node, dir, read_file(kTestsDir + "/interop/a2a_sdk_server.mjs"));
  REQUIRE(agent.port() > 0);

  auto registry = orch::test::builtin_registry();
  REQUIRE(registry->add_worker(a2a_worker(agent.port())).ok());
  auto engine = make_engine(registry);

  SECTION("a task completes; the session travels as the context id") {
    auto wf = make_workflow(R"({"nodes": {"t": {"prompt_template": "hello {{input.name}}", "output_key": "answer"}},
      "edges": [["__start__","t"],["t","__end__"]], "state_schema": {"answer": {"type": "string"}}})");
    auto r = run_to_end(*engine, wf, json(R"({"name":"bob"})"));
    REQUIRE(r.status == RunStatus::kCompleted);
    const std::string answer = r.state["answer"].as_string();
    CHECK(answer.rfind("sdk: hello bob [context run_" + r.id + "_step_", 0) == 0);
    CHECK(answer.find("continued no]") != std::string::npos);
  }

  SECTION("an agent asks for input, then the next turn continues the same task") {
    auto wf = make_workflow(R"({"nodes": {"ask": {"type": "agent", "prompt_template": "ask: which plan?",
        "continuation_prompt": "the second one", "max_turns": 3, "output_key": "plan"}},
      "edges": [["__start__","ask"],["ask","__end__"]], "state_schema": {"plan": {"type": "string"}}})");
    auto r = run_to_end(*engine, wf);
    REQUIRE(r.status == RunStatus::kCompleted);
    const std::string plan = r.state["plan"].as_string();
    CHECK(plan.rfind("sdk: the second one [context run_" + r.id + "_step_", 0) == 0);
    CHECK(plan.find("continued yes]") != std::string::npos);
    auto w = *registry->get_worker("sdk-agent");
    CHECK(w.calls == 2);
    CHECK(w.failures == 0);
  }

  SECTION("health checks see the agent as healthy") {
    registry->check_health();
    CHECK(registry->get_worker("sdk-agent")->consecutive_failures == 0);
  }
}
