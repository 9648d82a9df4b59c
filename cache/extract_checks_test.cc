// Issue 11, defects 7 and 13: a conda package's files against its own info/paths.json (or
// info/files), and the expansion limits, on the file path (extract_archive, Store::extract) and
// the streaming path (extract_conda_stream, Store::extract_streamed).
#include "cache/extract_checks.h"

#include <archive.h>
#include <archive_entry.h>
#include <bzlib.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <zstd.h>

#include <clocale>
#include <cstring>
#include <functional>

#include "cache/extract.h"
#include "cache/test_util.h"
#include "materializer/base/hash.h"

namespace mat::cache {
namespace {

using testing::Compression;
using testing::Member;
using testing::TempDir;

const bool kUtf8Locale = std::setlocale(LC_CTYPE, "C.UTF-8") != nullptr;

// The bytes of `s`, `block` at a time, as a download delivers them.
ByteSource pieces_of(std::string s, size_t block) {
  auto data = std::make_shared<std::string>(std::move(s));
  auto at = std::make_shared<size_t>(0);
  return [data, at, block]() -> Result<std::span<const char>> {
    size_t n = std::min(block, data->size() - *at);
    std::span<const char> out(data->data() + *at, n);
    *at += n;
    return out;
  };
}

// Bytes of every regular file below `dir` (what extraction wrote to disk).
int64_t bytes_on_disk(const std::string& dir) {
  int64_t total = 0;
  for (const std::string& name : testing::list(dir)) {
    std::string p = dir + "/" + name;
    struct stat st;
    if (::lstat(p.c_str(), &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) total += bytes_on_disk(p);
    if (S_ISREG(st.st_mode)) total += st.st_size;
  }
  return total;
}

int64_t entries_on_disk(const std::string& dir) {
  int64_t n = 0;
  for (const std::string& name : testing::list(dir)) {
    std::string p = dir + "/" + name;
    ++n;
    struct stat st;
    if (::lstat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) n += entries_on_disk(p);
  }
  return n;
}

const std::vector<Member> kPkg = {
    {"bin/tool", 'f', "#!/bin/sh\necho hi\n", "", 0755},
    {"lib/libx.so.1", 'f', std::string(5000, 'x')},
    {"lib/libx.so", 'l', "", "libx.so.1"},
    {"share/empty", 'd'},
};
const std::vector<Member> kIndex = {{"info/index.json", 'f', R"({"name":"t"})"}};

// A paths.json entry.
std::string entry(const std::string& path, const std::string& type, const std::string& extra = "") {
  return R"({"_path": ")" + path + R"(", "path_type": ")" + type + "\"" + extra + "}";
}
std::string hardlink(const std::string& path, const std::string& data) {
  return entry(path, "hardlink",
               R"(, "sha256": ")" + sha256_hex(data) + R"(", "size_in_bytes": )" +
                   std::to_string(data.size()));
}
std::string paths_json(const std::vector<std::string>& entries) {
  std::string out = R"({"paths_version": 1, "paths": [)";
  for (size_t i = 0; i < entries.size(); ++i) out += (i ? ", " : "") + entries[i];
  return out + "]}";
}
// kPkg's correct entries, with `replace` swapped in for the entry of the same index.
std::vector<std::string> kpkg_entries() {
  return {hardlink("bin/tool", kPkg[0].data), hardlink("lib/libx.so.1", kPkg[1].data),
          entry("lib/libx.so", "softlink"), entry("share/empty", "directory")};
}

class CondaMetadataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(kUtf8Locale);
    ASSERT_TRUE(make_dirs(dest_).ok());
  }

  // Extracts `bytes` as NAME from the file, then (a .conda) streamed, each into a fresh dest/.
  // Returns both results.
  std::vector<Result<Manifest>> extract_both(const std::string& name, const std::string& bytes,
                                             const ExtractLimits& limits = {}) {
    std::string path = dir_ / name;
    testing::write_bytes(path, bytes);
    std::vector<Result<Manifest>> out;
    out.push_back(
        extract_archive(path, *format_from_name(name), fresh(), posix_fs(), scratch_, limits));
    if (name.ends_with(".conda")) {
      out.push_back(extract_conda_stream(pieces_of(bytes, 7000), path, fresh(), posix_fs(),
                                         scratch_, limits));
    }
    return out;
  }

  const std::string& fresh() {
    EXPECT_TRUE(remove_all(dest_).ok());
    EXPECT_TRUE(make_dirs(dest_).ok());
    return dest_;
  }

  // Both paths fail with kCorrupt and every phrase in the message.
  void expect_corrupt(const std::string& name, const std::string& bytes,
                      const std::vector<std::string>& phrases) {
    auto results = extract_both(name, bytes);
    for (size_t i = 0; i < results.size(); ++i) {
      SCOPED_TRACE(i == 0 ? "from the file" : "streamed");
      ASSERT_FALSE(results[i].ok());
      EXPECT_EQ(results[i].status().code(), Code::kCorrupt) << results[i].status().to_string();
      for (const auto& p : phrases) {
        EXPECT_NE(results[i].status().message().find(p), std::string::npos)
            << "'" << p << "' not in: " << results[i].status().message();
      }
    }
  }
  void expect_ok(const std::string& name, const std::string& bytes) {
    for (auto& r : extract_both(name, bytes)) ASSERT_TRUE(r.ok()) << r.status().to_string();
  }

