#include "stream_clock.h"

#include <algorithm>

#include "time_util.h"

namespace tessera {
namespace {
void raise_to(std::atomic<int64_t>& a, int64_t v) {
  int64_t cur = a.load(std::memory_order_relaxed);
  while (v > cur && !a.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
  }
}
}  // namespace

stream_clocks::stream_clocks(const definitions& defs) {
  names_.reserve(defs.streams().size());
  for (auto& s : defs.streams()) {
    names_.push_back(s.name);
    slots_.push_back(std::make_unique<slot>());
    slots_.back()->mode = s.clock;
  }
  for (size_t i = 0; i < names_.size(); ++i) index_.emplace(names_[i], i);
}

const stream_clocks::slot* stream_clocks::find(std::string_view stream) const {
  auto it = index_.find(stream);
  return it == index_.end() ? nullptr : slots_[it->second].get();
}
stream_clocks::slot* stream_clocks::find(std::string_view stream) {
  auto it = index_.find(stream);
  return it == index_.end() ? nullptr : slots_[it->second].get();
}

int64_t stream_clocks::watermark(std::string_view stream) const {
  const slot* s = find(stream);
  return s ? std::max(s->local.load(std::memory_order_relaxed),
                      s->remote.load(std::memory_order_relaxed))
           : 0;
}

int64_t stream_clocks::read_time(std::string_view stream) const {
  const slot* s = find(stream);
  if (!s) return 0;
  return s->mode == clock_mode::live ? now_micros() : watermark(stream);
}

clock_mode stream_clocks::mode(std::string_view stream) const {
  const slot* s = find(stream);
  return s ? s->mode : clock_mode::live;
}

void stream_clocks::advance_local(std::string_view stream, int64_t wm) {
  if (slot* s = find(stream)) raise_to(s->local, wm);
}
void stream_clocks::advance_remote(std::string_view stream, int64_t wm) {
  if (slot* s = find(stream)) raise_to(s->remote, wm);
}

void stream_clocks::advance_accepted(std::string_view stream, int64_t t) {
  if (slot* s = find(stream)) raise_to(s->accepted, t);
}
void stream_clocks::advance_remote_accepted(std::string_view stream, int64_t t) {
  if (slot* s = find(stream)) raise_to(s->remote_accepted, t);
}
int64_t stream_clocks::jump_reference(std::string_view stream) const {
  const slot* s = find(stream);
  if (!s) return 0;
  return std::max({s->local.load(std::memory_order_relaxed),
                   s->remote.load(std::memory_order_relaxed),
                   s->accepted.load(std::memory_order_relaxed),
                   s->remote_accepted.load(std::memory_order_relaxed)});
}

std::vector<stream_clocks::local_figures> stream_clocks::local() const {
  std::vector<local_figures> out;
  for (size_t i = 0; i < names_.size(); ++i)
    out.push_back({names_[i], slots_[i]->local.load(std::memory_order_relaxed),
                   slots_[i]->accepted.load(std::memory_order_relaxed)});
  return out;
}

void stream_clocks::count_late(std::string_view stream, uint64_t n) {
  if (slot* s = find(stream)) s->late.fetch_add(n, std::memory_order_relaxed);
}
void stream_clocks::count_refused(std::string_view stream, uint64_t n) {
  if (slot* s = find(stream)) s->refused.fetch_add(n, std::memory_order_relaxed);
}
uint64_t stream_clocks::late(std::string_view stream) const {
  const slot* s = find(stream);
  return s ? s->late.load(std::memory_order_relaxed) : 0;
}
uint64_t stream_clocks::refused(std::string_view stream) const {
  const slot* s = find(stream);
  return s ? s->refused.load(std::memory_order_relaxed) : 0;
}

std::string jump_refusal(const stream_def& s, int64_t time, int64_t reference) {
  if (reference <= 0 || time <= reference + s.max_jump_us) return {};
  return "event time " + format_timestamp(time) + " is more than max_jump (" +
         format_duration(s.max_jump_us) + ") past the stream's watermark (" +
         format_timestamp(reference) + "); refused";
}

}  // namespace tessera
