// The zstd read-ahead decoder (cache/zstd_readahead.h) against a plain ZSTD_decompressStream
// loop over the same bytes: same output, same success or failure, with the input handed over in
// blocks of varying size, small chunks and a helper thread (a two-thread arena). Input without
// the zstd magic number must come back unchanged.
#include <tbb/task_arena.h>
#include <zstd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

#include "cache/zstd_readahead.h"
#include "fuzz/fuzz_util.h"

namespace {

constexpr size_t kMaxOutput = size_t{64} << 20;

struct Decoded {
  std::string out;
  bool ok = true;
  bool capped = false;
};

// The reference: one ZSTD_decompressStream loop over the whole input (concatenated frames
// decoded in turn), failing on a decoder error or a frame cut short.
Decoded reference(std::string_view in) {
  Decoded d;
  static constexpr unsigned char kMagic[4] = {0x28, 0xb5, 0x2f, 0xfd};
  if (in.size() < 4 || std::memcmp(in.data(), kMagic, 4) != 0) {
    d.out.assign(in.substr(0, kMaxOutput));
    d.capped = in.size() > kMaxOutput;
    d.ok = !in.empty();  // an empty member is an error
    return d;
  }
  ZSTD_DCtx* dctx = ZSTD_createDCtx();
  ZSTD_inBuffer zin{in.data(), in.size(), 0};
  std::string buf(1 << 16, '\0');
  size_t last = 1;
  for (;;) {
    ZSTD_outBuffer zout{buf.data(), buf.size(), 0};
    size_t before = zin.pos;
    size_t ret = ZSTD_decompressStream(dctx, &zout, &zin);
    if (ZSTD_isError(ret)) {
      d.ok = false;
      break;
    }
    d.out.append(buf.data(), zout.pos);
    if (zin.pos != before || zout.pos > 0) last = ret;
    if (d.out.size() >= kMaxOutput) {
      d.capped = true;
      break;
    }
    if (zin.pos == zin.size && zout.pos < zout.size) {
      d.ok = last == 0;
      break;
    }
  }
  ZSTD_freeDCtx(dctx);
  return d;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mat;
  const std::string_view in = fuzz::as_text(data, size);
  // Block sizes cycle from the input's length. The first block holds the whole magic number
  // (4 bytes) when there is one: the reader decides zstd-or-raw on its first block, and a
  // magic number split over blocks is taught to it separately (branch zip-consistency).
  static constexpr size_t kSizes[] = {1, 7, 100, 4096, 70000};
  size_t pos = 0, turn = size % 5;
  // `alive` is held by the pull function, which the reader's shared state owns: once the state
  // is freed (when the last helper task holding it has run), only ours is left.
  auto alive = std::make_shared<int>(0);
  auto pull = [&, alive](const void** p, size_t* n) -> Result<bool> {
    if (pos == in.size()) return false;
    size_t want = pos == 0 ? std::max<size_t>(4, kSizes[turn % 5]) : kSizes[turn % 5];
    ++turn;
    *p = in.data() + pos;
    *n = std::min(want, in.size() - pos);
    pos += *n;
    return true;
  };
  cache::ZstdReadAheadOptions opt;
  opt.chunk_bytes = size % 2 ? 4096 : (1 << 20);
  opt.max_chunks_ahead = 1 + static_cast<int>(size % 3);
  Decoded got;
  static tbb::task_arena arena(2);
  arena.execute([&] {
    cache::ZstdReadAhead reader(std::move(pull), "in.tar.zst", opt);
    for (;;) {
      auto block = reader.next();
      if (!block.ok()) {
        MAT_FUZZ_CHECK(block.status().code() == Code::kCorrupt, block.status().to_string());
        got.ok = false;
        break;
      }
      if (block->empty()) break;
      got.out.append(block->data(), block->size());
      if (got.out.size() >= kMaxOutput) {
        got.capped = true;
        break;
      }
    }
  });
  // A helper may still be queued with the state: wait for it, so that LeakSanitizer (which
  // cannot see into TBB's task pools) does not report the state, and so that a state nobody
  // ever frees is reported as what it is.
  fuzz::wait_until([&] { return alive.use_count() == 1; },
                   "ZstdReadAhead's state still alive after its reader was destroyed");
  Decoded want = reference(in);
  const size_t common = std::min(got.out.size(), want.out.size());
  MAT_FUZZ_CHECK(got.out.compare(0, common, want.out, 0, common) == 0, "output differs");
  if (!got.capped && !want.capped) {
    MAT_FUZZ_CHECK(got.ok == want.ok,
                   got.ok ? "accepted what zstd refuses" : "refused valid input");
    if (got.ok) MAT_FUZZ_CHECK(got.out.size() == want.out.size(), "output lengths differ");
  }
  return 0;
}