  std::string conda_with_paths(const std::vector<std::string>& entries,
                               std::vector<Member> pkg = kPkg) {
    std::vector<Member> info = kIndex;
    info.push_back({"info/paths.json", 'f', paths_json(entries)});
    return testing::make_conda(info, pkg);
  }

  TempDir dir_;
  std::string dest_ = dir_ / "pkg";
  ExtractScratch scratch_;
};

TEST_F(CondaMetadataTest, MatchingPathsJsonIsAccepted) {
  expect_ok("t-1-0.conda", conda_with_paths(kpkg_entries()));
  // Upper-case hex, null fields, extra fields (prefix placeholders: the digest is the shipped
  // file's) and a softlink entry carrying its target's digest and size, as conda-build writes.
  std::string sha = sha256_hex(kPkg[0].data);
  for (char& c : sha) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  auto entries = kpkg_entries();
  entries[0] =
      entry("bin/tool", "hardlink",
            R"(, "sha256": ")" + sha +
                R"(", "size_in_bytes": 18, "file_mode": "text", )"
                R"("prefix_placeholder": "/opt/anaconda1anaconda2anaconda3", "no_link": false)");
  entries[2] = entry("lib/libx.so", "softlink",
                     R"(, "sha256": ")" + sha256_hex(kPkg[1].data) + R"(", "size_in_bytes": 5000)");
  entries.push_back(R"({"_path": "lib/libx.so.1", "sha256": null, "size_in_bytes": null})");
  expect_ok("t-1-0.conda", conda_with_paths(entries));
  expect_ok("t-1-0.tar.bz2",
            testing::make_tar(
                [&] {
                  std::vector<Member> all = kIndex;
                  all.push_back({"info/paths.json", 'f', paths_json(kpkg_entries())});
                  all.insert(all.end(), kPkg.begin(), kPkg.end());
                  return all;
                }(),
                Compression::kBzip2));
}

TEST_F(CondaMetadataTest, WrongSizeIsCorrupt) {
  auto entries = kpkg_entries();
  entries[1] = entry("lib/libx.so.1", "hardlink", R"(, "size_in_bytes": 1)");
  expect_corrupt("t-1-0.conda", conda_with_paths(entries),
                 {"t-1-0.conda", "lib/libx.so.1", "paths.json says 1 bytes", "has 5000"});
}

TEST_F(CondaMetadataTest, WrongSha256IsCorrupt) {
  auto entries = kpkg_entries();
  const std::string other = sha256_hex("something else");
  entries[0] = entry("bin/tool", "hardlink", R"(, "sha256": ")" + other + "\"");
  expect_corrupt("t-1-0.conda", conda_with_paths(entries),
                 {"bin/tool", "sha256 mismatch", other, sha256_hex(kPkg[0].data)});
  // Also in a .tar.bz2.
  std::vector<Member> all = kIndex;
  all.push_back({"info/paths.json", 'f', paths_json(entries)});
  all.insert(all.end(), kPkg.begin(), kPkg.end());
  expect_corrupt("t-1-0.tar.bz2", testing::make_tar(all, Compression::kBzip2),
                 {"t-1-0.tar.bz2", "bin/tool", "sha256 mismatch"});
}

TEST_F(CondaMetadataTest, MissingFileIsCorrupt) {
  auto entries = kpkg_entries();
  entries.push_back(hardlink("lib/gone.so", "x"));
  expect_corrupt("t-1-0.conda", conda_with_paths(entries),
                 {"lib/gone.so", "listed in info/paths.json (hardlink) but not in the archive"});
  entries = kpkg_entries();
  entries.push_back(entry("lib/gone-link", "softlink"));
  expect_corrupt("t-1-0.conda", conda_with_paths(entries), {"lib/gone-link", "not in the archive"});
}

TEST_F(CondaMetadataTest, TypeThatDiffersIsCorrupt) {
  struct Case {
    std::string entry, phrase;
  };
  const Case cases[] = {
      // The zlib osx case of the corpus: a softlink entry stored as a regular file.
      {entry("bin/tool", "softlink"),
       "bin/tool: info/paths.json says softlink, the archive has a file"},
      {entry("lib/libx.so", "hardlink"),
       "lib/libx.so: info/paths.json says hardlink, the archive has a symlink"},
      {entry("share/empty", "hardlink"), "says hardlink, the archive has a dir"},
      {entry("lib/libx.so.1", "directory"), "says directory, the archive has a file"},
      {entry("bin/tool", "pipe"), "unknown path_type 'pipe'"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.entry);
    auto entries = kpkg_entries();
    entries.push_back(c.entry);
    expect_corrupt("t-1-0.conda", conda_with_paths(entries), {c.phrase});
  }
}

