#include "cache/bz2_parallel.h"

#include <bzlib.h>
#include <tbb/task_arena.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <climits>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <new>
#include <optional>
#include <utility>

namespace mat::cache {
namespace {

using internal::Bz2Magic;
using Bytes = std::span<const unsigned char>;

constexpr uint64_t kBlockMagic = 0x314159265359;
constexpr uint64_t kEosMagic = 0x177245385090;
constexpr uint64_t kMask48 = (uint64_t{1} << 48) - 1;
// "BZh9", end-of-stream magic, combined CRC: libarchive's bidder wants this many bytes.
constexpr int64_t kMinStreamBytes = 14;
// Chance magics tolerated inside one block before the reader finishes serially. Real data has
// one per ~17 TB, so more than a few in one block means a crafted file; each costs a decode.
constexpr int kMaxFalseBoundaries = 8;
// Compressed bytes per BZ2_bzDecompress call (~2 ms of Huffman decoding), so a cancelled helper
// notices within a few milliseconds. The longest step that cannot be split, one block's
// inverse BWT, takes ~10 ms at 900 kB.
constexpr size_t kInputSlice = 64 << 10;
// Output is written into chunks of this size taken from a pool, and handed out one chunk per
// next(): no zero-filling, no copying when a block turns out larger than guessed, no fresh
// pages per block. A single growing buffer per block cost ~4% against plain libbz2 (perf: memset,
// memmove, page clearing); chunks brought the 1-thread case level with it.
constexpr size_t kChunkBytes = 256 << 10;
// Chunks kept for reuse beyond that (16 MB); a 46 MB block needs more, which are freed.
constexpr size_t kMaxPooledChunks = 64;
constexpr size_t kSerialChunk = 1 << 20;

std::atomic<int64_t> g_live_states{0};

// True if the 48-bit pattern `m` repeats with period k, i.e. bit i equals bit i + k.
constexpr bool periodic(uint64_t m, int k) { return (((m >> k) ^ m) & (kMask48 >> k)) == 0; }
constexpr bool periodic_below_8(uint64_t m) {
  for (int k = 1; k < 8; ++k) {
    if (periodic(m, k)) return true;
  }
  return false;
}
// decode_span() relies on this: see the argument there.
static_assert(!periodic_below_8(kEosMagic));

// Bits [bit, bit + n) of `d` as an integer, the first bit most significant; n <= 57. Bits past
// the end read as zero.
uint64_t bits_at(Bytes d, int64_t bit, int n) {
  const int64_t size = static_cast<int64_t>(d.size());
  const int64_t byte = bit >> 3;
  uint64_t w = 0;
  if (byte + 8 <= size) {
    for (int i = 0; i < 8; ++i) w = w << 8 | d[byte + i];
  } else {
    for (int i = 0; i < 8; ++i) w = w << 8 | (byte + i < size ? d[byte + i] : 0);
  }
  return (w << (bit & 7)) >> (64 - n);
}

// libarchive's bzip2 bidder: at least 14 bytes, "BZh[1-9]", then a block or end-of-stream magic.
bool starts_stream(Bytes d, int64_t pos) {
  if (static_cast<int64_t>(d.size()) - pos < kMinStreamBytes) return false;
  if (std::memcmp(d.data() + pos, "BZh", 3) != 0 || d[pos + 3] < '1' || d[pos + 3] > '9') {
    return false;
  }
  uint64_t magic = bits_at(d, (pos + 4) * 8, 48);
  return magic == kBlockMagic || magic == kEosMagic;
}

// --- scanning --------------------------------------------------------------------------------
//
// The scan samples the 16 bits at every byte offset j divisible by 4. A magic starting at bit
// 8b+s covers bytes b+1..b+4 whole, so exactly one sampled pair (j, j+1), j in [b+1, b+4], lies
// inside it, at one of 4 offsets. With 8 shifts and 2 magics, 64 of the 65536 pair values can
// be part of a match; only for those (one sample in 1000 on random bytes) are the 32 bit
// offsets b*8+s, b in [j-4, j), checked in full. Each bit offset belongs to exactly one j, so
// matches come out in order and once. ~0.5 cycle per byte: see BM_Bz2ScanMagics.
struct PairTable {
  std::array<uint64_t, 1024> words{};
  constexpr bool has(uint32_t v) const { return (words[v >> 6] >> (v & 63)) & 1; }
};

constexpr PairTable make_pair_table() {
  PairTable t;
  for (uint64_t m : {kBlockMagic, kEosMagic}) {
    for (int s = 0; s < 8; ++s) {
      for (int d = 1; d <= 4; ++d) {
        int first = 8 * d - s;  // bit of the magic at which byte b+d starts
        auto v = static_cast<uint32_t>((m >> (48 - first - 16)) & 0xffff);
        t.words[v >> 6] |= uint64_t{1} << (v & 63);
      }
    }
  }
  return t;
}

constexpr PairTable kPairTable = make_pair_table();

void check_sample(Bytes d, int64_t j, std::vector<Bz2Magic>* out) {
  const int64_t nbits = static_cast<int64_t>(d.size()) * 8;
  for (int64_t bit = (j - 4) * 8; bit < j * 8 && bit + 48 <= nbits; ++bit) {
    uint64_t w = bits_at(d, bit, 48);
    if (w == kBlockMagic) out->push_back({bit, false});
    if (w == kEosMagic) out->push_back({bit, true});
  }
}

// --- decoding one span -----------------------------------------------------------------------

using Chunk = std::unique_ptr<char[]>;

// Output chunks for reuse, shared by the consumer and the helpers of one reader.
class ChunkPool {
 public:
  Chunk get() {
    {
      std::lock_guard lock(mu_);
      if (!free_.empty()) {
        Chunk c = std::move(free_.back());
        free_.pop_back();
        return c;
      }
    }
    return std::make_unique_for_overwrite<char[]>(kChunkBytes);
  }
  void clear() {
    std::lock_guard lock(mu_);
    free_.clear();
  }
  void put(std::vector<Chunk>* chunks) {
    std::lock_guard lock(mu_);
    for (Chunk& c : *chunks) {
      if (free_.size() < kMaxPooledChunks) free_.push_back(std::move(c));
    }
    chunks->clear();
  }

