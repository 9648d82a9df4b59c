#include "cache/bz2_parallel.h"

#include <archive.h>
#include <bzlib.h>
#include <gtest/gtest.h>
#include <tbb/parallel_for_each.h>
#include <tbb/task_arena.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cache/archive_handle.h"
#include "cache/test_util.h"

namespace mat::cache {
namespace {

using internal::Bz2Magic;

std::span<const unsigned char> bytes(const std::string& s) {
  return {reinterpret_cast<const unsigned char*>(s.data()), s.size()};
}

std::string compress(const std::string& in, int level) {
  std::string out(in.size() + in.size() / 50 + 1024, '\0');
  auto n = static_cast<unsigned>(out.size());
  int rc = BZ2_bzBuffToBuffCompress(out.data(), &n, const_cast<char*>(in.data()),
                                    static_cast<unsigned>(in.size()), level, 0, 0);
  EXPECT_EQ(rc, BZ_OK);
  out.resize(n);
  return out;
}

// libbz2's own verdict on a single-stream file: the output, or nullopt if it rejects it.
std::optional<std::string> reference(const std::string& comp, size_t expected_size) {
  std::string out(expected_size + 1024, '\0');
  auto n = static_cast<unsigned>(out.size());
  int rc = BZ2_bzBuffToBuffDecompress(out.data(), &n, const_cast<char*>(comp.data()),
                                      static_cast<unsigned>(comp.size()), 0, 0);
  if (rc != BZ_OK) return std::nullopt;
  out.resize(n);
  return out;
}

// Text-like bytes (~4:1 under bzip2): words from a small vocabulary, some numbers.
std::string text_like(size_t n, uint32_t seed) {
  static const char* kWords[] = {"package", "version",       "build",       "depends", "license",
                                 "python",  "numpy",         "lib",         "include", "share",
                                 "bin",     "site-packages", "__init__.py", "def",     "return",
                                 "import",  "0.1.2",         "linux-64"};
  std::mt19937 rng(seed);
  std::string out;
  out.reserve(n);
  while (out.size() < n) {
    uint32_t r = rng();
    out += kWords[r % std::size(kWords)];
    out += (r >> 8) % 7 == 0 ? '\n' : ' ';
    if ((r >> 12) % 13 == 0) out += std::to_string(r >> 16);
  }
  out.resize(n);
  return out;
}

std::string random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string out(n, '\0');
  for (auto& c : out) c = static_cast<char>(rng());
  return out;
}

// Long runs of one byte: bzip2's initial RLE turns each 4+255 bytes into 5, so a block holds
// ~46 MB of them.
std::string long_runs(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string out;
  out.reserve(n);
  while (out.size() < n) out.append(1000 + rng() % 200000, static_cast<char>(rng()));
  out.resize(n);
  return out;
}

struct Sample {
  std::string plain;
  std::string comp;
};

// Inputs are made once; compressing at level 9 runs at ~10 MB/s.
const Sample& sample(const std::string& name) {
  static std::map<std::string, Sample> cache;
  auto it = cache.find(name);
  if (it != cache.end()) return it->second;
  Sample s;
  if (name == "text1") s.plain = text_like(3 << 20, 1);
  if (name == "text9") s.plain = text_like(6 << 20, 2);
  if (name == "random9") s.plain = random_bytes(3 << 20, 3);
  if (name == "runs1") s.plain = long_runs(20 << 20, 4);  // ~5 MB of output per block
  if (name == "runs9") s.plain = long_runs(50 << 20, 9);  // ~46 MB in the first block
  if (name == "mixed9") {
    s.plain = text_like(2 << 20, 5) + random_bytes(1 << 20, 6) + long_runs(8 << 20, 7);
  }
  if (name == "small") s.plain = text_like(40 << 10, 8);
  if (name == "short1") s.plain = text_like(500 << 10, 10);  // 5 blocks, for corruption tests
  s.comp = compress(s.plain, name.back() == '1' ? 1 : 9);
  return cache.emplace(name, std::move(s)).first->second;
}

// Reads everything; checks chunk sizes and that the end is sticky.
Result<std::string> read_all(Bz2ParallelReader& r) {
  std::string out;
  for (;;) {
    MAT_ASSIGN_OR_RETURN(std::span<const char> chunk, r.next());
    if (chunk.empty()) break;
    EXPECT_LE(chunk.size(), size_t{1} << 20);
    out.append(chunk.data(), chunk.size());
  }
  EXPECT_EQ(r.bytes_out(), static_cast<int64_t>(out.size()));
  Result<std::span<const char>> again = r.next();
  EXPECT_TRUE(again.ok() && again->empty());
  return out;
}

using testing::in_arena;

Bz2ReaderOptions parallel_always() {
  Bz2ReaderOptions o;
  o.min_parallel_bytes = 0;
  return o;
}

Result<std::string> decode(const std::string& comp, int threads,
                           Bz2ReaderOptions options = parallel_always()) {
  Result<std::string> out = std::string();
  in_arena(threads, [&] {
    Bz2ParallelReader r(bytes(comp), "test.tar.bz2", options);
    out = read_all(r);
  });
  return out;
}

// The bits of every real block and end-of-stream magic, from the scan (no chance magics occur
// in these small samples; Bz2Scan checks the scan itself).
std::vector<Bz2Magic> magics_of(const std::string& comp) {
  return internal::scan_bz2_magics(bytes(comp));
}

// --- the scan --------------------------------------------------------------------------------

std::vector<Bz2Magic> slow_scan(const std::string& d) {
  std::vector<Bz2Magic> out;
  const int64_t nbits = static_cast<int64_t>(d.size()) * 8;
  auto bit_at = [&](int64_t b) {
    return (static_cast<unsigned char>(d[b >> 3]) >> (7 - (b & 7))) & 1;
  };
  for (int64_t b = 0; b + 48 <= nbits; ++b) {
    uint64_t w = 0;
    for (int i = 0; i < 48; ++i) w = w << 1 | bit_at(b + i);
    if (w == 0x314159265359) out.push_back({b, false});
    if (w == 0x177245385090) out.push_back({b, true});
  }
  return out;
}

void put_bits(std::string* d, int64_t bit, uint64_t v, int n) {
  for (int i = 0; i < n; ++i, ++bit) {
    auto& c = reinterpret_cast<unsigned char&>((*d)[bit >> 3]);
    unsigned mask = 0x80u >> (bit & 7);
    c = static_cast<unsigned char>(((v >> (n - 1 - i)) & 1) ? (c | mask) : (c & ~mask));
  }
}

bool same(const std::vector<Bz2Magic>& a, const std::vector<Bz2Magic>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].bit != b[i].bit || a[i].eos != b[i].eos) return false;
  }
  return true;
}

