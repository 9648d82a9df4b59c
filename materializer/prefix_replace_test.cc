// Kernels of the link stage: conda's text/binary prefix replacement, the long-shebang rule,
// entry point scripts and the small parsers of link_plan.cc.
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "materializer/link.h"
#include "materializer/link_internal.h"

namespace mat {
namespace {

using namespace std::string_literals;
using link_internal::kDefaultPlaceholder;

const std::string kPh = kDefaultPlaceholder;  // 32 bytes

TEST(ReplacePrefixText, ReplacesEveryOccurrence) {
  std::string data = "a=" + kPh + "/lib\nb=" + kPh + ":" + kPh + "/bin\n";
  EXPECT_EQ(replace_prefix_text(data, kPh, "/env"), "a=/env/lib\nb=/env:/env/bin\n");
}

TEST(ReplacePrefixText, LongerPrefixIsFineInText) {
  std::string p(200, 'x');
  EXPECT_EQ(replace_prefix_text("x " + kPh + " y", kPh, "/" + p), "x /" + p + " y");
}

TEST(ReplacePrefixText, ShebangSpacesAreEscapedOnlyInTheShebang) {
  std::string data = "#!" + kPh + "/bin/python -u\nprint('" + kPh + "')\n";
  EXPECT_EQ(replace_prefix_text(data, kPh, "/my env"),
            "#!/my\\ env/bin/python -u\nprint('/my env')\n");
}

TEST(ReplacePrefixText, NoNewlineMeansNoShebangEscaping) {
  // conda only inspects the shebang when the data contains a newline.
  EXPECT_EQ(replace_prefix_text("#!" + kPh + "/bin/sh", kPh, "/a b"), "#!/a b/bin/sh");
}

TEST(ReplacePrefixText, PlaceholderMissingLeavesDataAlone) {
  EXPECT_EQ(replace_prefix_text("hello\nworld\n", kPh, "/env"), "hello\nworld\n");
}

TEST(ReplaceLongShebang, EscapedSpaceUsesEnvAndKeepsOptions) {
  std::string data = replace_prefix_text("#!" + kPh + "/bin/python -u -E\nx = 1\n", kPh, "/my env");
  EXPECT_EQ(replace_long_shebang(data), "#!/usr/bin/env python -u -E\nx = 1\n");
}

TEST(ReplaceLongShebang, LongerThan127UsesEnv) {
  std::string prefix = "/" + std::string(130, 'p');
  std::string data = "#!" + prefix + "/bin/perl -w\nprint 1;\n";
  EXPECT_EQ(replace_long_shebang(data), "#!/usr/bin/env perl -w\nprint 1;\n");
}

TEST(ReplaceLongShebang, Exactly127IsKept) {
  std::string exe = "/" + std::string(120, 'p') + "/bin/x";  // 127 - 2 = 125 bytes
  exe = exe.substr(0, 125);
  exe.replace(exe.size() - 2, 2, "/y");
  std::string data = "#!" + exe + "\nrest\n";
  ASSERT_EQ(data.find('\n'), 127u);
  EXPECT_EQ(replace_long_shebang(data), data);
  std::string longer = "#!" + exe + "z\nrest\n";
  EXPECT_EQ(replace_long_shebang(longer), "#!/usr/bin/env yz\nrest\n");
}

TEST(ReplaceLongShebang, ShortShebangAndNonShebangUnchanged) {
  EXPECT_EQ(replace_long_shebang("#!/usr/bin/python3 -s\nx\n"), "#!/usr/bin/python3 -s\nx\n");
  EXPECT_EQ(replace_long_shebang("no shebang " + std::string(300, 'x')),
            "no shebang " + std::string(300, 'x'));
  EXPECT_EQ(replace_long_shebang("#!relative/python\n"), "#!relative/python\n");
  EXPECT_EQ(replace_long_shebang(""), "");
}

TEST(ReplaceLongShebang, SpacesAfterBangAndNoTrailingNewline) {
  std::string exe = "/" + std::string(140, 'q') + "/bin/bash";
  EXPECT_EQ(replace_long_shebang("#!  " + exe + " -e"), "#!/usr/bin/env bash -e");
}

TEST(ReplacePrefixBinary, PadsWithNulsToTheSameLength) {
  std::string data = "AB"s + kPh + "/lib/x.so" + '\0' + "CD"s;
  Result<std::string> r = replace_prefix_binary(data, kPh, "/env");
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  std::string want = "AB/env/lib/x.so"s + std::string(1 + kPh.size() - 4, '\0') + "CD";
  EXPECT_EQ(*r, want);
  EXPECT_EQ(r->size(), data.size());
}

TEST(ReplacePrefixBinary, TwoOccurrencesInOneCString) {
  std::string data = kPh + "/lib:" + kPh + "/lib64" + '\0' + "tail";
  Result<std::string> r = replace_prefix_binary(data, kPh, "/e");
  ASSERT_TRUE(r.ok());
  std::string want = "/e/lib:/e/lib64" + std::string(2 * (kPh.size() - 2) + 1, '\0') + "tail";
  EXPECT_EQ(*r, want);
}

TEST(ReplacePrefixBinary, NewlineBeforeNulIsLeftUntouched) {
  // '.' in conda's pattern does not match '\n': this occurrence is not a C string match...
  std::string untouched = "x" + kPh + "/a\nb" + '\0';
  // ...but a later, proper C string still is.
  std::string later = kPh + "/c" + '\0';
  Result<std::string> r = replace_prefix_binary(untouched + later, kPh, "/e");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, untouched + "/e/c" + std::string(kPh.size() - 2 + 1, '\0'));
}

TEST(ReplacePrefixBinary, NoTerminatingNulIsLeftUntouched) {
  std::string data = "abc" + kPh + "/no/nul";
  Result<std::string> r = replace_prefix_binary(data, kPh, "/e");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, data);
}

