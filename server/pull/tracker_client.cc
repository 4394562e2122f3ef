// SPDX-License-Identifier: MIT
#include "pull/tracker_client.h"

#include <httplib.h>

#include "orch/url.h"

#include <cctype>
#include <chrono>

namespace orch::server {
namespace {

// Splits "http://host:port/prefix" into the origin httplib wants and the
// prefix. The config reader checked the URL (tracker_config.cc); one that does
// not parse leaves the origin empty, and every call fails cleanly.
void split_url(const std::string& url, std::string* origin, std::string* prefix) {
  Result<Url> parsed = parse_http_url(url);
  origin->clear();
  prefix->clear();
  if (!parsed.ok()) return;
  *origin = parsed->origin();
  *prefix = parsed->target == "/" ? std::string() : parsed->target;
  while (!prefix->empty() && prefix->back() == '/') prefix->pop_back();
}

std::chrono::microseconds micros(int64_t ms) { return std::chrono::milliseconds(ms); }

}  // namespace

std::string encode_path_segment(const std::string& segment) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : segment) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string TrackerReply::describe() const {
  if (status == 0) return "no answer from NullTickets (" + error + ")";
  std::string s = "NullTickets answered " + std::to_string(status);
  if (!error.empty()) s += ": " + error;
  return s;
}

TrackerClient::TrackerClient(std::string base_url, std::string api_token, int64_t timeout_ms)
    : base_url_(std::move(base_url)), api_token_(std::move(api_token)), timeout_ms_(timeout_ms) {
  split_url(base_url_, &origin_, &prefix_);
}

TrackerReply TrackerClient::call(const char* method, const std::string& path, const Value* body,
                                 const std::string& bearer) {
  // One connection per call: calls come from several threads, httplib's
  // Client is not shareable across them, and NullTickets is local or near.
  if (origin_.empty()) {
    TrackerReply reply;
    reply.error = "invalid tracker url";
    return reply;
  }
  httplib::Client cli(origin_);
  cli.set_tcp_nodelay(true);
  cli.set_connection_timeout(micros(timeout_ms_));
  cli.set_read_timeout(micros(timeout_ms_));
  cli.set_write_timeout(micros(timeout_ms_));
  httplib::Headers headers;
  if (!bearer.empty()) headers.emplace("Authorization", "Bearer " + bearer);
  const std::string full = prefix_ + path;
  const std::string payload = body ? body->to_json() : std::string();
  httplib::Result r = std::string(method) == "GET"
                          ? cli.Get(full, headers)
                          : cli.Post(full, headers, payload, "application/json");
  TrackerReply reply;
  if (!r) {
    reply.error = httplib::to_string(r.error());
    return reply;
  }
  reply.status = r->status;
  if (!r->body.empty()) {
    auto parsed = parse_json(r->body);
    if (parsed.ok()) reply.json = std::move(parsed).value();
  }
  if (!reply.ok()) {
    const Value& body_json = reply.json;
    const Value& err = body_json["error"];
    reply.error = err.is_object() ? err["message"].get_string(err["code"].get_string("")) : r->body.substr(0, 200);
  }
  return reply;
}

Result<std::optional<Claim>> TrackerClient::claim(const std::string& agent_id, const std::string& role,
                                                  int64_t lease_ttl_ms, const Value& per_state) {
  Value body = Value::object({{"agent_id", agent_id}, {"agent_role", role}, {"lease_ttl_ms", static_cast<long long>(lease_ttl_ms)}});
  if (per_state.is_object() && per_state.size() > 0) {
    body.set("concurrency", Value::object({{"per_state", per_state}}));
  }
  const TrackerReply r = call("POST", "/leases/claim", &body, api_token_);
  if (r.status == 204) return std::optional<Claim>();
  if (!r.ok()) return Status::unavailable("claim for role " + role + ": " + r.describe());
  const Value& task = r.json["task"];
  const Value& run = r.json["run"];
  Claim c;
  c.task = task;
  c.task_id = task["id"].get_string("");
  c.run_id = run["id"].get_string("");
  c.attempt = run["attempt"].get_int(1);
  c.lease_id = r.json["lease_id"].get_string("");
  c.lease_token = r.json["lease_token"].get_string("");
  c.expires_at_ms = r.json["expires_at_ms"].get_int(0);
  if (!task.is_object() || c.task_id.empty() || c.run_id.empty() || c.lease_id.empty() || c.lease_token.empty()) {
    return Status::invalid_argument("claim for role " + role + ": NullTickets sent a claim without task.id, run.id, lease_id or lease_token");
  }
  return std::optional<Claim>(std::move(c));
}

TrackerReply TrackerClient::heartbeat(const std::string& lease_id, const std::string& lease_token) {
  Value body = Value::object();
  return call("POST", "/leases/" + encode_path_segment(lease_id) + "/heartbeat", &body, lease_token);
}

TrackerReply TrackerClient::get_task(const std::string& task_id) {
  return call("GET", "/tasks/" + encode_path_segment(task_id), nullptr, api_token_);
}

TrackerReply TrackerClient::transition(const std::string& run_id, const std::string& lease_token,
                                       const std::string& trigger, const std::string& expected_stage,
                                       std::optional<int64_t> expected_task_version, const Value& usage) {
  Value body = Value::object({{"trigger", trigger}});
  if (!expected_stage.empty()) body.set("expected_stage", expected_stage);
  if (expected_task_version) body.set("expected_task_version", static_cast<long long>(*expected_task_version));
  if (usage.is_object()) body.set("usage", usage);
  return call("POST", "/runs/" + encode_path_segment(run_id) + "/transition", &body, lease_token);
}

TrackerReply TrackerClient::fail(const std::string& run_id, const std::string& lease_token, const std::string& error,
                                 const Value& usage) {
  Value body = Value::object({{"error", error}});
  if (usage.is_object()) body.set("usage", usage);
  return call("POST", "/runs/" + encode_path_segment(run_id) + "/fail", &body, lease_token);
}

TrackerReply TrackerClient::post_event(const std::string& run_id, const std::string& lease_token,
                                       const std::string& kind, const Value& data) {
  Value body = Value::object({{"kind", kind}, {"data", data}});
  return call("POST", "/runs/" + encode_path_segment(run_id) + "/events", &body, lease_token);
}

}  // namespace orch::server
