// SPDX-License-Identifier: MIT
//
// Spans as an OTLP/HTTP JSON export request (ExportTraceServiceRequest in the
// protobuf JSON mapping: hex trace and span ids, 64-bit integers as strings).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "orch/trace.h"

namespace orch::server {

struct OtlpResource {
  std::string service_name;
  std::vector<std::pair<std::string, std::string>> attributes;
};

std::string otlp_export_request(const OtlpResource& resource, const std::vector<Span>& spans);

}  // namespace orch::server