 private:
  std::mutex mu_;
  std::vector<Chunk> free_;  // GUARDED_BY(mu_)
};

// The outcome of decoding the bits between two candidate magics as a block.
struct Decoded {
  enum Kind : uint8_t {
    kNone,       // no span: an end-of-stream candidate, or the last candidate
    kOk,         // `out` is the block's output
    kFailed,     // libbz2 rejected the span; see bz_code and past_end
    kCancelled,  // the reader went away
    kNoMemory,   // a helper ran out of memory; the consumer retries inline
    kTooBig,     // the span decoded to more than Options::max_output_bytes: stopped there
  };
  Kind kind = kNone;
  int bz_code = BZ_OK;    // kFailed: libbz2's return (BZ_OK: it wanted more input)
  bool past_end = false;  // kFailed: libbz2 had read beyond the span, so a longer one may pass
  int level = 0;          // the "BZh" level the span was decoded under
  uint32_t crc = 0;       // the block's stored CRC
  // kOk: the output, `size` bytes in chunks of kChunkBytes (the last partial, or even empty).
  std::vector<Chunk> chunks;
  int64_t size = 0;
};

// A decompressing bz_stream; libbz2 allocates per stream (64 kB, plus 400 kB per level once the
// header is read), which costs ~1% of a block's decode.
class BzDecompressor {
 public:
  BzDecompressor() {
    init_code_ = BZ2_bzDecompressInit(&s_, 0, 0);
    if (init_code_ == BZ_MEM_ERROR) throw std::bad_alloc();
  }
  ~BzDecompressor() {
    if (init_code_ == BZ_OK) BZ2_bzDecompressEnd(&s_);
  }
  BzDecompressor(const BzDecompressor&) = delete;
  BzDecompressor& operator=(const BzDecompressor&) = delete;

  int init_code() const { return init_code_; }
  bz_stream* get() { return &s_; }
  int64_t total_in() const {
    return static_cast<int64_t>(uint64_t{s_.total_in_hi32} << 32 | s_.total_in_lo32);
  }
  int64_t total_out() const {
    return static_cast<int64_t>(uint64_t{s_.total_out_hi32} << 32 | s_.total_out_lo32);
  }

 private:
  bz_stream s_{};
  int init_code_;
};

// Appends bits to a byte buffer, most significant first. Used for the ~90 bits around a span.
struct BitWriter {
  unsigned char* p;
  uint32_t acc = 0;
  int n = 0;

  void put(uint64_t v, int bits) {
    for (int i = bits - 1; i >= 0; --i) {
      acc = acc << 1 | static_cast<uint32_t>((v >> i) & 1);
      if (++n == 8) {
        *p++ = static_cast<unsigned char>(acc);
        acc = 0;
        n = 0;
      }
    }
  }
  void flush() {
    if (n > 0) *p++ = static_cast<unsigned char>(acc << (8 - n));
    n = 0;
  }
};

// The one-block stream for bits [begin, end) of `d`, produced piece by piece so no copy of the
// span is held: "BZh<level>", those bits moved to a byte boundary, the end-of-stream magic,
// `crc` as the combined CRC (for one block it equals the block's CRC), zero padding to a byte.
class SpanStream {
 public:
  SpanStream(Bytes d, int64_t begin, int64_t end, int level, uint32_t crc)
      : src_(d.data() + (begin >> 3)),
        shift_(static_cast<int>(begin & 7)),
        whole_((end - begin) / 8) {
    std::memcpy(head_, "BZh", 3);
    head_[3] = static_cast<unsigned char>('0' + level);
    BitWriter w{tail_};
    const auto rest = static_cast<int>(end - begin - whole_ * 8);
    if (rest > 0) w.put(bits_at(d, begin + whole_ * 8, rest), rest);
    w.put(kEosMagic, 48);
    w.put(crc, 32);
    w.flush();
    tail_size_ = w.p - tail_;
  }

