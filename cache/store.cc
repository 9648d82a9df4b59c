#include "cache/store.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <tbb/enumerable_thread_specific.h>
#include <tbb/parallel_for.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <map>
#include <set>
#include <utility>

#include "cache/extract.h"
#include "cache/manifest.h"
#include "cache/meta.h"
#include "cache/paths.h"
#include "cache/trust.h"

namespace mat::cache {
namespace {

using Type = ManifestEntry::Type;

constexpr ArchiveFormat kAllFormats[] = {ArchiveFormat::kConda, ArchiveFormat::kTarBz2,
                                         ArchiveFormat::kWheel};

// Sorted names in `path`, without "." and "..". Errors: kNotFound, kIo.
Result<std::vector<std::string>> list_dir(const std::string& path) {
  DIR* d = ::opendir(path.c_str());
  if (!d) return ErrnoStatus("list " + path, errno);
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
    names.emplace_back(e->d_name);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

bool is_regular(const std::string& path, int64_t* size = nullptr) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return false;
  if (size) *size = st.st_size;
  return true;
}

// A tree file's digest as its manifest records it (SHA-256; XXH3 in versions 1 and 2).
Result<std::string> file_digest(const std::string& path, ManifestEntry::Digest kind) {
  if (kind == ManifestEntry::Digest::kXxh3) return xxh3_file(path);
  return hash_file(path, HashKind::kSha256);
}

// Durability of renames into `dir`: fsync the directory. Best effort: the entries are already
// visible, so a failure here must not turn a published entry into a reported error.
void fsync_dir(Fs& fs, const std::string& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.valid()) fs.fsync(fd.get(), dir).ignore();
}

// Removes a temp directory on scope exit unless release()d.
class TempDirGuard {
 public:
  explicit TempDirGuard(std::string path) : path_(std::move(path)) {}
  ~TempDirGuard() {
    if (!path_.empty()) remove_all(path_).ignore();
  }
  TempDirGuard(const TempDirGuard&) = delete;
  TempDirGuard& operator=(const TempDirGuard&) = delete;
  void release() { path_.clear(); }

 private:
  std::string path_;
};

// Moves whatever is at `path` (an entry that failed the trust check) to a fresh name in tmp/,
// then removes it there: the name is free for a fresh entry at once, and a removal that fails
// (a directory another user owns, when we are not root) leaves garbage only in tmp/, which
// `clean` retries once this process is gone. The caller holds the entry lock.
Status move_aside(Fs& fs, const Paths& paths, const std::string& path) {
  std::string grave = paths.new_tmp_path("-untrusted");
  Status st = fs.rename(path, grave);
  if (!st.ok()) {
    return IoError(path + ": cannot move this untrusted cache entry out of the way (" +
                   st.message() + "): remove it as its owner or as root (`rm -rf " + path +
                   "`) and rerun");
  }
  remove_all(grave).ignore();
  return Status::Ok();
}

// Why the manifest at `path` does not vouch for the tree of `key` ("" if it does): it must be a
// regular file that the trust rules allow, beginning with manifest_head(key), i.e. written by
// this version (whose extraction never leaves a group/other-writable file) for this very key
// (so trees swapped between names are caught too). Reads only that head. Sets `*legacy` for a
// version-1 or version-2 manifest.
std::string manifest_distrust(const std::string& path, const Key& key, uid_t euid, bool* legacy) {
  // O_NONBLOCK: a fifo planted here must not hang the lookup.
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ELOOP) return "a symbolic link";
    return errno == ENOENT ? "missing" : std::string("cannot open: ") + std::strerror(errno);
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return std::string("cannot stat: ") + std::strerror(errno);
  if (!S_ISREG(st.st_mode)) return "not a regular file";
  if (std::string why = distrust_reason(st, euid); !why.empty()) return why;
  const std::string want = manifest_head(key);
  char head[128];
  const size_t n = std::min(want.size(), sizeof head);
  if (::pread(fd.get(), head, n, 0) == static_cast<ssize_t>(n) &&
      std::string_view(head, n) == want) {
    return "";
  }
  constexpr std::string_view kVersion1 = "{\"files\":";  // sorted keys: "files" came first
  if (std::string_view(head, std::min(n, kVersion1.size())) == kVersion1) {
    *legacy = true;
    return "made by an older materializer (manifest version 1), whose extraction kept a "
           "package's group/other write bits";
  }
  constexpr std::string_view kVersion2 = "{\"version\":2,";
  if (std::string_view(head, std::min(n, kVersion2.size())) == kVersion2) {
    *legacy = true;
    return "made by an older materializer (manifest version 2), whose extraction did not check "
           "the package's files against its info/paths.json";
  }
  return "does not begin with " + want + " (not a manifest this version wrote for the entry)";
}

// What is on disk (no digest: verify hashes files only when size and mode match).
struct DiskEntry {
  ManifestEntry e;
  bool special = false;  // device, fifo or socket: extraction never makes one
  std::string distrust;  // why the permission model rejects it ("" if it does not)
};
using DiskTree = std::map<std::string, DiskEntry>;

