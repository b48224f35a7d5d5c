// result<T> carries an error code, so callers act on the kind of failure, never on its text.
#include <gtest/gtest.h>

#include "tessera/result.h"

namespace tessera {
namespace {

result<int> half(int x) {
  if (x % 2) return make_error(std::to_string(x) + " is odd", errc::invalid);
  return x / 2;
}

TEST(Result, CarriesTheValueOrTheErrorWithItsCode) {
  auto ok = half(4);
  ASSERT_TRUE(ok);
  EXPECT_EQ(*ok, 2);
  auto bad = half(3);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error_message(), "3 is odd");
  EXPECT_EQ(bad.error_code(), errc::invalid);
  EXPECT_FALSE(is_retryable(bad.error_code()));
  // Unclassified errors are internal; a message that says "retry" is not a code.
  result<int> plain = make_error("please retry");
  EXPECT_EQ(plain.error_code(), errc::internal);
  EXPECT_FALSE(is_retryable(plain.error_code()));
  EXPECT_TRUE(is_retryable(errc::retryable));
  EXPECT_TRUE(is_retryable(errc::overloaded));
  EXPECT_STREQ(errc_name(errc::not_found), "not found");
}

}  // namespace
}  // namespace tessera
