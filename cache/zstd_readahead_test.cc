#include "cache/zstd_readahead.h"

#include <gtest/gtest.h>
#include <tbb/task_arena.h>
#include <zstd.h>

#include <atomic>
#include <chrono>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cache/test_util.h"

namespace mat::cache {
namespace {

std::string sample(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s;
  s.reserve(n);
  while (s.size() < n) {
    uint32_t r = rng();
    if (r % 3 == 0) {
      s.append(r % 40 + 1, static_cast<char>('a' + r % 26));
    } else {
      s.push_back(static_cast<char>(r >> 8));
    }
  }
  s.resize(n);
  return s;
}

std::string compress(const std::string& plain, int level = 3, bool checksum = false) {
  std::string out(ZSTD_compressBound(plain.size()), '\0');
  ZSTD_CCtx* c = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level);
  ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, checksum ? 1 : 0);
  size_t n = ZSTD_compress2(c, out.data(), out.size(), plain.data(), plain.size());
  ZSTD_freeCCtx(c);
  EXPECT_FALSE(ZSTD_isError(n));
  out.resize(n);
  return out;
}

// Serves `data` in blocks of `block` bytes; counts calls and fails if called after `*alive`
// went false (the reader promised not to).
struct Source {
  std::string data;
  size_t block = 64 << 10;
  size_t pos = 0;
  std::atomic<int> calls{0};
  std::atomic<bool> alive{true};
  std::atomic<bool> called_after_death{false};
  Status fail_after;  // returned once pos reaches the end instead of "no more", if set

  ZstdReadAhead::Pull pull() {
    return [this](const void** p, size_t* n) -> Result<bool> {
      ++calls;
      if (!alive) called_after_death = true;
      if (pos >= data.size()) {
        if (!fail_after.ok()) return fail_after;
        return false;
      }
      *n = std::min(block, data.size() - pos);
      *p = data.data() + pos;
      pos += *n;
      return true;
    };
  }
};

Result<std::string> read_all(ZstdReadAhead& r) {
  std::string out;
  for (;;) {
    MAT_ASSIGN_OR_RETURN(std::span<const char> chunk, r.next());
    if (chunk.empty()) return out;
    out.append(chunk.data(), chunk.size());
  }
}

using testing::in_arena;

TEST(ZstdReadAhead, RoundTripsAtAnyBlockSizeAndThreadCount) {
  std::string plain = sample(3 << 20, 1);
  std::string comp = compress(plain);
  for (int threads : {0, 1, 2}) {
    for (size_t block : {size_t{1} << 20, size_t{4096}, size_t{7}}) {
      for (size_t chunk : {size_t{1} << 20, size_t{1000}}) {
        Source src;
        src.data = comp;
        src.block = block;
        Result<std::string> got = Internal("not run");
        in_arena(threads, [&] {
          ZstdReadAhead r(src.pull(), "t", {.chunk_bytes = chunk, .max_chunks_ahead = 2});
          got = read_all(r);
        });
        ASSERT_TRUE(got.ok()) << got.status().to_string();
        EXPECT_TRUE(*got == plain) << threads << " " << block << " " << chunk;
      }
    }
  }
}

TEST(ZstdReadAhead, ConcatenatedFramesAndSkippableFramesDecode) {
  std::string a = sample(100000, 2), b = sample(50000, 3);
  // A skippable frame: magic 0x184D2A50, 4-byte little-endian length, payload.
  std::string skip = std::string("\x50\x2a\x4d\x18\x03\x00\x00\x00xyz", 11);
  Source src;
  src.data = compress(a) + skip + compress(b, 19);
  ZstdReadAhead r(src.pull(), "t");
  Result<std::string> got = read_all(r);
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  EXPECT_TRUE(*got == a + b);
}

TEST(ZstdReadAhead, InputWithoutTheMagicIsPassedThrough) {
  Source src;
  src.data = sample(200000, 4);
  src.data[0] = 'x';
  src.block = 3000;
  ZstdReadAhead r(src.pull(), "t");
  Result<std::string> got = read_all(r);
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  EXPECT_TRUE(*got == src.data);
}

// A stream read in order hands out whatever its source gave: the magic number may come split
// over blocks of a byte or two (it was taken for raw input, and the tar reader then failed).
TEST(ZstdReadAhead, MagicSplitAcrossTinyBlocksIsRecognised) {
  const std::string plain = sample(50000, 6);
  for (size_t block : {size_t{1}, size_t{2}, size_t{3}}) {
    SCOPED_TRACE(block);
    for (bool zstd : {true, false}) {
      Source src;
      src.data = zstd ? compress(plain) : plain;
      src.block = block;
      ZstdReadAhead r(src.pull(), "t", {.chunk_bytes = 4096, .max_chunks_ahead = 2});
      Result<std::string> got = read_all(r);
      ASSERT_TRUE(got.ok()) << got.status().to_string();
      EXPECT_TRUE(*got == plain);
    }
  }
  Source tiny;  // raw input shorter than the magic number
  tiny.data = "ab";
  tiny.block = 1;
  ZstdReadAhead r(tiny.pull(), "t");
  Result<std::string> got = read_all(r);
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  EXPECT_EQ(*got, "ab");
}

