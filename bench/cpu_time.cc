#include "cpu_time.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <cctype>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

namespace tessera::bench {

std::map<long, uint64_t> thread_cpu() {
  std::map<long, uint64_t> out;
  for (auto& e : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream in(e.path() / "schedstat");
    uint64_t ns = 0;
    if (in >> ns) out[std::stol(e.path().filename().string())] = ns;
  }
  return out;
}

long current_thread_id() {
  return syscall(SYS_gettid);
}

uint64_t process_cpu() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

uint64_t named_threads_cpu(const std::string& prefix) {
  uint64_t total = 0;
  for (auto& e : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(e.path() / "comm");
    std::string name;
    std::getline(comm, name);
    if (name.rfind(prefix, 0) != 0) continue;
    std::ifstream in(e.path() / "schedstat");
    uint64_t ns = 0;
    if (in >> ns) total += ns;
  }
  return total;
}

uint64_t machine_cpu() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  uint64_t user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  in >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
  return (user + nice + system + irq + softirq + steal) * (1000000000ull / sysconf(_SC_CLK_TCK));
}

uint64_t children_cpu() {
  uint64_t total = 0;
  const std::string me = std::to_string(getpid());
  for (auto& p : std::filesystem::directory_iterator("/proc")) {
    const std::string pid = p.path().filename().string();
    if (pid.empty() || !std::isdigit(static_cast<unsigned char>(pid[0]))) continue;
    std::ifstream st(p.path() / "stat");
    std::string line;
    if (!std::getline(st, line)) continue;
    auto close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    std::string state, ppid;
    rest >> state >> ppid;
    if (ppid != me) continue;
    std::error_code ec;
    for (auto& t : std::filesystem::directory_iterator(p.path() / "task", ec)) {
      std::ifstream in(t.path() / "schedstat");
      uint64_t ns = 0;
      if (in >> ns) total += ns;
    }
  }
  return total;
}

std::string loadavg() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

}  // namespace tessera::bench
