// A wheel extracted from its file (cache/extract.h, ArchiveFormat::kWheel): ZipReader and
// ISA-L inflate, PEP 427's rules (no links, no duplicates, sizes and CRC-32 that hold, one
// *.dist-info) and the RECORD check of every file.
#include <cstddef>
#include <cstdint>

#include "fuzz/extract_util.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  mat::fuzz::extract_init();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mat::fuzz::fuzz_extract_file(mat::fuzz::as_text(data, size), "pkg-1.0-py3-none-any.whl",
                               mat::cache::ArchiveFormat::kWheel);
  return 0;
}
