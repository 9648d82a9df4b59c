// poetry.lock through parse_lock (fuzz/lock_checks.h): TOML limits, toml++, then the reader
// (files lists old and new, python-versions translated to PEP 440, sources).
#include <cstddef>
#include <cstdint>

#include "fuzz/lock_checks.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mat;
  std::vector<LockSelection> sels{LockSelection{}};
  fuzz::fuzz_parse_lock(fuzz::as_text(data, size), "poetry.lock", std::move(sels));
  return 0;
}
