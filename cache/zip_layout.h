// cache/zip_layout.h: the structure of a zip file (a wheel, a .conda's outer zip), checked so
// that every reader of the archive sees the same members: one archive, one tree.
//
// A zip describes its members twice: a local header in front of each member's data, which
// readers that go front to back use (ZipStreamReader below, for a .conda still downloading;
// libarchive's streaming reader; `unzip -` style tools), and the central directory at the end,
// which libzip (cache/zip_reader.h), pip's zipfile and conda use. Where the two disagree (a
// central directory pointing at a hidden local entry with a decoy in front of it, names or
// sizes that differ, bytes no entry owns) two readers get two different trees from one archive
// and one sha256, and the cache keeps whichever came first. check_zip_layout() refuses every
// such archive. It requires:
//   - one end-of-central-directory record whose comment reaches exactly the end of the file,
//     and no other end record that some reader could take instead: none inside that comment
//     (pip's zipfile takes the last one), none before it within libzip's 64 KiB search window
//     that points at a central directory (libzip picks among those by a heuristic);
//   - zip64: when a zip64 locator precedes the end record, it points at a zip64 end record of
//     the version-1 size directly before it; the end record's fields are either saturated or
//     equal to the zip64 record's; one disk only;
//   - the central directory ending exactly where the zip64 records (or the end record) begin,
//     holding exactly the number of entries both records give, each well formed (zip64 extra
//     fields where a field is saturated);
//   - no two entries with the same name (raw bytes);
//   - each entry's local header at its offset, agreeing with it on the name bytes, the
//     compression method, the flags that change how it is read (encryption, data descriptor,
//     UTF-8 name), the CRC-32 and both sizes; with the data-descriptor flag the local header
//     may give 0 for any of these instead (its writer did not know them yet), and the data
//     descriptor after the data (signature optional; 8-byte sizes when the local header has a
//     zip64 extra field) must give them;
//   - the entries, in offset order, tile the file: the first at offset 0, each (header, name,
//     extra field, data, data descriptor) ending exactly where the next begins, the last where
//     the central directory begins. Nothing may precede the first entry: conda and wheel
//     writers never put anything there, and a prefix is room for a second archive or hidden
//     entries (libzip and zipfile would accept a self-extractor stub by shifting offsets).
// Every failure is kCorrupt: "<archive>: member '<name>': <what disagreed>".
//
// Cost: no member data is read. One pread of the file's last 64 KiB (the end records; all of a
// small wheel), one of the central directory, and the local headers through a 16 KiB window
// (one pread per header for big members, one per window for small ones).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cache/store.h"
#include "materializer/base/status.h"

