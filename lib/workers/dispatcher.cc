// SPDX-License-Identifier: MIT
// The small rules of the Dispatcher contract (orch/dispatcher.h): ReplyScope
// (a thread-local queue of sends), the call id format, tag matching.
#include <algorithm>
#include <string>

#include "orch/dispatcher.h"

namespace orch {
namespace {
thread_local std::vector<std::function<void()>>* t_sends = nullptr;
thread_local bool t_event_loop = false;
}  // namespace

ReplyScope::ReplyScope(bool on_event_loop) {
  if (t_sends == nullptr) {
    t_sends = &sends_;
    outermost_ = true;
    t_event_loop = on_event_loop;
  }
}

ReplyScope::~ReplyScope() {
  if (!outermost_) return;
  // By index: a send may queue more (the vector may grow meanwhile).
  for (size_t i = 0; i < sends_.size(); ++i) {
    std::function<void()> send = std::move(sends_[i]);
    try {
      send();
    } catch (...) {
      // Sending a call does not throw; never let one take the thread down.
    }
  }
  t_sends = nullptr;
  t_event_loop = false;
}

bool ReplyScope::on_event_loop() { return t_event_loop; }

bool ReplyScope::defer(std::function<void()>& send) {
  if (t_sends == nullptr) return false;
  t_sends->push_back(std::move(send));
  return true;
}

std::string make_call_id(const std::string& step_id, int attempt, int turn) {
  return step_id + "#" + std::to_string(attempt) + "." + std::to_string(turn);
}

std::string_view step_of_call_id(std::string_view call_id) {
  return call_id.substr(0, call_id.find('#'));
}

bool tags_match(const std::vector<std::string>& worker_tags, const std::vector<std::string>& wanted) {
  if (wanted.empty()) return true;
  for (const std::string& t : wanted) {
    if (std::find(worker_tags.begin(), worker_tags.end(), t) != worker_tags.end()) return true;
  }
  return false;
}

}  // namespace orch
