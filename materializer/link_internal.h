// Internals of the link stage, shared by link.cc (driver), link_plan.cc (package metadata),
// link_ops.cc (file operations), prefix_replace.cc (kernels) and conda_meta.cc (records).
// Not part of the public API; tests include it to reach the pieces.
#pragma once

#include <sys/types.h>
#include <tbb/enumerable_thread_specific.h>

#include <chrono>
#include <cstdint>
#include <exception>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "materializer/base/beneath.h"
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
//
// Every write into the prefix goes through base/beneath.h: the parent directory is resolved
// beneath the prefix at the moment of the write (symlinks followed only while they stay
// inside), then the entry is made with one name component and no following of a symlink at
// that name. Sources are read from the package tree the same way, but no symlink may be on
// the way at all (a tree's paths.json lists real files: `x -> /etc` plus `x/shadow` must not
// link /etc/shadow into the prefix).

// Everything a file operation needs; immutable during the link pass, shared by all tasks.
struct OpContext {
  int prefix_fd = -1;
  std::string prefix;
  LinkMode mode = LinkMode::kCopy;  // resolved: kHardlink, kReflink or kCopy
  bool forced = false;              // a forced mode never falls back
  Fs* fs = nullptr;
  // The prefix's conda-meta/ directory: a package write whose parent resolves to it through a
  // symlink ("cm -> conda-meta", then "cm/history") is refused. 0/0 = not checked.
  dev_t meta_dev = 0;
  ino_t meta_ino = 0;
};

// The directories a run of file operations writes into and reads from, each resolved once and
// kept while consecutive operations use it: sorted by directory, a link pass pays one openat2
// per directory rather than one per file (bench: ~12 files per directory). Holds at most three
// fds whatever the prefix's size, so the fd limit never matters. One per task: not thread-safe.
class DirCache {
 public:
  explicit DirCache(const OpContext& ctx) : ctx_(ctx) {}
  DirCache(const DirCache&) = delete;
  DirCache& operator=(const DirCache&) = delete;

  // Prefix directory `dir` ("" = the prefix itself) resolved beneath the prefix; refused
  // (kCorrupt) when it is conda-meta/ or lies below it. Borrowed fd, valid until the next call.
  // Errors name `dir` only; callers add the path they were writing.
  Result<int> prefix_dir(std::string_view dir);
  // Directory `dir` of the package tree `tree` (absolute), with no symlink on the way.
  // Borrowed fd, valid until the next tree_dir call.
  Result<int> tree_dir(const std::string& tree, std::string_view dir);

 private:
  const OpContext& ctx_;
  bool have_prefix_ = false;
  std::string prefix_key_;
  UniqueFd prefix_fd_;
  std::string tree_;
  UniqueFd tree_root_;
  bool have_tree_dir_ = false;
  std::string tree_key_;
  UniqueFd tree_fd_;
};

// One DirCache per worker thread for the length of a pass. TBB hands a thread ranges from
// different places and splits a loop's tail into single items; a cache per range would then
// resolve a directory per file again (bench: 813 openat2 for 2,500 files), one per thread
// keeps what the thread resolved last (at most three fds per thread).
class DirCaches {
 public:
  explicit DirCaches(const OpContext& ctx) : ctx_(ctx) {}
  DirCache& local() {
    std::unique_ptr<DirCache>& c = caches_.local();
    if (!c) c = std::make_unique<DirCache>(ctx_);
    return *c;
  }

 private:
  const OpContext& ctx_;
  tbb::enumerable_thread_specific<std::unique_ptr<DirCache>> caches_;
};

struct OpOutcome {
  int64_t bytes_copied = 0;
  bool replaced = false;         // a placeholder was replaced (content may be unchanged)
  bool fallback_copy = false;    // the run's mode is hardlink, but this file had to be copied
  std::string sha256_in_prefix;  // set when the prefix content differs from the tree's
};

// Materialises one path of a package into the prefix. Existing files at the target are
// replaced (never written through: a prefix file may be a hard link into the cache). Errors
// name the target path (or the tree path for a source that cannot be read); the caller adds
// the package label.
Status link_path(const OpContext& ctx, DirCache& dirs, const std::string& tree, const PathEntry& e,
                 OpOutcome* out);

// Writes `data` as a new file at `rel` (prefix-relative) with `mode`, replacing whatever file
// was there by unlink + O_EXCL create (never writing through an existing inode). Used for
// generated files (wheel launchers, RECORD). Errors name `rel`.
Status write_prefix_file(const OpContext& ctx, DirCache& dirs, const std::string& rel,
                         std::string_view data, mode_t mode);

// Creates `rel` (a directory under the prefix) if missing; a non-directory in its place is
// removed first. Parents must already exist.
Status make_prefix_dir(const OpContext& ctx, DirCache& dirs, const std::string& rel);

// Chooses the link mode once per run: hardlink if a file in `probe_dir` (the cache's tmp
// area; else `fallback` = (tree, tree-relative file) if that cannot be used) can be hard-linked
// into `dst_dir_fd` (the prefix's conda-meta/: same file system, and the prefix lock's sweep
// removes a probe that a killed run left there), else reflink if FICLONE works, else copy.
// Leaves no file behind (but a killed run's temp names, see temp_name_for).
LinkMode probe_link_mode(const std::string& probe_dir,
                         const std::pair<std::string, std::string>& fallback, int dst_dir_fd);

// True if `target` (prefix-relative) is conda-meta or lies below it: only the installer
// writes there (records, history, markers); a package member there is refused.
bool in_conda_meta(std::string_view target);

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

// A failure of the disk under the prefix (full, read-only, I/O error) names the prefix too: the
// per-file messages give prefix-relative paths, and "write share/x" alone does not say which
// file system ran out. Other failures (a hostile package) are left as they are.
inline Status in_prefix_context(const Status& st, const std::string& prefix) {
  if (st.code() != Code::kNoSpace && st.code() != Code::kIo) return st;
  return st.with_context("in " + prefix);
}

}  // namespace mat::link_internal
