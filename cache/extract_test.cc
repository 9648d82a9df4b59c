#include "cache/extract.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <tbb/task_arena.h>
#include <unistd.h>

#include <clocale>

#include "cache/test_util.h"
#include "materializer/base/hash.h"

namespace mat::cache {
namespace {

using testing::Compression;
using testing::Member;
using testing::TempDir;
using Type = ManifestEntry::Type;

// The process contract (extract.h): main() runs with a UTF-8 LC_CTYPE. gtest_main does not, so
// the test binary sets it before any test runs.
const bool kUtf8Locale = std::setlocale(LC_CTYPE, "C.UTF-8") != nullptr;

class ExtractTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(kUtf8Locale);
    ASSERT_TRUE(make_dirs(dest_).ok());
    ASSERT_TRUE(make_dirs(sentinel_).ok());
  }

  // Writes `bytes` as tmp/<name> and extracts it into dest/.
  Result<Manifest> extract_bytes(const std::string& name, const std::string& bytes) {
    std::string path = dir_ / name;
    testing::write_bytes(path, bytes);
    return extract_archive(path, *format_from_name(name), dest_, posix_fs(), scratch_);
  }

  // Asserts a kCorrupt naming `member`, with nothing written next to dest/.
  void expect_rejected(const Result<Manifest>& r, const std::string& member) {
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Code::kCorrupt) << r.status().to_string();
    EXPECT_NE(r.status().message().find(member), std::string::npos) << r.status().message();
    EXPECT_TRUE(testing::list(sentinel_).empty());
    EXPECT_EQ(testing::list(dir_ / "work").size(), 1u);  // only dest/ itself
    EXPECT_FALSE(path_exists(dir_ / "evil"));
  }

  std::string pkg(const std::string& rel) const { return dest_ + "/" + rel; }

  TempDir dir_;
  std::string dest_ = dir_ / "work/pkg";
  std::string sentinel_ = dir_ / "sentinel";
  ExtractScratch scratch_;
};

TEST_F(ExtractTest, CondaWithInfoAndPkg) {
  std::string conda = testing::make_conda(
      {{"info/index.json", 'f', R"({"name":"test"})"}, {"info/paths.json", 'f', "{}"}},
      {{"bin/tool", 'f', "#!/bin/sh\necho hi\n", "", 0755},
       {"lib/libx.so.1", 'f', "ELF", "", 0644},
       {"lib/libx.so", 'l', "", "libx.so.1"},
       {"share/empty", 'd'},
       {"etc/readonly.conf", 'f', "x=1\n", "", 0444}});
  auto r = extract_bytes("test-1.0-0.conda", conda);
  ASSERT_TRUE(r.ok()) << r.status().to_string();

  EXPECT_EQ(testing::slurp(pkg("bin/tool")), "#!/bin/sh\necho hi\n");
  EXPECT_EQ(testing::file_mode(pkg("bin/tool")) & 07777, 0755u);
  EXPECT_EQ(testing::file_mode(pkg("etc/readonly.conf")) & 07777, 0444u);
  EXPECT_EQ(testing::read_link(pkg("lib/libx.so")), "libx.so.1");
  EXPECT_TRUE(is_dir(pkg("share/empty")));
  EXPECT_EQ(testing::slurp(pkg("info/index.json")), R"({"name":"test"})");
  EXPECT_FALSE(path_exists(pkg("metadata.json")));

  const Manifest& m = *r;
  ASSERT_TRUE(m.count("bin/tool"));
  EXPECT_EQ(m.at("bin/tool").type, Type::kFile);
  EXPECT_EQ(m.at("bin/tool").size, 18);
  EXPECT_EQ(m.at("bin/tool").mode, 0755u);
  EXPECT_EQ(m.at("bin/tool").xxh3, xxh3_hex("#!/bin/sh\necho hi\n"));
  EXPECT_EQ(m.at("lib/libx.so").type, Type::kSymlink);
  EXPECT_EQ(m.at("lib/libx.so").target, "libx.so.1");
  EXPECT_EQ(m.at("share/empty").type, Type::kDir);
  EXPECT_EQ(m.at("share").type, Type::kDir);  // implicit parents are listed too
  EXPECT_EQ(m.at("info/paths.json").xxh3, xxh3_hex("{}"));

  ExtractStats s = stats_of(m);
  EXPECT_EQ(s.files, 5);
  EXPECT_EQ(s.symlinks, 1);
  EXPECT_EQ(s.dirs, 6);  // info bin lib share share/empty etc
}

