// fuzz/pypi_checks.h: what the Simple API page targets check on each result
// (materializer/pypi_index_internal.h is the contract).
#pragma once

#include <cctype>
#include <string>
#include <vector>

#include "fuzz/fuzz_util.h"
#include "fuzz/lock_checks.h"
#include "materializer/pypi_index_internal.h"

namespace mat::fuzz {

inline constexpr std::string_view kPageUrl = "https://user:tok@pypi.example.org/simple/pkg/";

// RFC 3986 §3.1: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":" — an absolute URL.
inline bool has_scheme(std::string_view url) {
  size_t colon = url.find(':');
  if (colon == std::string_view::npos || colon == 0 ||
      !std::isalpha(static_cast<unsigned char>(url[0]))) {
    return false;
  }
  for (char c : url.substr(1, colon - 1)) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '-' && c != '.')
      return false;
  }
  return true;
}

// Errors are kCorrupt (not a page) or kInvalidInput (api-version); listed files have a name, an
// absolute URL without a fragment, and a lowercase hex sha256 or none.
inline void check_index_files(const Result<std::vector<pypi::internal::IndexFile>>& r) {
  if (!r.ok()) {
    Code c = r.status().code();
    MAT_FUZZ_CHECK(c == Code::kCorrupt || c == Code::kInvalidInput, r.status().to_string());
    return;
  }
  for (const pypi::internal::IndexFile& f : *r) {
    MAT_FUZZ_CHECK(!f.file_name.empty(), f.url);
    MAT_FUZZ_CHECK(f.url.find('#') == std::string::npos, f.url);
    MAT_FUZZ_CHECK(has_scheme(f.url), f.url);
    MAT_FUZZ_CHECK(f.sha256.empty() || is_lower_hex(f.sha256, 64), f.sha256);
  }
}

}  // namespace mat::fuzz