TEST_F(CondaMetadataTest, UnsafeOrMalformedPathsJsonIsCorrupt) {
  for (const char* p : {"../etc/passwd", "/abs", "bin//tool", "bin/./tool", ""}) {
    SCOPED_TRACE(p);
    auto entries = kpkg_entries();
    entries.push_back(entry(p, "hardlink"));
    expect_corrupt("t-1-0.conda", conda_with_paths(entries), {"not a plain relative path"});
  }
  struct Case {
    std::string json, phrase;
  };
  const Case cases[] = {
      {"{}", "'paths' is not a list"},
      {"[]", "not a JSON object"},
      {R"({"paths": [{"path_type": "hardlink"}]})", "has no '_path'"},

      {R"({"paths": [{"_path": "bin/tool", "size_in_bytes": -5}]})", "is not a size"},
      {R"({"paths": [{"_path": "bin/tool", "sha256": 7}]})", "'sha256' is not a string"},
      {R"({"paths": [1]})", "not an object"},
      // The link stage's parser takes the first of a repeated key: it must not differ from
      // what is checked here, so a repeat is refused.
      {R"({"paths": [{"_path": "bin/tool", "size_in_bytes": 1, "size_in_bytes": 18}]})",
       "repeats the key 'size_in_bytes'"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.json);
    std::vector<Member> info = kIndex;
    info.push_back({"info/paths.json", 'f', c.json});
    expect_corrupt("t-1-0.conda", testing::make_conda(info, kPkg),
                   {"info/paths.json is malformed", c.phrase});
  }
  // Keys are compared unescaped, as the link stage reads them: "sha256" spelled with escapes is
  // still checked.
  std::vector<Member> escaped = kIndex;
  escaped.push_back({"info/paths.json", 'f',
                     R"({"paths": [{"_path": "bin/tool", "sha\u0032\u0035\u0036": "abc"}]})"});
  expect_corrupt("t-1-0.conda", testing::make_conda(escaped, kPkg),
                 {"bin/tool: info/paths.json gives 'abc' as sha256"});
  auto entries = kpkg_entries();
  entries[0] = entry("bin/tool", "hardlink", R"(, "sha256": "abc")");
  expect_corrupt("t-1-0.conda", conda_with_paths(entries),
                 {"bin/tool: info/paths.json gives 'abc' as sha256, which is not 64 hex digits"});
  // paths.json must be a file: a symlink to a file with the right content is refused too.
  std::vector<Member> info = kIndex;
  info.push_back({"info/real.json", 'f', paths_json(kpkg_entries())});
  info.push_back({"info/paths.json", 'l', "", "real.json"});
  expect_corrupt("t-1-0.conda", testing::make_conda(info, kPkg),
                 {"info/paths.json is a symlink, not a regular file"});
}

// What conda, mamba and rattler do: files the metadata does not list are allowed (never linked).
TEST_F(CondaMetadataTest, UnlistedFilesAreAllowed) {
  auto pkg = kPkg;
  pkg.push_back({"share/extra.txt", 'f', "not in paths.json"});
  expect_ok("t-1-0.conda", conda_with_paths(kpkg_entries(), pkg));
}

// A tar hard link listed as a "hardlink" entry has its target's bytes.
TEST_F(CondaMetadataTest, TarHardLinkHasItsTargetsDigest) {
  auto pkg = kPkg;
  pkg.push_back({"bin/tool2", 'h', "", "bin/tool"});
  auto entries = kpkg_entries();
  entries.push_back(hardlink("bin/tool2", kPkg[0].data));
  expect_ok("t-1-0.conda", conda_with_paths(entries, pkg));
  entries.back() = entry("bin/tool2", "hardlink", R"(, "size_in_bytes": 3)");
  expect_corrupt("t-1-0.conda", conda_with_paths(entries, pkg), {"bin/tool2", "size mismatch"});
}

// Packages from before conda-build 3: info/files, existence only.
TEST_F(CondaMetadataTest, LegacyInfoFilesListsWhatExists) {
  std::vector<Member> all = kIndex;
  all.push_back({"info/files", 'f', "# comment\nbin/tool\n\n  lib/libx.so  \nshare/empty\n"});
  all.insert(all.end(), kPkg.begin(), kPkg.end());
  expect_ok("t-1-0.tar.bz2", testing::make_tar(all, Compression::kBzip2));
  all[1].data += "bin/missing\n";
  expect_corrupt("t-1-0.tar.bz2", testing::make_tar(all, Compression::kBzip2),
                 {"bin/missing: listed in info/files but not in the archive"});
  all[1].data = "../../x\n";
  expect_corrupt("t-1-0.tar.bz2", testing::make_tar(all, Compression::kBzip2),
                 {"info/files lists '../../x'"});
}

// Through the store, on both paths: no tree, nothing left in tmp/.
TEST_F(CondaMetadataTest, StoreKeepsNothingOfALyingPackage) {
  auto entries = kpkg_entries();
  entries[1] = entry("lib/libx.so.1", "hardlink", R"(, "size_in_bytes": 1)");
  const std::string conda = conda_with_paths(entries);
  const std::string path = dir_ / "lying-1-0.conda";
  testing::write_bytes(path, conda);
  auto store = Store::open(dir_ / "cache");
  ASSERT_TRUE(store.ok());
  Key key{HashKind::kSha256, sha256_hex(conda)};
  auto r = (*store)->extract(key, path, ArchiveFormat::kConda, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kCorrupt);
  auto s = (*store)->extract_streamed(key, path, ArchiveFormat::kConda, pieces_of(conda, 4096));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), Code::kCorrupt);
  EXPECT_NE(s.status().message().find("size mismatch with info/paths.json"), std::string::npos);
  EXPECT_FALSE((*store)->find_tree(key));
  EXPECT_TRUE(testing::list(dir_ / "cache/v1/tmp").empty());
  EXPECT_TRUE(testing::list(dir_ / "cache/v1/trees").empty());
}

