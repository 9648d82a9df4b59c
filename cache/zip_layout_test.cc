// One archive, one tree (issue 11, defect 4): a zip whose local entries and central directory
// disagree is refused before anything is extracted from it, by the file path (libzip, central
// directory) and by the streaming path (local headers in order), with the same outcome. The
// hostile zips are written byte by byte (testing::RawZip).
#include "cache/zip_layout.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <clocale>
#include <functional>
#include <random>
#include <string>
#include <thread>

#include "cache/extract.h"
#include "cache/growing_file.h"
#include "cache/store.h"
#include "cache/test_util.h"

namespace mat::cache {
namespace {

using testing::Compression;
using testing::RawEntry;
using testing::RawZip;
using testing::TempDir;

const bool kUtf8Locale = std::setlocale(LC_CTYPE, "C.UTF-8") != nullptr;

// Hands out `bytes` in pieces of 1..max_piece bytes, then empty blocks.
ByteSource pieces_of(const std::string& bytes, size_t max_piece, uint32_t seed = 3) {
  struct State {
    std::string bytes;
    size_t at = 0;
    std::mt19937 rng;
  };
  auto s = std::make_shared<State>(State{bytes, 0, std::mt19937(seed)});
  return [s, max_piece]() -> Result<std::span<const char>> {
    size_t n = std::min(s->bytes.size() - s->at, 1 + s->rng() % max_piece);
    std::span<const char> block(s->bytes.data() + s->at, n);
    s->at += n;
    return block;
  };
}

Result<ZipLayout> layout_of(const std::string& zip, const TempDir& dir) {
  const std::string path = dir / "layout.zip";
  testing::write_bytes(path, zip);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  return check_zip_layout(fd.get(), static_cast<int64_t>(zip.size()), "t.zip");
}

// --- the pieces of a .conda -------------------------------------------------------------------

struct Parts {
  std::string metadata, info, pkg, evil;
};
const Parts& parts() {
  static const Parts p = {
      R"({"conda_pkg_format_version": 2})",
      testing::make_tar({{"info/index.json", 'f', R"({"name":"test"})"}}, Compression::kZstd),
      testing::make_tar({{"lib/data.txt", 'f', "the package's own data\n"}}, Compression::kZstd),
      testing::make_tar({{"lib/data.txt", 'f', "what a hidden entry installs\n"},
                         {"bin/evil", 'f', "#!/bin/sh\necho pwned\n", "", 0755}},
                        Compression::kZstd)};
  return p;
}
RawEntry metadata() { return {"metadata.json", parts().metadata}; }
RawEntry info() { return {"info-test-1.0-0.tar.zst", parts().info}; }
RawEntry pkg(const std::string& tar) { return {"pkg-test-1.0-0.tar.zst", tar}; }
// A member's local entry (header, data, descriptor) on its own, to hide inside another.
std::string local_bytes(const RawEntry& e) {
  RawZip z;
  z.local(e);
  return z.so_far();
}
// The offset of the data of a local entry written at `at` for `e`.
size_t data_at(size_t at, const RawEntry& e) { return at + 30 + e.name.size(); }

// A consistent .conda, the way the hostile ones are written: both paths must accept it.
std::string good_conda(bool descriptors) {
  RawZip z;
  std::vector<RawEntry> members = {metadata(), pkg(parts().pkg), info()};
  if (descriptors) {  // sizes only in data descriptors where streaming can still find the end
    members[0] = testing::deflated("metadata.json", parts().metadata);
    for (RawEntry& e : members) e.flags = 0x0008;
    members[0].zero_in_local = true;
    members[2].descriptor_sig = false;
  }
  for (const RawEntry& e : members) z.add(e);
  return z.finish();
}

struct HostileCase {
  const char* name;
  std::function<std::string()> build;
  const char* expect;  // in the file path's message
};

// Every way the local entries and the central directory can disagree. Each must be refused by
// both paths; most would give the streaming path another tree than the file path, or let one
// of them read bytes the other never looks at.
const std::vector<HostileCase>& hostile_condas() {
  static const std::vector<HostileCase> cases = {
      {"hidden entry inside a decoy whose sizes only its data descriptor gives",
       [] {
         // The exact reproduction: the decoy's data is the package's own tar.zst followed by a
         // zstd skippable frame that holds a complete local entry; the central directory points
         // at that entry. Read in order: the decoy's tree; from the central directory: the
         // hidden one. Names, order and local-header sizes agree with the central directory.
         RawZip z;
         z.local(metadata());
         const size_t decoy_at = z.so_far().size();
         RawEntry hidden = pkg(parts().evil);
         RawEntry decoy = pkg(parts().pkg + testing::zstd_skippable(local_bytes(hidden)));
         decoy.flags = 0x0008;
         decoy.zero_in_local = true;
         const size_t hidden_at = data_at(decoy_at, decoy) + parts().pkg.size() + 8;
         z.local(decoy);
         const size_t info_at = z.local(info());
         z.central(metadata(), 0);
         z.central(hidden, hidden_at);
         z.central(info(), info_at);
         return z.finish();
       },
       "bytes that no central directory entry owns"},
      {"hidden entry inside a decoy whose local header gives its sizes",
       [] {
         RawZip z;
         z.local(metadata());
         const size_t decoy_at = z.so_far().size();
         RawEntry hidden = pkg(parts().evil);
         RawEntry decoy = pkg(parts().pkg + testing::zstd_skippable(local_bytes(hidden)));
         const size_t hidden_at = data_at(decoy_at, decoy) + parts().pkg.size() + 8;
         z.local(decoy);
         const size_t info_at = z.local(info());
         z.central(metadata(), 0);
         z.central(hidden, hidden_at);
         z.central(info(), info_at);
         return z.finish();
       },
       "bytes that no central directory entry owns"},
      {"central directory entry pointing into the middle of another member's data",
       [] {
         RawZip z;
         z.local(metadata());
         const size_t info_at = z.so_far().size();
         RawEntry hidden = pkg(parts().evil);
         RawEntry carrier = {info().name,
                             parts().info + testing::zstd_skippable(local_bytes(hidden))};
         const size_t hidden_at = data_at(info_at, carrier) + parts().info.size() + 8;
         z.local(carrier);
         z.local(pkg(parts().pkg));
         z.central(metadata(), 0);
         z.central(hidden, hidden_at);
         z.central(carrier, info_at);
         return z.finish();
       },
       "lies inside member 'info-test-1.0-0.tar.zst'"},
      {"local name differs from the central directory's",
       [] {
         RawZip z;
         z.add(metadata());
         RawEntry local = pkg(parts().evil);
         local.name = "pkg-evil-1.0-0.tar.zst";
         const size_t at = z.local(local);
         RawEntry listed = pkg(parts().evil);
         z.central(listed, at);
         z.add(info());
         return z.finish();
       },
       "names it 'pkg-evil-1.0-0.tar.zst'"},
      {"local sizes differ from the central directory's",
       [] {
         // The local header claims the package's tar.zst only; the central directory the whole
         // data, a skippable frame with more behind it.
         RawZip z;
         z.add(metadata());
         RawEntry listed = pkg(parts().pkg + testing::zstd_skippable(std::string(64, 'x')));
         RawEntry local = listed;
         local.comp_size = local.size = static_cast<int64_t>(parts().pkg.size());
         local.crc = testing::crc32_of(parts().pkg);
         const size_t at = z.local(local);
         z.central(listed, at);
         z.add(info());
         return z.finish();
       },
       "the local header gives"},
      {"bytes between two members",
       [] {
         RawZip z;
         z.add(metadata());
         z.bytes(std::string("GAP") + std::string(61, '\0'));
         z.add(pkg(parts().pkg));
         z.add(info());
         return z.finish();
       },
       "64 bytes that no central directory entry owns"},
      {"a local entry the central directory does not list",
       [] {
         RawZip z;
         z.add(metadata());
         RawEntry extra = pkg(parts().evil);
         extra.name = "pkg-extra-1.0-0.tar.zst";
         z.local(extra);
         z.add(pkg(parts().pkg));
         z.add(info());
         return z.finish();
       },
       "bytes that no central directory entry owns"},
      {"two members of the same name",
       [] {
         RawZip z;
         z.add(metadata());
         z.add(pkg(parts().pkg));
         z.add(pkg(parts().evil));
         z.add(info());
         return z.finish();
       },
       "'pkg-test-1.0-0.tar.zst': duplicate member name"},
      {"end record counting fewer entries than the central directory holds",
       [] {
         RawZip z;
         z.add(metadata());
         z.add(pkg(parts().pkg));
         z.add(info());
         return z.finish(2);
       },
       "bytes after its 2 entries"},
      {"end record counting more entries than the central directory holds",
       [] {
         RawZip z;
         z.add(metadata());
         z.add(pkg(parts().pkg));
         z.add(info());
         return z.finish(4);
       },
       "central directory entry 3"},
      {"data before the first member",
       [] {
         RawZip z;
         z.bytes("#!/bin/sh\nexec unzip \"$0\"\n");
         z.add(metadata());
         z.add(pkg(parts().pkg));
         z.add(info());
         return z.finish();
       },
       "must start with its first member"},
      {"bytes between the central directory and the end record",
       [] {
         RawZip z;
         z.add(metadata());
         z.add(pkg(parts().pkg));
         z.add(info());
         return z.finish(std::nullopt, std::string(16, '\0'));
       },
       "does not end where the end records begin"},
      {"a second end record, in the comment of the first",
       [] {
         // The real archive ends with an end record whose comment holds a second central
         // directory and end record: pip's zipfile takes the last end record, libzip the one
         // with the larger span. Here the second lists the same members (a reader taking it
         // sees the same tree), which is enough to be refused: readers could disagree.
         RawZip z;
         z.add(metadata());
         z.add(pkg(parts().pkg));
         z.add(info());
         std::string real = z.finish();
         size_t cd_at = real.find("PK\x01\x02");
         std::string cd = real.substr(cd_at, real.size() - 22 - cd_at);
         std::string second = cd;
         testing::put_le(second, 0x06054b50, 4);
         testing::put_le(second, 0, 4);
         testing::put_le(second, 3, 2);
         testing::put_le(second, 3, 2);
         testing::put_le(second, cd.size(), 4);
         testing::put_le(second, real.size(), 4);  // the copy right after the first end record
         testing::put_le(second, 0, 2);
         return z.finish(std::nullopt, "", second);
       },
       "a second end-of-central-directory record"},
      {"end record whose comment does not reach the end of the file",
       [] {
         RawZip z;
         z.add(metadata());
         z.add(pkg(parts().pkg));
         z.add(info());
         return z.finish() + "trailing bytes";
       },
       "bytes follow it"},
  };
  return cases;
}

class ZipConsistencyTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(kUtf8Locale); }
  void fresh(const std::string& name) {
    ASSERT_TRUE(remove_all(dir_ / name).ok());
    ASSERT_TRUE(make_dirs(dir_ / name).ok());
  }
  Result<Manifest> from_file(const std::string& conda) {
    testing::write_bytes(archive_, conda);
    fresh("from-file");
    return extract_archive(archive_, ArchiveFormat::kConda, dir_ / "from-file", posix_fs(),
                           scratch_);
  }
  Result<Manifest> streamed(const std::string& conda, size_t piece) {
    testing::write_bytes(archive_, conda);
    fresh("streamed");
    return extract_conda_stream(pieces_of(conda, piece), archive_, dir_ / "streamed", posix_fs(),
                                scratch_);
  }

