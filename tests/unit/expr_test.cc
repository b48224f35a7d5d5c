#include <gtest/gtest.h>

#include "expr.h"

namespace tessera {
namespace {

std::shared_ptr<const expr> compile(const std::string& s) {
  auto r = compile_expr(s, [](const std::string& n) {
    return n == "delay" ? 0 : n == "origin" ? 1 : n == "ok" ? 2 : -1;
  });
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error_message());
  return r.ok() ? *r : nullptr;
}

}  // namespace

TEST(Expr, ComparesNumbersTextAndBooleans) {
  std::vector<value> late{20.0, std::string("LAX"), true}, early{-3.0, std::string("SFO"), false};
  auto e = compile("delay > 15");
  EXPECT_TRUE(e->test(late));
  EXPECT_FALSE(e->test(early));
  EXPECT_TRUE(compile("origin == 'SFO'")->test(early));
  EXPECT_TRUE(compile("delay >= -3 and not ok")->test(early));
  EXPECT_TRUE(compile("(delay < 0 or origin != \"LAX\") and delay <= 20")->test(early));
  EXPECT_FALSE(compile("(delay < 0 or origin != \"LAX\") and delay <= 20")->test(late));
  EXPECT_TRUE(compile("ok")->test(late));
}

TEST(Expr, NullComparesFalse) {
  std::vector<value> nulls{std::monostate{}, std::monostate{}, std::monostate{}};
  EXPECT_FALSE(compile("delay > 15")->test(nulls));
  EXPECT_FALSE(compile("delay <= 15")->test(nulls));
}

TEST(Expr, ReportsErrorsWithContext) {
  auto resolve = [](const std::string& n) { return n == "delay" ? 0 : -1; };
  EXPECT_NE(compile_expr("delay >", resolve).error_message().find("ends early"), std::string::npos);
  EXPECT_NE(compile_expr("speed > 3", resolve).error_message().find("unknown field 'speed'"),
            std::string::npos);
  EXPECT_NE(compile_expr("delay > 'x", resolve).error_message().find("unterminated"),
            std::string::npos);
  EXPECT_NE(compile_expr("delay ^ 2", resolve).error_message().find("unexpected character"),
            std::string::npos);
  EXPECT_FALSE(compile_expr("(delay > 1", resolve).ok());
}

}  // namespace tessera

namespace tessera {

TEST(Expr, ArithmeticAndFunctionsForDerivedFieldsAndOnDemandFeatures) {
  // Slots: 0 = date (timestamp), 1 = distance, 2 = delay.
  auto resolve = [](const std::string& n) {
    return n == "date" ? 0 : n == "distance" ? 1 : n == "delay" ? 2 : -1;
  };
  auto arrival = compile_expr("date + 60000000 * (30 + distance / 8 + delay)", resolve);
  ASSERT_TRUE(arrival.ok()) << arrival.error_message();
  // 2001-01-01T10:00Z (a Monday) + (30 + 400/8 - 5) minutes = 11:15.
  const int64_t ten = 978343200000000LL;
  std::vector<value> f{timestamp_value{ten}, 400.0, -5.0};
  EXPECT_EQ(std::get<double>((*arrival)->eval(f)), static_cast<double>(ten + 75 * 60000000LL));
  EXPECT_EQ(std::get<double>((*compile_expr("hour(date)", resolve))->eval(f)), 10.0);
  EXPECT_EQ(std::get<double>((*compile_expr("weekday(date)", resolve))->eval(f)), 0.0);  // Monday
  EXPECT_EQ(std::get<double>((*compile_expr("weekday(date + 86400000000 * 6)", resolve))->eval(f)),
            6.0);  // Sunday
  EXPECT_EQ(std::get<double>((*compile_expr("abs(delay) * 2 - 1", resolve))->eval(f)), 9.0);
  EXPECT_EQ(std::get<double>((*compile_expr("10 - 4 - 3", resolve))->eval(f)),
            3.0);  // left-associative
  EXPECT_TRUE((*compile_expr("delay * -2 > 9", resolve))->test(f));
  // Null in, null out; division by zero is null, never inf.
  std::vector<value> nulls{timestamp_value{ten}, std::monostate{}, 1.0};
  EXPECT_TRUE(is_null((*arrival)->eval(nulls)));
  EXPECT_TRUE(is_null((*compile_expr("delay / 0", resolve))->eval(f)));
  EXPECT_FALSE(compile_expr("sqrt(delay)", resolve).ok());
  EXPECT_NE(compile_expr("sqrt(delay)", resolve).error_message().find("unknown function 'sqrt'"),
            std::string::npos);
  EXPECT_FALSE(compile_expr("delay +", resolve).ok());
}

}  // namespace tessera
