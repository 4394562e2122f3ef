// SPDX-License-Identifier: MIT
//
// Real message brokers for tests: a `mosquitto` or `redis-server` process on
// a free loopback port, with its files (config, persistence, log) in a
// temporary directory. The broker can be stopped (gracefully or with
// SIGKILL) and started again on the same port and directory, to test
// reconnection. The destructor kills the process and removes the directory.
//
//   if (!MosquittoBroker::available()) skip...;
//   MosquittoBroker broker;          // started, accepting connections
//   "mqtt://127.0.0.1:" + std::to_string(broker.port()) + "/work"
//
// Thread-safety: one thread drives a broker object.
#pragma once

#include <string>
#include <vector>

namespace orch::testing {

class BrokerProcess {
 public:
  virtual ~BrokerProcess();
  BrokerProcess(const BrokerProcess&) = delete;
  BrokerProcess& operator=(const BrokerProcess&) = delete;

  int port() const { return port_; }
  const std::string& dir() const { return dir_; }
  bool running() const { return pid_ > 0; }
  // Ends the process: SIGTERM and wait (mosquitto saves its sessions), or
  // SIGKILL (nothing saved).
  void stop(bool graceful = true);
  // Starts the process (again) on the same port and directory and waits until
  // it accepts connections. Throws std::runtime_error when it does not.
  void start();
  // The broker's output so far.
  std::string log() const;

 protected:
  BrokerProcess(std::string name, std::string binary);
  // Called by the subclass constructor once its command is ready.
  void launch();
  virtual std::vector<std::string> command() const = 0;

  std::string binary_;
  std::string dir_;
  int port_ = 0;

 private:
  std::string name_;
  int pid_ = -1;
};

// mosquitto with `listener <port> 127.0.0.1`, anonymous access, persistence
// in its directory.
class MosquittoBroker : public BrokerProcess {
 public:
  MosquittoBroker();
  ~MosquittoBroker() override;
  // The binary (ORCH_MOSQUITTO, else /usr/sbin/mosquitto), or "" when absent.
  static std::string find_binary();
  static bool available() { return !find_binary().empty(); }

 protected:
  std::vector<std::string> command() const override;
};

// redis-server without persistence (`--save "" --appendonly no`).
class RedisBroker : public BrokerProcess {
 public:
  RedisBroker();
  ~RedisBroker() override;
  // The binary (ORCH_REDIS_SERVER, else redis-server on /usr/bin, /usr/local/bin), or "".
  static std::string find_binary();
  static bool available() { return !find_binary().empty(); }

 protected:
  std::vector<std::string> command() const override;
};

// A port on 127.0.0.1 that was free a moment ago.
int free_loopback_port();

// A new empty directory under $TMPDIR (or /tmp).
std::string make_temp_dir(const std::string& prefix);

}  // namespace orch::testing
