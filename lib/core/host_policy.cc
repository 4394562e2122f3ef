// SPDX-License-Identifier: MIT
// The outbound host allow/deny policy (see orch/host_policy.h).
#include "orch/host_policy.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cctype>
#include <cstdint>
#include <cstring>
#include <optional>

namespace orch {
namespace {

struct Address {
  bool v6 = false;
  std::array<uint8_t, 16> bytes{};  // IPv4 in the first 4
  int bits() const { return v6 ? 128 : 32; }
};

Address from_v4(const in_addr& a) {
  Address out;
  std::memcpy(out.bytes.data(), &a, 4);
  return out;
}

// An IPv4-mapped IPv6 address (::ffff:a.b.c.d) counts as the IPv4 address.
Address from_v6(const in6_addr& a) {
  static const uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  Address out;
  if (std::memcmp(a.s6_addr, kMapped, 12) == 0) {
    std::memcpy(out.bytes.data(), a.s6_addr + 12, 4);
    return out;
  }
  out.v6 = true;
  std::memcpy(out.bytes.data(), a.s6_addr, 16);
  return out;
}

std::optional<Address> parse_ip(const std::string& text) {
  in_addr v4{};
  if (inet_pton(AF_INET, text.c_str(), &v4) == 1) return from_v4(v4);
  in6_addr v6{};
  if (inet_pton(AF_INET6, text.c_str(), &v6) == 1) return from_v6(v6);
  return std::nullopt;
}

bool in_block(const Address& a, const Address& base, int bits) {
  if (a.v6 != base.v6) return false;
  for (int i = 0; i < bits; ++i) {
    const uint8_t mask = static_cast<uint8_t>(0x80 >> (i % 8));
    if ((a.bytes[i / 8] & mask) != (base.bytes[i / 8] & mask)) return false;
  }
  return true;
}

bool is_link_local(const Address& a) {
  if (!a.v6) return a.bytes[0] == 169 && a.bytes[1] == 254;
  return a.bytes[0] == 0xfe && (a.bytes[1] & 0xc0) == 0x80;
}

std::string normalize(std::string_view host) {
  std::string out(host);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (!out.empty() && out.back() == '.') out.pop_back();
  return out;
}

// One allow/deny entry, parsed.
struct Entry {
  enum class Kind { kName, kSuffix, kBlock } kind = Kind::kName;
  std::string name;  // kName: the host; kSuffix: ".example.com"
  Address base;      // kBlock
  int bits = 0;

  bool matches_name(const std::string& host) const {
    if (kind == Kind::kName) return host == name;
    if (kind == Kind::kSuffix) return host.size() > name.size() && host.compare(host.size() - name.size(), name.size(), name) == 0;
    return false;
  }
  bool matches_address(const Address& a) const { return kind == Kind::kBlock && in_block(a, base, bits); }
};

Result<Entry> parse_entry(const std::string& raw, const char* list) {
  const std::string text = normalize(raw);
  auto bad = [&](const std::string& why) {
    return Status::invalid_argument(std::string(list) + " entry '" + raw + "' " + why);
  };
  Entry e;
  if (text.empty()) return bad("is empty");
  if (size_t slash = text.find('/'); slash != std::string::npos) {
    std::optional<Address> base = parse_ip(text.substr(0, slash));
    if (!base) return bad("is not a CIDR block (address/prefix)");
    const std::string prefix = text.substr(slash + 1);
    if (prefix.empty() || prefix.size() > 3 || prefix.find_first_not_of("0123456789") != std::string::npos) {
      return bad("has a bad prefix length");
    }
    e.bits = std::stoi(prefix);
    if (e.bits > base->bits()) return bad("has a prefix longer than the address");
    e.kind = Entry::Kind::kBlock;
    e.base = *base;
    return e;
  }
  if (std::optional<Address> ip = parse_ip(text)) {
    e.kind = Entry::Kind::kBlock;
    e.base = *ip;
    e.bits = ip->bits();
    return e;
  }
  std::string name = text;
  if (name.rfind("*.", 0) == 0) {
    e.kind = Entry::Kind::kSuffix;
    name = name.substr(1);  // ".example.com"
  }
  for (size_t i = e.kind == Entry::Kind::kSuffix ? 1 : 0; i < name.size(); ++i) {
    const char c = name[i];
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_') {
      return bad("is not a host name, *.suffix, IP address or CIDR block");
    }
  }
  if (name.empty() || name == ".") return bad("names no host");
  e.name = name;
  return e;
}

// Why `address` is refused by the link-local rule or a deny entry; empty when it is not.
std::string address_refusal(const HostPolicy& policy, const Address& address) {
  if (policy.deny_link_local && is_link_local(address)) return "link-local address";
  for (const std::string& raw : policy.deny_hosts) {
    Result<Entry> e = parse_entry(raw, "deny_hosts");
    if (e.ok() && e->matches_address(address)) return "matches deny_hosts entry '" + raw + "'";
  }
  return "";
}

Status refused(std::string_view host, const std::string& why) {
  return Status::invalid_argument("host " + std::string(host) + " is not allowed by the network policy: " + why);
}

}  // namespace