// --- limits ---------------------------------------------------------------------------------

TEST(ExpansionBudgetTest, LimitIsTheSmallerOfSizeAndRatioPastTheGrace) {
  ExtractLimits l{.max_expanded_bytes = 1000,
                  .max_expansion_ratio = 10,
                  .ratio_grace_bytes = 50,
                  .max_members = 3};
  EXPECT_EQ(ExpansionBudget(l, "a", 20).byte_limit(), 200);    // ratio
  EXPECT_EQ(ExpansionBudget(l, "a", 2).byte_limit(), 50);      // grace
  EXPECT_EQ(ExpansionBudget(l, "a", 500).byte_limit(), 1000);  // size
  ExpansionBudget b(l, "p-1-0.conda", 20);
  EXPECT_TRUE(b.write(150).ok());
  EXPECT_TRUE(b.decode(200).ok());
  Status over = b.write(51);
  EXPECT_EQ(over.code(), Code::kInvalidInput);
  EXPECT_NE(over.message().find("p-1-0.conda: expands to more than 10 times its 20 bytes"),
            std::string::npos)
      << over.message();
  EXPECT_NE(over.message().find("--max-expansion-ratio"), std::string::npos);
  EXPECT_FALSE(b.write(1).ok());  // stays over
  ExpansionBudget big(l, "q.conda", 500);
  Status size = big.decode(1001);
  EXPECT_NE(size.message().find("more than 1000 bytes"), std::string::npos) << size.message();
  EXPECT_NE(size.message().find("--max-expanded-size"), std::string::npos);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(b.member().ok());
  Status members = b.member();
  EXPECT_NE(members.message().find("more than 3 members"), std::string::npos);
  EXPECT_NE(members.message().find("--max-files-per-package"), std::string::npos);
  EXPECT_FALSE(b.expect_members(4).ok());
  EXPECT_TRUE(b.expect_members(3).ok());
  // Streamed: the ratio follows the bytes arrived; a huge ratio saturates.
  ExpansionBudget s(l, "s.conda", 0);
  EXPECT_EQ(s.byte_limit(), 50);
  s.grew(80);
  EXPECT_EQ(s.byte_limit(), 800);
  ExpansionBudget sat(ExtractLimits{.max_expanded_bytes = int64_t{1} << 62,
                                    .max_expansion_ratio = int64_t{1} << 62},
                      "x", int64_t{1} << 40);
  EXPECT_EQ(sat.byte_limit(), int64_t{1} << 62);
}

TEST(ExpansionBudgetTest, FormatBytes) {
  EXPECT_EQ(format_bytes(1), "1 byte");
  EXPECT_EQ(format_bytes(1000), "1000 bytes");
  EXPECT_EQ(format_bytes(16 << 20), "16 MiB");
  EXPECT_EQ(format_bytes(int64_t{32} << 30), "32 GiB");
  EXPECT_EQ(format_bytes(3 << 19), "1.5 MiB");
}

class LimitsTest : public CondaMetadataTest {
 protected:
  // Both paths (a .conda is also streamed) fail with kInvalidInput naming `flag`, having
  // written at most `max_bytes` and created at most `max_entries` entries.
  void expect_limit(const std::string& name, const std::string& bytes, const ExtractLimits& limits,
                    const std::string& flag, int64_t max_bytes, int64_t max_entries = 1 << 30) {
    std::string path = dir_ / name;
    testing::write_bytes(path, bytes);
    for (int streamed = 0; streamed < (name.ends_with(".conda") ? 2 : 1); ++streamed) {
      SCOPED_TRACE(streamed ? "streamed" : "from the file");
      auto r = streamed ? extract_conda_stream(pieces_of(bytes, 1 << 16), path, fresh(), posix_fs(),
                                               scratch_, limits)
                        : extract_archive(path, *format_from_name(name), fresh(), posix_fs(),
                                          scratch_, limits);
      ASSERT_FALSE(r.ok());
      EXPECT_EQ(r.status().code(), Code::kInvalidInput) << r.status().to_string();
      EXPECT_NE(r.status().message().find(name), std::string::npos) << r.status().message();
      EXPECT_NE(r.status().message().find(flag), std::string::npos) << r.status().message();
      EXPECT_LE(bytes_on_disk(dest_), max_bytes);
      EXPECT_LE(entries_on_disk(dest_), max_entries);
    }
  }
};

