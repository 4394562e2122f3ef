// SPDX-License-Identifier: MIT
//
// ServePair: two `orch serve` processes, A and B, on one database (the
// several-instance tests: fencing, takeover of async calls, SSE across a
// kill), each with its own config file and log in a fresh temp directory,
// and an HTTP client for each (30 s read timeout). Plus the workflow those
// tests run: "two", task nodes a → b whose prompts carry the run's input tag.
//
// Thread-safety: as ServeProcess (one thread drives it).
#pragma once

#include <httplib.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "support/serve_process.h"

namespace orch::testing {

class ServePair {
 public:
  // `config_json(name, dir)`: the config file's text for instance "a" or
  // "b" (`dir`: the temp directory, e.g. for its state dir).
  // `label` names the temp directory. Nothing starts yet.
  ServePair(const std::string& binary, const std::string& db, const std::string& label,
            const std::function<std::string(const std::string& name, const std::filesystem::path& dir)>& config_json);

  // Starts A, then B; false when either does not come up.
  bool start();

  const std::filesystem::path& dir() const { return dir_; }
  ServeProcess& a() { return *a_; }
  ServeProcess& b() { return *b_; }
  httplib::Client& ca() { return *ca_; }
  httplib::Client& cb() { return *cb_; }

 private:
  std::filesystem::path dir_;
  std::unique_ptr<ServeProcess> a_, b_;
  std::unique_ptr<httplib::Client> ca_, cb_;
};

// Stores workflow "two" through `c` (REQUIREs 201).
void create_two_node_workflow(httplib::Client& c);
// Starts `count` runs of "two" through `c`, input tags `<prefix>0`, `<prefix>1`, ...
// (REQUIREs 201 each); their ids.
std::vector<std::string> start_tagged_runs(httplib::Client& c, int count, const std::string& prefix);

}  // namespace orch::testing
