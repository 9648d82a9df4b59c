// cache/trust.h: the cache's permission model (README "Permission model"), after ssh's
// StrictModes for ~/.ssh. Internal to cache/.
//
// Files in trees/ are hard-linked into prefixes and run there, as root on the workers; so
// whoever can change a cache file can run code as every user of the cache. The store therefore
// trusts only what is owned by the effective uid or by root and writable by nobody else:
//
//   - the cache root, v1/ and v1/{archives,trees,locks,meta,tmp}: owned by euid or root, no group or
//     other write bit, real directories (not symlinks). Sticky does not excuse a writable one:
//     entry names are predictable (content digests), so in a sticky trees/ anyone could claim
//     trees/<key> first, and in locks/ hold any entry's lock for ever.
//   - every directory above the root, from "/": owned by euid or root, and not writable by
//     group or others unless sticky (like /tmp), where others cannot rename or remove what they
//     do not own (the component below it must pass the same owner check in turn).
//   - "writable by group" everywhere means a group write bit on an object whose group is not
//     gid 0: root's own group has only root-equivalent members, and files extracted as root
//     keep a package's group write (conda's 0664/0775 modes in prefixes made as root).
//   - each entry as it is looked up: trees/<key>, its pkg/ and manifest.json, an archive:
//     owned by euid or root, not writable by group or others; the manifest names the entry.
//
// Inside an entry, the files are not stat()ed one by one on the warm path (a tree can have
// 30k files; linking one costs ~18 µs): extraction creates every file and directory with no
// other write bit and no group write bit unless the group is root's (gid 0: see below),
// whatever the package says (see cache/extract.cc), in a temp dir of a
// trusted tmp/, before the rename that publishes it; a manifest of version 2 certifies that
// (version 1 entries came from an extractor that kept a package's 0666). Nobody but euid and
// root can then change anything below a trusted entry directory. `cache verify` checks every
// file too.
//
// Thread safety: pure functions of their arguments (and of the file system).
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <string>
#include <vector>

#include "materializer/base/fs.h"
#include "materializer/base/status.h"

namespace mat::cache {

// Why an object of the store (directory, entry, file) described by `st` is not to be trusted
// by effective uid `euid`, e.g. "writable by group and others (mode 0777)"; "" if it may be.
std::string distrust_reason(const struct stat& st, uid_t euid);

// The same for a directory above the cache root: writable by others is fine when sticky.
std::string distrust_ancestor_reason(const struct stat& st, uid_t euid);

// What to do about what distrust_reason() (or, with `ancestor`, distrust_ancestor_reason())
// found for `path`: "`chmod go-w PATH`", or for a foreign owner a `chown` (cache directories) or
// another --cache-dir (directories above the cache).
std::string trust_fix(const std::string& path, const struct stat& st, uid_t euid, bool ancestor);

// One directory that failed the check, for messages and `cache verify`.
struct TrustProblem {
  std::string path;
  std::string why;  // "owned by uid 12345, not by uid 0 or root"
  std::string fix;  // "`chmod go-w PATH`"
};

// Resolves `root` (absolute) to its real path, checks every directory from "/" down to it and
// creates what is missing of it and below it: `subdirs` are paths relative to the root, parents
// first ("v1", "v1/trees", ...). Components are opened with O_PATH | O_NOFOLLOW one at a time
// and created with mkdirat under the checked parent, so nothing is created through a symlink
// or in a directory that failed. Problems are appended to `problems`; creation stops at the
// first. Returns the real root. Errors: kIo / kNoSpace for failures other than distrust.
// `optional_subdirs` (after `subdirs`) are checked the same way when they exist; one that cannot
// be created or opened is left out without an error.
Result<std::string> open_trusted_dirs(const std::string& root,
                                      const std::vector<std::string>& subdirs, uid_t euid,
                                      std::vector<TrustProblem>* problems,
                                      const std::vector<std::string>& optional_subdirs = {});

// Creates a new file with O_CREAT | O_EXCL | O_NOFOLLOW: never through a symlink or into an
// existing file, whoever planted it. Errors: kIo ("create PATH: File exists"), kNoSpace.
Result<UniqueFd> create_new_file(const std::string& path, mode_t mode);

}  // namespace mat::cache