TEST_F(LimitsTest, ExpandedSizeStopsAtTheLimitInEveryFormat) {
  const ExtractLimits limits{
      .max_expanded_bytes = 1 << 20, .max_expansion_ratio = 1 << 30, .ratio_grace_bytes = 0};
  const std::string big(4 << 20, 'z');
  std::vector<Member> pkg = {{"lib/a.bin", 'f', big}};
  expect_limit("big-1-0.conda", testing::make_conda(kIndex, pkg), limits, "--max-expanded-size",
               1 << 20);
  std::vector<Member> all = kIndex;
  all.insert(all.end(), pkg.begin(), pkg.end());
  expect_limit("big-1-0.tar.bz2", testing::make_tar(all, Compression::kBzip2), limits,
               "--max-expanded-size", 1 << 20);
  // libarchive's own filters (a ".tar.bz2" that is really gzip).
  expect_limit("big-1-0.tar.bz2", testing::make_tar(all, Compression::kGzip), limits,
               "--max-expanded-size", 1 << 20);
  expect_limit("big-1.0-py3-none-any.whl", testing::make_wheel({{"big/a.bin", 'f', big}}), limits,
               "--max-expanded-size", 1 << 20);
}

TEST_F(LimitsTest, RatioStopsAtTheLimit) {
  const ExtractLimits limits{.max_expansion_ratio = 20, .ratio_grace_bytes = 0};
  std::vector<Member> pkg = {{"lib/zeros", 'f', std::string(8 << 20, '\0')}};
  std::string conda = testing::make_conda(kIndex, pkg);
  ASSERT_LT(conda.size(), 64u << 10);
  expect_limit("zeros-1-0.conda", conda, limits, "--max-expansion-ratio",
               20 * static_cast<int64_t>(conda.size()));
}

TEST_F(LimitsTest, MembersStopAtTheLimitInEveryFormat) {
  const ExtractLimits limits{.max_members = 10};
  std::vector<Member> pkg;
  for (int i = 0; i < 40; ++i) pkg.push_back({"f" + std::to_string(i), 'f', "x"});
  expect_limit("many-1-0.conda", testing::make_conda({}, pkg), limits, "--max-files-per-package",
               1 << 20, 10);
  expect_limit("many-1-0.tar.bz2", testing::make_tar(pkg, Compression::kBzip2), limits,
               "--max-files-per-package", 1 << 20, 10);
  // A zip's central directory gives the count: nothing is written at all.
  expect_limit("many-1.0-py3-none-any.whl", testing::make_wheel(pkg), limits,
               "--max-files-per-package", 0, 0);
  // Parents created for members count too.
  std::vector<Member> deep = {{"a/b/c/d/e/f/g/h/i/j/k/l/m/n", 'f', "x"}};
  expect_limit("deep-1-0.conda", testing::make_conda({}, deep), limits, "--max-files-per-package",
               0, 10);
}

// Real packages with many files pass under the default limits.
TEST_F(LimitsTest, ManyFilesPassUnderTheDefaults) {
  std::vector<Member> pkg;
  for (int i = 0; i < 5000; ++i) {
    pkg.push_back({"share/d" + std::to_string(i / 1000) + "/f" + std::to_string(i), 'f',
                   "file " + std::to_string(i)});
  }
  auto results = extract_both("many-1-0.conda", testing::make_conda_package(kIndex, pkg));
  for (auto& r : results) {
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_EQ(stats_of(*r).files, 5000 + 2);
  }
}

// --- bombs made here: 1 GiB of zeros in small archives, extracted under the default limits ----

constexpr int64_t kGiB = int64_t{1} << 30;

// A tar holding one file of `size` zero bytes (plus index.json), zstd-compressed as it is
// written (nothing of the size is held in memory).
std::string zstd_tar_of_zeros(int64_t size) {
  std::string out;
  ArchiveWrite w(archive_write_new());
  archive_write_set_format_pax_restricted(w.get());
  archive_write_add_filter_zstd(w.get());
  EXPECT_EQ(archive_write_open(w.get(), &out, nullptr, testing::append_cb, nullptr), ARCHIVE_OK);
  ArchiveEntry e(archive_entry_new());
  archive_entry_set_pathname(e.get(), "share/zeros.bin");
  archive_entry_set_filetype(e.get(), AE_IFREG);
  archive_entry_set_perm(e.get(), 0644);
  archive_entry_set_size(e.get(), size);
  EXPECT_EQ(archive_write_header(w.get(), e.get()), ARCHIVE_OK);
  const std::string zeros(4 << 20, '\0');
  for (int64_t done = 0; done < size; done += std::ssize(zeros)) {
    archive_write_data(w.get(), zeros.data(), zeros.size());
  }
  EXPECT_EQ(archive_write_close(w.get()), ARCHIVE_OK);
  return out;
}

TEST_F(LimitsTest, ZstdBombInACondaStopsNearTheDefaultLimit) {
  std::string pkg_tar = zstd_tar_of_zeros(kGiB);
  std::string conda = testing::make_zip(
      {{"metadata.json", 'f', "{}"},
       {"pkg-zeros-1-0.tar.zst", 'f', pkg_tar},
       {"info-zeros-1-0.tar.zst", 'f', testing::make_tar(kIndex, Compression::kZstd)}});
  ASSERT_LT(conda.size(), 256u << 10);  // ~1/5000 of what it expands to
  // For an archive this small the ratio's grace (16 MiB) is what binds.
  const ExtractLimits defaults;
  expect_limit("zeros-1-0.conda", conda, defaults, "--max-expansion-ratio",
               defaults.ratio_grace_bytes);
}

