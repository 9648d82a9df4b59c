// cache: the content-addressed package store.
//
// Entries are keyed by the archive's digest from the lock: SHA-256 when the lock has one, MD5
// only when that is all it has. Layout (all paths built in cache/paths.cc, nowhere else):
//
//   ROOT/v1/archives/<key><ext>     verified archive, ext ".conda" / ".tar.bz2" / ".whl"
//   ROOT/v1/trees/<key>/pkg/...     the archive's members, extracted exactly (no prefix
//                                   replacement); info/ included
//   ROOT/v1/trees/<key>/manifest.json  SHA-256 + size + type of every member (cache verify)
//   ROOT/v1/locks/<key>.lock        per-entry flock, held while an entry is being produced
//   ROOT/v1/tmp/                    temp files and dirs (".tmp-<pid>-<token>")
//   ROOT/v1/meta/md5-<M>.sha256     md5 index: the sha256 entry holding the archive of MD5 M
//   ROOT/v1/meta/<key>.source       the http(s) URL the entry was downloaded from (for repair)
//
// with <key> = "sha256-<64 hex>" or "md5-<32 hex>". Entries are stored by SHA-256: an
// `@EXPLICIT` `#md5` lock's package is downloaded once, hashed with both digests and stored
// under its sha256, and the md5 index (cache/meta.h) leads later md5 lookups there. md5-<hex>
// entries are only those an older version made; they are still used.
//
// Publish protocol: write into tmp/ (same file system) → verify → fsync → rename into place.
// A final name always means a complete, verified entry; a crash leaves only tmp/ garbage that
// `clean` removes. The renames themselves become durable at sync_dirs() (one fsync of
// archives/ and one of trees/ per run, not one per entry): a power loss before it can only
// make entries disappear, never expose a partial one. Concurrent processes coordinate with
// the per-entry lock: whoever holds it produces the entry; the others wait for that entry
// only, then find it published.
//
// Permission model (cache/trust.h, README "Permission model"): a tree file is linked into
// prefixes and run, as root on the workers, so the store trusts only what the effective uid or
// root owns and nobody else can write. open() refuses a cache whose directories (or those
// above it) fail that; an entry that fails it is passed over by find_archive()/find_tree(),
// which say why, and replaced when the caller produces it afresh.
//
// Thread safety: a Store is immutable after open(); all methods may be called concurrently
// (for distinct keys; the entry lock serialises the same key across processes and threads).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "materializer/base/fs.h"
#include "materializer/base/hash.h"
#include "materializer/base/status.h"

