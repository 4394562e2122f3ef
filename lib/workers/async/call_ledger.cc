// SPDX-License-Identifier: MIT
// CallLedger: a durable set of published-but-unanswered call ids.
#include "workers/async/call_ledger.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>

namespace orch::internal {
namespace {

constexpr size_t kCompactSlack = 1000;

// Ids are written as they are: one without blanks or line breaks only.
bool writable_id(const std::string& id) {
  if (id.empty()) return false;
  for (char c : id) {
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') return false;
  }
  return true;
}

bool write_all(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    done += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

Result<std::unique_ptr<CallLedger>> CallLedger::open(std::string path, int64_t now_ms, int64_t ttl_ms) {
  std::unique_ptr<CallLedger> ledger(new CallLedger(std::move(path)));
  if (ledger->path_.empty()) return ledger;
  {
    std::ifstream in(ledger->path_);
    std::string line;
    while (in && std::getline(in, line)) {
      if (line.size() < 2) continue;
      if (line[0] == '+') {
        size_t space = line.find(' ');
        if (space == std::string::npos) continue;
        int64_t at = std::strtoll(line.c_str() + space + 1, nullptr, 10);
        ledger->entries_[line.substr(1, space - 1)] = at;
      } else if (line[0] == '-') {
        ledger->entries_.erase(line.substr(1));
      }
    }
  }
  for (auto it = ledger->entries_.begin(); it != ledger->entries_.end();) {
    it = now_ms - it->second > ttl_ms ? ledger->entries_.erase(it) : std::next(it);
  }
  std::lock_guard<std::mutex> lock(ledger->mu_);
  ORCH_RETURN_IF_ERROR(ledger->rewrite_locked());
  return ledger;
}

CallLedger::~CallLedger() {
  if (fd_ >= 0) ::close(fd_);
}

Status CallLedger::rewrite_locked() {
  const std::string tmp = path_ + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return Status::failed_precondition("cannot write " + tmp + ": " + std::strerror(errno));
  }
  std::string data;
  for (const auto& [id, at] : entries_) data += "+" + id + " " + std::to_string(at) + "\n";
  bool ok = write_all(fd, data);
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path_.c_str()) != 0) {
    ::unlink(tmp.c_str());
    return Status::failed_precondition("cannot write " + path_ + ": " + std::strerror(errno));
  }
  if (fd_ >= 0) ::close(fd_);
  fd_ = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (fd_ < 0) return Status::failed_precondition("cannot open " + path_ + ": " + std::strerror(errno));
  lines_ = entries_.size();
  return Status();
}

void CallLedger::append_locked(const std::string& line) {
  if (fd_ < 0) return;
  if (!write_all(fd_, line)) {
    // Disk trouble: keep going in memory (a restart then re-sends requests).
    ::close(fd_);
    fd_ = -1;
    return;
  }
  if (++lines_ > 4 * entries_.size() + kCompactSlack) (void)rewrite_locked();
}

bool CallLedger::contains(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_.count(id) != 0;
}

void CallLedger::add(const std::string& id, int64_t now_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  entries_[id] = now_ms;
  if (!path_.empty() && writable_id(id)) append_locked("+" + id + " " + std::to_string(now_ms) + "\n");
}

void CallLedger::remove(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (entries_.erase(id) == 0) return;
  if (!path_.empty() && writable_id(id)) append_locked("-" + id + "\n");
}

size_t CallLedger::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_.size();
}

}  // namespace orch::internal