  TempDir dir_;
  std::string archive_ = dir_ / "test-1.0-0.conda";
  ExtractScratch scratch_;
};

// The builder makes zips both paths accept, with and without data descriptors: what the
// hostile cases change is what makes them hostile.
TEST_F(ZipConsistencyTest, ConsistentCondaGivesOneTreeBothWays) {
  for (bool descriptors : {false, true}) {
    SCOPED_TRACE(descriptors ? "data descriptors" : "sizes in the local headers");
    const std::string conda = good_conda(descriptors);
    auto f = from_file(conda);
    ASSERT_TRUE(f.ok()) << f.status().to_string();
    for (size_t piece : {size_t{7}, size_t{4096}, size_t{1} << 20}) {
      auto s = streamed(conda, piece);
      ASSERT_TRUE(s.ok()) << s.status().to_string();
      EXPECT_EQ(*s, *f);
    }
    EXPECT_EQ(testing::slurp(dir_ / "streamed/lib/data.txt"), "the package's own data\n");
  }
}

TEST_F(ZipConsistencyTest, DisagreeingCondaIsRefusedByBothPaths) {
  for (const HostileCase& c : hostile_condas()) {
    SCOPED_TRACE(c.name);
    const std::string conda = c.build();
    auto f = from_file(conda);
    ASSERT_FALSE(f.ok());
    EXPECT_EQ(f.status().code(), Code::kCorrupt) << f.status().to_string();
    EXPECT_NE(f.status().message().find("test-1.0-0.conda: "), std::string::npos)
        << f.status().message();
    EXPECT_NE(f.status().message().find(c.expect), std::string::npos) << f.status().message();
    EXPECT_TRUE(testing::list(dir_ / "from-file").empty());  // refused before extracting
    for (size_t piece : {size_t{7}, size_t{4096}, size_t{1} << 20}) {
      SCOPED_TRACE(piece);
      auto s = streamed(conda, piece);
      ASSERT_FALSE(s.ok());
      EXPECT_EQ(s.status().code(), Code::kCorrupt) << s.status().to_string();
      EXPECT_NE(s.status().message().find("test-1.0-0.conda: "), std::string::npos)
          << s.status().message();
    }
  }
}

