// PEP 691 JSON Simple API pages through the binary's entry point,
// pypi::internal::parse_simple_page with PEP 691's content type (JSON limits, then the walk),
// against a page URL with credentials (they must survive relative links).
#include <cstddef>
#include <cstdint>

#include "fuzz/fuzz_util.h"
#include "fuzz/pypi_checks.h"
#include "materializer/pypi_index_internal.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mat::pypi::internal;
  const std::string_view body = mat::fuzz::as_text(data, size);
  mat::fuzz::check_index_files(
      parse_simple_page(body, "application/vnd.pypi.simple.v1+json", mat::fuzz::kPageUrl));
  return 0;
}