// Lists the tree under `dir_fd` into `out`, checking each member's owner and mode for `euid`.
// Never follows symlinks.
Status walk_tree(int dir_fd, const std::string& rel, const std::string& shown, uid_t euid,
                 DiskTree* out) {
  int fd = ::dup(dir_fd);
  if (fd < 0) return ErrnoStatus("dup " + shown, errno);
  DIR* dir = ::fdopendir(fd);
  if (!dir) {
    ::close(fd);
    return ErrnoStatus("list " + shown, errno);
  }
  std::vector<std::string> names;
  while (dirent* de = ::readdir(dir)) {
    if (std::strcmp(de->d_name, ".") == 0 || std::strcmp(de->d_name, "..") == 0) continue;
    names.emplace_back(de->d_name);
  }
  ::closedir(dir);
  for (const auto& name : names) {
    std::string path = rel.empty() ? name : rel + "/" + name;
    struct stat st;
    if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      return ErrnoStatus("stat " + shown + "/" + path, errno);
    }
    DiskEntry d;
    ManifestEntry& e = d.e;
    // A symlink's own mode is always 0777 and means nothing; its owner still does.
    struct stat seen = st;
    if (S_ISLNK(seen.st_mode)) seen.st_mode &= ~static_cast<mode_t>(S_IWGRP | S_IWOTH);
    d.distrust = distrust_reason(seen, euid);
    if (S_ISDIR(st.st_mode)) {
      e.type = Type::kDir;
      UniqueFd sub(::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!sub.valid()) return ErrnoStatus("open " + shown + "/" + path, errno);
      MAT_RETURN_IF_ERROR(walk_tree(sub.get(), path, shown, euid, out));
    } else if (S_ISLNK(st.st_mode)) {
      e.type = Type::kSymlink;
      std::string target(static_cast<size_t>(st.st_size) + 1, '\0');
      ssize_t n = ::readlinkat(dir_fd, name.c_str(), target.data(), target.size());
      if (n < 0) return ErrnoStatus("readlink " + shown + "/" + path, errno);
      target.resize(static_cast<size_t>(n));
      e.target = std::move(target);
    } else {
      e.type = Type::kFile;
      e.size = st.st_size;
      e.mode = st.st_mode & 0777;
      d.special = !S_ISREG(st.st_mode);
    }
    out->emplace(std::move(path), std::move(d));
  }
  return Status::Ok();
}

class PendingArchiveImpl final : public PendingArchive {
 public:
  PendingArchiveImpl(Fs& fs, const Paths& paths, uid_t euid, ArchiveFormat format,
                     std::string tmp, std::string final_path, UniqueFd fd,
                     std::atomic<bool>* dir_renamed)
      : fs_(fs),
        paths_(paths),
        euid_(euid),
        format_(format),
        tmp_(std::move(tmp)),
        final_(std::move(final_path)),
        fd_(std::move(fd)),
        dir_renamed_(dir_renamed) {}
  ~PendingArchiveImpl() override { abort(); }

  Status reset() override {
    MAT_RETURN_IF_ERROR(check_open("reset"));
    if (::ftruncate(fd_.get(), 0) != 0) return ErrnoStatus("truncate " + tmp_, errno);
    if (::lseek(fd_.get(), 0, SEEK_SET) < 0) return ErrnoStatus("seek " + tmp_, errno);
    bytes_ = 0;
    written_back_ = 0;
    return Status::Ok();
  }

  Status write(const char* data, size_t len) override {
    MAT_RETURN_IF_ERROR(check_open("write"));
    MAT_RETURN_IF_ERROR(fs_.write_all(fd_.get(), data, len, tmp_));
    bytes_ += static_cast<int64_t>(len);
    // Start writing back what has arrived, without waiting for it, so publish()'s fsync finds
    // little left to do: it runs on an extraction worker, which sits idle while it waits
    // (measured: 0.5-0.7 s of worker time per cold install of the bench's 620 MB of archives).
    if (bytes_ - written_back_ >= kWritebackBytes) {
      ::sync_file_range(fd_.get(), written_back_, bytes_ - written_back_, SYNC_FILE_RANGE_WRITE);
      written_back_ = bytes_;
    }
    return Status::Ok();
  }

  // Bytes go straight to write(2); nothing is buffered here.
  Status finish() override { return check_open("finish"); }

  void abort() override {
    fd_.reset();
    if (!tmp_.empty()) ::unlink(tmp_.c_str());
    tmp_.clear();
  }

  int64_t bytes() const override { return bytes_; }
  const std::string& path() const override { return tmp_; }

  Status retarget(const Key& key) override {
    MAT_RETURN_IF_ERROR(check_key(key));
    final_ = paths_.archive(key, format_);
    return Status::Ok();
  }
  // Dirty bytes of a download after which write() starts their write-back.
  static constexpr int64_t kWritebackBytes = 4 << 20;

  Result<std::string> publish() override {
    MAT_RETURN_IF_ERROR(check_open("publish"));
    Status st = fs_.fsync(fd_.get(), tmp_);
    if (st.ok() && ::close(fd_.release()) != 0) st = ErrnoStatus("close " + tmp_, errno);
    // Someone else published the same verified bytes already: keep theirs if find_archive()
    // trusts it. Anything else there is replaced: a file by the rename itself (atomic, so the
    // name never goes missing), a directory (rename cannot replace it) moved aside first.
    struct stat cur;
    const bool there = st.ok() && ::lstat(final_.c_str(), &cur) == 0;
    const bool keep = there && S_ISREG(cur.st_mode) && distrust_reason(cur, euid_).empty();
    if (there && !keep && S_ISDIR(cur.st_mode)) st = move_aside(fs_, paths_, final_);
    if (st.ok() && !keep) st = fs_.rename(tmp_, final_);
    if (!st.ok()) {
      abort();
      return st;
    }
    if (is_regular(tmp_)) ::unlink(tmp_.c_str());
    tmp_.clear();
    dir_renamed_->store(true);  // Store::sync_dirs() makes the rename durable
    return final_;
  }

