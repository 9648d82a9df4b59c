// File operations of the link stage: one call per package path, run from many TBB tasks at
// once. Every operation works on directory fds resolved beneath the prefix (or, for sources,
// beneath the package tree) by base/beneath.h, never on a multi-component path, so no symlink
// made by an earlier package can carry a write out of the prefix. Targets are created with
// O_EXCL / linkat / symlinkat, removing whatever was there only after EEXIST: in a fresh prefix
// that costs one syscall per file, and it never writes through an existing inode — a prefix
// file may be a hard link into the cache, which must stay untouched.
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "materializer/base/beneath.h"
#include "materializer/base/hash.h"
#include "materializer/link_internal.h"

namespace mat::link_internal {

bool in_conda_meta(std::string_view target) {
  constexpr std::string_view kMeta = "conda-meta";
  return target.starts_with(kMeta) &&
         (target.size() == kMeta.size() || target[kMeta.size()] == '/');
}

Result<int> DirCache::prefix_dir(std::string_view dir) {
  if (dir.empty()) return ctx_.prefix_fd;
  if (have_prefix_ && dir == prefix_key_) return prefix_fd_.get();
  have_prefix_ = false;
  prefix_fd_.reset();
  if (in_conda_meta(dir)) {
    return Corrupt("'" + std::string(dir) + "' is inside conda-meta/, which only the installer " +
                   "writes");
  }
  MAT_ASSIGN_OR_RETURN(BeneathDir d,
                       open_dir_beneath(ctx_.prefix_fd, dir, Follow::kBeneath, "the prefix"));
  if (d.via_symlink && ctx_.meta_ino != 0) {
    // Only a path through a symlink can alias conda-meta/ (the lexical case is refused above):
    // one fstat per such directory, none for the usual plain one.
    struct stat st;
    if (fstat(d.fd.get(), &st) != 0) return ErrnoStatus("'" + std::string(dir) + "': stat", errno);
    if (st.st_dev == ctx_.meta_dev && st.st_ino == ctx_.meta_ino) {
      return Corrupt("'" + std::string(dir) + "' leads into conda-meta/ through a symlink; only " +
                     "the installer writes there");
    }
  }
  prefix_fd_ = std::move(d.fd);
  prefix_key_.assign(dir);
  have_prefix_ = true;
  return prefix_fd_.get();
}

Result<int> DirCache::tree_dir(const std::string& tree, std::string_view dir) {
  if (tree != tree_ || !tree_root_.valid()) {
    have_tree_dir_ = false;
    tree_fd_.reset();
    // O_NOFOLLOW: the tree itself is a directory the cache made, never a link to elsewhere.
    tree_root_.reset(open(tree.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!tree_root_.valid()) {
      tree_.clear();
      return ErrnoStatus(tree + ": open extracted package", errno);
    }
    tree_ = tree;
  }
  if (dir.empty()) return tree_root_.get();
  if (have_tree_dir_ && dir == tree_key_) return tree_fd_.get();
  have_tree_dir_ = false;
  MAT_ASSIGN_OR_RETURN(BeneathDir d,
                       open_dir_beneath(tree_root_.get(), dir, Follow::kNever, "the package tree"));
  tree_fd_ = std::move(d.fd);
  tree_key_.assign(dir);
  have_tree_dir_ = true;
  return tree_fd_.get();
}

namespace {

// One entry in a resolved directory, with the path its messages show.
struct Entry {
  int dir_fd;
  std::string_view name;
  const std::string& shown;
};

Result<Entry> target_of(DirCache& dirs, const std::string& rel) {
  auto [dir, name] = split_parent(rel);
  Result<int> fd = dirs.prefix_dir(dir);
  if (!fd.ok()) return fd.status().with_context(rel);
  return Entry{*fd, name, rel};
}

Result<Entry> source_of(DirCache& dirs, const std::string& tree, const std::string& rel,
                        const std::string& shown) {
  auto [dir, name] = split_parent(rel);
  Result<int> fd = dirs.tree_dir(tree, dir);
  if (!fd.ok()) {
    return Status(fd.status().code(), shown + ": " + fd.status().message() +
                                          "; the cache entry is damaged: run `materializer cache "
                                          "verify --repair`, then rerun");
  }
  return Entry{*fd, name, shown};
}

Status create_file(const Entry& t, UniqueFd* fd) {
  if (int err = create_file_at(t.dir_fd, t.name, 0600, Existing::kReplace, fd)) {
    return ErrnoStatus(t.shown + ": create", err);
  }
  return Status::Ok();
}

Status set_mode(int fd, mode_t mode, const std::string& rel) {
  if (fchmod(fd, mode & 07777) != 0) return ErrnoStatus(rel + ": chmod", errno);
  return Status::Ok();
}

Status write_new_file(const OpContext& ctx, const Entry& t, std::string_view data, mode_t mode) {
  UniqueFd fd;
  MAT_RETURN_IF_ERROR(create_file(t, &fd));
  MAT_RETURN_IF_ERROR(ctx.fs->write_all(fd.get(), data.data(), data.size(), t.shown));
  return set_mode(fd.get(), mode, t.shown);
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

Status make_symlink_like(const Entry& src, const Entry& t) {
  std::string target;
  if (int err = read_link_at(src.dir_fd, src.name, &target)) {
    return ErrnoStatus(src.shown + ": readlink", err);
  }
  if (int err = symlink_at(target, t.dir_fd, t.name, Existing::kReplace)) {
    return ErrnoStatus(t.shown + ": symlink -> " + target, err);
  }
  return Status::Ok();
}

// A private copy of the tree file (reflinked when `try_clone`), with its mode and mtime: an
// unchanged mtime keeps timestamp-checked .pyc files valid, as shutil.copy2 does for conda.
Status copy_from_tree(const OpContext& ctx, const Entry& src, const Entry& t, bool try_clone,
                      bool clone_required, OpOutcome* out) {
  UniqueFd in;
  if (int err = open_read_at(src.dir_fd, src.name, &in)) {
    if (err == ELOOP) return make_symlink_like(src, t);  // paths.json said hardlink
    return ErrnoStatus(src.shown + ": open", err);
  }
  struct stat st;
  if (fstat(in.get(), &st) != 0) return ErrnoStatus(src.shown + ": stat", errno);
  UniqueFd dst;
  MAT_RETURN_IF_ERROR(create_file(t, &dst));
  bool cloned = try_clone && ioctl(dst.get(), FICLONE, in.get()) == 0;
  if (try_clone && !cloned && clone_required) {
    return ErrnoStatus(t.shown + ": reflink from " + src.shown + " (--link-mode reflink)", errno);
  }
  if (!cloned) {
    MAT_RETURN_IF_ERROR(copy_bytes(in.get(), dst.get(), st.st_size, *ctx.fs, t.shown));
    out->bytes_copied += st.st_size;
  }
  MAT_RETURN_IF_ERROR(set_mode(dst.get(), st.st_mode, t.shown));
  struct timespec times[2] = {st.st_atim, st.st_mtim};
  if (futimens(dst.get(), times) != 0) return ErrnoStatus(t.shown + ": set times", errno);
  return Status::Ok();
}

// conda's update_prefix on a fresh copy: replace, then (text only) the long-shebang rule.
Status copy_with_replacement(const OpContext& ctx, const Entry& src, const Entry& t,
                             const PathEntry& e, OpOutcome* out) {
  UniqueFd in;
  if (int err = open_read_at(src.dir_fd, src.name, &in)) {
    return ErrnoStatus(src.shown + ": open", err);
  }
  struct stat st;
  if (fstat(in.get(), &st) != 0) return ErrnoStatus(src.shown + ": stat", errno);
  std::string original(static_cast<size_t>(st.st_size), '\0');
  size_t got = 0;
  while (got < original.size()) {
    ssize_t n =
        pread(in.get(), original.data() + got, original.size() - got, static_cast<off_t>(got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus("read " + src.shown, errno);
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  original.resize(got);
  std::string data;
  if (e.file_mode == FileMode::kBinary) {
    Result<std::string> r = replace_prefix_binary(original, e.placeholder, ctx.prefix);
    if (!r.ok()) return r.status().with_context(e.target);
    data = std::move(r).value();
  } else {
    data = replace_long_shebang(replace_prefix_text(original, e.placeholder, ctx.prefix));
  }
  MAT_RETURN_IF_ERROR(write_new_file(ctx, t, data, st.st_mode));
  out->replaced = true;
  out->bytes_copied += static_cast<int64_t>(data.size());
  if (data != original) out->sha256_in_prefix = sha256_hex(data);
  return Status::Ok();
}

Status hardlink_from_tree(const OpContext& ctx, const Entry& src, const Entry& t, OpOutcome* out) {
  int err = link_at(src.dir_fd, src.name, t.dir_fd, t.name, Existing::kReplace);
  if (err == 0) return Status::Ok();
  if (ctx.forced) {
    return ErrnoStatus(t.shown + ": hard link from " + src.shown + " (--link-mode hardlink)", err);
  }
  // EMLINK on a much-shared file, EXDEV on a tree that lives elsewhere: conda copies too. The
  // caller counts these and warns, so a degraded run is visible.
  out->fallback_copy = true;
  return copy_from_tree(ctx, src, t, false, false, out);
}

}  // namespace

Status link_path(const OpContext& ctx, DirCache& dirs, const std::string& tree, const PathEntry& e,
                 OpOutcome* out) {
  if (e.type == PathType::kDirectory) return make_prefix_dir(ctx, dirs, e.target);
  MAT_ASSIGN_OR_RETURN(Entry t, target_of(dirs, e.target));
  if (e.type == PathType::kEntryPoint) return write_new_file(ctx, t, e.script, 0755);
  std::string shown = path_join(tree, e.path);
  MAT_ASSIGN_OR_RETURN(Entry src, source_of(dirs, tree, e.path, shown));
  if (e.type == PathType::kSoftlink) return make_symlink_like(src, t);
  if (!e.placeholder.empty()) return copy_with_replacement(ctx, src, t, e, out);
  bool clone = ctx.mode == LinkMode::kReflink;
  if (e.no_link) return copy_from_tree(ctx, src, t, clone, false, out);
  switch (ctx.mode) {
    case LinkMode::kHardlink:
      return hardlink_from_tree(ctx, src, t, out);
    case LinkMode::kReflink:
      return copy_from_tree(ctx, src, t, true, ctx.forced, out);
    default:
      return copy_from_tree(ctx, src, t, false, false, out);
  }
}

Status write_prefix_file(const OpContext& ctx, DirCache& dirs, const std::string& rel,
                         std::string_view data, mode_t mode) {
  MAT_ASSIGN_OR_RETURN(Entry t, target_of(dirs, rel));
  return write_new_file(ctx, t, data, mode);
}

Status make_prefix_dir(const OpContext& ctx, DirCache& dirs, const std::string& rel) {
  (void)ctx;
  if (in_conda_meta(rel)) {
    return Corrupt(rel + ": is conda-meta/ or inside it, which only the installer writes");
  }
  MAT_ASSIGN_OR_RETURN(Entry t, target_of(dirs, rel));
  if (int err = mkdir_at(t.dir_fd, t.name, 0777)) {
    return ErrnoStatus(rel + ": mkdir (replacing any non-directory)", err);
  }
  return Status::Ok();
}

LinkMode probe_link_mode(const std::string& probe_dir,
                         const std::pair<std::string, std::string>& fallback, int dst_dir_fd) {
  std::string token = random_token();
  UniqueFd src_dir;
  std::string src_name;
  bool own_src = false;
  if (!probe_dir.empty() && make_dirs(probe_dir).ok()) {
    src_dir.reset(open(probe_dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    src_name = ".tmp-" + std::to_string(getpid()) + "-" + token + "-probe";
    UniqueFd fd;
    own_src = src_dir.valid() &&
              create_file_at(src_dir.get(), src_name, 0644, Existing::kFail, &fd) == 0 &&
              write(fd.get(), "materializer link probe\n", 24) == 24;
    if (fd.valid() && !own_src) unlink_at(src_dir.get(), src_name);
  }
  if (!own_src) {
    // A file of the first package's tree, resolved like any source (no symlink on the way).
    src_dir.reset();
    if (fallback.first.empty()) return LinkMode::kCopy;
    UniqueFd root(open(fallback.first.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    auto [dir, name] = split_parent(fallback.second);
    if (!root.valid()) return LinkMode::kCopy;
    Result<BeneathDir> d = open_dir_beneath(root.get(), dir, Follow::kNever, "the package tree");
    if (!d.ok()) return LinkMode::kCopy;
    src_dir = std::move(d->fd);
    src_name = std::string(name);
  }
  std::string dst = temp_name_for(".materializer-probe");
  LinkMode mode = LinkMode::kCopy;
  if (link_at(src_dir.get(), src_name, dst_dir_fd, dst, Existing::kFail) == 0) {
    mode = LinkMode::kHardlink;
  } else {
    UniqueFd in, out;
    if (open_read_at(src_dir.get(), src_name, &in) == 0 &&
        create_file_at(dst_dir_fd, dst, 0600, Existing::kFail, &out) == 0 &&
        ioctl(out.get(), FICLONE, in.get()) == 0) {
      mode = LinkMode::kReflink;
    }
  }
  unlink_at(dst_dir_fd, dst);
  if (own_src) unlink_at(src_dir.get(), src_name);
  return mode;
}

}  // namespace mat::link_internal