// bzip2 compresses 8 MiB of zeros into ~50 bytes, and concatenated streams are one file: 128
// copies after a stream holding the tar header make a .tar.bz2 of a 1 GiB member in ~10 KB.
TEST_F(LimitsTest, Bzip2BombStopsNearTheDefaultLimit) {
  auto bz2 = [](const std::string& data) {
    std::string out(data.size() / 50 + 1024, '\0');
    unsigned n = static_cast<unsigned>(out.size());
    EXPECT_EQ(BZ2_bzBuffToBuffCompress(out.data(), &n, const_cast<char*>(data.data()),
                                       static_cast<unsigned>(data.size()), 9, 0, 0),
              BZ_OK);
    out.resize(n);
    return out;
  };
  std::string header = testing::make_tar({{"share/zeros.bin", 'f', ""}});
  header.resize(512);  // the one header block
  // Patch the size field (octal, 11 digits) to 1 GiB and fix the checksum.
  std::snprintf(&header[124], 12, "%011llo", static_cast<unsigned long long>(kGiB));
  std::memset(&header[148], ' ', 8);
  unsigned sum = 0;
  for (char c : header) sum += static_cast<unsigned char>(c);
  std::snprintf(&header[148], 8, "%06o", sum);
  std::string file = bz2(header);
  const std::string zeros = bz2(std::string(8 << 20, '\0'));
  for (int i = 0; i < 130; ++i) file += zeros;  // the data, its padding, the end blocks
  ASSERT_LT(file.size(), 64u << 10);
  const ExtractLimits defaults;
  expect_limit("zeros-1-0.tar.bz2", file, defaults, "--max-expansion-ratio",
               defaults.ratio_grace_bytes);
}

TEST_F(LimitsTest, DeflateBombInAWheelStopsAtTheRatio) {
  std::string zeros(96 << 20, '\0');
  std::string whl = testing::make_wheel({{"bomb/zeros.bin", 'f', zeros}});
  zeros.clear();
  zeros.shrink_to_fit();
  ASSERT_LT(whl.size(), 1u << 20);
  const ExtractLimits defaults;
  expect_limit("bomb-1.0-py3-none-any.whl", whl, defaults, "--max-expansion-ratio",
               std::max<int64_t>(defaults.ratio_grace_bytes,
                                 defaults.max_expansion_ratio * static_cast<int64_t>(whl.size())));
}

// --- tar headers that declare too much ------------------------------------------------------

// A ustar header block: `name` (<= 100 bytes), type flag, `size` bytes of data following.
std::string ustar_header(const std::string& name, char type, int64_t size,
                         const std::string& link = "") {
  std::string h(512, '\0');
  std::memcpy(h.data(), name.data(), std::min<size_t>(name.size(), 100));
  std::memcpy(&h[157], link.data(), std::min<size_t>(link.size(), 100));
  std::snprintf(&h[100], 8, "%07o", 0644);
  std::snprintf(&h[108], 8, "%07o", 0);
  std::snprintf(&h[116], 8, "%07o", 0);
  std::snprintf(&h[124], 12, "%011llo", static_cast<unsigned long long>(size));
  std::snprintf(&h[136], 12, "%011o", 0);
  h[156] = type;
  std::memcpy(&h[257],
              "ustar\0"
              "00",
              8);
  std::memset(&h[148], ' ', 8);
  unsigned sum = 0;
  for (char c : h) sum += static_cast<unsigned char>(c);
  std::snprintf(&h[148], 8, "%06o", sum);
  return h;
}
std::string padded(std::string data) {
  data.resize((data.size() + 511) / 512 * 512, '\0');
  return data;
}
// One pax record, "<len> key=value\n", len counting itself.
std::string pax_record(const std::string& key, const std::string& value) {
  std::string body = " " + key + "=" + value + "\n";
  size_t len = body.size() + 1;
  while (std::to_string(len).size() + body.size() != len) ++len;
  return std::to_string(len) + body;
}
std::string pax_header(const std::string& records) {
  return ustar_header("PaxHeader", 'x', std::ssize(records)) + padded(records);
}
std::string tar_end() { return std::string(1024, '\0'); }

