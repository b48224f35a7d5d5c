#include <gtest/gtest.h>

#include "time_util.h"

namespace tessera {

// Expected values from Python's datetime (an independent implementation).
TEST(ParseTimestamp, ReadsIsoForms) {
  EXPECT_EQ(*parse_timestamp("2001-01-01T00:01:00.000Z"), 978307260000000LL);
  EXPECT_EQ(*parse_timestamp("2001-07-01T12:30:45Z"), 993990645000000LL);
  EXPECT_EQ(*parse_timestamp("1999-12-31 23:59"), 946684740000000LL);
  EXPECT_EQ(*parse_timestamp("2001-01-01T00:00:00+02:00"), 978300000000000LL);
  EXPECT_EQ(*parse_timestamp("2001-01-01"), 978307200000000LL);
}

TEST(ParseTimestamp, ReadsEpochNumbersByMagnitude) {
  EXPECT_EQ(*parse_timestamp("978307260"), 978307260000000LL);
  EXPECT_EQ(*parse_timestamp("978307260000"), 978307260000000LL);
  EXPECT_EQ(*parse_timestamp("978307260000000"), 978307260000000LL);
}

TEST(ParseTimestamp, RejectsGarbage) {
  for (auto s :
       {"", "yesterday", "2001-13-01", "2001-01-01T25:00", "2001-01-01T00:00Zjunk", "12:00"})
    EXPECT_FALSE(parse_timestamp(s).ok()) << s;
}

TEST(FormatTimestamp, RoundTrips) {
  EXPECT_EQ(format_timestamp(978307260000000LL), "2001-01-01T00:01:00Z");
  EXPECT_EQ(*parse_timestamp(format_timestamp(993990645123456LL)), 993990645123456LL);
}

TEST(ParseDuration, ReadsUnits) {
  EXPECT_EQ(*parse_duration("1h"), 3600LL * 1000000);
  EXPECT_EQ(*parse_duration("7d"), 7LL * 86400 * 1000000);
  EXPECT_EQ(*parse_duration("250ms"), 250000);
  EXPECT_EQ(*parse_duration("90"), 90LL * 1000000);
  EXPECT_FALSE(parse_duration("1y").ok());
  EXPECT_FALSE(parse_duration("h").ok());
}

}  // namespace tessera
