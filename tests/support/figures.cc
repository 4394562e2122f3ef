// SPDX-License-Identifier: MIT
#include "support/figures.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace orch::testing {

void report_figures(const std::string& source, const std::string& line) {
  const std::string text = source + ": " + line + "\n";
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
  const char* path = std::getenv("ORCH_FIGURES_FILE");
  if (path == nullptr || *path == '\0') return;
  int fd = ::open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return;
  // One write per line, so lines from parallel tests never interleave.
  ssize_t written = ::write(fd, text.data(), text.size());
  (void)written;
  ::close(fd);
}

}  // namespace orch::testing
