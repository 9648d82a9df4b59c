// pixi.lock v4-v7 through parse_lock (fuzz/lock_checks.h): YAML limits, yaml-cpp, then the
// reader's walk (environments, packages by location, pypi) for two platforms and environments.
#include <cstddef>
#include <cstdint>

#include "fuzz/lock_checks.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mat;
  std::vector<LockSelection> sels{fuzz::for_platform("linux-64"), fuzz::for_platform("osx-arm64")};
  sels[1].environment = "test";
  fuzz::fuzz_parse_lock(fuzz::as_text(data, size), "pixi.lock", std::move(sels));
  return 0;
}