// Cousins: the file path chose inner tars by the central directory's order and skipped those
// whose external attributes say "directory"; the streaming path (which has no external
// attributes) took every inner tar in file order. Both now take them by name, in file order.
TEST_F(ZipConsistencyTest, InnerTarsAreChosenByNameInFileOrderOnBothPaths) {
  {
    SCOPED_TRACE("central directory order differs from the file's");
    RawZip z;
    RawEntry first = pkg(parts().pkg), second = pkg(parts().evil);
    second.name = "nested/" + second.name;  // another inner tar writing the same paths
    const size_t m_at = z.local(metadata()), a = z.local(first), b = z.local(second),
                 i_at = z.local(info());
    z.central(metadata(), m_at);
    z.central(second, b);
    z.central(first, a);
    z.central(info(), i_at);
    const std::string conda = z.finish();
    auto f = from_file(conda);
    ASSERT_TRUE(f.ok()) << f.status().to_string();
    auto s = streamed(conda, 4096);
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    EXPECT_EQ(*f, *s);
    EXPECT_EQ(testing::slurp(dir_ / "from-file/lib/data.txt"), "what a hidden entry installs\n");
  }
  {
    SCOPED_TRACE("an inner tar whose external attributes say directory");
    RawZip z;
    z.add(metadata());
    z.add(pkg(parts().pkg));
    z.add(info());
    std::string conda = z.finish();
    // pkg's central directory entry: its name follows the 46-byte fixed part.
    const size_t cd = conda.find("pkg-test-1.0-0.tar.zst", conda.find("PK\x01\x02")) - 46;
    ASSERT_EQ(conda.compare(cd, 4, "PK\x01\x02"), 0);
    std::string attr;
    testing::put_le(attr, uint64_t{040755} << 16, 4);
    conda.replace(cd + 38, 4, attr);
    auto f = from_file(conda);
    ASSERT_TRUE(f.ok()) << f.status().to_string();
    auto s = streamed(conda, 4096);
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    EXPECT_EQ(*f, *s);
    EXPECT_EQ(testing::slurp(dir_ / "from-file/lib/data.txt"), "the package's own data\n");
  }
}

