#include "materializer/base/fs.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <random>
#include <vector>

namespace mat {

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

Status Fs::write_all(int fd, const void* data, size_t len, const std::string& what) {
  const char* p = static_cast<const char*>(data);
  while (len > 0) {
    ssize_t n = ::write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("write " + what, errno);
    }
    p += n;
    len -= static_cast<size_t>(n);
  }
  return Status::Ok();
}

Status Fs::fsync(int fd, const std::string& what) {
  if (::fsync(fd) != 0) return ErrnoStatus("fsync " + what, errno);
  return Status::Ok();
}

Status Fs::rename(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) {
    return ErrnoStatus("rename " + from + " -> " + to, errno);
  }
  return Status::Ok();
}

Status Fs::rename_at(int from_dir, const std::string& from, int to_dir, const std::string& to,
                     const std::string& what) {
  if (::renameat(from_dir, from.c_str(), to_dir, to.c_str()) != 0) {
    return ErrnoStatus("rename " + from + " -> " + what, errno);
  }
  return Status::Ok();
}

Fs& posix_fs() {
  static Fs fs;  // stateless
  return fs;
}

Status FaultFs::write_all(int fd, const void* data, size_t len, const std::string& what) {
  if (fail_write_at_ > 0 && ++writes_ >= fail_write_at_) {
    return ErrnoStatus("write " + what, ENOSPC);
  }
  return base_.write_all(fd, data, len, what);
}

Status FaultFs::fsync(int fd, const std::string& what) {
  {
    std::lock_guard<std::mutex> l(mu_);
    fsynced_.push_back(what);
  }
  if (fail_fsyncs_) return ErrnoStatus("fsync " + what, EIO);
  return base_.fsync(fd, what);
}

Status FaultFs::rename_at(int from_dir, const std::string& from, int to_dir, const std::string& to,
                          const std::string& what) {
  if (fail_renames_) return ErrnoStatus("rename " + from + " -> " + what, EIO);
  return base_.rename_at(from_dir, from, to_dir, to, what);
}

std::vector<std::string> FaultFs::fsynced() const {
  std::lock_guard<std::mutex> l(mu_);
  return fsynced_;
}

Status FaultFs::rename(const std::string& from, const std::string& to) {
  if (fail_renames_) return ErrnoStatus("rename " + from + " -> " + to, EIO);
  return base_.rename(from, to);
}

Status make_dirs(const std::string& path, mode_t mode) {
  if (path.empty()) return Status::Ok();
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return Status::Ok();
    return IoError(path + ": exists and is not a directory");
  }
  std::string parent = dir_name(path);
  if (!parent.empty() && parent != path) MAT_RETURN_IF_ERROR(make_dirs(parent, mode));
  if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) {
    return ErrnoStatus("mkdir " + path, errno);
  }
  return Status::Ok();
}

static Status remove_all_at(int dirfd, const char* name, const std::string& shown) {
  if (::unlinkat(dirfd, name, 0) == 0 || errno == ENOENT) return Status::Ok();
  if (errno != EISDIR && errno != EPERM) return ErrnoStatus("remove " + shown, errno);
  int fd = ::openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("open " + shown, errno);
  DIR* d = ::fdopendir(fd);
  if (!d) {
    ::close(fd);
    return ErrnoStatus("opendir " + shown, errno);
  }
  // Make the directory writable in case a package shipped it read-only.
  ::fchmod(fd, 0700);
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
    names.emplace_back(e->d_name);
  }
  Status st;
  for (const auto& n : names) {
    st = remove_all_at(fd, n.c_str(), shown + "/" + n);
    if (!st.ok()) break;
  }
  ::closedir(d);
  MAT_RETURN_IF_ERROR(st);
  if (::unlinkat(dirfd, name, AT_REMOVEDIR) != 0 && errno != ENOENT) {
    return ErrnoStatus("rmdir " + shown, errno);
  }
  return Status::Ok();
}

Status remove_all(const std::string& path) {
  if (path.empty() || path == "/") return InvalidInput("refusing to remove '" + path + "'");
  return remove_all_at(AT_FDCWD, path.c_str(), path);
}

bool path_exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