// Files are created with their final mode and fchmod'ed only when the umask would take bits
// away: whatever the umask, the tree holds the package's modes (0400 added), and a wheel's are
// pip's (0644 / 0755).
TEST_F(ExtractTest, ModesDoNotDependOnTheUmask) {
  std::string conda = testing::make_conda(
      {{"info/index.json", 'f', "{}"}},
      {{"bin/tool", 'f', "t", "", 0755},
       {"etc/group.conf", 'f', "g", "", 0664},
       {"etc/readonly.conf", 'f', "r", "", 0444},
       {"etc/private", 'f', "p", "", 0600},
       {"etc/writeonly", 'f', "w", "", 0200}});
  std::string whl = testing::make_wheel({{"w/__init__.py", 'f', "x"},
                                         {"w-1.0.data/scripts/run", 'f', "#!python\n", "", 0775}},
                                        "w-1.0.dist-info", /*deflate=*/true);
  const mode_t g = ::getegid() == 0 ? 020 : 0;
  for (mode_t umask : {mode_t{022}, mode_t{027}, mode_t{077}, mode_t{0}}) {
    SCOPED_TRACE(umask);
    mode_t old = ::umask(umask);
    ASSERT_TRUE(remove_all(dir_ / "work").ok());
    ASSERT_TRUE(make_dirs(dest_).ok());
    auto r = extract_bytes("t-1.0-0.conda", conda);
    auto rw = r.ok() ? extract_bytes("w-1.0-py3-none-any.whl", whl) : r;
    ::umask(old);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    ASSERT_TRUE(rw.ok()) << rw.status().to_string();
    EXPECT_EQ(testing::file_mode(pkg("bin/tool")) & 07777, 0755u);
    // Group write survives only where the files' group is root's (cache/trust.h).
    EXPECT_EQ(testing::file_mode(pkg("etc/group.conf")) & 07777, 0644u | g);
    EXPECT_EQ(testing::file_mode(pkg("etc/readonly.conf")) & 07777, 0444u);
    EXPECT_EQ(testing::file_mode(pkg("etc/private")) & 07777, 0600u);
    EXPECT_EQ(testing::file_mode(pkg("etc/writeonly")) & 07777, 0600u);
    EXPECT_EQ(r->at("etc/group.conf").mode, 0644u | g);
    EXPECT_EQ(testing::slurp(pkg("etc/readonly.conf")), "r");
    EXPECT_EQ(testing::file_mode(pkg("w/__init__.py")) & 07777, 0644u);
    EXPECT_EQ(testing::file_mode(pkg("w-1.0.data/scripts/run")) & 07777, 0755u);
  }
}

// Issue 11, defect 6: a package's 0666 member used to become a world-writable cache file,
// hard-linked into every prefix. Whatever the archive and the umask say, nothing extracted is
// writable by group or others (the promise find_tree() relies on instead of a stat per file).
// Other users can never write what extraction makes; group write survives only where the
// files' group is root's (gid 0), so a prefix made as root keeps conda's 0664/0775 modes.
TEST_F(ExtractTest, NothingExtractedIsWritableByGroupOrOthers) {
  std::string conda =
      testing::make_conda({{"info/index.json", 'f', "{}"}}, {{"share/", 'd', "", "", 0777},
                                                             {"share/world", 'f', "w", "", 0666},
                                                             {"bin/all", 'f', "a", "", 0777},
                                                             {"etc/other", 'f', "o", "", 0602},
                                                             {"etc/hard", 'h', "", "share/world"},
                                                             {"deep/er/file", 'f', "d", "", 0664}});
  std::string tar = testing::make_tar(
      {{"lib/", 'd', "", "", 0777}, {"lib/x.so", 'f', "x", "", 0777}}, Compression::kBzip2);
  // The files' group: the process's (gid 0 when root), or, as root, gid 12345 through a
  // set-group-ID destination directory (the case of every non-root user).
  std::vector<gid_t> groups = {::getegid()};
  if (::geteuid() == 0) groups.push_back(12345);
  for (gid_t gid : groups) {
    const mode_t g = gid == 0 ? 020 : 0;  // the group write bit that may survive
    for (mode_t umask : {mode_t{0}, mode_t{002}, mode_t{022}}) {
      SCOPED_TRACE(::testing::Message() << "gid " << gid << " umask " << umask);
      mode_t old = ::umask(umask);
      ASSERT_TRUE(remove_all(dir_ / "work").ok());
      ASSERT_TRUE(make_dirs(dest_).ok());
      if (gid != ::getegid()) {
        ASSERT_EQ(::chown(dest_.c_str(), static_cast<uid_t>(-1), gid), 0);
        ASSERT_EQ(::chmod(dest_.c_str(), 02755), 0);
      }
      auto r = extract_bytes("t-1.0-0.conda", conda);
      auto rt = r.ok() ? extract_bytes("u-1.0-0.tar.bz2", tar) : r;
      ::umask(old);
      ASSERT_TRUE(r.ok()) << r.status().to_string();
      ASSERT_TRUE(rt.ok()) << rt.status().to_string();
      EXPECT_EQ(testing::file_mode(pkg("share/world")) & 07777, 0644u | g);
      EXPECT_EQ(testing::file_mode(pkg("bin/all")) & 07777, 0755u | g);
      EXPECT_EQ(testing::file_mode(pkg("etc/other")) & 07777, 0600u);
      EXPECT_EQ(testing::file_mode(pkg("etc/hard")) & 07777, 0644u | g);
      EXPECT_EQ(testing::file_mode(pkg("lib/x.so")) & 07777, 0755u | g);
      EXPECT_EQ(r->at("share/world").mode, 0644u | g);
      EXPECT_EQ(r->at("deep/er/file").mode, 0644u | g);
      EXPECT_EQ(rt->at("lib/x.so").mode, 0755u | g);
      for (const char* d : {"share", "bin", "etc", "deep", "deep/er", "lib"}) {
        EXPECT_EQ(testing::file_mode(pkg(d)) & 022, 0u) << d;
      }
    }
  }
}