TEST(Bz2Scan, FindsMagicsAtEveryBitOffsetLikeABruteForceScan) {
  std::string d = random_bytes(4096, 11);
  // Both magics at each shift, at the very start and the very end, and overlapping each other.
  std::vector<int64_t> at = {0, 8 * 4096 - 48, 8 * 4096 - 49 - 48};
  for (int s = 0; s < 8; ++s) at.push_back(800 + 97 * 8 * s + s);
  for (int s = 0; s < 8; ++s) at.push_back(8000 + 101 * 8 * s + s);
  at.push_back(20000);
  at.push_back(20000 + 40);  // overlaps the previous one
  for (size_t i = 0; i < at.size(); ++i) {
    put_bits(&d, at[i], i % 2 ? 0x177245385090 : 0x314159265359, 48);
  }
  std::vector<Bz2Magic> fast = internal::scan_bz2_magics(bytes(d));
  EXPECT_TRUE(same(fast, slow_scan(d)));
  EXPECT_GE(fast.size(), at.size() - 1);

  for (size_t len = 0; len < 80; ++len) {  // short inputs, magic ending at the last bit
    std::string s = random_bytes(len, static_cast<uint32_t>(len));
    if (len >= 6) put_bits(&s, static_cast<int64_t>(len) * 8 - 48, 0x314159265359, 48);
    EXPECT_TRUE(same(internal::scan_bz2_magics(bytes(s)), slow_scan(s))) << len;
  }
  const std::string& comp = sample("text1").comp;
  std::string head = comp.substr(0, 300000);
  EXPECT_TRUE(same(internal::scan_bz2_magics(bytes(head)), slow_scan(head)));
}

