// Private to lock*.cc: the TOML lock parsers (pylock.toml, uv.lock, poetry.lock) and the
// toml++ field readers they share. Kept apart from lock_internal.h so that only the files that
// read TOML pay for including toml++.
#pragma once

#include <toml++/toml.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "materializer/base/status.h"
#include "materializer/lock.h"
#include "materializer/lock_internal.h"

namespace mat::lock_internal {

// 1-based line where toml++ saw the node begin (0 if unknown).
int toml_line(const toml::node& node);

// Names a field for messages: `subject` ("package 'x'") and a dotted path prefix ("wheels[2].")
// so every error reads "<path>:<line>: package 'x': field 'wheels[2].hashes.sha256' ...".
struct TomlField {
  const std::string& path;  // lock file, for messages
  std::string subject;      // "" for file-level fields
  std::string prefix;       // prepended to keys

  // kInvalidInput "<path>:<line of node or fallback>: <subject>: field '<prefix><key>' <what>".
  Status error(const toml::node* node, int fallback_line, std::string_view key,
               const std::string& what) const;
  TomlField nested(std::string_view key) const;             // prefix + key + "."
  TomlField element(std::string_view key, size_t i) const;  // prefix + key + "[i]."
};

// Typed lookups of table[key]. Absent keys leave `out` alone and return Ok (or, with
// `required`, an error "is missing"); a value of the wrong type is an error naming the field.
// `line` is the table's own line, used when the field is missing.
Status toml_string(const toml::table& t, std::string_view key, const TomlField& f, int line,
                   std::string& out, bool required = false);
Status toml_int(const toml::table& t, std::string_view key, const TomlField& f, int line,
                int64_t& out);
Status toml_bool(const toml::table& t, std::string_view key, const TomlField& f, int line,
                 bool& out);
// A list of strings (`environments = [...]`).
Status toml_strings(const toml::table& t, std::string_view key, const TomlField& f, int line,
                    std::vector<std::string>& out);
// table[key] as a table / an array, nullptr when absent; an error when of another type.
Status toml_table(const toml::table& t, std::string_view key, const TomlField& f, int line,
                  const toml::table*& out);
Status toml_array(const toml::table& t, std::string_view key, const TomlField& f, int line,
                  const toml::array*& out);

// "sha256:<hex>" (uv.lock, poetry.lock) -> lowercase hex. Other algorithms -> "" with Ok, so a
// caller can tell "no sha256" from "malformed"; a sha256 with a malformed digest is an error.
Status parse_prefixed_sha256(const std::string& value, const TomlField& f, const toml::node* node,
                             int line, std::string_view key, std::string& out);

// Translates a poetry python-versions constraint ("^3.8", "~3.9", ">=3.8,<4.0", "3.8.*",
// ">=3.6 <4", "*") to a PEP 440 specifier set; "" when it allows any version or cannot be
// expressed as one set (an "||" union): widening is safe, the driver only uses it to skip.
std::string poetry_to_pep440(std::string_view constraint);

// Per-format parsers. `lock_dir` is the absolute directory of the lock file. They never throw.
Result<LockFile> parse_pylock(const toml::table& root, const std::string& path,
                              const std::string& lock_dir);
Result<LockFile> parse_uv_lock(const toml::table& root, const std::string& path,
                               const std::string& lock_dir, const LockSelection& sel);
Result<LockFile> parse_poetry_lock(const toml::table& root, const std::string& path,
                                   const std::string& lock_dir);

}  // namespace mat::lock_internal
