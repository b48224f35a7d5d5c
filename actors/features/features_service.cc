#include "features_service.h"

#include <thread>

#include "feature_shards.h"
#include "reader.h"
#include "supervisor.h"

namespace tessera {

result<std::unique_ptr<features_service>> features_service::start(
    std::shared_ptr<const features_context> ctx, const options& o) {
  std::unique_ptr<features_service> f(new features_service());
  f->ctx_ = ctx;
  f->cfg_ = std::make_unique<caf::actor_system_config>();
  int threads = o.threads > 0 ? o.threads
                              : static_cast<int>(std::max(2u, std::thread::hardware_concurrency()));
  f->cfg_->set("scheduler.max-threads", threads);
  f->cfg_->set("logger.verbosity", caf::atom("quiet"));
  // Work stealing lets idle workers sleep up to 10 ms before they look for work again, which
  // is that much latency on a quiet node; sharing wakes a worker as soon as work arrives.
  f->cfg_->set("scheduler.policy", caf::atom("sharing"));
  f->sys_ = std::make_unique<caf::actor_system>(*f->cfg_);
  f->supervisor_ = f->sys_->spawn(feature_supervisor, ctx);
  f->shard_host_ = std::make_unique<feature_shards>(*f->sys_, f->supervisor_, ctx->cache);
  f->reader_ = std::make_unique<feature_reader>(ctx, ctx->nats);
  return f;
}

features_service::~features_service() {
  stop();
  shard_host_.reset();
  reader_.reset();
  sys_.reset();
}

shard_host* features_service::shards() const {
  return shard_host_.get();
}

status features_service::serve_forwarded_reads() {
  return reader_->serve();
}

void features_service::stop() {
  if (stopped_ || !sys_) return;
  stopped_ = true;
  caf::anon_send(supervisor_, stop_atom::value);
  supervisor_ = caf::actor();
  sys_->await_all_actors_done();
}

bool features_service::TEST_crash_entity(const std::string& stream, const std::string& kind,
                                         const std::string& key) {
  caf::scoped_actor self{*sys_};
  bool armed = false;
  self->request(supervisor_, std::chrono::seconds(60), crash_atom::value, stream, kind, key)
      .receive([&](bool ok) { armed = ok; }, [&](caf::error&) { armed = false; });
  return armed;
}

}  // namespace tessera
