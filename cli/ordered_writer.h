// Puts blocks of lines back in input order: `tessera predict --file` keeps several batches in
// flight, they finish in any order, and its output has one line per input row in input order.
#pragma once
#include <cstdint>
#include <functional>
#include <iterator>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace tessera::cli {

// Each block starts at an index and holds consecutive lines; the blocks tile the indices from
// `first` on, without gaps or overlaps. A block goes to the sink as soon as every block before it
// has; until then it is held (waiting()). Owned by one thread, which puts and writes; the sink
// is called on that thread, inside put().
class ordered_writer {
 public:
  using sink = std::function<void(const std::string& line)>;
  explicit ordered_writer(sink s, uint64_t first = 0) : sink_(std::move(s)), next_(first) {}

  // REQUIRES: no line at these indices was put before. Throws std::logic_error otherwise (a
  // bug of the caller: the output would lose or repeat rows). An empty block is ignored.
  void put(uint64_t first, std::vector<std::string> lines) {
    if (lines.empty()) return;
    auto after = held_.lower_bound(first);
    bool overlaps = first < next_ || (after != held_.end() && after->first < first + lines.size());
    if (after != held_.begin()) {
      auto before = std::prev(after);
      overlaps = overlaps || before->first + before->second.size() > first;
    }
    if (overlaps)
      throw std::logic_error("ordered_writer: lines " + std::to_string(first) + ".." +
                             std::to_string(first + lines.size() - 1) + " were put twice");
    held_.emplace(first, std::move(lines));
    while (!held_.empty() && held_.begin()->first == next_) {
      auto block = std::move(held_.begin()->second);
      held_.erase(held_.begin());
      for (auto& l : block) sink_(l);
      next_ += block.size();
    }
  }

  // The index of the next line to write: every line before it has been written.
  uint64_t next() const { return next_; }
  // Blocks held until an earlier one arrives.
  size_t waiting() const { return held_.size(); }

 private:
  sink sink_;
  uint64_t next_;
  std::map<uint64_t, std::vector<std::string>> held_;  // by first index
};

}  // namespace tessera::cli