TEST_F(ExtractTest, TarBz2Valid) {
  std::string tar = testing::make_tar(
      {{"info/index.json", 'f', "{}"}, {"lib/a.txt", 'f', std::string(300000, 'a')}},
      Compression::kBzip2);
  auto r = extract_bytes("p-1-0.tar.bz2", tar);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(testing::slurp(pkg("lib/a.txt")), std::string(300000, 'a'));
  EXPECT_EQ(r->at("lib/a.txt").xxh3, xxh3_hex(std::string(300000, 'a')));
}

TEST_F(ExtractTest, SparseTarMemberIsWrittenWithZeroHoles) {
  // pax sparse member: 3 MB with data at 1 MB (10 bytes) and 2 MB (5 bytes), holes elsewhere,
  // including a trailing one. libarchive's writer takes the whole content and drops the holes.
  std::string want(3 << 20, '\0');
  want.replace(1 << 20, 10, "0123456789");
  want.replace(2 << 20, 5, "abcde");
  std::string out;
  {
    ArchiveWrite w(archive_write_new());
    archive_write_set_format_pax(w.get());
    archive_write_add_filter_bzip2(w.get());
    ASSERT_EQ(archive_write_open(w.get(), &out, nullptr, testing::append_cb, nullptr), ARCHIVE_OK);
    ArchiveEntry e(archive_entry_new());
    archive_entry_set_pathname(e.get(), "lib/sparse.bin");
    archive_entry_set_filetype(e.get(), AE_IFREG);
    archive_entry_set_perm(e.get(), 0644);
    archive_entry_set_size(e.get(), 3 << 20);
    archive_entry_sparse_add_entry(e.get(), 1 << 20, 10);
    archive_entry_sparse_add_entry(e.get(), 2 << 20, 5);
    ASSERT_EQ(archive_write_header(w.get(), e.get()), ARCHIVE_OK) << archive_error(w.get());
    ASSERT_EQ(archive_write_data(w.get(), want.data(), want.size()), std::ssize(want));
    ASSERT_EQ(archive_write_close(w.get()), ARCHIVE_OK) << archive_error(w.get());
  }
  ASSERT_LT(out.size(), 64u << 10);  // the holes are not in the archive
  auto r = extract_bytes("sparse-1.0-0.tar.bz2", out);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  std::string got = testing::slurp(pkg("lib/sparse.bin"));
  ASSERT_EQ(got.size(), want.size());
  EXPECT_TRUE(got == want);
  EXPECT_EQ(r->at("lib/sparse.bin").size, 3 << 20);
  EXPECT_EQ(r->at("lib/sparse.bin").xxh3, xxh3_hex(want));
}

TEST_F(ExtractTest, TarBz2ThatIsPlainTarOrGzipIsAccepted) {
  for (Compression c : {Compression::kNone, Compression::kGzip}) {
    std::string tar = testing::make_tar({{"lib/a.txt", 'f', "a"}}, c);
    ASSERT_TRUE(remove_all(dest_).ok());
    ASSERT_TRUE(make_dirs(dest_).ok());
    auto r = extract_bytes("p-1-0.tar.bz2", tar);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_EQ(testing::slurp(pkg("lib/a.txt")), "a");
  }
}

