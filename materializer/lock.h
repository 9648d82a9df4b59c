// Lock-file reading: every supported format becomes one list of PackageRef in lock order.
//
// Formats are recognised from the content, not the file name:
//   conda-lock.yml v1      (YAML with `version: 1` and `package:` list; `manager: conda|pip`)
//   @EXPLICIT              (text: an `@EXPLICIT` line, then URL lines with #md5 / #sha256 /
//                           #sha256:<hex> fragments; `# platform: X` header optional)
//   pixi.lock v4 to v7     (YAML with `version: 4..7`, `environments:` and `packages:`;
//                           v7 platform names key the lists as written, e.g. "x86-cuda13")
//   pylock.toml            (PEP 751: TOML with `lock-version = "1.x"` and `packages`)
//   uv.lock                (TOML with `version = 1` and `[[package]]`; uv script locks too)
//   poetry.lock            (TOML with `[[package]]` and `[metadata]` holding `content-hash` or
//                           `lock-version`; files in `files = [...]` or `[metadata.files]`)
//   requirements.txt       (pip's line format, pinned `name==version` with `--hash=sha256:`,
//                           as pip-compile --generate-hashes / pdm / poetry export write it)
// Conda entries are filtered by LockSelection::platform; PyPI-only formats (pylock, uv,
// poetry, requirements) have no conda platform: every entry is returned (uv.lock: every entry
// the selected extras and groups reach), `platforms` stays empty, and the driver picks wheels
// by the target interpreter's tags and markers.
// Pip/PyPI entries are returned with kind == kPypi; a single-file entry's url is kept as
// written (a git URL's fragment is its commit), relative paths resolved.
// Source packages (pixi `conda_source:`, or a `conda:` location that is not a .conda/.tar.bz2
// archive) are an error: we install built archives only. PyPI sources that are not archives
// (git, directory, editable, virtual projects) are returned with `source_kind` set and left to
// the driver, which skips the project itself and refuses the rest.
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

class LocalFiles;  // local_files.h

// --max-lock-size default. The largest real lock in the shared corpus is 2.2 MB (a pixi.lock);
// yaml-cpp holds ~35x a YAML lock's size while parsing (a 63 MB conda-lock.yml peaked at
// 2.3 GB and took 35 s), so 16 MiB (7x the largest real lock) bounds a run at about 600 MB.
inline constexpr int64_t kDefaultMaxLockBytes = int64_t{16} << 20;

enum class LockFormat {
  kCondaLockV1,
  kExplicit,
  kPixi,
  kPylock,        // PEP 751 pylock.toml
  kUvLock,        // uv.lock
  kRequirements,  // requirements.txt with --hash (pip-tools / --require-hashes form)
  kPoetry,        // poetry.lock
};
// "conda-lock-v1", "explicit", "pixi", "pylock", "uv-lock", "requirements", "poetry-lock"
const char* lock_format_name(LockFormat f);

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
  bool requested = true;               // write REQUESTED (a top-level, user-named package):
                                       // uv.lock marks the project's (and workspace members',
                                       // script requirements') direct dependencies; every
                                       // other format names all its packages, so all are
                                       // requested
  std::string source_kind;             // when the entry is not a wheel or sdist ("" otherwise):
                                       // "git"/"vcs" (VCS URL), "directory" (local tree:
                                       // pylock, uv, poetry, requirements), "path" (local
                                       // tree in pixi/conda-lock; poetry/uv non-wheel file),
                                       // "archive" (pylock non-wheel archive), "url" (poetry
                                       // non-wheel URL), "editable"/"virtual" (uv project)
};

// Package-index settings a lock carries (requirements.txt --index-url etc.); the command line
// overrides them.
struct IndexSettings {
  std::vector<std::string> index_urls;  // first = primary (--index-url), rest = extra
  std::vector<std::string> find_links;  // URLs; local directories as file:// URLs
  bool no_index = false;                 // --no-index: find-links only
};

struct LockSelection {
  std::string platform = "linux-64";
  std::string environment = "default";  // pixi only
  // uv.lock only (as `uv sync --extra/--group`): optional extras of the root projects and
  // dependency groups to install. Empty = uv's defaults: no extras; groups {"dev"} (uv's
  // default-groups, unless pyproject's [tool.uv] changes it, which the lock does not record).
  // A non-empty `groups` replaces the default, as --group does for pylock.toml. Packages only
  // reachable through unselected extras or groups are left out of LockFile::packages.
  std::vector<std::string> extras;
  std::vector<std::string> groups;

