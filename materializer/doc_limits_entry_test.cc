// Every entry point that parses a JSON document from outside refuses one nested 100,000 deep
// with a clear error naming the file and the limit, quickly and without crashing (issue 11,
// defect 8: a deep info/index.json crashed the record writer).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <string>

#include "materializer/base/fs.h"
#include "materializer/install.h"
#include "materializer/link_internal.h"
#include "materializer/pypi.h"
#include "materializer/pypi_index_internal.h"
#include "materializer/stamp.h"

namespace mat {
namespace {

constexpr int kDeep = 100000;

std::string deep_array() { return std::string(kDeep, '[') + std::string(kDeep, ']'); }
std::string deep_object(const std::string& key) {
  std::string s;
  for (int i = 0; i < kDeep; ++i) s += "{\"" + key + "\":";
  return s + "1" + std::string(kDeep, '}');
}

class DeepJsonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mat-deep-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    tree_ = root_ + "/pkg";
    ASSERT_TRUE(make_dirs(tree_ + "/info").ok());
    write("info/index.json", R"({"name": "a", "version": "1", "build": "0", "subdir": "noarch"})");
    write("info/paths.json", R"({"paths_version": 1, "paths": []})");
  }
  void TearDown() override { remove_all(root_).ignore(); }
  void write(const std::string& rel, const std::string& text) {
    ASSERT_TRUE(write_file_atomic(tree_ + "/" + rel, text).ok());
  }
  Status plan() {
    Result<link_internal::PackagePlan> p =
        link_internal::load_package_plan(tree_, {root_ + "/prefix", "3.11"});
    return p.ok() ? Status::Ok() : p.status();
  }
  void expect_deep_refused(const Status& st, const std::string& file) {
    EXPECT_EQ(st.code(), Code::kCorrupt) << st.to_string();
    EXPECT_NE(st.message().find(file), std::string::npos) << st.message();
    EXPECT_NE(st.message().find("nested deeper than 64 levels (the limit)"), std::string::npos)
        << st.message();
  }
  std::string root_, tree_;
};

TEST_F(DeepJsonTest, ShallowPackageMetadataPlans) { EXPECT_TRUE(plan().ok()); }

TEST_F(DeepJsonTest, IndexJsonIsBounded) {
  write("info/index.json", deep_object("name"));
  expect_deep_refused(plan(), "info/index.json");
}

TEST_F(DeepJsonTest, LinkJsonIsBounded) {
  write("info/link.json", "{\"noarch\": " + deep_array() + "}");
  expect_deep_refused(plan(), "info/link.json");
}

TEST_F(DeepJsonTest, PathsJsonIsBounded) {
  write("info/paths.json", "{\"paths\": [{\"_path\": \"a\", \"x\": " + deep_array() + "}]}");
  expect_deep_refused(plan(), "info/paths.json");
  // 65 levels (the root object and 64 arrays) is one too many for simdjson as for the scanner.
  write("info/paths.json", "{\"x\": " + std::string(64, '[') + std::string(64, ']') + "}");
  expect_deep_refused(plan(), "info/paths.json");
  write("info/paths.json",
        "{\"paths\": [], \"x\": " + std::string(63, '[') + std::string(63, ']') + "}");
  EXPECT_TRUE(plan().ok());
}

TEST_F(DeepJsonTest, OversizedIndexJsonIsRefused) {
  write("info/index.json", "{\"name\": \"" + std::string((8 << 20) + 1, 'a') + "\"}");
  Status st = plan();
  EXPECT_EQ(st.code(), Code::kCorrupt);
  EXPECT_NE(st.message().find("larger than the limit of 8 MiB"), std::string::npos)
      << st.message();
}

TEST_F(DeepJsonTest, SimpleApiJsonPageIsBounded) {
  auto r = pypi::internal::parse_simple_json("{\"files\": " + deep_array() + "}", "http://h/");
  EXPECT_EQ(r.status().code(), Code::kCorrupt);
  EXPECT_NE(r.status().message().find("deeper than 64"), std::string::npos)
      << r.status().message();
  // HTML pages: libxml2 limits its depth itself (256); the walk over the tree is iterative.
  std::string html;
  for (int i = 0; i < kDeep; ++i) html += "<div>";
  html += "<a href=\"x-1.0-py3-none-any.whl\">x</a>";
  auto h = pypi::internal::parse_simple_html(html, "http://h/");
  EXPECT_TRUE(h.ok() || h.status().code() == Code::kCorrupt) << h.status().to_string();
}

TEST_F(DeepJsonTest, DeepStampIsNotAMatch) {
  std::string prefix = root_ + "/prefix";
  ASSERT_TRUE(make_dirs(prefix + "/conda-meta").ok());
  ASSERT_TRUE(write_file_atomic(prefix + "/" + kStampPath,
                                "{\"input_hash\": \"h\", \"paths\": " + deep_array() + "}")
                  .ok());
  EXPECT_FALSE(stamp_matches(prefix, "h"));
  ASSERT_TRUE(write_stamp(prefix, "h", {}).ok());
  EXPECT_TRUE(stamp_matches(prefix, "h"));
}

TEST_F(DeepJsonTest, StampWithInvalidUtf8PathsIsWritten) {
  std::string prefix = root_ + "/prefix";
  ASSERT_TRUE(make_dirs(prefix + "/conda-meta").ok());
  EXPECT_TRUE(write_stamp(prefix, "h", {"conda-meta/bad\xff.json"}).ok());
  EXPECT_TRUE(path_exists(prefix + "/" + kStampPath));
}

TEST_F(DeepJsonTest, DeepProbeOutputIsNotAnInterpreter) {
  std::string fake = root_ + "/python";
  ASSERT_TRUE(write_file_atomic(fake, "#!/bin/sh\nprintf '%s' '" + deep_array() + "'\n").ok());
  ASSERT_EQ(chmod(fake.c_str(), 0755), 0);
  auto t = pypi::probe_interpreter(fake);
  EXPECT_EQ(t.status().code(), Code::kInvalidInput) << t.status().to_string();
}

}  // namespace
}  // namespace mat
