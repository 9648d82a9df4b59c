// Limits on the structured documents materializer reads from outside: lock files (YAML, TOML),
// package metadata (info/index.json, link.json, paths.json), Simple API pages, the cache's
// manifests, the no-op stamp and the interpreter probe's answer. Every parse of such a document
// checks its size and nesting depth here first, so hostile input gets a clear error instead of
// a stack overflow (parsers, copies and dumps recurse per level: a 100,000-deep index.json
// crashed the record writer) or gigabytes of parse tree.
//
// The depth scanners are linear, allocation-free passes over the text that follow just enough
// of each grammar (strings, comments, brackets; YAML indentation and block scalars; TOML
// headers and dotted keys) to count how deeply values nest. They never reject a document for
// its depth unless a real parser would see at least that depth: for well-formed input the
// count is exact for JSON and TOML, and for YAML at most one level more than the parse tree
// (a plain scalar continued on a more indented line counts as a level). Malformed text is left
// to the real parser to report.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "materializer/base/status.h"

namespace mat {

enum class DocFormat { kJson, kYaml, kToml };
const char* doc_format_name(DocFormat f);  // "JSON", "YAML", "TOML"

// The deepest nesting any real document of ours needs is about 8 (a pixi.lock: environments >
// name > packages > platform > list > entry); 64 leaves room for any sane producer and keeps
// every recursive parser, copy and dump far from the stack's end (8 MB main, 2-8 MB for
// workers).
inline constexpr int kMaxDocDepth = 64;

struct DocLimits {
  int64_t max_bytes = int64_t{64} << 20;
  int max_depth = kMaxDocDepth;
};

// Nesting depth of the deepest value, counted as in JSON: a top-level scalar is 0, `[1]` is 1,
// `{"a": [1]}` is 2; a YAML `a: b` is 1; TOML counts its root table, so `a = 1` is 1 and
// `a.b = 1` or `[t] x = 1` is 2. Counting stops at stop_after + 1, so the cost is bounded by
// the text, never by what a parser would build.
int doc_depth(std::string_view text, DocFormat format, int stop_after = kMaxDocDepth);

// Ok, or `code` with "<what>: <fmt> document of N bytes is larger than the limit of M bytes" /
// "<what>: <fmt> nested deeper than N levels (the limit)", followed by "; " + hint if given.
Status check_doc_limits(std::string_view text, DocFormat format, const std::string& what,
                        const DocLimits& limits, Code code, const std::string& hint = "");

}  // namespace mat
