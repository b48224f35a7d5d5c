#include <gtest/gtest.h>

#include <capnp/message.h>

#include "codec.h"
#include "time_util.h"

namespace tessera {

TEST(RecordCodec, RoundTripsEveryType) {
  record r{978307260000000LL,
           42,
           7,
           {std::monostate{}, int64_t{-5}, 2.5, std::string("LAX"), true, timestamp_value{123}}};
  record back;
  ASSERT_TRUE(decode_record(encode_record(r), back));
  EXPECT_EQ(back.time, r.time);
  EXPECT_EQ(back.seq, 42u);
  EXPECT_EQ(back.idx, 7u);
  ASSERT_EQ(back.fields.size(), r.fields.size());
  EXPECT_TRUE(back.fields == r.fields);
}

TEST(RecordCodec, RejectsTruncatedAndCorruptBytes) {
  std::string bytes = encode_record(record{1, 2, 3, {std::string("abcdef"), 1.0}});
  record out;
  for (size_t n = 0; n < bytes.size(); ++n)
    EXPECT_FALSE(decode_record(bytes.substr(0, n), out)) << n;
  std::string bad = bytes;
  bad[0] = 9;  // unknown format version
  EXPECT_FALSE(decode_record(bad, out));
  EXPECT_FALSE(decode_record(bytes + "x", out));
}

// Decoding some fields into slots gives what decoding all and picking them gives, every type
// skipped and kept; damaged bytes are refused the same way.
TEST(RecordCodec, DecodesOnlyTheFieldsAskedForIntoTheirSlots) {
  record r{978307260000000LL,
           42,
           7,
           {std::monostate{}, int64_t{-5}, 2.5, std::string("LAX"), true, timestamp_value{123},
            std::string("SFO"), -0.0}};
  const std::string bytes = encode_record(r);
  const std::vector<std::vector<int>> layouts = {{},
                                                 {-1, -1, 0},
                                                 {0, 1, 2, 3, 4, 5, 6, 7},
                                                 {7, 6, 5, 4, 3, 2, 1, 0},
                                                 {-1, 0, -1, 1, -1, 2, -1, 3},
                                                 {-1, -1, -1, -1, -1, -1, 1}};
  for (auto& slot_of : layouts) {
    size_t slots = 0;
    for (int sl : slot_of) slots = std::max(slots, static_cast<size_t>(sl + 1));
    record got;
    ASSERT_TRUE(decode_record(bytes, slot_of, slots, got));
    EXPECT_EQ(got.time, r.time);
    EXPECT_EQ(got.seq, 42u);
    EXPECT_EQ(got.idx, 7u);
    std::vector<value> want(slots);
    for (size_t i = 0; i < slot_of.size(); ++i)
      if (slot_of[i] >= 0) want[static_cast<size_t>(slot_of[i])] = r.fields[i];
    EXPECT_TRUE(got.fields == want);
    for (size_t n = 0; n < bytes.size(); ++n)
      EXPECT_FALSE(decode_record(bytes.substr(0, n), slot_of, slots, got)) << n;
    EXPECT_FALSE(decode_record(bytes + "x", slot_of, slots, got));
  }
}

TEST(ParseTextAs, ConvertsOrExplains) {
  EXPECT_EQ(std::get<double>(*parse_text_as("-13", field_type::float64)), -13.0);
  EXPECT_EQ(std::get<int64_t>(*parse_text_as("2176", field_type::int64)), 2176);
  EXPECT_EQ(
      std::get<timestamp_value>(*parse_text_as("2001-01-01T00:01:00.000Z", field_type::timestamp))
          .micros,
      978307260000000LL);
  EXPECT_NE(
      parse_text_as("abc", field_type::float64).error_message().find("expected float, got 'abc'"),
      std::string::npos);
  EXPECT_FALSE(parse_text_as("nan", field_type::float64).ok());
  EXPECT_FALSE(parse_text_as("1.5", field_type::int64).ok());
  EXPECT_FALSE(parse_text_as("maybe", field_type::boolean).ok());
}

class NormalizeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto d = definitions::load_file(TSR_TEST_DATA_DIR "/flights-departure.lua");
    ASSERT_TRUE(d.ok());
    defs = *d;
    s = defs->find_stream("flights");
  }
  wire::Event::Builder event(capnp::MallocMessageBuilder& mb,
                             std::vector<std::pair<std::string, std::string>> fields) {
    auto e = mb.initRoot<wire::Event>();
    auto fl = e.initFields(static_cast<unsigned>(fields.size()));
    for (unsigned i = 0; i < fields.size(); ++i) {
      fl[i].setName(fields[i].first);
      fl[i].initValue().setText(fields[i].second);
    }
    return e;
  }
  std::shared_ptr<const definitions> defs;
  const stream_def* s = nullptr;
};

