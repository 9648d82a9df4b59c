// pypi_plan: turns the PyPI entries of a lock into downloadable wheels for one target
// interpreter, before anything is downloaded or touched:
//
//   1. the target interpreter: --python PATH (probed), else the lock's conda python, else the
//      conda python already in the prefix (conda-meta/python-*.json), else --python-version
//   2. markers and requires-python evaluated against it; excluded entries are skipped (noted)
//   3. one wheel per entry: the lock's URL (conda-lock, pixi), the best-ranked compatible wheel
//      of the lock's candidates (pylock.toml, uv.lock), or the index's files with an allowed hash
//      (requirements.txt, poetry.lock; --index-url/--extra-index-url/--find-links override)
//   4. anything that is not a wheel — sdists, git/path/directory sources — is refused as a whole
//      with every such entry listed, so no half environment is built
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "materializer/base/status.h"
#include "materializer/lock.h"
#include "materializer/pypi.h"

namespace mat {

struct PypiPlanOptions {
  std::string prefix;          // absolute; "" for prewarm
  std::string platform;        // conda subdir of the target
  std::string python_path;     // --python
  std::string python_version;  // --python-version
  // Command-line index settings; each kind given overrides the lock's own of that kind:
  // --index-url (cli_index.index_urls[0]) the primary, --extra-index-url the extras,
  // --find-links the find-links. Default primary: PyPI.
  IndexSettings cli_index;
  std::vector<std::string> cli_extra_index_urls;
  std::vector<std::string> extras;  // --extra: PEP 751 `extras` marker set
  std::vector<std::string> groups;  // --group: `dependency_groups`; default: the lock's
                                    // default-groups
  std::string ca_bundle;
  bool offline = false;
  int max_downloads = 50;
  int max_connections_per_host = 6;  // as InstallOptions
  double stall_timeout_s = 15;
  const LocalFiles* local_files = nullptr;  // file:// policy for index pages' links
};

struct PypiPlan {
  std::optional<pypi::TargetPython> target;  // set when the lock has PyPI entries
  std::vector<PackageRef> wheels;            // resolved, lock order; url/file_name/sha256 set
  std::vector<std::string> notes;            // entries skipped (marker, project itself)
};

// Errors: kInvalidInput (exit 2: no interpreter, sdists or unsupported sources, no compatible
// wheel, malformed marker; the message lists every offending entry), kNotFound / kRetryable
// (exit 1: the index did not have or did not answer for a pin).
Result<PypiPlan> plan_pypi(const LockFile& lock, const PypiPlanOptions& opts);

}  // namespace mat
