#include "materializer/base/doc_limits.h"

#include <gtest/gtest.h>

#include <string>

#include "materializer/base/json.h"

namespace mat {
namespace {

std::string repeat(std::string_view s, int n) {
  std::string out;
  out.reserve(s.size() * static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

constexpr int kDeep = 100000;

TEST(DocDepth, Json) {
  EXPECT_EQ(doc_depth("1", DocFormat::kJson), 0);
  EXPECT_EQ(doc_depth("[1]", DocFormat::kJson), 1);
  EXPECT_EQ(doc_depth(R"({"a": [1, {"b": 2}], "c": {}})", DocFormat::kJson), 3);
  // Brackets in strings, escaped quotes included, do not count.
  EXPECT_EQ(doc_depth(R"({"a": "[[[\"[[[", "b": "\\"})", DocFormat::kJson), 1);
}

TEST(DocDepth, Yaml) {
  EXPECT_EQ(doc_depth("a: b\n", DocFormat::kYaml), 1);
  EXPECT_EQ(doc_depth("a:\n  b:\n    c: 1\n", DocFormat::kYaml), 3);
  // A sequence at its key's column is one level deeper than the mapping.
  EXPECT_EQ(doc_depth("a:\n- 1\n- 2\nb: 3\n", DocFormat::kYaml), 2);
  EXPECT_EQ(doc_depth("- - - x\n", DocFormat::kYaml), 3);
  EXPECT_EQ(doc_depth("- name: x\n  hash:\n    md5: y\n", DocFormat::kYaml), 3);
  EXPECT_EQ(doc_depth("a: [1, [2, {b: 3}]]\n", DocFormat::kYaml), 4);
  // Quotes, comments and block scalars hide brackets; an apostrophe in a plain scalar is text.
  EXPECT_EQ(doc_depth("a: \"[[[\" # [[[\nb: don't [x]\nc: |\n  [[[[\n  {{{{\nd: 1\n",
                      DocFormat::kYaml),
            2);
  // A pixi.lock's environment entries are 6 deep.
  EXPECT_EQ(doc_depth("environments:\n  default:\n    packages:\n      linux-64:\n      - conda: "
                      "https://x/linux-64/a-1-0.conda\n",
                      DocFormat::kYaml),
            6);
}

TEST(DocDepth, Toml) {
  EXPECT_EQ(doc_depth("a = 1\n", DocFormat::kToml), 1);
  EXPECT_EQ(doc_depth("a.b.c = 1.5\n", DocFormat::kToml), 3);
  EXPECT_EQ(doc_depth("[t]\nx = 1\n", DocFormat::kToml), 2);
  EXPECT_EQ(doc_depth("[[package]]\nwheels = [{ url = \"a.b.c\", hashes = { sha256 = \"x\" } }]\n",
                      DocFormat::kToml),
            6);
  // Dots in values (floats, dates, strings) and in comments are not keys.
  EXPECT_EQ(doc_depth("v = [1.5, 2.5, 3.5, \"a.b.c.d\"] # x.y.z\nt = 1979-05-27T07:32:00.5Z\n",
                      DocFormat::kToml),
            2);
  EXPECT_EQ(doc_depth("s = '''\n[a.b.c.d.e]\n'''\n", DocFormat::kToml), 1);
}

TEST(DocLimits, HundredThousandDeepIsRefusedInEveryFormat) {
  struct Case {
    DocFormat format;
    std::string text;
  } cases[] = {
      {DocFormat::kJson, repeat("[", kDeep) + repeat("]", kDeep)},
      {DocFormat::kJson, repeat("{\"a\":", kDeep) + "1" + repeat("}", kDeep)},
      {DocFormat::kYaml, repeat("[", kDeep) + repeat("]", kDeep)},
      {DocFormat::kYaml, repeat("- ", kDeep) + "x\n"},
      {DocFormat::kToml, "a = " + repeat("[", kDeep) + repeat("]", kDeep) + "\n"},
      {DocFormat::kToml, "a" + repeat(".b", kDeep) + " = 1\n"},
      {DocFormat::kToml, "[a" + repeat(".b", kDeep) + "]\nx = 1\n"},
      {DocFormat::kToml, "a = " + repeat("{b = ", kDeep) + "1" + repeat("}", kDeep) + "\n"},
  };
  for (const Case& c : cases) {
    Status st = check_doc_limits(c.text, c.format, "doc", DocLimits{}, Code::kCorrupt, "hint");
    EXPECT_EQ(st.code(), Code::kCorrupt) << doc_format_name(c.format);
    EXPECT_NE(st.message().find("doc: "), std::string::npos) << st.message();
    EXPECT_NE(st.message().find("deeper than 64 levels"), std::string::npos) << st.message();
    EXPECT_TRUE(st.message().ends_with("; hint")) << st.message();
  }
  // A YAML block mapping nested by indentation.
  std::string block;
  for (int i = 0; i < 200; ++i) block += std::string(static_cast<size_t>(i), ' ') + "a:\n";
  EXPECT_FALSE(check_doc_limits(block, DocFormat::kYaml, "y", {}, Code::kCorrupt).ok());
}

TEST(DocLimits, AtTheLimitIsAccepted) {
  DocLimits lim;
  lim.max_depth = 5;
  EXPECT_TRUE(check_doc_limits("[[[[[1]]]]]", DocFormat::kJson, "x", lim, Code::kCorrupt).ok());
  EXPECT_FALSE(check_doc_limits("[[[[[[1]]]]]]", DocFormat::kJson, "x", lim, Code::kCorrupt).ok());
}

TEST(DocLimits, SizeIsBounded) {
  DocLimits lim;
  lim.max_bytes = 10;
  Status st = check_doc_limits("[1,2,3,4,5,6]", DocFormat::kJson, "f.json", lim,
                               Code::kInvalidInput);
  EXPECT_EQ(st.code(), Code::kInvalidInput);
  EXPECT_NE(st.message().find("f.json: JSON document of 13 bytes is larger than the limit of 10"),
            std::string::npos)
      << st.message();
}

TEST(Json, ParseChecksLimitsAndNeverThrows) {
  auto ok = parse_json(R"({"a": [1]})", "x.json", {}, Code::kCorrupt);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ((*ok)["a"][0], 1);
  auto bad = parse_json("{\"a\": ", "x.json", {}, Code::kCorrupt, "re-download it");
  EXPECT_EQ(bad.status().code(), Code::kCorrupt);
  EXPECT_NE(bad.status().message().find("x.json: not valid JSON ("), std::string::npos)
      << bad.status().message();
  EXPECT_TRUE(bad.status().message().ends_with("; re-download it"));
  auto deep = parse_json(repeat("[", kDeep) + repeat("]", kDeep), "d.json", {}, Code::kCorrupt);
  EXPECT_NE(deep.status().message().find("deeper than 64"), std::string::npos);
}

TEST(Json, DumpReplacesInvalidUtf8InsteadOfThrowing) {
  nlohmann::json j = {{"name", std::string("bad\xff\xfe")}};
  std::string out;
  EXPECT_NO_THROW(out = dump_json(j, 2));
  EXPECT_NE(out.find("bad\xEF\xBF\xBD"), std::string::npos) << out;
  EXPECT_NO_THROW(out = dump_json(j, 2, /*ensure_ascii=*/true));
  EXPECT_NE(out.find("bad\\ufffd"), std::string::npos) << out;
}

}  // namespace
}  // namespace mat
