// cache/bz2_parallel.h: decodes an in-memory bzip2 file with its blocks decoded in parallel on
// oneTBB, the lbzip2 scheme, with libbz2 decoding every block. Internal to cache/.
//
// A bzip2 stream is "BZh1".."BZh9", then blocks, each starting with the 48-bit magic
// 0x314159265359 at any bit offset, then the 48-bit end-of-stream magic 0x177245385090, the
// 32-bit combined CRC and zero padding to a byte; streams may be concatenated. Blocks are
// independent, so the reader scans for the magics, decodes each block as a one-block stream of
// its own and hands the output back in order. What it accepts and rejects is exactly what
// libbz2 decoding the streams one after another accepts and rejects, with these rules around
// the streams (those of libarchive's bzip2 filter, which this replaces for .tar.bz2):
//   - the data must start with a stream: "BZh[1-9]" then a block or end-of-stream magic;
//   - after a stream, bytes that begin the same way (at least 14 bytes left, the smallest
//     stream) are decoded as the next stream and must be valid; any other trailing bytes are
//     ignored, as libarchive ignores them (`bzip2 -d` ignores them too, with a warning, unless
//     they start with "BZh[1-9]");
//   - a stream that ends before its end-of-stream marker and combined CRC is kCorrupt
//     (libarchive's filter silently returns what it has; the tar reader may then notice).
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "materializer/base/status.h"

namespace mat::cache {

namespace internal {

// A bit offset in the compressed data where a block magic (eos == false) or an end-of-stream
// magic (eos == true) occurs. The bit order is bzip2's: bit 0 is the top bit of byte 0.
struct Bz2Magic {
  int64_t bit = 0;
  bool eos = false;
};

// Every bit offset at which either 48-bit magic occurs in `data`, in increasing order, whether
// it is a real block boundary or a chance occurrence inside compressed data. Reads each byte
// about once; see bz2_parallel.cc for the speed. Exposed for tests and the benchmark.
std::vector<Bz2Magic> scan_bz2_magics(std::span<const unsigned char> data);

// Number of reader states alive, including those kept alive only by helper tasks that have
// not yet run. Tests use it to check that a destroyed reader's tasks finish and free it.
int64_t live_bz2_reader_states();

}  // namespace internal

struct Bz2ReaderOptions {
  // Decoded output buffered ahead of the consumer: helpers claim no new block while this much
  // is waiting. A single block can decode to ~46 MB (bzip2's run-length stage), so the bound
  // is approximate: it may be exceeded by the blocks in flight.
  int64_t max_buffered_bytes = 16 << 20;
  // The most output the whole file may decode to: next() fails with output_limit_error()
  // (default: kInvalidInput naming `where`) instead of handing out a byte past it, and no block
  // is decoded past it either, on the caller's thread or a helper's. So the memory held for
  // blocks decoded ahead stays within the limit too, whatever a crafted block expands to.
  int64_t max_output_bytes = std::numeric_limits<int64_t>::max();
  std::function<Status()> output_limit_error;
  // Blocks decoded or in flight ahead of the one the consumer needs; 0 means twice the current
  // arena's concurrency plus one, at most 16 (each block is ~1 MB of output: the bound per
  // reader stays the same on 64 cores).
  int max_blocks_ahead = 0;
  // Inputs smaller than this, and inputs in which the scan finds fewer than 2 blocks, are
  // decoded serially by libbz2 on the caller's thread: under a megabyte there are too few
  // blocks for helpers to pay off.
  int64_t min_parallel_bytes = 1 << 20;
  // Test only: called with the scanner's result before any block is decoded. Tests add false
  // boundaries (bit offsets inside a block) to check that they are survived. Removing real
  // magics is not supported.
  std::function<void(std::vector<internal::Bz2Magic>*)> candidate_hook;
};

// Decodes a complete in-memory bzip2 file (one or more concatenated streams) and hands the
// output back in order, in chunks of at most 1 MB.
//
// Parallelism: blocks are decoded by helper tasks enqueued on the caller's current TBB arena
// (tbb::this_task_arena::enqueue), at most max_concurrency() - 1 of them, so the caller's
// --jobs arena bounds the threads used. next() never waits on a TBB construct and never runs
// tasks other than its own reader's blocks (which it decodes inline on its own stack): it is
// safe to call from a TBB task that holds per-thread scratch. When the block it needs is held
// by a helper it decodes a later block itself, or sleeps on a condition variable until the
// helper finishes. With an arena of one thread no helper is enqueued and the caller decodes
// every block in order. A caller outside any arena gets the default arena's workers.
//
// Errors (from next(); sticky, every later call returns the same status):
//   kCorrupt   not a bzip2 stream, a block libbz2 rejects, a combined CRC mismatch, data that
//              ends before a stream's end-of-stream marker and CRC. The message names `where`
//              and the bit offset of the block or marker concerned (on the serial path, the
//              byte offset of the stream and how far libbz2 read). Output handed out before
//              the error is correct: it is a prefix of what libbz2 would produce.
//   kInternal  libbz2 refused to initialise (a bug).
// Out-of-memory surfaces as std::bad_alloc from next(), as elsewhere.
//
// Cost: one pass over the compressed bytes to find the magics (~5 GB/s), then each block is
// decoded once, at libbz2's speed (~1% slower than one libbz2 stream on one thread). A chance
// magic inside a block (about one per 17 TB of compressed data) costs one extra decode of that
// block; a block holding more than 8 (only in a crafted file) makes the reader finish serially
// from the start of the data, skipping the output already handed out. Memory: the input is not
// copied; output buffered ahead is bounded by Bz2ReaderOptions, plus up to 16 MB of chunks
// kept for reuse until the reader is destroyed.
//
// Thread safety: one thread at a time may call next() or destroy the reader. `data` must stay
// valid and unchanged until the reader is destroyed. The destructor may run while helpers are
// decoding: it cancels them and waits until none is still reading `data` (each checks between
// slices of at most a few milliseconds of work); helpers not yet started find the reader gone
// and return at once.
class Bz2ParallelReader {
 public:
  using Options = Bz2ReaderOptions;

  Bz2ParallelReader(std::span<const unsigned char> data, std::string where, Options options = {});
  ~Bz2ParallelReader();
  Bz2ParallelReader(const Bz2ParallelReader&) = delete;
  Bz2ParallelReader& operator=(const Bz2ParallelReader&) = delete;

  // The next piece of output, valid until the next call or destruction; an empty span means
  // the end of the data (every call after that returns an empty span too).
  Result<std::span<const char>> next();

  // Output bytes returned so far.
  int64_t bytes_out() const;
  // Bytes at the start of `data` that the reader has finished with: the caller may drop them
  // from memory (madvise) to keep a mapped archive's resident size bounded. A hint: the serial
  // fallback for crafted input reads again from the start, which still works on a mapping
  // whose pages were dropped (they fault back in).
  int64_t input_consumed() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mat::cache
