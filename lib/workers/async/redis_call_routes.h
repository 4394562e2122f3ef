// SPDX-License-Identifier: MIT
//
// Where the reply to a Redis call goes when several orch instances share runs
// (AsyncWorkerOptions::shared_runs). Each published call has a route on the
// broker, a string key `orch:call:<correlation id>` holding
// "<owner> <origin> <deadline wall ms>" that expires a while after the
// deadline:
//   owner:  the instance that waits for the reply now (it owns the run);
//   origin: the instance whose reply stream the request named (reply_to), so
//           the stream where the worker's reply arrives.
// An instance that takes a run over finds the route of the request the old
// owner published, makes itself the owner and watches the origin's reply
// stream for that one reply (CallWatches) instead of publishing again. An
// instance that reads a reply whose route names another owner passes it on to
// that owner's reply stream.
//
// Thread-safety: the functions are pure; CallWatches may be used from any
// thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace orch::internal {

struct CallRoute {
  std::string owner;
  std::string origin;
  int64_t deadline_ms = 0;  // wall clock
};

std::string call_route_key(const std::string& call_id);
std::string format_call_route(const CallRoute& route);
// Nullopt for anything but three fields with valid instance names and a
// number (the broker's content is not trusted).
std::optional<CallRoute> parse_call_route(std::string_view text);

// The calls this instance adopted from other instances: call id -> the
// origin whose reply stream to read, until the call's deadline. At most
// `max_watches` (the oldest go first).
class CallWatches {
 public:
  explicit CallWatches(size_t max_watches = 10000) : max_(max_watches) {}

  void add(const std::string& call_id, const std::string& origin, int64_t deadline_ms);
  void remove(const std::string& call_id);
  bool contains(const std::string& origin, const std::string& call_id) const;
  bool empty() const;
  // The origins with live watches; watches past their deadline are dropped.
  std::vector<std::string> origins(int64_t now_ms);

 private:
  struct Watch {
    std::string origin;
    int64_t deadline_ms = 0;
    uint64_t serial = 0;
  };
  const size_t max_;
  mutable std::mutex mu_;
  uint64_t next_serial_ = 0;
  std::map<std::string, Watch> watches_;
};

}  // namespace orch::internal
