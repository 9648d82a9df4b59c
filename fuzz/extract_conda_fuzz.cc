// A .conda package extracted from its file (cache/extract.h, ArchiveFormat::kConda): the outer
// zip through ZipReader (central directory), the info-/pkg-*.tar.zst members through
// ZstdReadAhead (zstd, or passed through when not compressed) and the tar member checks.
#include <cstddef>
#include <cstdint>

#include "fuzz/extract_util.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  mat::fuzz::extract_init();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mat::fuzz::fuzz_extract_file(mat::fuzz::as_text(data, size), "pkg-1.0-0.conda",
                               mat::cache::ArchiveFormat::kConda);
  return 0;
}
