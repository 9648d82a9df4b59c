// pypi_index: resolve pinned "name==version" + allowed hashes on package indexes, the standard
// Simple API way (PEP 691 JSON, with PEP 503 HTML as fallback) plus --find-links pages or
// directories. Used for requirements.txt and poetry.lock, which name files and hashes but no
// URLs. Pages are fetched with fetch/ (one curl-multi loop, all packages' pages in flight at
// once), so credentials, proxies, TLS and retries behave as for packages.
#pragma once

#include <string>
#include <vector>

#include "materializer/base/status.h"
#include "materializer/lock.h"
#include "materializer/pypi.h"

namespace mat::pypi {

struct IndexOptions {
  std::vector<std::string> index_urls;  // "https://pypi.org/simple" style roots; first = primary
  std::vector<std::string> find_links;  // URLs of HTML pages or file:// directories
  std::string ca_bundle;
  bool offline = false;
  int max_parallel = 50;
  int max_retries = 4;  // per page, as fetch::Options::max_retries (tests set 0)
  int max_host_connections = 6;  // as fetch::Options
  double stall_timeout_s = 15;   // as fetch::Options
  // Which file:// files a page may point at (its links are refused otherwise, before they are
  // read or hashed: a remote page must not make us read /etc/shadow); null: any.
  const LocalFiles* local_files = nullptr;
};

// For every ref with needs_index: looks up its project page on every index (and find-links),
// keeps files whose version equals ref.version, whose sha256 is allowed, and that are wheels
// compatible with `target`; picks the best-ranked and fills ref.url, ref.file_name, ref.sha256
// (and size when known). A file's sha256 comes from the page, else from the lock's own entry
// for that file name (ref.wheels/ref.sdists), else — local files only — from reading it; a
// remote file with none of these is refused. The allowed set is ref.allowed_sha256 plus the
// lock's per-file hashes. Yanked files are chosen only when no other wheel fits (pip's rule for
// exact pins). Refs whose only matching files are sdists get ref.sdists filled and no url.
// Per-package failures go to statuses[i]: kNotFound ("NAME==VER: no file with an allowed hash
// fits cp311-...; files seen: ..."), kRetryable when an index failed for that package,
// kInvalidInput when the ref has no version or no hash. Run-wide failures (no index
// configured, none reachable, --offline with only remote indexes) return an error. Messages
// never contain credentials. Blocks until every page is fetched; uses TBB for parsing.
Result<std::vector<Status>> resolve_on_index(std::vector<PackageRef>& refs,
                                             const TargetPython& target,
                                             const IndexOptions& opts);

}  // namespace mat::pypi
