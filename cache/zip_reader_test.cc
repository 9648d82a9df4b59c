// ZipReader: libzip listing, libdeflate whole-member inflation, the streaming path for big
// members, and the lies it must catch (sizes, CRC-32, encryption, damaged data).
#include "cache/zip_reader.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string_view>

#include "cache/test_util.h"

namespace mat::cache {
namespace {

using testing::Member;

// Member `index`'s bytes, or "<error: ...>".
std::string text_or_error(const Result<std::string>& r) {
  return r.ok() ? *r : "<error: " + r.status().to_string() + ">";
}

// Reads member `index` whole, or the error.
Result<std::string> read_all(const ZipReader& z, size_t index, ZipScratch& scratch) {
  MAT_ASSIGN_OR_RETURN(ZipReader::Stream s, z.read(index, scratch));
  std::string out;
  for (;;) {
    MAT_ASSIGN_OR_RETURN(std::span<const char> b, s.next());
    if (b.empty()) return out;
    out.append(b.data(), b.size());
  }
}

// Offset of member `index`'s central directory header.
size_t central(const std::string& zip, int index) {
  size_t at = 0;
  for (int i = 0; i <= index; ++i) {
    at = zip.find(std::string("PK\x01\x02", 4), i == 0 ? 0 : at + 4);
    EXPECT_NE(at, std::string::npos);
  }
  return at;
}

void put32(std::string& zip, size_t at, uint32_t v) { std::memcpy(zip.data() + at, &v, 4); }
uint32_t get32(const std::string& zip, size_t at) {
  uint32_t v = 0;
  std::memcpy(&v, zip.data() + at, 4);
  return v;
}

// Member 0's CRC-32, compressed size or size, as every record that gives it says it.
enum Field { kCrc = 0, kCompSize = 1, kSize = 2 };
// Rewrites that field of member 0 (libarchive's writer: a local header at offset 0, a data
// descriptor after the data) everywhere a reader finds it: central directory, data descriptor,
// and the local header where it gives a value. The lie is consistent, so the layout check
// passes and only reading the data can expose it. (A lie in one record only is refused before
// any data is read: ZipLayoutTest.)
void lie(std::string& zip, Field f, uint32_t v) {
  const size_t cd = central(zip, 0);
  put32(zip, cd + 16 + 4 * f, v);
  size_t dd = zip.rfind(std::string("PK\x07\x08", 4), cd);
  ASSERT_NE(dd, std::string::npos);
  put32(zip, dd + 4 + 4 * f, v);
  if (get32(zip, 14 + 4 * f) != 0) put32(zip, 14 + 4 * f, v);
}

// Compressible but not trivially so: lines of numbers.
std::string text_of(size_t n) {
  std::string s;
  std::mt19937 rng(7);
  while (s.size() < n) s += std::to_string(rng() % 100000) + (rng() % 8 ? " " : "\n");
  s.resize(n);
  return s;
}

class ZipReaderTest : public ::testing::Test {
 protected:
  Result<std::unique_ptr<ZipReader>> open(const std::string& zip) {
    const std::string path = dir_ / "t.whl";
    testing::write_bytes(path, zip);
    return ZipReader::open_file(path, "t.whl");
  }
  // Opens `zip` (which must open) and reads its first member.
  Result<std::string> read_first(const std::string& zip) {
    auto z = open(zip);
    EXPECT_TRUE(z.ok()) << z.status().to_string();
    if (!z.ok()) return Internal("the zip did not open: " + z.status().to_string());
    return read_all(**z, 0, scratch_);
  }
  testing::TempDir dir_;
  ZipScratch scratch_;
};

TEST_F(ZipReaderTest, ListsAndReadsStoredAndDeflatedMembers) {
  const std::string big = text_of(300000);
  for (bool deflate : {false, true}) {
    SCOPED_TRACE(deflate ? "deflate" : "stored");
    std::string zip = testing::make_zip({{"pkg/", 'd', "", "", 0755},
                                         {"pkg/a.py", 'f', "print(1)\n"},
                                         {"pkg/tool", 'f', big, "", 0755},
                                         {"pkg/empty", 'f', ""}},
                                        deflate);
    auto z = open(zip);
    ASSERT_TRUE(z.ok()) << z.status().to_string();
    ASSERT_EQ((*z)->members(), 4u);
    auto dir = (*z)->member(0);
    ASSERT_TRUE(dir.ok());
    EXPECT_EQ(dir->name, "pkg/");
    EXPECT_TRUE(dir->is_dir);
    auto tool = (*z)->member(2);
    ASSERT_TRUE(tool.ok());
    EXPECT_EQ(tool->name, "pkg/tool");
    EXPECT_EQ(tool->size, static_cast<int64_t>(big.size()));
    EXPECT_FALSE(tool->is_dir);
    EXPECT_FALSE(tool->is_symlink);
    EXPECT_EQ(tool->mode & 0777, 0755u);
    EXPECT_EQ(text_or_error(read_all(**z, 1, scratch_)), "print(1)\n");
    EXPECT_TRUE(text_or_error(read_all(**z, 2, scratch_)) == big);
    EXPECT_EQ(text_or_error(read_all(**z, 3, scratch_)), "");
  }
}

TEST_F(ZipReaderTest, OpensFiles) {
  testing::TempDir dir;
  const std::string path = dir / "t.whl";
  testing::write_bytes(path, testing::make_zip({{"a.py", 'f', text_of(3000)}}, true));
  auto z = ZipReader::open_file(path, "t.whl");
  ASSERT_TRUE(z.ok()) << z.status().to_string();
  EXPECT_EQ(text_or_error(read_all(**z, 0, scratch_)), text_of(3000));

  auto missing = ZipReader::open_file(dir / "gone.whl", "gone.whl");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Code::kNotFound);
  testing::write_bytes(dir / "empty.whl", "");
  auto empty = ZipReader::open_file(dir / "empty.whl", "empty.whl");
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.status().code(), Code::kCorrupt);
  EXPECT_NE(empty.status().message().find("empty.whl"), std::string::npos);
  testing::write_bytes(dir / "junk.whl", "PK\x03\x04 not really a zip");
  auto junk = ZipReader::open_file(dir / "junk.whl", "junk.whl");
  ASSERT_FALSE(junk.ok());
  EXPECT_EQ(junk.status().code(), Code::kCorrupt);
}

