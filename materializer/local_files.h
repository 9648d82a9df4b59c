// Which local files a run may read because a lock (or a package index) names them: the file://
// URLs of packages, indexes and find-links, local paths in locks (which become file:// URLs)
// and requirements.txt includes. materializer runs as root: without this, a lock saying
// `file:///etc/shadow` had the file read and its hash printed.
//
// The policy: local files only inside the allowed folders, which are each --allow-file-urls DIR
// and, when the lock itself is a local regular file, the lock's own folder. A lock read from
// anything else (a pipe such as /dev/stdin) has no folder of its own. Folders and targets are
// both resolved with realpath, so neither symlinks nor ".." can lead outside; a target that
// does not exist (yet) is resolved up to its deepest existing folder, and refused if the rest
// climbs with "..". check_url() returns the URL to read: the one given when libcurl would open
// the resolved path through it anyway, else the URL of the resolved path, so what is read is
// exactly what was checked (up to a rename racing the read, which needs write access to an
// allowed folder).
//
// Thread safety: immutable after make(); check_* may be called from any thread.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "materializer/base/status.h"

namespace mat {

class LocalFiles {
 public:
  // Errors: kInvalidInput when an allowed DIR does not exist or is not a directory.
  static Result<LocalFiles> make(const std::string& lock_path,
                                 const std::vector<std::string>& allowed_dirs);
  // Every local file allowed: for unit tests and library callers that read trusted locks.
  static LocalFiles anywhere();

  // `url` must be a file:// URL. Returns the file:// URL to read (see above) when its resolved
  // path lies in an allowed folder; else kInvalidInput "<url, credentials removed>: <why>; pass
  // --allow-file-urls DIR ...". Reads nothing but directory entries (realpath).
  Result<std::string> check_url(std::string_view url) const;
  // The same for an absolute local path; returns the resolved path.
  Result<std::string> check_path(const std::string& path) const;

  const std::vector<std::string>& roots() const { return roots_; }
  bool unrestricted() const { return anywhere_; }

 private:
  Result<std::string> resolve_and_check(const std::string& path, const std::string& shown) const;

  bool anywhere_ = false;
  std::vector<std::string> roots_;  // realpath'ed
};

}  // namespace mat