TEST_F(ExtractTest, DotSlashNamesAreStripped) {
  std::string tar = testing::make_tar(
      {{"./", 'd'}, {"./bin", 'd'}, {"./bin/x", 'f', "x", "", 0755}, {"././lib//./y", 'f', "y"}},
      Compression::kBzip2);
  auto r = extract_bytes("p-1-0.tar.bz2", tar);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(testing::slurp(pkg("bin/x")), "x");
  EXPECT_EQ(testing::slurp(pkg("lib/y")), "y");
  EXPECT_TRUE(r->count("bin/x"));
  EXPECT_TRUE(r->count("lib/y"));
  EXPECT_FALSE(r->count(""));
}

TEST_F(ExtractTest, UnicodeNamesRoundTrip) {
  const std::string name =
      "d\xc3\xbc/\xc3\xbcn\xc3\xaf"
      "c\xc3\xb6"
      "d\xc3\xa9_\xe2\x98\x83.txt";
  const std::string link = "l\xe2\x98\x83";
  std::vector<Member> members = {{name, 'f', "snow"}, {link, 'l', "", name}};
  struct Case {
    const char* file;
    std::string bytes;
  } cases[] = {
      {"u-1-0.tar.bz2", testing::make_tar(members, Compression::kBzip2)},
      {"u-1-0.conda", testing::make_conda({{"info/index.json", 'f', "{}"}}, members)},
      {"u-1.0-py3-none-any.whl", testing::make_wheel({{name, 'f', "snow"}}, "u-1.0.dist-info")},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.file);
    ASSERT_TRUE(remove_all(dest_).ok());
    ASSERT_TRUE(make_dirs(dest_).ok());
    auto r = extract_bytes(c.file, c.bytes);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_EQ(testing::slurp(pkg(name)), "snow");
    EXPECT_TRUE(r->count(name));
    if (std::string(c.file).ends_with(".whl")) continue;
    EXPECT_EQ(testing::read_link(pkg(link)), name);
  }
}

// Wheels are read with libzip, which hands out UTF-8 names whatever the process locale
// (libarchive's zip reader converted them through the locale, and failed under "C").
TEST_F(ExtractTest, WheelNamesDoNotDependOnTheLocale) {
  const std::string name = "\xe2\x98\x83.py";
  std::string whl = testing::make_wheel({{name, 'f', "x"}}, "u-1.0.dist-info");
  std::string saved = std::setlocale(LC_CTYPE, nullptr);
  std::setlocale(LC_CTYPE, "C");
  auto r = extract_bytes("u-1.0-py3-none-any.whl", whl);
  std::setlocale(LC_CTYPE, saved.c_str());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(testing::slurp(pkg(name)), "x");
}

TEST_F(ExtractTest, WheelExtractsDeflatedMembersAndModes) {
  std::string whl = testing::make_wheel({{"pkg/", 'd', "", "", 0755},
                                         {"pkg/__init__.py", 'f', "print(1)\n"},
                                         {"pkg-1.0.data/scripts/run", 'f', "#!python\n", "", 0755}},
                                        "pkg-1.0.dist-info", /*deflate=*/true);
  auto r = extract_bytes("pkg-1.0-py3-none-any.whl", whl);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(testing::slurp(pkg("pkg/__init__.py")), "print(1)\n");
  EXPECT_EQ(testing::file_mode(pkg("pkg-1.0.data/scripts/run")) & 0777, 0755u);
  EXPECT_GT(r->at("pkg-1.0.dist-info/RECORD").size, 0);
}

// A wheel big enough (>= 8 MB uncompressed) to be split across several readers: 24 members of
// 0.5-1 MB of pseudo-random bytes in nested directories, plus small ones.
const std::vector<Member>& big_wheel_members() {
  static const std::vector<Member> cached = [] {
    std::vector<Member> members = {{"big/", 'd', "", "", 0755}};
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < 24; ++i) {
      std::string data((512 << 10) + i * 23456, '\0');
      for (char& c : data) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        c = static_cast<char>(x % 61);  // deflates a little
      }
      std::string dir = "big/sub" + std::to_string(i % 5) + "/deep" + std::to_string(i % 3) + "/";
      members.push_back(
          {dir + "part" + std::to_string(i) + ".so", 'f', data, "", i % 2 ? 0755 : 0644});
    }
    for (int i = 0; i < 40; ++i) {
      members.push_back({"big/sub" + std::to_string(i % 5) + "/m" + std::to_string(i) + ".py", 'f',
                         "x = " + std::to_string(i) + "\n"});
    }
    return members;
  }();
  return cached;
}

