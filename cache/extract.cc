#include "cache/extract.h"

#include <fcntl.h>
#include <langinfo.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <numeric>
#include <optional>
#include <set>
#include <span>
#include <string_view>
#include <utility>

#include "cache/archive_handle.h"
#include "cache/bz2_parallel.h"
#include "cache/extract_checks.h"
#include "cache/wheel_record.h"
#include "cache/zip_reader.h"
#include "cache/zstd_readahead.h"
#include "materializer/base/beneath.h"
#include "materializer/base/hash.h"
#include "materializer/base/path_name.h"

namespace mat::cache {
namespace {

using Type = ManifestEntry::Type;

// One block of a member's data at `offset` in the member (tar members may be sparse; -1: right
// after the previous block), or the end of the member.
struct Block {
  const void* data = nullptr;
  size_t size = 0;
  int64_t offset = -1;
  bool end = false;
};
// Where the blocks come from: libarchive's current entry, or a ZipReader::Stream. An error's
// message says what is wrong with the data; the caller names the archive and the member.
using NextBlock = std::function<Result<Block>()>;

// 256 KiB: large enough that write(2) and hash calls are amortised, small enough to keep one
// per thread without thought.
constexpr size_t kBufferSize = 256 * 1024;
// libarchive's read block for the outer file.
constexpr size_t kReadBlock = 128 * 1024;
// Symlink hops followed when checking a target (the kernel's limit is 40).
constexpr int kMaxSymlinkHops = 40;
// Longest member name, symlink target or hard-link target accepted, in bytes: PATH_MAX less its
// NUL. Tar headers can declare far longer ones (GNU long names and pax "path" records, up to the
// 1 MiB libarchive reads into memory for one header); nothing longer could be opened by path
// in the cache or a prefix anyway.
constexpr size_t kMaxNameBytes = 4095;
// Wheels with at least this many uncompressed bytes are extracted by several readers at once
// (members split into groups of about equal size), so one big wheel is not a serial long pole.
constexpr int64_t kParallelWheelBytes = 8 << 20;
// Bytes per reader below which another reader does not pay for itself.
constexpr int64_t kBytesPerWheelReader = 4 << 20;
constexpr int kMaxWheelReaders = 8;

// Member name -> "a/b/c" without leading "./", "." or empty components. Returns the reason
// for rejecting it, or nullptr.
const char* normalize_name(std::string_view raw, std::string* out) {
  out->clear();
  if (raw.starts_with('/')) return "absolute path";
  if (!valid_utf8(raw)) return "name is not valid UTF-8";
  size_t pos = 0;
  while (pos <= raw.size()) {
    size_t end = raw.find('/', pos);
    if (end == std::string_view::npos) end = raw.size();
    std::string_view comp = raw.substr(pos, end - pos);
    pos = end + 1;
    if (comp.empty() || comp == ".") continue;
    if (comp == "..") return "path contains a '..' component";
    if (!out->empty()) out->push_back('/');
    out->append(comp);
  }
  return nullptr;
}

// A name for a message: at most 200 bytes of it (names can be 1 MiB long; messages are read by
// people). The cut never splits a UTF-8 sequence.
std::string shorten(std::string_view name) {
  constexpr size_t kShown = 200;
  if (name.size() <= kShown) return std::string(name);
  size_t cut = kShown;
  while (cut > 0 && (static_cast<unsigned char>(name[cut]) & 0xc0) == 0x80) --cut;
  return std::string(name.substr(0, cut)) + "...";
}

std::pair<std::string_view, std::string_view> split_parent(std::string_view path) {
  size_t slash = path.rfind('/');
  if (slash == std::string_view::npos) return {std::string_view(), path};
  return {path.substr(0, slash), path.substr(slash + 1)};
}

// Appends the components of `rel` to `out` (front first).
void push_components(std::string_view rel, std::deque<std::string>* out) {
  std::deque<std::string> comps;
  size_t pos = 0;
  while (pos <= rel.size()) {
    size_t end = rel.find('/', pos);
    if (end == std::string_view::npos) end = rel.size();
    comps.emplace_back(rel.substr(pos, end - pos));
    pos = end + 1;
  }
  out->insert(out->begin(), comps.begin(), comps.end());
}

std::string join(const std::vector<std::string>& comps) {
  std::string s;
  for (const auto& c : comps) {
    if (!s.empty()) s.push_back('/');
    s += c;
  }
  return s;
}

// First non-null of libarchive's locale and UTF-8 views of a name.
const char* entry_name(const char* mbs, const char* utf8) { return mbs ? mbs : utf8; }

bool locale_is_utf8() {
  const char* cs = nl_langinfo(CODESET);
  return cs && (std::strcmp(cs, "UTF-8") == 0 || std::strcmp(cs, "utf8") == 0);
}

Status undecodable_name(const std::string& where, const char* what) {
  if (!locale_is_utf8()) {
    return Internal(where + ": a member " + what +
                    " cannot be decoded because the process locale is not UTF-8 (" +
                    nl_langinfo(CODESET) + "); main() must call setlocale(LC_CTYPE, \"C.UTF-8\")");
  }
  return Corrupt(where + ": a member " + what + " is not valid UTF-8");
}

// Writes one archive's members below a root fd and records them. One per extract_archive call;
// both inner tars of a .conda go through the same Extractor, so they share one tree.
// The process umask, read without changing it: umask(2) can only swap it, and a swap, however
// brief, would race with other threads creating files. The "Umask:" line of /proc/self/status
// (Linux 4.7+); nullopt when that is unavailable.
// Whether files created in the directory `dir_fd` get gid 0 (the process's effective gid, or
// the directory's own when it is set-group-ID): then group write is root-group write.
bool keeps_group_write(int dir_fd) {
  struct stat st;
  if (::fstat(dir_fd, &st) != 0) return false;
  gid_t gid = (st.st_mode & S_ISGID) ? st.st_gid : ::getegid();
  return gid == 0;
}

std::optional<mode_t> read_umask() {
  std::FILE* f = std::fopen("/proc/self/status", "re");
  if (!f) return std::nullopt;
  std::optional<mode_t> umask;
  char line[256];
  while (std::fgets(line, sizeof line, f)) {
    unsigned m = 0;
    if (std::sscanf(line, "Umask: %o", &m) == 1) {
      umask = static_cast<mode_t>(m & 0777);
      break;
    }
  }
  std::fclose(f);
  return umask;
}

class Extractor {
 public:
  // `wheel` turns on the PEP 427 rules listed in extract.h. Every byte written and every member
  // is charged to `budget` first (shared by the Extractors filling one tree).
  Extractor(int root_fd, Fs& fs, ExtractScratch& scratch, ExpansionBudget& budget,
            bool wheel = false)
      : root_fd_(root_fd),
        fs_(fs),
        scratch_(scratch),
        budget_(budget),
        wheel_(wheel),
        umask_(read_umask()),
        file_mode_mask_(keeps_group_write(root_fd) ? 0775 : 0755) {}