TEST_F(LimitsTest, LongNamesAreRefusedWithAShortMessage) {
  const std::string long_name = "lib/" + std::string(5000, 'n');
  std::string tar = pax_header(pax_record("path", long_name)) + ustar_header("x", '0', 1) +
                    padded("x") + tar_end();
  auto r = extract_both("long-1-0.tar.bz2", tar);
  ASSERT_FALSE(r[0].ok());
  EXPECT_EQ(r[0].status().code(), Code::kCorrupt);
  EXPECT_NE(r[0].status().message().find("name of 5004 bytes, more than 4095"), std::string::npos)
      << r[0].status().message().substr(0, 500);
  EXPECT_LT(r[0].status().message().size(), 600u);
  // GNU long name ('L') and long link ('K') records past libarchive's 1 MiB: refused by it, and
  // an 8 GiB one is never read into memory.
  for (char type : {'L', 'K'}) {
    for (int64_t size : {int64_t{2} << 20, (int64_t{8} << 30) - 1}) {
      SCOPED_TRACE(std::string(1, type) + std::to_string(size));
      std::string gnu = ustar_header("././@LongLink", type, size) + padded("abc") + tar_end();
      auto g = extract_both("gnu-1-0.tar.bz2", gnu);
      ASSERT_FALSE(g[0].ok());
      EXPECT_EQ(g[0].status().code(), Code::kCorrupt) << g[0].status().to_string();
    }
  }
  // A pax header bigger than 1 MiB, likewise.
  std::string huge = pax_header(pax_record("comment", std::string(2 << 20, 'c'))) +
                     ustar_header("x", '0', 1) + padded("x") + tar_end();
  auto h = extract_both("pax-1-0.tar.bz2", huge);
  ASSERT_FALSE(h[0].ok());
  EXPECT_EQ(h[0].status().code(), Code::kCorrupt) << h[0].status().to_string();
  // A symlink target over the bound.
  std::string link = pax_header(pax_record("linkpath", std::string(5000, 't'))) +
                     ustar_header("lib/l", '2', 0, "short") + tar_end();
  auto l = extract_both("link-1-0.tar.bz2", link);
  ASSERT_FALSE(l[0].ok());
  EXPECT_NE(l[0].status().message().find("symlink target of 5000 bytes"), std::string::npos)
      << l[0].status().to_string();
}

// `head`, then `zeros` zero bytes, then `tail`, zstd-compressed as it goes (nothing of the zeros
// is held in memory).
std::string zstd_with_zeros(const std::string& head, int64_t zeros, const std::string& tail) {
  std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> c(ZSTD_createCCtx(), ZSTD_freeCCtx);
  std::string out;
  std::string buf(ZSTD_CStreamOutSize(), '\0');
  auto feed = [&](const char* data, size_t n, ZSTD_EndDirective end) {
    ZSTD_inBuffer in{data, n, 0};
    for (;;) {
      ZSTD_outBuffer o{buf.data(), buf.size(), 0};
      size_t left = ZSTD_compressStream2(c.get(), &o, &in, end);
      EXPECT_FALSE(ZSTD_isError(left));
      out.append(buf.data(), o.pos);
      if (end == ZSTD_e_end ? left == 0 : in.pos == in.size) break;
    }
  };
  feed(head.data(), head.size(), ZSTD_e_continue);
  const std::string chunk(4 << 20, '\0');
  for (int64_t done = 0; done < zeros; done += std::ssize(chunk)) {
    feed(chunk.data(), static_cast<size_t>(std::min<int64_t>(zeros - done, std::ssize(chunk))),
         ZSTD_e_continue);
  }
  feed(tail.data(), tail.size(), ZSTD_e_end);
  return out;
}

// Bytes that are decompressed but never written count too: a pax hard link may carry a body,
// which libarchive skips (decoding all of it) once the link is made. 1 GiB of it stops at the
// limit, not after decoding it all.
TEST_F(LimitsTest, SkippedDataCountsAsDecompressed) {
  const int64_t size = kGiB;
  std::string head = ustar_header("a", '0', 1) + padded("a") +
                     pax_header(pax_record("comment", "pax, so the link's body is data")) +
                     ustar_header("b", '1', size, "a");
  std::string pkg = zstd_with_zeros(head, size + (-size & 511) + 1024, "");
  std::string conda = testing::make_zip({{"metadata.json", 'f', "{}"},
                                         {"pkg-link-1-0.tar.zst", 'f', pkg},
                                         {"info-link-1-0.tar.zst", 'f',
                                          testing::make_tar(kIndex, Compression::kZstd)}});
  ASSERT_LT(conda.size(), 256u << 10);
  const ExtractLimits defaults;
  expect_limit("link-1-0.conda", conda, defaults, "--max-expansion-ratio", 1 << 20);
  std::string path = dir_ / "link-1-0.conda";
  auto r = extract_archive(path, ArchiveFormat::kConda, fresh(), posix_fs(), scratch_);
  EXPECT_NE(r.status().message().find("decompressed"), std::string::npos) << r.status().message();
}

// One zstd frame of `data`.
std::string zstd_frame(const std::string& data) {
  std::string out(ZSTD_compressBound(data.size()), '\0');
  size_t n = ZSTD_compress(out.data(), out.size(), data.data(), data.size(), 3);
  EXPECT_FALSE(ZSTD_isError(n));
  out.resize(n);
  return out;
}

