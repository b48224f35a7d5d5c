// runtime/csv.h: the fields of one CSV line, checked against fields written out by hand.
#include <gtest/gtest.h>

#include "runtime/csv.h"

namespace tessera {
namespace {

using fields = std::vector<std::string>;

fields split(std::string_view line) {
  fields out;
  auto st = split_csv_line(line, 1, out);
  EXPECT_TRUE(st) << "line <" << line << ">: " << st.error_message();
  return out;
}

TEST(Csv, PlainFieldsSplitAtCommasAndKeepTheirSpaces) {
  EXPECT_EQ(split("a,b,c"), (fields{"a", "b", "c"}));
  EXPECT_EQ(split(" a , b"), (fields{" a ", " b"}));
  EXPECT_EQ(split("3.5,-2,"), (fields{"3.5", "-2", ""}));
  EXPECT_EQ(split(",,"), (fields{"", "", ""}));
  EXPECT_EQ(split(""), (fields{""}));
}

TEST(Csv, QuotedFieldsHoldCommasAndDoubledQuotes) {
  EXPECT_EQ(split(R"("a, b",c)"), (fields{"a, b", "c"}));
  EXPECT_EQ(split(R"("say ""hi""",x)"), (fields{R"(say "hi")", "x"}));
  EXPECT_EQ(split(R"("",x,"")"), (fields{"", "x", ""}));
  EXPECT_EQ(split(R"("""")"), (fields{R"(")"}));
  // As written by `tessera dataset build` (actors/training/dataset.cc: put_quoted).
  EXPECT_EQ(split(R"(LAX-SFO,1.5,"a ""q"", b")"), (fields{"LAX-SFO", "1.5", R"(a "q", b)"}));
}

TEST(Csv, AQuoteInsideAPlainFieldIsText) {
  EXPECT_EQ(split(R"(5'11",x)"), (fields{R"(5'11")", "x"}));
  EXPECT_EQ(split(R"(a"b"c)"), (fields{R"(a"b"c)"}));
  // Text after a closing quote joins the field; a later quote there is text.
  EXPECT_EQ(split(R"("ab"c"d,e)"), (fields{R"(abc"d)", "e"}));
}

TEST(Csv, CarriageReturnsOutsideQuotesAreDroppedAndInsideKept) {
  EXPECT_EQ(split("a,b\r"), (fields{"a", "b"}));
  EXPECT_EQ(split("\"a\rb\",c\r"), (fields{"a\rb", "c"}));
}

TEST(Csv, AnUnterminatedQuoteIsAnInvalidLineNamedByItsNumber) {
  fields out;
  auto st = split_csv_line(R"(a,"b,c)", 7, out);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error_code(), errc::invalid);
  EXPECT_EQ(st.error_message(), "line 7: unterminated quote");
  // A doubled quote at the end does not close the field.
  st = split_csv_line(R"("ab"")", 12, out);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error_message(), "line 12: unterminated quote");
  // Callers that name the line themselves pass 0.
  st = split_csv_line(R"(")", 0, out);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error_code(), errc::invalid);
  EXPECT_EQ(st.error_message(), "unterminated quote");
}

TEST(Csv, FieldsAreReplacedNotAppended) {
  fields out{"stale"};
  ASSERT_TRUE(split_csv_line("x,y", 2, out));
  EXPECT_EQ(out, (fields{"x", "y"}));
}

}  // namespace
}  // namespace tessera
