// parse_lock, the front door (materializer/lock.h), seeded with every format: detection (TOML,
// requirements, YAML and @EXPLICIT tried in turn) and then the one parser chosen, for any bytes.
// The per-format targets (lock_*_fuzz.cc) go through the same door with their own seeds.
#include <cstddef>
#include <cstdint>

#include "fuzz/lock_checks.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mat;
  const std::string_view text = fuzz::as_text(data, size);
  fuzz::fuzz_parse_lock(text, "env.lock", {LockSelection{}});
  Result<LockFormat> f = detect_lock_format(std::string(text), fuzz::scratch_dir() + "/env.lock");
  if (!f.ok()) MAT_FUZZ_CHECK(f.status().code() == Code::kInvalidInput, f.status().to_string());
  return 0;
}
