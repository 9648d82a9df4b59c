// Lock validation (issue 11, defects 8-12): nesting and size of lock documents, text fields,
// packages selected twice, what an empty selection records, and the local-file policy.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "materializer/base/fs.h"
#include "materializer/local_files.h"
#include "materializer/lock.h"

namespace mat {
namespace {

const std::string kSha(64, 'a');
const std::string kSha2(64, 'b');
constexpr int kDeep = 100000;

LockSelection linux64() {
  LockSelection s;
  s.platform = "linux-64";
  return s;
}

void ExpectInvalid(const Result<LockFile>& r, std::initializer_list<std::string> parts) {
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidInput) << r.status().to_string();
  for (const std::string& p : parts) {
    EXPECT_NE(r.status().message().find(p), std::string::npos)
        << "missing '" << p << "' in: " << r.status().message();
  }
}

std::string repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

std::string conda_entry(const std::string& name, const std::string& file,
                        const std::string& sha, const std::string& platform = "linux-64") {
  return "- name: " + name + "\n  version: '1'\n  manager: conda\n  platform: " + platform +
         "\n  url: https://c/conda-forge/" + platform + "/" + file + "\n  hash:\n    sha256: " +
         sha + "\n";
}

std::string conda_lock(const std::string& entries) {
  return "version: 1\nmetadata:\n  platforms: [linux-64, osx-64]\npackage:\n" + entries;
}

// ---- 8: depth and size -------------------------------------------------------------------

TEST(LockLimits, HundredThousandDeepLocksAreRefusedInEveryFormat) {
  const std::pair<std::string, std::string> cases[] = {
      {"conda-lock.yml", "version: 1\npackage:\n- name: " + repeat("[", kDeep) +
                             repeat("]", kDeep) + "\n"},
      {"conda-lock.yml", "version: 1\npackage:\n" + repeat("- ", kDeep) + "x\n"},
      {"pixi.lock", "version: 6\nenvironments: " + repeat("{a: ", kDeep) + "1" +
                        repeat("}", kDeep) + "\n"},
      {"pylock.toml", "lock-version = \"1.0\"\n[packages" + repeat(".x", kDeep) + "]\n"},
      {"uv.lock", "version = 1\nx" + repeat(".y", kDeep) + " = 1\n[[package]]\n"},
      {"poetry.lock", "[metadata]\nlock-version = \"2.0\"\nx = " + repeat("[", kDeep) +
                          repeat("]", kDeep) + "\n"},
  };
  for (const auto& [name, text] : cases) {
    ExpectInvalid(parse_lock(text, name, linux64()),
                  {name + ": ", "nested deeper than 64 levels (the limit)"});
  }
}

TEST(LockLimits, SizeLimitIsChecked) {
  LockSelection sel = linux64();
  sel.max_bytes = 10;
  ExpectInvalid(parse_lock(conda_lock(""), "l.yml", sel),
                {"l.yml: lock file of", "larger than the limit of 10 bytes", "--max-lock-size"});
}

// ---- 10: fields --------------------------------------------------------------------------

TEST(LockFields, InvalidUtf8ControlCharactersAndLengthAreRefusedWithLine) {
  ExpectInvalid(parse_lock(conda_lock(conda_entry("libmat\xff", "libmat-1-0.conda", kSha)),
                           "l.yml", linux64()),
                {"l.yml:5: package 'libmat\\xff': field 'name' is not valid UTF-8"});
  std::string tab_version = conda_entry("a", "a-1-0.conda", kSha);
  tab_version.replace(tab_version.find("'1'"), 3, "\"1\\t2\"");
  ExpectInvalid(parse_lock(conda_lock(tab_version), "l.yml", linux64()),
                {"field 'version' contains a control character: '1\\x092'"});
  std::string long_name(300, 'n');
  ExpectInvalid(parse_lock(conda_lock(conda_entry(long_name, "a-1-0.conda", kSha)), "l.yml",
                           linux64()),
                {"field 'name' is too long (300 bytes; the limit is 256)"});
  // @EXPLICIT: the name comes from the URL; pylock: a wheel URL.
  ExpectInvalid(parse_lock("@EXPLICIT\nhttps://c/x/linux-64/a\x01b-1-0.conda#" + kSha + "\n",
                           "e.txt", linux64()),
                {"e.txt:2:", "contains a control character"});
  ExpectInvalid(
      parse_lock("lock-version = \"1.0\"\n[[packages]]\nname = \"a\"\nwheels = [{url = "
                 "\"https://h/a-1-py3-none-any.whl\\u0007\", hashes = {sha256 = \"" +
                     kSha + "\"}}]\n",
                 "pylock.toml", linux64()),
      {"pylock.toml:2: package 'a': field 'url' contains a control character"});
}

TEST(LockFields, OnlySelectedEntriesAreChecked) {
  auto r = parse_lock(conda_lock(conda_entry("a", "a-1-0.conda", kSha) +
                                 conda_entry("b\xff", "b-1-0.conda", kSha, "osx-64")),
                      "l.yml", linux64());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->packages.size(), 1u);
  EXPECT_EQ(r->entries, 2);
}

