// cache/extract.h: secure archive extraction (internal to cache/; Store::extract is the public
// entry point).
//
// Members are written with *at() calls under an fd for the destination, never with
// archive_write_disk and never through a path string, so nothing can land outside it:
//   - absolute names, any ".." component          -> kCorrupt
//   - a member whose parent is a symlink or a file -> kCorrupt (parents are opened O_NOFOLLOW)
//   - symlink targets that are absolute or leave the package root, resolved from the link's
//     directory and through the package's own symlinks -> kCorrupt
//   - hard links to anything but a regular file extracted earlier -> kCorrupt
//   - devices, fifos, sockets                      -> kCorrupt
//   - a file replacing a directory or vice versa   -> kCorrupt
//   - a duplicate regular file or symlink: the last one wins (tar semantics)
//   - names that are not valid UTF-8               -> kCorrupt (the manifest is JSON)
//   - names, symlink and hard-link targets longer than 4095 bytes -> kCorrupt
//   - more than 32 special tar headers (pax, GNU long names) before one member -> kCorrupt
//     (libarchive reads at most 1 MiB per special header and stops after 32 in a row)
// Conda packages (.conda, .tar.bz2) are then checked against their own info/paths.json, or
// info/files for legacy packages: sizes, SHA-256 digests and path types
// (check_conda_metadata in extract_checks.h), kCorrupt naming the path, what paths.json
// declares and what the archive holds.
// Every archive is held to its ExtractLimits (store.h) while it is read: expanded bytes (both
// decompressed and written), expansion ratio and member count, each checked before the byte or
// member is written, kInvalidInput naming the limit and its option.
// Wheels (ArchiveFormat::kWheel) are held to PEP 427 on top of that, each failure kCorrupt
// naming the wheel and the member:
//   - symlink or hard-link members; a duplicate member name (no last-wins: pip and Python's
//     zipfile would disagree on which copy counts)
//   - a member whose bytes read differ from the size its zip entry declares ("sizes that lie"),
//     a CRC-32 that differs, an encrypted member (cache/zip_reader.h: wheels are read with
//     libzip from the central directory, as pip's zipfile does, and inflated by ISA-L)
//   - not exactly one top-level *.dist-info directory, or no RECORD in it
//   - any file missing from RECORD (except RECORD, RECORD.jws, RECORD.p7s), any RECORD row whose
//     file is absent, and any sha256 or size that differs from the file (the SHA-256 computed
//     while the member is written, as for every file).
//     Rows hashed with sha384/sha512 are checked for size only; weaker algorithms are rejected.
//   - file modes are pip's: 0755 if the zip gives the member any executable bit, else 0644.
// Leading "./" and "." components are dropped. Files keep their permission bits except group
// and other write (mode & 0755), plus owner-read, so the cache stays readable and nobody but
// its owner can change a file (cache/trust.h); directories are 0755 (before umask) whatever
// the archive says, since conda records no directory modes. mtimes are not restored.
//
// Zips (wheels, the .conda outer zip) must pass check_zip_layout (cache/zip_layout.h) before
// anything is extracted: local headers that disagree with the central directory, entries that
// do not tile the file, duplicate names -> kCorrupt naming the member. A .conda's inner tars are
// taken in file order and by name, on both paths.
// Names: zips (wheels, the .conda outer zip) are read with libzip (cache/zip_reader.h), which
// gives UTF-8 names in any locale. Tar names are raw bytes, except pax "path" records, which
// libarchive decodes into the process locale: the process must run with a UTF-8 LC_CTYPE (main()
// calls setlocale(LC_CTYPE, "C.UTF-8") or similar), else such a name fails with kInternal.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "cache/manifest.h"
#include "cache/store.h"
#include "materializer/base/fs.h"
#include "materializer/base/hash.h"
#include "materializer/base/status.h"

namespace mat::cache {

class ZipScratch;

// Per-thread scratch reused across packages: the data buffer and the SHA-256 context. One object
// is used by one thread at a time (Store keeps one per thread in an enumerable_thread_specific).
class ExtractScratch {
 public:
  ExtractScratch();
  ~ExtractScratch();
  ExtractScratch(const ExtractScratch&) = delete;
  ExtractScratch& operator=(const ExtractScratch&) = delete;

  std::vector<char>& buffer() { return buf_; }
  Hasher& sha256() { return sha256_; }
  // The zip reader's buffers and inflate state (wheels, .conda outer zips), made on first use.
  ZipScratch& zip();

 private:
  std::vector<char> buf_;
  Hasher sha256_{HashKind::kSha256};
  std::unique_ptr<ZipScratch> zip_;
};

// Extracts `archive_path` (format `f`) into `dest_dir`, an existing empty directory, and
// returns what was written. Regular files are hashed (SHA-256) while written; data goes
// through `fs` (so FaultFs can fail it).
// Errors: kCorrupt (damaged or malicious archive, or one whose files disagree with its own
// metadata; message names the archive file, the inner tar for .conda, the member and the
// reason), kInvalidInput (over one of `limits`), kNoSpace, kIo, kInternal (locale, see above).
// On error `dest_dir` holds partial output; the caller removes it.
// Thread safety: concurrent calls are fine with distinct `scratch` objects. A wheel of 8 MB or
// more (uncompressed) is extracted by several readers at once on the caller's TBB arena, inside
// this_task_arena::isolate() and with scratch objects of their own, so the calling thread never
// picks up another package's task meanwhile and `scratch` is never re-entered.
Result<Manifest> extract_archive(const std::string& archive_path, ArchiveFormat f,
                                 const std::string& dest_dir, Fs& fs, ExtractScratch& scratch,
                                 const ExtractLimits& limits = {});

// extract_archive() for a .conda whose bytes are still arriving: `next` hands them out in order,
// blocking for bytes not there yet, and ends (an empty block) only once the archive is whole at
// `archive_path` and its digest verified. The outer zip is read in order, by its local headers
// (ZipStreamReader, cache/zip_layout.h: strict, each member's sizes and CRC-32 checked); at the
// end the complete file must pass the layout check extract_archive() makes, and the members
// read must be exactly its central directory's (names, offsets, sizes, CRC-32, nothing between
// them), so the tree is the one extract_archive() gives. kCorrupt when they are not, or when the
// zip cannot be read in order (e.g. a stored member sized only by its data descriptor): the
// caller then extracts from the complete file instead, which gives the canonical result or
// error. `next`'s own errors are returned as they are. On error `dest_dir` holds partial output.
// The expansion ratio applies to the bytes arrived so far (ExpansionBudget::grew), so an archive
// whose first part compresses far better than the whole may fail here and pass from the file.
Result<Manifest> extract_conda_stream(const ByteSource& next, const std::string& archive_path,
                                      const std::string& dest_dir, Fs& fs, ExtractScratch& scratch,
                                      const ExtractLimits& limits = {});

// Counts from a manifest (hard links count as files).
ExtractStats stats_of(const Manifest& m);

// Exposed for tests: true if a symlink at `link_path` (relative to the package root) with the
// relative `target` stays inside the root, following the package's own symlinks in `m`.
bool symlink_stays_inside(const Manifest& m, const std::string& link_path,
                          const std::string& target);

}  // namespace mat::cache