// The property itself, on archives nobody designed: random damage to a .conda's headers and
// end records (and now and then its data) never makes the two paths give two trees. When the
// stream succeeds, the file path succeeds with the same tree; both may refuse.
TEST_F(ZipConsistencyTest, DamagedCondasNeverGiveTwoTrees) {
  RawZip z;
  std::vector<size_t> headers;
  RawEntry deflated_meta = testing::deflated("metadata.json", parts().metadata);
  deflated_meta.flags = 0x0008;
  deflated_meta.zero_in_local = true;
  for (const RawEntry& e : {deflated_meta, pkg(parts().pkg), info()}) headers.push_back(z.add(e));
  const std::string good = z.finish();
  const size_t cd = z.so_far().size();
  std::mt19937 rng(11);
  int both = 0, refused = 0;
  for (int round = 0; round < 200; ++round) {
    std::string conda = good;
    for (int k = 1 + static_cast<int>(rng() % 3); k > 0; --k) {
      size_t at;
      switch (rng() % 3) {
        case 0:  // a local header (fixed part and name)
          at = headers[rng() % headers.size()] + rng() % 50;
          break;
        case 1:  // the central directory and the end record
          at = cd + rng() % (good.size() - cd);
          break;
        default:
          at = rng() % good.size();
      }
      conda[at] = static_cast<char>(rng() % 4 == 0 ? 0 : conda[at] ^ (1 << (rng() % 8)));
    }
    SCOPED_TRACE(round);
    auto f = from_file(conda);
    auto s = streamed(conda, 1 + rng() % 5000);
    if (s.ok()) {
      ASSERT_TRUE(f.ok()) << "streamed, but the file path says " << f.status().to_string();
      EXPECT_EQ(*f, *s);
      ++both;
    } else {
      ++refused;
    }
  }
  std::printf("[ damaged  ] %d accepted by both paths, %d refused by the stream\n", both, refused);
  EXPECT_GT(refused, 0);
}

// The store's side: the streamed tree is never committed and nothing stays in tmp/; the file
// path (what the driver falls back to) refuses the archive too.
void grow_file(const std::string& path, const std::string& bytes, GrowingFile& g, size_t piece) {
  FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  for (size_t at = 0; at < bytes.size();) {
    size_t n = std::min(bytes.size() - at, piece);
    ASSERT_EQ(std::fwrite(bytes.data() + at, 1, n, f), n);
    std::fflush(f);
    at += n;
    g.grew(static_cast<int64_t>(at));
  }
  std::fclose(f);
  g.complete();
}