TEST_F(NormalizeTest, TypesFieldsAndBuildsKeys) {
  capnp::MallocMessageBuilder mb;
  auto e = event(mb, {{"date", "2001-01-01T00:01:00.000Z"},
                      {"delay", "33"},
                      {"origin", "LAS"},
                      {"destination", "PHL"},
                      {"extra", "ignored"}});
  normalized_event ne;
  event_error err;
  ASSERT_TRUE(normalize_event(e.asReader(), *s, ne, err)) << err.reason;
  EXPECT_EQ(ne.time, 978307260000000LL);
  EXPECT_EQ(std::get<double>(ne.fields[s->field_index("delay")]), 33.0);
  EXPECT_EQ(entity_key(ne, *defs->find_plan("flights", "route"), err), "LAS-PHL");
  EXPECT_EQ(entity_key(ne, *defs->find_plan("flights", "origin"), err), "LAS");
}

TEST_F(NormalizeTest, RejectsWrongTypesMissingKeysAndAbsurdTimes) {
  normalized_event ne;
  event_error err;
  {
    capnp::MallocMessageBuilder mb;
    EXPECT_FALSE(normalize_event(event(mb, {{"date", "2001-01-01"}, {"delay", "late"}}).asReader(),
                                 *s, ne, err));
    EXPECT_EQ(err.field, "delay");
  }
  {
    capnp::MallocMessageBuilder mb;
    EXPECT_FALSE(normalize_event(event(mb, {{"delay", "1"}}).asReader(), *s, ne, err));
    EXPECT_EQ(err.field, "date");
  }
  {
    capnp::MallocMessageBuilder mb;
    EXPECT_FALSE(normalize_event(event(mb, {{"date", "2999-01-01"}}).asReader(), *s, ne, err));
    EXPECT_NE(err.reason.find("more than max_future (1d) past the wall clock"), std::string::npos)
        << err.reason;
    EXPECT_TRUE(err.outlier);
  }
  {
    capnp::MallocMessageBuilder mb;
    EXPECT_FALSE(normalize_event(event(mb, {{"date", "1960-01-01"}}).asReader(), *s, ne, err));
  }
  {
    capnp::MallocMessageBuilder mb;
    ASSERT_TRUE(normalize_event(event(mb, {{"date", "2001-01-01"}, {"origin", "LAX"}}).asReader(),
                                *s, ne, err));
    EXPECT_EQ(entity_key(ne, *defs->find_plan("flights", "route"), err), "");
    EXPECT_EQ(err.field, "destination");
  }
}

TEST(VectorCodec, RoundTrips) {
  feature_vector v{"airport_delay",
                   1,
                   "LAX",
                   10,
                   9,
                   vector_status::stale,
                   {{"a", int64_t{3}, 9},
                    {"b", std::monostate{}, 0},
                    {"c", std::vector<std::string>{"x", "y"}, 8}}};
  capnp::MallocMessageBuilder mb;
  write_vector(mb.initRoot<wire::FeatureVector>(), v);
  auto back = read_vector(mb.getRoot<wire::FeatureVector>().asReader());
  EXPECT_EQ(back.entity, "LAX");
  EXPECT_EQ(back.status, vector_status::stale);
  ASSERT_EQ(back.values.size(), 3u);
  EXPECT_TRUE(back.values[2].v == v.values[2].v);
  EXPECT_TRUE(is_null(back.values[1].v));
}

}  // namespace tessera

