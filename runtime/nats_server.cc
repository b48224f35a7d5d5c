#include "nats_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "retry.h"

namespace tessera {

namespace fs = std::filesystem;

int find_free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  int port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

bool tcp_port_open(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

namespace {

std::string find_binary() {
  if (const char* env = std::getenv("TESSERA_NATS_SERVER")) return env;
  for (const char* p :
       {"/usr/bin/nats-server", "/usr/local/bin/nats-server", "/usr/sbin/nats-server"})
    if (::access(p, X_OK) == 0) return p;
  return "nats-server";
}

// Stops a nats-server left by an earlier node on this data dir (if PDEATHSIG did not fire,
// e.g. the node's parent thread outlived a crash in a debugger).
void stop_stale(const std::string& pid_file) {
  std::ifstream in(pid_file);
  int pid = 0;
  if (!(in >> pid) || pid <= 1) return;
  std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
  std::string name;
  if (!(comm >> name) || name.find("nats-server") == std::string::npos) return;
  spdlog::warn("stopping stale nats-server pid {} left on this data dir", pid);
  ::kill(pid, SIGTERM);
  for (int i = 0; i < 100 && ::kill(pid, 0) == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  if (::kill(pid, 0) == 0) ::kill(pid, SIGKILL);
}

}  // namespace

result<std::unique_ptr<embedded_nats>> embedded_nats::start(const std::string& data_dir) {
  std::unique_ptr<embedded_nats> n(new embedded_nats());
  n->dir_ = (fs::path(data_dir) / "nats").string();
  std::error_code ec;
  fs::create_directories(n->dir_, ec);
  if (ec) return make_error("cannot create " + n->dir_ + ": " + ec.message());
  n->binary_ = find_binary();
  stop_stale(n->dir_ + "/nats-server.pid");
  n->port_ = find_free_port();
  if (n->port_ <= 0) return make_error("no free loopback port for nats-server");
  auto st = n->spawn();
  if (!st) return make_error(st.error_message());
  n->monitor_ = std::thread([p = n.get()] { p->monitor(); });
  return n;
}

status embedded_nats::spawn() {
  std::string log = dir_ + "/nats-server.log";
  std::string pidf = dir_ + "/nats-server.pid";
  std::string port = std::to_string(port_);
  std::string conf = dir_ + "/nats-server.conf";
  {
    std::ofstream c(conf, std::ios::trunc);
    c << "# written by tessera node at each start\n"
      << "listen: \"127.0.0.1:" << port_ << "\"\n"
      << "max_payload: 8MB\n"
      << "pid_file: \"" << pidf << "\"\n"
      << "jetstream {\n  store_dir: \"" << dir_ << "/jetstream\"\n}\n";
    if (!c) return make_error("cannot write " + conf);
  }
  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) return make_error("fork failed");
  if (pid == 0) {
    // SIGKILL, not SIGTERM: a nats-server 2.9 seen spinning after SIGTERM outlived its node.
    // JetStream's file store recovers from a kill; a clean node stop still sends SIGTERM first.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(1);  // the node died before prctl took effect
    ::setpgid(0, 0);                        // keep terminal signals for the node to handle
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::close(fd);
    }
    ::execl(binary_.c_str(), "nats-server", "-c", conf.c_str(), nullptr);
    ::_exit(127);
  }
  pid_ = pid;
  for (int i = 0; i < 200; ++i) {
    if (tcp_port_open(port_)) {
      spdlog::info("embedded nats-server pid {} on {} (storage {})", pid, url(), dir_);
      return ok_status();
    }
    int wst;
    if (::waitpid(pid, &wst, WNOHANG) == pid) {
      pid_ = -1;
      return make_error("nats-server exited at start (is it installed? see " + log + ")");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return make_error("nats-server did not open port " + port + " within 10 s (see " + log + ")");
}

void embedded_nats::monitor() {
  // Pauses before a restart: 200 ms, doubling while restarts fail, up to 5 s; back to 200 ms
  // after a restart that came up.
  backoff restart_pause(
      retry_policy{0, std::chrono::milliseconds(200), std::chrono::milliseconds(5000)});
  while (!stopping_) {
    int p = pid_;
    if (p <= 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    int wst = 0;
    pid_t r = ::waitpid(p, &wst, WNOHANG);
    if (r == p && !stopping_) {
      pid_ = -1;
      const std::chrono::milliseconds delay = restart_pause.next();
      spdlog::error("embedded nats-server exited unexpectedly (status {}); restarting in {} ms",
                    wst, delay.count());
      std::this_thread::sleep_for(delay);
      if (stopping_) break;
      ++restarts_;
      auto st = spawn();
      if (!st)
        spdlog::error("restarting nats-server failed: {}", st.error_message());
      else
        restart_pause.reset();
      continue;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

embedded_nats::~embedded_nats() {
  stopping_ = true;
  if (monitor_.joinable()) monitor_.join();
  int p = pid_;
  if (p > 0) {
    ::kill(p, SIGTERM);
    int wst;
    for (int i = 0; i < 100; ++i) {
      if (::waitpid(p, &wst, WNOHANG) == p) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ::kill(p, SIGKILL);
    ::waitpid(p, &wst, 0);
  }
}

}  // namespace tessera
