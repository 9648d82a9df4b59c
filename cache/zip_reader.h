// ZipReader: a wheel's members, read from a mapped zip with libzip (central directory, the same
// index pip's zipfile uses), deflate members inflated by libdeflate in one call.
//
// Why not libarchive's zip reader, as for the .conda outer zip: wheels are deflate, and zlib
// 1.2.13's inflate is half of a cold wheel install's user CPU; libdeflate inflates the bench
// wheels' 87 MB in 98 ms against zlib's 208 ms (CRC-32 included in both). libdeflate needs the
// whole member in memory, so members above kWholeMemberBytes stream through libzip's zlib.
//
// Checks made here, whatever the path: encrypted members are refused; a stored member's
// compressed and uncompressed sizes agree; a deflate stream yields exactly the declared size
// (longer or shorter is a lie about the member); the CRC-32 matches the central directory.
#pragma once

#include <zip.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "materializer/base/status.h"

struct libdeflate_decompressor;

namespace mat::cache {

// Members up to this size (compressed and uncompressed) are inflated whole by libdeflate;
// bigger ones stream through libzip. Bounds the two buffers a ZipScratch grows to.
inline constexpr int64_t kWholeMemberBytes = 8 << 20;

// Per-thread buffers and decompressor, reused across members and wheels.
class ZipScratch {
 public:
  ZipScratch();
  ~ZipScratch();
  ZipScratch(const ZipScratch&) = delete;
  ZipScratch& operator=(const ZipScratch&) = delete;

  std::vector<unsigned char>& in() { return in_; }
  std::vector<unsigned char>& out() { return out_; }
  libdeflate_decompressor* inflater() { return inflater_; }

 private:
  std::vector<unsigned char> in_, out_;
  libdeflate_decompressor* inflater_;
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

  // Opens the zip held in `bytes` (which must outlive the reader); `shown` names it in errors.
  static Result<std::unique_ptr<ZipReader>> open(std::span<const unsigned char> bytes,
                                                 const std::string& shown);
  ~ZipReader();
  ZipReader(const ZipReader&) = delete;
  ZipReader& operator=(const ZipReader&) = delete;

  size_t members() const { return members_; }
  Result<Member> member(size_t index) const;

  // Reads member `index` block by block. Call next() until it returns an empty block; an error
  // message names the reason (the caller adds the archive and member names).
  class Stream {
   public:
    Result<std::span<const char>> next();
    ~Stream();
    Stream(Stream&&) noexcept;
    Stream& operator=(Stream&&) = delete;

   private:
    friend class ZipReader;
    Stream(const ZipReader& z, size_t index, ZipScratch& scratch);
    Result<std::span<const char>> whole();
    Result<std::span<const char>> streamed();

    const ZipReader* z_;
    size_t index_;
    ZipScratch* scratch_;
    zip_stat_t st_{};
    zip_file_t* file_ = nullptr;
    int state_ = 0;  // 0 = not started, 1 = streaming, 2 = done
  };
  Result<Stream> read(size_t index, ZipScratch& scratch) const;

 private:
  ZipReader(zip_t* z, size_t members) : z_(z), members_(members) {}
  std::string error() const;

  zip_t* z_;
  size_t members_;
};

}  // namespace mat::cache
