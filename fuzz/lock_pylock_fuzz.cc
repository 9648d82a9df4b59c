// pylock.toml (PEP 751) through parse_lock (fuzz/lock_checks.h): TOML limits, toml++, then the
// reader (packages, wheels, sdists, archives, markers, hashes).
#include <cstddef>
#include <cstdint>

#include "fuzz/lock_checks.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mat;
  std::vector<LockSelection> sels{LockSelection{}};
  fuzz::fuzz_parse_lock(fuzz::as_text(data, size), "pylock.toml", std::move(sels));
  return 0;
}
