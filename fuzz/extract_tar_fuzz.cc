// A .tar.bz2 package extracted from its file (cache/extract.h, ArchiveFormat::kTarBz2): the
// bzip2 reader (Bz2ParallelReader) or libarchive's gzip/xz/zstd/plain filters, the tar reader,
// and every member check (names, "..", links, hard links, types, duplicates, UTF-8). Seeds
// include uncompressed tars, so mutations reach the member checks directly.
#include <cstddef>
#include <cstdint>

#include "fuzz/extract_util.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  mat::fuzz::extract_init();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mat::fuzz::fuzz_extract_file(mat::fuzz::as_text(data, size), "pkg-1.0-0.tar.bz2",
                               mat::cache::ArchiveFormat::kTarBz2);
  return 0;
}
