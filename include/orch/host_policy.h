// SPDX-License-Identifier: MIT
//
// HostPolicy: which hosts orch may connect to (workers, their health probes,
// run callbacks). It stops a request from pointing orch at a place only orch
// can reach, such as the cloud metadata service at 169.254.169.254 (SSRF).
//
// A host is refused when
//   1. deny_link_local is on and it is a link-local address (169.254.0.0/16,
//      fe80::/10, also as IPv4-mapped IPv6), or
//   2. it matches an entry of deny_hosts, or
//   3. allow_hosts is not empty and it matches none of its entries.
// Deny wins over allow. Entries are exact host names ("worker.internal",
// case-insensitive), suffix wildcards ("*.example.com" matches
// "a.example.com", not "example.com"), IP literals ("10.0.0.7", "::1") and
// CIDR blocks ("10.0.0.0/8", "fd00::/8", which match IP literals only).
//
// Two checks: check_host() reads the host as written (where a URL enters:
// cheap, no DNS); check_resolved_host() also resolves a host name and refuses
// it when any of its addresses is refused by rules 1-2 (before a connection is
// opened, so a name pointing at a denied address is caught too).
//
// The default policy denies link-local addresses and allows everything else,
// loopback included (workers often run on the same machine).
//
// Thread-safety: plain values and functions.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "orch/export.h"
#include "orch/status.h"

namespace orch {

struct HostPolicy {
  std::vector<std::string> allow_hosts;  // empty: every host not denied
  std::vector<std::string> deny_hosts;
  bool deny_link_local = true;
};

// InvalidArgument naming the first malformed entry (a bad CIDR prefix, an
// empty entry, a wildcard anywhere but in front).
ORCH_EXPORT Status validate_host_policy(const HostPolicy& policy);

// OK, or InvalidArgument "host 169.254.169.254 is not allowed: link-local
// address" and the like. `host` as in Url::host (IPv6 without brackets).
ORCH_EXPORT Status check_host(const HostPolicy& policy, std::string_view host);

// check_host(), then, for a host name, every address it resolves to. A name
// that does not resolve passes (the connection will fail on its own).
ORCH_EXPORT Status check_resolved_host(const HostPolicy& policy, std::string_view host);

}  // namespace orch
