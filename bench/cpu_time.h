// CPU accounting for the benchmarks (Linux /proc): how much CPU this process, some of its
// threads, its child processes and the whole machine used, read as cumulative counters. A
// figure over a window is the difference of two readings; divided by the window's seconds it is
// the number of cores used. Counters in ns; threads and processes whose counters cannot be read
// (gone meanwhile) are left out. Threads: any thread may read; nothing is cached.
#pragma once
#include <cstdint>
#include <map>
#include <string>

namespace tessera::bench {

// CPU time (ns on a CPU, /proc/.../schedstat) of this process's living threads, by thread id.
std::map<long, uint64_t> thread_cpu();
// The calling thread's id, as thread_cpu() keys it (gettid).
long current_thread_id();
// CPU time of this process (ns), every thread, also those that have exited.
uint64_t process_cpu();
// CPU time (ns) of this process's threads whose name begins with `prefix`, living ones only.
uint64_t named_threads_cpu(const std::string& prefix);
// Busy CPU time of the whole machine (ns), from /proc/stat: every process, this one included.
uint64_t machine_cpu();
// CPU time (ns) of this process's child processes (e.g. a node's embedded nats-server), all
// their living threads.
uint64_t children_cpu();
// The machine's load averages over 1, 5 and 15 minutes, as /proc/loadavg writes them.
std::string loadavg();

}  // namespace tessera::bench
