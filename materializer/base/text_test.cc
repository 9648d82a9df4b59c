#include "materializer/base/text.h"

#include <gtest/gtest.h>

namespace mat {
namespace {

TEST(Text, Utf8Validation) {
  EXPECT_TRUE(is_valid_utf8("zlib-1.3 caf\xc3\xa9 \xf0\x9f\x90\x8d"));
  EXPECT_FALSE(is_valid_utf8("lib\xff"));
  EXPECT_FALSE(is_valid_utf8("\xc0\xaf"));          // overlong '/'
  EXPECT_FALSE(is_valid_utf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(is_valid_utf8("\xe2\x82"));          // truncated
  EXPECT_FALSE(is_valid_utf8("\xf4\x90\x80\x80"));  // above U+10FFFF
}

TEST(Text, SingleLineProblems) {
  EXPECT_EQ(single_line_problem("numpy", 10), nullptr);
  EXPECT_STREQ(single_line_problem("a\nb", 10), "contains a control character");
  EXPECT_STREQ(single_line_problem("a\x1b[31m", 10), "contains a control character");
  EXPECT_STREQ(single_line_problem("a\xff", 10), "is not valid UTF-8");
  EXPECT_STREQ(single_line_problem(std::string(11, 'a'), 10), "is too long");
}

TEST(Text, PrintableEscapesAndCaps) {
  EXPECT_EQ(printable("ok caf\xc3\xa9"), "ok caf\xc3\xa9");
  EXPECT_EQ(printable("a\xff\n"), "a\\xff\\x0a");
  EXPECT_EQ(printable(std::string(300, 'x'), 5), "xxxxx... (300 bytes)");
}

}  // namespace
}  // namespace mat
