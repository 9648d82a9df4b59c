// Cache-side wheel checks (extract.h, "Wheels"): every wheel is built in memory.
#include <gtest/gtest.h>

#include <clocale>
#include <cstring>

#include "cache/extract.h"
#include "cache/store.h"
#include "cache/test_util.h"
#include "cache/wheel_record.h"
#include "materializer/base/hash.h"

namespace mat::cache {
namespace {

using testing::Member;
using testing::TempDir;

const bool kUtf8 = std::setlocale(LC_CTYPE, "C.UTF-8") != nullptr;

class WheelExtractTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(kUtf8);
    ASSERT_TRUE(make_dirs(dest_).ok());
  }
  Result<Manifest> extract(const std::string& bytes, const std::string& name = kName) {
    std::string path = dir_ / name;
    testing::write_bytes(path, bytes);
    return extract_archive(path, ArchiveFormat::kWheel, dest_, posix_fs(), scratch_);
  }
  // kCorrupt whose message contains every one of `parts`.
  static void expect_corrupt(const Result<Manifest>& r, std::initializer_list<std::string> parts) {
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Code::kCorrupt) << r.status().to_string();
    for (const auto& p : parts) {
      EXPECT_NE(r.status().message().find(p), std::string::npos)
          << "'" << p << "' not in: " << r.status().message();
    }
  }

  static constexpr const char* kName = "pkg-1.0-py3-none-any.whl";
  TempDir dir_;
  std::string dest_ = dir_ / "work/pkg";
  ExtractScratch scratch_;
};

std::vector<Member> good_members() {
  return {{"pkg/__init__.py", 'f', "print(1)\n"},
          {"pkg/data, with comma.txt", 'f', "quoted in RECORD\n"},
          {"pkg-1.0.dist-info/METADATA", 'f', "Name: pkg\nVersion: 1.0\n"},
          {"pkg-1.0.dist-info/WHEEL", 'f', "Wheel-Version: 1.0\n"}};
}

TEST_F(WheelExtractTest, ValidWheelExtracts) {
  auto r = extract(testing::make_wheel(good_members()));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(testing::slurp(dest_ + "/pkg/__init__.py"), "print(1)\n");
  EXPECT_TRUE(r->count("pkg-1.0.dist-info/RECORD"));
}

TEST_F(WheelExtractTest, SignaturesNeedNotBeListed) {
  auto m = good_members();
  m.push_back({"pkg-1.0.dist-info/RECORD.jws", 'f', "sig"});
  std::vector<RecordRow> rows;
  for (const auto& x : good_members()) {
    rows.push_back({x.name, record_hash_of(x.data), std::to_string(x.data.size())});
  }
  m.push_back({"pkg-1.0.dist-info/RECORD", 'f', format_record(rows)});  // RECORD not listed
  auto r = extract(testing::make_zip(m, true));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
}

TEST_F(WheelExtractTest, SymlinkMemberIsRejected) {
  auto m = good_members();
  m.push_back({"pkg/link", 'l', "", "__init__.py"});
  expect_corrupt(extract(testing::make_wheel(m)), {kName, "pkg/link", "symlink"});
}

TEST_F(WheelExtractTest, DuplicateMemberIsRejected) {
  auto m = good_members();
  m.push_back({"pkg/__init__.py", 'f', "print(2)\n"});
  expect_corrupt(extract(testing::make_wheel(m)), {kName, "pkg/__init__.py", "duplicate"});
}

TEST_F(WheelExtractTest, Sha256MismatchIsRejected) {
  std::vector<RecordRow> rows = {{"pkg/__init__.py", record_hash_of("print(2)\n"), "9"},
                                 {"pkg-1.0.dist-info/RECORD", "", ""}};
  auto m = std::vector<Member>{{"pkg/__init__.py", 'f', "print(1)\n"},
                               {"pkg-1.0.dist-info/RECORD", 'f', format_record(rows)}};
  expect_corrupt(
      extract(testing::make_zip(m)),
      {std::string(kName) + ": pkg/__init__.py: sha256 mismatch with RECORD (RECORD says " +
       record_hash_of("print(2)\n") + ", file has " + record_hash_of("print(1)\n") + ")"});
}

std::string record_hash_with(HashKind kind, const char* algo, std::string_view data) {
  Hasher h(kind);
  h.update(data);
  return record_hash_from_hex(algo, h.hex());
}