  bool done() const { return pos_ == 4 + whole_ + tail_size_; }

  // Writes the next bytes, at most `cap`, to `out`; returns how many.
  size_t read(unsigned char* out, size_t cap) {
    size_t n = 0;
    while (n < cap && !done()) {
      const int64_t want = static_cast<int64_t>(cap - n);
      int64_t k;
      if (pos_ < 4) {
        k = std::min<int64_t>(want, 4 - pos_);
        std::memcpy(out + n, head_ + pos_, static_cast<size_t>(k));
      } else if (pos_ - 4 < whole_) {
        k = std::min(want, whole_ - (pos_ - 4));
        shift_copy(out + n, src_ + (pos_ - 4), k);
      } else {
        const int64_t t = pos_ - 4 - whole_;
        k = std::min(want, tail_size_ - t);
        std::memcpy(out + n, tail_ + t, static_cast<size_t>(k));
      }
      n += static_cast<size_t>(k);
      pos_ += k;
    }
    return n;
  }

 private:
  // out[t] = the byte starting `shift_` bits into src[t]. Span byte t straddles source bytes t
  // and t+1, both holding bits before `end`, so src[k] is readable when shift_ > 0.
  void shift_copy(unsigned char* out, const unsigned char* src, int64_t k) const {
    if (shift_ == 0) {
      std::memcpy(out, src, static_cast<size_t>(k));
      return;
    }
    int64_t t = 0;
    for (; t + 8 <= k; t += 8) {  // 8 bytes at a time: ~10x the byte loop
      uint64_t w;
      std::memcpy(&w, src + t, 8);
      w = __builtin_bswap64(w) << shift_ | src[t + 8] >> (8 - shift_);
      w = __builtin_bswap64(w);
      std::memcpy(out + t, &w, 8);
    }
    for (; t < k; ++t) {
      out[t] = static_cast<unsigned char>(src[t] << shift_ | src[t + 1] >> (8 - shift_));
    }
  }

  const unsigned char* src_;  // the byte holding bit `begin`
  const int shift_;           // begin % 8
  const int64_t whole_;       // whole bytes of span bits
  unsigned char head_[4];
  unsigned char tail_[16];  // the last < 8 span bits, the magic, the CRC, padding: <= 12 bytes
  int64_t tail_size_ = 0;
  int64_t pos_ = 0;
};

// Decodes bits [begin, end) of `d`, which start with a block magic, as a one-block stream.
//
// Why success means [begin, end) is exactly the block that libbz2, reading the whole file,
// would decode at `begin` (when `begin` is a real block start). The synthetic stream agrees
// with the file on every bit before `end`, and libbz2 is a deterministic reader of bits, so
// both decode the same until `end`. Let e be where the block really ends.
//   - e == end: the next 80 bits are our marker and CRC; libbz2 finishes having consumed the
//     whole input.
//   - e > end: libbz2 reads our marker as block data. To succeed it would have to finish the
//     block inside our 80+pad bits and still find the 48-bit end-of-stream magic and 32 bits
//     after it, i.e. end after k in [1, 7] bits and read the magic shifted by k: that needs the
//     magic to repeat with period k, which it does not (static_assert above).
//   - e < end: libbz2 reads the file's own bits at e. For it to end exactly at our last byte
//     (checked: avail_in == 0), e must be within 7 bits of `end`, the same impossibility.
// So the caller, trying end = each following candidate in turn (every real magic is a
// candidate, and the file has one at e if libbz2 would go on), succeeds first at end == e.
// When libbz2 fails having read only bits before `end`, every longer span fails the same way:
// past_end is false and the caller stops extending.
// Decoding stops with kTooBig once the output passes `max_out` bytes (a block can decode to
// ~46 MB; no span is held in memory past the archive's whole allowance).
Decoded decode_span(Bytes d, int64_t begin, int64_t end, int level, const std::atomic<bool>& cancel,
                    ChunkPool& pool, int64_t max_out) {
  Decoded r;
  r.level = level;
  r.crc = static_cast<uint32_t>(bits_at(d, begin + 48, 32));
  SpanStream in(d, begin, end, level, r.crc);
  std::vector<unsigned char> buf(kInputSlice);
  BzDecompressor bz;
  if (bz.init_code() != BZ_OK) {
    r.kind = Decoded::kFailed;
    r.bz_code = bz.init_code();
    return r;
  }
  bz_stream* s = bz.get();
  for (;;) {
    if (cancel.load(std::memory_order_relaxed)) {
      r.kind = Decoded::kCancelled;
      pool.put(&r.chunks);
      return r;
    }
    if (s->avail_in == 0 && !in.done()) {
      s->next_in = reinterpret_cast<char*>(buf.data());
      s->avail_in = static_cast<unsigned>(in.read(buf.data(), buf.size()));
    }
    if (s->avail_out == 0) {
      r.chunks.push_back(pool.get());
      s->next_out = r.chunks.back().get();
      s->avail_out = static_cast<unsigned>(kChunkBytes);
    }
    int rc = BZ2_bzDecompress(s);
    if (bz.total_out() > max_out) {
      r.kind = Decoded::kTooBig;
      pool.put(&r.chunks);
      return r;
    }
    const bool all_fed = in.done() && s->avail_in == 0;
    if (rc == BZ_STREAM_END && all_fed) {
      r.kind = Decoded::kOk;
      r.size = bz.total_out();
      return r;
    }
    if (rc == BZ_OK && !(all_fed && s->avail_out > 0)) continue;
    // An error, an early end, or libbz2 starved for input.
    r.kind = Decoded::kFailed;
    r.bz_code = rc;
    r.past_end = bz.total_in() * 8 > 32 + (end - begin);
    pool.put(&r.chunks);
    return r;
  }
}

// --- serial decoding -------------------------------------------------------------------------

// libbz2 over the whole input, stream after stream, with the stream rules of bz2_parallel.h.
// Used for small inputs, and to finish a crafted file; `skip` output bytes are dropped first.
class SerialDecoder {
 public:
  SerialDecoder(Bytes data, const std::string& where, int64_t skip)
      : d_(data), where_(where), skip_(skip), buf_(kSerialChunk) {}

