// SPDX-License-Identifier: MIT
#include "workers/http/http_response_parser.h"

#include <algorithm>
#include <cctype>
#include <vector>

namespace orch::internal {
namespace {

constexpr size_t kMaxChunkLine = 4096;  // a size, maybe extensions: far below this

char lower_char(char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); }

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), lower_char);
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool is_token_char(char c) {
  if (std::isalnum(static_cast<unsigned char>(c))) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// The comma-separated elements of a header value, trimmed, empty ones dropped.
std::vector<std::string_view> elements(std::string_view value) {
  std::vector<std::string_view> out;
  while (!value.empty()) {
    size_t comma = value.find(',');
    std::string_view item = trim(value.substr(0, comma));
    if (!item.empty()) out.push_back(item);
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return out;
}

bool equals_ci(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return lower_char(x) == lower_char(y);
         });
}

}  // namespace

HttpResponseParser::HttpResponseParser(HttpResponseLimits limits, bool head_request)
    : limits_(limits), head_request_(head_request) {}

void HttpResponseParser::fail(Error error, std::string text) {
  state_ = State::kError;
  error_ = error;
  error_text_ = std::move(text);
}

size_t HttpResponseParser::feed(std::string_view data) {
  size_t used = 0;
  while (used < data.size() && state_ == State::kReading) {
    std::string_view rest = data.substr(used);
    switch (phase_) {
      case Phase::kHead: {
        const size_t old = head_.size();
        // Room for the limit plus the blank line that ends the head.
        const size_t room = limits_.max_header_bytes + 4 - old;
        const size_t take = std::min(rest.size(), room);
        head_.append(rest.data(), take);
        const size_t end = head_.find("\r\n\r\n", old >= 3 ? old - 3 : 0);
        if (end == std::string::npos) {
          used += take;
          if (head_.size() >= limits_.max_header_bytes + 4) {
            fail(Error::kTooLarge, "response headers exceed " + std::to_string(limits_.max_header_bytes) + " bytes");
          }
          break;
        }
        used += end + 4 - old;
        head_.resize(end);
        parse_head();
        break;
      }
      case Phase::kLengthBody:
      case Phase::kChunkData: {
        const size_t take = static_cast<size_t>(std::min<uint64_t>(remaining_, rest.size()));
        append_body(rest.substr(0, take));
        used += take;
        remaining_ -= take;
        if (remaining_ == 0 && state_ == State::kReading) {
          if (phase_ == Phase::kLengthBody) {
            state_ = State::kDone;
          } else {
            phase_ = Phase::kChunkDataEnd;
          }
        }
        break;
      }
      case Phase::kChunkSize:
      case Phase::kChunkDataEnd:
      case Phase::kTrailers: {
        size_t took = 0;
        const bool whole = take_line(rest, &took);
        used += took;
        if (!whole || state_ != State::kReading) break;
        if (phase_ == Phase::kChunkSize) {
          chunk_size_line();
        } else if (phase_ == Phase::kChunkDataEnd) {
          if (!line_.empty()) {
            fail(Error::kMalformed, "chunk not followed by CRLF");
          } else {
            phase_ = Phase::kChunkSize;
          }
        } else if (line_.empty()) {
          state_ = State::kDone;  // end of the trailers
        } else {
          trailer_bytes_ += line_.size();
          if (trailer_bytes_ > limits_.max_header_bytes) {
            fail(Error::kTooLarge, "response trailers exceed " + std::to_string(limits_.max_header_bytes) + " bytes");
          }
        }
        line_.clear();
        break;
      }
      case Phase::kCloseBody:
        append_body(rest);
        used += rest.size();
        break;
    }
  }
  bytes_seen_ += used;
  return used;
}

bool HttpResponseParser::finish_at_eof() {
  if (state_ == State::kReading && phase_ == Phase::kCloseBody) state_ = State::kDone;
  if (state_ == State::kReading) fail(Error::kMalformed, "connection closed before the response was complete");
  return state_ == State::kDone;
}

bool HttpResponseParser::take_line(std::string_view data, size_t* used) {
  const size_t nl = data.find('\n');
  const size_t take = nl == std::string_view::npos ? data.size() : nl + 1;
  *used = take;
  if (line_.size() + take > kMaxChunkLine) {
    fail(Error::kMalformed, "chunk framing line longer than " + std::to_string(kMaxChunkLine) + " bytes");
    return false;
  }
  line_.append(data.data(), take);
  if (nl == std::string_view::npos) return false;
  line_.pop_back();  // '\n'
  if (!line_.empty() && line_.back() == '\r') line_.pop_back();
  return true;
}

void HttpResponseParser::chunk_size_line() {
  std::string_view text = line_;
  const size_t ext = text.find(';');
  text = trim(text.substr(0, ext));
  if (text.empty() || text.size() > 15) {
    fail(Error::kMalformed, "bad chunk size");
    return;
  }
  uint64_t size = 0;
  for (char c : text) {
    int digit = 0;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      digit = c - 'A' + 10;
    } else {
      fail(Error::kMalformed, "bad chunk size");
      return;
    }
    size = size * 16 + static_cast<uint64_t>(digit);
  }
  if (size == 0) {
    phase_ = Phase::kTrailers;
    return;
  }
  if (size > limits_.max_body_bytes - response_.body.size()) {
    fail(Error::kTooLarge, "response body exceeds " + std::to_string(limits_.max_body_bytes) + " bytes");
    return;
  }
  remaining_ = size;
  phase_ = Phase::kChunkData;
}

