// conda-lock.yml v1 through parse_lock (fuzz/lock_checks.h): YAML limits, yaml-cpp, then the
// reader's walk (conda and pip entries, hashes, platforms) for two target platforms.
#include <cstddef>
#include <cstdint>

#include "fuzz/lock_checks.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mat;
  std::vector<LockSelection> sels{fuzz::for_platform("linux-64"), fuzz::for_platform("osx-arm64")};
  fuzz::fuzz_parse_lock(fuzz::as_text(data, size), "conda-lock.yml", std::move(sels));
  return 0;
}