namespace mat::cache {

// One member as the central directory and its local header describe it (check_zip_layout has
// made sure they agree), or, from ZipStreamReader, as it was read in order.
struct ZipEntry {
  std::string name;         // raw bytes, undecoded
  uint32_t index = 0;       // position in the central directory (check_zip_layout only)
  int64_t offset = 0;       // of the local header
  int64_t data_offset = 0;  // of the (compressed) data
  int64_t comp_size = 0;    // bytes of data in the archive
  int64_t size = 0;         // uncompressed bytes
  uint32_t crc = 0;         // CRC-32 of the uncompressed bytes
  uint16_t method = 0;      // 0 stored, 8 deflate, ...
  uint16_t flags = 0;       // general purpose bits (central directory's)
  int64_t end = 0;          // past the data and any data descriptor: where the next entry begins
};

struct ZipLayout {
  std::vector<ZipEntry> entries;  // in file order (by offset)
  int64_t cd_offset = 0;          // where the central directory begins (the local entries end)
};

// A raw member name as messages show it: at most 200 bytes, control characters and bytes that
// are not UTF-8 escaped as \xNN (messages reach terminals and the JSON report).
std::string printable_zip_name(std::string_view raw);

// Checks the zip open at `fd` (`file_size` bytes) as described above; `shown` names it in
// messages. Errors: kCorrupt (inconsistent or malformed), kIo (a read failed).
// Thread safety: reads with pread only; concurrent calls on one fd are fine.
Result<ZipLayout> check_zip_layout(int fd, int64_t file_size, const std::string& shown);

// Reads a zip front to back by its local headers, as its bytes arrive from `next` (a .conda
// being downloaded), strictly: each entry must begin exactly where the previous one ended, and
// the entries end where the central directory (or, for an empty zip, an end record) begins;
// anything else there is kCorrupt. A member is handed out uncompressed (stored: the source's
// own blocks, no copy; deflate: zlib, which stops exactly at the stream's end) and checked at
// its end: the compressed and uncompressed sizes and the CRC-32 against the local header (when
// it gives them) and the data descriptor (when flagged). Members that cannot be read in order
// are kCorrupt too: encrypted ones, methods other than stored and deflate, and stored members
// whose size only the data descriptor gives. What was read is kept in seen(): the caller
// compares it with the file's layout once the file is complete (check_streamed_layout), which
// is what makes the tree read in order the one the central directory gives.
// Not thread-safe; `next` must outlive the reader.
class ZipStreamReader {
 public:
  ZipStreamReader(const ByteSource& next, std::string shown);
  ~ZipStreamReader();
  ZipStreamReader(const ZipStreamReader&) = delete;
  ZipStreamReader& operator=(const ZipStreamReader&) = delete;

  // The next member's local header (name, offsets, method, flags; sizes and CRC as the local
  // header gives them), after reading whatever of the current member was not read; nullopt
  // once the central directory begins (then cd_offset() is where). Errors: kCorrupt, or the
  // source's own.
  Result<std::optional<ZipEntry>> next_entry();
  // The current member's next uncompressed block, valid until the next call; empty at its end,
  // once its sizes, CRC-32 and data descriptor have been checked and it was added to seen().
  Result<std::span<const char>> read();

  // Members read to their end, in file order, with the sizes and CRC-32 as read.
  const std::vector<ZipEntry>& seen() const { return seen_; }
  int64_t cd_offset() const { return cd_offset_; }

 private:
  struct Inflater;
  // Makes avail_ non-empty; false at the end of the source (its errors as they are).
  Result<bool> more();
  // The next n unconsumed bytes in one piece (fewer at the end of the source), not consumed.
  Result<std::span<const char>> peek(size_t n);
  void skip(size_t n);               // consumes n bytes of avail_
  Status take(void* out, size_t n);  // the next n bytes, copied and consumed
  Result<std::span<const char>> read_stored();
  Result<std::span<const char>> read_deflated();
  Status finish_member();  // sizes, CRC-32, data descriptor
  Status member_error(const std::string& what) const;

  const ByteSource& next_;
  std::string shown_;
  std::span<const char> avail_;  // unconsumed bytes: of the source's block, or of carry_
  std::vector<char> carry_;      // bytes joined across blocks by peek()
  int64_t pos_ = 0;              // file offset of avail_'s first byte
  bool source_done_ = false;
  std::optional<ZipEntry> cur_;  // the member being read
  bool cur_zip64_ = false;       // its local header has a zip64 extra field
  bool cur_done_ = false;        // its data was read to the end
  int64_t comp_read_ = 0, out_ = 0;
  uint32_t crc_ = 0;
  std::unique_ptr<Inflater> inflater_;
  std::vector<ZipEntry> seen_;
  int64_t cd_offset_ = -1;
};

// Ok when `stream` (a ZipStreamReader that reached the central directory) read exactly the
// members of `layout` (check_zip_layout of the complete file): the same names at the same
// offsets with the same method, sizes and CRC-32, each ending where the next begins, and
// nothing between the last one and the central directory. Else kCorrupt naming the first
// member that differs.
Status check_streamed_layout(const ZipStreamReader& stream, const ZipLayout& layout,
                             const std::string& shown);

}  // namespace mat::cache