// --- decoding --------------------------------------------------------------------------------

class Bz2Decode : public ::testing::TestWithParam<int> {};

const char* const kSamples[] = {"text1", "text9", "random9", "runs1", "runs9", "mixed9"};

TEST(Bz2Samples, RoundTripThroughLibbz2) {
  for (const char* name : kSamples) {
    const Sample& s = sample(name);
    EXPECT_GT(magics_of(s.comp).size(), 2u) << name;
    EXPECT_TRUE(reference(s.comp, s.plain.size()) == s.plain) << name;
  }
}

TEST_P(Bz2Decode, MatchesLibbz2) {
  for (const char* name : kSamples) {
    const Sample& s = sample(name);
    Result<std::string> out = decode(s.comp, GetParam());
    ASSERT_TRUE(out.ok()) << name << ": " << out.status().to_string();
    EXPECT_TRUE(*out == s.plain) << name;
  }
}

TEST_P(Bz2Decode, DefaultOptions) {
  const Sample& s = sample("text9");
  Result<std::string> out = decode(s.comp, GetParam(), {});
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  EXPECT_TRUE(*out == s.plain);
}

TEST_P(Bz2Decode, InputConsumedMovesForwardToTheEnd) {
  const Sample& sm = sample("text9");
  in_arena(GetParam(), [&] {
    Bz2ParallelReader r(bytes(sm.comp), "t", parallel_always());
    EXPECT_EQ(r.input_consumed(), 0);
    int64_t last = 0;
    std::string out;
    for (;;) {
      auto chunk = r.next();
      ASSERT_TRUE(chunk.ok()) << chunk.status().to_string();
      if (chunk->empty()) break;
      out.append(chunk->data(), chunk->size());
      int64_t now = r.input_consumed();
      EXPECT_GE(now, last);
      EXPECT_LE(now, static_cast<int64_t>(sm.comp.size()));
      last = now;
    }
    EXPECT_TRUE(out == sm.plain);
    EXPECT_EQ(r.input_consumed(), static_cast<int64_t>(sm.comp.size()));
  });
}

TEST_P(Bz2Decode, TightMemoryBounds) {
  const Sample& s = sample("text1");
  for (auto [ahead, budget] :
       {std::pair{1, int64_t{1} << 30}, std::pair{0, int64_t{1}}, std::pair{2, int64_t{0}}}) {
    Bz2ReaderOptions o = parallel_always();
    o.max_blocks_ahead = ahead;
    o.max_buffered_bytes = budget;
    Result<std::string> out = decode(s.comp, GetParam(), o);
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    EXPECT_TRUE(*out == s.plain) << ahead << " " << budget;
  }
}

