// The zip reader under wheels and .conda outer zips (cache/zip_reader.h): libzip's central
// directory, then every member read to its end (ISA-L inflate, stored members, libzip's other
// methods). A member never yields more than its declared size (the "sizes that lie" check).
#include <cstddef>
#include <cstdint>

#include "cache/zip_reader.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mat;
  using cache::ZipReader;
  static cache::ZipScratch scratch;
  // Many central-directory entries may point at one deflate stream: bound the work per input.
  constexpr int64_t kMaxOutput = int64_t{64} << 20;
  const std::string path = fuzz::scratch_file("in.zip", fuzz::as_text(data, size));
  auto zip = ZipReader::open_file(path, "in.zip");
  if (!zip.ok()) {
    MAT_FUZZ_CHECK(zip.status().code() == Code::kCorrupt, zip.status().to_string());
    return 0;
  }
  int64_t total = 0;
  for (size_t i = 0; i < (*zip)->members() && total < kMaxOutput; ++i) {
    auto m = (*zip)->member(i);
    if (!m.ok()) continue;
    auto stream = (*zip)->read(i, scratch);
    if (!stream.ok()) continue;
    int64_t got = 0;
    for (;;) {
      auto block = stream->next();
      if (!block.ok()) {
        MAT_FUZZ_CHECK(block.status().code() == Code::kCorrupt, block.status().to_string());
        break;
      }
      if (block->empty()) break;
      got += static_cast<int64_t>(block->size());
      total += static_cast<int64_t>(block->size());
      MAT_FUZZ_CHECK(got <= m->size, m->name + ": more bytes than the declared size");
      if (total >= kMaxOutput) break;
    }
  }
  return 0;
}
