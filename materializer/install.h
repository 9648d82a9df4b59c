// The install pipeline: lock → fetch (curl-multi thread) → verify → publish → extract (TBB) →
// link (TBB) → records. `prewarm` is the same without the link stage.
//
// run_install() is the stage driver: it reads as the list of stages, prints every per-package
// failure in lock order at the end, writes the JSON report, and returns the process exit code
// (0 ok, 1 a package failed, 2 usage / malformed lock).
#pragma once

#include <string>

#include "cache/store.h"
#include "materializer/link.h"
#include "materializer/lock.h"

namespace mat {

struct InstallOptions {
  std::string lock_path;
  LockSelection selection;
  std::string prefix;  // empty for prewarm
  std::string cache_dir;
  int jobs = 0;  // 0 = all cores
  int max_downloads = 50;
  int max_connections_per_host = 6;  // --max-connections-per-host (0: no limit)
  double stall_timeout_s = 15;       // --stall-timeout: no byte for this long = retry/resume
  bool offline = false;
  bool stream = true;  // --no-stream: extract a .conda only once its download ended
  // --max-expanded-size, --max-expansion-ratio, --max-files-per-package
  cache::ExtractLimits extract_limits;
  std::string report_path;
  std::string trace_path;  // --trace: Chrome trace-event JSON
  bool force = false;      // --force: ignore the no-op stamp
  std::string ca_bundle;
  std::string python_version;  // overrides the lock's python X.Y
  std::string python_path;     // --python: interpreter for wheels (X.Y, tags, shebang)
  IndexSettings index;         // --index-url (index_urls[0]) / --find-links
  std::vector<std::string> extra_index_urls;  // --extra-index-url
  bool compile = false;                       // --compile: .pyc for the installed wheels
  std::vector<std::string> extras;            // --extra (pylock.toml)
  std::vector<std::string> groups;            // --group (pylock.toml; default: its default-groups)
  LinkMode link_mode = LinkMode::kAuto;
  int verbosity = 1;         // 0 quiet, 1 normal, 2 verbose
  bool dry_run = false;      // print the plan (after index resolution) and stop
  std::string command_line;  // for conda-meta/history and the report
  // --allow-file-urls: folders whose files file:// URLs (and local paths, requirements
  // includes) may name, besides the lock's own folder (local_files.h).
  std::vector<std::string> allow_file_urls;
  int64_t max_lock_bytes = kDefaultMaxLockBytes;  // --max-lock-size
};

int run_install(const InstallOptions& opts);

// Default cache: $MATERIALIZER_CACHE_DIR, else ${XDG_CACHE_HOME:-~/.cache}/materializer.
std::string default_cache_dir();

// `materializer cache stats [--json] | verify [--repair] | clean [--all]`.
int run_cache_command(const std::string& what, const std::string& cache_dir, bool all, bool json,
                      bool repair);

}  // namespace mat
