// Internals shared by pypi_version.cc, pypi_marker.cc and pypi_tags.cc: the PEP 440 version
// model and single specifiers. Not part of the public API (include pypi.h instead).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "materializer/base/status.h"

namespace mat::pypi::internal {

// A non-negative integer of any size, kept as its decimal digits without leading zeros ("0"
// for zero), so "1.0.99999999999999999999" compares like Python's ints instead of overflowing.
struct Num {
  std::string digits = "0";
};
int compare(const Num& a, const Num& b);  // <0, 0, >0

// A parsed PEP 440 version (packaging.version.Version): the permissive spellings
// ("v1.0", "1.0-1", "1.0.alpha2", "1.0_RC1") are accepted and normalised.
struct Version {
  Num epoch;
  std::vector<Num> release;  // at least one component
  int pre_kind = -1;         // -1 none, 0 a, 1 b, 2 rc
  Num pre;
  std::optional<Num> post;
  std::optional<Num> dev;
  std::vector<std::string> local;  // lowercased segments ("ubuntu", "1")

  bool is_prerelease() const { return pre_kind >= 0 || dev.has_value(); }
  bool is_postrelease() const { return post.has_value(); }
};

// nullopt when `text` is not a PEP 440 version (surrounding whitespace is allowed).
std::optional<Version> parse_version(std::string_view text);

// Total order of PEP 440 (packaging's _cmpkey): 1.0.dev0 < 1.0a1 < 1.0 < 1.0+local < 1.0.post1.
// Trailing zeros of the release do not matter (1.0 == 1).
int compare(const Version& a, const Version& b);

// Canonical spelling: "1!2.0rc1.post2.dev3+local.1" (str(Version)).
std::string to_string(const Version& v);

// One specifier clause such as ">=3.8", "==3.11.*", "~=1.4.2", "===foo".
struct Specifier {
  std::string op;         // "==", "!=", "<=", ">=", "<", ">", "~=", "==="
  std::string text;       // the version text after the operator, trimmed ("3.11.*")
  Version version;        // parsed `text` (without ".*"); unset for "==="
  bool wildcard = false;  // "==X.*" / "!=X.*"
};

// Parses one clause; kInvalidInput (message names the clause and the rule it breaks).
Result<Specifier> parse_specifier(std::string_view clause);

// Does `v` satisfy `spec`? Pre-releases are always allowed (packaging's prereleases=True, as
// markers and requires-python checks against a concrete interpreter use).
bool specifier_contains(const Specifier& spec, const Version& v);

}  // namespace mat::pypi::internal
