// uv.lock through parse_lock (fuzz/lock_checks.h) with uv's default selection and with extras
// and groups named (the reachability walk differs).
#include <cstddef>
#include <cstdint>

#include "fuzz/lock_checks.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mat;
  std::vector<LockSelection> sels{LockSelection{}, LockSelection{}};
  sels[1].extras = {"all", "cli", "dev"};
  sels[1].groups = {"test", "lint", "dev"};
  fuzz::fuzz_parse_lock(fuzz::as_text(data, size), "uv.lock", std::move(sels));
  return 0;
}
