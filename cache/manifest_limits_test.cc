// The cache's manifest.json is read back from a directory another process may have written:
// bounded like every other document (issue 11, defect 8).
#include <gtest/gtest.h>

#include <string>

#include "cache/manifest.h"

namespace mat::cache {
namespace {

TEST(ManifestLimits, HundredThousandDeepManifestIsCorrupt) {
  const int n = 100000;
  std::string text = "{\"version\": 1, \"files\": {\"a\": " + std::string(n, '[') +
                     std::string(n, ']') + "}}";
  Result<Manifest> m = parse_manifest(text, "trees/x/manifest.json");
  EXPECT_EQ(m.status().code(), Code::kCorrupt);
  EXPECT_NE(m.status().message().find("trees/x/manifest.json: JSON nested deeper than 64"),
            std::string::npos)
      << m.status().message();
}

TEST(ManifestLimits, InvalidUtf8NameIsWrittenNotThrown) {
  Manifest m;
  ManifestEntry e;
  e.type = ManifestEntry::Type::kDir;
  m.emplace("bad\xff", e);
  std::string text;
  EXPECT_NO_THROW(text = manifest_to_json(Key{HashKind::kSha256, std::string(64, 'a')}, m));
  EXPECT_TRUE(parse_manifest(text, "m").ok());
}

}  // namespace
}  // namespace mat::cache