const std::string& big_wheel() {
  static const std::string whl = testing::make_wheel(big_wheel_members(), "big-1.0.dist-info");
  return whl;
}

TEST_F(ExtractTest, BigWheelSplitAcrossReadersMatchesOneReader) {
  const std::string& whl = big_wheel();
  std::string path = dir_ / "big-1.0-py3-none-any.whl";
  testing::write_bytes(path, whl);
  for (int threads : {1, 2, 4}) {
    std::string dest = dir_ / ("t" + std::to_string(threads));
    ASSERT_TRUE(make_dirs(dest).ok());
    Result<Manifest> r = Internal("not run");
    tbb::task_arena arena(threads);
    arena.execute(
        [&] { r = extract_archive(path, ArchiveFormat::kWheel, dest, posix_fs(), scratch_); });
    ASSERT_TRUE(r.ok()) << threads << ": " << r.status().to_string();
    auto serial = extract_bytes("big-1.0-py3-none-any.whl", whl);  // outside any arena: 2 cores
    ASSERT_TRUE(serial.ok()) << serial.status().to_string();
    EXPECT_EQ(*r, *serial) << threads;
    EXPECT_EQ(r->size(), 1u + 5 + 15 + 24 + 40 + 1 + 1);  // dirs, parts, .py, dist-info + RECORD
    EXPECT_EQ(testing::slurp(dest + "/big/sub3/deep0/part3.so"),
              testing::slurp(pkg("big/sub3/deep0/part3.so")));
    EXPECT_EQ(testing::file_mode(dest + "/big/sub1/deep1/part1.so") & 0777, 0755u);
    ASSERT_TRUE(remove_all(dest_).ok());
    ASSERT_TRUE(make_dirs(dest_).ok());
  }
}

TEST_F(ExtractTest, BigWheelWithTamperedMemberIsRejected) {
  std::vector<Member> members = big_wheel_members();
  // Same RECORD, one member's bytes changed after the fact.
  members[7].data[1000] ^= 1;
  std::vector<RecordRow> rows;
  for (const auto& m : big_wheel_members()) {
    if (m.type == 'f')
      rows.push_back({m.name, record_hash_of(m.data), std::to_string(m.data.size())});
  }
  rows.push_back({"big-1.0.dist-info/RECORD", "", ""});
  members.push_back({"big-1.0.dist-info/RECORD", 'f', format_record(rows)});
  tbb::task_arena arena(2);
  Result<Manifest> r = Internal("not run");
  arena.execute(
      [&] { r = extract_bytes("big-1.0-py3-none-any.whl", testing::make_zip(members, true)); });
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kCorrupt) << r.status().to_string();
  EXPECT_NE(r.status().message().find(members[7].name + ": sha256 mismatch with RECORD"),
            std::string::npos)
      << r.status().message();
}

TEST_F(ExtractTest, BigWheelDuplicateOrFileDirClashIsRejectedBeforeWriting) {
  tbb::task_arena arena(2);
  {
    std::vector<Member> members = big_wheel_members();
    members.push_back(members[3]);  // same name twice
    Result<Manifest> r = Internal("not run");
    arena.execute([&] {
      r = extract_bytes("big-1.0-py3-none-any.whl",
                        testing::make_wheel(members, "big-1.0.dist-info"));
    });
    expect_rejected(r, "duplicate member name");
    EXPECT_TRUE(testing::list(dest_).empty());
  }
  {
    std::vector<Member> members = big_wheel_members();
    members.push_back({"big/sub2", 'f', "a file where a directory is"});
    Result<Manifest> r = Internal("not run");
    arena.execute([&] {
      r = extract_bytes("big-1.0-py3-none-any.whl",
                        testing::make_wheel(members, "big-1.0.dist-info"));
    });
    expect_rejected(r, "'big/sub2': is both a file and a directory");
    EXPECT_TRUE(testing::list(dest_).empty());
  }
}

