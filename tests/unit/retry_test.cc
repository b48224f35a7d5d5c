// retry(): how many tries, which failures are tried again, the pauses between tries, and that the
// caller sees the last try's own error. Pauses are recorded, never slept.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "retry.h"

namespace tessera {
namespace {

using std::chrono::milliseconds;

// A function that fails `failures` times with `code`, then returns its try number; it counts
// its calls.
struct flaky {
  int failures;
  errc code;
  int calls = 0;
  result<int> operator()() {
    ++calls;
    if (calls <= failures) return make_error("try " + std::to_string(calls), code);
    return calls;
  }
};

struct recorder {
  std::vector<milliseconds> pauses;
  auto fn() {
    return [this](milliseconds d) { pauses.push_back(d); };
  }
};

bool by_code(const result<int>& r) {
  return is_retryable(r.error_code());
}

TEST(Retry, ASuccessAtTheFirstTryIsReturnedWithoutPause) {
  flaky f{0, errc::retryable};
  recorder rec;
  auto r =
      retry(retry_policy{5, milliseconds(10), milliseconds(100)}, std::ref(f), by_code, rec.fn());
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 1);
  EXPECT_EQ(f.calls, 1);
  EXPECT_TRUE(rec.pauses.empty());
}

TEST(Retry, RetryableFailuresAreTriedAgainUntilTheySucceed) {
  flaky f{2, errc::retryable};
  recorder rec;
  auto r =
      retry(retry_policy{5, milliseconds(10), milliseconds(100)}, std::ref(f), by_code, rec.fn());
  ASSERT_TRUE(r) << r.error_message();
  EXPECT_EQ(*r, 3);
  EXPECT_EQ(f.calls, 3);
  EXPECT_EQ(rec.pauses, (std::vector<milliseconds>{milliseconds(10), milliseconds(20)}));
}

TEST(Retry, OverloadedCountsAsRetryable) {
  flaky f{1, errc::overloaded};
  auto r = retry(retry_policy{3}, std::ref(f));
  ASSERT_TRUE(r);
  EXPECT_EQ(f.calls, 2);
}

TEST(Retry, AfterTheLastAttemptTheCallerSeesTheLastTrysError) {
  flaky f{100, errc::retryable};
  recorder rec;
  auto r =
      retry(retry_policy{4, milliseconds(10), milliseconds(100)}, std::ref(f), by_code, rec.fn());
  ASSERT_FALSE(r);
  EXPECT_EQ(f.calls, 4);
  EXPECT_EQ(r.error_message(), "try 4");
  EXPECT_EQ(r.error_code(), errc::retryable);
  EXPECT_EQ(rec.pauses.size(), 3u);  // between tries, none after the last
}

TEST(Retry, OtherFailuresAreReturnedAtOnceWithTheirCode) {
  for (errc code :
       {errc::internal, errc::invalid, errc::not_found, errc::deadline, errc::unauthorized}) {
    flaky f{100, code};
    recorder rec;
    auto r = retry(retry_policy{10, milliseconds(10), milliseconds(100)}, std::ref(f), by_code,
                   rec.fn());
    ASSERT_FALSE(r);
    EXPECT_EQ(f.calls, 1) << errc_name(code);
    EXPECT_EQ(r.error_code(), code);
    EXPECT_EQ(r.error_message(), "try 1");
    EXPECT_TRUE(rec.pauses.empty());
  }
}

TEST(Retry, PausesDoubleUpToTheCap) {
  flaky f{100, errc::retryable};
  recorder rec;
  auto r =
      retry(retry_policy{6, milliseconds(10), milliseconds(30)}, std::ref(f), by_code, rec.fn());
  ASSERT_FALSE(r);
  EXPECT_EQ(rec.pauses,
            (std::vector<milliseconds>{milliseconds(10), milliseconds(20), milliseconds(30),
                                       milliseconds(30), milliseconds(30)}));
}

TEST(Retry, APredicateDecidesWhichFailuresAreTriedAgain) {
  // A compare-and-swap that lost says so in its own way; here an internal error named "lost".
  int calls = 0;
  auto cas = [&]() -> status {
    ++calls;
    if (calls < 3) return make_error("lost");
    if (calls == 3) return make_error("broken");
    return ok_status();
  };
  auto r = retry(
      retry_policy{10}, cas, [](const status& s) { return s.error_message() == "lost"; },
      [](milliseconds) {});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error_message(), "broken");
  EXPECT_EQ(calls, 3);
}

TEST(Retry, ThereIsAlwaysOneTry) {
  flaky f{100, errc::retryable};
  auto r = retry(retry_policy{0}, std::ref(f));
  ASSERT_FALSE(r);
  EXPECT_EQ(f.calls, 1);
}

TEST(Retry, BackoffStartsOverAfterReset) {
  backoff b(retry_policy{0, milliseconds(200), milliseconds(5000)});
  std::vector<milliseconds> seen;
  for (int i = 0; i < 7; ++i) seen.push_back(b.next());
  EXPECT_EQ(seen, (std::vector<milliseconds>{
                      milliseconds(200), milliseconds(400), milliseconds(800), milliseconds(1600),
                      milliseconds(3200), milliseconds(5000), milliseconds(5000)}));
  b.reset();
  EXPECT_EQ(b.next(), milliseconds(200));
  EXPECT_EQ(b.next(), milliseconds(400));
}

}  // namespace
}  // namespace tessera