TEST(ReplacePrefixBinary, LongerPrefixIsAnErrorNamingSizes) {
  std::string data = kPh + "/lib" + '\0';
  std::string longp = "/" + std::string(40, 'l');
  Result<std::string> r = replace_prefix_binary(data, kPh, longp);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidInput);
  EXPECT_NE(r.status().message().find("(41 bytes) is longer than the placeholder (32 bytes)"),
            std::string::npos)
      << r.status().message();
  // No occurrence terminated by a NUL: nothing to replace, so no error (as in conda).
  EXPECT_TRUE(replace_prefix_binary(kPh + "\n" + '\0', kPh, longp).ok());
}

TEST(ReplacePrefixBinary, LengthIsInvariantOnRandomData) {
  std::mt19937 rng(42);
  for (int round = 0; round < 200; ++round) {
    std::string data;
    int pieces = static_cast<int>(rng() % 20);
    for (int k = 0; k < pieces; ++k) {
      switch (rng() % 4) {
        case 0:
          data += kPh;
          break;
        case 1:
          data += '\0';
          break;
        case 2:
          data += '\n';
          break;
        default:
          for (int b = static_cast<int>(rng() % 16); b > 0; --b) {
            data += static_cast<char>(rng() % 256);
          }
      }
    }
    Result<std::string> r = replace_prefix_binary(data, kPh, "/short/prefix");
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->size(), data.size());
  }
}

TEST(EntryPoint, ScriptMatchesConda) {
  std::string s = link_internal::entry_point_script("/env/bin/python3.11", "pkg.cli", "main.run");
  EXPECT_EQ(s,
            "#!/env/bin/python3.11\n"
            "# -*- coding: utf-8 -*-\n"
            "import re\n"
            "import sys\n"
            "\n"
            "from pkg.cli import main\n"
            "\n"
            "if __name__ == '__main__':\n"
            "    sys.argv[0] = re.sub(r'(-script\\.pyw?|\\.exe)?$', '', sys.argv[0])\n"
            "    sys.exit(main.run())\n");
}

TEST(EntryPoint, LongOrSpacedPythonUsesShTrampoline) {
  std::string spaced = "/my env/bin/python3.11";
  EXPECT_EQ(link_internal::entry_point_shebang(spaced),
            "#!/bin/sh\n'''exec' \"/my env/bin/python3.11\" \"$0\" \"$@\" #'''\n");
  std::string exact = "/" + std::string(124, 'p');  // "#!" + 125 + "\n" = 128 > 127
  EXPECT_EQ(link_internal::entry_point_shebang(exact).substr(0, 10), "#!/bin/sh\n");
  std::string fits = "/" + std::string(123, 'p');
  EXPECT_EQ(link_internal::entry_point_shebang(fits), "#!" + fits + "\n");
}

TEST(HasPrefixLine, ParsesConda3FieldAnd1FieldForms) {
  link_internal::HasPrefixLine hp;
  ASSERT_TRUE(link_internal::parse_has_prefix_line("bin/tool", &hp));
  EXPECT_EQ(hp.placeholder, kPh);
  EXPECT_EQ(hp.mode, "text");
  EXPECT_EQ(hp.path, "bin/tool");
  ASSERT_TRUE(link_internal::parse_has_prefix_line("/opt/ph binary lib/libx.so", &hp));
  EXPECT_EQ(hp.placeholder, "/opt/ph");
  EXPECT_EQ(hp.mode, "binary");
  EXPECT_EQ(hp.path, "lib/libx.so");
  ASSERT_TRUE(link_internal::parse_has_prefix_line("\"/opt/p h\" text 'share/a b.txt'", &hp));
  EXPECT_EQ(hp.placeholder, "/opt/p h");
  EXPECT_EQ(hp.path, "share/a b.txt");
  EXPECT_FALSE(link_internal::parse_has_prefix_line("a b", &hp));
  EXPECT_FALSE(link_internal::parse_has_prefix_line("/p weird path", &hp));
}

TEST(NoarchPython, MapsSitePackagesAndScripts) {
  using link_internal::noarch_python_target;
  EXPECT_EQ(noarch_python_target("site-packages/six.py", "3.11"),
            "lib/python3.11/site-packages/six.py");
  EXPECT_EQ(noarch_python_target("site-packages/six.py", "3.12.1"),
            "lib/python3.12/site-packages/six.py");
  EXPECT_EQ(noarch_python_target("python-scripts/tool", "3.11"), "bin/tool");
  EXPECT_EQ(noarch_python_target("info/x", "3.11"), "info/x");
  EXPECT_EQ(noarch_python_target("share/site-packages/x", "3.11"), "share/site-packages/x");
}

TEST(CondaMeta, ChannelDisplayNames) {
  using link_internal::channel_display_name;
  EXPECT_EQ(channel_display_name("https://conda.anaconda.org/conda-forge"), "conda-forge");
  EXPECT_EQ(channel_display_name("https://conda.anaconda.org/t/abc123/private/"), "private");
  EXPECT_EQ(channel_display_name("https://repo.anaconda.com/pkgs/main"), "pkgs/main");
  EXPECT_EQ(channel_display_name("file:///srv/channel"), "file:///srv/channel");
  EXPECT_EQ(link_internal::history_dist("https://conda.anaconda.org/conda-forge/linux-64",
                                        "linux-64", "zlib", "1.3", "h0"),
            "conda-forge/linux-64::zlib-1.3-h0");
}

}  // namespace
}  // namespace mat
