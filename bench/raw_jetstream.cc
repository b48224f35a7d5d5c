#include "raw_jetstream.h"

#include <capnp/serialize.h>
#include <nats/nats.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include "schemas/gateway.capnp.h"

namespace tessera::bench {
namespace {

using clk = std::chrono::steady_clock;

// One connection with a JetStream context; closed on destruction.
struct raw_conn {
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  explicit raw_conn(const std::string& url, int64_t max_pending = 0) {
    natsOptions* o = nullptr;
    natsOptions_Create(&o);
    natsOptions_SetURL(o, url.c_str());
    natsOptions_SetSendAsap(o, true);
    if (natsConnection_Connect(&nc, o) != NATS_OK) {
      std::fprintf(stderr, "raw connect: %s\n", nats_GetLastError(nullptr));
      nc = nullptr;
    }
    natsOptions_Destroy(o);
    if (!nc) return;
    jsOptions jo;
    jsOptions_Init(&jo);
    if (max_pending > 0) jo.PublishAsync.MaxPending = max_pending;
    natsConnection_JetStream(&js, nc, &jo);
  }
  ~raw_conn() {
    if (js) jsCtx_Destroy(js);
    if (nc) natsConnection_Destroy(nc);
  }
  // A file stream `name` on subject `raw.<name>` (recreated empty).
  bool stream(const std::string& name) {
    if (!js) return false;
    js_DeleteStream(js, name.c_str(), nullptr, nullptr);
    const std::string subj = "raw." + name;
    const char* subjects[] = {subj.c_str()};
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = name.c_str();
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    jsStreamInfo* si = nullptr;
    jsErrCode jerr{};
    if (js_AddStream(&si, js, &cfg, nullptr, &jerr) != NATS_OK) {
      std::fprintf(stderr, "raw stream %s: %s (%d)\n", name.c_str(), nats_GetLastError(nullptr),
                   jerr);
      return false;
    }
    jsStreamInfo_Destroy(si);
    return true;
  }
  void drop(const std::string& name) {
    if (js) js_DeleteStream(js, name.c_str(), nullptr, nullptr);
  }
  natsSubscription* pull(const std::string& subject, const std::string& durable) {
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Config.AckPolicy = js_AckNone;
    so.Config.MaxWaiting = 8;
    natsSubscription* sub = nullptr;
    jsErrCode jerr{};
    if (js_PullSubscribe(&sub, js, subject.c_str(), durable.c_str(), nullptr, &so, &jerr) !=
        NATS_OK) {
      std::fprintf(stderr, "raw pull subscribe: %s (%d)\n", nats_GetLastError(nullptr), jerr);
      return nullptr;
    }
    natsSubscription_SetPendingLimits(sub, -1, -1);
    return sub;
  }
};

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(clk::now().time_since_epoch())
      .count();
}

}  // namespace

std::vector<double> raw_publish_consume_ms(const std::string& url, const std::string& name,
                                           double rate, double seconds) {
  std::vector<double> lat;
  raw_conn pc(url, 65536), cc(url);
  if (!pc.js || !cc.js || !pc.stream(name)) return lat;
  natsSubscription* sub = cc.pull("raw." + name, name + "_consumer");
  if (!sub) return lat;
  std::atomic<bool> done{false};
  std::atomic<size_t> sent{0};
  std::thread producer([&] {
    char payload[100] = {};
    const auto t0 = clk::now();
    double owed = 0;
    for (auto next = t0; std::chrono::duration<double>(next - t0).count() < seconds;) {
      next += std::chrono::milliseconds(1);
      owed += rate / 1000;
      for (; owed >= 1; owed -= 1) {
        const int64_t t = now_ns();
        std::memcpy(payload, &t, sizeof t);
        if (js_PublishAsync(pc.js, ("raw." + name).c_str(), payload, sizeof payload, nullptr) ==
            NATS_OK)
          ++sent;
      }
      std::this_thread::sleep_until(next);
    }
    js_PublishAsyncComplete(pc.js, nullptr);
    done = true;
  });
  size_t got = 0;
  while (!done || got < sent) {
    natsMsgList list{};
    jsErrCode jerr{};
    if (natsSubscription_Fetch(&list, sub, 256, 200, &jerr) != NATS_OK) {
      if (done) break;  // nothing for 200 ms after the last publish
      continue;
    }
    const int64_t now = now_ns();
    for (int i = 0; i < list.Count; ++i) {
      int64_t t = 0;
      if (natsMsg_GetDataLength(list.Msgs[i]) >= static_cast<int>(sizeof t))
        std::memcpy(&t, natsMsg_GetData(list.Msgs[i]), sizeof t);
      lat.push_back(static_cast<double>(now - t) / 1e6);
    }
    got += static_cast<size_t>(list.Count);
    natsMsgList_Destroy(&list);
  }
  producer.join();
  natsSubscription_Unsubscribe(sub);
  natsSubscription_Destroy(sub);
  cc.drop(name);
  return lat;
}

double raw_async_publish_rate(const std::string& url, const std::string& name, size_t n) {
  raw_conn pc(url, 65536);
  if (!pc.js || !pc.stream(name)) return 0;
  const std::string subj = "raw." + name;
  char payload[100] = {};
  const auto t0 = clk::now();
  for (size_t i = 0; i < n; ++i) {
    std::memcpy(payload, &i, sizeof i);
    if (js_PublishAsync(pc.js, subj.c_str(), payload, sizeof payload, nullptr) != NATS_OK) {
      std::fprintf(stderr, "raw async publish: %s\n", nats_GetLastError(nullptr));
      return 0;
    }
  }
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = 60000;
  if (js_PublishAsyncComplete(pc.js, &po) != NATS_OK) {
    std::fprintf(stderr, "raw async publish: not every message acknowledged\n");
    return 0;
  }
  const double secs = std::chrono::duration<double>(clk::now() - t0).count();
  pc.drop(name);
  return static_cast<double>(n) / secs;
}

double raw_pull_decode(const std::string& url, const std::string& subjects, size_t expect_msgs,
                       size_t& events_out) {
  raw_conn cc(url);
  natsSubscription* sub = cc.js ? cc.pull(subjects, "bench_raw") : nullptr;
  if (!sub) return 0;
  size_t msgs = 0, events = 0;
  const auto t0 = clk::now();
  while (msgs < expect_msgs) {
    natsMsgList list{};
    jsErrCode jerr{};
    natsStatus st = natsSubscription_Fetch(&list, sub, 64, 5000, &jerr);
    if (st != NATS_OK) {
      std::fprintf(stderr, "raw fetch: %s after %zu messages\n", natsStatus_GetText(st), msgs);
      break;
    }
    for (int i = 0; i < list.Count; ++i) {
      natsMsg* m = list.Msgs[i];
      auto words = kj::heapArray<capnp::word>(static_cast<size_t>(natsMsg_GetDataLength(m)) / 8);
      std::memcpy(words.begin(), natsMsg_GetData(m), words.asBytes().size());
      capnp::FlatArrayMessageReader r(words);
      for (auto e : r.getRoot<wire::EventBatch>().getEvents())
        events += e.getFields().size() + e.getValues().size() > 0;
      ++msgs;
    }
    natsMsgList_Destroy(&list);
  }
  const double secs = std::chrono::duration<double>(clk::now() - t0).count();
  events_out = events;
  natsSubscription_Unsubscribe(sub);
  natsSubscription_Destroy(sub);
  return secs;
}

}  // namespace tessera::bench