  Result<std::span<const char>> next() {
    for (;;) {
      if (!bz_) {
        if (streams_ > 0 && pos_ == size()) return std::span<const char>();
        // Trailing bytes that do not start a stream are ignored, as libarchive does.
        if (!starts_stream(d_, pos_)) {
          if (streams_ > 0) return std::span<const char>();
          return Corrupt(where_ + ": not a bzip2 stream (no \"BZh1\"..\"BZh9\" header)");
        }
        bz_.emplace();
        if (bz_->init_code() != BZ_OK) {
          return Internal(where_ + ": BZ2_bzDecompressInit failed (" +
                          std::to_string(bz_->init_code()) + ")");
        }
        stream_start_ = pos_;
        ++streams_;
      }
      bz_stream* s = bz_->get();
      if (s->avail_in == 0) {
        int64_t n = std::min<int64_t>(size() - pos_, INT_MAX);
        s->next_in = const_cast<char*>(reinterpret_cast<const char*>(d_.data() + pos_));
        s->avail_in = static_cast<unsigned>(n);
      }
      const unsigned before = s->avail_in;
      s->next_out = buf_.data();
      s->avail_out = static_cast<unsigned>(buf_.size());
      int rc = BZ2_bzDecompress(s);
      pos_ += before - s->avail_in;
      const int64_t produced = static_cast<int64_t>(buf_.size() - s->avail_out);
      if (rc == BZ_STREAM_END) {
        bz_.reset();
      } else if (rc != BZ_OK) {
        return Corrupt(where_ + ": bzip2 stream at byte " + std::to_string(stream_start_) +
                       " is corrupt: libbz2 error " + std::to_string(rc) + " having read to byte " +
                       std::to_string(pos_));
      } else if (s->avail_out > 0 && s->avail_in == 0 && pos_ == size()) {
        return Corrupt(where_ + ": bzip2 data ends inside the stream at byte " +
                       std::to_string(stream_start_) + " (truncated)");
      }
      if (produced <= skip_) {
        skip_ -= produced;
        continue;
      }
      std::span<const char> out(buf_.data() + skip_, static_cast<size_t>(produced - skip_));
      skip_ = 0;
      return out;
    }
  }

 private:
  int64_t size() const { return static_cast<int64_t>(d_.size()); }

  Bytes d_;
  const std::string& where_;
  int64_t skip_;
  std::vector<char> buf_;
  std::optional<BzDecompressor> bz_;  // the stream being decoded
  int64_t pos_ = 0;                   // next input byte to feed
  int64_t stream_start_ = 0;
  int streams_ = 0;
};

// --- parallel decoding -----------------------------------------------------------------------

// Span k runs from candidate magic k to candidate k+1.
struct Slot {
  bool done = false;       // `result` is ready and not yet taken
  bool abandoned = false;  // behind the consumer: whoever finishes it drops the result
  Decoded result;
};

// What the reader and its helper tasks share. Helpers hold it through a shared_ptr, so it
// outlives a reader destroyed before they ran; they touch `data` only while counted in
// `active`, which the reader's destructor waits to see at zero.
struct Shared {
  Shared(Bytes d, std::vector<Bz2Magic> m) : data(d), magics(std::move(m)), slots(magics.size()) {
    g_live_states.fetch_add(1);
  }
  ~Shared() { g_live_states.fetch_sub(1); }