namespace mat::cache {

struct Key {
  HashKind kind = HashKind::kSha256;
  std::string hex;  // lowercase
  // "sha256-<hex>" / "md5-<hex>"
  std::string str() const;
  bool operator==(const Key&) const = default;
};

// "sha256-<hex>" / "md5-<hex>" back to a Key (lowercase hex); nullopt for anything else.
std::optional<Key> parse_key(std::string_view s);

enum class ArchiveFormat { kConda, kTarBz2, kWheel };

// An archive's bytes in order, block by block, as a download delivers them
// (GrowingFileReader::next): blocks until more bytes exist; an empty block at the end, and again
// on every later call. A block stays valid until the next call.
using ByteSource = std::function<Result<std::span<const char>>()>;
// From a file name: ".conda", ".tar.bz2", ".whl"; nullopt otherwise.
std::optional<ArchiveFormat> format_from_name(std::string_view file_name);
const char* format_ext(ArchiveFormat f);

// What one archive may expand to (issue 11, defect 13). Extraction stops at the first byte, or
// member, over a limit, with kInvalidInput naming the archive, the limit and the option that
// raises it; nothing of the tree is kept. The defaults (README, "Limits") are far above any
// real package and far below what a decompression bomb would write:
struct ExtractLimits {
  // Bytes an archive may expand to: both what its decompressors produce (the inner tar streams
  // of a .conda, the tar of a .tar.bz2, a wheel's inflated members; tar headers and members
  // skipped included) and what is written into its tree (files, holes of sparse members
  // included). --max-expanded-size.
  int64_t max_expanded_bytes = int64_t{32} << 30;
  // Expanded bytes per byte of archive, applied once an archive has expanded past
  // ratio_grace_bytes (below that nothing is at stake, and tiny archives have noisy ratios).
  // --max-expansion-ratio.
  int64_t max_expansion_ratio = 200;
  int64_t ratio_grace_bytes = int64_t{16} << 20;
  // Members per package: files, symlinks, hard links and directories, the parents created for
  // them included. --max-files-per-package.
  int64_t max_members = 500'000;
};

struct ExtractStats {
  int64_t files = 0;  // regular files written
  int64_t bytes = 0;  // uncompressed bytes written
  int64_t symlinks = 0;
  int64_t dirs = 0;
};

// An archive being written into the cache's tmp/ (the download sink writes through this).
// Not thread-safe: one writer, one thread at a time. Destruction without publish() removes the
// temp file.
class PendingArchive {
 public:
  virtual ~PendingArchive() = default;
  virtual Status reset() = 0;  // truncate to 0 (retry from byte 0)
  virtual Status write(const char* data, size_t len) = 0;
  virtual Status finish() = 0;  // flush; the caller then verifies the digest
  virtual void abort() = 0;     // remove the temp file
  virtual int64_t bytes() const = 0;
  // The temp file: complete and readable once finish() returned (extraction reads it there,
  // so the fsync of publish() can run later, on another thread). "" after publish()/abort().
  virtual const std::string& path() const = 0;
  // The caller has verified the digest: fsync and rename to archives/<key><ext>, replacing
  // an archive there that find_archive() passes over (a trusted one is kept). Returns the
  // final path.
  virtual Result<std::string> publish() = 0;
  // publish() to archives/<key><ext> instead of the name begin_archive() was given: an
  // md5-only download is stored under the sha256 its bytes turned out to have. The caller
  // holds that entry's lock. Errors: kInvalidInput for a malformed key.
  virtual Status retarget(const Key& key) = 0;
};

// A tree extracted into tmp/, not yet under trees/. Destruction without commit() removes it.
// Not thread-safe; may be handed to another thread (commit() blocks on the disk).
class PendingTree {
 public:
  virtual ~PendingTree() = default;
  // The extracted members, in tmp/ until commit().
  virtual const std::string& pkg_dir() const = 0;
  virtual const ExtractStats& stats() const = 0;
  // fsync the manifest, rename into trees/<key> (the commit point). If a trusted tree
  // appeared meanwhile (another process), theirs is kept; one that find_tree() passes over is
  // first moved into tmp/ and removed. Returns the published tree's pkg/ directory.
  virtual Result<std::string> commit() = 0;
};

// Hands a file's page-cache pages back to the kernel (POSIX_FADV_DONTNEED). For an archive that
// was read once, by its extraction, after its fsync (dirty pages are not dropped). A hint:
// failures are ignored.
void drop_page_cache(const std::string& path);

struct StoreStats {
  int64_t archives = 0, archive_bytes = 0;
  int64_t trees = 0, tree_files = 0, tree_bytes = 0;
  int64_t tmp_entries = 0;
};

// Why find_archive()/find_tree() passed over an entry that is there.
struct Distrust {
  std::string path;     // what failed the check
  std::string why;      // "writable by group and others (mode 0666)", ...
  bool legacy = false;  // made by an older materializer (not a sign of tampering)
};

struct StoreOptions {
  // open() fails (kInvalidInput) when another user could change the cache's directories or
  // one above them. With `report_distrust` (`cache verify`) it opens the cache all the same,
  // creates nothing below a directory that failed, and verify() lists the problems.
  bool report_distrust = false;
  // Expansion limits for every archive this store extracts.
  ExtractLimits limits;
};

struct VerifyProblem {
  // What `cache verify --repair` does about it: re-extract or fetch the entry's archive or tree,
  // drop a record of meta/, or nothing (kOther: a directory's permissions, a stray file).
  enum class Part { kOther, kArchive, kTree, kMeta };
  std::string key;      // the entry ("" for kOther); for an md5 index record, "md5-<M>"
  std::string path;     // what is wrong
  std::string problem;  // "sha256 mismatch: ...", "file missing", ...
  Part part = Part::kOther;
};

// An md5 index record (cache/meta.h): the archive whose MD5 was looked up is stored under
// `sha256`. `verified` = hashed by this cache; else a lock's unchecked claim, to be checked
// against the stored archive before use.
struct Md5Link {
  Key sha256;
  bool verified = false;
};

class Store {
 public:
  // Opens (creating if needed) a store rooted at `root`, which it resolves to its real path
  // (root() returns that). Checks every directory from "/" down to v1/'s subdirectories
  // (cache/trust.h). Its extractions obey `options.limits`. Errors: kInvalidInput naming each
  // untrusted directory, what is wrong and the command that fixes it; kIo, kNoSpace.
  static Result<std::unique_ptr<Store>> open(const std::string& root, Fs& fs = posix_fs(),
                                             const StoreOptions& options = {});
  virtual ~Store() = default;

