// SPDX-License-Identifier: MIT
#include "support/serve_pair.h"

#include <fstream>

#include "catch.h"
#include "orch/id.h"
#include "orch/value.h"

namespace orch::testing {

ServePair::ServePair(const std::string& binary, const std::string& db, const std::string& label,
                     const std::function<std::string(const std::string& name, const std::filesystem::path& dir)>& config_json)
    : dir_(std::filesystem::temp_directory_path() / ("orch-" + label + "-" + new_uuid())) {
  std::filesystem::create_directories(dir_);
  auto make = [&](const std::string& name, std::unique_ptr<ServeProcess>* process,
                  std::unique_ptr<httplib::Client>* client) {
    const std::string config = (dir_ / (name + ".json")).string();
    std::ofstream(config) << config_json(name, dir_);
    *process = std::make_unique<ServeProcess>(binary, free_loopback_port_for_restarts(), db, config,
                                              (dir_ / (name + ".log")).string());
    *client = std::make_unique<httplib::Client>("127.0.0.1", (*process)->port());
    (*client)->set_read_timeout(30, 0);
  };
  make("a", &a_, &ca_);
  make("b", &b_, &cb_);
}

bool ServePair::start() { return a_->start() && b_->start(); }

void create_two_node_workflow(httplib::Client& c) {
  auto created = c.Post("/workflows", R"({"id": "two", "state_schema": {"log": {"type": "array", "reducer": "append"}},
    "nodes": {"a": {"prompt_template": "alpha-{{input.tag}}", "output_key": "log"},
              "b": {"prompt_template": "beta-{{input.tag}}", "output_key": "log"}},
    "edges": [["__start__","a"],["a","b"],["b","__end__"]]})", "application/json");
  REQUIRE(created);
  INFO(created->body);
  REQUIRE(created->status == 201);
}

std::vector<std::string> start_tagged_runs(httplib::Client& c, int count, const std::string& prefix) {
  std::vector<std::string> ids;
  for (int i = 0; i < count; ++i) {
    auto started = c.Post("/workflows/two/run", R"({"input": {"tag": ")" + prefix + std::to_string(i) + R"("}})",
                          "application/json");
    REQUIRE(started);
    REQUIRE(started->status == 201);
    ids.push_back(parse_json(started->body)->find("id")->as_string());
  }
  return ids;
}

}  // namespace orch::testing
