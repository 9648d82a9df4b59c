// @EXPLICIT locks through parse_lock (fuzz/lock_checks.h): URL lines, #md5/#sha256
// fragments, `# platform:` headers, relative paths, for two target platforms.
#include <cstddef>
#include <cstdint>

#include "fuzz/lock_checks.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mat;
  std::vector<LockSelection> sels{fuzz::for_platform("linux-64"), fuzz::for_platform("osx-arm64")};
  fuzz::fuzz_parse_lock(fuzz::as_text(data, size), "env.txt", std::move(sels));
  return 0;
}
