// The parallel bzip2 reader (cache/bz2_parallel.h) against itself run serially: the same input
// decoded by libbz2 stream after stream on this thread (min_parallel_bytes past the input) and
// block by block by helper tasks in a two-thread arena (min_parallel_bytes 0) must agree on
// every output byte and on success or failure; output before an error is a prefix of the
// other's. Seeds hold several concatenated streams, so the parallel path finds blocks to split.
#include <tbb/task_arena.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "cache/bz2_parallel.h"
#include "fuzz/fuzz_util.h"

namespace {

// A block can decode to ~46 MB: bound the output compared per input.
constexpr size_t kMaxOutput = size_t{64} << 20;

struct Decoded {
  std::string out;
  mat::Status status;
  bool capped = false;
};

Decoded decode(std::span<const unsigned char> in, const mat::cache::Bz2ReaderOptions& opt) {
  Decoded d;
  mat::cache::Bz2ParallelReader reader(in, "in.bz2", opt);
  for (;;) {
    auto block = reader.next();
    if (!block.ok()) {
      d.status = block.status();
      break;
    }
    if (block->empty()) break;
    d.out.append(block->data(), block->size());
    if (d.out.size() >= kMaxOutput) {
      d.capped = true;
      break;
    }
  }
  MAT_FUZZ_CHECK(reader.bytes_out() == static_cast<int64_t>(d.out.size()), "bytes_out");
  return d;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mat;
  const std::span<const unsigned char> in(data, size);
  cache::Bz2ReaderOptions serial;
  serial.min_parallel_bytes = INT64_MAX;
  Decoded a = decode(in, serial);

  cache::Bz2ReaderOptions parallel;
  parallel.min_parallel_bytes = 0;
  parallel.max_blocks_ahead = 1 + static_cast<int>(size % 3);
  parallel.max_buffered_bytes = 1 << 20;
  static tbb::task_arena arena(2);
  Decoded b;
  arena.execute([&] { b = decode(in, parallel); });

  // Helpers still queued hold the reader's state until they run: wait for them (LeakSanitizer
  // cannot see into TBB's task pools), and report a state that is never freed.
  fuzz::wait_until([] { return cache::internal::live_bz2_reader_states() == 0; },
                   "a Bz2ParallelReader's state still alive after the reader was destroyed");
  for (const Decoded* d : {&a, &b}) {
    MAT_FUZZ_CHECK(d->status.ok() || d->status.code() == Code::kCorrupt, d->status.to_string());
  }
  const size_t common = std::min(a.out.size(), b.out.size());
  MAT_FUZZ_CHECK(a.out.compare(0, common, b.out, 0, common) == 0,
                 "serial and parallel output differ");
  if (!a.capped && !b.capped) {
    MAT_FUZZ_CHECK(a.status.ok() == b.status.ok(),
                   "serial: " + a.status.to_string() + "; parallel: " + b.status.to_string());
    if (a.status.ok()) MAT_FUZZ_CHECK(a.out.size() == b.out.size(), "output lengths differ");
  }
  return 0;
}
