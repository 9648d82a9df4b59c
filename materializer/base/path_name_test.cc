// The path-component validator: every value from a package, lock or server that becomes part
// of a path passes it (path_name.h).
#include "materializer/base/path_name.h"

#include <gtest/gtest.h>

#include <string>

namespace mat {
namespace {

using namespace std::string_literals;

TEST(PathName, HostileComponentsAreRefused) {
  const std::pair<std::string, std::string> cases[] = {
      {"", "empty"},
      {".", "'.'"},
      {"..", "'..'"},
      {"../../x", "'/'"},
      {"/tmp/x", "'/'"},
      {"a/b", "'/'"},
      {"a\0b"s, "NUL"},
      {"a\nb", "control"},
      {"a\rb", "control"},
      {"\x1b[31mred", "control"},
      {"del\x7f", "control"},
      {std::string(256, 'a'), "255"},
      {"\xff", "UTF-8"},
      {"\xc0\xaf", "UTF-8"},          // overlong '/'
      {"\xed\xa0\x80", "UTF-8"},      // a surrogate
      {"\xf4\x90\x80\x80", "UTF-8"},  // above U+10FFFF
      {"abc\xe2\x82", "UTF-8"},       // truncated sequence
  };
  for (const auto& [value, why] : cases) {
    const char* problem = path_component_problem(value);
    ASSERT_NE(problem, nullptr) << shown_name(value);
    EXPECT_NE(std::string(problem).find(why), std::string::npos)
        << shown_name(value) << ": " << problem;
  }
}

TEST(PathName, OrdinaryComponentsPass) {
  for (std::string ok : {"numpy"s, "python3.11"s, "ca-certificates"s, "1.26.4"s, "py311h64a7726_0"s,
                         "x86_64-conda-linux-gnu-gcc"s, "héllo_wörld"s, "日本語"s,
                         "-starts-with-dash"s, "..."s, "a..b"s, std::string(255, 'a')}) {
    EXPECT_EQ(path_component_problem(ok), nullptr) << ok;
  }
}

TEST(PathName, RelativePaths) {
  EXPECT_EQ(relative_path_problem("lib/python3.11/site-packages/x.py"), nullptr);
  EXPECT_EQ(relative_path_problem("bin/x"), nullptr);
  for (std::string bad : {""s, "/etc/passwd"s, "a//b"s, "a/"s, "a/../b"s, "../x"s, "a/./b"s,
                          "a/\x01/b"s, "a/b\0c"s, std::string(4096, 'a')}) {
    EXPECT_NE(relative_path_problem(bad), nullptr) << shown_name(bad);
  }
  // Each refusal gives its own reason (the message is the user's only clue).
  EXPECT_STREQ(relative_path_problem("a/../b"), "it has a '..' component");
  EXPECT_STREQ(relative_path_problem(".."), "it has a '..' component");
  EXPECT_STREQ(relative_path_problem("a/./b"), "it has a '.' component");
  EXPECT_STREQ(relative_path_problem("a//b"), "it has an empty component ('//' or a trailing '/')");
  EXPECT_STREQ(relative_path_problem("/etc"), "it is absolute");
  std::string long_ok;
  while (long_ok.size() + 200 < kMaxRelativePathBytes) long_ok += std::string(199, 'd') + "/";
  long_ok += "f";
  EXPECT_EQ(relative_path_problem(long_ok), nullptr);
}

TEST(PathName, StatusNamesTheValueEscapedAndCapped) {
  Status st = check_path_component("../../x", "entry_points.txt: console_scripts name");
  EXPECT_EQ(st.code(), Code::kCorrupt);
  EXPECT_EQ(st.message(),
            "entry_points.txt: console_scripts name '../../x' is not a valid file name: it "
            "contains '/'");
  Status lock = check_path_component("a\nb", "lock name", Code::kInvalidInput);
  EXPECT_EQ(lock.code(), Code::kInvalidInput);
  EXPECT_NE(lock.message().find("'a\\x0ab'"), std::string::npos) << lock.message();
  EXPECT_TRUE(check_path_component("numpy", "name").ok());
  EXPECT_EQ(shown_name(std::string(500, 'x')).size(), 83u);  // 80 bytes + "..."
  EXPECT_EQ(shown_name("h\xc3\xa9\xff"), "h\xc3\xa9\\xff");
  Status rel = check_relative_path("a/../../b", "target path");
  EXPECT_NE(rel.message().find("not a valid relative path"), std::string::npos);
}

}  // namespace
}  // namespace mat
