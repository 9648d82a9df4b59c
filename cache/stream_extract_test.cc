// extract_conda_stream (extract.h) and Store::extract_streamed: a .conda extracted from its bytes
// as they arrive must give exactly what extracting the complete file gives, or fail so the
// caller can fall back to that.
#include <gtest/gtest.h>
#include <unistd.h>

#include <clocale>
#include <random>
#include <string>
#include <thread>

#include "cache/extract.h"
#include "cache/growing_file.h"
#include "cache/store.h"
#include "cache/test_util.h"
#include "tests/corpus.h"

namespace mat::cache {
namespace {

using testing::Member;
using testing::TempDir;

const bool kUtf8Locale = std::setlocale(LC_CTYPE, "C.UTF-8") != nullptr;

// Hands out `bytes` in pieces of 1..max_piece bytes, then empty blocks.
ByteSource pieces_of(const std::string& bytes, size_t max_piece, uint32_t seed = 1) {
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

std::string random_bytes(size_t n, uint32_t seed) {
  std::string s(n, '\0');
  std::mt19937 rng(seed);
  for (char& c : s) c = static_cast<char>(rng() % 7 == 0 ? 'a' : rng());
  return s;
}

std::string sample_conda() {
  return testing::make_conda_package(
      {{"info/index.json", 'f', R"({"name":"test"})"}},
      {{"bin/tool", 'f', "#!/bin/sh\necho hi\n", "", 0755},
       {"lib/libx.so.1", 'f', random_bytes(3 << 20, 5), "", 0644},
       {"lib/libx.so", 'l', "", "libx.so.1"},
       {"lib/hard", 'h', "", "bin/tool"},
       {"share/empty", 'd'},
       {"etc/readonly.conf", 'f', "x=1\n", "", 0444}});
}

class StreamExtractTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(kUtf8Locale);
    ASSERT_TRUE(make_dirs(dir_ / "from-file").ok());
    ASSERT_TRUE(make_dirs(dir_ / "streamed").ok());
  }
  // Empties both destinations (for a test that extracts several times).
  void fresh() {
    ASSERT_TRUE(remove_all(dir_ / "from-file").ok() && remove_all(dir_ / "streamed").ok());
    SetUp();
  }
  // Writes the archive as the finished download and extracts it both ways; returns the
  // streamed result (and, in *from_file, the other).
  Result<Manifest> both(const std::string& conda, const ByteSource& next,
                        Result<Manifest>* from_file = nullptr) {
    testing::write_bytes(archive_, conda);
    auto f =
        extract_archive(archive_, ArchiveFormat::kConda, dir_ / "from-file", posix_fs(), scratch_);
    if (from_file) *from_file = f;
    return extract_conda_stream(next, archive_, dir_ / "streamed", posix_fs(), scratch_);
  }

