#include "materializer/base/beneath.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <deque>

#include "materializer/base/path_name.h"

namespace mat {
namespace {

// openat2 is tried until the kernel (or a seccomp filter) says it does not exist; then every
// later call walks. Relaxed: a stale `true` costs one ENOSYS.
std::atomic<bool> g_have_openat2{true};
std::atomic<bool> g_force_walk{false};

// The kernel's MAXSYMLINKS: a cycle of links ends with ELOOP, as it would in open(2).
constexpr int kMaxSymlinks = 40;
// Marks write_file_atomic_at()'s temp names: "<name>.tmp-<pid>-<token>".
constexpr std::string_view kTempInfix = ".tmp-";
// openat2 returns EAGAIN when a rename or mount raced a ".." step; it is safe to retry.
constexpr int kMaxAgain = 8;

bool one_component(std::string_view name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string_view::npos &&
         name.find('\0') == std::string_view::npos;
}

// openat2 for a directory; returns the fd or -errno.
int openat2_dir(int root_fd, const std::string& rel, uint64_t resolve) {
  struct open_how how {};
  how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
  how.resolve = resolve;
  for (int attempt = 0;; ++attempt) {
    long fd = syscall(SYS_openat2, root_fd, rel.c_str(), &how, sizeof how);
    if (fd >= 0) return static_cast<int>(fd);
    if (errno == EAGAIN && attempt < kMaxAgain) continue;
    if (errno == EINTR) continue;
    return -errno;
  }
}

void push_front_components(std::string_view path, std::deque<std::string>* todo) {
  std::vector<std::string> comps;
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t end = path.find('/', pos);
    if (end == std::string_view::npos) end = path.size();
    if (end > pos) comps.emplace_back(path.substr(pos, end - pos));
    pos = end + 1;
  }
  for (auto it = comps.rbegin(); it != comps.rend(); ++it) todo->push_front(std::move(*it));
}

// The openat2 rules by hand, for kernels before 5.6: every component is opened with
// O_NOFOLLOW; a symlink is read and its target resolved from the directory holding it; ".."
// pops the walk's own stack, so it can never rise above the root (the kernel's ".." could,
// through a directory moved meanwhile; RESOLVE_BENEATH refuses that case with EAGAIN/EXDEV).
// Returns the fd or -errno (EXDEV for an escape, ELOOP for a symlink with kNever).
int walk_dir(int root_fd, std::string_view rel, Follow follow, bool* via_symlink) {
  std::vector<UniqueFd> stack;  // directories below the root, deepest last
  std::deque<std::string> todo;
  push_front_components(rel, &todo);
  int links = 0;
  while (!todo.empty()) {
    std::string comp = std::move(todo.front());
    todo.pop_front();
    if (comp == ".") continue;
    if (comp == "..") {
      if (stack.empty()) return -EXDEV;
      stack.pop_back();
      continue;
    }
    int cur = stack.empty() ? root_fd : stack.back().get();
    int fd = ::openat(cur, comp.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) {
      stack.emplace_back(fd);
      continue;
    }
    int err = errno;
    if (err != ENOTDIR && err != ELOOP) return -err;
    std::string target;
    if (read_link_at(cur, comp, &target) != 0) return -ENOTDIR;  // a file, not a link
    if (follow == Follow::kNever) return -ELOOP;
    if (++links > kMaxSymlinks) return -ELOOP;
    if (target.empty()) return -ENOENT;
    if (target.front() == '/') return -EXDEV;  // absolute: RESOLVE_BENEATH refuses these too
    *via_symlink = true;
    push_front_components(target, &todo);
  }
  if (stack.empty()) {
    int fd = ::openat(root_fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    return fd >= 0 ? fd : -errno;
  }
  return stack.back().release();
}

Status resolve_error(std::string_view rel, Follow follow, std::string_view root_name, int err) {
  std::string subject = "'" + shown_name(rel) + "'";
  switch (err) {
    case EXDEV:
      return Corrupt(subject + " resolves outside " + std::string(root_name) +
                     " (a symlink on the way leads above it or to an absolute path)");
    case ELOOP:
      if (follow == Follow::kNever) {
        return Corrupt(subject + ": a directory on the way is a symlink in " +
                       std::string(root_name) + ", where none may be");
      }
      return Corrupt(subject + ": too many levels of symlinks, or a /proc magic link, in " +
                     std::string(root_name));
    case ENOTDIR:
      return Corrupt(subject + ": a component on the way is not a directory in " +
                     std::string(root_name));
    case ENOENT:
      return NotFound(subject + ": a directory on the way does not exist in " +
                      std::string(root_name));
    default:
      return ErrnoStatus(subject + ": open directory in " + std::string(root_name), err);
  }
}

}  // namespace

void force_beneath_walk_for_testing(bool on) { g_force_walk.store(on); }

std::pair<std::string_view, std::string_view> split_parent(std::string_view rel) {
  size_t slash = rel.rfind('/');
  if (slash == std::string_view::npos) return {std::string_view(), rel};
  return {rel.substr(0, slash), rel.substr(slash + 1)};
}

Result<BeneathDir> open_dir_beneath(int root_fd, std::string_view rel, Follow follow,
                                    std::string_view root_name) {
  BeneathDir out;
  if (!rel.empty() && rel.front() == '/') return resolve_error(rel, follow, root_name, EXDEV);
  if (rel.find('\0') != std::string_view::npos) {
    return resolve_error(rel, follow, root_name, ENOENT);
  }
  std::string path = rel.empty() ? std::string(".") : std::string(rel);
  if (!g_force_walk.load(std::memory_order_relaxed) &&
      g_have_openat2.load(std::memory_order_relaxed)) {
    // First without symlinks: the usual case (a plain directory) costs one call and proves
    // the lexical path is the real one; only a path through a symlink pays a second call.
    int fd = openat2_dir(root_fd, path, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS);
    if (fd == -ELOOP && follow == Follow::kBeneath) {
      out.via_symlink = true;
      fd = openat2_dir(root_fd, path, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS);
    }
    if (fd >= 0) {
      out.fd.reset(fd);
      return out;
    }
    // ENOSYS: no openat2 (kernel < 5.6); EPERM: a seccomp filter that predates it.
    if (fd != -ENOSYS && fd != -EPERM) return resolve_error(rel, follow, root_name, -fd);
    g_have_openat2.store(false, std::memory_order_relaxed);
    out.via_symlink = false;
  }
  int fd = walk_dir(root_fd, path, follow, &out.via_symlink);
  if (fd < 0) return resolve_error(rel, follow, root_name, -fd);
  out.fd.reset(fd);
  return out;
}

// ---- entry operations --------------------------------------------------------------------

namespace {

// Runs `make` (0 or -1/errno); with kReplace, on EEXIST removes the entry and runs it once
// more. A directory in the way stays (unlinkat fails with EISDIR, which is returned).
template <typename F>
int with_existing(int dir_fd, const std::string& name, Existing existing, F make) {
  if (make() == 0) return 0;
  if (errno != EEXIST || existing == Existing::kFail) return errno;
  if (::unlinkat(dir_fd, name.c_str(), 0) != 0 && errno != ENOENT) return errno;
  return make() == 0 ? 0 : errno;
}

}  // namespace

int create_file_at(int dir_fd, std::string_view name, mode_t mode, Existing existing,
                   UniqueFd* fd) {
  if (!one_component(name)) return EINVAL;
  std::string n(name);
  return with_existing(dir_fd, n, existing, [&] {
    int f = ::openat(dir_fd, n.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                     mode & 0777);
    if (f < 0) return -1;
    fd->reset(f);
    return 0;
  });
}

int link_at(int src_dir, std::string_view src, int dst_dir, std::string_view dst,
            Existing existing) {
  if (!one_component(src) || !one_component(dst)) return EINVAL;
  std::string s(src), d(dst);
  return with_existing(dst_dir, d, existing,
                       [&] { return ::linkat(src_dir, s.c_str(), dst_dir, d.c_str(), 0); });
}

int symlink_at(const std::string& target, int dir_fd, std::string_view name, Existing existing) {
  if (!one_component(name)) return EINVAL;
  std::string n(name);
  return with_existing(dir_fd, n, existing,
                       [&] { return ::symlinkat(target.c_str(), dir_fd, n.c_str()); });
}

int mkdir_at(int dir_fd, std::string_view name, mode_t mode) {
  if (!one_component(name)) return EINVAL;
  std::string n(name);
  if (::mkdirat(dir_fd, n.c_str(), mode) == 0) return 0;
  if (errno != EEXIST) return errno;
  struct stat st;
  // Follows a symlink at `name`: "lib64 -> lib" from a package is a fine parent directory.
  // Where it leads does not matter here: every write below it is resolved beneath the root.
  if (::fstatat(dir_fd, n.c_str(), &st, 0) == 0 && S_ISDIR(st.st_mode)) return 0;
  if (::unlinkat(dir_fd, n.c_str(), 0) != 0 && errno != ENOENT) return errno;
  return ::mkdirat(dir_fd, n.c_str(), mode) == 0 ? 0 : errno;
}

int unlink_at(int dir_fd, std::string_view name) {
  if (!one_component(name)) return EINVAL;
  std::string n(name);
  if (::unlinkat(dir_fd, n.c_str(), 0) == 0 || errno == ENOENT) return 0;
  return errno;
}

int open_read_at(int dir_fd, std::string_view name, UniqueFd* fd) {
  if (!one_component(name)) return EINVAL;
  std::string n(name);
  int f = ::openat(dir_fd, n.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (f < 0) return errno;
  fd->reset(f);
  return 0;
}

int read_link_at(int dir_fd, std::string_view name, std::string* target) {
  if (!one_component(name)) return EINVAL;
  std::string n(name);
  target->assign(256, '\0');
  for (;;) {
    ssize_t len = ::readlinkat(dir_fd, n.c_str(), target->data(), target->size());
    if (len < 0) return errno;
    if (static_cast<size_t>(len) < target->size()) {
      target->resize(static_cast<size_t>(len));
      return 0;
    }
    target->resize(target->size() * 2);
  }
}

Result<std::string> read_file_at(int dir_fd, std::string_view name, const std::string& shown) {
  UniqueFd fd;
  if (int err = open_read_at(dir_fd, name, &fd)) return ErrnoStatus(shown, err);
  return read_fd(fd.get(), shown);
}

Status write_file_atomic_at(int dir_fd, std::string_view name, std::string_view data, mode_t mode,
                            Fs& fs, const std::string& shown) {
  if (!one_component(name)) return ErrnoStatus("create " + shown, EINVAL);
  std::string tmp = temp_name_for(name);
  UniqueFd fd;
  if (int err = create_file_at(dir_fd, tmp, mode, Existing::kFail, &fd)) {
    return ErrnoStatus("create " + shown + " (temp file)", err);
  }
  Status st = fs.write_all(fd.get(), data.data(), data.size(), shown);
  if (st.ok()) st = fs.fsync(fd.get(), shown);
  fd.reset();
  if (st.ok()) st = fs.rename_at(dir_fd, tmp, dir_fd, std::string(name), shown);
  if (!st.ok()) ::unlinkat(dir_fd, tmp.c_str(), 0);
  return st;
}

std::string temp_name_for(std::string_view name) {
  // The temp name must fit NAME_MAX too: a long `name` lends only its first 200 bytes (cut
  // back to a UTF-8 boundary).
  size_t keep = std::min<size_t>(name.size(), 200);
  while (keep > 0 && keep < name.size() && (static_cast<unsigned char>(name[keep]) & 0xc0) == 0x80) {
    --keep;
  }
  return std::string(name.substr(0, keep)) + std::string(kTempInfix) + std::to_string(::getpid()) + "-" +
         random_token();
}

std::optional<pid_t> temp_name_pid(std::string_view name) {
  // "<anything>.tmp-<digits>-<hex>": scan back over the hex token, '-', the digits.
  size_t i = name.size();
  auto back_over = [&](auto pred) {
    size_t end = i;
    while (i > 0 && pred(name[i - 1])) --i;
    return i < end;
  };
  if (!back_over([](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; })) {
    return std::nullopt;
  }
  if (i == 0 || name[--i] != '-') return std::nullopt;
  size_t digits_end = i;
  if (!back_over([](char c) { return c >= '0' && c <= '9'; })) return std::nullopt;
  if (i < kTempInfix.size() || name.substr(i - kTempInfix.size(), kTempInfix.size()) != kTempInfix ||
      digits_end - i > 9) {
    return std::nullopt;
  }
  return static_cast<pid_t>(std::stol(std::string(name.substr(i, digits_end - i))));
}

Result<int> sweep_temp_files_at(int dir_fd, const std::string& shown, pid_t only_pid) {
  MAT_ASSIGN_OR_RETURN(std::vector<std::string> names, list_dir_at(dir_fd, shown));
  int removed = 0;
  for (const std::string& n : names) {
    std::optional<pid_t> pid = temp_name_pid(n);
    if (!pid || (only_pid != 0 && *pid != only_pid)) continue;
    if (::unlinkat(dir_fd, n.c_str(), 0) == 0) {
      ++removed;
    } else if (errno != ENOENT && errno != EISDIR) {
      return ErrnoStatus(path_join(shown, n) + ": remove temp file", errno);
    }
  }
  return removed;
}

Result<std::vector<std::string>> list_dir_at(int dir_fd, const std::string& shown) {
  int fd = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("open " + shown, errno);
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    int err = errno;
    ::close(fd);
    return ErrnoStatus("list " + shown, err);
  }
  std::vector<std::string> out;
  while (dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
    out.emplace_back(e->d_name);
  }
  ::closedir(d);
  return out;
}

// ---- Root -----------------------------------------------------------------------------------

Result<Root> Root::open(const std::string& path, bool create, std::string name) {
  if (path.empty() || path.front() != '/') {
    return InvalidInput("'" + path + "' is not an absolute path");
  }
  if (create) MAT_RETURN_IF_ERROR(::mat::make_dirs(path));
  Root r;
  // The root itself may be reached through symlinks (a prefix under a symlinked /home): the
  // user chose it. Only what lies below it is confined.
  r.fd_.reset(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!r.fd_.valid()) return ErrnoStatus(path + ": open", errno);
  r.path_ = path;
  r.name_ = std::move(name);
  return r;
}

Result<BeneathDir> Root::dir(std::string_view rel) const {
  return open_dir_beneath(fd_.get(), rel, Follow::kBeneath, name_);
}

template <typename F>
auto Root::in_parent(std::string_view rel, F op) const -> decltype(op(0, rel)) {
  auto [parent, base] = split_parent(rel);
  if (parent.empty()) return op(fd_.get(), base);  // the root's own fd: no lookup
  MAT_ASSIGN_OR_RETURN(BeneathDir d, dir(parent));
  return op(d.fd.get(), base);
}

Status Root::make_dirs(std::string_view rel) const {
  if (const char* why = relative_path_problem(rel)) {
    return InvalidInput("'" + shown_name(rel) + "': " + why);
  }
  for (size_t end = rel.find('/');; end = rel.find('/', end + 1)) {
    std::string_view sub = rel.substr(0, end);
    MAT_RETURN_IF_ERROR(in_parent(sub, [&](int dir_fd, std::string_view base) -> Status {
      if (int err = mkdir_at(dir_fd, base, 0755)) {
        return ErrnoStatus(path_join(path_, sub) + ": mkdir", err);
      }
      return Status::Ok();
    }));
    if (end == std::string_view::npos) return Status::Ok();
  }
}

Status Root::write_file_atomic(std::string_view rel, std::string_view data, mode_t mode,
                               Fs& fs) const {
  return in_parent(rel, [&](int dir_fd, std::string_view base) {
    return write_file_atomic_at(dir_fd, base, data, mode, fs, path_join(path_, rel));
  });
}

Status Root::remove(std::string_view rel) const {
  Status st = in_parent(rel, [&](int dir_fd, std::string_view base) -> Status {
    if (int err = unlink_at(dir_fd, base)) {
      return ErrnoStatus(path_join(path_, rel) + ": remove", err);
    }
    return Status::Ok();
  });
  return st.code() == Code::kNotFound ? Status::Ok() : st;  // no parent: nothing to remove
}

Result<std::string> Root::read_file(std::string_view rel) const {
  return in_parent(rel, [&](int dir_fd, std::string_view base) {
    return read_file_at(dir_fd, base, path_join(path_, rel));
  });
}

}  // namespace mat