TEST_F(ZipReaderTest, SymlinkMembersAreFlagged) {
  auto z = open(testing::make_zip({{"link", 'l', "", "target"}}));
  ASSERT_TRUE(z.ok());
  auto m = (*z)->member(0);
  ASSERT_TRUE(m.ok());
  EXPECT_TRUE(m->is_symlink);
}

// A member many chunks long streams out in ZipScratch::kChunk steps, whatever its size, and its
// CRC-32 is still checked at the end.
TEST_F(ZipReaderTest, BigMembersStreamInChunksAndTheirCrcIsChecked) {
  std::string big;
  const std::string line = text_of(1000);
  while (big.size() < 3 * ZipScratch::kChunk + 12345) big += line;  // quick to deflate
  for (bool deflate : {true, false}) {
    SCOPED_TRACE(deflate ? "deflate" : "stored");
    std::string zip = testing::make_zip({{"big.so", 'f', big}}, deflate);
    auto z = open(zip);
    ASSERT_TRUE(z.ok());
    {
      auto s = (*z)->read(0, scratch_);
      ASSERT_TRUE(s.ok());
      size_t blocks = 0, total = 0;
      for (;;) {
        auto b = s->next();
        ASSERT_TRUE(b.ok()) << b.status().to_string();
        if (b->empty()) break;
        EXPECT_LE(b->size(), ZipScratch::kChunk);
        EXPECT_TRUE(std::string_view(b->data(), b->size()) ==
                    std::string_view(big).substr(total, b->size()));
        total += b->size();
        ++blocks;
      }
      EXPECT_EQ(total, big.size());
      EXPECT_GE(blocks, 4u);
    }
    lie(zip, kCrc, get32(zip, central(zip, 0) + 16) ^ 1);
    auto r = read_first(zip);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Code::kCorrupt);
    EXPECT_EQ(r.status().message(), "CRC-32 mismatch");
  }
}

