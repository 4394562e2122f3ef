// SPDX-License-Identifier: MIT
//
// Worker HTTP client benchmark: the CPU the client side of worker calls
// costs, blocking transport (a call thread per call in flight, httplib) vs
// the event-driven client (Asio loop), side by side in one process. A
// loopback webhook worker (loopback_worker.h, answering at once) serves
// --calls calls, --in-flight at a time, over each client in turn; the
// process's CPU time (user + system, getrusage) per call is printed as one
// JSON line per client. The worker's own share is the same for both.
//
//   bench_http_client [--calls 20000] [--in-flight 100]
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <string>

#include "loopback_worker.h"
#include "workers/http/async_http_client.h"
#include "workers/http/http_transport.h"

namespace {

using orch::internal::HttpRequestSpec;
using orch::internal::HttpResponse;

double cpu_us() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1e6 +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec);
}

// Runs `calls` calls through `send` (which calls its callback once per call),
// `in_flight` at a time; prints the figures.
void measure(const char* client, int calls, int in_flight,
             const std::function<void(std::function<void(bool)>)>& send) {
  std::mutex mu;
  std::condition_variable cv;
  int started = 0, finished = 0, ok = 0;
  std::function<void()> start_one;
  start_one = [&] {
    send([&](bool good) {
      bool more = false;
      {
        std::lock_guard<std::mutex> lock(mu);
        ++finished;
        ok += good ? 1 : 0;
        if (started < calls) {
          ++started;
          more = true;
        }
      }
      cv.notify_all();
      if (more) start_one();
    });
  };
  const double cpu0 = cpu_us();
  const auto t0 = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(mu);
    started = std::min(in_flight, calls);
  }
  for (int i = 0; i < std::min(in_flight, calls); ++i) start_one();
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return finished == calls; });
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double cpu = cpu_us() - cpu0;
  std::printf("{\"scenario\":\"http_client\",\"client\":\"%s\",\"calls\":%d,\"in_flight\":%d,\"ok\":%d,"
              "\"calls_per_s\":%.0f,\"process_cpu_us_per_call\":%.1f}\n",
              client, calls, in_flight, ok, calls / secs, cpu / calls);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  int calls = 20000, in_flight = 100;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--calls") calls = std::max(1, std::atoi(argv[i + 1]));
    if (flag == "--in-flight") in_flight = std::max(1, std::atoi(argv[i + 1]));
  }
  orch::bench::LoopbackWorker worker(std::chrono::milliseconds(0), [](const std::string&, auto, auto) {});
  const std::string url = "http://127.0.0.1:" + std::to_string(worker.port()) + "/webhook";
  auto spec = [&] {
    HttpRequestSpec s;
    s.url = url;
    s.body = R"({"message":"hello","text":"hello","session_key":"k","session_id":"k"})";
    s.deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    return s;
  };
  for (int round = 0; round < 2; ++round) {
    {
      orch::internal::HttpTransport transport(orch::Clock::system(), 256, 64);
      measure("blocking", calls, in_flight, [&](std::function<void(bool)> done) {
        transport.run("", [&transport, s = spec(), done] { done(transport.send(s).ok()); });
      });
    }
    {
      orch::internal::AsyncHttpClientOptions options;
      options.threads = 2;
      orch::internal::AsyncHttpClient client(options);
      measure("event_driven", calls, in_flight, [&](std::function<void(bool)> done) {
        client.send(spec(), [done](orch::Result<HttpResponse> r) { done(r.ok()); });
      });
    }
  }
  return 0;
}