TEST_F(ExtractTest, HardLinkToEarlierFileIsLinked) {
  std::string tar = testing::make_tar({{"bin/a", 'f', "same", "", 0755},
                                       {"bin/b", 'h', "", "bin/a"},
                                       {"./bin/c", 'h', "", "./bin/a"}},
                                      Compression::kBzip2);
  auto r = extract_bytes("p-1-0.tar.bz2", tar);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(testing::slurp(pkg("bin/b")), "same");
  EXPECT_EQ(r->at("bin/b"), r->at("bin/a"));
  struct stat a, b;
  ASSERT_EQ(::stat(pkg("bin/a").c_str(), &a), 0);
  ASSERT_EQ(::stat(pkg("bin/c").c_str(), &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino);
}

TEST_F(ExtractTest, DuplicateFileLastOneWins) {
  std::string tar = testing::make_tar(
      {{"a", 'f', "first"}, {"a", 'f', "second"}, {"l", 'l', "", "a"}, {"l", 'f', "now a file"}},
      Compression::kBzip2);
  auto r = extract_bytes("p-1-0.tar.bz2", tar);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(testing::slurp(pkg("a")), "second");
  EXPECT_EQ(r->at("a").xxh3, xxh3_hex("second"));
  EXPECT_EQ(r->at("l").type, Type::kFile);
  EXPECT_TRUE(S_ISREG(testing::file_mode(pkg("l"))));
}

TEST_F(ExtractTest, RelativeSymlinksInsideArePreserved) {
  std::string tar = testing::make_tar({{"share/terminfo/x/xterm", 'f', "t"},
                                       {"lib/terminfo", 'l', "", "../share/terminfo"},
                                       {"share/terminfo/x/xt", 'l', "", "../x/./xterm"},
                                       {"dangling", 'l', "", "lib/not-shipped.so"},
                                       {"dir/link-to-dir", 'l', "", "."}},
                                      Compression::kBzip2);
  auto r = extract_bytes("p-1-0.tar.bz2", tar);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(testing::read_link(pkg("lib/terminfo")), "../share/terminfo");
  EXPECT_EQ(testing::slurp(pkg("lib/terminfo/x/xt")), "t");
  EXPECT_EQ(testing::read_link(pkg("dangling")), "lib/not-shipped.so");
}

// --- malicious archives ------------------------------------------------------------------------

TEST_F(ExtractTest, DotDotMemberIsRejected) {
  auto r = extract_bytes("p-1-0.tar.bz2",
                         testing::make_tar({{"ok", 'f', "1"}, {"../../sentinel/evil", 'f', "x"}},
                                           Compression::kBzip2));
  expect_rejected(r, "../../sentinel/evil");
  EXPECT_NE(r.status().message().find("p-1-0.tar.bz2"), std::string::npos);
}

TEST_F(ExtractTest, AbsoluteMemberIsRejected) {
  std::string abs = sentinel_ + "/evil";
  auto r =
      extract_bytes("p-1-0.tar.bz2", testing::make_tar({{abs, 'f', "x"}}, Compression::kBzip2));
  expect_rejected(r, abs);
  EXPECT_NE(r.status().message().find("absolute"), std::string::npos);
}

TEST_F(ExtractTest, AbsoluteSymlinkThenMemberThroughItIsRejected) {
  auto r =
      extract_bytes("p-1-0.tar.bz2",
                    testing::make_tar({{"a", 'l', "", sentinel_}, {"a/passwd", 'f', "root::0:0"}},
                                      Compression::kBzip2));
  expect_rejected(r, "'a'");
}

TEST_F(ExtractTest, MemberThroughRelativeSymlinkIsRejected) {
  auto r = extract_bytes(
      "p-1-0.tar.bz2",
      testing::make_tar({{"sub/", 'd'}, {"a", 'l', "", "sub"}, {"a/passwd", 'f', "x"}},
                        Compression::kBzip2));
  expect_rejected(r, "a/passwd");
  EXPECT_NE(r.status().message().find("symlink"), std::string::npos);
}

TEST_F(ExtractTest, EscapingSymlinkIsRejected) {
  auto r = extract_bytes("p-1-0.tar.bz2",
                         testing::make_tar({{"lib", 'l', "", "../.."}}, Compression::kBzip2));
  expect_rejected(r, "'lib'");
  auto r2 = extract_bytes(
      "q-1-0.tar.bz2", testing::make_tar({{"a/b/c", 'l', "", "../../../x"}}, Compression::kBzip2));
  expect_rejected(r2, "a/b/c");
}

TEST_F(ExtractTest, SymlinkEscapingThroughAnotherSymlinkIsRejected) {
  // Each target is inside lexically, but a/b -> up/.. resolves via a/up -> .. to the root's
  // parent.
  auto r = extract_bytes(
      "p-1-0.tar.bz2",
      testing::make_tar({{"a/up", 'l', "", ".."}, {"a/b", 'l', "", "up/.."}}, Compression::kBzip2));
  expect_rejected(r, "a/b");
}

TEST_F(ExtractTest, HardLinkOutsideIsRejected) {
  auto r = extract_bytes("p-1-0.tar.bz2",
                         testing::make_tar({{"h", 'h', "", "../x"}}, Compression::kBzip2));
  expect_rejected(r, "'h'");
  auto r2 = extract_bytes("q-1-0.tar.bz2",
                          testing::make_tar({{"h", 'h', "", "/etc/passwd"}}, Compression::kBzip2));
  expect_rejected(r2, "'h'");
}

TEST_F(ExtractTest, HardLinkToLaterOrSymlinkIsRejected) {
  auto r = extract_bytes(
      "p-1-0.tar.bz2",
      testing::make_tar({{"h", 'h', "", "later"}, {"later", 'f', "x"}}, Compression::kBzip2));
  expect_rejected(r, "'h'");
  ASSERT_TRUE(remove_all(dest_).ok());
  ASSERT_TRUE(make_dirs(dest_).ok());
  auto r2 = extract_bytes(
      "q-1-0.tar.bz2",
      testing::make_tar({{"s", 'l', "", "x"}, {"h", 'h', "", "s"}}, Compression::kBzip2));
  expect_rejected(r2, "'h'");
}

TEST_F(ExtractTest, DevicesAndFifosAreRejected) {
  auto r =
      extract_bytes("p-1-0.tar.bz2", testing::make_tar({{"dev/null", 'c'}}, Compression::kBzip2));
  expect_rejected(r, "dev/null");
  auto r2 = extract_bytes("q-1-0.tar.bz2", testing::make_tar({{"fifo", 'p'}}, Compression::kBzip2));
  expect_rejected(r2, "fifo");
}

TEST_F(ExtractTest, FileReplacingDirectoryAndViceVersaIsRejected) {
  auto r = extract_bytes("p-1-0.tar.bz2", testing::make_tar({{"x/y", 'f', "1"}, {"x", 'f', "2"}},
                                                            Compression::kBzip2));
  expect_rejected(r, "'x'");
  ASSERT_TRUE(remove_all(dest_).ok());
  ASSERT_TRUE(make_dirs(dest_).ok());
  auto r2 = extract_bytes("q-1-0.tar.bz2",
                          testing::make_tar({{"x", 'f', "2"}, {"x/", 'd'}}, Compression::kBzip2));
  expect_rejected(r2, "'x'");
  ASSERT_TRUE(remove_all(dest_).ok());
  ASSERT_TRUE(make_dirs(dest_).ok());
  auto r3 = extract_bytes("s-1-0.tar.bz2", testing::make_tar({{"x", 'f', "2"}, {"x/y", 'f', "1"}},
                                                             Compression::kBzip2));
  expect_rejected(r3, "x/y");
}

TEST_F(ExtractTest, NonUtf8NameIsRejected) {
  auto r = extract_bytes("p-1-0.tar.bz2",
                         testing::make_tar({{"lib/bad\xff\xfe", 'f', "x"}}, Compression::kBzip2));
  expect_rejected(r, "lib/bad");
  EXPECT_NE(r.status().message().find("UTF-8"), std::string::npos);
}

TEST_F(ExtractTest, ZipSlipWheelIsRejected) {
  auto r = extract_bytes("evil-1.0-py3-none-any.whl",
                         testing::make_zip({{"../../sentinel/evil.py", 'f', "x"}}));
  expect_rejected(r, "../../sentinel/evil.py");
}

TEST_F(ExtractTest, MaliciousCondaInnerTarIsRejected) {
  auto r = extract_bytes(
      "evil-1.0-0.conda",
      testing::make_conda({{"info/index.json", 'f', "{}"}}, {{"../../sentinel/evil", 'f', "x"}}));
  expect_rejected(r, "../../sentinel/evil");
  EXPECT_NE(r.status().message().find("pkg-test-1.0-0.tar.zst"), std::string::npos);
}

// --- damaged archives --------------------------------------------------------------------------

TEST_F(ExtractTest, TruncatedArchivesAreCorrupt) {
  std::string big;
  for (int i = 0; i < 20000; ++i) big += std::to_string(i * 7919) + ",";
  std::vector<Member> members = {{"info/index.json", 'f', "{}"}, {"lib/data", 'f', big}};
  struct Case {
    const char* file;
    std::string bytes;
  } cases[] = {
      {"t-1-0.conda", testing::make_conda({{"info/index.json", 'f', "{}"}}, members)},
      {"t-1-0.tar.bz2", testing::make_tar(members, Compression::kBzip2)},
      {"t-1.0-py3-none-any.whl", testing::make_zip(members, true)},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.file);
    ASSERT_TRUE(remove_all(dest_).ok());
    ASSERT_TRUE(make_dirs(dest_).ok());
    auto r = extract_bytes(c.file, c.bytes.substr(0, c.bytes.size() / 2));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Code::kCorrupt) << r.status().to_string();
    EXPECT_NE(r.status().message().find(c.file), std::string::npos) << r.status().message();
  }
}