TEST(ZstdReadAhead, TruncatedDamagedAndEmptyStreamsAreCorrupt) {
  std::string comp = compress(sample(500000, 5));
  for (size_t cut : {size_t{5}, comp.size() / 2, comp.size() - 1}) {
    Source src;
    src.data = comp.substr(0, cut);
    ZstdReadAhead r(src.pull(), "pkg.tar.zst");
    Result<std::string> got = read_all(r);
    ASSERT_FALSE(got.ok()) << cut;
    EXPECT_EQ(got.status().code(), Code::kCorrupt);
    EXPECT_NE(got.status().message().find("pkg.tar.zst"), std::string::npos);
    // Errors are sticky.
    EXPECT_EQ(r.next().status().code(), Code::kCorrupt);
  }
  {
    // Damage is caught by zstd's own checks: here the frame's content checksum.
    Source src;
    src.data = compress(sample(500000, 5), 3, /*checksum=*/true);
    for (size_t i = src.data.size() / 3; i < src.data.size() / 3 + 64; ++i) src.data[i] ^= 0x5a;
    ZstdReadAhead r(src.pull(), "t");
    Result<std::string> got = read_all(r);
    ASSERT_FALSE(got.ok());
    EXPECT_EQ(got.status().code(), Code::kCorrupt) << got.status().to_string();
  }
  {
    Source src;  // nothing at all
    ZstdReadAhead r(src.pull(), "t");
    Result<std::string> got = read_all(r);
    ASSERT_FALSE(got.ok());
    EXPECT_NE(got.status().message().find("empty"), std::string::npos);
  }
}

TEST(ZstdReadAhead, PullErrorsArePassedOn) {
  Source src;
  src.data = compress(sample(300000, 6)).substr(0, 1000);
  src.fail_after = Corrupt("outer zip: bad crc");
  ZstdReadAhead r(src.pull(), "t");
  Result<std::string> got = read_all(r);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().message(), "outer zip: bad crc");
}

TEST(ZstdReadAhead, DestroyedMidStreamNeverPullsAgain) {
  std::string comp = compress(sample(8 << 20, 7), 1);
  for (int threads : {1, 2, 4}) {
    for (int reads : {0, 1, 3}) {
      Source src;
      src.data = comp;
      src.block = 16 << 10;
      in_arena(threads, [&] {
        ZstdReadAhead r(src.pull(), "t", {.chunk_bytes = 64 << 10, .max_chunks_ahead = 3});
        for (int i = 0; i < reads; ++i) ASSERT_TRUE(r.next().ok());
      });
      src.alive = false;
      int calls = src.calls;
      in_arena(threads, [] {});  // let any queued helper run now that the reader is gone
      EXPECT_EQ(src.calls, calls) << threads << " " << reads;
      EXPECT_FALSE(src.called_after_death);
    }
  }
}

TEST(ZstdReadAhead, HelperDecodesAheadWhenAThreadIsFree) {
  std::string plain = sample(4 << 20, 8);
  Source src;
  src.data = compress(plain);
  std::atomic<bool> other_thread_pulled{false};
  auto inner = src.pull();
  const auto consumer = std::this_thread::get_id();
  ZstdReadAhead::Pull pull = [&](const void** p, size_t* n) {
    if (std::this_thread::get_id() != consumer) other_thread_pulled = true;
    return inner(p, n);
  };
  tbb::task_arena arena(2);
  Result<std::string> got = Internal("not run");
  arena.execute([&] {
    ZstdReadAhead r(pull, "t", {.chunk_bytes = 64 << 10, .max_chunks_ahead = 4});
    std::string out;
    for (;;) {
      auto chunk = r.next();
      ASSERT_TRUE(chunk.ok());
      if (chunk->empty()) break;
      out.append(chunk->data(), chunk->size());
      // A slow consumer: after the first chunk, give the helper (enqueued by next()) up to
      // 10 s to start on the arena's other thread and decode ahead.
      for (int i = 0; i < 10000 && !other_thread_pulled; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    }
    got = out;
  });
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(*got == plain);
  EXPECT_TRUE(other_thread_pulled) << "no helper ever decoded ahead";
}

}  // namespace
}  // namespace mat::cache