// PEP 427 allows sha384 and sha512 rows: they are checked by hash, not only by size (a
// same-size replacement passed the size check before).
TEST_F(WheelExtractTest, Sha384AndSha512RowsAreVerifiedByHash) {
  const std::string body = "print(1)\n", other = "print(2)\n";  // same size
  for (auto [kind, algo] :
       {std::pair{HashKind::kSha384, "sha384"}, std::pair{HashKind::kSha512, "sha512"}}) {
    SCOPED_TRACE(algo);
    std::string right = record_hash_with(kind, algo, body);
    ASSERT_EQ(right.size(), std::strlen(algo) + 1 + (kind == HashKind::kSha384 ? 64 : 86));
    for (const std::string& row_hash : {right, right + (kind == HashKind::kSha512 ? "==" : "")}) {
      std::vector<RecordRow> rows = {{"pkg/__init__.py", row_hash, "9"},
                                     {"pkg-1.0.dist-info/RECORD", "", ""}};
      auto m = std::vector<Member>{{"pkg/__init__.py", 'f', body},
                                   {"pkg-1.0.dist-info/RECORD", 'f', format_record(rows)}};
      ASSERT_TRUE(remove_all(dest_).ok());
      ASSERT_TRUE(make_dirs(dest_).ok());
      auto r = extract(testing::make_zip(m));
      ASSERT_TRUE(r.ok()) << r.status().to_string();
    }
    std::string wrong = record_hash_with(kind, algo, other);
    std::vector<RecordRow> rows = {{"pkg/__init__.py", wrong, "9"},
                                   {"pkg-1.0.dist-info/RECORD", "", ""}};
    auto m = std::vector<Member>{{"pkg/__init__.py", 'f', body},
                                 {"pkg-1.0.dist-info/RECORD", 'f', format_record(rows)}};
    ASSERT_TRUE(remove_all(dest_).ok());
    ASSERT_TRUE(make_dirs(dest_).ok());
    expect_corrupt(extract(testing::make_zip(m)),
                   {std::string(kName) + ": pkg/__init__.py: " + algo +
                    " mismatch with RECORD (RECORD says " + wrong + ", file has " + right + ")"});
    // A digest of the wrong length for its algorithm (a truncated sha512) is a mismatch too.
    rows[0].hash = right.substr(0, right.size() - 4);
    m[1].data = format_record(rows);
    ASSERT_TRUE(remove_all(dest_).ok());
    ASSERT_TRUE(make_dirs(dest_).ok());
    expect_corrupt(extract(testing::make_zip(m)), {"pkg/__init__.py", "mismatch with RECORD"});
  }
}

TEST_F(WheelExtractTest, SizeMismatchIsRejected) {
  std::vector<RecordRow> rows = {{"pkg/__init__.py", record_hash_of("print(1)\n"), "10"},
                                 {"pkg-1.0.dist-info/RECORD", "", ""}};
  auto m = std::vector<Member>{{"pkg/__init__.py", 'f', "print(1)\n"},
                               {"pkg-1.0.dist-info/RECORD", 'f', format_record(rows)}};
  expect_corrupt(extract(testing::make_zip(m)), {"pkg/__init__.py", "size mismatch with RECORD"});
}

TEST_F(WheelExtractTest, FileMissingFromRecordIsRejected) {
  std::vector<RecordRow> rows = {{"pkg-1.0.dist-info/RECORD", "", ""}};
  auto m = std::vector<Member>{{"pkg/__init__.py", 'f', "print(1)\n"},
                               {"pkg-1.0.dist-info/RECORD", 'f', format_record(rows)}};
  expect_corrupt(extract(testing::make_zip(m)), {kName, "pkg/__init__.py: not listed in RECORD"});
}

TEST_F(WheelExtractTest, RecordListingAnAbsentFileIsRejected) {
  std::vector<RecordRow> rows = {{"pkg/__init__.py", record_hash_of("x"), "1"},
                                 {"pkg-1.0.dist-info/RECORD", "", ""}};
  auto m = std::vector<Member>{{"pkg-1.0.dist-info/RECORD", 'f', format_record(rows)}};
  expect_corrupt(extract(testing::make_zip(m)), {"pkg/__init__.py", "not in the wheel"});
}

TEST_F(WheelExtractTest, RowWithoutHashIsRejected) {
  std::vector<RecordRow> rows = {{"pkg/__init__.py", "", ""}, {"pkg-1.0.dist-info/RECORD", "", ""}};
  auto m = std::vector<Member>{{"pkg/__init__.py", 'f', "x"},
                               {"pkg-1.0.dist-info/RECORD", 'f', format_record(rows)}};
  expect_corrupt(extract(testing::make_zip(m)), {"pkg/__init__.py", "no hash"});
}

TEST_F(WheelExtractTest, WeakHashIsRejected) {
  std::vector<RecordRow> rows = {{"pkg/__init__.py", "md5=" + md5_hex("x"), "1"},
                                 {"pkg-1.0.dist-info/RECORD", "", ""}};
  auto m = std::vector<Member>{{"pkg/__init__.py", 'f', "x"},
                               {"pkg-1.0.dist-info/RECORD", 'f', format_record(rows)}};
  expect_corrupt(extract(testing::make_zip(m)), {"pkg/__init__.py", "weaker than sha256"});
}

TEST_F(WheelExtractTest, DistInfoMustBeUnique) {
  auto m = good_members();
  m.push_back({"other-1.0.dist-info/METADATA", 'f', "Name: other\n"});
  expect_corrupt(extract(testing::make_wheel(m)), {kName, "exactly one", "found 2"});
  ASSERT_TRUE(remove_all(dest_).ok());
  ASSERT_TRUE(make_dirs(dest_).ok());
  expect_corrupt(extract(testing::make_zip({{"pkg/__init__.py", 'f', "x"}})),
                 {"exactly one", "found 0"});
}