// max_output_bytes: nothing past it is handed out, and no block (a "runs9" block decodes to
// ~46 MB) is decoded past it by the consumer or a helper; the caller's error is returned.
TEST_P(Bz2Decode, OutputLimitStopsAtTheLimit) {
  for (const char* name : {"runs9", "text9"}) {
    const Sample& s = sample(name);
    const int64_t size = static_cast<int64_t>(s.plain.size());
    for (auto o : {parallel_always(), Bz2ReaderOptions()}) {
      SCOPED_TRACE(std::string(name) + (o.min_parallel_bytes == 0 ? " parallel" : " default"));
      // The whole of "runs9" (50 MB) only once, in the other tests.
      std::vector<int64_t> limits = {int64_t{1} << 20};
      if (size < (16 << 20)) limits = {int64_t{1} << 20, size - 1, size};
      for (int64_t limit : limits) {
        o.max_output_bytes = limit;
        o.output_limit_error = [] { return InvalidInput("over the test's limit"); };
        int64_t handed_out = 0;
        Status st;
        in_arena(GetParam(), [&] {
          Bz2ParallelReader r(bytes(s.comp), "test.tar.bz2", o);
          for (;;) {
            Result<std::span<const char>> chunk = r.next();
            if (!chunk.ok()) {
              st = chunk.status();
              EXPECT_EQ(r.next().status().message(), st.message());  // sticky
              break;
            }
            if (chunk->empty()) break;
            handed_out += static_cast<int64_t>(chunk->size());
          }
        });
        EXPECT_LE(handed_out, limit);
        if (limit < size) {
          EXPECT_EQ(st.code(), Code::kInvalidInput) << st.to_string();
          EXPECT_EQ(st.message(), "over the test's limit");
        } else {
          EXPECT_TRUE(st.ok()) << st.to_string();
          EXPECT_EQ(handed_out, size);
        }
      }
    }
  }
}

TEST_P(Bz2Decode, EmptyStream) {
  std::string empty = compress("", 9);
  EXPECT_EQ(empty.size(), 14u);
  for (auto o : {parallel_always(), Bz2ReaderOptions()}) {
    Result<std::string> out = decode(empty, GetParam(), o);
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    EXPECT_EQ(*out, "");
  }
}

// Concatenated streams of different levels (pbzip2 and `cat a.bz2 b.bz2` make these), with an
// empty stream in the middle; the level-1 stream's blocks hold at most 100k bytes each.
TEST_P(Bz2Decode, ConcatenatedStreams) {
  const Sample& a = sample("text1");
  const Sample& b = sample("text9");
  std::string c_plain = random_bytes(300000, 12);
  std::string comp = a.comp + b.comp + compress("", 9) + compress(c_plain, 5) + a.comp;
  std::string plain = a.plain + b.plain + c_plain + a.plain;
  for (auto o : {parallel_always(), Bz2ReaderOptions()}) {
    Result<std::string> out = decode(comp, GetParam(), o);
    ASSERT_TRUE(out.ok()) << out.status().to_string();
    EXPECT_TRUE(*out == plain);
  }
}

TEST_P(Bz2Decode, SmallInputTakesTheSerialPath) {
  const Sample& s = sample("small");
  Result<std::string> out = decode(s.comp, GetParam(), {});
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  EXPECT_TRUE(*out == s.plain);
}

// --- chance magics ---------------------------------------------------------------------------

// Adds false candidates inside blocks, including the delicate places a few bits before and
// after a real boundary; the output must not change.
TEST_P(Bz2Decode, SurvivesFalseBoundaries) {
  for (const char* name : {"text1", "mixed9"}) {
    const Sample& s = sample(name);
    std::vector<Bz2Magic> real = magics_of(s.comp);
    Bz2ReaderOptions o = parallel_always();
    o.candidate_hook = [&](std::vector<Bz2Magic>* m) {
      for (size_t k = 0; k + 1 < real.size(); ++k) {
        int64_t a = real[k].bit, b = real[k + 1].bit;
        m->push_back({(a + b) / 2, k % 3 == 0});
        if (k % 2 == 0) m->push_back({b - 1 - static_cast<int64_t>(k % 7), false});
        if (k % 2 == 1) m->push_back({a + 1 + static_cast<int64_t>(k % 7), true});
        if (k % 5 == 0) m->push_back({a + 48 + 32, false});
      }
    };
    Result<std::string> out = decode(s.comp, GetParam(), o);
    ASSERT_TRUE(out.ok()) << name << ": " << out.status().to_string();
    EXPECT_TRUE(*out == s.plain) << name;
  }
}