  // Extracts every member of the tar `a`; `where` names the archive (and inner tar) in messages.
  // `filtered`: `a` decompresses with its own filters, whose output is then charged to the
  // budget from libarchive's count (archive_filter_bytes) after every header and data block.
  Status extract_all(archive* a, const std::string& where, bool filtered = false);
  // The same for a wheel read by ZipReader.
  Status extract_all(const ZipReader& z, ZipScratch& zs, const std::string& where);
  // Restricts the ZipReader extract_all() to the members whose index (0-based, in archive order)
  // has take[index] set, and marks the tree as shared with other Extractors filling it at the same
  // time: a directory that appears meanwhile is not an error. The caller has checked that
  // no name is both a file and a directory, and that no file name repeats (list_wheel()).
  void share_tree(std::vector<bool> take) {
    take_ = std::move(take);
    shared_tree_ = true;
  }
  // Merges what `other` extracted into the same tree (see share_tree()).
  void absorb(Extractor&& other) { m_.merge(other.m_); }
  // Checks every symlink against the complete tree (a later link can change what an earlier
  // target resolves through).
  Status finish(const std::string& where) const;
  // Wheels: checks the tree against its *.dist-info/RECORD (see extract.h).
  Status verify_wheel_record(const std::string& where) const;
  const Manifest& manifest() const { return m_; }
  Result<std::string> hash_member(const std::string& path, HashKind kind, const std::string& algo,
                                  const std::string& where) const;
  Manifest take() { return std::move(m_); }
  ExpansionBudget& budget() { return budget_; }

 private:
  bool taken(size_t index) const { return take_.empty() || (index < take_.size() && take_[index]); }
  Status add(archive_entry* e, const NextBlock& next, const std::string& where);
  Status add_dir(const std::string& path, const std::string& where);
  Status add_file(archive_entry* e, const NextBlock& next, const std::string& path,
                  const std::string& where);
  Status add_symlink(archive_entry* e, const std::string& path, const std::string& where);
  Status add_hardlink(archive_entry* e, const std::string& path, const std::string& where);

  // fd of `path`'s parent directory, creating missing ancestors (each recorded as a dir).
  // Every component is opened O_NOFOLLOW, so a symlink on disk can never be traversed.
  Result<int> parent_fd(const std::string& path, const std::string& where);
  // Makes room for a non-directory at `path`: kCorrupt if a directory is there, else removes
  // the earlier file or symlink (last one wins).
  Status replace_non_dir(int dir_fd, const std::string& path, const std::string& where);

  static Status member_error(const std::string& where, const std::string& path,
                             const std::string& why) {
    return Corrupt(where + ": member '" + path + "': " + why);
  }
  static Status sys_error(const std::string& where, const std::string& path, const char* op,
                          int err) {
    if (err == ENAMETOOLONG || err == EILSEQ) {
      return member_error(where, path, std::string(op) + ": " + std::strerror(err));
    }
    return ErrnoStatus(where + ": " + op + " '" + path + "'", err);
  }

  Status check_record_row(const RecordRow& row, const std::string& path,
                          const std::string& where) const;

