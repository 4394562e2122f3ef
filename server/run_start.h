// SPDX-License-Identifier: MIT
//
// Starting a run from an HTTP request: shared by POST /runs (inline workflow,
// workflow_id, or legacy steps) and POST /workflows/{id}/run.
#pragma once

#include <string>

#include "app.h"

namespace httplib {
struct Request;
struct Response;
}  // namespace httplib

namespace orch::server {

// Validates `definition`, applies idempotency (Idempotency-Key header or body
// `idempotency_key`), and starts the run with the body's input, config and
// callbacks. Answers 201 {"id","status","idempotent_replay":false}, 200 on an
// idempotent replay, 400/409/503 otherwise.
void start_run_from_request(App& app, const httplib::Request& req, httplib::Response& res, const Value& body,
                            const Value& definition, const std::string& workflow_id);

}  // namespace orch::server