// More chance magics in one block than the reader retries: it finishes serially.
TEST_P(Bz2Decode, ManyFalseBoundariesInOneBlockFallBackToSerial) {
  const Sample& s = sample("text1");
  std::vector<Bz2Magic> real = magics_of(s.comp);
  ASSERT_GT(real.size(), 6u);
  Bz2ReaderOptions o = parallel_always();
  o.candidate_hook = [&](std::vector<Bz2Magic>* m) {
    int64_t a = real[3].bit, b = real[4].bit;
    for (int i = 1; i <= 30; ++i) m->push_back({a + (b - a) * i / 31, false});
  };
  Result<std::string> out = decode(s.comp, GetParam(), o);
  ASSERT_TRUE(out.ok()) << out.status().to_string();
  EXPECT_TRUE(*out == s.plain);
}

// --- corruption ------------------------------------------------------------------------------

// Asserts kCorrupt, and that whatever came out before the error is a prefix of the real output.
void expect_corrupt(const std::string& comp, const std::string& plain, int threads,
                    Bz2ReaderOptions options, const std::string& label,
                    const std::string& message_part = "") {
  in_arena(threads, [&] {
    Bz2ParallelReader r(bytes(comp), "bad.tar.bz2", options);
    std::string out;
    for (;;) {
      Result<std::span<const char>> chunk = r.next();
      if (!chunk.ok()) {
        EXPECT_EQ(chunk.status().code(), Code::kCorrupt) << label << chunk.status().to_string();
        EXPECT_NE(chunk.status().message().find("bad.tar.bz2"), std::string::npos);
        EXPECT_NE(chunk.status().message().find(message_part), std::string::npos)
            << label << chunk.status().message();
        EXPECT_EQ(r.next().status().code(), Code::kCorrupt);  // sticky
        break;
      }
      if (chunk->empty()) {
        ADD_FAILURE() << label << ": decoded without error";
        break;
      }
      out.append(chunk->data(), chunk->size());
    }
    EXPECT_TRUE(plain.compare(0, out.size(), out) == 0) << label;
  });
}

TEST_P(Bz2Decode, TruncatedAnywhereIsCorrupt) {
  const Sample& s = sample("short1");
  std::vector<size_t> cuts = {0, 1, 3, 4, 9, 10, 13, 100};
  for (size_t i = 1; i < 24; ++i) cuts.push_back(s.comp.size() * i / 24);
  for (size_t back = 1; back <= 12; ++back) cuts.push_back(s.comp.size() - back);
  for (const Bz2Magic& m : magics_of(s.comp)) {
    cuts.push_back(static_cast<size_t>(m.bit / 8));
    cuts.push_back(static_cast<size_t>(m.bit / 8 + 7));
  }
  for (size_t cut : cuts) {
    for (auto o : {parallel_always(), Bz2ReaderOptions()}) {
      expect_corrupt(s.comp.substr(0, cut), s.plain, GetParam(), o,
                     "cut at " + std::to_string(cut));
    }
  }
}

// Any bit flipped anywhere: we fail exactly when libbz2 fails, and agree on the bytes otherwise
// (a flip in the final padding bits is invisible to both).
TEST_P(Bz2Decode, FlippedBitsFailExactlyWhenLibbz2Fails) {
  const Sample& s = sample("short1");
  std::mt19937 rng(99);
  std::vector<int64_t> bits;
  for (int i = 0; i < 24; ++i) bits.push_back(static_cast<int64_t>(rng() % (s.comp.size() * 8)));
  for (const Bz2Magic& m : magics_of(s.comp)) {
    bits.push_back(m.bit + 3);        // the magic itself
    bits.push_back(m.bit + 48 + 5);   // the block CRC, or the combined CRC
    bits.push_back(m.bit + 48 + 32);  // the randomised bit, or the first padding bit
  }
  const int64_t nbits = static_cast<int64_t>(s.comp.size()) * 8;
  for (int64_t b = nbits - 12; b < nbits; ++b) bits.push_back(b);
  for (int64_t bit : bits) {
    if (bit >= nbits) continue;
    std::string bad = s.comp;
    bad[bit >> 3] = static_cast<char>(bad[bit >> 3] ^ (0x80 >> (bit & 7)));
    std::optional<std::string> want = reference(bad, s.plain.size());
    for (auto o : {parallel_always(), Bz2ReaderOptions()}) {
      if (want) {
        Result<std::string> out = decode(bad, GetParam(), o);
        ASSERT_TRUE(out.ok()) << "bit " << bit << ": " << out.status().to_string();
        EXPECT_TRUE(*out == *want) << "bit " << bit;
      } else {
        expect_corrupt(bad, s.plain, GetParam(), o, "bit " + std::to_string(bit));
      }
    }
  }
}