TEST_F(ExtractTest, GarbageIsCorrupt) {
  for (const char* file : {"g-1-0.conda", "g-1-0.tar.bz2", "g-1.0-py3-none-any.whl"}) {
    auto r = extract_bytes(file, std::string(5000, '\x42'));
    ASSERT_FALSE(r.ok()) << file;
    EXPECT_EQ(r.status().code(), Code::kCorrupt) << r.status().to_string();
  }
}

TEST_F(ExtractTest, MissingArchiveIsNotFound) {
  auto r = extract_archive(dir_ / "nope.conda", ArchiveFormat::kConda, dest_, posix_fs(), scratch_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kNotFound) << r.status().to_string();
}

TEST_F(ExtractTest, CondaWithoutPkgTarExtractsInfoOnly) {
  auto r = extract_bytes("i-1-0.conda",
                         testing::make_conda({{"info/index.json", 'f', "{}"}}, {}, true, false));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(testing::slurp(pkg("info/index.json")), "{}");
  EXPECT_EQ(testing::list(dest_), std::vector<std::string>{"info"});
}

TEST_F(ExtractTest, CondaWithMembersInADirectoryIsAccepted) {
  std::string conda =
      testing::make_zip({{"Users/x/Downloads/p/", 'd'},
                         {"Users/x/Downloads/p/metadata.json", 'f', "{}"},
                         {"Users/x/Downloads/p/info-p-1-0.tar.zst", 'f',
                          testing::make_tar({{"info/index.json", 'f', "{}"}}, Compression::kZstd)},
                         {"Users/x/Downloads/p/pkg-p-1-0.tar.zst", 'f',
                          testing::make_tar({{"lib/a", 'f', "a"}}, Compression::kZstd)}});
  auto r = extract_bytes("p-1-0.conda", conda);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(testing::slurp(pkg("lib/a")), "a");
  EXPECT_EQ(testing::slurp(pkg("info/index.json")), "{}");
  EXPECT_FALSE(path_exists(pkg("Users")));
}