// What the outer zip inflates counts as decompressed, on both paths: a deflated inner tar.zst
// whose tar is split over two frames around a 32 MiB zstd skippable frame (which the zstd
// decoder passes over unseen) inflates 32 MiB from ~32 KB. So does what follows the tar's end
// in the member (read streamed only: its CRC-32 is checked).
TEST_F(LimitsTest, OuterZipInflationCounts) {
  const std::string tar = testing::make_tar(kPkg);
  const std::string skip = testing::zstd_skippable(std::string(32 << 20, '\0'));
  std::string pkg = zstd_frame(tar.substr(0, 512)) + skip + zstd_frame(tar.substr(512));
  std::string conda = testing::make_zip({{"metadata.json", 'f', "{}"},
                                         {"pkg-skip-1-0.tar.zst", 'f', pkg},
                                         {"info-skip-1-0.tar.zst", 'f',
                                          testing::make_tar(kIndex, Compression::kZstd)}},
                                        /*deflate=*/true);
  ASSERT_LT(conda.size(), 1u << 20);
  ExtractLimits limits;
  limits.max_expanded_bytes = 4 << 20;
  expect_limit("skip-1-0.conda", conda, limits, "--max-expanded-size", 4 << 20);
  // Within the limits it is fine (the skippable frame is legal zstd).
  ExtractLimits roomy;
  roomy.max_expansion_ratio = 1 << 20;
  for (auto& r : extract_both("skip-1-0.conda", conda, roomy)) {
    ASSERT_TRUE(r.ok()) << r.status().to_string();
  }

  std::string trailing = testing::make_zip({{"metadata.json", 'f', "{}"},
                                            {"pkg-tail-1-0.tar.zst", 'f', zstd_frame(tar) + skip},
                                            {"info-tail-1-0.tar.zst", 'f',
                                             testing::make_tar(kIndex, Compression::kZstd)}},
                                           /*deflate=*/true);
  std::string path = dir_ / "tail-1-0.conda";
  testing::write_bytes(path, trailing);
  auto streamed = extract_conda_stream(pieces_of(trailing, 1 << 16), path, fresh(), posix_fs(),
                                       scratch_, limits);
  ASSERT_FALSE(streamed.ok());
  EXPECT_NE(streamed.status().message().find("--max-expanded-size"), std::string::npos)
      << streamed.status().message();
}

// Streamed, an ignored outer member is inflated too (its CRC-32 is checked): counted as well.
// The file path never reads it.
TEST_F(LimitsTest, IgnoredOuterMemberCountsWhenStreamed) {
  std::string conda = testing::make_zip(
      {{"metadata.json", 'f', "{}"},
       {"junk.bin", 'f', std::string(32 << 20, '\0')},
       {"pkg-junk-1-0.tar.zst", 'f', testing::make_tar(kPkg, Compression::kZstd)},
       {"info-junk-1-0.tar.zst", 'f', testing::make_tar(kIndex, Compression::kZstd)}},
      /*deflate=*/true);
  ExtractLimits limits;
  limits.max_expanded_bytes = 4 << 20;
  std::string path = dir_ / "junk-1-0.conda";
  testing::write_bytes(path, conda);
  auto streamed = extract_conda_stream(pieces_of(conda, 1 << 16), path, fresh(), posix_fs(),
                                       scratch_, limits);
  ASSERT_FALSE(streamed.ok());
  EXPECT_EQ(streamed.status().code(), Code::kInvalidInput) << streamed.status().to_string();
  EXPECT_NE(streamed.status().message().find("--max-expanded-size"), std::string::npos)
      << streamed.status().message();
  EXPECT_EQ(entries_on_disk(dest_), 0);  // stopped before the inner tars
  auto from_file =
      extract_archive(path, ArchiveFormat::kConda, fresh(), posix_fs(), scratch_, limits);
  EXPECT_TRUE(from_file.ok()) << from_file.status().to_string();
}

// libarchive gives up after 32 special headers in a row with a mere warning, leaving the entry
// unparsed: that is a corrupt archive, not a member to extract.
TEST_F(LimitsTest, TooManySpecialHeadersIsCorrupt) {
  std::string tar;
  for (int i = 0; i < 40; ++i) tar += pax_header(pax_record("path", "p" + std::to_string(i)));
  tar += ustar_header("x", '0', 1) + padded("x") + tar_end();
  auto r = extract_both("special-1-0.tar.bz2", tar);
  ASSERT_FALSE(r[0].ok());
  EXPECT_EQ(r[0].status().code(), Code::kCorrupt) << r[0].status().to_string();
  EXPECT_NE(r[0].status().message().find("unsupported member type"), std::string::npos)
      << r[0].status().to_string();
  EXPECT_TRUE(testing::list(dest_).empty());
}

// A GNU sparse (pax 1.0) member declaring a 1 TiB file with one byte of data: its holes are
// written as zeros, charged like any byte.
TEST_F(LimitsTest, SparseMemberDeclaringATerabyteStopsAtTheLimit) {
  const int64_t tib = int64_t{1} << 40;
  std::string records = pax_record("GNU.sparse.major", "1") + pax_record("GNU.sparse.minor", "0") +
                        pax_record("GNU.sparse.name", "lib/sparse.bin") +
                        pax_record("GNU.sparse.realsize", std::to_string(tib));
  std::string map = padded("1\n" + std::to_string(tib - 1) + "\n1\n");
  std::string tar = pax_header(records) +
                    ustar_header("GNUSparseFile.0/sparse.bin", '0', std::ssize(map) + 512) + map +
                    padded("x") + tar_end();
  const ExtractLimits limits{.max_expanded_bytes = 4 << 20, .ratio_grace_bytes = 4 << 20};
  expect_limit("sparse-1-0.tar.bz2", tar, limits, "--max-expanded-size", 4 << 20);
}

}  // namespace
}  // namespace mat::cache