// ---- 9: duplicates -----------------------------------------------------------------------

TEST(LockDuplicates, SameNameTwiceAsDifferentFilesNamesBothLines) {
  ExpectInvalid(parse_lock(conda_lock(conda_entry("zlib", "zlib-1-0.conda", kSha) +
                                      conda_entry("zlib", "zlib-1-0.conda", kSha2)),
                           "l.yml", linux64()),
                {"l.yml:12: package 'zlib' is selected twice, as different files: line 5 (",
                 "sha256 aaaaaaaaaaaa...", "and line 12 (", "sha256 bbbbbbbbbbbb..."});
  ExpectInvalid(parse_lock(conda_lock(conda_entry("zlib", "zlib-1-0.conda", kSha) +
                                      conda_entry("zlib", "zlib-2-0.conda", kSha)),
                           "l.yml", linux64()),
                {"selected twice"});
}

TEST(LockDuplicates, IdenticalRepeatIsDroppedAndOtherPlatformsDoNotCount) {
  auto r = parse_lock(conda_lock(conda_entry("zlib", "zlib-1-0.conda", kSha) +
                                 conda_entry("zlib", "zlib-1-0.conda", kSha) +
                                 conda_entry("zlib", "zlib-1-0.conda", kSha2, "osx-64")),
                      "l.yml", linux64());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->packages.size(), 1u);
  EXPECT_EQ(r->entries, 3);
}

TEST(LockDuplicates, PixiSelectsPerEnvironmentAndPlatform) {
  const std::string a1 = "https://c/cf/linux-64/a-1-0.conda";
  const std::string a2 = "https://c/cf/linux-64/a-2-0.conda";
  auto text = [&](const std::string& list) {
    return "version: 6\nenvironments:\n  default:\n    packages:\n      linux-64:\n" + list +
           "  other:\n    packages:\n      linux-64:\n      - conda: " + a2 +
           "\npackages:\n- conda: " + a1 + "\n  sha256: " + kSha + "\n- conda: " + a2 +
           "\n  sha256: " + kSha2 + "\n";
  };
  // Two builds of `a` in two environments: fine.
  EXPECT_TRUE(parse_lock(text("      - conda: " + a1 + "\n"), "pixi.lock", linux64()).ok());
  ExpectInvalid(
      parse_lock(text("      - conda: " + a1 + "\n      - conda: " + a2 + "\n"), "pixi.lock",
                 linux64()),
      {"package 'a' is selected twice"});
}

TEST(LockDuplicates, CondaAndPypiNamesAreSeparateAndPypiNamesAreNormalised) {
  std::string pip = [] {
    return std::string("- name: Foo_Bar\n  version: '1'\n  manager: pip\n  platform: linux-64\n"
                       "  url: https://f/foo_bar-1-py3-none-any.whl\n  hash:\n    sha256: ") +
           kSha + "\n";
  }();
  std::string pip2 = pip;
  pip2.replace(pip2.find("Foo_Bar"), 7, "foo.bar");
  pip2.replace(pip2.find("bar-1-"), 6, "bar-2-");
  auto ok = parse_lock(conda_lock(conda_entry("foo-bar", "foo-bar-1-0.conda", kSha) + pip),
                       "l.yml", linux64());
  EXPECT_TRUE(ok.ok()) << ok.status().to_string();
  ExpectInvalid(parse_lock(conda_lock(pip + pip2), "l.yml", linux64()),
                {"package 'foo.bar' is selected twice"});
}

