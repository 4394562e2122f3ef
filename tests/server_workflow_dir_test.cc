// SPDX-License-Identifier: MIT
// Workflow files: loaded at start, reloaded when they change (inotify).
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "catch.h"
#include "support/server_fixture.h"
#include "orch/id.h"
#include "workflow_dir.h"

using namespace std::chrono_literals;

namespace {

void write_file(const std::filesystem::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::trunc);
  out << text;
}

bool eventually(const std::function<bool()>& condition) {
  for (int i = 0; i < 400; ++i) {
    if (condition()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return condition();
}

}  // namespace

TEST_CASE("workflow files are loaded at start and reloaded on change", "[server][workflows]") {
  auto dir = std::filesystem::temp_directory_path() / ("orch-wf-" + orch::new_uuid());
  std::filesystem::create_directories(dir);
  write_file(dir / "first.json", R"({"nodes": {"a": {"type": "transform", "updates": {"v": 1}}},
    "edges": [["__start__","a"],["a","__end__"]]})");
  write_file(dir / "named.json", R"({"id": "custom-id", "name": "Named", "nodes": {}, "edges": []})");
  write_file(dir / "broken.json", "{ not json");
  write_file(dir / "notes.txt", "ignored");

  orch::testing::TestServer server;
  orch::server::WorkflowDirWatcher watcher(server.app(), dir.string());
  REQUIRE(watcher.start().ok());
  auto& store = *server.app().store;
  CHECK(store.get_workflow("first").ok());
  CHECK(store.get_workflow("custom-id")->name == "Named");
  CHECK_FALSE(store.get_workflow("broken").ok());

  // An edit is picked up without a restart.
  write_file(dir / "first.json", R"({"version": 2, "nodes": {"a": {"type": "transform", "updates": {"v": 2}}},
    "edges": [["__start__","a"],["a","__end__"]]})");
  CHECK(eventually([&] { return store.get_workflow("first")->version == 2; }));
  // So is a new file.
  write_file(dir / "second.json", R"({"nodes": {}, "edges": []})");
  CHECK(eventually([&] { return store.get_workflow("second").ok(); }));
  watcher.stop();
  std::filesystem::remove_all(dir);

  orch::server::WorkflowDirWatcher missing(server.app(), (dir / "nope").string());
  CHECK(missing.start().code() == orch::StatusCode::kFailedPrecondition);
}