TEST_F(ZipReaderTest, CrcMismatchIsCorrupt) {
  std::string zip = testing::make_zip({{"a.py", 'f', text_of(5000)}}, /*deflate=*/true);
  lie(zip, kCrc, get32(zip, central(zip, 0) + 16) ^ 0x80);
  auto r = read_first(zip);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "CRC-32 mismatch");
}

// The uncompressed size lies: more data than declared is a lie; less is handed on short, for the
// extractor's size check to name both numbers.
TEST_F(ZipReaderTest, DeflateSizeLies) {
  const std::string data = text_of(5000);
  const std::string good = testing::make_zip({{"a.py", 'f', data}}, /*deflate=*/true);
  {
    std::string zip = good;
    lie(zip, kSize, 4000);
    auto r = read_first(zip);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("sizes that lie"), std::string::npos)
        << r.status().message();
  }
  {
    std::string zip = good;
    lie(zip, kSize, 6000);
    auto r = read_first(zip);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_EQ(*r, data);  // 5000 bytes where 6000 were declared
  }
}

TEST_F(ZipReaderTest, StoredSizeLieIsCorrupt) {
  std::string zip = testing::make_zip({{"a.py", 'f', "print('hello')\n"}});
  lie(zip, kSize, 3);  // uncompressed 3, compressed 15
  auto r = read_first(zip);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("sizes that lie"), std::string::npos);
}

TEST_F(ZipReaderTest, DamagedDeflateDataIsCorrupt) {
  const std::string data = text_of(20000);
  std::string zip = testing::make_zip({{"a.py", 'f', data}}, /*deflate=*/true);
  // The member's data starts after the 30-byte local header and the name.
  for (size_t i = 30 + 4; i < 30 + 4 + 64; ++i) zip[i] = static_cast<char>(0xff);
  auto r = read_first(zip);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kCorrupt);
}

// A deflate stream cut in half, its sizes and CRC-32 those of the whole: every record agrees
// on the compressed size, so the layout is fine and only inflating finds the stream short.
TEST_F(ZipReaderTest, TruncatedDeflateStreamIsCorrupt) {
  const std::string plain = text_of(20000);
  testing::RawEntry e = testing::deflated("a.py", plain);
  e.data.resize(e.data.size() / 2);
  testing::RawZip zip;
  zip.add(e);
  auto r = read_first(zip.finish());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "deflate data ends early");
}

TEST_F(ZipReaderTest, EncryptedMembersAreRefused) {
  std::string zip = testing::make_zip({{"a.py", 'f', "x"}});
  size_t cd = central(zip, 0);
  zip[cd + 8] = static_cast<char>(zip[cd + 8] | 1);  // general purpose flag bit 0: encrypted
  zip[6] = static_cast<char>(zip[6] | 1);            // and in the local header
  auto r = read_first(zip);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "encrypted member");
}

TEST_F(ZipReaderTest, NotAZipIsCorrupt) {
  for (const std::string& junk : {std::string(), std::string("PK\x03\x04garbage", 11),
                                  testing::make_zip({{"a.py", 'f', "x"}}).substr(0, 40)}) {
    auto z = open(junk);
    ASSERT_FALSE(z.ok());
    EXPECT_EQ(z.status().code(), Code::kCorrupt);
    EXPECT_NE(z.status().message().find("t.whl"), std::string::npos);
  }
}

}  // namespace
}  // namespace mat::cache