TEST(LockDuplicates, PypiFormatsWithMarkersMayRepeatANameAtParseTime) {
  std::string pkg = "[[packages]]\nname = \"a\"\nversion = \"@V\"\nmarker = \"@M\"\nwheels = "
                    "[{url = \"https://h/a-@V-py3-none-any.whl\", hashes = {sha256 = \"" +
                    kSha + "\"}}]\n";
  auto with = [&](const std::string& v, const std::string& m) {
    std::string s = pkg;
    for (size_t p; (p = s.find("@V")) != std::string::npos;) s.replace(p, 2, v);
    s.replace(s.find("@M"), 2, m);
    return s;
  };
  auto r = parse_lock("lock-version = \"1.0\"\n" + with("1", "python_version < '3.9'") +
                          with("2", "python_version >= '3.9'"),
                      "pylock.toml", linux64());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->packages.size(), 2u);
}

// ---- 12: what a selection records --------------------------------------------------------

TEST(LockSelectionCounts, ExplicitWithoutPlatformKeepsPlainFolderEntries) {
  auto r = parse_lock("@EXPLICIT\nfile:///pkgs/a-1-0.conda#" + kSha +
                          "\nhttps://c/cf/osx-64/b-1-0.conda#" + kSha +
                          "\nhttps://c/cf/noarch/c-1-0.conda#" + kSha + "\n",
                      "e.txt", linux64());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_EQ(r->packages.size(), 2u);
  EXPECT_EQ(r->packages[0].name, "a");
  EXPECT_EQ(r->packages[1].name, "c");
  EXPECT_EQ(r->entries, 3);
  EXPECT_EQ(r->entry_platforms, (std::vector<std::string>{"", "osx-64", "noarch"}));
}

TEST(LockSelectionCounts, ConditionsOfZeroSelected) {
  auto r = parse_lock(conda_lock(conda_entry("a", "a-1-0.conda", kSha, "osx-64")), "l.yml",
                      linux64());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_TRUE(r->packages.empty());
  EXPECT_EQ(r->entries, 1);
  EXPECT_EQ(r->entry_platforms, (std::vector<std::string>{"osx-64"}));
  auto empty = parse_lock(conda_lock(""), "l.yml", linux64());
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->entries, 0);
}

// ---- 11: local files ---------------------------------------------------------------------

class LocalFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mat-local-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    ASSERT_TRUE(make_dirs(root_ + "/lock/pkgs").ok());
    ASSERT_TRUE(make_dirs(root_ + "/other").ok());
    ASSERT_TRUE(write_file_atomic(root_ + "/lock/l.txt", "x").ok());
    ASSERT_TRUE(write_file_atomic(root_ + "/other/secret", "s").ok());
    ASSERT_EQ(symlink("../other", (root_ + "/lock/link").c_str()), 0);
  }
  void TearDown() override { remove_all(root_).ignore(); }
  std::string root_;
};

TEST_F(LocalFilesTest, LockFolderByDefaultResolvedWithRealpath) {
  auto files = LocalFiles::make(root_ + "/lock/l.txt", {});
  ASSERT_TRUE(files.ok()) << files.status().to_string();
  auto ok = files->check_url("file://" + root_ + "/lock/pkgs/a-1-0.conda");  // need not exist
  ASSERT_TRUE(ok.ok()) << ok.status().to_string();
  EXPECT_EQ(*ok, "file://" + root_ + "/lock/pkgs/a-1-0.conda");
  for (const std::string& bad :
       {"file://" + root_ + "/other/secret", "file://" + root_ + "/lock/link/secret",
        "file://" + root_ + "/lock/../other/secret", "file://" + root_ + "/lock/%2e%2e/other/secret",
        "file://" + root_ + "/lock/nodir/../../other/secret", std::string("file:///etc/shadow")}) {
    auto r = files->check_url(bad);
    EXPECT_EQ(r.status().code(), Code::kInvalidInput) << bad;
    EXPECT_NE(r.status().message().find("--allow-file-urls DIR"), std::string::npos)
        << r.status().message();
  }
  auto host = files->check_url("file://host/etc/shadow");
  EXPECT_NE(host.status().message().find("not a local file URL"), std::string::npos)
      << host.status().message();
}

