// Writes confined to one directory tree (a "root": the prefix, a package tree in the cache),
// checked at the moment of the write.
//
// Why: a prefix is shared by hundreds of packages, and a symlink one package made can redirect
// a later package's write ("a/b -> .." from one, "a/b/c -> ../.." from the next, then a file
// "a/b/c/x"). Checking each package's paths on its own cannot see that, and neither can any
// check made before the write. So every create, link, symlink, mkdir, rename and unlink in the
// prefix goes through this file, in two steps:
//   1. the parent directory is opened beneath the root's fd: openat2(RESOLVE_BENEATH |
//      RESOLVE_NO_MAGICLINKS), which follows symlinks only while they stay below the root
//      ("lib64 -> lib" is fine, "x -> ..", "x -> /etc" and /proc magic links are not);
//      kernels without openat2 get the same rules from a component walk (O_NOFOLLOW per
//      component, symlinks read and resolved here, ".." never above the root);
//   2. the entry is made relative to that directory fd with ONE name component and no
//      following of a symlink at that name (O_CREAT|O_EXCL|O_NOFOLLOW, linkat without
//      AT_SYMLINK_FOLLOW, symlinkat, mkdirat, renameat, unlinkat).
// An existing entry is never written through: replacing means unlink, then create anew (a
// prefix file may be a hard link into the cache).
//
// Cost: step 1 is one syscall (openat2) per directory, step 2 one per entry; callers that
// write many files resolve each directory once and reuse the fd (link_internal.h DirCache).
// Functions are thread-safe; fds are the caller's.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "materializer/base/fs.h"
#include "materializer/base/status.h"

namespace mat {

// How symlinks on the way to a directory are treated.
enum class Follow {
  kBeneath,  // followed while they resolve below the root (prefixes: conda follows them too)
  kNever,    // never: any symlink component fails (cache trees, whose paths.json lists real
             // files and directories only)
};

struct BeneathDir {
  UniqueFd fd;               // O_PATH directory fd: use it as the dirfd of *at() calls
  bool via_symlink = false;  // a symlink was followed on the way (lexical path != real path)
};

// Opens directory `rel` ("" = the root itself; "a/b" otherwise, no leading '/') beneath
// `root_fd`. Errors, each naming `rel` and `root_name` ("the prefix"):
//   kCorrupt   `rel` resolves outside the root (".." above it, an absolute or climbing symlink,
//              a magic link), has a symlink component with Follow::kNever, or a component
//              that is not a directory;
//   kNotFound  a component does not exist;
//   kIo        anything else (errno text).
// Cost: one openat2 (two when kBeneath meets a symlink: the first, RESOLVE_NO_SYMLINKS, tells
// whether the lexical path is the real one); the fallback walk costs one openat per component.
Result<BeneathDir> open_dir_beneath(int root_fd, std::string_view rel, Follow follow,
                                    std::string_view root_name);

// ("a/b", "c") for "a/b/c"; ("", "c") for "c".
std::pair<std::string_view, std::string_view> split_parent(std::string_view rel);

// ---- entry operations in a directory fd from open_dir_beneath --------------------------------
// `name` must be ONE component (no '/', not "." or ".."): anything else is refused with EINVAL
// without a syscall. No operation follows a symlink at `name`. Each returns 0 or an errno value,
// so callers keep their own messages (and their fallbacks, e.g. EXDEV/EMLINK on link).

enum class Existing {
  kFail,     // EEXIST if `name` exists
  kReplace,  // an existing non-directory is unlinked and the operation retried once
};

// open(O_WRONLY|O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC, mode & 0777); *fd receives the file.
int create_file_at(int dir_fd, std::string_view name, mode_t mode, Existing existing, UniqueFd* fd);
// linkat(src_dir, src, dst_dir, dst, 0): a symlink at `src` is linked itself, never followed.
int link_at(int src_dir, std::string_view src, int dst_dir, std::string_view dst,
            Existing existing);
int symlink_at(const std::string& target, int dir_fd, std::string_view name, Existing existing);
// mkdirat; an existing directory (or symlink to one: "lib64 -> lib") is success; any other
// entry is unlinked and the directory made.
int mkdir_at(int dir_fd, std::string_view name, mode_t mode);
// unlinkat(name, 0); a missing entry is success.
int unlink_at(int dir_fd, std::string_view name);
// Opens `name` for reading (O_RDONLY|O_NOFOLLOW): ELOOP if it is a symlink.
int open_read_at(int dir_fd, std::string_view name, UniqueFd* fd);
int read_link_at(int dir_fd, std::string_view name, std::string* target);

// Reads the whole file `name` (O_NOFOLLOW). Errors name `shown`.
Result<std::string> read_file_at(int dir_fd, std::string_view name, const std::string& shown);
// Writes `data` to a new temp file in dir_fd, fsyncs it and renames it over `name`: readers
// see the old or the new content, and an existing `name` (even a hard link into the cache) is
// replaced, never written to. Writes, fsync and rename go through `fs`. Errors name `shown`.
Status write_file_atomic_at(int dir_fd, std::string_view name, std::string_view data, mode_t mode,
                            Fs& fs, const std::string& shown);
// The names in the directory, without "." and "..", unsorted.
Result<std::vector<std::string>> list_dir_at(int dir_fd, const std::string& shown);

// ---- a root and one-off operations on relative paths -----------------------------------------

// A directory that writes must stay under. Move-only. The root itself is trusted (the user
// named it); everything below it is resolved with open_dir_beneath(Follow::kBeneath).
class Root {
 public:
  Root() = default;
  // Opens `path` (absolute), creating it and its missing parents first when `create`.
  static Result<Root> open(const std::string& path, bool create, std::string name);

  int fd() const { return fd_.get(); }
  const std::string& path() const { return path_; }
  const std::string& name() const { return name_; }  // for messages: "the prefix"

  // The directory `rel` beneath the root (Follow::kBeneath).
  Result<BeneathDir> dir(std::string_view rel) const;
  // mkdir -p of `rel` beneath the root, each level through mkdir_at.
  Status make_dirs(std::string_view rel) const;
  // write_file_atomic_at in the parent of `rel`.
  Status write_file_atomic(std::string_view rel, std::string_view data, mode_t mode, Fs& fs) const;
  // unlink_at in the parent of `rel`; a missing entry (or missing parent) is success.
  Status remove(std::string_view rel) const;
  // read_file_at in the parent of `rel`.
  Result<std::string> read_file(std::string_view rel) const;

 private:
  // Runs op(dir_fd, base) in the parent of `rel` (the root's own fd for a top-level name).
  template <typename F>
  auto in_parent(std::string_view rel, F op) const -> decltype(op(0, rel));

  UniqueFd fd_;
  std::string path_, name_;
};

// Tests only: true makes open_dir_beneath use the component walk, as on a kernel without
// openat2. Process-wide.
void force_beneath_walk_for_testing(bool on);

}  // namespace mat
