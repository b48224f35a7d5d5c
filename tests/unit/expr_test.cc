#include <gtest/gtest.h>

#include "expr.h"

namespace tessera {
namespace {

std::shared_ptr<const expr> compile(const std::string& s) {
  auto r = compile_expr(s, [](const std::string& n) { return n == "delay" ? 0 : n == "origin" ? 1 : n == "ok" ? 2 : -1; });
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
  EXPECT_NE(compile_expr("speed > 3", resolve).error_message().find("unknown field 'speed'"), std::string::npos);
  EXPECT_NE(compile_expr("delay > 'x", resolve).error_message().find("unterminated"), std::string::npos);
  EXPECT_NE(compile_expr("delay ^ 2", resolve).error_message().find("unexpected character"), std::string::npos);
  EXPECT_FALSE(compile_expr("(delay > 1", resolve).ok());
}

}  // namespace tessera