 private:
  Status check_open(const char* op) const {
    if (fd_.valid()) return Status::Ok();
    return Internal(std::string("pending archive ") + final_ + ": " + op +
                    " after publish() or abort()");
  }

  Fs& fs_;
  const Paths& paths_;  // the store's, which outlives this
  uid_t euid_;
  ArchiveFormat format_;
  std::string tmp_;  // "" once published or aborted
  std::string final_;
  UniqueFd fd_;
  int64_t bytes_ = 0;
  int64_t written_back_ = 0;        // bytes handed to sync_file_range(SYNC_FILE_RANGE_WRITE)
  std::atomic<bool>* dir_renamed_;  // the store's "archives/ changed since sync_dirs()"
};

class StoreImpl final : public Store {
 public:
  StoreImpl(Paths paths, Fs& fs, uid_t euid, std::vector<TrustProblem> problems,
            const ExtractLimits& limits)
      : paths_(std::move(paths)),
        fs_(fs),
        euid_(euid),
        open_problems_(std::move(problems)),
        limits_(limits) {}

  const std::string& root() const override { return paths_.root(); }

  using Store::find_archive;
  using Store::find_tree;

  // The lstat that looks for the archive also gives its owner and mode: the check is free.
  std::optional<std::string> find_archive(const Key& key, ArchiveFormat f,
                                          Distrust* distrust) const override {
    if (!check_key(key).ok()) return std::nullopt;
    std::string path = paths_.archive(key, f);
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) return std::nullopt;
    std::string why = S_ISREG(st.st_mode) ? distrust_reason(st, euid_) : "not a regular file";
    if (why.empty()) return path;
    if (distrust) *distrust = Distrust{path, why};
    return std::nullopt;
  }

  std::optional<std::string> find_tree(const Key& key, Distrust* distrust) const override;

  Result<FileLock> lock_entry(const Key& key, bool wait) const override {
    MAT_RETURN_IF_ERROR(check_key(key));
    std::string path = paths_.lock(key);
    return wait ? FileLock::acquire(path) : FileLock::try_acquire(path);
  }

  Result<std::unique_ptr<PendingArchive>> begin_archive(const Key& key,
                                                        ArchiveFormat f) const override {
    MAT_RETURN_IF_ERROR(check_key(key));
    std::string tmp = paths_.new_tmp_path(format_ext(f));
    MAT_ASSIGN_OR_RETURN(UniqueFd fd, create_new_file(tmp, 0644));
    return std::unique_ptr<PendingArchive>(
        new PendingArchiveImpl(fs_, paths_, euid_, f, std::move(tmp), paths_.archive(key, f),
                               std::move(fd), &archives_renamed_));
  }

  Result<std::string> extract(const Key& key, const std::string& archive_path, ArchiveFormat f,
                              ExtractStats* stats) const override;
  Result<std::unique_ptr<PendingTree>> extract_pending(const Key& key,
                                                       const std::string& archive_path,
                                                       ArchiveFormat f) const override;
  Result<std::unique_ptr<PendingTree>> extract_streamed(const Key& key,
                                                        const std::string& archive_path,
                                                        ArchiveFormat f,
                                                        const ByteSource& next) const override;
  void sync_dirs() const override {
    if (archives_renamed_.exchange(false)) fsync_dir(fs_, paths_.archives_dir());
    if (trees_renamed_.exchange(false)) fsync_dir(fs_, paths_.trees_dir());
  }
  Result<StoreStats> stats() const override;
  Result<std::vector<VerifyProblem>> verify() const override;
  Status clean(bool all) const override;
  void remove_own_temp_files() const override;
  Status remove_entry(const Key& key) const override;

  Result<std::vector<VerifyProblem>> verify_entry(const Key& key) const override;
  Status remove_archive(const Key& key) const override;
  Status remove_tree(const Key& key) const override;
  std::optional<std::pair<std::string, ArchiveFormat>> any_archive(const Key& key) const override;
  std::optional<Md5Link> find_md5(const std::string& md5_hex) const override;
  Status record_md5(const std::string& md5_hex, const Key& sha256, bool verified) const override;
  std::optional<std::string> find_source(const Key& key) const override;
  bool has_source(const Key& key) const override;
  Status record_source(const Key& key, const std::string& url) const override;
  Status remove_record(const std::string& path) const override;

 private:
  Status write_manifest(const std::string& path, const Key& key, const Manifest& m) const;
  Result<std::unique_ptr<PendingTree>> make_tree(
      const Key& key, const std::function<Result<Manifest>(const std::string& pkg)>& fill) const;
  std::vector<VerifyProblem> verify_archive(const std::string& name) const;
  std::vector<VerifyProblem> verify_tree(const std::string& name) const;
  std::vector<VerifyProblem> verify_tree_members(const std::string& name) const;
  std::vector<VerifyProblem> verify_locks() const;
  std::vector<VerifyProblem> verify_record(const std::string& name) const;
  Status clean_records() const;
  Result<std::set<std::string>> entry_keys() const;

  Paths paths_;
  Fs& fs_;
  uid_t euid_;  // whose (besides root's) files the store trusts
  // Directories that failed the trust check at open() (only with report_distrust).
  std::vector<TrustProblem> open_problems_;
  const ExtractLimits limits_;
  // Extraction buffers, one per thread (STYLE §5): 256 KiB each, reused across packages.
  mutable tbb::enumerable_thread_specific<ExtractScratch> scratch_;
  // Renames into archives/ and trees/ since the last sync_dirs().
  mutable std::atomic<bool> archives_renamed_{false}, trees_renamed_{false};
  friend class PendingTreeImpl;
};