  int64_t size() const { return static_cast<int64_t>(magics.size()); }

  // Helpers may claim k: inside the window and under the byte budget.
  bool claimable(int64_t k) const {
    return k < size() && k < window_begin.load() + max_ahead && buffered.load() < max_bytes;
  }
  // Claims the next span in order, if claimable.
  std::optional<int64_t> try_claim() {
    int64_t k = next_claim.load();
    do {
      if (!claimable(k)) return std::nullopt;
    } while (!next_claim.compare_exchange_weak(k, k + 1));
    return k;
  }
  // Claims span k whatever the window (the consumer needs it); false if someone has it.
  bool claim(int64_t k) {
    int64_t c = next_claim.load();
    while (c <= k) {
      if (next_claim.compare_exchange_weak(c, k + 1)) return true;
    }
    return false;
  }
  bool try_register_helper() {
    int h = helpers.load();
    do {
      if (h >= max_helpers) return false;
    } while (!helpers.compare_exchange_weak(h, h + 1));
    return true;
  }

  Decoded run(int64_t k) {
    if (magics[k].eos || k + 1 >= size()) return Decoded();
    return decode_span(data, magics[k].bit, magics[k + 1].bit, levels[k], cancelled, pool,
                       max_output);
  }
  // For helpers: an exception must not escape an enqueued task.
  Decoded run_guarded(int64_t k) {
    try {
      return run(k);
    } catch (const std::bad_alloc&) {
      Decoded r;
      r.kind = Decoded::kNoMemory;
      return r;
    }
  }
  void complete(int64_t k, Decoded r) {
    std::vector<Chunk> dropped;
    {
      std::lock_guard lock(mu);
      Slot& slot = slots[k];
      if (slot.abandoned) {
        dropped = std::move(r.chunks);
      } else {
        buffered.fetch_add(r.size);
        slot.result = std::move(r);
        slot.done = true;
      }
    }
    cv.notify_all();
    pool.put(&dropped);
  }
  // REQUIRES: mu held, slots[k].done.
  Decoded take_locked(int64_t k) {
    Slot& slot = slots[k];
    slot.done = false;
    buffered.fetch_sub(slot.result.size);
    return std::move(slot.result);
  }

  const Bytes data;
  const std::vector<Bz2Magic> magics;
  std::vector<int8_t> levels;  // per candidate: the level of the stream it seems to be in
  int64_t max_ahead = 1;
  int64_t max_bytes = 0;
  int64_t max_output = 0;  // Options::max_output_bytes
  int max_helpers = 0;

  std::atomic<int64_t> next_claim{0};    // spans below it are claimed
  std::atomic<int64_t> window_begin{0};  // the candidate the consumer is at
  std::atomic<int64_t> buffered{0};      // output bytes in done slots
  std::atomic<int> helpers{0};           // helper tasks enqueued or running
  std::atomic<bool> cancelled{false};

  ChunkPool pool;
  std::mutex mu;
  std::condition_variable cv;  // a slot is done; a helper left
  std::vector<Slot> slots;     // GUARDED_BY(mu)
  int active = 0;              // GUARDED_BY(mu): helpers that may read `data`
};

void helper_main(const std::shared_ptr<Shared>& s) {
  {
    std::lock_guard lock(s->mu);
    if (s->cancelled.load()) {
      s->helpers.fetch_sub(1);
      return;
    }
    ++s->active;
  }
  for (;;) {
    while (!s->cancelled.load()) {
      std::optional<int64_t> k = s->try_claim();
      if (!k) break;
      s->complete(*k, s->run_guarded(*k));
    }
    s->helpers.fetch_sub(1);
    // The consumer may have opened the window after our last failed claim and, counting this
    // helper as registered, not enqueued another: look once more after unregistering.
    if (s->cancelled.load() || !s->claimable(s->next_claim.load()) || !s->try_register_helper()) {
      break;
    }
  }
  {
    std::lock_guard lock(s->mu);
    --s->active;
  }
  s->cv.notify_all();
}

// Levels per candidate, following stream headers that sit where an end-of-stream candidate says
// the next stream starts. A guess for speculative decodes; the consumer checks each block's
// level against the stream it is really in.
std::vector<int8_t> guess_levels(Bytes d, const std::vector<Bz2Magic>& magics) {
  std::vector<int8_t> levels(magics.size());
  int8_t level = starts_stream(d, 0) ? static_cast<int8_t>(d[3] - '0') : 9;
  for (size_t k = 0; k < magics.size(); ++k) {
    levels[k] = level;
    if (!magics[k].eos) continue;
    int64_t header = (magics[k].bit + 80 + 7) / 8;
    if (k + 1 < magics.size() && magics[k + 1].bit == (header + 4) * 8 &&
        starts_stream(d, header)) {
      level = static_cast<int8_t>(d[header + 3] - '0');
    }
  }
  return levels;
}

std::string bit_place(int64_t bit) {
  return "bit " + std::to_string(bit) + " (byte " + std::to_string(bit / 8) + ")";
}

}  // namespace

namespace internal {

std::vector<Bz2Magic> scan_bz2_magics(Bytes d) {
  std::vector<Bz2Magic> out;
  const auto n = static_cast<int64_t>(d.size());
  const unsigned char* p = d.data();
  for (int64_t j = 4; j + 1 < n; j += 4) {
    if (kPairTable.has(uint32_t{p[j]} << 8 | p[j + 1])) check_sample(d, j, &out);
  }
  return out;
}

int64_t live_bz2_reader_states() { return g_live_states.load(); }

}  // namespace internal

// The consumer: walks the chain of real block boundaries in order, taking each block's output
// from its slot (or decoding it inline), extending spans over chance magics, and checking the
// stream structure and combined CRCs.
class Bz2ParallelReader::Impl {
 public:
  Impl(Bytes data, std::string where, Options options)
      : data_(data), where_(std::move(where)), options_(std::move(options)) {}

