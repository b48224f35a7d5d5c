// cli/ordered_writer.h: blocks of lines that arrive in any order leave in input order.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <stdexcept>

#include "cli/ordered_writer.h"

namespace tessera::cli {
namespace {

using lines = std::vector<std::string>;

struct collected {
  lines written;
  ordered_writer writer{[this](const std::string& l) { written.push_back(l); }, 1};
};

TEST(OrderedWriter, ABlockWaitsForTheBlocksBeforeItAndThenAllLeaveInOrder) {
  collected c;
  c.writer.put(4, {"d", "e"});
  c.writer.put(6, {"f"});
  EXPECT_TRUE(c.written.empty());
  EXPECT_EQ(c.writer.waiting(), 2u);
  EXPECT_EQ(c.writer.next(), 1u);

  c.writer.put(1, {"a", "b", "c"});
  EXPECT_EQ(c.written, (lines{"a", "b", "c", "d", "e", "f"}));
  EXPECT_EQ(c.writer.waiting(), 0u);
  EXPECT_EQ(c.writer.next(), 7u);

  c.writer.put(7, {"g"});
  EXPECT_EQ(c.written.back(), "g");
}

TEST(OrderedWriter, ABlockThatFillsAGapReleasesOnlyUpToTheNextGap) {
  collected c;
  c.writer.put(3, {"c"});
  c.writer.put(5, {"e"});
  c.writer.put(1, {"a", "b"});
  EXPECT_EQ(c.written, (lines{"a", "b", "c"}));
  EXPECT_EQ(c.writer.waiting(), 1u);
  c.writer.put(4, {"d"});
  EXPECT_EQ(c.written, (lines{"a", "b", "c", "d", "e"}));
}

TEST(OrderedWriter, EveryOrderOfCompletionGivesTheInputOrder) {
  // 200 batches of 1..7 rows (as `predict --file` cuts a file with unreadable rows and a short
  // last batch), completed in 20 shuffled orders; the expected output is simply 1..N.
  std::mt19937 rng(7);
  for (int round = 0; round < 20; ++round) {
    std::vector<std::pair<uint64_t, lines>> blocks;
    uint64_t row = 1;
    for (int b = 0; b < 200; ++b) {
      lines l;
      for (int n = std::uniform_int_distribution<int>(1, 7)(rng); n > 0; --n)
        l.push_back(std::to_string(row++));
      blocks.emplace_back(std::stoull(l.front()), l);
    }
    std::shuffle(blocks.begin(), blocks.end(), rng);
    collected c;
    for (auto& [first, l] : blocks) c.writer.put(first, l);
    lines expected;
    for (uint64_t r = 1; r < row; ++r) expected.push_back(std::to_string(r));
    EXPECT_EQ(c.written, expected) << "round " << round;
    EXPECT_EQ(c.writer.waiting(), 0u);
  }
}

TEST(OrderedWriter, AnEmptyBlockChangesNothing) {
  collected c;
  c.writer.put(2, {});
  c.writer.put(1, {});
  EXPECT_EQ(c.writer.waiting(), 0u);
  EXPECT_EQ(c.writer.next(), 1u);
  c.writer.put(1, {"a"});
  EXPECT_EQ(c.written, (lines{"a"}));
}

TEST(OrderedWriter, LinesPutTwiceAreABugAndThrowInsteadOfRepeatingRows) {
  collected c;
  c.writer.put(1, {"a", "b"});
  EXPECT_THROW(c.writer.put(2, {"b"}), std::logic_error);  // already written
  c.writer.put(5, {"e", "f"});
  EXPECT_THROW(c.writer.put(5, {"e"}), std::logic_error);            // the same block held
  EXPECT_THROW(c.writer.put(6, {"f"}), std::logic_error);            // inside a held block
  EXPECT_THROW(c.writer.put(3, {"c", "d", "e"}), std::logic_error);  // runs into a held block
  EXPECT_EQ(c.writer.waiting(), 1u);
  c.writer.put(3, {"c", "d"});
  EXPECT_EQ(c.written, (lines{"a", "b", "c", "d", "e", "f"}));
}

}  // namespace
}  // namespace tessera::cli
