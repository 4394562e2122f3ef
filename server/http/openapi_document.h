// SPDX-License-Identifier: MIT
//
// The OpenAPI 3.1 document of the HTTP API: docs/openapi.json as it was when
// the server was built (compiled in by cmake/EmbedText.cmake). Served at
// GET /openapi.json; tests compare it with the route tables.
#pragma once

#include <string_view>

namespace orch::server {

// The document's bytes (static storage; valid for the program's life).
std::string_view openapi_document();

}  // namespace orch::server