  ~Impl() {
    if (!s_) return;
    std::unique_lock lock(s_->mu);
    s_->cancelled.store(true);
    s_->cv.wait(lock, [&] { return s_->active == 0; });
    // Helpers still queued keep the shared state until they run: free the decoded blocks and
    // the pooled chunks now.
    for (Slot& slot : s_->slots) slot.result = Decoded();
    s_->buffered.store(0);
    lock.unlock();
    s_->pool.clear();
  }

  Result<std::span<const char>> next() {
    if (!failed_.ok()) return failed_;
    Result<std::span<const char>> r = next_inner();
    if (r.ok() && bytes_out_ + static_cast<int64_t>(r->size()) > options_.max_output_bytes) {
      r = output_limit_error();
    }
    if (!r.ok()) {
      failed_ = r.status();
      if (s_) s_->cancelled.store(true);
      return r;
    }
    bytes_out_ += static_cast<int64_t>(r->size());
    return r;
  }

  int64_t bytes_out() const { return bytes_out_; }
  int64_t input_consumed() const {
    if (!started_ || serial_ || !s_) return 0;
    if (done_ || at_ >= s_->size()) return size();
    return s_->magics[at_].bit / 8;
  }

 private:
  Result<std::span<const char>> next_inner();
  void start();
  Result<bool> open_stream();
  Status close_stream();
  // Decodes the block at candidate at_ into current_ and moves at_ past it. False when the
  // block holds too many chance magics and the reader must finish serially.
  Result<bool> take_block();
  // The next piece of current_, if any is left.
  std::optional<std::span<const char>> next_chunk();
  Decoded obtain(int64_t k);
  void advance_window(int64_t to);
  void spawn_helpers();
  Status block_error(const Decoded& r) const;
  Status output_limit_error() const {
    if (options_.output_limit_error) return options_.output_limit_error();
    return InvalidInput(where_ + ": bzip2 data decodes to more than " +
                        std::to_string(options_.max_output_bytes) + " bytes");
  }
  int64_t size() const { return static_cast<int64_t>(data_.size()); }

  const Bytes data_;
  const std::string where_;
  const Options options_;
  Status failed_;
  int64_t bytes_out_ = 0;
  bool started_ = false;
  std::optional<SerialDecoder> serial_;  // set: the serial path is in charge
  std::shared_ptr<Shared> s_;