Status validate_host_policy(const HostPolicy& policy) {
  for (const std::string& raw : policy.allow_hosts) ORCH_RETURN_IF_ERROR(parse_entry(raw, "allow_hosts").status());
  for (const std::string& raw : policy.deny_hosts) ORCH_RETURN_IF_ERROR(parse_entry(raw, "deny_hosts").status());
  return Status();
}

Status check_host(const HostPolicy& policy, std::string_view raw_host) {
  const std::string host = normalize(raw_host);
  const std::optional<Address> address = parse_ip(host);
  if (address) {
    if (std::string why = address_refusal(policy, *address); !why.empty()) return refused(raw_host, why);
  }
  for (const std::string& raw : policy.deny_hosts) {
    Result<Entry> e = parse_entry(raw, "deny_hosts");
    if (e.ok() && e->matches_name(host)) return refused(raw_host, "matches deny_hosts entry '" + raw + "'");
  }
  if (policy.allow_hosts.empty()) return Status();
  for (const std::string& raw : policy.allow_hosts) {
    Result<Entry> e = parse_entry(raw, "allow_hosts");
    if (!e.ok()) continue;
    if (e->matches_name(host) || (address && e->matches_address(*address))) return Status();
  }
  return refused(raw_host, "not in allow_hosts");
}

Status check_resolved_host(const HostPolicy& policy, std::string_view raw_host) {
  ORCH_RETURN_IF_ERROR(check_host(policy, raw_host));
  const std::string host = normalize(raw_host);
  if (parse_ip(host)) return Status();  // a literal: nothing to resolve
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* list = nullptr;
  if (getaddrinfo(host.c_str(), nullptr, &hints, &list) != 0) return Status();
  Status result;
  for (addrinfo* ai = list; ai && result.ok(); ai = ai->ai_next) {
    Address a;
    if (ai->ai_family == AF_INET) {
      a = from_v4(reinterpret_cast<const sockaddr_in*>(ai->ai_addr)->sin_addr);
    } else if (ai->ai_family == AF_INET6) {
      a = from_v6(reinterpret_cast<const sockaddr_in6*>(ai->ai_addr)->sin6_addr);
    } else {
      continue;
    }
    if (std::string why = address_refusal(policy, a); !why.empty()) {
      char text[INET6_ADDRSTRLEN] = {0};
      inet_ntop(a.v6 ? AF_INET6 : AF_INET, a.bytes.data(), text, sizeof(text));
      result = refused(raw_host, "it resolves to " + std::string(text) + ", " + why);
    }
  }
  freeaddrinfo(list);
  return result;
}

}  // namespace orch