TEST_F(WheelExtractTest, MissingRecordIsRejected) {
  expect_corrupt(extract(testing::make_zip({{"pkg-1.0.dist-info/METADATA", 'f', "x"}})),
                 {"pkg-1.0.dist-info/RECORD is missing"});
}

// Replaces the 4-byte size field at `at` (which must hold `expected`) with `lie`.
void put_size(std::string& zip, size_t at, size_t expected, uint32_t lie) {
  uint32_t declared = 0;
  std::memcpy(&declared, zip.data() + at, 4);
  ASSERT_EQ(declared, expected);
  std::memcpy(zip.data() + at, &lie, 4);
}

// Offset of the first member's uncompressed size in the central directory.
size_t central_size_at(const std::string& zip) {
  size_t cd = zip.find(std::string("PK\x01\x02", 4));
  EXPECT_NE(cd, std::string::npos);
  return cd + 24;
}

// A stored member whose zip entry declares fewer bytes than it holds. The RECORD matches the
// bytes, so only a size comparison notices. The central directory is what counts (as for pip's
// zipfile): a lie there is caught whether or not the local header repeats it.
TEST_F(WheelExtractTest, LyingSizeIsRejected) {
  const std::string data = "print('hello world')\n";
  const std::string good =
      testing::make_wheel({{"pkg/__init__.py", 'f', data}}, "pkg-1.0.dist-info", /*deflate=*/false);
  for (bool local_too : {false, true}) {
    SCOPED_TRACE(local_too ? "central directory and local header" : "central directory");
    std::string zip = good;
    put_size(zip, central_size_at(zip), data.size(), 5);
    if (local_too) {
      ASSERT_EQ(zip.compare(0, 4, std::string("PK\x03\x04", 4)), 0);
      put_size(zip, 22, data.size(), 5);
    }
    ASSERT_TRUE(remove_all(dest_).ok());
    ASSERT_TRUE(make_dirs(dest_).ok());
    expect_corrupt(extract(zip), {kName, "pkg/__init__.py"});
  }
}

// The same lie on a deflated member, both ways: a stream longer than declared, and one that
// ends short of it.
TEST_F(WheelExtractTest, LyingSizeOfADeflatedMemberIsRejected) {
  std::string data;
  for (int i = 0; data.size() < 4000; ++i) data += "x = " + std::to_string(i * 31) + "\n";
  const std::string good = testing::make_wheel({{"pkg/__init__.py", 'f', data}});
  for (uint32_t lie : {uint32_t(data.size() - 100), uint32_t(data.size() + 100)}) {
    SCOPED_TRACE(lie);
    std::string zip = good;
    put_size(zip, central_size_at(zip), data.size(), lie);
    ASSERT_TRUE(remove_all(dest_).ok());
    ASSERT_TRUE(make_dirs(dest_).ok());
    expect_corrupt(extract(zip), {kName, "pkg/__init__.py"});
  }
}

TEST_F(WheelExtractTest, RejectedWheelPublishesNoTree) {
  auto store = Store::open(dir_ / "cache");
  ASSERT_TRUE(store.ok());
  std::vector<RecordRow> rows = {{"pkg-1.0.dist-info/RECORD", "", ""}};
  std::string bytes = testing::make_zip({{"pkg/__init__.py", 'f', "print(1)\n"},
                                         {"pkg-1.0.dist-info/RECORD", 'f', format_record(rows)}});
  std::string path = dir_ / kName;
  testing::write_bytes(path, bytes);
  Key key{HashKind::kSha256, sha256_hex(bytes)};
  auto r = (*store)->extract(key, path, ArchiveFormat::kWheel, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kCorrupt);
  EXPECT_FALSE((*store)->find_tree(key));
  EXPECT_TRUE(testing::list(dir_ / "cache/v1/tmp").empty());
}

TEST(WheelRecord, ParsesAndWritesLikePythonCsv) {
  auto rows = parse_record("a.py,sha256=x,1\r\n\"b,c.py\",sha256=y,2\n\"q\"\"uote\",,\rshort\n\n");
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[1].path, "b,c.py");
  EXPECT_EQ(rows[2].path, "q\"uote");
  EXPECT_EQ(rows[3], (RecordRow{"short", "", ""}));
  EXPECT_EQ(format_record(rows),
            "a.py,sha256=x,1\r\n\"b,c.py\",sha256=y,2\r\n\"q\"\"uote\",,\r\nshort,,\r\n");
}

TEST(WheelRecord, HashSpelling) {
  // pip's INSTALLER row for "pip\n" and the empty REQUESTED file.
  EXPECT_EQ(record_hash_of("pip\n"), "sha256=zuuue4knoyJ-UwPPXg8fezS7VCrXJQrAP7zeNuwvFQg");
  EXPECT_EQ(record_hash_of(""), "sha256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU");
  EXPECT_EQ(urlsafe_b64_nopad("\xfb\xff"), "-_8");
}

}  // namespace
}  // namespace mat::cache
