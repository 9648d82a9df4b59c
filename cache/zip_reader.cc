#include "cache/zip_reader.h"

#include <libdeflate.h>
#include <sys/stat.h>

#include <new>
#include <utility>

namespace mat::cache {
namespace {

// Chunk size of the streaming path (members above kWholeMemberBytes, other methods).
constexpr size_t kStreamChunk = 256 << 10;

std::string zip_error_text(zip_error_t* e) {
  const char* s = zip_error_strerror(e);
  return s ? s : "unknown libzip error";
}

}  // namespace

ZipScratch::ZipScratch() : inflater_(libdeflate_alloc_decompressor()) {
  if (!inflater_) throw std::bad_alloc();
}
ZipScratch::~ZipScratch() { libdeflate_free_decompressor(inflater_); }

Result<std::unique_ptr<ZipReader>> ZipReader::open(std::span<const unsigned char> bytes,
                                                   const std::string& shown) {
  // libzip reads an empty buffer as an empty archive; zipfile (pip) calls it no zip at all.
  if (bytes.empty()) return Corrupt(shown + ": not a readable zip archive: empty file");
  zip_error_t err;
  zip_error_init(&err);
  zip_source_t* src = zip_source_buffer_create(bytes.data(), bytes.size(), 0, &err);
  if (!src) {
    std::string msg = zip_error_text(&err);
    zip_error_fini(&err);
    return Internal(shown + ": " + msg);
  }
  zip_t* z = zip_open_from_source(src, ZIP_RDONLY, &err);
  if (!z) {
    zip_source_free(src);
    std::string msg = zip_error_text(&err);
    zip_error_fini(&err);
    return Corrupt(shown + ": not a readable zip archive: " + msg);
  }
  zip_error_fini(&err);
  zip_int64_t n = zip_get_num_entries(z, 0);
  if (n < 0) {
    zip_discard(z);
    return Corrupt(shown + ": cannot count the zip members");
  }
  return std::unique_ptr<ZipReader>(new ZipReader(z, static_cast<size_t>(n)));
}

ZipReader::~ZipReader() { zip_discard(z_); }

std::string ZipReader::error() const { return zip_error_text(zip_get_error(z_)); }

Result<ZipReader::Member> ZipReader::member(size_t index) const {
  zip_stat_t st;
  zip_stat_init(&st);
  if (zip_stat_index(z_, index, 0, &st) != 0) return Corrupt(error());
  if (!(st.valid & ZIP_STAT_NAME) || !st.name) return Corrupt("member without a name");
  Member m;
  m.name = st.name;
  m.size = (st.valid & ZIP_STAT_SIZE) ? static_cast<int64_t>(st.size) : 0;
  zip_uint8_t opsys = 0;
  zip_uint32_t attr = 0;
  if (zip_file_get_external_attributes(z_, index, 0, &opsys, &attr) == 0 &&
      opsys == ZIP_OPSYS_UNIX) {
    m.mode = attr >> 16;
  }
  m.is_dir = m.name.ends_with('/') || S_ISDIR(m.mode);
  m.is_symlink = !m.is_dir && S_ISLNK(m.mode);
  return m;
}

Result<ZipReader::Stream> ZipReader::read(size_t index, ZipScratch& scratch) const {
  Stream s(*this, index, scratch);
  zip_stat_init(&s.st_);
  if (zip_stat_index(z_, index, 0, &s.st_) != 0) return Corrupt(error());
  constexpr zip_uint64_t need = ZIP_STAT_SIZE | ZIP_STAT_COMP_SIZE | ZIP_STAT_COMP_METHOD |
                                ZIP_STAT_CRC | ZIP_STAT_ENCRYPTION_METHOD;
  if ((s.st_.valid & need) != need) return Corrupt("incomplete central directory entry");
  if (s.st_.encryption_method != ZIP_EM_NONE) return Corrupt("encrypted member");
  if (s.st_.comp_method == ZIP_CM_STORE && s.st_.comp_size != s.st_.size) {
    return Corrupt("sizes that lie: stored member of " + std::to_string(s.st_.comp_size) +
                   " bytes declares " + std::to_string(s.st_.size));
  }
  return s;
}

ZipReader::Stream::Stream(const ZipReader& z, size_t index, ZipScratch& scratch)
    : z_(&z), index_(index), scratch_(&scratch) {}

ZipReader::Stream::Stream(Stream&& o) noexcept
    : z_(o.z_),
      index_(o.index_),
      scratch_(o.scratch_),
      st_(o.st_),
      file_(std::exchange(o.file_, nullptr)),
      state_(o.state_) {}

ZipReader::Stream::~Stream() {
  if (file_) zip_fclose(file_);
}

Result<std::span<const char>> ZipReader::Stream::next() {
  if (state_ == 2) return std::span<const char>();
  if (state_ == 0 && st_.comp_method == ZIP_CM_DEFLATE &&
      st_.size <= static_cast<zip_uint64_t>(kWholeMemberBytes) &&
      st_.comp_size <= static_cast<zip_uint64_t>(kWholeMemberBytes)) {
    state_ = 2;
    return whole();
  }
  return streamed();
}

// One libdeflate call into a buffer of exactly the declared size: a stream that needs more
// room, or ends short of it, lies about the member.
Result<std::span<const char>> ZipReader::Stream::whole() {
  std::vector<unsigned char>& in = scratch_->in();
  std::vector<unsigned char>& out = scratch_->out();
  in.resize(st_.comp_size);
  out.resize(st_.size);
  file_ = zip_fopen_index(z_->z_, index_, ZIP_FL_COMPRESSED);
  if (!file_) return Corrupt(z_->error());
  zip_int64_t got = st_.comp_size ? zip_fread(file_, in.data(), in.size()) : 0;
  if (got < 0) return Corrupt(zip_error_text(zip_file_get_error(file_)));
  if (static_cast<zip_uint64_t>(got) != st_.comp_size) {
    return Corrupt("truncated: " + std::to_string(got) + " of " + std::to_string(st_.comp_size) +
                   " compressed bytes");
  }
  zip_fclose(std::exchange(file_, nullptr));
  size_t produced = 0;
  libdeflate_result r = libdeflate_deflate_decompress(scratch_->inflater(), in.data(), in.size(),
                                                      out.data(), out.size(), &produced);
  if (r == LIBDEFLATE_INSUFFICIENT_SPACE) {
    return Corrupt("sizes that lie: the deflate stream holds more than the declared " +
                   std::to_string(st_.size) + " bytes");
  }
  if (r != LIBDEFLATE_SUCCESS && r != LIBDEFLATE_SHORT_OUTPUT) {
    return Corrupt("invalid deflate data");
  }
  // Short output: handed on as is, for the caller's size check to name both sizes.
  if (produced == st_.size && libdeflate_crc32(0, out.data(), produced) != st_.crc) {
    return Corrupt("CRC-32 mismatch");
  }
  return std::span<const char>(reinterpret_cast<const char*>(out.data()), produced);
}

// libzip decompresses (zlib for deflate) and checks the CRC-32 at the end of the data.
Result<std::span<const char>> ZipReader::Stream::streamed() {
  std::vector<unsigned char>& out = scratch_->out();
  if (state_ == 0) {
    state_ = 1;
    file_ = zip_fopen_index(z_->z_, index_, 0);
    if (!file_) return Corrupt(z_->error());
    if (out.size() < kStreamChunk) out.resize(kStreamChunk);
  }
  zip_int64_t got = zip_fread(file_, out.data(), kStreamChunk);
  if (got < 0) return Corrupt(zip_error_text(zip_file_get_error(file_)));
  if (got == 0) {
    state_ = 2;
    zip_fclose(std::exchange(file_, nullptr));
  }
  return std::span<const char>(reinterpret_cast<const char*>(out.data()), static_cast<size_t>(got));
}

}  // namespace mat::cache
