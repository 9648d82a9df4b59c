// Internals of the link stage, shared by link.cc (driver), link_plan.cc (package metadata),
// link_ops.cc (file operations), prefix_replace.cc (kernels) and conda_meta.cc (records).
// Not part of the public API; tests include it to reach the pieces.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <exception>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "materializer/base/fs.h"
#include "materializer/base/status.h"
#include "materializer/link.h"

namespace mat::link_internal {

using Clock = std::chrono::steady_clock;

inline int64_t elapsed_ns(Clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count();
}

// Runs `body`, handing anything thrown to `on_error` as a Status: an exception escaping a TBB
// task would cancel the whole loop and lose every other package's result.
template <typename F, typename OnError>
void run_guarded(F body, OnError on_error) {
  try {
    body();
  } catch (const std::exception& e) {
    on_error(Internal(std::string("unexpected exception: ") + e.what()));
  } catch (...) {
    on_error(Internal("unexpected exception"));
  }
}

// conda's PREFIX_PLACEHOLDER, the default for has_prefix lines that give only a path.
inline constexpr const char* kDefaultPlaceholder = "/opt/anaconda1anaconda2anaconda3";

enum class PathType { kHardlink, kSoftlink, kDirectory, kEntryPoint };
enum class FileMode { kNone, kText, kBinary };

const char* path_type_name(PathType t);  // paths.json spelling ("unix_python_entry_point")

// One path of a package, as listed by info/paths.json (or the legacy info/ files).
struct PathEntry {
  std::string path;    // "_path" inside the package tree
  std::string target;  // path inside the prefix (noarch python mapping applied)
  PathType type = PathType::kHardlink;
  FileMode file_mode = FileMode::kNone;  // kNone: no placeholder
  std::string placeholder;
  std::string sha256;  // "" when unknown (legacy packages)
  int64_t size = -1;   // -1 when unknown
  bool no_link = false;
  std::string script;  // kEntryPoint: the whole file
};

// What the link stage needs to know about one package, read from its tree.
struct PackagePlan {
  std::string label;     // "name-version-build", for messages
  nlohmann::json index;  // info/index.json (an object)
  std::string name, version, build, subdir;
  bool noarch_python = false;
  std::vector<PathEntry> paths;  // paths.json order, then entry points
};

struct PlanContext {
  std::string prefix;          // absolute target prefix
  std::string python_version;  // "X.Y" or ""
};

// Reads info/index.json, info/paths.json (or info/files + has_prefix + no_link + no_softlink)
// and info/link.json from `tree`; maps noarch python paths; generates entry point scripts.
// Errors: kNotFound (tree or index.json missing), kCorrupt (unparseable or unsafe metadata),
// kInvalidInput (noarch python without a python version). Messages are not yet prefixed with
// the package label.
Result<PackagePlan> load_package_plan(const std::string& tree, const PlanContext& ctx);

// has_prefix line parsing (conda's read_has_prefix): "path" or "placeholder mode path", tokens
// split on whitespace with optional '"' / '\'' quoting. False for malformed lines.
struct HasPrefixLine {
  std::string placeholder, mode, path;
};
bool parse_has_prefix_line(const std::string& line, HasPrefixLine* out);

// "site-packages/x" -> "lib/pythonX.Y/site-packages/x", "python-scripts/x" -> "bin/x".
std::string noarch_python_target(const std::string& path, const std::string& python_version);

// Entry point pieces (prefix_replace.cc).
std::string entry_point_shebang(const std::string& python);
std::string entry_point_script(const std::string& python, const std::string& module,
                               const std::string& func);

// ---- file operations (link_ops.cc) ----

// Everything a file operation needs; immutable during the link pass, shared by all tasks.
struct OpContext {
  int prefix_fd = -1;
  std::string prefix;
  LinkMode mode = LinkMode::kCopy;  // resolved: kHardlink, kReflink or kCopy
  bool forced = false;              // a forced mode never falls back
  Fs* fs = nullptr;
};

struct OpOutcome {
  int64_t bytes_copied = 0;
  bool replaced = false;         // a placeholder was replaced (content may be unchanged)
  bool fallback_copy = false;    // the run's mode is hardlink, but this file had to be copied
  std::string sha256_in_prefix;  // set when the prefix content differs from the tree's
};

// Materialises one non-directory path of a package into the prefix. Existing files at the
// target are replaced (never written through: a prefix file may be a hard link into the cache).
// Errors name the target path; the caller adds the package label.
Status link_path(const OpContext& ctx, const std::string& tree, const PathEntry& e, OpOutcome* out);

// Writes `data` as a new file at `rel` (prefix-relative) with `mode`, replacing whatever file
// was there by unlink + O_EXCL create (never writing through an existing inode). Used for
// generated files (wheel launchers, RECORD). Errors name `rel`.
Status write_prefix_file(const OpContext& ctx, const std::string& rel, std::string_view data,
                         mode_t mode);

// Creates `rel` (a directory under the prefix) if missing; a non-directory in its place is
// removed first. Parents must already exist.
Status make_prefix_dir(int prefix_fd, const std::string& rel);

// Chooses the link mode once per run: hardlink if a file in `probe_dir` (the cache's tmp
// area; `fallback_src` if that cannot be used) can be hard-linked into the prefix, else
// reflink if FICLONE works, else copy. Leaves no file behind.
LinkMode probe_link_mode(const std::string& probe_dir, const std::string& fallback_src,
                         int prefix_fd);

// ---- conda-meta (conda_meta.cc) ----

struct RecordInput {
  const LinkInput* input = nullptr;
  const PackagePlan* plan = nullptr;
  const std::vector<std::string>* sha256_in_prefix = nullptr;  // per plan->paths entry
  std::string md5, sha256;                                     // of the archive
  int64_t size = -1;
  LinkMode mode = LinkMode::kHardlink;
};

// conda-meta/<name>-<version>-<build>.json file name.
std::string record_file_name(const PackagePlan& plan);
// The PrefixRecord JSON conda writes for a linked package.
nlohmann::json build_prefix_record(const RecordInput& in);
// Its text as written to conda-meta/ (build_prefix_record(in).dump(2, ' ', true) + "\n", byte
// for byte), built without the document: memory is the text, not a DOM of every path.
std::string prefix_record_text(const RecordInput& in);
// "conda-forge" for conda.anaconda.org channels, "pkgs/main" for repo.anaconda.com, else the
// URL without credentials.
std::string channel_display_name(const std::string& channel_url);
// One conda-meta/history entry: header, "# cmd:", "# materializer version:", then the
// "-"removed and "+"added dist lines.
std::string history_entry(const std::string& command_line, const std::vector<std::string>& removed,
                          const std::vector<std::string>& added);
// "<channel>/<subdir>::<name>-<version>-<build>"
std::string history_dist(const std::string& channel, const std::string& subdir,
                         const std::string& name, const std::string& version,
                         const std::string& build);

}  // namespace mat::link_internal
