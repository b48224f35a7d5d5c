// An embedded nats-server child process for single-command use: JetStream on, loopback only,
// a free port, storage under <data-dir>/nats. The child gets PR_SET_PDEATHSIG(SIGKILL) so it
// dies with the node even on SIGKILL; a stale child recorded in the pid file is stopped at start.
// Lifecycle: start() spawns and waits until it accepts connections; a monitor thread restarts
// it (same port and storage) if it exits unexpectedly; the destructor stops it.
#pragma once
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "tessera/result.h"

namespace tessera {

class embedded_nats {
 public:
  static result<std::unique_ptr<embedded_nats>> start(const std::string& data_dir);
  ~embedded_nats();
  std::string url() const { return "nats://127.0.0.1:" + std::to_string(port_); }
  int restarts() const { return restarts_.load(); }

 private:
  embedded_nats() = default;
  status spawn();
  void monitor();

  std::string dir_;
  std::string binary_;
  int port_ = 0;
  std::atomic<int> pid_{-1};
  std::atomic<bool> stopping_{false};
  std::atomic<int> restarts_{0};
  std::thread monitor_;
};

// True when something accepts TCP connections on 127.0.0.1:port.
bool tcp_port_open(int port);
int find_free_port();

}  // namespace tessera