std::optional<std::string> StoreImpl::find_tree(const Key& key, Distrust* distrust) const {
  if (!check_key(key).ok()) return std::nullopt;
  // trees/<key> only ever appears by rename, complete with pkg/ and manifest.json.
  std::string dir = paths_.tree(key);
  struct stat st;
  if (::lstat(dir.c_str(), &st) != 0) return std::nullopt;  // a miss: one syscall, as ever
  auto pass_over = [&](const std::string& path, std::string why, bool legacy = false) {
    if (distrust) *distrust = Distrust{path, std::move(why), legacy};
    return std::nullopt;
  };
  // The entry directory and pkg/: nobody else may rename or add anything in them. Below pkg/,
  // everything was created by an extraction that the manifest vouches for (cache/trust.h).
  std::string why = S_ISDIR(st.st_mode) ? distrust_reason(st, euid_) : "not a directory";
  if (!why.empty()) return pass_over(dir, why);
  std::string pkg = Paths::pkg_in(dir);
  if (::lstat(pkg.c_str(), &st) != 0) return pass_over(pkg, "missing");
  why = S_ISDIR(st.st_mode) ? distrust_reason(st, euid_) : "not a directory";
  if (!why.empty()) return pass_over(pkg, why);
  std::string manifest = Paths::manifest_in(dir);
  bool legacy = false;
  why = manifest_distrust(manifest, key, euid_, &legacy);
  if (!why.empty()) return pass_over(manifest, why, legacy);
  return pkg;
}

Status StoreImpl::write_manifest(const std::string& path, const Key& key,
                                 const Manifest& m) const {
  MAT_ASSIGN_OR_RETURN(UniqueFd fd, create_new_file(path, 0644));
  MAT_RETURN_IF_ERROR(write_manifest_json(key, m, [&](std::string_view piece) {
    return fs_.write_all(fd.get(), piece.data(), piece.size(), path);
  }));
  if (::close(fd.release()) != 0) return ErrnoStatus("close " + path, errno);
  return Status::Ok();
}

class PendingTreeImpl final : public PendingTree {
 public:
  PendingTreeImpl(const StoreImpl& store, Key key, std::string tmp, ExtractStats stats)
      : store_(store),
        key_(std::move(key)),
        tmp_(std::move(tmp)),
        pkg_(Paths::pkg_in(tmp_)),
        stats_(stats) {}
  ~PendingTreeImpl() override {
    if (!tmp_.empty()) remove_all(tmp_).ignore();
  }

  const std::string& pkg_dir() const override { return pkg_; }
  const ExtractStats& stats() const override { return stats_; }