// A sibling whose name starts with the allowed folder's ("lock" vs "lock-evil") is outside it:
// the match is on whole path components, not on a string prefix.
TEST_F(LocalFilesTest, ASiblingWithTheSameNamePrefixIsOutside) {
  ASSERT_TRUE(make_dirs(root_ + "/lock-evil").ok());
  ASSERT_TRUE(write_file_atomic(root_ + "/lock-evil/x.conda", "x").ok());
  auto files = LocalFiles::make(root_ + "/lock/l.txt", {});
  ASSERT_TRUE(files.ok()) << files.status().to_string();
  auto r = files->check_url("file://" + root_ + "/lock-evil/x.conda");
  EXPECT_EQ(r.status().code(), Code::kInvalidInput) << r.status().to_string();
  EXPECT_FALSE(files->check_path(root_ + "/lockx").ok());
  EXPECT_TRUE(files->check_path(root_ + "/lock").ok());
}

TEST_F(LocalFilesTest, AllowedFoldersAddToTheLockFolder) {
  auto files = LocalFiles::make(root_ + "/lock/l.txt", {root_ + "/lock/link"});
  ASSERT_TRUE(files.ok());
  auto ok = files->check_url("file://" + root_ + "/lock/link/secret");
  ASSERT_TRUE(ok.ok()) << ok.status().to_string();
  EXPECT_EQ(*ok, "file://" + root_ + "/lock/link/secret");  // no dot segment: kept as written
  EXPECT_FALSE(LocalFiles::make(root_ + "/lock/l.txt", {root_ + "/nope"}).ok());
}

TEST_F(LocalFilesTest, DotSegmentsThroughASymlinkAreReadAsChecked) {
  // libcurl would drop "deep/../../.." lexically and read /tmp/x; the kernel resolves it through
  // the symlink to lock/x, which is what the check saw: the URL read must be that one.
  ASSERT_TRUE(make_dirs(root_ + "/lock/a/b/c").ok());
  ASSERT_EQ(symlink("a/b/c", (root_ + "/lock/deep").c_str()), 0);
  auto files = LocalFiles::make(root_ + "/lock/l.txt", {});
  ASSERT_TRUE(files.ok());
  auto ok = files->check_url("file://" + root_ + "/lock/deep/../../../x");
  ASSERT_TRUE(ok.ok()) << ok.status().to_string();
  EXPECT_EQ(*ok, "file://" + root_ + "/lock/x");
}

TEST_F(LocalFilesTest, ALockThatIsNotARegularFileHasNoFolder) {
  std::string fifo = root_ + "/lock/fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  auto files = LocalFiles::make(fifo, {});
  ASSERT_TRUE(files.ok());
  EXPECT_TRUE(files->roots().empty());
  auto r = files->check_url("file://" + root_ + "/lock/pkgs/a.conda");
  EXPECT_NE(r.status().message().find("none: the lock is not a local file"), std::string::npos)
      << r.status().message();
}

TEST_F(LocalFilesTest, RequirementsIncludesFollowThePolicy) {
  ASSERT_TRUE(write_file_atomic(root_ + "/other/inc.txt", "idna==3.7 --hash=sha256:" + kSha).ok());
  auto files = LocalFiles::make(root_ + "/lock/l.txt", {});
  ASSERT_TRUE(files.ok());
  LockSelection sel = linux64();
  sel.local_files = &*files;
  ExpectInvalid(parse_lock("-r ../other/inc.txt\n", root_ + "/lock/requirements.txt", sel),
                {"requirements.txt:1: -r ../other/inc.txt: ", "outside the allowed folders"});
  sel.local_files = nullptr;
  EXPECT_TRUE(parse_lock("-r ../other/inc.txt\n", root_ + "/lock/requirements.txt", sel).ok());
}

}  // namespace
}  // namespace mat
