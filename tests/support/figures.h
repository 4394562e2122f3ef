// SPDX-License-Identifier: MIT
//
// Figures a test wants CI to print (kills survived, faults injected, runs
// lost...). CTest hides a passing test's output, so each figure line is
// appended to the file named by ORCH_FIGURES_FILE (set for every test by
// tests/CMakeLists.txt); scripts/test.sh prints that file after the suite.
// Without the variable the line goes to standard output only.
//
// Thread-safety: safe from any thread and from parallel test processes (one
// O_APPEND write per line).
#pragma once

#include <string>

namespace orch::testing {

// Writes "<source>: <line>\n" to standard output and to ORCH_FIGURES_FILE.
void report_figures(const std::string& source, const std::string& line);

}  // namespace orch::testing