TEST_F(ZipConsistencyTest, StoreCommitsNothingForADisagreeingConda) {
  auto store = Store::open(dir_ / "cache");
  ASSERT_TRUE(store.ok());
  int n = 0;
  for (const HostileCase& c : hostile_condas()) {
    SCOPED_TRACE(c.name);
    const std::string conda = c.build();
    const std::string path = dir_ / "download.conda";
    testing::write_bytes(path, "");
    auto g = std::make_shared<GrowingFile>();
    auto reader = GrowingFileReader::open(path, g, 4096);
    ASSERT_TRUE(reader.ok());
    std::thread writer([&] { grow_file(path, conda, *g, 1000); });
    Key key{HashKind::kSha256, std::string(63, 'c') + static_cast<char>('0' + n++ % 10)};
    auto tree = (*store)->extract_streamed(key, path, ArchiveFormat::kConda,
                                           [&] { return (*reader)->next(); });
    writer.join();
    ASSERT_FALSE(tree.ok());
    EXPECT_EQ(tree.status().code(), Code::kCorrupt) << tree.status().to_string();
    auto fallback = (*store)->extract_pending(key, path, ArchiveFormat::kConda);
    ASSERT_FALSE(fallback.ok());
    EXPECT_EQ(fallback.status().code(), Code::kCorrupt) << fallback.status().to_string();
    EXPECT_FALSE((*store)->find_tree(key));
    EXPECT_TRUE(testing::list(dir_ / "cache/v1/tmp").empty());
    EXPECT_TRUE(testing::list(dir_ / "cache/v1/trees").empty());
  }
}

// --- wheels: read through the same ZipReader, held to the same layout ------------------------

struct WheelFile {
  std::string name, data;
};
// A wheel's members (deflated) with a RECORD that matches them: valid as far as RECORD goes.
std::vector<RawEntry> wheel_entries(const std::vector<WheelFile>& files) {
  std::vector<RecordRow> rows;
  std::vector<RawEntry> out;
  for (const WheelFile& f : files) {
    rows.push_back({f.name, record_hash_of(f.data), std::to_string(f.data.size())});
    out.push_back(testing::deflated(f.name, f.data));
  }
  rows.push_back({"pkg-1.0.dist-info/RECORD", "", ""});
  out.push_back(testing::deflated("pkg-1.0.dist-info/RECORD", format_record(rows)));
  return out;
}

const std::vector<HostileCase>& hostile_wheels() {
  static const std::vector<HostileCase> cases = {
      {"hidden member behind a decoy",
       [] {
         // Read in order: pkg/__init__.py says "decoy"; pip (central directory): "evil".
         std::vector<RawEntry> good = wheel_entries({{"pkg/__init__.py", "print('decoy')\n"}});
         std::vector<RawEntry> evil = wheel_entries({{"pkg/__init__.py", "print('evil')\n"}});
         RawZip z;
         z.local(good[0]);
         const size_t hidden_at = z.local(evil[0]);
         const size_t record_at = z.local(evil[1]);
         z.central(evil[0], hidden_at);
         z.central(evil[1], record_at);
         return z.finish();
       },
       "bytes that no central directory entry owns"},
      {"local name differs from the central directory's",
       [] {
         std::vector<RawEntry> e = wheel_entries({{"pkg/__init__.py", "print(1)\n"}});
         RawEntry local = e[0];
         local.name = "pkg/__init__.pz";
         RawZip z;
         z.central(e[0], z.local(local));
         z.add(e[1]);
         return z.finish();
       },
       "names it 'pkg/__init__.pz'"},
      {"local sizes differ from the central directory's",
       [] {
         std::vector<RawEntry> e = wheel_entries({{"pkg/__init__.py", "print(1)\n"}});
         RawEntry local = e[0];
         local.size = 3;
         RawZip z;
         z.central(e[0], z.local(local));
         z.add(e[1]);
         return z.finish();
       },
       "the local header gives"},
      {"a member the central directory does not list",
       [] {
         std::vector<RawEntry> e = wheel_entries({{"pkg/__init__.py", "print(1)\n"}});
         RawZip z;
         z.add(e[0]);
         z.local(testing::deflated("pkg/sitecustomize.py", "import os\n"));
         z.add(e[1]);
         return z.finish();
       },
       "bytes that no central directory entry owns"},
  };
  return cases;
}