bool is_dir(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

Result<std::string> read_fd(int fd, const std::string& shown) {
  std::string out;
  struct stat st;
  if (::fstat(fd, &st) == 0 && st.st_size > 0) out.reserve(static_cast<size_t>(st.st_size));
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("read " + shown, errno);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

Result<std::string> read_file(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus(path, errno);
  return read_fd(fd.get(), path);
}

Status write_file_atomic(const std::string& path, std::string_view data, mode_t mode, Fs& fs) {
  std::string tmp = path + ".tmp-" + std::to_string(::getpid()) + "-" + random_token();
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
  if (!fd.valid()) return ErrnoStatus("create " + tmp, errno);
  Status st = fs.write_all(fd.get(), data.data(), data.size(), tmp);
  if (st.ok()) st = fs.fsync(fd.get(), tmp);
  fd.reset();
  if (st.ok()) st = fs.rename(tmp, path);
  if (!st.ok()) ::unlink(tmp.c_str());
  return st;
}

std::string path_join(std::string_view a, std::string_view b) {
  if (a.empty()) return std::string(b);
  if (b.empty()) return std::string(a);
  std::string out(a);
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  size_t i = 0;
  while (i < b.size() && b[i] == '/') ++i;
  out += '/';
  out.append(b.substr(i));
  return out;
}

std::string lexical_normal(std::string_view path) {
  const bool absolute = path.starts_with('/');
  std::vector<std::string_view> parts;
  size_t pos = 0;
  while (pos <= path.size()) {
    size_t end = path.find('/', pos);
    if (end == std::string_view::npos) end = path.size();
    std::string_view c = path.substr(pos, end - pos);
    pos = end + 1;
    if (c == "..") {
      if (!parts.empty()) parts.pop_back();
    } else if (!c.empty() && c != ".") {
      parts.push_back(c);
    }
  }
  std::string out = absolute ? "/" : "";
  for (std::string_view c : parts) {
    if (out.size() > 1 || (!absolute && !out.empty())) out += '/';
    out += c;
  }
  return out;
}

std::string dir_name(std::string_view path) {
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  size_t pos = path.rfind('/');
  if (pos == std::string_view::npos) return "";
  if (pos == 0) return "/";
  return std::string(path.substr(0, pos));
}

std::string base_name(std::string_view path) {
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  size_t pos = path.rfind('/');
  return std::string(pos == std::string_view::npos ? path : path.substr(pos + 1));
}

std::string absolute_path(const std::string& path) {
  std::string full = path;
  if (path.empty() || path[0] != '/') {
    char buf[4096];
    if (::getcwd(buf, sizeof buf)) full = path_join(buf, path);
  }
  // Normalise "//" and "/./" segments.
  std::vector<std::string_view> parts;
  std::string_view v(full);
  size_t i = 0;
  while (i <= v.size()) {
    size_t j = v.find('/', i);
    if (j == std::string_view::npos) j = v.size();
    std::string_view seg = v.substr(i, j - i);
    if (!seg.empty() && seg != ".") parts.push_back(seg);
    i = j + 1;
  }
  std::string out;
  for (auto p : parts) {
    out += '/';
    out.append(p);
  }
  return out.empty() ? "/" : out;
}

std::string random_token() {
  static std::atomic<uint64_t> counter{0};
  thread_local std::mt19937_64 rng(std::random_device{}() ^
                                   (static_cast<uint64_t>(::getpid()) << 32));
  uint64_t v = rng() ^ counter.fetch_add(1, std::memory_order_relaxed);
  static const char kDigits[] = "0123456789abcdef";
  std::string out(12, '0');
  for (auto& c : out) {
    c = kDigits[v & 15];
    v >>= 4;
  }
  return out;
}

// Opens (creating) a lock file. Never through a symlink: one planted at the name would have us
// create or open its target (as root). Only a regular file owned by the caller or root: another
// owner could hold the lock for ever. Private (0600): flock needs only a read-only fd, so with
// 0644 any user could hold the lock; an older version's 0644 file is narrowed once.
static Result<UniqueFd> open_lock_file(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600));
  if (!fd.valid()) {
    if (errno == ELOOP) {
      return IoError("lock " + path + ": is a symbolic link, which a lock file never is: " +
                     "remove it (`rm " + path + "`) and rerun");
    }
    return ErrnoStatus("open lock " + path, errno);
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return ErrnoStatus("stat lock " + path, errno);
  if (!S_ISREG(st.st_mode)) {
    return IoError("lock " + path + ": not a regular file: remove it (`rm " + path +
                   "`) and rerun");
  }
  const uid_t euid = ::geteuid();
  if (st.st_uid != euid && st.st_uid != 0) {
    return IoError("lock " + path + ": owned by uid " + std::to_string(st.st_uid) +
                   ", who could hold it for ever: remove it (`rm " + path + "`) and rerun");
  }
  if ((st.st_mode & 077) != 0 && st.st_uid == euid) ::fchmod(fd.get(), 0600);
  return fd;
}

Result<FileLock> FileLock::acquire(const std::string& path) {
  FileLock lock;
  MAT_ASSIGN_OR_RETURN(UniqueFd fd, open_lock_file(path));
  while (::flock(fd.get(), LOCK_EX) != 0) {
    if (errno != EINTR) return ErrnoStatus("lock " + path, errno);
  }
  lock.fd_ = std::move(fd);
  return lock;
}

Result<FileLock> FileLock::try_acquire(const std::string& path) {
  FileLock lock;
  MAT_ASSIGN_OR_RETURN(UniqueFd fd, open_lock_file(path));
  while (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EINTR) continue;
    if (errno == EWOULDBLOCK) return lock;  // not held
    return ErrnoStatus("lock " + path, errno);
  }
  lock.fd_ = std::move(fd);
  return lock;
}

}  // namespace mat