  // The chain, in the parallel path.
  int64_t at_ = 0;      // candidate index of the next block or end-of-stream marker
  int64_t header_ = 0;  // byte of the next stream header, when !in_stream_
  bool in_stream_ = false;
  bool done_ = false;
  int streams_ = 0;
  int level_ = 9;
  uint32_t combined_ = 0;     // combined CRC of the stream's blocks so far
  Decoded current_;           // the block being handed out
  size_t current_chunk_ = 0;  // its next chunk
};

void Bz2ParallelReader::Impl::start() {
  started_ = true;
  if (size() < options_.min_parallel_bytes) {
    serial_.emplace(data_, where_, 0);
    return;
  }
  std::vector<Bz2Magic> magics = internal::scan_bz2_magics(data_);
  if (options_.candidate_hook) {
    options_.candidate_hook(&magics);
    std::sort(magics.begin(), magics.end(),
              [](const Bz2Magic& a, const Bz2Magic& b) { return a.bit < b.bit; });
    magics.erase(std::unique(magics.begin(), magics.end(),
                             [](const Bz2Magic& a, const Bz2Magic& b) { return a.bit == b.bit; }),
                 magics.end());
  }
  if (std::count_if(magics.begin(), magics.end(), [](const Bz2Magic& m) { return !m.eos; }) < 2) {
    serial_.emplace(data_, where_, 0);
    return;
  }
  std::vector<int8_t> levels = guess_levels(data_, magics);
  s_ = std::make_shared<Shared>(data_, std::move(magics));
  s_->levels = std::move(levels);
  const int concurrency = std::max(1, tbb::this_task_arena::max_concurrency());
  s_->max_helpers = concurrency - 1;
  s_->max_ahead =
      options_.max_blocks_ahead > 0 ? options_.max_blocks_ahead : std::min(2 * concurrency + 1, 16);
  s_->max_bytes = options_.max_buffered_bytes;
  s_->max_output = options_.max_output_bytes;
}

Result<std::span<const char>> Bz2ParallelReader::Impl::next_inner() {
  if (!started_) start();
  if (serial_) return serial_->next();
  for (;;) {
    if (std::optional<std::span<const char>> chunk = next_chunk()) return *chunk;
    if (s_) s_->pool.put(&current_.chunks);
    if (done_) return std::span<const char>();
    if (!in_stream_) {
      MAT_ASSIGN_OR_RETURN(bool more, open_stream());
      if (!more) done_ = true;
      continue;
    }
    const int64_t bit = s_->magics[at_].bit;
    const uint64_t magic = bits_at(data_, bit, 48);
    if (magic == kEosMagic) {
      MAT_RETURN_IF_ERROR(close_stream());
      continue;
    }
    if (magic != kBlockMagic) {
      return Internal(where_ + ": bzip2 reader lost its place at " + bit_place(bit));
    }
    MAT_ASSIGN_OR_RETURN(bool decoded, take_block());
    if (!decoded) {
      s_->cancelled.store(true);
      serial_.emplace(data_, where_, bytes_out_);
      return serial_->next();
    }
  }
}

std::optional<std::span<const char>> Bz2ParallelReader::Impl::next_chunk() {
  while (current_chunk_ < current_.chunks.size()) {
    const auto offset = static_cast<int64_t>(current_chunk_ * kChunkBytes);
    const int64_t n = std::min(static_cast<int64_t>(kChunkBytes), current_.size - offset);
    const char* p = current_.chunks[current_chunk_++].get();
    if (n > 0) return std::span<const char>(p, static_cast<size_t>(n));
  }
  return std::nullopt;
}

// Starts the stream at header_; false at the end of the data.
Result<bool> Bz2ParallelReader::Impl::open_stream() {
  if (streams_ > 0 && header_ == size()) return false;
  if (!starts_stream(data_, header_)) {
    // Trailing bytes that do not start a stream are ignored, as libarchive does.
    if (streams_ > 0) return false;
    return Corrupt(where_ + ": not a bzip2 stream (no \"BZh1\"..\"BZh9\" header)");
  }
  level_ = data_[header_ + 3] - '0';
  combined_ = 0;
  ++streams_;
  const int64_t bit = (header_ + 4) * 8;
  auto it = std::lower_bound(s_->magics.begin(), s_->magics.end(), bit,
                             [](const Bz2Magic& m, int64_t b) { return m.bit < b; });
  if (it == s_->magics.end() || it->bit != bit) {
    return Internal(where_ + ": bzip2 scan missed the magic at " + bit_place(bit));
  }
  advance_window(it - s_->magics.begin());
  in_stream_ = true;
  return true;
}

Status Bz2ParallelReader::Impl::close_stream() {
  const int64_t bit = s_->magics[at_].bit;
  if (bit + 80 > size() * 8) {
    return Corrupt(where_ + ": bzip2 data ends inside the end-of-stream marker at " +
                   bit_place(bit));
  }
  const auto stored = static_cast<uint32_t>(bits_at(data_, bit + 48, 32));
  if (stored != combined_) {
    return Corrupt(where_ + ": bzip2 combined CRC mismatch at the end-of-stream marker at " +
                   bit_place(bit) + ": stored " + std::to_string(stored) + ", blocks give " +
                   std::to_string(combined_));
  }
  header_ = (bit + 80 + 7) / 8;
  in_stream_ = false;
  return Status::Ok();
}

Result<bool> Bz2ParallelReader::Impl::take_block() {
  const int64_t i = at_;
  const int64_t begin = s_->magics[i].bit;
  if (i + 1 >= s_->size()) {
    return Corrupt(where_ + ": bzip2 data ends inside the block at " + bit_place(begin) +
                   " (truncated: no end-of-stream marker follows)");
  }
  Decoded r = obtain(i);
  if (r.kind == Decoded::kNoMemory || r.level != level_) {
    s_->pool.put(&r.chunks);
    r = decode_span(data_, begin, s_->magics[i + 1].bit, level_, s_->cancelled, s_->pool,
                    options_.max_output_bytes);
  }
  // A failure past the span's end may be a chance magic cutting the block short: retry up to
  // the following candidates, dropping the false boundary (whatever was decoded from it is
  // discarded by advance_window). decode_span() says why the first success is the real block.
  int64_t j = i + 1;
  for (int extended = 0; r.kind != Decoded::kOk; ++extended) {
    // This block alone decodes past the limit (extending the span only adds output).
    if (r.kind == Decoded::kTooBig) return output_limit_error();
    if (r.kind != Decoded::kFailed || !r.past_end || j + 1 >= s_->size()) return block_error(r);
    if (extended == kMaxFalseBoundaries) return false;
    ++j;
    r = decode_span(data_, begin, s_->magics[j].bit, level_, s_->cancelled, s_->pool,
                    options_.max_output_bytes);
  }
  combined_ = (combined_ << 1 | combined_ >> 31) ^ r.crc;
  current_ = std::move(r);
  current_chunk_ = 0;
  advance_window(j);
  return true;
}

Status Bz2ParallelReader::Impl::block_error(const Decoded& r) const {
  const std::string place = where_ + ": bzip2 block at " + bit_place(s_->magics[at_].bit);
  switch (r.kind == Decoded::kFailed ? r.bz_code : BZ_SEQUENCE_ERROR) {
    case BZ_DATA_ERROR:
    case BZ_DATA_ERROR_MAGIC:
      return Corrupt(place + " is corrupt (libbz2: bad data or CRC)");
    case BZ_STREAM_END:
      return Corrupt(place + " is corrupt (libbz2: ends early)");
    case BZ_OK:
    case BZ_UNEXPECTED_EOF:
      return Corrupt(place + " is cut off: the data is truncated");
    default:
      return Internal(place + ": libbz2 error " + std::to_string(r.bz_code) + " (kind " +
                      std::to_string(r.kind) + ")");
  }
}

// Span k's result: taken from its slot, decoded inline if nobody claimed it, or waited for.
Decoded Bz2ParallelReader::Impl::obtain(int64_t k) {
  Shared& s = *s_;
  if (s.claim(k)) return s.run(k);
  for (;;) {
    {
      std::lock_guard lock(s.mu);
      if (s.slots[k].done) return s.take_locked(k);
    }
    // A helper is on it: decode a later span meanwhile, if the window allows.
    if (std::optional<int64_t> later = s.try_claim()) {
      s.complete(*later, s.run_guarded(*later));
      continue;
    }
    std::unique_lock lock(s.mu);
    s.cv.wait(lock, [&] { return s.slots[k].done; });
    return s.take_locked(k);
  }
}

// Moves the consumer to candidate `to`, freeing what was decoded for the candidates before it
// (blocks that started at a chance magic).
void Bz2ParallelReader::Impl::advance_window(int64_t to) {
  Shared& s = *s_;
  std::vector<Chunk> dropped;  // pooled outside the lock
  {
    std::lock_guard lock(s.mu);
    // Nobody may claim a span behind the consumer from now on; those claimed before and still
    // running are marked, and complete() drops them (under this lock, so none slips through).
    int64_t claimed = s.next_claim.load();
    while (claimed < to && !s.next_claim.compare_exchange_weak(claimed, to)) {
    }
    for (int64_t k = s.window_begin.load(); k < to; ++k) {
      Slot& slot = s.slots[k];
      if (slot.done) {
        for (Chunk& c : s.take_locked(k).chunks) dropped.push_back(std::move(c));
      } else if (k < claimed) {
        slot.abandoned = true;
      }
    }
    s.window_begin.store(to);
  }
  s.pool.put(&dropped);
  at_ = to;
  spawn_helpers();
}

void Bz2ParallelReader::Impl::spawn_helpers() {
  Shared& s = *s_;
  int64_t open = std::min(s.window_begin.load() + s.max_ahead, s.size()) - s.next_claim.load();
  for (; open > 0 && s.claimable(s.next_claim.load()) && s.try_register_helper(); --open) {
    try {
      tbb::this_task_arena::enqueue([shared = s_] { helper_main(shared); });
    } catch (...) {
      s.helpers.fetch_sub(1);
      throw;
    }
  }
}

Bz2ParallelReader::Bz2ParallelReader(std::span<const unsigned char> data, std::string where,
                                     Options options)
    : impl_(std::make_unique<Impl>(data, std::move(where), std::move(options))) {}

Bz2ParallelReader::~Bz2ParallelReader() = default;

Result<std::span<const char>> Bz2ParallelReader::next() { return impl_->next(); }

int64_t Bz2ParallelReader::bytes_out() const { return impl_->bytes_out(); }
int64_t Bz2ParallelReader::input_consumed() const { return impl_->input_consumed(); }

}  // namespace mat::cache
