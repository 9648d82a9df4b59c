// PEP 503 HTML Simple API and find-links pages through the binary's entry point,
// pypi::internal::parse_simple_page with an HTML content type (and an empty one, sniffed as a
// file:// page is): libxml2's HTML parser, our walk over <a href> and <base href>, URL
// resolution and #sha256=.
#include <cstddef>
#include <cstdint>

#include "fuzz/fuzz_util.h"
#include "fuzz/pypi_checks.h"
#include "materializer/pypi_index_internal.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  mat::pypi::internal::init_html_parser();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace mat::pypi::internal;
  const std::string_view body = mat::fuzz::as_text(data, size);
  mat::fuzz::check_index_files(parse_simple_page(body, "text/html", mat::fuzz::kPageUrl));
  mat::fuzz::check_index_files(parse_simple_page(body, "", mat::fuzz::kPageUrl));
  return 0;
}
