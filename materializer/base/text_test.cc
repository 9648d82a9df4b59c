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
  // The default cap: a 20 MB value is echoed as 200 bytes and the marker.
  EXPECT_EQ(printable(std::string(20'000'000, 'x')),
            std::string(200, 'x') + "... (20000000 bytes)");
}

TEST(Text, ClipMessageKeepsHeadAndTailOnCharacterBoundaries) {
  EXPECT_EQ(clip_message("short"), "short");
  const std::string exact(kMaxMessageBytes, 'x');
  EXPECT_EQ(clip_message(exact), exact);
  const std::string big = "subject: " + std::string(20'000'000, 'x') + "; run the fix";
  const std::string clipped = clip_message(big);
  EXPECT_LT(clipped.size(), kMaxMessageBytes + 64);
  EXPECT_TRUE(clipped.starts_with("subject: xxx")) << clipped.substr(0, 40);
  EXPECT_TRUE(clipped.ends_with("xxx; run the fix")) << clipped.substr(clipped.size() - 40);
  EXPECT_NE(clipped.find(" bytes cut ...] "), std::string::npos);
  // Two-byte characters throughout: no cut falls inside one, so the result is valid UTF-8.
  std::string e_acute;
  for (int i = 0; i < 5000; ++i) e_acute += "\xc3\xa9";
  for (size_t max : {size_t{100}, size_t{101}, size_t{102}, size_t{103}}) {
    const std::string c = clip_message(e_acute, max);
    EXPECT_TRUE(is_valid_utf8(c)) << max;
    EXPECT_LT(c.size(), max + 40) << max;
  }
}

}  // namespace
}  // namespace mat
