// link: materialise extracted packages (cache trees) into a prefix, as conda does.
//
// Stages (each data-parallel with oneTBB, results indexed by lock position):
//   1. plan     read info/paths.json (or info/files + info/has_prefix + info/no_link for old
//               packages), info/index.json, info/link.json of every package; map noarch: python
//               paths (site-packages/ -> lib/pythonX.Y/site-packages/, python-scripts/ -> bin/)
//   2. clobber  serial, in lock order: a path written by two packages goes to the later one,
//               with a warning naming both (conda's behaviour)
//   3. link     directories created once, then every file: hardlink from the cache (or reflink /
//               copy, chosen once per cache/prefix pair by probe), symlinks recreated, files with
//               a prefix placeholder copied with the placeholder replaced (text: all occurrences
//               + long-shebang rule; binary: C-string replacement padded with NULs), noarch
//               python entry points written to bin/ as executable scripts
//   4. record   serial, in lock order: conda-meta/<name>-<version>-<build>.json for every package
//               whose files were all linked, then conda-meta/history
//
// A package with any failure gets no conda-meta record; the prefix keeps
// conda-meta/.materializer-incomplete until a run links everything. A package that is recorded
// replaces any older conda-meta/<same name>-*.json record (its files are not unlinked), and
// each run appends one conda-meta/history entry ("+" new records, "-" replaced ones).
// Records and history never contain URL credentials.
//
// Thread safety: link_packages runs its passes on the calling thread's TBB arena (bounded by
// any tbb::global_control); concurrent calls must target different prefixes.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "materializer/base/fs.h"
#include "materializer/base/status.h"
#include "materializer/lock.h"

namespace mat {

enum class LinkMode { kAuto, kHardlink, kReflink, kCopy };
const char* link_mode_name(LinkMode m);

struct LinkOptions {
  std::string prefix;          // absolute path of the target prefix
  std::string cache_root;      // for the one-time link-mode probe
  LinkMode mode = LinkMode::kAuto;
  std::string python_version;  // "3.11"; needed by noarch: python packages
  std::string command_line;    // recorded in conda-meta/history
  // Called as files are linked (any thread): files done so far in this package.
  std::function<void(size_t pkg_index, int64_t files)> on_progress;
  // Writes of replaced files, entry points, records and history go through this seam
  // (FaultFs in tests). nullptr means posix_fs(). Must outlive the call; used from any thread.
  Fs* fs = nullptr;
  // Leave conda-meta/.materializer-incomplete in place even when every package linked: the
  // caller has more to install (wheels) and removes it itself when the prefix is complete.
  bool keep_incomplete_marker = false;
};

// Path of the marker, relative to the prefix.
inline constexpr const char* kIncompleteMarkerPath = "conda-meta/.materializer-incomplete";

struct LinkInput {
  const PackageRef* ref = nullptr;   // lock entry (url, hashes, channel...)
  std::string tree;                  // cache tree pkg/ directory
  std::string archive_path;          // cache archive (package_tarball_full_path)
  int64_t archive_size = -1;
};

struct LinkResult {
  Status status;
  int64_t files = 0;           // paths written into the prefix
  int64_t bytes_copied = 0;    // bytes written by copies/replacements (not hardlinks)
  int64_t prefix_replaced = 0; // files that had a placeholder replaced
  double seconds = 0;          // CPU-ish time attributed to this package
  std::vector<std::string> warnings;  // clobbers etc.
  std::string record_file;            // "conda-meta/<name>-<version>-<build>.json" once recorded
};

// One pass of link_packages(), for the report and the trace: "plan", "clobbers",
// "directories", "files", "records".
struct LinkPhase {
  const char* name;
  std::chrono::steady_clock::time_point start, end;
};

struct LinkSummary {
  LinkMode mode_used = LinkMode::kAuto;
  std::vector<LinkPhase> phases;  // in order
  std::vector<LinkResult> results;  // results[i] for inputs[i]
  bool complete = false;            // every package linked and recorded
};

// Links all packages into opts.prefix. Per-package failures land in results[i]; only run-wide
// failures (prefix not writable, disk full while creating the prefix) return an error.
Result<LinkSummary> link_packages(const std::vector<LinkInput>& inputs, const LinkOptions& opts);

// ---- kernels, exposed for tests and benchmarks -------------------------------------------

// conda's text-mode replacement: every occurrence of `placeholder` becomes `new_prefix`; a
// "#!<placeholder>" in the first line is written with spaces in the new prefix escaped.
std::string replace_prefix_text(std::string_view data, std::string_view placeholder,
                                std::string_view new_prefix);
// conda's binary-mode replacement: each NUL-terminated C string (without '\n') that contains the
// placeholder has every occurrence replaced and is padded with NULs to its old length.
// kInvalidInput if new_prefix is longer than the placeholder and an occurrence exists.
Result<std::string> replace_prefix_binary(std::string_view data, std::string_view placeholder,
                                          std::string_view new_prefix);
// conda's long-shebang rule (Linux: > 127 bytes, or escaped spaces): "#!/a/b/python -x" ->
// "#!/usr/bin/env python -x". Other data is returned unchanged.
std::string replace_long_shebang(std::string_view data);

}  // namespace mat
