// SPDX-License-Identifier: MIT
//
// Helpers shared by the subcommands.
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include "cli/cli.h"

namespace orch::cli {

std::optional<std::string> read_file(const std::string& path, std::string* error) {
  if (path == "-") {
    std::ostringstream buffer;
    buffer << std::cin.rdbuf();
    return buffer.str();
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = std::strerror(errno);
    return std::nullopt;
  }
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // A directory opens fine on Linux but fails on the first read.
  if (in.bad()) {
    *error = "read error";
    return std::nullopt;
  }
  return text;
}

}  // namespace orch::cli