TEST_P(Bz2Decode, CombinedCrcMismatchIsCorrupt) {
  const Sample& s = sample("text9");
  Bz2Magic eos = magics_of(s.comp).back();
  ASSERT_TRUE(eos.eos);
  std::string bad = s.comp;
  int64_t bit = eos.bit + 48 + 17;
  bad[bit >> 3] = static_cast<char>(bad[bit >> 3] ^ (0x80 >> (bit & 7)));
  expect_corrupt(bad, s.plain, GetParam(), parallel_always(), "combined crc", "combined CRC");
}

TEST_P(Bz2Decode, MissingEndOfStreamIsCorrupt) {
  const Sample& s = sample("text9");
  Bz2Magic eos = magics_of(s.comp).back();
  ASSERT_TRUE(eos.eos);
  // Cut just before the marker, or overwrite it with zeros keeping the length.
  expect_corrupt(s.comp.substr(0, static_cast<size_t>(eos.bit / 8)), s.plain, GetParam(),
                 parallel_always(), "cut before marker", "truncated");
  std::string zeroed = s.comp;
  put_bits(&zeroed, eos.bit, 0, 48);
  expect_corrupt(zeroed, s.plain, GetParam(), parallel_always(), "zeroed marker");
  // A second stream cut short after a complete first one.
  const Sample& t = sample("text1");
  expect_corrupt(s.comp + t.comp.substr(0, t.comp.size() / 2), s.plain + t.plain, GetParam(),
                 parallel_always(), "second stream cut");
}