  Result<std::string> commit() override {
    if (tmp_.empty()) return Internal("pending tree " + key_.str() + ": commit() twice");
    // The manifest was written by extract_pending(); make it durable before the rename that
    // makes it visible. Reopened by path rather than kept open: trees can queue up behind a
    // slow disk, and one fd held per queued tree could run into the process's fd limit.
    std::string manifest = Paths::manifest_in(tmp_);
    UniqueFd fd(::open(manifest.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd.valid()) return ErrnoStatus("open " + manifest, errno);
    MAT_RETURN_IF_ERROR(store_.fs_.fsync(fd.get(), manifest));
    // The rename is the commit point. If a trusted tree appeared meanwhile (another process
    // held a different lock file, or the caller skipped the lock), theirs is as good as ours.
    // One that find_tree() passes over is moved out of the way first (rename(2) cannot
    // replace a non-empty directory); the caller holds the entry lock, so no other process
    // of ours is looking at it.
    const Paths& paths = store_.paths_;
    Distrust bad;
    if (store_.find_tree(key_, &bad)) return paths.tree_pkg(key_);
    if (!bad.path.empty()) MAT_RETURN_IF_ERROR(move_aside(store_.fs_, paths, paths.tree(key_)));
    Status st = store_.fs_.rename(tmp_, paths.tree(key_));
    if (st.ok()) {
      tmp_.clear();
      store_.trees_renamed_.store(true);
    } else if (!store_.find_tree(key_)) {
      return st;
    }
    return paths.tree_pkg(key_);
  }

 private:
  const StoreImpl& store_;
  Key key_;
  std::string tmp_;  // "" once renamed into trees/
  std::string pkg_;
  ExtractStats stats_;
};

// A tree in a new tmp dir: `fill` extracts into its pkg/ and returns the manifest.
Result<std::unique_ptr<PendingTree>> StoreImpl::make_tree(
    const Key& key, const std::function<Result<Manifest>(const std::string& pkg)>& fill) const {
  MAT_RETURN_IF_ERROR(check_key(key));
  std::string tmp = paths_.new_tmp_path();
  if (::mkdir(tmp.c_str(), 0755) != 0) return ErrnoStatus("create " + tmp, errno);
  TempDirGuard guard(tmp);
  std::string pkg = Paths::pkg_in(tmp);
  if (::mkdir(pkg.c_str(), 0755) != 0) return ErrnoStatus("create " + pkg, errno);
  MAT_ASSIGN_OR_RETURN(Manifest m, fill(pkg));
  MAT_RETURN_IF_ERROR(write_manifest(Paths::manifest_in(tmp), key, m));
  guard.release();
  return std::unique_ptr<PendingTree>(new PendingTreeImpl(*this, key, std::move(tmp), stats_of(m)));
}

Result<std::unique_ptr<PendingTree>> StoreImpl::extract_pending(const Key& key,
                                                                const std::string& archive_path,
                                                                ArchiveFormat f) const {
  return make_tree(key, [&](const std::string& pkg) {
    return extract_archive(archive_path, f, pkg, fs_, scratch_.local(), limits_);
  });
}

Result<std::unique_ptr<PendingTree>> StoreImpl::extract_streamed(const Key& key,
                                                                 const std::string& archive_path,
                                                                 ArchiveFormat f,
                                                                 const ByteSource& next) const {
  if (f != ArchiveFormat::kConda) return Internal("only .conda archives are extracted streamed");
  return make_tree(key, [&](const std::string& pkg) {
    return extract_conda_stream(next, archive_path, pkg, fs_, scratch_.local(), limits_);
  });
}

Result<std::string> StoreImpl::extract(const Key& key, const std::string& archive_path,
                                       ArchiveFormat f, ExtractStats* stats) const {
  auto pending = extract_pending(key, archive_path, f);
  drop_page_cache(archive_path);  // a published archive is clean: its pages go
  if (!pending.ok()) return pending.status();
  MAT_ASSIGN_OR_RETURN(std::string pkg, (*pending)->commit());
  if (stats) *stats = (*pending)->stats();
  return pkg;
}

Result<StoreStats> StoreImpl::stats() const {
  StoreStats s;
  MAT_ASSIGN_OR_RETURN(auto archives, list_dir(paths_.archives_dir()));
  for (const auto& name : archives) {
    int64_t size = 0;
    if (!is_regular(path_join(paths_.archives_dir(), name), &size)) continue;
    ++s.archives;
    s.archive_bytes += size;
  }
  MAT_ASSIGN_OR_RETURN(auto trees, list_dir(paths_.trees_dir()));
  for (const auto& name : trees) {
    auto key = parse_key(name);
    if (!key) continue;
    ++s.trees;
    // Sizes come from the manifest: no walk over thousands of files.
    auto text = read_file(paths_.tree_manifest(*key));
    if (!text.ok()) continue;
    auto m = parse_manifest(*text, paths_.tree_manifest(*key));
    if (!m.ok()) continue;
    for (const auto& [path, e] : *m) {
      if (e.type != Type::kFile) continue;
      ++s.tree_files;
      s.tree_bytes += e.size;
    }
  }
  MAT_ASSIGN_OR_RETURN(auto tmp, list_dir(paths_.tmp_dir()));
  s.tmp_entries = static_cast<int64_t>(tmp.size());
  return s;
}

std::vector<VerifyProblem> StoreImpl::verify_archive(const std::string& name) const {
  std::string path = path_join(paths_.archives_dir(), name);
  auto parsed = parse_archive_name(name);
  if (!parsed) {
    return {{"", path, "unexpected file in archives/: remove it (`rm " + path + "`) if it is yours"}};
  }
  const Key& key = parsed->first;
  std::vector<VerifyProblem> out;
  Distrust bad;
  if (!find_archive(key, parsed->second, &bad)) {
    if (bad.path.empty()) return {};  // gone meanwhile
    out.push_back({key.str(), path, bad.why + ": not used; it is replaced when next needed",
                   VerifyProblem::Part::kArchive});
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return out;  // nothing to hash
  }
  auto got = hash_file(path, key.kind);
  if (!got.ok()) {
    out.push_back({key.str(), path, got.status().message(), VerifyProblem::Part::kArchive});
  } else if (*got != key.hex) {
    const char* algo = key.kind == HashKind::kSha256 ? "sha256" : "md5";
    out.push_back({key.str(), path,
                   std::string(algo) + " mismatch: expected " + key.hex + ", got " + *got,
                   VerifyProblem::Part::kArchive});
  }
  return out;
}

std::vector<VerifyProblem> StoreImpl::verify_locks() const {
  auto names = list_dir(paths_.locks_dir());
  if (!names.ok()) return {{"", paths_.locks_dir(), names.status().message()}};
  std::vector<VerifyProblem> out;
  for (const auto& name : *names) {
    std::string path = path_join(paths_.locks_dir(), name);
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) continue;
    std::string why = S_ISREG(st.st_mode) ? distrust_reason(st, euid_) : "not a regular file";
    if (!why.empty()) {
      out.push_back({"", path, why + ": remove it (`rm " + path + "`) while no install runs"});
    }
  }
  return out;
}

std::vector<VerifyProblem> StoreImpl::verify_tree(const std::string& name) const {
  std::vector<VerifyProblem> out = verify_tree_members(name);
  for (auto& p : out) {
    if (!p.key.empty()) p.part = VerifyProblem::Part::kTree;
  }
  return out;
}

