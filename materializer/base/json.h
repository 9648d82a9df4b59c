// JSON in and out. Every JSON document read from outside (package metadata, Simple API pages,
// the cache's manifests, the no-op stamp, the interpreter probe) is parsed by parse_json(),
// which checks its size and nesting first (doc_limits.h): nlohmann's parser is iterative, but
// copying, comparing and dumping a value recurse once per level. Everything written (reports,
// conda-meta records, stamps, traces, manifests) goes through dump_json(), which never throws:
// names from a lock or a package may hold bytes that are not UTF-8, and nlohmann's default
// dump throws on them (that once lost a run's report, its stamp and its incomplete marker).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "materializer/base/doc_limits.h"
#include "materializer/base/status.h"

namespace mat {

// The parsed document, or `code` naming `what`: "<what>: not valid JSON (<parser's reason>)",
// or the size/depth errors of check_doc_limits, each followed by "; <hint>" when given.
// Never throws (but std::bad_alloc).
Result<nlohmann::json> parse_json(std::string_view text, const std::string& what,
                                  const DocLimits& limits, Code code,
                                  const std::string& hint = "");

// j.dump(indent, ' ', ensure_ascii) with invalid UTF-8 replaced by U+FFFD instead of throwing.
std::string dump_json(const nlohmann::json& j, int indent = -1, bool ensure_ascii = false);

}  // namespace mat
