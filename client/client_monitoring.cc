// The monitoring calls of the client (schemas/monitoring.capnp) and the validation report
// (schemas/features.capnp).
#include "client_impl.h"

namespace tessera::client {

result<std::string> connection::validation_report(const std::string& stream) {
  return impl_
      ->start<std::string>(
          [stream](session& s) {
            auto req = s.features.validationReportRequest();
            req.setStream(stream);
            return req.send().then([](capnp::Response<wire::Features::ValidationReportResults> r) {
              return std::string(r.getJson().cStr(), r.getJson().size());
            });
          },
          true)
      .get();
}

result<std::string> connection::alerts_json() {
  return impl_
      ->start<std::string>(
          [](session& s) {
            return s.monitoring.alertsRequest().send().then(
                [](capnp::Response<wire::Monitoring::AlertsResults> r) {
                  return std::string(r.getJson().cStr(), r.getJson().size());
                });
          },
          true)
      .get();
}

result<std::pair<std::string, uint64_t>> connection::alert_log(uint64_t after, uint32_t limit) {
  using page = std::pair<std::string, uint64_t>;
  return impl_
      ->start<page>(
          [after, limit](session& s) {
            auto req = s.monitoring.logRequest();
            req.setAfter(after);
            req.setLimit(limit);
            return req.send().then([](capnp::Response<wire::Monitoring::LogResults> r) {
              return page{std::string(r.getJson().cStr(), r.getJson().size()), r.getLast()};
            });
          },
          true)
      .get();
}

tessera::status connection::acknowledge_alert(const std::string& key, const std::string& by) {
  auto r =
      impl_
          ->start<bool>(
              [key, by](session& s) {
                auto req = s.monitoring.acknowledgeRequest();
                req.setKey(key);
                req.setBy(by);
                return req.send().then(
                    [](capnp::Response<wire::Monitoring::AcknowledgeResults>) { return true; });
              },
              true)
          .get();
  if (!r) return r.failure();
  return ok_status();
}

tessera::status connection::silence_alert(const std::string& key, uint32_t seconds,
                                          const std::string& by) {
  auto r = impl_
               ->start<bool>(
                   [key, seconds, by](session& s) {
                     auto req = s.monitoring.silenceRequest();
                     req.setKey(key);
                     req.setSeconds(seconds);
                     req.setBy(by);
                     return req.send().then(
                         [](capnp::Response<wire::Monitoring::SilenceResults>) { return true; });
                   },
                   true)
               .get();
  if (!r) return r.failure();
  return ok_status();
}

}  // namespace tessera::client