TEST_P(Bz2Decode, NotBzip2IsCorrupt) {
  for (std::string bad :
       {std::string(), std::string("hello world, not bzip2 at all"),
        std::string("BZh0") + sample("small").comp.substr(4),
        std::string("BZh9") + std::string(20, '\0'), "\x1f\x8b" + sample("text1").comp}) {
    for (auto o : {parallel_always(), Bz2ReaderOptions()}) {
      expect_corrupt(bad, "", GetParam(), o, "not bzip2", "not a bzip2 stream");
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Bz2, Bz2Decode, ::testing::Values(0, 1, 2, 4),
                         [](const ::testing::TestParamInfo<int>& p) {
                           return "Arena" + std::to_string(p.param);
                         });

// Trailing bytes after the last stream: decided by what libarchive's bzip2 filter does, since
// this reader replaces it for .tar.bz2. Each case is also run through libarchive to keep the
// two in step: it ignores trailing bytes unless they start like a stream (at least 14 bytes of
// "BZh[1-9]" and a magic), which are then decoded and must be valid.
Result<std::string> libarchive_decode(const std::string& comp) {
  ArchiveRead a(archive_read_new());
  archive_read_support_filter_bzip2(a.get());
  archive_read_support_format_raw(a.get());
  if (archive_read_open_memory(a.get(), comp.data(), comp.size()) != ARCHIVE_OK) {
    return Corrupt(archive_error(a.get()));
  }
  archive_entry* e = nullptr;
  if (archive_read_next_header(a.get(), &e) != ARCHIVE_OK) return Corrupt(archive_error(a.get()));
  std::string out;
  char buf[1 << 16];
  for (;;) {
    la_ssize_t n = archive_read_data(a.get(), buf, sizeof buf);
    if (n < 0) return Corrupt(archive_error(a.get()));
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

TEST(Bz2Trailing, MatchesLibarchive) {
  const Sample& s = sample("text1");
  const std::string block_magic = "\x31\x41\x59\x26\x53\x59";
  struct Case {
    std::string tail;
    bool ok;
  };
  const std::vector<Case> cases = {
      {"garbage after the stream\n", true},
      {std::string(4096, '\0'), true},                       // padding to a block
      {"BZh9" + std::string(20, 'x'), true},                 // a header but no magic: not a stream
      {"BZh9" + block_magic + "\1\2\3", true},               // 13 bytes: too short to be a stream
      {"BZh9" + block_magic + std::string(30, 'x'), false},  // starts a stream, which is bad
      {compress("tail", 9), true},  // a valid stream: decoded ("tail" appended)
  };
  for (const Case& c : cases) {
    std::string comp = s.comp + c.tail;
    Result<std::string> theirs = libarchive_decode(comp);
    EXPECT_EQ(theirs.ok(), c.ok) << c.tail.substr(0, 8) << " " << theirs.status().to_string();
    for (int threads : {0, 2}) {
      for (auto o : {parallel_always(), Bz2ReaderOptions()}) {
        Result<std::string> ours = decode(comp, threads, o);
        ASSERT_EQ(ours.ok(), c.ok) << c.tail.substr(0, 8) << " " << ours.status().to_string();
        if (ours.ok() && theirs.ok()) {
          EXPECT_TRUE(*ours == *theirs);
        }
      }
    }
  }
}

// --- lifetime and scheduling -----------------------------------------------------------------

void wait_for_no_live_states() {
  for (int i = 0; i < 1000 && internal::live_bz2_reader_states() != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(internal::live_bz2_reader_states(), 0);
}

// Destroying the reader while helpers decode must neither crash nor leak, and the input may be
// freed right after (ASan checks that no helper still reads it).
TEST(Bz2Lifetime, DestroyMidwayWhileHelpersRun) {
  const Sample& s = sample("mixed9");
  for (int threads : {0, 2, 4}) {
    for (int chunks : {0, 1, 2, 5}) {
      in_arena(threads, [&] {
        auto copy = std::make_unique<std::string>(s.comp);
        {
          Bz2ParallelReader r(bytes(*copy), "x.tar.bz2", parallel_always());
          for (int i = 0; i < chunks; ++i) ASSERT_TRUE(r.next().ok());
        }
        copy.reset();
      });
    }
  }
  wait_for_no_live_states();
}

// Readers as TBB tasks in a busy arena, as in the extract stage: all decode correctly, and no
// task body ever starts on a thread already inside one (next() never lets its thread pick up
// unrelated work, so per-thread scratch is never re-entered).
TEST(Bz2Lifetime, ConsumersInsideTbbTasksAreNeverReentered) {
  std::vector<const Sample*> inputs = {&sample("text1"),   &sample("text9"), &sample("mixed9"),
                                       &sample("random9"), &sample("text1"), &sample("small")};
  static thread_local bool inside = false;
  std::atomic<int> reentered{0};
  std::vector<int> ok(inputs.size(), 0);
  for (int threads : {1, 2, 4}) {
    tbb::task_arena arena(threads);
    arena.execute([&] {
      std::vector<size_t> idx(inputs.size());
      for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
      tbb::parallel_for_each(idx.begin(), idx.end(), [&](size_t i) {
        if (inside) reentered.fetch_add(1);
        inside = true;
        Bz2ParallelReader r(bytes(inputs[i]->comp), "pkg", parallel_always());
        Result<std::string> out = read_all(r);
        ok[i] = out.ok() && *out == inputs[i]->plain;
        inside = false;
      });
    });
    for (size_t i = 0; i < inputs.size(); ++i) EXPECT_TRUE(ok[i]) << threads << " " << i;
  }
  EXPECT_EQ(reentered.load(), 0);
  wait_for_no_live_states();
}

}  // namespace
}  // namespace mat::cache