  int root_fd_;
  Fs& fs_;
  ExtractScratch& scratch_;
  ExpansionBudget& budget_;
  bool wheel_ = false;
  // Files are created with their final mode; only where the umask would take bits away (or
  // it is unknown) does an fchmod follow: one syscall per file saved (35k per bench install).
  std::optional<mode_t> umask_;
  // Permission bits a package's file may keep: never other-write, group write only when the
  // files' group is root's (gid 0; cache/trust.h): a 0666 member would otherwise be a cache
  // file, hard-linked into every prefix, that other users can rewrite.
  mode_t file_mode_mask_;
  bool shared_tree_ = false;
  std::vector<bool> take_;  // empty = every member
  Manifest m_;
  std::string cached_dir_;  // the directory cached_fd_ refers to ("" = none cached)
  UniqueFd cached_fd_;
};

Status Extractor::extract_all(archive* a, const std::string& where, bool filtered) {
  auto charge_filter = [&]() -> Status {
    return filtered ? budget_.decoded_total(archive_filter_bytes(a, 0)) : Status::Ok();
  };
  for (;;) {
    archive_entry* e = nullptr;
    int r = archive_read_next_header(a, &e);
    MAT_RETURN_IF_ERROR(charge_filter());
    if (r == ARCHIVE_EOF) return Status::Ok();
    // ARCHIVE_WARN covers recoverable oddities such as a name libarchive could not convert;
    // a null name is caught in add(). It also covers a header libarchive gave up on (more than
    // 32 special headers in a row: pax, GNU long names): that entry has no file type, which
    // add() refuses like a device.
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN) return Corrupt(where + ": " + archive_error(a));
    NextBlock next = [&]() -> Result<Block> {
      Block b;
      la_int64_t offset = 0;
      int got = archive_read_data_block(a, &b.data, &b.size, &offset);
      MAT_RETURN_IF_ERROR(charge_filter());
      if (got == ARCHIVE_EOF) return Block{.end = true};
      if (got != ARCHIVE_OK && got != ARCHIVE_WARN) return Corrupt(archive_error(a));
      b.offset = offset;
      return b;
    };
    MAT_RETURN_IF_ERROR(add(e, next, where));
  }
}

Status Extractor::extract_all(const ZipReader& z, ZipScratch& zs, const std::string& where) {
  // The central directory's count is known before anything is written.
  MAT_RETURN_IF_ERROR(budget_.expect_members(static_cast<int64_t>(z.members())));
  ArchiveEntry e(archive_entry_new());
  for (size_t index = 0; index < z.members(); ++index) {
    if (!taken(index)) continue;
    auto m = z.member(index);
    if (!m.ok()) return Corrupt(where + ": " + m.status().message());
    archive_entry_clear(e.get());
    archive_entry_copy_pathname(e.get(), m->name.c_str());
    archive_entry_set_filetype(e.get(), m->is_dir ? AE_IFDIR : m->is_symlink ? AE_IFLNK : AE_IFREG);
    archive_entry_set_perm(e.get(), m->mode & 07777);
    archive_entry_set_size(e.get(), m->size);
    std::optional<ZipReader::Stream> stream;
    NextBlock next = [&]() -> Result<Block> {
      if (!stream) {
        auto s = z.read(index, zs);
        if (!s.ok()) return s.status();
        stream.emplace(std::move(s).value());
      }
      MAT_ASSIGN_OR_RETURN(std::span<const char> data, stream->next());
      return Block{.data = data.data(), .size = data.size(), .end = data.empty()};
    };
    MAT_RETURN_IF_ERROR(add(e.get(), next, where));
  }
  return Status::Ok();
}

Status Extractor::add(archive_entry* e, const NextBlock& next, const std::string& where) {
  MAT_RETURN_IF_ERROR(budget_.member());
  const char* raw = entry_name(archive_entry_pathname(e), archive_entry_pathname_utf8(e));
  if (!raw) return undecodable_name(where, "name");
  const char* hardlink = entry_name(archive_entry_hardlink(e), archive_entry_hardlink_utf8(e));
  for (const char* name : {raw, hardlink}) {
    if (name != nullptr && std::strlen(name) > kMaxNameBytes) {
      return member_error(where, shorten(raw),
                          std::string(name == raw ? "name" : "hard-link target") + " of " +
                              std::to_string(std::strlen(name)) + " bytes, more than " +
                              std::to_string(kMaxNameBytes));
    }
  }
  std::string path;
  if (const char* why = normalize_name(raw, &path)) return member_error(where, raw, why);

  mode_t type = archive_entry_filetype(e);
  if (path.empty()) {
    // "./" or "." itself: the root, which exists already.
    if (type == AE_IFDIR && !hardlink) return Status::Ok();
    return member_error(where, raw, "empty name");
  }
  if (wheel_ && (hardlink || type == AE_IFLNK)) {
    // pip would write a symlink member as a regular file holding the target path; nothing
    // legitimate needs one, and a link is the classic way out of the install directory.
    return member_error(where, path,
                        hardlink ? "hard link members are not allowed in a wheel"
                                 : "symlink members are not allowed in a wheel");
  }
  if (hardlink) return add_hardlink(e, path, where);
  switch (type) {
    case AE_IFDIR:
      return add_dir(path, where);
    case AE_IFREG:
      return add_file(e, next, path, where);
    case AE_IFLNK:
      return add_symlink(e, path, where);
    default:
      return member_error(where, path, "unsupported member type (device, fifo or socket)");
  }
}

Result<int> Extractor::parent_fd(const std::string& path, const std::string& where) {
  std::string_view parent = split_parent(path).first;
  if (parent.empty()) return root_fd_;
  if (cached_fd_.valid() && parent == cached_dir_) return cached_fd_.get();
  cached_fd_.reset();
  cached_dir_.clear();

  UniqueFd cur;
  int cur_fd = root_fd_;
  size_t pos = 0;
  for (;;) {
    size_t end = parent.find('/', pos);
    if (end == std::string_view::npos) end = parent.size();
    std::string prefix(parent.substr(0, end));
    std::string comp(parent.substr(pos, end - pos));
    auto it = m_.find(prefix);
    if (it == m_.end()) {
      MAT_RETURN_IF_ERROR(budget_.member());
      if (::mkdirat(cur_fd, comp.c_str(), 0755) != 0 && !(shared_tree_ && errno == EEXIST)) {
        return sys_error(where, prefix, "mkdir", errno);
      }
      m_.emplace(prefix, ManifestEntry{.type = Type::kDir});
    } else if (it->second.type != Type::kDir) {
      return member_error(
          where, path,
          "parent '" + prefix + "' is a " + type_name(it->second.type) + " in this package");
    }
    int fd = ::openat(cur_fd, comp.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return sys_error(where, prefix, "open directory", errno);
    cur = UniqueFd(fd);
    cur_fd = fd;
    if (end == parent.size()) break;
    pos = end + 1;
  }
  cached_dir_ = std::string(parent);
  cached_fd_ = std::move(cur);
  return cached_fd_.get();
}

Status Extractor::replace_non_dir(int dir_fd, const std::string& path, const std::string& where) {
  auto it = m_.find(path);
  if (it == m_.end()) return Status::Ok();
  if (it->second.type == Type::kDir) {
    return member_error(where, path, "would replace a directory of the same name");
  }
  std::string base(split_parent(path).second);
  if (::unlinkat(dir_fd, base.c_str(), 0) != 0 && errno != ENOENT) {
    return sys_error(where, path, "remove duplicate", errno);
  }
  m_.erase(it);
  return Status::Ok();
}

Status Extractor::add_dir(const std::string& path, const std::string& where) {
  auto it = m_.find(path);
  if (it != m_.end()) {
    if (it->second.type == Type::kDir) return Status::Ok();
    return member_error(where, path,
                        std::string("directory would replace a ") + type_name(it->second.type));
  }
  MAT_ASSIGN_OR_RETURN(int dir_fd, parent_fd(path, where));
  std::string base(split_parent(path).second);
  if (::mkdirat(dir_fd, base.c_str(), 0755) != 0 && !(shared_tree_ && errno == EEXIST)) {
    return sys_error(where, path, "mkdir", errno);
  }
  m_.emplace(path, ManifestEntry{.type = Type::kDir});
  return Status::Ok();
}

Status Extractor::add_file(archive_entry* e, const NextBlock& next, const std::string& path,
                           const std::string& where) {
  if (wheel_ && m_.count(path) && m_.at(path).type != Type::kDir) {
    return member_error(where, path, "duplicate member name in the wheel");
  }
  MAT_ASSIGN_OR_RETURN(int dir_fd, parent_fd(path, where));
  MAT_RETURN_IF_ERROR(replace_non_dir(dir_fd, path, where));
  std::string base(split_parent(path).second);
  // Never writable by other users, whatever the package says: the permission model's promise
  // (cache/trust.h) that lets find_tree() trust a tree without a stat per file. Directories are
  // made 0755, which the umask can only narrow.
  uint32_t mode = (archive_entry_perm(e) & file_mode_mask_) | 0400;
  // Wheels: pip's modes (0644, or 0755 when the zip marks the member executable), so files
  // hard-linked from this tree look exactly as `pip install` leaves them.
  if (wheel_) mode = (archive_entry_perm(e) & 0111) ? 0755 : 0644;
  UniqueFd fd(
      ::openat(dir_fd, base.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
  if (!fd.valid()) return sys_error(where, path, "create", errno);

  // Every file's SHA-256 is computed as it is written: the manifest keeps it, and the
  // package's own metadata (info/paths.json, a wheel's RECORD) is checked against it without
  // reading the file again. With SHA-NI it costs ~0.7 ms of CPU per MB (bench BM_Sha256:
  // 1.5 GB/s); it replaced an XXH3-64 (12 GB/s) that only `cache verify` used.
  Hasher& sha = scratch_.sha256();
  sha.reset();  // an earlier file may have failed half-way
  int64_t size = 0;
  const std::string shown = where + ": " + path;
  auto put = [&](const void* data, size_t n) -> Status {
    // Charged before the write: nothing is written past the limit.
    MAT_RETURN_IF_ERROR(budget_.write(static_cast<int64_t>(n)));
    sha.update(data, n);
    size += static_cast<int64_t>(n);
    return fs_.write_all(fd.get(), data, n, shown);
  };
  // Holes of a sparse tar member are written as zeros: the cache holds plain files.
  auto zeros_until = [&](int64_t offset) -> Status {
    if (size >= offset) return Status::Ok();  // no hole: the usual case, on every block
    std::vector<char>& zero = scratch_.buffer();
    std::fill(zero.begin(), zero.end(), '\0');
    while (size < offset) {
      size_t n = static_cast<size_t>(std::min<int64_t>(offset - size, std::ssize(zero)));
      MAT_RETURN_IF_ERROR(put(zero.data(), n));
    }
    return Status::Ok();
  };
  // Blocks are hashed and written straight from libarchive's buffer (no copy into ours).
  for (;;) {
    Result<Block> b = next();
    // A limit reached while decoding is the archive's, not this member's: passed on as it is.
    if (!b.ok() && b.status().code() == Code::kInvalidInput) return b.status();
    if (!b.ok()) return member_error(where, path, b.status().message());
    if (b->end) break;
    if (b->offset < 0) b->offset = size;
    if (b->offset < size) return member_error(where, path, "data blocks overlap");
    MAT_RETURN_IF_ERROR(zeros_until(b->offset));
    if (b->size > 0) MAT_RETURN_IF_ERROR(put(b->data, b->size));
  }
  if (!wheel_ && archive_entry_sparse_count(e) > 0 && archive_entry_size_is_set(e)) {
    MAT_RETURN_IF_ERROR(zeros_until(archive_entry_size(e)));  // a trailing hole
  }
  // The umask must not change what the package asked for.
  if (!umask_ || (mode & *umask_) != 0) {
    if (::fchmod(fd.get(), mode) != 0) return sys_error(where, path, "chmod", errno);
  }
  if (::close(fd.release()) != 0) return sys_error(where, path, "close", errno);
  if (wheel_) {
    // The size comes from the central directory; a deflate stream that ends short of it is
    // reported here with both numbers (ZipReader refuses one that runs long).
    if (archive_entry_size_is_set(e) && archive_entry_size(e) != size) {
      return member_error(where, path,
                          "the zip entry declares " + std::to_string(archive_entry_size(e)) +
                              " bytes but " + std::to_string(size) + " were read");
    }
  }
  ManifestEntry& entry = m_[path];
  entry = ManifestEntry{.type = Type::kFile, .mode = mode, .size = size};
  sha.finish(entry.digest.data());
  return Status::Ok();
}

Status Extractor::add_symlink(archive_entry* e, const std::string& path, const std::string& where) {
  const char* target = entry_name(archive_entry_symlink(e), archive_entry_symlink_utf8(e));
  if (!target) return undecodable_name(where, "symlink target");
  std::string_view t(target);
  if (t.empty()) return member_error(where, path, "symlink with an empty target");
  if (t.size() > kMaxNameBytes) {
    return member_error(where, path,
                        "symlink target of " + std::to_string(t.size()) + " bytes, more than " +
                            std::to_string(kMaxNameBytes));
  }
  if (!valid_utf8(t)) return member_error(where, path, "symlink target is not valid UTF-8");
  if (t.starts_with('/')) {
    return member_error(where, path, "symlink to absolute path '" + std::string(t) + "'");
  }
  // Lexical check first, for an early, precise error; finish() repeats it through symlinks.
  std::string_view dir = split_parent(path).first;
  int64_t depth = dir.empty() ? 0 : 1 + std::count(dir.begin(), dir.end(), '/');
  std::deque<std::string> comps;
  push_components(t, &comps);
  for (const auto& c : comps) {
    if (c.empty() || c == ".") continue;
    depth += (c == "..") ? -1 : 1;
    if (depth < 0) {
      return member_error(where, path,
                          "symlink target '" + std::string(t) + "' escapes the package");
    }
  }
  MAT_ASSIGN_OR_RETURN(int dir_fd, parent_fd(path, where));
  MAT_RETURN_IF_ERROR(replace_non_dir(dir_fd, path, where));
  std::string base(split_parent(path).second);
  if (::symlinkat(target, dir_fd, base.c_str()) != 0) {
    return sys_error(where, path, "symlink", errno);
  }
  m_[path] = ManifestEntry{.type = Type::kSymlink, .target = std::string(t)};
  return Status::Ok();
}

Status Extractor::add_hardlink(archive_entry* e, const std::string& path,
                               const std::string& where) {
  const char* raw = entry_name(archive_entry_hardlink(e), archive_entry_hardlink_utf8(e));
  std::string target;
  if (const char* why = normalize_name(raw, &target)) {
    return member_error(where, path, std::string("hard link to '") + raw + "': " + why);
  }
  auto it = m_.find(target);
  if (it == m_.end() || it->second.type != Type::kFile) {
    return member_error(where, path,
                        std::string("hard link to '") + raw +
                            "', which is not a regular file extracted earlier from this package");
  }
  if (target == path) return Status::Ok();
  ManifestEntry linked = it->second;

  // Open the target's directory before parent_fd() replaces the cached fd.
  UniqueFd target_dir;
  int target_dir_fd = root_fd_;
  if (std::string_view tparent = split_parent(target).first; !tparent.empty()) {
    MAT_ASSIGN_OR_RETURN(int fd, parent_fd(target, where));
    target_dir = UniqueFd(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
    if (!target_dir.valid()) return sys_error(where, target, "dup", errno);
    target_dir_fd = target_dir.get();
  }
  MAT_ASSIGN_OR_RETURN(int dir_fd, parent_fd(path, where));
  MAT_RETURN_IF_ERROR(replace_non_dir(dir_fd, path, where));
  std::string tbase(split_parent(target).second);
  std::string base(split_parent(path).second);
  // No AT_SYMLINK_FOLLOW: the target is a regular file we wrote (checked above).
  if (::linkat(target_dir_fd, tbase.c_str(), dir_fd, base.c_str(), 0) != 0) {
    return sys_error(where, path, "link", errno);
  }
  m_[path] = std::move(linked);
  return Status::Ok();
}

Status Extractor::finish(const std::string& where) const {
  for (const auto& [path, e] : m_) {
    if (e.type != Type::kSymlink) continue;
    if (!symlink_stays_inside(m_, path, e.target)) {
      return member_error(
          where, path,
          "symlink target '" + e.target + "' escapes the package through other symlinks");
    }
  }
  return Status::Ok();
}

// "<algo>=<urlsafe b64>" of the extracted member `path`, read back beneath the root without
// following any symlink (the tree was just written; nothing in it may lead elsewhere).
Result<std::string> Extractor::hash_member(const std::string& path, HashKind kind,
                                           const std::string& algo,
                                           const std::string& where) const {
  auto [parent, name] = split_parent(path);
  Result<BeneathDir> dir = open_dir_beneath(root_fd_, parent, Follow::kNever, "the package");
  if (!dir.ok()) return member_error(where, path, dir.status().message());
  UniqueFd fd;
  if (int err = open_read_at(dir->fd.get(), name, &fd)) {
    return sys_error(where, path, "open", err);
  }
  Hasher h(kind);
  std::vector<char>& buf = scratch_.buffer();
  for (;;) {
    ssize_t n = ::read(fd.get(), buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sys_error(where, path, "read", errno);
    if (n == 0) break;
    h.update(buf.data(), static_cast<size_t>(n));
  }
  return record_hash_from_hex(algo, h.hex());
}

// RECORD rows name files relative to the wheel root; the exemptions are RECORD itself and its
// signatures, which cannot hash themselves (PEP 427).
Status Extractor::check_record_row(const RecordRow& row, const std::string& path,
                                   const std::string& where) const {
  const std::string subject = where + ": " + path;
  auto it = m_.find(path);
  if (it == m_.end() || it->second.type != Type::kFile) {
    return Corrupt(subject + ": listed in RECORD but not in the wheel");
  }
  if (!row.size.empty() && row.size != std::to_string(it->second.size)) {
    return Corrupt(subject + ": size mismatch with RECORD (RECORD says " + row.size +
                   " bytes, file has " + std::to_string(it->second.size) + ")");
  }
  if (row.hash.empty()) return Status::Ok();  // caller decides whether that is allowed
  std::string_view algo = std::string_view(row.hash).substr(0, row.hash.find('='));
  if (algo == "sha256") {
    std::string want = row.hash;
    while (want.ends_with('=') && want.size() > 7) want.pop_back();  // tolerate padding
    const ManifestEntry& e = it->second;
    const std::string have =
        "sha256=" + urlsafe_b64_nopad(std::string_view(
                        reinterpret_cast<const char*>(e.digest.data()), e.digest.size()));
    if (want != have) {
      return Corrupt(subject + ": sha256 mismatch with RECORD (RECORD says " + row.hash +
                     ", file has " + have + ")");
    }
    return Status::Ok();
  }
  if (algo == "sha384" || algo == "sha512") {
    // Only sha256 is computed while the bytes stream past (every real wheel uses it); a row
    // with a longer digest reads its file back from the tree just written. Rare, and checked
    // by hash like any other: a size check alone lets any same-size content through.
    Result<std::string> have = hash_member(
        path, algo == "sha384" ? HashKind::kSha384 : HashKind::kSha512, std::string(algo), where);
    if (!have.ok()) return have.status();
    std::string want = row.hash;
    while (want.ends_with('=') && want.size() > algo.size() + 1) want.pop_back();
    if (want != *have) {
      return Corrupt(subject + ": " + std::string(algo) + " mismatch with RECORD (RECORD says " +
                     row.hash + ", file has " + *have + ")");
    }
    return Status::Ok();
  }
  return Corrupt(subject + ": RECORD hash '" + row.hash +
                 "' uses an algorithm weaker than sha256 or unknown (PEP 427 requires sha256 "
                 "or stronger)");
}

Status Extractor::verify_wheel_record(const std::string& where) const {
  std::vector<std::string> dist_infos;
  for (const auto& [path, e] : m_) {
    if (e.type == Type::kDir && path.find('/') == std::string::npos &&
        path.ends_with(".dist-info")) {
      dist_infos.push_back(path);
    }
  }
  if (dist_infos.size() != 1) {
    std::string found;
    for (const auto& d : dist_infos) found += (found.empty() ? " (" : ", ") + d;
    if (!found.empty()) found += ")";
    return Corrupt(where + ": a wheel needs exactly one top-level *.dist-info directory, found " +
                   std::to_string(dist_infos.size()) + found);
  }
  const std::string record = dist_infos[0] + "/RECORD";
  auto rec = m_.find(record);
  if (rec == m_.end() || rec->second.type != Type::kFile) {
    return Corrupt(where + ": " + record + " is missing");
  }
  UniqueFd fd(::openat(root_fd_, record.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return sys_error(where, record, "open", errno);
  std::string text;
  std::vector<char>& buf = scratch_.buffer();
  for (;;) {
    ssize_t n = ::read(fd.get(), buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sys_error(where, record, "read", errno);
    if (n == 0) break;
    text.append(buf.data(), static_cast<size_t>(n));
  }
  auto exempt = [&](const std::string& p) {
    return p == record || p == record + ".jws" || p == record + ".p7s";
  };
  std::set<std::string> listed;
  for (const RecordRow& row : parse_record(text)) {
    std::string path;
    if (const char* why = normalize_name(row.path, &path)) {
      return Corrupt(where + ": RECORD lists '" + row.path + "': " + why);
    }
    auto it = m_.find(path);
    if (it != m_.end() && it->second.type == Type::kDir) continue;  // some tools list dirs
    MAT_RETURN_IF_ERROR(check_record_row(row, path, where));
    if (row.hash.empty() && !exempt(path)) {
      return Corrupt(where + ": " + path + ": RECORD gives no hash for it");
    }
    listed.insert(path);
  }
  for (const auto& [path, e] : m_) {
    if (e.type == Type::kFile && !listed.count(path) && !exempt(path)) {
      return Corrupt(where + ": " + path + ": not listed in RECORD");
    }
  }
  return Status::Ok();
}

// --- formats ---------------------------------------------------------------------------------

Status open_file(archive* a, const std::string& path, const std::string& shown) {
  if (archive_read_open_filename(a, path.c_str(), kReadBlock) != ARCHIVE_OK) {
    int err = archive_errno(a);
    if (err == ENOENT) return NotFound(shown + ": " + archive_error(a));
    return Corrupt(shown + ": " + archive_error(a));
  }
  return Status::Ok();
}

Status require_ok(int r, const char* what) {
  if (r == ARCHIVE_OK) return Status::Ok();
  return Internal(std::string("libarchive lacks built-in ") + what + " support");
}

// A read-only private mapping of a whole file; empty for an empty file.
class MappedFile {
 public:
  ~MappedFile() {
    if (data_ != nullptr) ::munmap(data_, size_);
  }
  Status map(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return ErrnoStatus("open " + path, errno);
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) return ErrnoStatus("stat " + path, errno);
    size_ = static_cast<size_t>(st.st_size);
    if (size_ == 0) return Status::Ok();
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd.get(), 0);
    if (p == MAP_FAILED) return ErrnoStatus("mmap " + path, errno);
    data_ = p;
    ::madvise(data_, size_, MADV_SEQUENTIAL);
    return Status::Ok();
  }
  std::span<const unsigned char> bytes() const {
    return {static_cast<const unsigned char*>(data_), size_};
  }
  // Drops the pages of [from, to) from this process's resident set (they stay in the page
  // cache and fault back in if read again). Offsets are rounded inwards to pages.
  void release(int64_t from, int64_t to) const {
    static const int64_t page = ::sysconf(_SC_PAGESIZE);
    int64_t a = (from + page - 1) / page * page;
    int64_t b = std::min<int64_t>(to, static_cast<int64_t>(size_)) / page * page;
    if (data_ != nullptr && b > a) {
      ::madvise(static_cast<char*>(data_) + a, static_cast<size_t>(b - a), MADV_DONTNEED);
    }
  }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};

// Feeds libarchive's tar reader from a decoder that hands out decoded chunks in order
// (Bz2ParallelReader, ZstdReadAhead): no filter, no copy.
struct ChunkSource {
  std::function<Result<std::span<const char>>()> next;
  Status error;  // the decoder's, if it failed
};

la_ssize_t chunk_read(archive* /*a*/, void* ctx, const void** buf) {
  auto* src = static_cast<ChunkSource*>(ctx);
  Result<std::span<const char>> chunk = src->next();
  if (!chunk.ok()) {
    src->error = chunk.status();
    return -1;
  }
  *buf = chunk->data();
  return static_cast<la_ssize_t>(chunk->size());
}

// Extracts the plain tar that `next` decodes. The decoder's own error says more than the tar
// reader's "truncated input", so it wins.
Status extract_decoded_tar(std::function<Result<std::span<const char>>()> next,
                           const std::string& where, Extractor& ex) {
  // Every decoded byte is charged as libarchive pulls it, before it parses it: tar headers and
  // the data of members it skips count too (a sparse map or a skipped member could otherwise
  // run the decoder far past the limit without a byte written).
  ChunkSource src{[&ex, next = std::move(next)]() -> Result<std::span<const char>> {
                    MAT_ASSIGN_OR_RETURN(std::span<const char> chunk, next());
                    MAT_RETURN_IF_ERROR(ex.budget().decode(static_cast<int64_t>(chunk.size())));
                    return chunk;
                  },
                  Status::Ok()};
  ArchiveRead a(archive_read_new());
  archive_read_support_format_tar(a.get());
  if (archive_read_open(a.get(), &src, nullptr, chunk_read, nullptr) != ARCHIVE_OK) {
    return src.error.ok() ? Corrupt(where + ": " + archive_error(a.get())) : src.error;
  }
  Status st = ex.extract_all(a.get(), where);
  if (!st.ok() && !src.error.ok()) return src.error;
  return st;
}

constexpr int64_t kReleaseEvery = 4 << 20;

bool starts_like_bzip2(std::span<const unsigned char> b) {
  return b.size() >= 4 && b[0] == 'B' && b[1] == 'Z' && b[2] == 'h' && b[3] >= '1' && b[3] <= '9';
}

// A .tar.bz2 (the usual case) is decoded by Bz2ParallelReader, its blocks in parallel on the
// caller's arena, and read as a plain tar; anything else goes through libarchive's filters.
Status extract_tar(const std::string& path, const std::string& shown, Extractor& ex) {
  MappedFile file;
  if (Status st = file.map(path); !st.ok()) {
    if (st.code() == Code::kNotFound) return NotFound(shown + ": " + st.message());
    return st;
  }
  if (starts_like_bzip2(file.bytes())) {
    // The mapped archive's resident pages are kept to about the blocks being decoded: the
    // reader scans the whole input on its first call, then moves through it. Its helpers decode
    // ahead of the tar reader, so they get the byte limit too: a crafted block decodes to
    // ~46 MB, and several decoded ahead would otherwise be held past the limit.
    Bz2ReaderOptions options;
    options.max_output_bytes = ex.budget().byte_limit();
    options.output_limit_error = [&ex] { return ex.budget().limit_error("decompressed"); };
    Bz2ParallelReader reader(file.bytes(), shown, options);
    int64_t calls = 0, released = 0;
    return extract_decoded_tar(
        [&]() -> Result<std::span<const char>> {
          MAT_ASSIGN_OR_RETURN(std::span<const char> chunk, reader.next());
          if (calls++ == 0) {
            file.release(0, static_cast<int64_t>(file.bytes().size()));  // the scan's pages
          } else if (int64_t done = reader.input_consumed(); done - released >= kReleaseEvery) {
            file.release(released, done);
            released = done;
          }
          return chunk;
        },
        shown, ex);
  }
  ArchiveRead a(archive_read_new());
  // Real ".tar.bz2" packages are sometimes gzip or plain tar: accept the in-process
  // decompressors, but not support_filter_all(), whose lrzip/lzop/grzip readers run external
  // programs chosen by the archive's magic bytes.
  MAT_RETURN_IF_ERROR(require_ok(archive_read_support_filter_bzip2(a.get()), "bzip2"));
  MAT_RETURN_IF_ERROR(require_ok(archive_read_support_filter_gzip(a.get()), "gzip"));
  MAT_RETURN_IF_ERROR(require_ok(archive_read_support_filter_xz(a.get()), "xz"));
  MAT_RETURN_IF_ERROR(require_ok(archive_read_support_filter_zstd(a.get()), "zstd"));
  archive_read_support_format_tar(a.get());  // ustar, pax and GNU tar
  MAT_RETURN_IF_ERROR(open_file(a.get(), path, shown));
  return ex.extract_all(a.get(), shown, /*filtered=*/true);
}

struct WheelMember {
  size_t index;
  int64_t size;
};

// The wheel's members in archive order, from the central directory (no data is read). Rejects
// what extractors working side by side could not see: a repeated file name, and a name that is
// a file and also the parent directory of another member. Names that fail other checks are
// left to the extractor that takes them, for the same messages as a serial extraction.
Result<std::vector<WheelMember>> list_wheel(const ZipReader& z, const std::string& shown) {
  std::vector<WheelMember> out;
  std::set<std::string> files, dirs;
  std::string name;
  for (size_t index = 0; index < z.members(); ++index) {
    auto m = z.member(index);
    if (!m.ok()) return Corrupt(shown + ": " + m.status().message());
    out.push_back({index, std::max<int64_t>(m->size, 0)});
    if (normalize_name(m->name, &name) != nullptr || name.empty()) continue;
    if (m->is_dir) {
      dirs.insert(name);
    } else if (!files.insert(name).second) {
      return Corrupt(shown + ": member '" + name + "': duplicate member name in the wheel");
    }
    for (size_t slash = name.find('/'); slash != std::string::npos;
         slash = name.find('/', slash + 1)) {
      dirs.insert(name.substr(0, slash));
    }
  }
  for (const std::string& d : dirs) {
    if (files.count(d)) {
      return Corrupt(shown + ": member '" + d + "': is both a file and a directory in the wheel");
    }
  }
  return out;
}

// Readers for a wheel of `total` uncompressed bytes: 1 below kParallelWheelBytes or without
// spare threads in the arena.
int wheel_readers(int64_t total) {
  if (total < kParallelWheelBytes) return 1;
  int threads = tbb::this_task_arena::max_concurrency();
  int64_t by_size = total / kBytesPerWheelReader;
  return static_cast<int>(
      std::max<int64_t>(1, std::min<int64_t>({threads, kMaxWheelReaders, by_size})));
}

Status extract_wheel_with(const std::string& path, const std::string& shown, Extractor& ex,
                          ZipScratch& zs) {
  MAT_ASSIGN_OR_RETURN(std::unique_ptr<ZipReader> z, ZipReader::open_file(path, shown));
  return ex.extract_all(*z, zs, shown);
}

// Another reader of a wheel already opened (and checked) as `z`, for another group.
Status extract_wheel_again(const ZipReader& z, const std::string& shown, Extractor& ex,
                           ZipScratch& zs) {
  MAT_ASSIGN_OR_RETURN(std::unique_ptr<ZipReader> again, z.reopen());
  return ex.extract_all(*again, zs, shown);
}

// Big wheels: the members are split into groups of about equal size, each extracted into the
// same tree by its own reader, Extractor and scratch, in parallel; the results are merged into
// `ex`, which then checks RECORD over the whole tree as usual. The loop runs isolated: while
// this thread waits for the other groups it runs only this wheel's tasks, never another
// package's (whose extraction would re-enter this thread's scratch).
Status extract_wheel(const std::string& path, const std::string& shown, Extractor& ex, int root_fd,
                     Fs& fs, ExtractScratch& scratch) {
  // Most wheels are small: skip the listing pass when even a 4:1 deflate ratio could not reach
  // kParallelWheelBytes, or when there is no second thread to split onto.
  struct stat file;
  if (tbb::this_task_arena::max_concurrency() < 2 ||
      (::stat(path.c_str(), &file) == 0 && file.st_size * 4 < kParallelWheelBytes)) {
    return extract_wheel_with(path, shown, ex, scratch.zip());
  }
  MAT_ASSIGN_OR_RETURN(std::unique_ptr<ZipReader> z, ZipReader::open_file(path, shown));
  MAT_ASSIGN_OR_RETURN(std::vector<WheelMember> members, list_wheel(*z, shown));
  int64_t total = 0;
  for (const WheelMember& m : members) total += m.size;
  int groups = wheel_readers(total);
  if (groups <= 1) return ex.extract_all(*z, scratch.zip(), shown);

  // Largest first into the lightest group.
  std::vector<WheelMember> by_size = members;
  std::stable_sort(by_size.begin(), by_size.end(),
                   [](const WheelMember& a, const WheelMember& b) { return a.size > b.size; });
  std::vector<std::vector<bool>> take(groups, std::vector<bool>(members.size(), false));
  std::vector<int64_t> load(groups, 0);
  for (const WheelMember& m : by_size) {
    size_t g = std::min_element(load.begin(), load.end()) - load.begin();
    take[g][m.index] = true;
    load[g] += m.size;
  }
  std::vector<std::unique_ptr<ExtractScratch>> scratches;
  std::vector<std::unique_ptr<Extractor>> parts;
  for (int g = 0; g < groups; ++g) {
    scratches.push_back(std::make_unique<ExtractScratch>());
    parts.push_back(std::make_unique<Extractor>(root_fd, fs, *scratches.back(), ex.budget(),
                                                /*wheel=*/true));
    parts.back()->share_tree(std::move(take[g]));
  }
  std::vector<Status> results(groups);
  tbb::this_task_arena::isolate([&] {
    tbb::parallel_for(0, groups, [&](int g) {
      // Group 0 reads with the listing's reader; a ZipReader serves one thread at a time.
      results[g] = g == 0 ? parts[0]->extract_all(*z, scratches[0]->zip(), shown)
                          : extract_wheel_again(*z, shown, *parts[g], scratches[g]->zip());
    });
  });
  for (const Status& st : results) MAT_RETURN_IF_ERROR(st);
  for (auto& part : parts) ex.absorb(std::move(*part));
  return Status::Ok();
}

// Matches on the last path component: some repacked .conda files (one in the shared corpus,
// from rattler's tests) nest the members in a directory, and conda-package-streaming and rattler
// accept them. Outer names are never used as paths, so this costs no safety.
bool is_inner_tar(std::string_view name) {
  std::string_view base = split_parent(name).second;
  return (base.starts_with("info-") || base.starts_with("pkg-")) && base.ends_with(".tar.zst");
}

// The inner tar.zst is decoded a few chunks ahead on another worker when one is free
// (ZstdReadAhead), while this thread parses the tar and writes the files. Whoever holds the
// decoder pulls the member's next block (`member`: empty at its end); only one does at a time.
Status extract_inner(const std::function<Result<std::span<const char>>()>& member,
                     const std::string& where, Extractor& ex) {
  ZstdReadAhead reader(
      [&member, &ex](const void** data, size_t* size) -> Result<bool> {
        MAT_ASSIGN_OR_RETURN(std::span<const char> block, member());
        // The outer zip's output counts as decompressed too: a deflated member can inflate
        // ~1000x into zstd skippable frames that the zstd decoder passes over unseen.
        MAT_RETURN_IF_ERROR(ex.budget().decode(std::ssize(block)));
        *data = block.data();
        *size = block.size();
        return !block.empty();
      },
      where);
  return extract_decoded_tar([&reader] { return reader.next(); }, where, ex);
}

// A .conda is a zip holding metadata.json, info-*.tar.zst and pkg-*.tar.zst; either tar may be
// missing (info-only packages), both extract into the same tree. Other members are ignored. The
// zip is read with ZipReader (central directory; libzip checks the stored members' CRC-32).
// Members are taken in file order and chosen by name alone, exactly as extract_conda_streamed
// reads them, so both give the same tree (two inner tars writing one path: the later one in
// the file wins on both paths).
Status extract_conda(const std::string& path, const std::string& shown, Extractor& ex,
                     ExtractScratch& scratch) {
  MAT_ASSIGN_OR_RETURN(std::unique_ptr<ZipReader> outer, ZipReader::open_file(path, shown));
  int inner_tars = 0;
  for (const ZipEntry& e : outer->layout().entries) {
    if (!is_inner_tar(e.name)) continue;
    const std::string where = shown + ": " + printable_zip_name(e.name);
    auto member = outer->read(e.index, scratch.zip());
    if (!member.ok()) return Corrupt(where + " (outer zip): " + member.status().message());
    int64_t read = 0;
    MAT_RETURN_IF_ERROR(extract_inner(
        [&]() -> Result<std::span<const char>> {
          Result<std::span<const char>> block = member->next();
          if (!block.ok()) return Corrupt(where + " (outer zip): " + block.status().message());
          read += std::ssize(*block);
          // A deflate stream that ends short of the declared size would skip the CRC-32 check.
          if (block->empty() && read != e.size) {
            return Corrupt(where + " (outer zip): sizes that lie: the zip entry declares " +
                           std::to_string(e.size) + " bytes but " + std::to_string(read) +
                           " were read");
          }
          return block;
        },
        where, ex));
    ++inner_tars;
  }
  if (inner_tars == 0) return Corrupt(shown + ": no info-*.tar.zst or pkg-*.tar.zst member");
  return Status::Ok();
}

// A .conda read front to back as its bytes arrive (extract_conda_stream in extract.h). The outer
// zip is read by ZipStreamReader (local headers, in order, strictly: no byte between entries is
// skipped; sizes and CRC-32 checked at each member's end); the inner tars as in extract_conda.
// At the end the complete file's layout is checked as extract_conda checks it, and the members
// read must be its entries exactly: same names, offsets, sizes, CRC-32. Comparing names, order
// and local-header sizes was not enough: a member whose sizes only its data descriptor gives
// can hold a whole hidden member (in a zstd skippable frame) that the central directory points
// at, and libarchive's streaming reader skipped any bytes between members.
Status extract_conda_streamed(const ByteSource& next, const std::string& path,
                              const std::string& shown, Extractor& ex) {
  int64_t streamed = 0;
  ByteSource counted = [&]() -> Result<std::span<const char>> {
    MAT_ASSIGN_OR_RETURN(std::span<const char> block, next());
    streamed += static_cast<int64_t>(block.size());
    ex.budget().grew(streamed);
    return block;
  };
  ZipStreamReader zip(counted, shown);
  int inner_tars = 0;
  for (;;) {
    MAT_ASSIGN_OR_RETURN(std::optional<ZipEntry> e, zip.next_entry());
    if (!e) break;                         // the central directory
    // The rest of a member (all of an ignored one, what the tar reader left of an inner tar)
    // is read here, not by next_entry(), so that what it inflates to counts against the limits
    // too; its sizes and CRC-32 are checked at its end all the same.
    auto drain = [&]() -> Status {
      for (;;) {
        MAT_ASSIGN_OR_RETURN(std::span<const char> block, zip.read());
        if (block.empty()) return Status::Ok();
        MAT_RETURN_IF_ERROR(ex.budget().decode(std::ssize(block)));
      }
    };
    if (is_inner_tar(e->name)) {
      const std::string where = shown + ": " + printable_zip_name(e->name);
      MAT_RETURN_IF_ERROR(extract_inner([&] { return zip.read(); }, where, ex));
      ++inner_tars;
    }
    MAT_RETURN_IF_ERROR(drain());
  }
  // The central directory. The source ends only once the download is whole and verified.
  for (;;) {
    MAT_ASSIGN_OR_RETURN(std::span<const char> rest, counted());
    if (rest.empty()) break;
  }
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return ErrnoStatus("stat " + path, errno);
  if (st.st_size != streamed) {
    return Corrupt(shown + ": " + std::to_string(streamed) +
                   " bytes read in order, but the file has " + std::to_string(st.st_size));
  }
  // The layout check and libzip's listing, as extract_conda opens it.
  MAT_ASSIGN_OR_RETURN(std::unique_ptr<ZipReader> outer, ZipReader::open_file(path, shown));
  MAT_RETURN_IF_ERROR(check_streamed_layout(zip, outer->layout(), shown));
  if (inner_tars == 0) return Corrupt(shown + ": no info-*.tar.zst or pkg-*.tar.zst member");
  return Status::Ok();
}

}  // namespace

ExtractScratch::ExtractScratch() : buf_(kBufferSize) {}
ExtractScratch::~ExtractScratch() = default;
ZipScratch& ExtractScratch::zip() {
  if (!zip_) zip_ = std::make_unique<ZipScratch>();
  return *zip_;
}

bool symlink_stays_inside(const Manifest& m, const std::string& link_path,
                          const std::string& target) {
  std::vector<std::string> at;  // resolved components so far, from the package root
  if (target.starts_with('/')) return false;
  std::deque<std::string> todo;
  push_components(split_parent(link_path).first, &todo);
  for (auto& c : todo) {
    if (!c.empty()) at.push_back(std::move(c));
  }
  todo.clear();
  push_components(target, &todo);
  int hops = 0;
  while (!todo.empty()) {
    std::string c = std::move(todo.front());
    todo.pop_front();
    if (c.empty() || c == ".") continue;
    if (c == "..") {
      if (at.empty()) return false;
      at.pop_back();
      continue;
    }
    at.push_back(std::move(c));
    auto it = m.find(join(at));
    if (it == m.end() || it->second.type != Type::kSymlink) continue;
    // A loop fails with ELOOP in the kernel rather than escaping, so stop following it.
    if (++hops > kMaxSymlinkHops) return true;
    if (it->second.target.starts_with('/')) return false;
    at.pop_back();
    push_components(it->second.target, &todo);
  }
  return true;
}

ExtractStats stats_of(const Manifest& m) {
  ExtractStats s;
  for (const auto& [path, e] : m) {
    switch (e.type) {
      case Type::kFile:
        ++s.files;
        s.bytes += e.size;
        break;
      case Type::kSymlink:
        ++s.symlinks;
        break;
      case Type::kDir:
        ++s.dirs;
        break;
    }
  }
  return s;
}

namespace {

// Both entry points: a .conda is read from `streamed` when given (in order, as it arrives),
// else from the file; everything around it is shared.
Result<Manifest> extract_into(const std::string& archive_path, ArchiveFormat f,
                              const std::string& dest_dir, Fs& fs, ExtractScratch& scratch,
                              const ExtractLimits& limits, const ByteSource* streamed) {
  UniqueFd root(::open(dest_dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!root.valid()) return ErrnoStatus("open " + dest_dir, errno);
  const std::string shown = base_name(archive_path);
  // The ratio's denominator: the file's size, or, streamed, the bytes arrived so far.
  int64_t archive_bytes = 0;
  struct stat st;
  if (!streamed && ::stat(archive_path.c_str(), &st) == 0) archive_bytes = st.st_size;
  ExpansionBudget budget(limits, shown, archive_bytes);
  Extractor ex(root.get(), fs, scratch, budget, f == ArchiveFormat::kWheel);
  switch (f) {
    case ArchiveFormat::kConda:
      MAT_RETURN_IF_ERROR(streamed ? extract_conda_streamed(*streamed, archive_path, shown, ex)
                                   : extract_conda(archive_path, shown, ex, scratch));
      break;
    case ArchiveFormat::kTarBz2:
      MAT_RETURN_IF_ERROR(extract_tar(archive_path, shown, ex));
      break;
    case ArchiveFormat::kWheel:
      MAT_RETURN_IF_ERROR(extract_wheel(archive_path, shown, ex, root.get(), fs, scratch));
      break;
  }
  MAT_RETURN_IF_ERROR(ex.finish(shown));
  if (f == ArchiveFormat::kWheel) {
    MAT_RETURN_IF_ERROR(ex.verify_wheel_record(shown));
  } else {
    MAT_RETURN_IF_ERROR(check_conda_metadata(root.get(), ex.manifest(), shown));
  }
  return ex.take();
}

}  // namespace

Result<Manifest> extract_archive(const std::string& archive_path, ArchiveFormat f,
                                 const std::string& dest_dir, Fs& fs, ExtractScratch& scratch,
                                 const ExtractLimits& limits) {
  return extract_into(archive_path, f, dest_dir, fs, scratch, limits, nullptr);
}

Result<Manifest> extract_conda_stream(const ByteSource& next, const std::string& archive_path,
                                      const std::string& dest_dir, Fs& fs, ExtractScratch& scratch,
                                      const ExtractLimits& limits) {
  return extract_into(archive_path, ArchiveFormat::kConda, dest_dir, fs, scratch, limits, &next);
}

}  // namespace mat::cache