  // Reading limits and policy (not selection proper; passed here because every reader takes
  // this struct). A lock larger than max_bytes is refused before it is parsed (--max-lock-size).
  int64_t max_bytes = kDefaultMaxLockBytes;
  // Where requirements.txt `-r`/`-c` includes may be read from (--allow-file-urls and the
  // lock's folder); null: anywhere (unit tests, trusted callers).
  const LocalFiles* local_files = nullptr;
};

// A file besides the lock itself whose bytes decided the result (a requirements.txt `-r`
// include): the no-op stamp re-hashes it, since the lock's own bytes do not cover it.
struct InputFile {
  std::string path;    // absolute, as read
  std::string sha256;  // of the bytes parsed
};

struct LockFile {
  LockFormat format = LockFormat::kExplicit;
  int version = 0;  // format version: 1 for conda-lock, 4-7 for pixi, 0 for @EXPLICIT and
                   // requirements.txt, 1 for pylock ("1.0") and uv.lock, poetry's major
                   // lock-version (1 for "1.1", 2 for "2.1")
  std::string path;
  std::vector<std::string> platforms;  // declared conda platforms, if the format lists them
  std::vector<std::string> environments;  // pixi environment names
  std::vector<PackageRef> packages;    // selected for the platform, in lock order
  int64_t entries = 0;                 // package entries in the file, selected or not (all
                                       // platforms and environments): "0 of N selected"
  std::vector<std::string> entry_platforms;  // conda platforms of those entries (subdirs for
                                             // @EXPLICIT), first seen first; "" not listed
  IndexSettings index;                 // from the lock (requirements.txt), may be empty
  std::vector<InputFile> input_files;  // other files read (requirements `-r` includes)

  // ---- PyPI formats
  std::string requires_python;  // file-level PEP 440 specifier set (pylock, uv.lock, poetry
                                // metadata.python-versions translated); "" = any
  std::vector<std::string> environment_markers;  // pylock `environments`: PEP 508 markers
                                                 // the lock claims to cover (any may match)
  std::vector<std::string> default_groups;       // pylock `default-groups`: the value of the
                                                 // `dependency_groups` marker variable when
                                                 // the user names no group
};

// lock_format_name plus the version where it varies: "pixi-v6", "conda-lock-v1", "explicit".
std::string lock_format_label(const LockFile& lock);

// Detects the format from `content` (path is for messages and for resolving relative paths).
Result<LockFormat> detect_lock_format(const std::string& content, const std::string& path);

// Reads and parses a lock file, keeping the entries for `sel.platform` plus noarch ones
// (PyPI-only formats ignore `sel`). An @EXPLICIT file without `# platform:` keeps the entries
// whose URL names the target's subdir or noarch, and those whose URL names none (a plain
// folder of packages: such a file is for one platform by construction; micromamba installs
// them all); entries naming another subdir are left out.
// Every selected entry's text fields (name, version, build, subdir, channel, URLs, file names,
// markers) must be valid UTF-8 without control characters and of bounded length: they become
// paths, JSON and terminal output. A package selected twice (conda names as written; PyPI names
// PEP 503-normalised, for the formats that pin one file per name: conda-lock pip entries and
// pixi pypi entries) is an error naming both lines, unless both entries are the same file (same URL,
// no hash that disagrees: the later is dropped, its hashes kept). PyPI formats with markers (pylock, uv, poetry,
// requirements) may list a name several times for different environments: the driver checks
// those once markers are evaluated. A conda package and a PyPI package of the same name are
// not duplicates: the two namespaces differ (conda's pytorch is PyPI's torch) and the lock does
// not record a mapping.
// Documents are checked against sel.max_bytes and kMaxDocDepth before any parser sees them
// (doc_limits.h).
// Entries without any hash are an error (kInvalidInput) naming the lines: we never install
// unverified bytes (pylock files need sha256, requirements pins --hash=sha256:, poetry
// packages at least one sha256 file hash; a uv.lock wheel without a hash is left to the driver,
// which refuses it only if it is the one chosen). Other errors: kNotFound / kIo when the file
// (or a requirements `-r` include) cannot be read; kInvalidInput for everything about its
// content. Never throws (yaml-cpp and toml++ exceptions are converted).
// Pure functions of their inputs, plus the cwd for a relative `path` and the files a
// requirements.txt includes: thread-safe.
// Cost: dominated by yaml-cpp building its node tree, ~5 MB/s (the 2.2 MB turtlesim
// pixi.lock takes ~0.45 s); toml++ is ~10x faster (the 1.5 MB pydantic-ai uv.lock, markers
// included, ~50 ms); @EXPLICIT and requirements files are a linear scan.
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
