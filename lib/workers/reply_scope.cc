// SPDX-License-Identifier: MIT
// ReplyScope (a thread-local queue of sends) and the call id format.
#include <string>

#include "orch/dispatcher.h"

namespace orch {
namespace {
thread_local std::deque<std::function<void()>>* t_sends = nullptr;
}  // namespace

ReplyScope::ReplyScope() {
  if (t_sends == nullptr) {
    t_sends = &sends_;
    outermost_ = true;
  }
}

ReplyScope::~ReplyScope() {
  if (!outermost_) return;
  while (!sends_.empty()) {
    std::function<void()> send = std::move(sends_.front());
    sends_.pop_front();
    try {
      send();
    } catch (...) {
      // Sending a call does not throw; never let one take the thread down.
    }
  }
  t_sends = nullptr;
}

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

}  // namespace orch
