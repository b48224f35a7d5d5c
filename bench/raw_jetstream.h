// The raw JetStream baselines every real-time benchmark prints its ratio against, measured on the
// same nats-server in the same run: plain libnats, no Tessera code on the path.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace tessera::bench {

// Publish → consume latency at `rate` messages/s for `seconds`: one 100-byte message per event,
// published asynchronously every millisecond (rate/1000 per tick), to a stream of its own
// (`name`, file storage), read by one pull consumer (no acks). Latencies in ms, one per message;
// empty on a set-up failure (printed).
std::vector<double> raw_publish_consume_ms(const std::string& url, const std::string& name,
                                           double rate, double seconds);

// Async publish of `n` 100-byte messages, one per event, to a stream of its own (`name`, file
// storage), until every one is acknowledged. Messages per second; 0 on a failure (printed).
double raw_async_publish_rate(const std::string& url, const std::string& name, size_t n);

// Pulls (no acks, batches of 64) and decodes as Cap'n Proto EventBatch the first `expect_msgs`
// messages on `subjects` of their stream; returns seconds and sets `events_out` to the events
// decoded. 0 on a failure (printed).
double raw_pull_decode(const std::string& url, const std::string& subjects, size_t expect_msgs,
                       size_t& events_out);

}  // namespace tessera::bench