  virtual const std::string& root() const = 0;

  // The published, verified archive for `key`, if present and trusted. One that is there but
  // fails the check (not a regular file, owned by another user, writable by group or others)
  // is not returned; `distrust` (if not null) then says why. Costs one lstat.
  virtual std::optional<std::string> find_archive(const Key& key, ArchiveFormat f,
                                                  Distrust* distrust) const = 0;
  std::optional<std::string> find_archive(const Key& key, ArchiveFormat f) const {
    return find_archive(key, f, nullptr);
  }
  // The directory holding the extracted members (".../trees/<key>/pkg"), if published and
  // trusted: trees/<key> and its pkg/ are directories and its manifest.json a file, owned by
  // the effective uid or root and not writable by group or others, and the manifest is one
  // this version wrote for `key` (which vouches for the modes of everything inside). Else
  // nullopt, and `distrust` (if not null) says why when something is there. Costs two lstat
  // and one small read of the manifest's head (open, fstat, pread, close), not a walk.
  virtual std::optional<std::string> find_tree(const Key& key, Distrust* distrust) const = 0;
  std::optional<std::string> find_tree(const Key& key) const { return find_tree(key, nullptr); }

  // Per-entry lock (both archive and tree of `key`). wait=false returns a lock that is
  // !held() if someone else holds it. The lock file is never opened through a symlink (see
  // FileLock).
  virtual Result<FileLock> lock_entry(const Key& key, bool wait) const = 0;

  // Starts writing an archive for `key` into tmp/. Caller should hold the entry lock.
  virtual Result<std::unique_ptr<PendingArchive>> begin_archive(const Key& key,
                                                                ArchiveFormat f) const = 0;

  // Extracts a verified archive into trees/<key> (tmp dir, then rename). Members that would land
  // outside the tree (absolute, "..", through a symlink, symlink targets escaping the package
  // root, hard links to outside) make the whole package kCorrupt with the member named.
  // Damaged archives are kCorrupt, and so are conda packages whose files disagree with their
  // info/paths.json (or info/files) and wheels whose files disagree with their RECORD
  // (extract.h). An archive over a limit is kInvalidInput (ExtractLimits). Nothing of a failed
  // extraction stays behind. Returns the tree's pkg/ directory. Caller should hold the entry
  // lock. Safe to call concurrently for different keys.
  virtual Result<std::string> extract(const Key& key, const std::string& archive_path,
                                      ArchiveFormat f, ExtractStats* stats) const = 0;
  // extract() split in two: the CPU half here, the disk-bound commit (fsync + rename) in the
  // returned PendingTree, so a caller can run it off its compute threads. Unlike extract(),
  // leaves the archive's page cache alone (it may still be dirty; see drop_page_cache).
  virtual Result<std::unique_ptr<PendingTree>> extract_pending(const Key& key,
                                                               const std::string& archive_path,
                                                               ArchiveFormat f) const = 0;
  // extract_pending() while the archive is still downloading: a .conda is extracted from
  // `next` as its bytes arrive (extract_conda_stream in extract.h), so the tree is ready soon
  // after the last byte instead of an extraction's time later. `next` ends only once the
  // download is complete and verified at `archive_path`. Only kConda (else kInternal). Any
  // error leaves nothing behind; the caller then uses extract_pending(), whose result or error
  // is the canonical one (a zip that cannot be read in order is kCorrupt here only).
  virtual Result<std::unique_ptr<PendingTree>> extract_streamed(const Key& key,
                                                                const std::string& archive_path,
                                                                ArchiveFormat f,
                                                                const ByteSource& next) const = 0;
  // Makes every rename into archives/ and trees/ done so far durable (fsync of each directory
  // that changed). Call once at the end of a run. Best effort: the entries are already
  // visible and complete; a failure only weakens durability across a power loss.
  virtual void sync_dirs() const = 0;

