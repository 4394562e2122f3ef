// SPDX-License-Identifier: MIT
//
// HttpResponseParser: reads one HTTP/1.x response from bytes as they arrive,
// for the event-driven worker client (async_http_client.h). Pure: no I/O.
//
// Bodies framed by Content-Length, by chunked transfer coding, or by the
// connection closing (finish_at_eof()) are read; interim 1xx responses are
// skipped; 204, 304 and answers to HEAD have no body. Everything is bounded:
// the status line and headers together (max_header_bytes, max_header_count),
// and the body however it is framed (max_body_bytes: a declared length over it
// fails at once, a chunked or close-delimited body fails as soon as it passes
// it). A Content-Encoding other than identity is refused (the client asks for
// none, and inflating a body would escape the size bound).
//
// Thread-safety: none; one parser per response.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "workers/worker_wire.h"

namespace orch::internal {

struct HttpResponseLimits {
  size_t max_header_bytes = 64 * 1024;
  size_t max_header_count = 100;
  size_t max_body_bytes = 16 * 1024 * 1024;
};

class HttpResponseParser {
 public:
  enum class State { kReading, kDone, kError };
  enum class Error { kNone, kMalformed, kTooLarge };

  explicit HttpResponseParser(HttpResponseLimits limits = {}, bool head_request = false);

  // Feeds the next bytes. Returns how many were used: all of them until the
  // response is complete; fewer when it completes inside `data` (the rest
  // belongs to no request of ours). Stops at the first error.
  size_t feed(std::string_view data);
  // The connection closed. A body that runs to the end of the connection is
  // then complete; anything else still unfinished is an error (returns false).
  bool finish_at_eof();

  State state() const { return state_; }
  Error error() const { return error_; }
  // What is wrong, for messages ("bad chunk size", "body exceeds 16777216 bytes").
  const std::string& error_text() const { return error_text_; }
  // Bytes of the response seen so far (0: the server sent nothing).
  uint64_t bytes_seen() const { return bytes_seen_; }
  // After kDone: may the connection carry another request?
  bool keep_alive() const { return keep_alive_; }

  // After kDone: the response (header names in lower case). Moves it out.
  HttpResponse take() { return std::move(response_); }

 private:
  enum class Phase { kHead, kLengthBody, kChunkSize, kChunkData, kChunkDataEnd, kTrailers, kCloseBody };

  void fail(Error error, std::string text);
  // Parses the head in head_ (complete, "\r\n\r\n" excluded); sets the phase.
  void parse_head();
  // Consumes one CRLF-terminated line from `data` into line_; true when whole.
  bool take_line(std::string_view data, size_t* used);
  void chunk_size_line();
  void append_body(std::string_view bytes);

  HttpResponseLimits limits_;
  bool head_request_;
  State state_ = State::kReading;
  Error error_ = Error::kNone;
  std::string error_text_;
  Phase phase_ = Phase::kHead;
  std::string head_;       // status line and headers as they arrive
  std::string line_;       // a chunk-size or trailer line being read
  uint64_t remaining_ = 0;  // of the Content-Length body or of the current chunk
  uint64_t bytes_seen_ = 0;
  size_t trailer_bytes_ = 0;
  bool keep_alive_ = false;
  HttpResponse response_;
};

}  // namespace orch::internal