namespace tessera {

TEST(NormalizeExample, DerivesTheArrivalTimeAndIgnoresASentValue) {
  auto d = definitions::load_file(TSR_EXAMPLES_DIR "/flights/flights.lua");
  ASSERT_TRUE(d.ok()) << d.error_message();
  const stream_def* s = (*d)->find_stream("flights");
  capnp::MallocMessageBuilder mb;
  auto e = mb.initRoot<wire::Event>();
  const std::vector<std::pair<std::string, std::string>> fs{{"date", "2001-01-01T00:01:00.000Z"},
                                                            {"delay", "33"},
                                                            {"distance", "400"},
                                                            {"origin", "LAS"},
                                                            {"destination", "PHL"},
                                                            {"arrival", "1999-01-01"}};
  auto fl = e.initFields(static_cast<unsigned>(fs.size()));
  for (unsigned i = 0; i < fs.size(); ++i) {
    fl[i].setName(fs[i].first);
    fl[i].initValue().setText(fs[i].second);
  }
  normalized_event ne;
  event_error err;
  ASSERT_TRUE(normalize_event(e.asReader(), *s, ne, err)) << err.reason;
  // 00:01 + (30 + 400 / 8 + 33) minutes = 01:54.
  EXPECT_EQ(ne.time, 978307260000000LL + 113 * 60000000LL);
  // Without a delay the arrival cannot be derived: the event has no time, and says why.
  fl[1].initValue().setText("");
  capnp::MallocMessageBuilder mb2;
  auto e2 = mb2.initRoot<wire::Event>();
  auto fl2 = e2.initFields(2);
  fl2[0].setName("date");
  fl2[0].initValue().setText("2001-01-01T00:01:00Z");
  fl2[1].setName("origin");
  fl2[1].initValue().setText("LAS");
  EXPECT_FALSE(normalize_event(e2.asReader(), *s, ne, err));
  EXPECT_EQ(err.field, "arrival");
  EXPECT_NE(err.reason.find("derived from"), std::string::npos) << err.reason;
}

}  // namespace tessera

namespace tessera {
// The gateway writes events' values by position, named once per batch (Event.values,
// EventBatch.fieldNames). Read back they must equal the same event sent with named fields, in
// any name order, with names the stream does not have (or derives itself) ignored, and a bad
// value reported under its field's name.
TEST(NormalizeExample, PositionalValuesReadAsNamedFields) {
  auto d = definitions::load_file(TSR_EXAMPLES_DIR "/flights/flights.lua");
  ASSERT_TRUE(d.ok()) << d.error_message();
  const auto& defs = *d;
  const stream_def* s = defs->find_stream("flights");
  const std::vector<std::pair<std::string, std::string>> fs{
      {"origin", "LAS"},        {"extra", "ignored"},
      {"delay", "33"},          {"date", "2001-01-01T00:01:00.000Z"},
      {"destination", "PHL"},   {"distance", "400"},
      {"arrival", "1999-01-01"}};
  capnp::MallocMessageBuilder named_mb;
  auto ne = named_mb.initRoot<wire::Event>();
  auto fl = ne.initFields(static_cast<unsigned>(fs.size()));
  for (unsigned i = 0; i < fs.size(); ++i) {
    fl[i].setName(fs[i].first);
    fl[i].initValue().setText(fs[i].second);
  }
  normalized_event named, pos;
  event_error err;
  ASSERT_TRUE(normalize_event(ne.asReader(), *s, named, err)) << err.reason;

  capnp::MallocMessageBuilder mb;
  auto b = mb.initRoot<wire::EventBatch>();
  auto names = b.initFieldNames(static_cast<unsigned>(fs.size()));
  for (unsigned i = 0; i < fs.size(); ++i) names.set(i, fs[i].first);
  auto e = b.initEvents(2);
  auto v = e[0].initValues(static_cast<unsigned>(fs.size()));
  for (unsigned i = 0; i < fs.size(); ++i) v[i].setText(fs[i].second);
  const std::vector<int> positional = positional_fields(b.asReader(), *s);
  EXPECT_EQ(positional[1], -1);  // "extra": not a field of the stream
  EXPECT_EQ(positional[6], -1);  // "arrival": derived by the reader
  ASSERT_TRUE(normalize_event(b.asReader().getEvents()[0], *s, pos, err, &positional))
      << err.reason;
  EXPECT_EQ(pos.time, named.time);
  EXPECT_EQ(pos.time, 978307260000000LL + 113 * 60000000LL);  // arrival: 00:01 + 113 min
  ASSERT_EQ(pos.fields.size(), named.fields.size());
  for (size_t f = 0; f < pos.fields.size(); ++f)
    EXPECT_EQ(pos.fields[f], named.fields[f]) << s->fields[f].name;
  EXPECT_EQ(entity_key(pos, *defs->find_plan("flights", "route"), err), "LAS-PHL");

  // A value of the wrong type is refused under its field's name.
  auto bad = e[1].initValues(static_cast<unsigned>(fs.size()));
  for (unsigned i = 0; i < fs.size(); ++i) bad[i].setText(fs[i].second);
  bad[2].setText("late");
  EXPECT_FALSE(normalize_event(b.asReader().getEvents()[1], *s, pos, err, &positional));
  EXPECT_EQ(err.field, "delay");
  // Without the batch's names the values are not read: no event time.
  EXPECT_FALSE(normalize_event(b.asReader().getEvents()[0], *s, pos, err));
}
}  // namespace tessera
