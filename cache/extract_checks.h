// cache/extract_checks.h: what extraction checks beyond member names and types (extract.h):
// the expansion limits of ExtractLimits, counted while an archive is read, and a conda
// package's files against its own info/paths.json (or info/files). Internal to cache/.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "cache/manifest.h"
#include "cache/store.h"
#include "materializer/base/status.h"

namespace mat::cache {

// Counts one archive's expansion against its ExtractLimits. Callers charge bytes and members
// BEFORE writing or creating them, so nothing is written past a limit: the first charge over it
// fails with kInvalidInput naming the archive (`shown`), the limit and its option, and every
// later charge fails the same way.
//
// Thread safety: the charges may come from several threads at once (a big wheel's readers,
// a .conda's zstd read-ahead helper); counters are atomic.
class ExpansionBudget {
 public:
  // `archive_bytes`: the archive's size, or 0 while it is not known yet (see grew()).
  ExpansionBudget(const ExtractLimits& limits, std::string shown, int64_t archive_bytes);

  // An archive read as it arrives: `archive_bytes` of it have been read so far. The ratio then
  // applies to what has arrived, a stricter bound than the final one; the caller rereads the
  // complete file when the streamed read fails, so a legitimate archive is not refused for it.
  void grew(int64_t archive_bytes) {
    archive_bytes_.store(archive_bytes, std::memory_order_relaxed);
  }

  // `n` more bytes are about to be written into the tree.
  Status write(int64_t n) { return charge(written_, n, "written"); }
  // `n` more bytes came out of a decompressor (tar headers and skipped data included).
  Status decode(int64_t n) { return charge(decoded_, n, "decompressed"); }
  // The decompressor has produced `total` bytes so far (libarchive's own filters, which count
  // for us: archive_filter_bytes).
  Status decoded_total(int64_t total);
  // One more member (file, link or directory, explicit or created as a parent).
  Status member();
  // The archive declares `n` members (a zip's central directory): fails at once if that is over
  // the limit, charges nothing.
  Status expect_members(int64_t n) const;

  // The most bytes the archive may expand to, given what is known of its size now.
  int64_t byte_limit() const;
  // The error for going past byte_limit() (`what`: "written", "decompressed"), for a decoder
  // that enforces the limit itself.
  Status limit_error(const char* what) const;
  int64_t written() const { return written_.load(std::memory_order_relaxed); }
  int64_t decoded() const { return decoded_.load(std::memory_order_relaxed); }

 private:
  Status charge(std::atomic<int64_t>& counter, int64_t n, const char* what);

  const ExtractLimits limits_;
  const std::string shown_;
  std::atomic<int64_t> archive_bytes_;
  std::atomic<int64_t> written_{0}, decoded_{0}, members_{0};
};

// "16 MiB", "32 GiB", "1.5 GiB", "123 bytes": for limits in messages.
std::string format_bytes(int64_t n);

// Checks a conda package's extracted tree (under `root_fd`, described by `m`, whose files carry
// the SHA-256 computed while they were written) against its own metadata, as conda, mamba and
// rattler check a package cache entry, but strictly and before the entry is committed:
//   - info/paths.json: every entry's "_path" must be a plain relative path (no "..", "." or
//     empty components, not absolute); a "hardlink" entry must be a regular file (a tar hard
//     link counts) with exactly "size_in_bytes" bytes and the "sha256" digest when given (the
//     digest of the file as shipped: prefix placeholders are replaced only when linking); a
//     "softlink" entry must be a symlink (its "sha256"/"size_in_bytes", when present, describe
//     the file it points to and are not checked here); a "directory" entry a directory.
//   - without paths.json, info/files (packages built before conda-build 3): every listed path
//     must exist, of any type (that format records nothing more).
//   - files the metadata does not list are allowed: they stay in the cache and are never linked
//     (conda, mamba and rattler ignore them too).
//   - a package with neither file has nothing to check (the link stage installs nothing of it).
// The metadata files must be regular files of at most kMaxCondaMetadataBytes.
// Errors: kCorrupt naming `where` (the archive), the path, what was declared and what was found;
// kIo if the metadata cannot be read.
Status check_conda_metadata(int root_fd, const Manifest& m, const std::string& where);

// info/paths.json of a package with the files limit's worth of entries is ~100 MB; anything
// beyond this is not a real package.
inline constexpr int64_t kMaxCondaMetadataBytes = int64_t{1} << 30;

}  // namespace mat::cache
