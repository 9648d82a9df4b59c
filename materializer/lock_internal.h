// Private to lock*.cc: the per-format parsers and the helpers they share. Not part of the
// public API (see lock.h); includes yaml-cpp, which no public header may.
#pragma once

#include <yaml-cpp/yaml.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "materializer/base/status.h"
#include "materializer/lock.h"

namespace mat::lock_internal {

// "<path>:<line>: <what>" as kInvalidInput (line <= 0 leaves it out).
Status input_error(const std::string& path, int line, const std::string& what);

// yaml-cpp returns an invalid ("zombie") node for a missing key, and most accessors throw on
// it; these never throw.
bool is_map(const YAML::Node& node);
bool is_seq(const YAML::Node& node);
// 1-based line of a YAML node (0 if missing or yaml-cpp has no mark for it).
int line_of(const YAML::Node& node);
// map[key] if `map` is a mapping (possibly an invalid node when the key is absent), else an
// invalid node. Never throws.
YAML::Node child(const YAML::Node& map, const char* key);

// The scalar at map[key]; nullopt when the map lacks it, or it is null or not a scalar.
// Never throws (checks IsMap first).
std::optional<std::string> scalar(const YAML::Node& map, const char* key);

// `value` as lowercase hex if it is exactly `n` hex digits, else nullopt.
std::optional<std::string> lower_hex(std::string_view value, size_t n);

// Parses a non-negative decimal integer; nullopt on anything else.
std::optional<int64_t> parse_int(std::string_view s);

// True for "scheme://..." and "file:..." locations (anything with a URL scheme).
bool has_url_scheme(std::string_view loc);

// Turns a lock location into an absolute URL: URLs are returned unchanged; absolute paths and
// paths relative to `lock_dir` (an absolute directory) become file:// URLs, with "." and ".."
// resolved lexically.
std::string resolve_location(const std::string& loc, const std::string& lock_dir);

// True if the file name is a conda archive (.conda or .tar.bz2).
bool is_conda_archive(std::string_view file_name);

// Fills file_name, and for conda entries the name/version/build (from the file name), subdir
// (from the URL's parent directory) and channel fields that the lock left empty.
void fill_derived(PackageRef& ref);

// kInvalidInput naming every conda entry that has neither sha256 nor md5, or Ok:
// "<path>:<line>: <file> has no <missing>; <hint>" (or "N packages have no <missing> (line a:
// file, line b: file)" for several).
Status check_hashes(const std::vector<PackageRef>& refs, const std::string& path,
                    const std::string& missing, const std::string& hint);

// Adds `platform` to lock.entry_platforms unless already there ("" is recorded as such).
void note_platform(LockFile& lock, const std::string& platform);

// The checks every format gets once its entries are selected (see lock.h, parse_lock): each
// text field valid UTF-8, without control characters, of bounded length; and no package
// selected twice (an identical repeat, same URL and hashes, is dropped). kInvalidInput naming
// the file, line and field, or both lines.
Status check_fields(const LockFile& lock);
Status check_duplicates(LockFile& lock);

// Per-format parsers. `lock_dir` is the absolute directory of the lock file. They may throw
// YAML::Exception; parse_lock converts it at its boundary.
Result<LockFile> parse_explicit(std::string_view content, const std::string& path,
                                const std::string& lock_dir, const LockSelection& sel);
Result<LockFile> parse_conda_lock(const YAML::Node& root, const std::string& path,
                                  const LockSelection& sel);
Result<LockFile> parse_pixi(const YAML::Node& root, const std::string& path,
                            const std::string& lock_dir, const LockSelection& sel);

// requirements.txt (lock_requirements.cc). `-r` includes are read from disk, relative to the
// including file, and only where `local_files` allows (null: anywhere). Never throws.
Result<LockFile> parse_requirements(std::string_view content, const std::string& path,
                                    const std::string& lock_dir,
                                    const LocalFiles* local_files = nullptr);
// Whether every non-comment line is a pip option or starts like a requirement, and there is at
// least one requirement or include: how detection tells requirements.txt from other text.
bool looks_like_requirements(std::string_view content);

// Sets source_kind ("git", "vcs" for other VCS URLs, "path" for a local directory) and a
// non-empty file_name on a single-URL PyPI entry (conda-lock `manager: pip`, pixi `pypi:`).
void classify_pypi_url(PackageRef& ref);

// The TOML formats are declared in lock_toml_internal.h.

}  // namespace mat::lock_internal