TEST_F(ExtractTest, CondaWithoutAnyTarIsCorrupt) {
  auto r = extract_bytes("n-1-0.conda", testing::make_conda({}, {}, false, false));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kCorrupt);
}

TEST_F(ExtractTest, WriteFailureIsNoSpace) {
  FaultFs fault(posix_fs());
  fault.fail_write_after(2);
  std::string path = dir_ / "p-1-0.tar.bz2";
  testing::write_bytes(path,
                       testing::make_tar({{"a", 'f', "1"}, {"b", 'f', "2"}}, Compression::kBzip2));
  auto r = extract_archive(path, ArchiveFormat::kTarBz2, dest_, fault, scratch_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kNoSpace) << r.status().to_string();
}

// --- symlink resolution ------------------------------------------------------------------------

TEST(SymlinkStaysInside, FollowsPackageSymlinks) {
  Manifest m;
  m["a"] = {.type = Type::kDir};
  m["a/up"] = {.type = Type::kSymlink, .target = ".."};
  m["a/deep"] = {.type = Type::kSymlink, .target = "../x/y/z"};
  m["loop"] = {.type = Type::kSymlink, .target = "loop"};
  EXPECT_TRUE(symlink_stays_inside(m, "a/up", ".."));
  EXPECT_FALSE(symlink_stays_inside(m, "a/b", "up/.."));
  EXPECT_TRUE(symlink_stays_inside(m, "a/b", "deep/../.."));
  EXPECT_FALSE(symlink_stays_inside(m, "a/b", "deep/../../../../.."));
  EXPECT_FALSE(symlink_stays_inside(m, "x", "/etc"));
  EXPECT_FALSE(symlink_stays_inside(m, "x", ".."));
  EXPECT_TRUE(symlink_stays_inside(m, "x", "loop"));
  EXPECT_TRUE(symlink_stays_inside(m, "lib/libz.so", "libz.so.1"));
}

}  // namespace
}  // namespace mat::cache
