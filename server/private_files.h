// SPDX-License-Identifier: MIT
//
// Files and directories orch creates are private to its user (SPEC §12):
// directories 0700, files 0600, whatever the umask. Config files hold API and
// worker tokens, exports hold worker tokens, workflows hold prompts.
// Directories that already exist are left as they are (orch did not make
// them: /tmp or a home directory must keep their modes).
#pragma once

#include <string>

#include "orch/status.h"

namespace orch::server {

// Creates `dir` and any missing parent, each new one 0700.
Status make_private_dirs(const std::string& dir);
// Writes `contents` to `path` whole (a temporary file renamed over it), 0600.
Status write_private_file(const std::string& path, const std::string& contents);
// Creates `path` empty with mode 0600 if it does not exist (an existing file
// keeps its mode), so that a stream opened on it next writes a private file.
Status create_private_file(const std::string& path);

}  // namespace orch::server
