// SPDX-License-Identifier: MIT
#include "private_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

namespace orch::server {
namespace {

Status io_error(const std::string& what, const std::string& path) {
  return Status::unavailable(what + " " + path + ": " + std::strerror(errno));
}

}  // namespace

Status make_private_dirs(const std::string& dir) {
  if (dir.empty()) return Status();
  // The missing directories, innermost first, then made outermost first.
  std::vector<std::filesystem::path> missing;
  std::error_code ec;
  for (std::filesystem::path p = std::filesystem::path(dir).lexically_normal(); !p.empty();
       p = p.parent_path()) {
    if (std::filesystem::exists(p, ec)) break;
    missing.push_back(p);
    if (p == p.parent_path()) break;
  }
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    if (mkdir(it->c_str(), 0700) != 0) {
      if (errno == EEXIST) continue;  // made meanwhile by someone else: not ours to change
      return io_error("cannot create directory", it->string());
    }
    // mkdir's mode passes through the umask; a umask such as 0277 would
    // leave the directory unusable, one such as 0 is harmless but explicit
    // is clearer.
    if (chmod(it->c_str(), 0700) != 0) return io_error("cannot set the mode of", it->string());
  }
  return Status();
}

Status write_private_file(const std::string& path, const std::string& contents) {
  std::string tmp = path + ".tmp.XXXXXX";
  int fd = mkstemp(tmp.data());  // 0600 at most; fchmod makes it exactly that
  if (fd < 0) return io_error("cannot create", tmp);
  if (fchmod(fd, 0600) != 0) {
    Status s = io_error("cannot set the mode of", tmp);
    close(fd);
    unlink(tmp.c_str());
    return s;
  }
  size_t written = 0;
  while (written < contents.size()) {
    ssize_t n = write(fd, contents.data() + written, contents.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      Status s = io_error("cannot write", tmp);
      close(fd);
      unlink(tmp.c_str());
      return s;
    }
    written += static_cast<size_t>(n);
  }
  const bool synced = fsync(fd) == 0;
  if (close(fd) != 0 || !synced) {
    Status s = io_error("cannot write", tmp);
    unlink(tmp.c_str());
    return s;
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    Status s = io_error("cannot replace", path);
    unlink(tmp.c_str());
    return s;
  }
  return Status();
}

Status create_private_file(const std::string& path) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return errno == EEXIST ? Status() : io_error("cannot create", path);
  // open's mode passes through the umask too.
  Status s = fchmod(fd, 0600) == 0 ? Status() : io_error("cannot set the mode of", path);
  close(fd);
  return s;
}

}  // namespace orch::server
