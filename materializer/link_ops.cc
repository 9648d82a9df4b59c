// File operations of the link stage: one call per package path, run from many TBB tasks at
// once. Every operation works relative to the prefix's directory fd (never chdir) and creates
// its target with O_EXCL / linkat / symlinkat, removing whatever was there only after EEXIST:
// in a fresh prefix that costs one syscall per file, and it never writes through an existing
// inode — a prefix file may be a hard link into the cache, which must stay untouched.
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "materializer/base/hash.h"
#include "materializer/link_internal.h"

namespace mat::link_internal {
namespace {

// Runs `make` (a *at() call returning 0 or -1/errno); on EEXIST removes the existing entry and
// runs it once more. A directory in the way fails with EISDIR, which the caller reports.
template <typename F>
int replace_existing(int dirfd, const std::string& rel, F make) {
  if (make() == 0) return 0;
  if (errno != EEXIST) return -1;
  if (unlinkat(dirfd, rel.c_str(), 0) != 0 && errno != ENOENT) return -1;
  return make();
}

Result<UniqueFd> create_file(int dirfd, const std::string& rel) {
  int fd = -1;
  int rc = replace_existing(dirfd, rel, [&] {
    fd = openat(dirfd, rel.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    return fd >= 0 ? 0 : -1;
  });
  if (rc != 0) return ErrnoStatus(rel + ": create", errno);
  return UniqueFd(fd);
}

Status set_mode(int fd, mode_t mode, const std::string& rel) {
  if (fchmod(fd, mode & 07777) != 0) return ErrnoStatus(rel + ": chmod", errno);
  return Status::Ok();
}

Status write_new_file(const OpContext& ctx, const std::string& rel, std::string_view data,
                      mode_t mode) {
  MAT_ASSIGN_OR_RETURN(UniqueFd fd, create_file(ctx.prefix_fd, rel));
  MAT_RETURN_IF_ERROR(ctx.fs->write_all(fd.get(), data.data(), data.size(), rel));
  return set_mode(fd.get(), mode, rel);
}

// Streams `in` to `out`. copy_file_range keeps the bytes in the kernel (and lets file systems
// that support it share extents); older kernels refuse it across file systems, hence the
// read/write fallback.
Status copy_bytes(int in, int out, int64_t size, Fs& fs, const std::string& rel) {
  int64_t done = 0;
  while (done < size) {
    ssize_t n = copy_file_range(in, nullptr, out, nullptr, static_cast<size_t>(size - done), 0);
    if (n > 0) {
      done += n;
      continue;
    }
    if (n == 0) break;  // source shrank under us; copy what there is
    if (errno == EINTR) continue;
    if (errno != EXDEV && errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP) {
      return ErrnoStatus(rel + ": copy", errno);
    }
    std::vector<char> buf(1 << 17);
    for (;;) {
      ssize_t r = pread(in, buf.data(), buf.size(), done);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) return ErrnoStatus(rel + ": read from cache", errno);
      if (r == 0) break;
      MAT_RETURN_IF_ERROR(fs.write_all(out, buf.data(), static_cast<size_t>(r), rel));
      done += r;
    }
    break;
  }
  return Status::Ok();
}

Status make_symlink_like(const OpContext& ctx, const std::string& src, const std::string& rel) {
  std::string target(256, '\0');
  for (;;) {
    ssize_t n = readlink(src.c_str(), target.data(), target.size());
    if (n < 0) return ErrnoStatus(src + ": readlink", errno);
    if (static_cast<size_t>(n) < target.size()) {
      target.resize(static_cast<size_t>(n));
      break;
    }
    target.resize(target.size() * 2);
  }
  int rc = replace_existing(ctx.prefix_fd, rel,
                            [&] { return symlinkat(target.c_str(), ctx.prefix_fd, rel.c_str()); });
  if (rc != 0) return ErrnoStatus(rel + ": symlink -> " + target, errno);
  return Status::Ok();
}

// A private copy of the tree file (reflinked when `try_clone`), with its mode and mtime: an
// unchanged mtime keeps timestamp-checked .pyc files valid, as shutil.copy2 does for conda.
Status copy_from_tree(const OpContext& ctx, const std::string& src, const std::string& rel,
                      bool try_clone, bool clone_required, OpOutcome* out) {
  UniqueFd in(open(src.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!in.valid()) {
    if (errno == ELOOP) return make_symlink_like(ctx, src, rel);  // paths.json said hardlink
    return ErrnoStatus(src + ": open", errno);
  }
  struct stat st;
  if (fstat(in.get(), &st) != 0) return ErrnoStatus(src + ": stat", errno);
  MAT_ASSIGN_OR_RETURN(UniqueFd dst, create_file(ctx.prefix_fd, rel));
  bool cloned = try_clone && ioctl(dst.get(), FICLONE, in.get()) == 0;
  if (try_clone && !cloned && clone_required) {
    return ErrnoStatus(rel + ": reflink from " + src + " (--link-mode reflink)", errno);
  }
  if (!cloned) {
    MAT_RETURN_IF_ERROR(copy_bytes(in.get(), dst.get(), st.st_size, *ctx.fs, rel));
    out->bytes_copied += st.st_size;
  }
  MAT_RETURN_IF_ERROR(set_mode(dst.get(), st.st_mode, rel));
  struct timespec times[2] = {st.st_atim, st.st_mtim};
  if (futimens(dst.get(), times) != 0) return ErrnoStatus(rel + ": set times", errno);
  return Status::Ok();
}

// conda's update_prefix on a fresh copy: replace, then (text only) the long-shebang rule.
Status copy_with_replacement(const OpContext& ctx, const std::string& src, const PathEntry& e,
                             OpOutcome* out) {
  struct stat st;
  if (stat(src.c_str(), &st) != 0) return ErrnoStatus(src + ": stat", errno);
  MAT_ASSIGN_OR_RETURN(std::string original, read_file(src));
  std::string data;
  if (e.file_mode == FileMode::kBinary) {
    Result<std::string> r = replace_prefix_binary(original, e.placeholder, ctx.prefix);
    if (!r.ok()) return r.status().with_context(e.target);
    data = std::move(r).value();
  } else {
    data = replace_long_shebang(replace_prefix_text(original, e.placeholder, ctx.prefix));
  }
  MAT_RETURN_IF_ERROR(write_new_file(ctx, e.target, data, st.st_mode));
  out->replaced = true;
  out->bytes_copied += static_cast<int64_t>(data.size());
  if (data != original) out->sha256_in_prefix = sha256_hex(data);
  return Status::Ok();
}

Status hardlink_from_tree(const OpContext& ctx, const std::string& src, const PathEntry& e,
                          OpOutcome* out) {
  int rc = replace_existing(ctx.prefix_fd, e.target, [&] {
    return linkat(AT_FDCWD, src.c_str(), ctx.prefix_fd, e.target.c_str(), 0);
  });
  if (rc == 0) return Status::Ok();
  if (ctx.forced) {
    return ErrnoStatus(e.target + ": hard link from " + src + " (--link-mode hardlink)", errno);
  }
  // EMLINK on a much-shared file, EXDEV on a tree that lives elsewhere: conda copies too. The
  // caller counts these and warns, so a degraded run is visible.
  out->fallback_copy = true;
  return copy_from_tree(ctx, src, e.target, false, false, out);
}

}  // namespace

Status link_path(const OpContext& ctx, const std::string& tree, const PathEntry& e,
                 OpOutcome* out) {
  if (e.type == PathType::kEntryPoint) return write_new_file(ctx, e.target, e.script, 0755);
  if (e.type == PathType::kDirectory) return make_prefix_dir(ctx.prefix_fd, e.target);
  std::string src = path_join(tree, e.path);
  if (e.type == PathType::kSoftlink) return make_symlink_like(ctx, src, e.target);
  if (!e.placeholder.empty()) return copy_with_replacement(ctx, src, e, out);
  bool clone = ctx.mode == LinkMode::kReflink;
  if (e.no_link) return copy_from_tree(ctx, src, e.target, clone, false, out);
  switch (ctx.mode) {
    case LinkMode::kHardlink:
      return hardlink_from_tree(ctx, src, e, out);
    case LinkMode::kReflink:
      return copy_from_tree(ctx, src, e.target, true, ctx.forced, out);
    default:
      return copy_from_tree(ctx, src, e.target, false, false, out);
  }
}

Status write_prefix_file(const OpContext& ctx, const std::string& rel, std::string_view data,
                         mode_t mode) {
  return write_new_file(ctx, rel, data, mode);
}

Status make_prefix_dir(int prefix_fd, const std::string& rel) {
  if (mkdirat(prefix_fd, rel.c_str(), 0777) == 0) return Status::Ok();
  if (errno != EEXIST) return ErrnoStatus(rel + ": mkdir", errno);
  struct stat st;
  // Follows symlinks: a "lib -> lib64" link from a package is a fine parent directory.
  if (fstatat(prefix_fd, rel.c_str(), &st, 0) == 0 && S_ISDIR(st.st_mode)) return Status::Ok();
  if (unlinkat(prefix_fd, rel.c_str(), 0) != 0 || mkdirat(prefix_fd, rel.c_str(), 0777) != 0) {
    return ErrnoStatus(rel + ": replace non-directory with a directory", errno);
  }
  return Status::Ok();
}

LinkMode probe_link_mode(const std::string& probe_dir, const std::string& fallback_src,
                         int prefix_fd) {
  std::string token = random_token();
  std::string src;
  bool own_src = false;
  if (!probe_dir.empty() && make_dirs(probe_dir).ok()) {
    src = path_join(probe_dir, ".tmp-" + std::to_string(getpid()) + "-" + token + "-probe");
    UniqueFd fd(open(src.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    own_src = fd.valid() && write(fd.get(), "materializer link probe\n", 24) == 24;
    if (fd.valid() && !own_src) unlink(src.c_str());
  }
  if (!own_src) src = fallback_src;
  if (src.empty()) return LinkMode::kCopy;
  std::string dst = ".materializer-probe-" + token;
  LinkMode mode = LinkMode::kCopy;
  if (linkat(AT_FDCWD, src.c_str(), prefix_fd, dst.c_str(), 0) == 0) {
    mode = LinkMode::kHardlink;
  } else {
    UniqueFd in(open(src.c_str(), O_RDONLY | O_CLOEXEC));
    UniqueFd out(openat(prefix_fd, dst.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (in.valid() && out.valid() && ioctl(out.get(), FICLONE, in.get()) == 0) {
      mode = LinkMode::kReflink;
    }
  }
  unlinkat(prefix_fd, dst.c_str(), 0);
  if (own_src) unlink(src.c_str());
  return mode;
}

}  // namespace mat::link_internal