std::vector<VerifyProblem> StoreImpl::verify_tree_members(const std::string& name) const {
  std::string dir = path_join(paths_.trees_dir(), name);
  auto key = parse_key(name);
  if (!key) {
    return {{"", dir, "unexpected entry in trees/: remove it (`rm -r " + dir + "`) if it is yours"}};
  }
  std::string k = key->str();
  std::string manifest_path = paths_.tree_manifest(*key);
  // The entry as find_tree() sees it; a version-1 manifest is not damage (the entry is simply
  // extracted afresh when next used), and its members are checked one by one below anyway.
  std::vector<VerifyProblem> out;
  Distrust bad;
  if (!find_tree(*key, &bad) && !bad.path.empty() && !bad.legacy) {
    out.push_back({k, bad.path, bad.why + ": not used; it is replaced when next needed"});
    if (bad.path != manifest_path) return out;  // the entry or pkg/: nothing safe to walk
    struct stat st;
    if (::lstat(manifest_path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return out;
  }
  auto text = read_file(manifest_path);
  if (!text.ok()) {
    out.push_back({k, manifest_path, "manifest unreadable: " + text.status().message()});
    return out;
  }
  auto want = parse_manifest(*text, manifest_path);
  if (!want.ok()) {
    out.push_back({k, manifest_path, want.status().message()});
    return out;
  }

  std::string pkg = paths_.tree_pkg(*key);
  DiskTree have;
  UniqueFd root(::open(pkg.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  Status st = root.valid() ? walk_tree(root.get(), "", pkg, euid_, &have) : ErrnoStatus(pkg, errno);
  if (!st.ok()) {
    out.push_back({k, pkg, st.message()});
    return out;
  }

  auto problem = [&](const std::string& path, std::string what) {
    out.push_back({k, path_join(pkg, path), std::move(what)});
  };
  // Every member, whatever the manifest says: one another user can change is a way in.
  for (const auto& [path, h] : have) {
    if (!h.distrust.empty()) problem(path, h.distrust);
  }
  for (const auto& [path, w] : *want) {
    auto it = have.find(path);
    if (it == have.end()) {
      problem(path, std::string(type_name(w.type)) + " missing");
      continue;
    }
    const ManifestEntry& h = it->second.e;
    if (h.type != w.type || it->second.special) {
      problem(path, std::string("expected a ") + type_name(w.type) + ", found a " +
                        (it->second.special ? "special file" : type_name(h.type)));
    } else if (w.type == Type::kSymlink && h.target != w.target) {
      problem(path,
              "symlink target changed: expected '" + w.target + "', found '" + h.target + "'");
    } else if (w.type == Type::kFile) {
      if (h.size != w.size) {
        problem(path, "size changed: expected " + std::to_string(w.size) + ", found " +
                          std::to_string(h.size));
      } else if (h.mode != w.mode) {
        problem(path, "mode changed: expected " + std::to_string(w.mode) + ", found " +
                          std::to_string(h.mode));
      } else if (auto x = file_digest(path_join(pkg, path), w.digest_kind); !x.ok()) {
        problem(path, x.status().message());
      } else if (*x != w.digest_hex()) {
        problem(path,
                std::string(w.digest_kind == ManifestEntry::Digest::kXxh3 ? "xxh3" : "sha256") +
                    " mismatch: expected " + w.digest_hex() + ", got " + *x);
      }
    }
  }
  for (const auto& [path, h] : have) {
    if (!want->count(path)) problem(path, std::string("extra ") + type_name(h.e.type));
  }
  return out;
}

Result<std::vector<VerifyProblem>> StoreImpl::verify() const {
  // A directory of the cache that fails the trust check: the entries below it cannot be
  // vouched for by anything in them, so they are not walked (nor read, as root, through
  // whatever someone put there).
  if (!open_problems_.empty()) {
    std::vector<VerifyProblem> out;
    for (const auto& p : open_problems_) out.push_back({"", p.path, p.why + ": fix: " + p.fix});
    return out;
  }
  MAT_ASSIGN_OR_RETURN(auto archives, list_dir(paths_.archives_dir()));
  MAT_ASSIGN_OR_RETURN(auto trees, list_dir(paths_.trees_dir()));
  auto records = list_dir(paths_.meta_dir());
  if (!records.ok() && records.status().code() != Code::kNotFound) return records.status();
  if (!records.ok()) records = std::vector<std::string>{};  // an older version's cache
  // One job per entry, in parallel (hashing dominates); results are kept in listing order so
  // the report does not depend on timing.
  const size_t n = archives.size() + trees.size() + records->size();
  std::vector<std::vector<VerifyProblem>> found(n);
  tbb::parallel_for(size_t{0}, n, [&](size_t i) {
    if (i < archives.size()) {
      found[i] = verify_archive(archives[i]);
    } else if (i < archives.size() + trees.size()) {
      found[i] = verify_tree(trees[i - archives.size()]);
    } else {
      found[i] = verify_record((*records)[i - archives.size() - trees.size()]);
    }
  });
  std::vector<VerifyProblem> out;
  for (auto& v : found) {
    for (auto& p : v) out.push_back(std::move(p));
  }
  for (auto& p : verify_locks()) out.push_back(std::move(p));
  return out;
}

Result<std::set<std::string>> StoreImpl::entry_keys() const {
  std::set<std::string> keys;
  MAT_ASSIGN_OR_RETURN(auto archives, list_dir(paths_.archives_dir()));
  for (const auto& name : archives) {
    if (auto parsed = parse_archive_name(name)) keys.insert(parsed->first.str());
  }
  MAT_ASSIGN_OR_RETURN(auto trees, list_dir(paths_.trees_dir()));
  for (const auto& name : trees) {
    if (auto key = parse_key(name)) keys.insert(key->str());
  }
  return keys;
}

void StoreImpl::remove_own_temp_files() const {
  auto tmp = list_dir(paths_.tmp_dir());
  if (!tmp.ok()) return;
  for (const auto& name : *tmp) {
    if (tmp_name_pid(name) == ::getpid()) remove_all(path_join(paths_.tmp_dir(), name)).ignore();
  }
}

Status StoreImpl::clean(bool all) const {
  // tmp/: a name carries the pid that made it. Entries of live processes (this one included:
  // another thread may be extracting right now) are left alone.
  // One that cannot be removed (an untrusted tree moved aside whose directories another user
  // owns) does not stop the others; the first failure is returned at the end.
  MAT_ASSIGN_OR_RETURN(auto tmp, list_dir(paths_.tmp_dir()));
  Status first;
  for (const auto& name : tmp) {
    auto pid = tmp_name_pid(name);
    if (pid && (*pid == ::getpid() || ::kill(*pid, 0) == 0 || errno == EPERM)) continue;
    Status st = remove_all(path_join(paths_.tmp_dir(), name));
    if (first.ok()) first = st;
  }
  MAT_RETURN_IF_ERROR(first);
  // Lock files are kept: deleting one while another process waits on it lets a third process
  // lock a fresh file of the same name, and both would then "hold" the entry.
  if (!all) return Status::Ok();
  MAT_ASSIGN_OR_RETURN(auto keys, entry_keys());
  for (const auto& s : keys) {
    Key key = *parse_key(s);
    MAT_ASSIGN_OR_RETURN(FileLock lock, lock_entry(key, /*wait=*/false));
    if (!lock.held()) continue;  // in use by another process: keep it
    MAT_RETURN_IF_ERROR(remove_entry(key));
  }
  return clean_records();
}

// Records of meta/ whose entry is gone (a source) or leads nowhere (an md5 link to an entry
// that is gone), and damaged ones. A record for an entry being produced right now may go too:
// it is only a hint (the md5 index) or is written again by the producer (a source) afterwards.
Status StoreImpl::clean_records() const {
  auto names = list_dir(paths_.meta_dir());
  if (!names.ok()) return names.status().code() == Code::kNotFound ? Status::Ok() : names.status();
  for (const auto& name : *names) {
    auto meta = parse_meta_name(name);
    if (!meta) continue;  // not ours to judge
    const std::string path = path_join(paths_.meta_dir(), name);
    Key entry = meta->key;
    if (meta->md5_link) {
      auto text = read_trusted_record(path, euid_);
      auto link = text.ok() ? parse_md5_link(*text, meta->key.hex) : std::nullopt;
      if (link) entry = link->sha256;
      if (!link && text.status().code() == Code::kNotFound) continue;
      if (!link) entry = Key{};  // damaged: removed below
    }
    if (!entry.hex.empty() && (path_exists(paths_.tree(entry)) || any_archive(entry))) continue;
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return ErrnoStatus("remove " + path, errno);
  }
  return Status::Ok();
}

Status StoreImpl::remove_entry(const Key& key) const {
  MAT_RETURN_IF_ERROR(remove_archive(key));
  return remove_tree(key);
}

Status StoreImpl::remove_archive(const Key& key) const {
  MAT_RETURN_IF_ERROR(check_key(key));
  for (ArchiveFormat f : kAllFormats) {
    std::string path = paths_.archive(key, f);
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      MAT_RETURN_IF_ERROR(move_aside(fs_, paths_, path));
    } else if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return ErrnoStatus("remove " + path, errno);
    }
  }
  return Status::Ok();
}

Status StoreImpl::remove_tree(const Key& key) const {
  MAT_RETURN_IF_ERROR(check_key(key));
  // Move the tree out of trees/ first, so find_tree() never sees a half-deleted tree.
  std::string tree = paths_.tree(key);
  if (!path_exists(tree)) return Status::Ok();
  std::string grave = paths_.new_tmp_path();
  MAT_RETURN_IF_ERROR(fs_.rename(tree, grave));
  return remove_all(grave);
}

std::optional<std::pair<std::string, ArchiveFormat>> StoreImpl::any_archive(const Key& key) const {
  if (!check_key(key).ok()) return std::nullopt;
  for (ArchiveFormat f : kAllFormats) {
    std::string path = paths_.archive(key, f);
    if (path_exists(path)) return std::make_pair(std::move(path), f);
  }
  return std::nullopt;
}

Result<std::vector<VerifyProblem>> StoreImpl::verify_entry(const Key& key) const {
  MAT_RETURN_IF_ERROR(check_key(key));
  std::vector<VerifyProblem> out;
  for (ArchiveFormat f : kAllFormats) {
    if (!path_exists(paths_.archive(key, f))) continue;
    for (auto& p : verify_archive(key.str() + format_ext(f))) out.push_back(std::move(p));
  }
  if (path_exists(paths_.tree(key))) {
    for (auto& p : verify_tree(key.str())) out.push_back(std::move(p));
  }
  return out;
}

std::vector<VerifyProblem> StoreImpl::verify_record(const std::string& name) const {
  const std::string path = path_join(paths_.meta_dir(), name);
  auto meta = parse_meta_name(name);
  if (!meta) {
    return {{"", path, "unexpected file in meta/: remove it (`rm " + path + "`) if it is yours"}};
  }
  const std::string k = meta->key.str();
  auto problem = [&](std::string what) {
    return std::vector<VerifyProblem>{{k, path, std::move(what), VerifyProblem::Part::kMeta}};
  };
  auto text = read_trusted_record(path, euid_);
  if (!text.ok() && text.status().code() == Code::kNotFound) return {};  // gone meanwhile
  if (!text.ok()) return problem(text.status().message() + ": not used");
  if (!meta->md5_link) {
    std::string_view url = *text;
    if (!url.ends_with('\n') || !recordable_source(url.substr(0, url.size() - 1))) {
      return problem("damaged source record (not one http(s) URL without credentials): not used");
    }
    return {};
  }
  auto link = parse_md5_link(*text, meta->key.hex);
  if (!link) return problem("damaged md5 index record: not used");
  if (!link->verified) return {};  // a lock's claim: checked against the archive when used
  auto archive = any_archive(link->sha256);
  if (!archive) return {};  // the entry is gone: the record leads to a miss, then is replaced
  auto md5 = hash_file(archive->first, HashKind::kMd5);
  if (md5.ok() && *md5 != meta->key.hex) {
    return problem("md5 index record says " + link->sha256.str() + ", whose archive has md5 " +
                   *md5 + ": not used");
  }
  return {};
}

std::optional<Md5Link> StoreImpl::find_md5(const std::string& md5_hex) const {
  Key md5{HashKind::kMd5, md5_hex};
  if (!check_key(md5).ok()) return std::nullopt;
  const std::string hex = md5.str().substr(4);  // lowercase
  auto text = read_trusted_record(paths_.md5_link(hex), euid_);
  if (!text.ok()) return std::nullopt;
  return parse_md5_link(*text, hex);
}

Status StoreImpl::record_md5(const std::string& md5_hex, const Key& sha256, bool verified) const {
  Key md5{HashKind::kMd5, md5_hex};
  MAT_RETURN_IF_ERROR(check_key(md5));
  MAT_RETURN_IF_ERROR(check_key(sha256));
  if (sha256.kind != HashKind::kSha256) return Internal("md5 index: target is not a sha256 key");
  const std::string hex = md5.str().substr(4);
  return write_record(fs_, paths_.new_tmp_path(".sha256"), paths_.md5_link(hex),
                      md5_link_text(hex, Key{HashKind::kSha256, sha256.str().substr(7)}, verified));
}

std::optional<std::string> StoreImpl::find_source(const Key& key) const {
  if (!check_key(key).ok()) return std::nullopt;
  auto text = read_trusted_record(paths_.source(key), euid_);
  if (!text.ok() || !text->ends_with('\n')) return std::nullopt;
  text->pop_back();
  if (!recordable_source(*text)) return std::nullopt;
  return *text;
}

bool StoreImpl::has_source(const Key& key) const {
  return check_key(key).ok() && path_exists(paths_.source(key));
}

Status StoreImpl::record_source(const Key& key, const std::string& url) const {
  MAT_RETURN_IF_ERROR(check_key(key));
  if (!recordable_source(url)) return Status::Ok();
  return write_record(fs_, paths_.new_tmp_path(".source"), paths_.source(key), url + "\n");
}

Status StoreImpl::remove_record(const std::string& path) const {
  auto slash = path.rfind('/');
  if (slash == std::string::npos || path.substr(0, slash) != paths_.meta_dir() ||
      !parse_meta_name(path.substr(slash + 1))) {
    return Internal(path + ": not a record of " + paths_.meta_dir());
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return ErrnoStatus("remove " + path, errno);
  return Status::Ok();
}

}  // namespace

// An archive is read once, by its extraction, and is then only kept for `cache verify` and
// re-extraction. Its page-cache pages (clean once fsynced) are handed back to the kernel right
// away, so the tree files written next reuse recently freed pages instead of growing the page
// cache by the archive's size. On a VM whose host backs guest memory lazily, a never-touched
// page costs several µs to fault in; a just-freed one does not (measured: writing 1 GB took
// 0.24 s of sys right after deleting a 1 GB file, 1.6-2.9 s into fresh memory).
void drop_page_cache(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.valid()) ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED);
}

Result<std::unique_ptr<Store>> Store::open(const std::string& root, Fs& fs,
                                           const StoreOptions& options) {
  // Checked once per run, before anything is read or fetched: ~10 directories, one openat and
  // one fstat each.
  const uid_t euid = ::geteuid();
  const std::string abs = absolute_path(root);
  std::vector<TrustProblem> problems;
  auto real = open_trusted_dirs(abs, Paths::store_dirs(), euid, &problems,
                                Paths::optional_store_dirs());
  if (!real.ok()) return real.status().with_context("open cache " + abs);
  if (!problems.empty() && !options.report_distrust) {
    std::string msg =
        "other users could change what this cache installs, so it is not used (README "
        "\"Permission model\"):";
    for (const auto& p : problems) msg += "\n  " + p.path + ": " + p.why + ": fix: " + p.fix;
    return InvalidInput(msg);
  }
  return std::unique_ptr<Store>(
      new StoreImpl(Paths(*real), fs, euid, std::move(problems), options.limits));
}

}  // namespace mat::cache
