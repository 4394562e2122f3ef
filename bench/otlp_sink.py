#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""An OTLP/HTTP collector that accepts and discards, for benchmarking orch with
tracing on (it counts the spans it was sent, printed on SIGTERM / Ctrl-C).

    bench/otlp_sink.py PORT &
    OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:PORT build-bench/bench/bench_server ...
"""
import http.server
import signal
import sys

requests = 0
received_bytes = 0


class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        global requests, received_bytes
        n = int(self.headers.get("Content-Length", "0"))
        received_bytes += len(self.rfile.read(n))
        requests += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink)

    def stop(*_):
        print("otlp_sink: %d exports, %d bytes" % (requests, received_bytes), file=sys.stderr)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever()


if __name__ == "__main__":
    main()