TEST_F(ZipConsistencyTest, DisagreeingWheelIsRefused) {
  auto store = Store::open(dir_ / "cache");
  ASSERT_TRUE(store.ok());
  const std::string path = dir_ / "pkg-1.0-py3-none-any.whl";
  {  // the builder's consistent wheel installs
    RawZip z;
    for (const RawEntry& e : wheel_entries({{"pkg/__init__.py", "print(1)\n"}})) z.add(e);
    testing::write_bytes(path, z.finish());
    fresh("wheel");
    auto ok = extract_archive(path, ArchiveFormat::kWheel, dir_ / "wheel", posix_fs(), scratch_);
    ASSERT_TRUE(ok.ok()) << ok.status().to_string();
  }
  int n = 0;
  for (const HostileCase& c : hostile_wheels()) {
    SCOPED_TRACE(c.name);
    testing::write_bytes(path, c.build());
    fresh("wheel");
    auto r = extract_archive(path, ArchiveFormat::kWheel, dir_ / "wheel", posix_fs(), scratch_);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Code::kCorrupt) << r.status().to_string();
    EXPECT_NE(r.status().message().find("pkg-1.0-py3-none-any.whl: "), std::string::npos)
        << r.status().message();
    EXPECT_NE(r.status().message().find(c.expect), std::string::npos) << r.status().message();
    EXPECT_TRUE(testing::list(dir_ / "wheel").empty());
    Key key{HashKind::kSha256, std::string(63, 'd') + static_cast<char>('0' + n++ % 10)};
    auto stored = (*store)->extract(key, path, ArchiveFormat::kWheel, nullptr);
    ASSERT_FALSE(stored.ok());
    EXPECT_EQ(stored.status().code(), Code::kCorrupt);
    EXPECT_FALSE((*store)->find_tree(key));
    EXPECT_TRUE(testing::list(dir_ / "cache/v1/tmp").empty());
  }
}

// libzip names a member after Info-ZIP's Unicode path field (0x7075) when its CRC-32 matches
// the stored name; pip's zipfile and a reader going by the local headers use the stored name.
// A wheel whose two names differ would install different files for different readers.
TEST_F(ZipConsistencyTest, UnicodePathFieldThatRenamesAMemberIsRefused) {
  std::vector<RawEntry> e = wheel_entries({{"pkg/__init__.py", "print(1)\n"}});
  const std::string other = "pkg/sitecustomize.py";
  std::string field;
  testing::put_le(field, 0x7075, 2);
  testing::put_le(field, 5 + other.size(), 2);
  field.push_back(1);
  testing::put_le(field, testing::crc32_of(e[0].name), 4);
  field += other;
  e[0].central_extra = field;
  RawZip z;
  for (const RawEntry& m : e) z.add(m);
  const std::string path = dir_ / "pkg-1.0-py3-none-any.whl";
  testing::write_bytes(path, z.finish());
  fresh("wheel");
  auto r = extract_archive(path, ArchiveFormat::kWheel, dir_ / "wheel", posix_fs(), scratch_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kCorrupt);
  EXPECT_NE(r.status().message().find("libzip reads central directory entry 0 differently"),
            std::string::npos)
      << r.status().message();
  EXPECT_TRUE(testing::list(dir_ / "wheel").empty());
}

// --- check_zip_layout on its own --------------------------------------------------------------

TEST(ZipLayoutTest, EntriesInFileOrderWithTheirEnds) {
  TempDir dir;
  RawZip z;
  RawEntry a = {"a", "aaaa"};
  RawEntry b = testing::deflated("b", std::string(5000, 'b'));
  b.flags = 0x0008;
  b.zero_in_local = true;
  RawEntry c = {"c", ""};
  const size_t a_at = z.local(a), b_at = z.local(b), c_at = z.local(c);
  z.central(c, c_at);  // the central directory's order need not be the file's
  z.central(a, a_at);
  z.central(b, b_at);
  auto l = layout_of(z.finish(), dir);
  ASSERT_TRUE(l.ok()) << l.status().to_string();
  ASSERT_EQ(l->entries.size(), 3u);
  EXPECT_EQ(l->entries[0].name, "a");
  EXPECT_EQ(l->entries[0].index, 1u);
  EXPECT_EQ(l->entries[0].data_offset, 31);
  EXPECT_EQ(l->entries[1].name, "b");
  EXPECT_EQ(l->entries[1].offset, static_cast<int64_t>(b_at));
  EXPECT_EQ(l->entries[1].end, static_cast<int64_t>(c_at));  // past its 16-byte descriptor
  EXPECT_EQ(l->entries[1].size, 5000);
  EXPECT_EQ(l->entries[2].name, "c");
  EXPECT_EQ(l->cd_offset, static_cast<int64_t>(z.so_far().size()));
}