void HttpResponseParser::append_body(std::string_view bytes) {
  if (bytes.size() > limits_.max_body_bytes - response_.body.size()) {
    fail(Error::kTooLarge, "response body exceeds " + std::to_string(limits_.max_body_bytes) + " bytes");
    return;
  }
  response_.body.append(bytes.data(), bytes.size());
}

void HttpResponseParser::parse_head() {
  std::string_view head = head_;
  // Status line: HTTP/1.x SP 3DIGIT [SP reason]
  const size_t eol = head.find("\r\n");
  std::string_view status_line = head.substr(0, eol);
  if (status_line.size() < 12 || status_line.substr(0, 7) != "HTTP/1." ||
      (status_line[7] != '0' && status_line[7] != '1') || status_line[8] != ' ' ||
      !std::isdigit(static_cast<unsigned char>(status_line[9])) ||
      !std::isdigit(static_cast<unsigned char>(status_line[10])) ||
      !std::isdigit(static_cast<unsigned char>(status_line[11])) ||
      (status_line.size() > 12 && status_line[12] != ' ')) {
    fail(Error::kMalformed, "bad status line");
    return;
  }
  const bool http11 = status_line[7] == '1';
  const int status = (status_line[9] - '0') * 100 + (status_line[10] - '0') * 10 + (status_line[11] - '0');

  response_.headers.clear();
  std::string_view lines = eol == std::string_view::npos ? std::string_view() : head.substr(eol + 2);
  while (!lines.empty()) {
    const size_t end = lines.find("\r\n");
    std::string_view line = lines.substr(0, end);
    lines = end == std::string_view::npos ? std::string_view() : lines.substr(end + 2);
    const size_t colon = line.find(':');
    if (colon == 0 || colon == std::string_view::npos ||
        !std::all_of(line.begin(), line.begin() + static_cast<std::ptrdiff_t>(colon), is_token_char)) {
      fail(Error::kMalformed, "bad header line");
      return;
    }
    if (response_.headers.size() >= limits_.max_header_count) {
      fail(Error::kTooLarge, "more than " + std::to_string(limits_.max_header_count) + " response headers");
      return;
    }
    response_.headers.emplace_back(lower(line.substr(0, colon)), std::string(trim(line.substr(colon + 1))));
  }

  if (status >= 100 && status < 200) {
    if (status == 101) {
      fail(Error::kMalformed, "unexpected 101 Switching Protocols");
      return;
    }
    head_.clear();  // an interim response: the real one follows
    return;
  }
  response_.status = status;

  bool close = false;
  bool keep_alive_token = false;
  bool chunked = false;
  bool has_length = false;
  uint64_t length = 0;
  for (const auto& [name, value] : response_.headers) {
    if (name == "connection") {
      for (std::string_view token : elements(value)) {
        if (equals_ci(token, "close")) close = true;
        if (equals_ci(token, "keep-alive")) keep_alive_token = true;
      }
    } else if (name == "content-encoding") {
      for (std::string_view coding : elements(value)) {
        if (!equals_ci(coding, "identity")) {
          fail(Error::kMalformed, "response has Content-Encoding " + std::string(coding) + ", which orch does not accept");
          return;
        }
      }
    } else if (name == "transfer-encoding") {
      for (std::string_view coding : elements(value)) {
        if (!equals_ci(coding, "chunked") || chunked) {
          fail(Error::kMalformed, "unsupported Transfer-Encoding " + value);
          return;
        }
        chunked = true;
      }
    } else if (name == "content-length") {
      for (std::string_view item : elements(value)) {
        if (item.size() > 19 || !std::all_of(item.begin(), item.end(), [](char c) { return c >= '0' && c <= '9'; })) {
          fail(Error::kMalformed, "bad Content-Length");
          return;
        }
        uint64_t n = 0;
        for (char c : item) n = n * 10 + static_cast<uint64_t>(c - '0');
        if (has_length && n != length) {
          fail(Error::kMalformed, "conflicting Content-Length values");
          return;
        }
        has_length = true;
        length = n;
      }
    }
  }
  keep_alive_ = http11 ? !close : keep_alive_token && !close;

  if (head_request_ || status == 204 || status == 304) {
    state_ = State::kDone;
    return;
  }
  if (chunked) {
    // A length next to chunked framing is ignored, and the connection not reused.
    if (has_length) keep_alive_ = false;
    phase_ = Phase::kChunkSize;
    return;
  }
  if (has_length) {
    if (length > limits_.max_body_bytes) {
      fail(Error::kTooLarge, "response body of " + std::to_string(length) + " bytes exceeds " +
                                 std::to_string(limits_.max_body_bytes) + " bytes");
      return;
    }
    if (length == 0) {
      state_ = State::kDone;
      return;
    }
    response_.body.reserve(static_cast<size_t>(length));
    remaining_ = length;
    phase_ = Phase::kLengthBody;
    return;
  }
  keep_alive_ = false;  // the body runs to the end of the connection
  phase_ = Phase::kCloseBody;
}

}  // namespace orch::internal
