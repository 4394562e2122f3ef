// SPDX-License-Identifier: MIT
//
// The web console's files (server/console/), compiled into the program by
// cmake/EmbedFiles.cmake so `orch serve` needs no files beside it.
//
// Thread-safety: immutable static data; any thread may read it.
#pragma once

#include <string_view>
#include <vector>

namespace orch::server {

struct ConsoleFile {
  std::string_view name;   // file name inside server/console, e.g. "app.js"
  std::string_view bytes;  // its contents
};

// Every console file, in the order CMake listed them.
const std::vector<ConsoleFile>& console_files();

}  // namespace orch::server