  TempDir dir_;
  std::string archive_ = dir_ / "test-1.0-0.conda";
  ExtractScratch scratch_;
};

TEST_F(StreamExtractTest, SameTreeAsFromTheFileWhateverThePieces) {
  const std::string conda = sample_conda();
  for (size_t piece : {size_t{1} << 20, size_t{65536}, size_t{7}}) {
    SCOPED_TRACE(piece);
    fresh();
    Result<Manifest> from_file = Internal("unset");
    auto streamed = both(conda, pieces_of(conda, piece), &from_file);
    ASSERT_TRUE(from_file.ok()) << from_file.status().to_string();
    ASSERT_TRUE(streamed.ok()) << streamed.status().to_string();
    EXPECT_EQ(*streamed, *from_file);
    EXPECT_EQ(testing::slurp(dir_ / "streamed/lib/libx.so.1"), random_bytes(3 << 20, 5));
    EXPECT_EQ(testing::read_link(dir_ / "streamed/lib/libx.so"), "libx.so.1");
    EXPECT_EQ(testing::file_mode(dir_ / "streamed/bin/tool") & 07777, 0755u);
    EXPECT_FALSE(path_exists(dir_ / "streamed/metadata.json"));
  }
}

// One archive, one outcome: a name that differs between local header and central directory
// is refused by both paths (the file path used to accept it, reading the central directory's
// name, while the stream refused it: two outcomes for one sha256).
TEST_F(StreamExtractTest, CentralDirectoryThatDisagreesIsCorruptBothWays) {
  std::string conda = sample_conda();
  // Rename the first member in the central directory only (its local header keeps the name).
  size_t cd = conda.find("PK\x01\x02");
  ASSERT_NE(cd, std::string::npos);
  size_t name = conda.find("metadata.json", cd);
  ASSERT_NE(name, std::string::npos);
  conda[name] = 'M';
  Result<Manifest> from_file = Internal("unset");
  auto streamed = both(conda, pieces_of(conda, 4096), &from_file);
  for (const Result<Manifest>* r : {&from_file, &streamed}) {
    ASSERT_FALSE(r->ok());
    EXPECT_EQ(r->status().code(), Code::kCorrupt);
    EXPECT_NE(r->status().message().find("'Metadata.json'"), std::string::npos)
        << r->status().message();
    EXPECT_NE(r->status().message().find("'metadata.json'"), std::string::npos)
        << r->status().message();
  }
}

TEST_F(StreamExtractTest, StreamShorterThanTheFileIsCorrupt) {
  const std::string conda = sample_conda();
  const size_t cd = conda.find("PK\x01\x02");
  ASSERT_NE(cd, std::string::npos);
  for (size_t cut : {size_t{10}, conda.size() / 2, cd, conda.size() - 1}) {
    SCOPED_TRACE(cut);
    fresh();
    auto streamed = both(conda, pieces_of(conda.substr(0, cut), 8192));
    ASSERT_FALSE(streamed.ok());
    EXPECT_EQ(streamed.status().code(), Code::kCorrupt) << streamed.status().to_string();
  }
}

TEST_F(StreamExtractTest, SourceErrorIsReturnedAsItIs) {
  const std::string conda = sample_conda();
  auto inner = pieces_of(conda, 8192);
  int calls = 0;
  ByteSource failing = [&]() -> Result<std::span<const char>> {
    if (++calls == 20) return Cancelled("the download restarted");
    return inner();
  };
  auto streamed = both(conda, failing);
  ASSERT_FALSE(streamed.ok());
  EXPECT_EQ(streamed.status().code(), Code::kCancelled) << streamed.status().to_string();
}

TEST_F(StreamExtractTest, MaliciousInnerTarIsRejected) {
  const std::string conda =
      testing::make_conda({{"info/index.json", 'f', "{}"}}, {{"../evil", 'f', "gotcha"}});
  auto streamed = both(conda, pieces_of(conda, 4096));
  ASSERT_FALSE(streamed.ok());
  EXPECT_EQ(streamed.status().code(), Code::kCorrupt);
  EXPECT_NE(streamed.status().message().find("evil"), std::string::npos);
  EXPECT_FALSE(path_exists(dir_ / "evil"));
}

TEST_F(StreamExtractTest, CondaWithoutAnyTarIsCorrupt) {
  const std::string conda = testing::make_conda({}, {}, /*with_info=*/false, /*with_pkg=*/false);
  auto streamed = both(conda, pieces_of(conda, 4096));
  ASSERT_FALSE(streamed.ok());
  EXPECT_EQ(streamed.status().code(), Code::kCorrupt);
}

// Real packages: every .conda of the shared corpus streams to the tree its file gives.
TEST_F(StreamExtractTest, CorpusCondaPackagesStreamToTheSameTree) {
  const std::string dir = testing_corpus::corpus_dir() + "/conda";
  if (!is_dir(dir)) GTEST_SKIP() << "no corpus at " << dir;
  int streamed_ok = 0;
  for (const auto& name : testing::list(dir)) {
    if (!name.ends_with(".conda")) continue;
    SCOPED_TRACE(name);
    std::string bytes = testing::slurp(dir + "/" + name);
    fresh();
    Result<Manifest> from_file = Internal("unset");
    auto streamed = both(bytes, pieces_of(bytes, 100000), &from_file);
    if (!from_file.ok()) {  // a package the file path rejects must not stream either
      EXPECT_FALSE(streamed.ok());
      continue;
    }
    ASSERT_TRUE(streamed.ok()) << streamed.status().to_string();
    EXPECT_EQ(*streamed, *from_file);
    ++streamed_ok;
  }
  EXPECT_GT(streamed_ok, 0);
  std::printf("[ corpus   ] %d .conda packages streamed\n", streamed_ok);
}

// The store's side, fed by a download that is still being written.
TEST(StoreStreamTest, ExtractsWhileTheFileGrowsThenCommits) {
  ASSERT_TRUE(kUtf8Locale);
  TempDir tmp;
  auto store = Store::open(tmp / "cache");
  ASSERT_TRUE(store.ok());
  const std::string conda = sample_conda();
  const std::string path = tmp / "download.conda";
  testing::write_bytes(path, "");
  auto g = std::make_shared<GrowingFile>();
  auto reader = GrowingFileReader::open(path, g, 32 << 10);
  ASSERT_TRUE(reader.ok());
  std::thread writer([&] {
    FILE* f = std::fopen(path.c_str(), "wb");
    for (size_t at = 0; at < conda.size();) {
      size_t n = std::min<size_t>(conda.size() - at, 10000);
      std::fwrite(conda.data() + at, 1, n, f);
      std::fflush(f);
      at += n;
      g->grew(static_cast<int64_t>(at));
    }
    std::fclose(f);
    g->complete();
  });
  Key key{HashKind::kSha256, std::string(64, 'a')};
  auto tree = (*store)->extract_streamed(key, path, ArchiveFormat::kConda,
                                         [&] { return (*reader)->next(); });
  writer.join();
  ASSERT_TRUE(tree.ok()) << tree.status().to_string();
  EXPECT_EQ((*tree)->stats().files, 6);
  auto committed = (*tree)->commit();
  ASSERT_TRUE(committed.ok()) << committed.status().to_string();
  EXPECT_EQ(testing::slurp(*committed + "/lib/libx.so.1"), random_bytes(3 << 20, 5));
  auto problems = (*store)->verify();
  ASSERT_TRUE(problems.ok());
  // The archive itself was never published here, only the tree: verify() checks the tree.
  for (const auto& p : *problems) ADD_FAILURE() << p.path << ": " << p.problem;
}

TEST(StoreStreamTest, FailureLeavesNothingBehind) {
  ASSERT_TRUE(kUtf8Locale);
  TempDir tmp;
  auto store = Store::open(tmp / "cache");
  ASSERT_TRUE(store.ok());
  std::string conda = sample_conda();
  const std::string path = tmp / "download.conda";
  testing::write_bytes(path, conda);
  Key key{HashKind::kSha256, std::string(64, 'b')};
  auto tree = (*store)->extract_streamed(key, path, ArchiveFormat::kConda,
                                         pieces_of(conda.substr(0, conda.size() / 2), 4096));
  ASSERT_FALSE(tree.ok());
  EXPECT_TRUE(testing::list(tmp / "cache/v1/tmp").empty());
  EXPECT_FALSE((*store)->find_tree(key));
  auto wrong = (*store)->extract_streamed(key, path, ArchiveFormat::kTarBz2, pieces_of(conda, 9));
  EXPECT_EQ(wrong.status().code(), Code::kInternal);
}

}  // namespace
}  // namespace mat::cache
