// Lock-file reading: every supported format becomes one list of PackageRef in lock order.
//
// Formats are recognised from the content, not the file name:
//   conda-lock.yml v1      (YAML with `version: 1` and `package:` list; `manager: conda|pip`)
//   @EXPLICIT              (text: an `@EXPLICIT` line, then URL lines with #md5 / #sha256 /
//                           #sha256:<hex> fragments; `# platform: X` header optional)
//   pixi.lock v4 to v7     (YAML with `version: 4..7`, `environments:` and `packages:`;
//                           v7 platform names key the lists as written, e.g. "x86-cuda13")
// Pip/PyPI entries are returned with kind == kPypi so the driver can refuse them as a whole;
// their url is kept as written (a git URL's fragment is its commit), relative paths resolved.
// Source packages (pixi `conda_source:`, or a `conda:` location that is not a .conda/.tar.bz2
// archive) are an error: we install built archives only.
//
// Errors are kInvalidInput and name the file, line and field:
//   "env.lock:12: package 'zlib': field 'url' is missing".
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "materializer/base/status.h"

namespace mat {

enum class LockFormat {
  kCondaLockV1,
  kExplicit,
  kPixi,
  kPylock,        // PEP 751 pylock.toml
  kUvLock,        // uv.lock
  kRequirements,  // requirements.txt with --hash (pip-tools / --require-hashes form)
  kPoetry,        // poetry.lock
};
const char* lock_format_name(LockFormat f);  // "conda-lock-v1", "explicit", "pixi"

enum class PackageKind { kConda, kPypi };

// One downloadable file of a PyPI package, as a lock lists it.
struct WheelCandidate {
  std::string url;        // absolute (http/https/file); "" when only the file name is known
  std::string file_name;  // "numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.whl" / sdist name
  std::string sha256;     // lowercase hex or ""
  int64_t size = -1;
};

struct PackageRef {
  PackageKind kind = PackageKind::kConda;
  std::string name;       // from the lock, else parsed from the file name
  std::string version;
  std::string build;      // conda build string ("" for pypi)
  std::string subdir;     // "linux-64", "noarch", ... (from the lock or the URL)
  std::string channel;    // URL up to (not including) "/<subdir>/<file>"; redaction is the
                          // caller's job when printing
  std::string url;        // absolute URL (http/https/file); relative lock paths are resolved
                          // against the lock file's directory into file:// URLs
  std::string file_name;  // "zlib-1.3.1-h4ab18f5_1.conda"
  std::string sha256;     // lowercase hex or ""
  std::string md5;        // lowercase hex or ""
  int64_t size = -1;      // from the lock when present
  int line = 0;           // 1-based line of the entry in the lock (0 if unknown)

  // ---- kPypi only. A lock either names the one file (url/file_name/sha256 above set, as
  // conda-lock pip entries and pixi pypi entries do), or lists candidates the driver chooses
  // from by the target interpreter's tags (pylock.toml, uv.lock), or names only allowed hashes
  // to be resolved on a package index (requirements.txt, poetry.lock).
  std::vector<WheelCandidate> wheels;  // candidate wheels (all platforms the lock lists)
  std::vector<WheelCandidate> sdists;  // source distributions (out of scope: reported)
  std::string marker;                  // PEP 508 environment marker; "" = always
  std::string requires_python;         // PEP 440 specifier set; "" = any
  std::vector<std::string> allowed_sha256;  // requirements/poetry: hashes any chosen file
                                            // must have (lowercase hex)
  bool needs_index = false;            // true: resolve name==version on a package index
  bool requested = true;               // write REQUESTED (a top-level, user-named package)
  std::string source_kind;             // "git", "directory", "editable", "path"... when the
                                       // entry is not an archive at all ("" otherwise)
};

// Package-index settings a lock carries (requirements.txt --index-url etc.); the command line
// overrides them.
struct IndexSettings {
  std::vector<std::string> index_urls;  // first = primary (--index-url), rest = extra
  std::vector<std::string> find_links;
};

struct LockSelection {
  std::string platform = "linux-64";
  std::string environment = "default";  // pixi only
};

struct LockFile {
  LockFormat format = LockFormat::kExplicit;
  int version = 0;  // format version: 1 for conda-lock, 4-7 for pixi, 0 for @EXPLICIT
  std::string path;
  std::vector<std::string> platforms;  // declared platforms, if the format lists them
  std::vector<std::string> environments;  // pixi
  std::vector<PackageRef> packages;    // selected for the platform, in lock order
  IndexSettings index;                 // from the lock (requirements.txt), may be empty
};

// lock_format_name plus the version where it varies: "pixi-v6", "conda-lock-v1", "explicit".
std::string lock_format_label(const LockFile& lock);

// Detects the format from `content` (path is for messages and for resolving relative paths).
Result<LockFormat> detect_lock_format(const std::string& content, const std::string& path);

// Reads and parses a lock file, keeping the entries for `sel.platform` plus noarch ones.
// Entries without any hash are an error (kInvalidInput) naming the lines: we never install
// unverified bytes. Other errors: kNotFound / kIo when the file cannot be read; kInvalidInput
// for everything about its content. Never throws (yaml-cpp exceptions are converted).
// Pure functions of their inputs (plus the cwd, for a relative `path`): thread-safe.
// Cost: dominated by yaml-cpp building its node tree, ~5 MB/s (the 2.2 MB turtlesim
// pixi.lock takes ~0.45 s); @EXPLICIT files are a single linear scan.
Result<LockFile> load_lock(const std::string& path, const LockSelection& sel);
Result<LockFile> parse_lock(const std::string& content, const std::string& path,
                            const LockSelection& sel);

// "name-version-build.ext" -> name, version, build (empty on failure).
struct CondaFileName {
  std::string name, version, build;
};
std::optional<CondaFileName> parse_conda_file_name(const std::string& file_name);

// The host's conda subdir: "linux-64", "linux-aarch64", "osx-arm64", ...
std::string host_platform();

}  // namespace mat
