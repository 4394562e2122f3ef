// SPDX-License-Identifier: MIT
// orch::parse_url and orch::HostPolicy: the one URL parser and the outbound
// allow/deny policy, fed the inputs that used to crash or slip through.
#include <string>

#include "catch.h"
#include "orch/host_policy.h"
#include "orch/url.h"

using orch::HostPolicy;

TEST_CASE("parse_url splits a URL into scheme, host, port and target", "[url]") {
  auto u = orch::parse_url("HTTP://Worker.Local:8080/a/b?x=1#frag");
  REQUIRE(u.ok());
  CHECK(u->scheme == "http");
  CHECK(u->host == "worker.local");
  CHECK(u->port == 8080);
  CHECK(u->target == "/a/b?x=1");
  CHECK(u->has_fragment);
  CHECK(u->origin() == "http://worker.local:8080");

  auto v6 = orch::parse_url("https://[::1]/hook");
  REQUIRE(v6.ok());
  CHECK(v6->host == "::1");
  CHECK(v6->port == 443);
  CHECK(v6->origin() == "https://[::1]:443");

  auto q = orch::parse_url("http://h?only=query");
  REQUIRE(q.ok());
  CHECK(q->target == "/?only=query");
  CHECK(orch::parse_url("mqtt://broker/topic")->port == 1883);
  CHECK(orch::parse_url("redis://cache/stream")->port == 6379);
}

TEST_CASE("parse_url refuses what would crash a client or hide a destination", "[url]") {
  const std::string long_url = "http://h/" + std::string(orch::kMaxUrlBytes, 'a');
  for (const std::string& bad : {
           std::string("ftp://x/"),                     // scheme
           std::string("http://h:99999999999/"),        // port overflow (httplib's stoi threw)
           std::string("http://h:0/"), std::string("http://h:65536/"), std::string("http://h:/"),
           std::string("http://h:8o/"), std::string("http://:80/"), std::string("http:///path"),
           std::string("http://user:pw@h/"),            // user info
           std::string("http://h /"), std::string("http://h/\r\nX: y"), std::string("http://h/\t"),
           std::string("http://h\x01/"), std::string("http://[::1/"), std::string("http://[zz::1]/"),
           std::string("http://::1/"),                  // IPv6 without brackets
           std::string("http://2130706433/"), std::string("http://127.1/"), std::string("http://0x7f.0.0.1/"),
           std::string("http://h%2f/"), std::string("no-scheme"), std::string(""), long_url}) {
    INFO(bad.substr(0, 80));
    auto r = orch::parse_url(bad);
    CHECK_FALSE(r.ok());
    if (!r.ok()) CHECK(r.status().code() == orch::StatusCode::kInvalidArgument);
  }
  CHECK_FALSE(orch::parse_http_url("mqtt://broker/topic").ok());
  CHECK(orch::parse_http_url("https://h/").ok());
}

TEST_CASE("host policy: link-local denied by default, loopback allowed", "[url][policy]") {
  HostPolicy policy;
  CHECK_FALSE(orch::check_host(policy, "169.254.169.254").ok());
  CHECK_FALSE(orch::check_host(policy, "fe80::1").ok());
  CHECK_FALSE(orch::check_host(policy, "::ffff:169.254.169.254").ok());  // IPv4-mapped
  CHECK(orch::check_host(policy, "127.0.0.1").ok());
  CHECK(orch::check_host(policy, "::1").ok());
  CHECK(orch::check_host(policy, "localhost").ok());
  CHECK(orch::check_host(policy, "example.com").ok());
  auto refused = orch::check_host(policy, "169.254.169.254");
  CHECK(refused.message().find("link-local") != std::string::npos);

  policy.deny_link_local = false;
  CHECK(orch::check_host(policy, "169.254.169.254").ok());
}

TEST_CASE("host policy: deny and allow entries (names, wildcards, IPs, CIDR)", "[url][policy]") {
  HostPolicy policy;
  policy.deny_hosts = {"10.0.0.0/8", "evil.example", "*.internal", "fd00::/8"};
  CHECK_FALSE(orch::check_host(policy, "10.1.2.3").ok());
  CHECK(orch::check_host(policy, "11.1.2.3").ok());
  CHECK_FALSE(orch::check_host(policy, "EVIL.example.").ok());
  CHECK_FALSE(orch::check_host(policy, "db.internal").ok());
  CHECK(orch::check_host(policy, "internal").ok());  // *.suffix needs a label in front
  CHECK_FALSE(orch::check_host(policy, "fd12::5").ok());

  HostPolicy allow;
  allow.allow_hosts = {"127.0.0.1", "*.workers.example", "192.168.1.0/24"};
  CHECK(orch::check_host(allow, "127.0.0.1").ok());
  CHECK(orch::check_host(allow, "a.workers.example").ok());
  CHECK(orch::check_host(allow, "192.168.1.77").ok());
  CHECK_FALSE(orch::check_host(allow, "192.168.2.1").ok());
  CHECK_FALSE(orch::check_host(allow, "example.com").ok());
  CHECK(orch::check_host(allow, "example.com").message().find("not in allow_hosts") != std::string::npos);

  allow.deny_hosts = {"127.0.0.1"};  // deny wins
  CHECK_FALSE(orch::check_host(allow, "127.0.0.1").ok());
}

TEST_CASE("host policy: malformed entries are named", "[url][policy]") {
  for (const char* bad : {"", "10.0.0.0/33", "10.0.0.0/", "10.0.0.0/x", "nothost/8", "a*b", "*.", "exa mple"}) {
    INFO(bad);
    HostPolicy p;
    p.deny_hosts = {bad};
    orch::Status s = orch::validate_host_policy(p);
    CHECK_FALSE(s.ok());
    CHECK(s.message().find("deny_hosts entry") != std::string::npos);
  }
  HostPolicy good;
  good.allow_hosts = {"a.b", "*.c.d", "::1", "fe80::/10", "1.2.3.4/32"};
  CHECK(orch::validate_host_policy(good).ok());
}

TEST_CASE("host policy: a name is resolved before connecting", "[url][policy]") {
  HostPolicy policy;
  policy.deny_hosts = {"127.0.0.0/8", "::1/128"};
  // "localhost" passes the written-name check, but resolves to loopback.
  CHECK(orch::check_host(policy, "localhost").ok());
  CHECK_FALSE(orch::check_resolved_host(policy, "localhost").ok());
  CHECK(orch::check_resolved_host(policy, "localhost").message().find("resolves to") != std::string::npos);
  // A name that does not resolve passes: the connection fails on its own.
  CHECK(orch::check_resolved_host(policy, "no-such-host.invalid").ok());
}