TEST(ZipLayoutTest, DataDescriptorMustGiveTheCentralDirectorysValues) {
  TempDir dir;
  for (bool with_sig : {true, false}) {
    SCOPED_TRACE(with_sig);
    RawEntry e = testing::deflated("m", std::string(300, 'm'));
    e.flags = 0x0008;
    e.zero_in_local = true;
    e.descriptor_sig = with_sig;
    RawZip ok;
    ok.add(e);
    EXPECT_TRUE(layout_of(ok.finish(), dir).ok());
    RawZip bad;
    RawEntry lying = e;
    lying.size = 301;  // in the local header (zero) and the descriptor; the CD says 300
    bad.central(e, bad.local(lying));
    auto l = layout_of(bad.finish(), dir);
    ASSERT_FALSE(l.ok());
    EXPECT_NE(l.status().message().find("no data descriptor with its CRC-32 and sizes"),
              std::string::npos)
        << l.status().message();
  }
}

TEST(ZipLayoutTest, CommentThatReachesTheEndIsFine) {
  TempDir dir;
  RawZip z;
  z.add({"a", "x"});
  EXPECT_TRUE(layout_of(z.finish(std::nullopt, "", "a comment"), dir).ok());
  EXPECT_TRUE(layout_of(RawZip().finish(), dir).ok());  // an empty zip
}

TEST(ZipLayoutTest, Zip64EndRecordsMustAgree) {
  TempDir dir;
  RawZip z;
  z.add({"a", "x"});
  z.add({"b", "y"});
  EXPECT_TRUE(layout_of(z.finish64(), dir).ok());
  EXPECT_TRUE(layout_of(z.finish64(std::nullopt, /*saturate=*/false), dir).ok());
  auto more = layout_of(z.finish64(3), dir);  // the zip64 record counts 3 entries, the CD has 2
  ASSERT_FALSE(more.ok());
  EXPECT_NE(more.status().message().find("counts 3 entries"), std::string::npos)
      << more.status().message();
  auto disagree = layout_of(z.finish64(3, /*saturate=*/false), dir);  // 2 in the end record
  ASSERT_FALSE(disagree.ok());
  EXPECT_NE(disagree.status().message().find("the end record and the zip64 end record disagree"),
            std::string::npos)
      << disagree.status().message();
}

TEST(ZipLayoutTest, MethodAndFlagsMustAgree) {
  TempDir dir;
  RawEntry listed = {"a", "data"};
  RawEntry local = listed;
  local.method = 8;
  RawZip m;
  m.central(listed, m.local(local));
  auto r = layout_of(m.finish(), dir);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("compression method 8 in the local header, 0 in the central"),
            std::string::npos)
      << r.status().message();
  local = listed;
  local.flags = 0x0800;  // a UTF-8 name in the local header only
  RawZip f;
  f.central(listed, f.local(local));
  r = layout_of(f.finish(), dir);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("flags 0x0800 in the local header, 0x0000 in the central"),
            std::string::npos)
      << r.status().message();
}

// Each of the three values the local header repeats (CRC-32, compressed size, size) must agree
// with the central directory's on its own: a stored member whose local CRC-32 alone differs
// is a second version of the member for a reader that trusts the local header.
TEST(ZipLayoutTest, LocalCrcSizesMustEachAgree) {
  TempDir dir;
  RawEntry listed = {"a", "data"};
  for (int field = 0; field < 3; ++field) {
    SCOPED_TRACE(field);
    RawEntry local = listed;
    if (field == 0) local.crc = testing::crc32_of("dat4");
    if (field == 1) local.comp_size = 3;
    if (field == 2) local.size = 5;
    RawZip z;
    z.central(listed, z.local(local));
    auto r = layout_of(z.finish(), dir);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("the local header gives"), std::string::npos)
        << r.status().message();
  }
  RawZip same;
  same.central(listed, same.local(listed));
  auto ok = layout_of(same.finish(), dir);
  EXPECT_TRUE(ok.ok()) << ok.status().to_string();
}

// Names in messages cannot smuggle control characters or invalid UTF-8 into terminals and
// the JSON report.
TEST(ZipLayoutTest, MemberNamesInMessagesArePrintable) {
  EXPECT_EQ(printable_zip_name("lib/ü.so"), "lib/ü.so");
  EXPECT_EQ(printable_zip_name(std::string("a\x1b[2J\xff", 6)), "a\\x1b[2J\\xff");
  EXPECT_EQ(printable_zip_name(std::string(300, 'n')).size(), 203u);
}

// --- ZipStreamReader --------------------------------------------------------------------------

// Reads every member of `zip` in order through `src`; "name=content;..." or the error.
std::string read_in_order(ZipStreamReader& r) {
  std::string out;
  for (;;) {
    auto e = r.next_entry();
    if (!e.ok()) return "<" + e.status().to_string() + ">";
    if (!*e) return out;
    out += (*e)->name + "=";
    for (;;) {
      auto b = r.read();
      if (!b.ok()) return "<" + b.status().to_string() + ">";
      if (b->empty()) break;
      out.append(b->data(), b->size());
    }
    out += ";";
  }
}

