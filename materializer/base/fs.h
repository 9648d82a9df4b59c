// File-system helpers and the Fs seam.
//
// Everything here uses absolute paths or *at() calls; nothing changes process-wide state (cwd,
// umask). Functions return Status/Result and never print or throw.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "materializer/base/status.h"

namespace mat {

// Owns a file descriptor; closes it on destruction. Move-only.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// The Fs seam: the handful of operations whose failure matters for crash safety (publish of
// cache entries, writes into the prefix). PosixFs does the real thing; tests wrap it with
// FaultFs to fail the Nth write with ENOSPC or a rename. Implementations are thread-safe.
class Fs {
 public:
  virtual ~Fs() = default;
  // write(2) loop until all bytes are written. Errors: kNoSpace, kIo.
  virtual Status write_all(int fd, const void* data, size_t len, const std::string& what);
  virtual Status fsync(int fd, const std::string& what);
  // rename(2); atomically replaces `to`.
  virtual Status rename(const std::string& from, const std::string& to);
  // renameat(2) of one entry to another (names relative to the directory fds); errors name
  // `what`.
  virtual Status rename_at(int from_dir, const std::string& from, int to_dir, const std::string& to,
                           const std::string& what);
};

// The process-wide real file system (stateless, so sharing it is not a singleton of state).
Fs& posix_fs();

// Fails operations on purpose, for tests. Counters are atomic.
class FaultFs : public Fs {
 public:
  explicit FaultFs(Fs& base) : base_(base) {}
  // The Nth (1-based) write_all from now fails with ENOSPC; 0 disables.
  void fail_write_after(int n) {
    fail_write_at_ = n;
    writes_ = 0;
  }
  void fail_renames(bool on) { fail_renames_ = on; }
  // While on, every fsync fails with EIO (and is still logged).
  void fail_fsyncs(bool on) { fail_fsyncs_ = on; }
  // The `what` of every fsync so far, in call order.
  std::vector<std::string> fsynced() const;
  Status write_all(int fd, const void* data, size_t len, const std::string& what) override;
  Status fsync(int fd, const std::string& what) override;
  Status rename(const std::string& from, const std::string& to) override;
  Status rename_at(int from_dir, const std::string& from, int to_dir, const std::string& to,
                   const std::string& what) override;

 private:
  Fs& base_;
  mutable std::mutex mu_;  // guards fsynced_
  std::vector<std::string> fsynced_;
  std::atomic<bool> fail_fsyncs_{false};
  std::atomic<int> fail_write_at_{0};
  std::atomic<int> writes_{0};
  std::atomic<bool> fail_renames_{false};
};

// mkdir -p. Errors: kIo / kNoSpace.
Status make_dirs(const std::string& path, mode_t mode = 0755);
// rm -rf; missing path is ok.
Status remove_all(const std::string& path);
bool path_exists(const std::string& path);  // lstat succeeds
bool is_dir(const std::string& path);       // stat says directory (follows links)
// The rest of open file `fd`, read to its end (`shown` names it in errors).
Result<std::string> read_fd(int fd, const std::string& shown);
Result<std::string> read_file(const std::string& path);
// Writes `data` to `path` atomically: temp file in the same directory, fsync, rename.
Status write_file_atomic(const std::string& path, std::string_view data, mode_t mode = 0644,
                         Fs& fs = posix_fs());
// Joins with exactly one '/'.
std::string path_join(std::string_view a, std::string_view b);
// Lexical normal form: drops "." and empty components and resolves ".." against the component
// before it (none left: dropped), without looking at the disk. An absolute path stays absolute
// ("/a/../.." -> "/"); "a/b/../c" -> "a/c", "a/.." -> "".
std::string lexical_normal(std::string_view path);
// Directory part of `path` ("" for a bare name).
std::string dir_name(std::string_view path);
std::string base_name(std::string_view path);
// Makes `path` absolute against the current directory and removes "." and duplicate "/"
// (does not resolve symlinks or "..").
std::string absolute_path(const std::string& path);
// A random hex token for temp names (e.g. ".tmp-<pid>-<token>").
std::string random_token();

// Exclusive advisory lock (flock) on `path`, created if missing (mode 0600). Released on
// destruction. The file is never opened through a symlink, and must be a regular file owned by
// the effective uid or root (kIo otherwise, naming the path and the fix).
class FileLock {
 public:
  FileLock() = default;
  // Blocks until the lock is held. Errors: kIo.
  static Result<FileLock> acquire(const std::string& path);
  // Returns a lock that is !held() if another process (or fd) holds it.
  static Result<FileLock> try_acquire(const std::string& path);
  bool held() const { return fd_.valid(); }
  void release() { fd_.reset(); }

 private:
  UniqueFd fd_;
};

}  // namespace mat
