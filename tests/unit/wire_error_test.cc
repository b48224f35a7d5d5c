// The error format at the RPC edge (include/tessera/wire_error.h): every code survives the trip
// through an exception's text, and text without a code is read by the exception's type.
#include <gtest/gtest.h>

#include "tessera/wire_error.h"

namespace tessera {
namespace {

TEST(WireError, EveryCodeSurvivesTheTripThroughTheText) {
  const errc all[] = {errc::internal,   errc::invalid,  errc::not_found,    errc::retryable,
                      errc::overloaded, errc::deadline, errc::unauthorized, errc::unavailable};
  for (errc c : all) {
    const std::string text = wire_error_text({"shard 3 moved [a bracket] here", c});
    // As a client sees it: kj prefixes the remote side's description.
    error back = parse_wire_error("remote exception: " + text, false, false);
    EXPECT_EQ(back.code, c) << text;
    EXPECT_EQ(back.message, "shard 3 moved [a bracket] here") << text;
  }
  EXPECT_EQ(wire_error_text({"x", errc::not_found}), "[not_found] x");
}

TEST(WireError, TextWithoutACodeIsReadByTheExceptionsType) {
  EXPECT_EQ(parse_wire_error("remote exception: something broke", false, false).code,
            errc::internal);
  EXPECT_EQ(parse_wire_error("too busy", true, false).code, errc::retryable);
  EXPECT_EQ(parse_wire_error("connect(): Connection refused", false, true).code, errc::unavailable);
  // An unknown token is not a code: the text stays whole.
  error e = parse_wire_error("[teapot] short and stout", false, false);
  EXPECT_EQ(e.code, errc::internal);
  EXPECT_EQ(e.message, "[teapot] short and stout");
  EXPECT_TRUE(is_retryable(errc::unavailable));
  EXPECT_FALSE(is_retryable(errc::deadline));
}

}  // namespace
}  // namespace tessera