  virtual Result<StoreStats> stats() const = 0;
  // Re-hashes every archive against its key and every tree against its manifest, checks the
  // records of meta/ (readable, undamaged, trusted; the archive behind a "verified" md5 record
  // hashed with MD5), and checks the permission model on every directory, archive, lock file
  // and tree member (opened with report_distrust, the cache's own directories first: if one of
  // them fails, only those problems are listed). Returns the problems found (empty = healthy),
  // each with the Part that `cache verify --repair` acts on. Errors only for run-wide
  // failures.
  virtual Result<std::vector<VerifyProblem>> verify() const = 0;
  // Removes tmp/ leftovers and stale locks; with `all`, every entry not locked right now, and
  // the records of meta/ whose entry is gone (or that are damaged).
  virtual Status clean(bool all) const = 0;
  // Removes this process's own tmp/ entries: for a process about to _exit() without running
  // the destructors that would (an interrupt's hard stop). Best effort; safe from any thread.
  virtual void remove_own_temp_files() const = 0;
  // Removes one entry (archive and tree), e.g. after `verify` found it damaged.
  virtual Status remove_entry(const Key& key) const = 0;

  // --- repair (`cache verify --repair`); the caller holds the entry lock -----------------------
  // verify() for one entry: its archives (any format) and its tree (not meta/).
  virtual Result<std::vector<VerifyProblem>> verify_entry(const Key& key) const = 0;
  // Removes the entry's archive (every format) / its tree (moved into tmp/ first, so
  // find_tree() never sees half of it). Absent is fine.
  virtual Status remove_archive(const Key& key) const = 0;
  virtual Status remove_tree(const Key& key) const = 0;
  // The path of the entry's archive in any format, if there is one (trusted or not), and its
  // format.
  virtual std::optional<std::pair<std::string, ArchiveFormat>> any_archive(
      const Key& key) const = 0;

  // --- records beside the entries (cache/meta.h) -----------------------------------------------
  // The md5 index record for `md5_hex` (32 hex digits), if present, trusted and undamaged.
  // Costs open, fstat, pread, close.
  virtual std::optional<Md5Link> find_md5(const std::string& md5_hex) const = 0;
  // Records md5 → sha256 (atomically replacing a record there). Errors: kInvalidInput for a
  // malformed digest, kIo, kNoSpace.
  virtual Status record_md5(const std::string& md5_hex, const Key& sha256,
                            bool verified) const = 0;
  // The URL the entry was downloaded from, if recorded (and trusted, and still recordable).
  virtual std::optional<std::string> find_source(const Key& key) const = 0;
  // True if a source record exists for `key` (one lstat; not read or checked).
  virtual bool has_source(const Key& key) const = 0;
  // Records `url` as the entry's source. A URL that recordable_source() refuses (not http(s),
  // credentials, too long) is not recorded: returns Ok and writes nothing.
  virtual Status record_source(const Key& key, const std::string& url) const = 0;
  // Removes a record of meta/ by its verify() problem path. Only names inside meta/.
  virtual Status remove_record(const std::string& path) const = 0;
};

}  // namespace mat::cache
