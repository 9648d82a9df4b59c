// requirements.txt through parse_lock (fuzz/lock_checks.h): pip's line format, continuations,
// options, --hash pins and `-r`/`-c` includes. The lock is written beside a small include file,
// so `-r inc.txt`, a self-include and includes refused by the file policy are all reached.
#include <cstddef>
#include <cstdint>

#include "fuzz/lock_checks.h"
#include "materializer/lock_internal.h"

namespace {

constexpr std::string_view kInclude =
    "six==1.16.0 \\\n"
    "    --hash=sha256:8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254\n"
    "-c constraints.txt\n";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mat;
  static const bool once = [] {
    fuzz::scratch_file("inc.txt", kInclude);
    fuzz::scratch_file("constraints.txt", "six==1.16.0\n");
    return true;
  }();
  (void)once;
  const std::string_view text = fuzz::as_text(data, size);
  fuzz::fuzz_parse_lock(text, "requirements.txt", {LockSelection{}});
  (void)lock_internal::looks_like_requirements(text);  // detection's own scan
  return 0;
}