TEST(ZipStreamReaderTest, ReadsWhatTheLayoutCheckAccepts) {
  TempDir dir;
  const std::string big(70000, 'q');
  std::vector<RawEntry> members = {{"stored", "plain bytes"}, testing::deflated("deflated", big)};
  RawEntry only_in_descriptor = testing::deflated("deflated-dd", big + "!");
  only_in_descriptor.flags = 0x0008;
  only_in_descriptor.zero_in_local = true;
  members.push_back(only_in_descriptor);
  RawEntry no_sig = {"stored-dd", "sized locally", 0};
  no_sig.flags = 0x0008;
  no_sig.descriptor_sig = false;
  members.push_back(no_sig);
  RawEntry empty = {"empty-dd", ""};
  empty.flags = 0x0008;
  empty.zero_in_local = true;
  members.push_back(empty);
  RawEntry size_only = {"stored-size-only", "sized by its uncompressed size"};
  size_only.flags = 0x0008;
  members.push_back(size_only);
  RawZip z;
  size_t size_only_at = 0;
  for (const RawEntry& e : members) size_only_at = z.add(e);
  std::string zip = z.finish();
  // As macOS's zip writes them: the local header gives the size only (CRC-32 and compressed
  // size 0).
  zip.replace(size_only_at + 14, 8, std::string(8, '\0'));
  auto layout = layout_of(zip, dir);
  ASSERT_TRUE(layout.ok()) << layout.status().to_string();
  for (size_t piece : {size_t{1}, size_t{7}, size_t{4096}, size_t{1} << 20}) {
    SCOPED_TRACE(piece);
    ByteSource src = pieces_of(zip, piece);
    ZipStreamReader r(src, "t.zip");
    EXPECT_EQ(
        read_in_order(r),
        "stored=plain bytes;deflated=" + big + ";deflated-dd=" + big +
            "!;stored-dd=sized locally;empty-dd=;stored-size-only=sized by its uncompressed size;");
    EXPECT_TRUE(check_streamed_layout(r, *layout, "t.zip").ok());
  }
}

TEST(ZipStreamReaderTest, StoredMemberSizedOnlyInItsDescriptorIsNotGuessedAt) {
  RawEntry e = {"pkg-x.tar.zst", "data with PK\x07\x08 inside"};
  e.flags = 0x0008;
  e.zero_in_local = true;
  RawZip z;
  z.add(e);
  const std::string zip = z.finish();
  ByteSource src = pieces_of(zip, 100);
  ZipStreamReader r(src, "t.zip");
  auto entry = r.next_entry();
  ASSERT_FALSE(entry.ok());
  EXPECT_EQ(entry.status().code(), Code::kCorrupt);
  EXPECT_NE(entry.status().message().find("size only its data descriptor gives"),
            std::string::npos);
}

TEST(ZipStreamReaderTest, NothingIsSkippedBetweenMembers) {
  RawZip z;
  z.add({"a", "x"});
  z.bytes("junk");
  const std::string zip = z.finish();
  ByteSource src = pieces_of(zip, 100);
  ZipStreamReader r(src, "t.zip");
  std::string got = read_in_order(r);
  EXPECT_NE(got.find("neither a local header nor the central directory"), std::string::npos) << got;
}

// Found by the zip_layout fuzz target: a local header with neither a name nor an extra field
// made take() pass memcpy a null destination (an empty vector's data()), undefined behaviour
// the asan preset aborts on. The entry is read like any other (whether an empty name is
// acceptable is for the extractor's name checks, which refuse it).
TEST(ZipStreamReaderTest, LocalHeaderWithoutNameOrExtraField) {
  RawZip z;
  z.add({"", "x"});
  z.add({"b", "y"});
  const std::string zip = z.finish();
  for (size_t piece : {size_t{1}, size_t{4096}}) {
    ByteSource src = pieces_of(zip, piece);
    ZipStreamReader r(src, "t.zip");
    EXPECT_EQ(read_in_order(r), "=x;b=y;");
  }
}

TEST(ZipStreamReaderTest, ChecksSizesAndCrcAsItReads) {
  RawEntry e = {"a", "hello"};
  e.crc = 12345;
  RawZip z;
  z.add(e);
  const std::string zip = z.finish();
  ByteSource src = pieces_of(zip, 3);
  ZipStreamReader r(src, "t.zip");
  std::string got = read_in_order(r);
  EXPECT_NE(got.find("CRC-32"), std::string::npos) << got;
}

}  // namespace
}  // namespace mat::cache
