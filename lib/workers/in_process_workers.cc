// SPDX-License-Identifier: MIT
#include <algorithm>

#include "orch/dispatcher.h"

namespace orch {

void InProcessWorkers::add(std::string id, std::vector<std::string> tags, Handler handler) {
  std::lock_guard<std::mutex> lock(mu_);
  entries_.push_back(std::make_shared<Entry>(Entry{std::move(id), std::move(tags), std::move(handler)}));
}

void InProcessWorkers::dispatch(const WorkerRequest& request, Callback done) {
  std::shared_ptr<Entry> chosen;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& e : entries_) {
      bool match = request.worker_tags.empty() || e->tags.empty();
      for (const std::string& t : request.worker_tags) {
        if (std::find(e->tags.begin(), e->tags.end(), t) != e->tags.end()) match = true;
      }
      if (match) {
        chosen = e;
        break;
      }
    }
  }
  if (!chosen) {
    WorkerReply reply;
    reply.status = Status::unavailable("no worker available for node " + request.node_name);
    done(std::move(reply));
    return;
  }
  WorkerReply reply;
  try {
    reply = chosen->handler(request);
  } catch (const std::exception& e) {
    reply.status = Status::internal(std::string("worker threw: ") + e.what());
  } catch (...) {
    reply.status = Status::internal("worker threw a non-standard exception");
  }
  if (reply.worker_id.empty()) reply.worker_id = chosen->id;
  done(std::move(reply));
}

}  // namespace orch
