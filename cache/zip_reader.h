// ZipReader: the members of a zip file (a wheel, a .conda's outer zip), listed and read with
// libzip from the central directory (the index pip's zipfile uses); deflate members are inflated
// by ISA-L's igzip in 256 KiB steps, stored members come as they are.
//
// Why not libarchive's zip reader: wheels are deflate, and zlib 1.2.13's inflate was half of a
// cold wheel install's user CPU. On the bench wheels' 87 MB (CRC-32 included): zlib 208 ms,
// igzip streaming 115 ms, libdeflate 94 ms. libdeflate needs each member whole in memory: with
// members up to 8 MB that is 16 MB of buffers per reader, which cost more in page faults (14k per
// run, +0.07 s of sys) than its speed saved; igzip streams with two 256 KiB buffers. The file is
// read, not mapped, so the resident size does not grow with the archive.
//
// Before anything is read, open_file() checks the archive's structure (cache/zip_layout.h: the
// local headers agree with the central directory and tile the file), and that libzip's listing
// is the central directory that check read: a zip whose readers could disagree is refused.
//
// Checks made here: encrypted members are refused; a stored member's compressed and
// uncompressed sizes agree; a deflate stream yields no more than the declared size (a shorter
// one is handed on for the caller's size check); the CRC-32 matches the central directory
// (igzip's for deflate, libzip's own check for stored members).
#pragma once

#include <zip.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "cache/zip_layout.h"
#include "materializer/base/status.h"

struct inflate_state;

namespace mat::cache {

// Buffers and inflate state of one reader, reused across members and wheels.
class ZipScratch {
 public:
  static constexpr size_t kChunk = 256 << 10;
  ZipScratch();
  ~ZipScratch();
  ZipScratch(const ZipScratch&) = delete;
  ZipScratch& operator=(const ZipScratch&) = delete;

  unsigned char* in() { return in_.get(); }
  unsigned char* out() { return out_.get(); }
  inflate_state* inflater() { return inflater_.get(); }

 private:
  std::unique_ptr<unsigned char[]> in_, out_;
  std::unique_ptr<inflate_state> inflater_;
};

class ZipReader {
 public:
  struct Member {
    std::string name;   // as stored (UTF-8 when flagged or valid, else converted from CP437)
    int64_t size = 0;   // uncompressed, from the central directory
    uint32_t mode = 0;  // st_mode from the external attributes when made on Unix, else 0
    bool is_dir = false;
    bool is_symlink = false;
  };

  // Opens the zip file at `path`, read with pread-sized reads as members are read (not mapped:
  // the resident size stays two chunks whatever the wheel's size); `shown` names it in errors.
  // Checks its layout first (check_zip_layout; kCorrupt naming the member and what disagreed),
  // then that libzip lists the same entries: names (raw bytes), sizes, CRC-32, methods, in
  // central directory order. A missing file is kNotFound.
  static Result<std::unique_ptr<ZipReader>> open_file(const std::string& path,
                                                      const std::string& shown);
  // Another reader of the same file, for another thread (a ZipReader serves one at a time):
  // the layout is shared, not checked again.
  Result<std::unique_ptr<ZipReader>> reopen() const;
  ~ZipReader();
  ZipReader(const ZipReader&) = delete;
  ZipReader& operator=(const ZipReader&) = delete;

  size_t members() const { return members_; }
  Result<Member> member(size_t index) const;
  // The checked layout: the entries in file order, each with its central directory index.
  const ZipLayout& layout() const { return *layout_; }

  // Reads member `index` block by block. Call next() until it returns an empty block; an error
  // message names the reason (the caller adds the archive and member names). A block stays
  // valid until the next call; one stream at a time per ZipScratch.
  class Stream {
   public:
    Result<std::span<const char>> next();
    ~Stream();
    Stream(Stream&&) noexcept;
    Stream& operator=(Stream&&) = delete;

   private:
    friend class ZipReader;
    Stream(const ZipReader& z, size_t index, ZipScratch& scratch);
    Result<std::span<const char>> inflated();   // deflate, with igzip
    Result<std::span<const char>> raw();        // stored: the bytes as they are
    Result<std::span<const char>> by_libzip();  // any other method libzip knows
    Status check_crc() const;                   // deflate: igzip's CRC-32 of the output
    Status read_error() const;                  // zip_fread failed: why

    const ZipReader* z_;
    size_t index_;
    ZipScratch* scratch_;
    zip_stat_t st_{};
    zip_file_t* file_ = nullptr;
    bool started_ = false, done_ = false;
    uint64_t in_left_ = 0;  // compressed bytes not yet read from the archive
    uint64_t out_ = 0;      // bytes handed out
  };
  Result<Stream> read(size_t index, ZipScratch& scratch) const;

 private:
  ZipReader(zip_t* z, size_t members, std::string path, std::string shown,
            std::shared_ptr<const ZipLayout> layout)
      : z_(z),
        members_(members),
        path_(std::move(path)),
        shown_(std::move(shown)),
        layout_(std::move(layout)) {}
  // libzip on `fd` (taken over), checked against `layout`.
  static Result<std::unique_ptr<ZipReader>> open_checked(const std::string& path,
                                                         const std::string& shown, int fd,
                                                         std::shared_ptr<const ZipLayout> layout);
  std::string error() const;

  zip_t* z_;
  size_t members_;
  std::string path_, shown_;
  std::shared_ptr<const ZipLayout> layout_;
};

}  // namespace mat::cache
