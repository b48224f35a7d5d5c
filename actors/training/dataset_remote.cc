// The NATS side of dataset_service: parts and point-in-time reads asked of other nodes, and
// answering theirs (schemas/SUBJECTS.md).
#include <capnp/message.h>

#include <cstring>
#include <future>

#include "dataset.h"
#include "dataset_impl.h"
#include "schemas/node.capnp.h"

namespace tessera {

using dataset_detail::item;

namespace {

constexpr size_t kItemsPerRequest = 1000;  // keeps replies well under NATS' 1 MiB payload limit
constexpr int64_t kPitTimeoutMs = 30000;
constexpr size_t kPartPageBytes = 512 * 1024;

std::string flat(capnp::MessageBuilder& mb) {
  auto words = capnp::messageToFlatArray(mb);
  auto b = words.asBytes();
  return std::string(reinterpret_cast<const char*>(b.begin()), b.size());
}

// A blocking NATS request (the caller is a worker thread).
result<std::string> request_sync(bus* nats, const std::string& subject, const std::string& data,
                                 int64_t timeout_ms) {
  auto holder = std::make_shared<std::promise<result<std::string>>>();
  auto f = holder->get_future();
  nats->request(subject, data, timeout_ms,
                [holder](result<std::string> r) { holder->set_value(std::move(r)); });
  return f.get();
}

}  // namespace

std::string node_pit_subject(const std::string& node_id) {
  return "tsr.node." + node_id + ".pit";
}
std::string node_part_subject(const std::string& node_id) {
  return "tsr.node." + node_id + ".part";
}

result<std::vector<feature_vector>> dataset_service::impl::remote_pit(
    const view_def& v, uint32_t shard, const std::string& owner,
    const std::vector<item>& items) const {
  std::vector<feature_vector> out;
  out.reserve(items.size());
  for (size_t off = 0; off < items.size(); off += kItemsPerRequest) {
    size_t n = std::min(kItemsPerRequest, items.size() - off);
    capnp::MallocMessageBuilder mb;
    auto req = mb.initRoot<wire::PitRead>();
    req.setView(v.qualified());
    req.setShard(shard);
    auto il = req.initItems(static_cast<unsigned>(n));
    for (size_t k = 0; k < n; ++k) {
      il[static_cast<unsigned>(k)].setEntity(items[off + k].key);
      il[static_cast<unsigned>(k)].setTime(items[off + k].t);
    }
    auto rep = request_sync(ctx->nats, node_pit_subject(owner), flat(mb), kPitTimeoutMs);
    if (!rep)
      return make_error("node " + owner + " did not answer a point-in-time read (" +
                            rep.error_message() + "); retry",
                        errc::retryable);
    std::string err;
    size_t got = 0;
    bool ok = with_message<wire::ForwardedReadReply>(*rep, [&](wire::ForwardedReadReply::Reader r) {
      if (r.getError().size()) {
        err = std::string(r.getError().cStr()) + " (at node " + owner + ")";
        return;
      }
      for (auto fv : r.getVectors()) {
        out.push_back(read_vector(fv));
        ++got;
      }
    });
    if (!ok) return make_error("node " + owner + " sent a malformed point-in-time reply");
    if (!err.empty()) return make_error(err);
    if (got != n)
      return make_error("node " + owner + " answered " + std::to_string(got) + " vectors for " +
                        std::to_string(n) + " items");
  }
  return out;
}

result<dataset_part> dataset_service::fetch_part(const label_def& label, uint32_t shard,
                                                 int64_t from, int64_t to, bool& retryable) {
  auto& ctx = impl_->ctx;
  route r = ctx->cluster ? ctx->cluster->route_of(shard) : route{route::local, {}, {}};
  if (r.kind != route::remote) return impl_->build_part(label, shard, from, to, retryable);
  dataset_part out;
  for (uint32_t page = 0, pages = 1; page < pages; ++page) {
    capnp::MallocMessageBuilder mb;
    auto q = mb.initRoot<wire::PartRequest>();
    q.setLabel(label.name);
    q.setShard(shard);
    q.setFrom(from);
    q.setTo(to);
    std::string req = flat(mb);
    req.append(reinterpret_cast<const char*>(&page),
               sizeof page);  // the page number follows the message
    auto rep = request_sync(ctx->nats, node_part_subject(r.owner), req, 120000);
    retryable = true;
    if (!rep)
      return make_error("node " + r.owner + " did not answer for shard " + std::to_string(shard) +
                            " (" + rep.error_message() + "); retry",
                        errc::retryable);
    std::string err;
    bool ok = with_message<wire::DatasetPart>(*rep, [&](wire::DatasetPart::Reader p) {
      if (p.getError().size()) {
        err = p.getError().cStr();
        return;
      }
      pages = p.getPages();
      if (page == 0) {
        for (auto c : p.getColumns()) out.columns.emplace_back(c.cStr());
        out.rows = p.getRows(), out.examples = p.getExamples(),
        out.outside_retention = p.getOutsideRetention();
        out.unlabelled = p.getUnlabelled(), out.non_finite = p.getNonFinite();
      }
      out.csv.append(reinterpret_cast<const char*>(p.getCsv().begin()), p.getCsv().size());
    });
    if (!ok) return make_error("node " + r.owner + " sent a malformed dataset part");
    if (!err.empty()) return make_error(err + " (at node " + r.owner + ")");
  }
  retryable = false;
  return out;
}

status dataset_service::serve() {
  if (!impl_->ctx->cluster) return ok_status();
  std::weak_ptr<impl> weak = impl_;
  auto* nats = impl_->ctx->nats;
  auto parts = nats->serve(
      node_part_subject(impl_->ctx->cluster->node_id()),
      [weak, nats](std::string data, std::string reply) {
        auto respond_error = [nats, reply](const std::string& e) {
          capnp::MallocMessageBuilder mb;
          mb.initRoot<wire::DatasetPart>().setError(e);
          nats->respond(reply, flat(mb));
        };
        auto im = weak.lock();
        if (!im) return respond_error("the node is stopping; retry");
        auto job = [im, nats, reply, data = std::move(data), respond_error]() mutable {
          uint32_t page = 0;
          if (data.size() < sizeof page) return respond_error("malformed dataset part request");
          std::memcpy(&page, data.data() + data.size() - sizeof page, sizeof page);
          data.resize(data.size() - sizeof page);
          std::string label_name;
          uint32_t shard = 0;
          int64_t from = 0, to = 0;
          if (!with_message<wire::PartRequest>(data, [&](wire::PartRequest::Reader q) {
                label_name = q.getLabel();
                shard = q.getShard();
                from = q.getFrom();
                to = q.getTo();
              }))
            return respond_error("malformed dataset part request");
          const label_def* l = im->ctx->defs->find_label(label_name);
          if (!l)
            return respond_error("unknown label '" + label_name +
                                 "' (the nodes run different definitions?)");
          const std::string key = label_name + "/" + std::to_string(shard) + "/" +
                                  std::to_string(from) + "/" + std::to_string(to);
          std::shared_ptr<const dataset_part> part;
          {
            std::lock_guard<std::mutex> g(im->mu);
            auto it = im->part_cache.find(key);
            if (it != im->part_cache.end() && page > 0) part = it->second.second;
          }
          if (!part) {
            bool retryable = false;
            auto built = im->build_part(*l, shard, from, to, retryable);
            if (!built) return respond_error(built.error_message());
            part = std::make_shared<const dataset_part>(std::move(built.value()));
            std::lock_guard<std::mutex> g(im->mu);
            auto now = std::chrono::steady_clock::now();
            for (auto it = im->part_cache.begin(); it != im->part_cache.end();)
              it = now - it->second.first > std::chrono::minutes(2) ? im->part_cache.erase(it)
                                                                    : std::next(it);
            im->part_cache[key] = {now, part};
          }
          const uint32_t pages = static_cast<uint32_t>(
              std::max<size_t>(1, (part->csv.size() + kPartPageBytes - 1) / kPartPageBytes));
          if (page >= pages)
            return respond_error("page " + std::to_string(page) + " of a part with " +
                                 std::to_string(pages));
          capnp::MallocMessageBuilder mb;
          auto p = mb.initRoot<wire::DatasetPart>();
          p.setPages(pages);
          if (page == 0) {
            auto cl = p.initColumns(static_cast<unsigned>(part->columns.size()));
            for (size_t i = 0; i < part->columns.size(); ++i)
              cl.set(static_cast<unsigned>(i), part->columns[i]);
            p.setRows(part->rows), p.setExamples(part->examples),
                p.setOutsideRetention(part->outside_retention);
            p.setUnlabelled(part->unlabelled), p.setNonFinite(part->non_finite);
          }
          const size_t off = static_cast<size_t>(page) * kPartPageBytes,
                       len = std::min(kPartPageBytes,
                                      part->csv.size() - std::min(off, part->csv.size()));
          p.setCsv(kj::arrayPtr(reinterpret_cast<const kj::byte*>(part->csv.data()) + off, len));
          nats->respond(reply, flat(mb));
        };
        if (!im->parts.submit(std::move(job))) respond_error("the node is stopping; retry");
      });
  if (!parts) return parts;
  return nats->serve(
      node_pit_subject(impl_->ctx->cluster->node_id()),
      [weak, nats](std::string data, std::string reply) {
        auto respond_error = [nats, reply](const std::string& e, bool retryable) {
          capnp::MallocMessageBuilder mb;
          auto r = mb.initRoot<wire::ForwardedReadReply>();
          r.setError(e);
          r.setRetryable(retryable);
          auto words = capnp::messageToFlatArray(mb);
          auto b = words.asBytes();
          nats->respond(reply, std::string(reinterpret_cast<const char*>(b.begin()), b.size()));
        };
        auto im = weak.lock();
        if (!im) return respond_error("the node is stopping; retry", true);
        auto job = [im, nats, reply, data = std::move(data), respond_error] {
          std::string view;
          uint32_t shard = 0;
          std::vector<item> items;
          bool ok = with_message<wire::PitRead>(data, [&](wire::PitRead::Reader r) {
            view = r.getView();
            shard = r.getShard();
            size_t row = 0;
            for (auto it : r.getItems())
              items.push_back(
                  {std::string(it.getEntity().cStr(), it.getEntity().size()), it.getTime(), row++});
          });
          if (!ok) return respond_error("malformed PitRead", false);
          const view_def* v = im->ctx->defs->find_view(view);
          if (!v)
            return respond_error(
                "unknown view '" + view + "' (the nodes run different definitions?)", false);
          for (auto& it : items)
            if (!key_is_valid(it.key) || shard_of(it.key, im->ctx->opts.shard_count) != shard)
              return respond_error("invalid entity key for shard " + std::to_string(shard) +
                                       " in a point-in-time read",
                                   false);
          auto got = im->local_pit(*v, shard, std::move(items));
          if (!got) return respond_error(got.error_message(), true);
          capnp::MallocMessageBuilder mb;
          auto r = mb.initRoot<wire::ForwardedReadReply>();
          auto vl = r.initVectors(static_cast<unsigned>(got->size()));
          for (size_t k = 0; k < got->size(); ++k)
            write_vector(vl[static_cast<unsigned>(k)], (*got)[k]);
          auto words = capnp::messageToFlatArray(mb);
          auto b = words.asBytes();
          nats->respond(reply, std::string(reinterpret_cast<const char*>(b.begin()), b.size()));
        };
        if (!im->reads.submit(std::move(job))) respond_error("the node is stopping; retry", true);
      });
}

}  // namespace tessera
