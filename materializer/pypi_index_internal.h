// pypi_index internals: Simple API page parsing, URL resolution and version comparison.
// Private to materializer/ (included by pypi_index.cc and its test only). Pure functions of
// their inputs and thread-safe, once init_html_parser() has run. Implemented in
// pypi_index_parse.cc.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "materializer/base/status.h"

namespace mat::pypi::internal {

// One file a Simple API page, find-links page or find-links directory lists.
struct IndexFile {
  std::string file_name;        // last path component of the URL, percent-decoded (HTML), or
                                // the page's "filename" (JSON)
  std::string url;              // absolute, fragment removed; keeps the page URL's credentials
                                // when it was relative to it
  std::string sha256;           // lowercase hex; "" when the page gave none
  std::string requires_python;  // PEP 440 specifier set, HTML-unescaped; "" = any
  bool yanked = false;
  int64_t size = -1;  // PEP 700 "size" (JSON) or stat() (local directory)
};

// ASCII lowercase (hex digests, content types, versions).
std::string ascii_lower(std::string_view s);

// RFC 3986 §5.2 reference resolution: `ref` (absolute, "//host/x", "/x", "x", "../x", "?q",
// "#f") against the absolute URL `base`, with dot segments removed. Credentials in `base`'s
// authority are kept when `ref` does not name its own authority.
std::string resolve_url(std::string_view base, std::string_view ref);

// "%2B" -> "+"; malformed escapes are kept as written.
std::string percent_decode(std::string_view s);

// PEP 691 JSON page. Errors: kCorrupt (not JSON, wrong shape), kInvalidInput (api-version
// major is not 1).
Result<std::vector<IndexFile>> parse_simple_json(std::string_view body, std::string_view page_url);

// PEP 503 HTML page (also a find-links page): every <a href>, with #sha256= fragments,
// data-requires-python and data-yanked; honours <base href>. Anchors whose URL has no file name
// ("../", "sub/") are skipped. Errors: kCorrupt if libxml2 cannot build a document at all.
Result<std::vector<IndexFile>> parse_simple_html(std::string_view body, std::string_view page_url);

// Initialises libxml2's parser. Call once before parsing HTML on several threads at once
// (libxml2 2.9's first-time initialisation is not itself thread-safe).
void init_html_parser();

// Picks the parser by Content-Type ("application/vnd.pypi.simple.v1+json" or
// "application/json" -> JSON; anything with "html" -> HTML); an empty type (file://) is sniffed:
// a body starting with '{' is JSON.
Result<std::vector<IndexFile>> parse_simple_page(std::string_view body,
                                                 std::string_view content_type,
                                                 std::string_view page_url);

// PEP 440 normal form used for equality ("V1.0-RC1" -> "1rc1", "1.0.0" -> "1",
// "2!1.0.post0.dev1+Ubuntu-1" -> "2!1.post0.dev1+ubuntu.1"): trailing zero release segments are
// dropped, as "==1.0" also matches "1.0.0". nullopt if `v` is not a PEP 440 version.
std::optional<std::string> canonical_version(std::string_view v);

// Equal as PEP 440 versions (local labels included); versions that do not parse compare
// as lowercase strings.
bool same_version(std::string_view a, std::string_view b);

// True if `file_name` is a source distribution "<name>-<version>.tar.gz" (or .zip, .tar.bz2,
// .tar.xz, .tgz, .tar) of the project `normalized_name` (PEP 503 form) at `version`. Legacy
// names with '-' inside the project name ("python-dateutil-2.8.2.tar.gz") are recognised.
bool is_sdist_of(std::string_view file_name, std::string_view normalized_name,
                 std::string_view version);

}  // namespace mat::pypi::internal
