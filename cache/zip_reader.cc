#include "cache/zip_reader.h"

#include <fcntl.h>
#include <isa-l/igzip_lib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "materializer/base/fs.h"

namespace mat::cache {
namespace {

std::string zip_error_text(zip_error_t* e) {
  const char* s = zip_error_strerror(e);
  return s ? s : "unknown libzip error";
}

}  // namespace

ZipScratch::ZipScratch()
    : in_(std::make_unique_for_overwrite<unsigned char[]>(kChunk)),
      out_(std::make_unique_for_overwrite<unsigned char[]>(kChunk)),
      inflater_(std::make_unique<inflate_state>()) {}
ZipScratch::~ZipScratch() = default;

namespace {

Result<UniqueFd> open_zip_fd(const std::string& path, const std::string& shown) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT) return NotFound(shown + ": no such file");
    return ErrnoStatus("open " + path, errno);
  }
  return fd;
}

}  // namespace

Result<std::unique_ptr<ZipReader>> ZipReader::open_file(const std::string& path,
                                                        const std::string& shown) {
  MAT_ASSIGN_OR_RETURN(UniqueFd fd, open_zip_fd(path, shown));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return ErrnoStatus("stat " + path, errno);
  if (st.st_size == 0) return Corrupt(shown + ": not a readable zip archive: empty file");
  MAT_ASSIGN_OR_RETURN(ZipLayout layout, check_zip_layout(fd.get(), st.st_size, shown));
  return open_checked(path, shown, fd.release(),
                      std::make_shared<const ZipLayout>(std::move(layout)));
}

Result<std::unique_ptr<ZipReader>> ZipReader::reopen() const {
  MAT_ASSIGN_OR_RETURN(UniqueFd fd, open_zip_fd(path_, shown_));
  return open_checked(path_, shown_, fd.release(), layout_);
}

// libzip finds its own end record and reads its own central directory: the listing must be the
// one check_zip_layout() checked (which also made sure no other end record is plausible), or
// libzip would read members the check never saw.
Result<std::unique_ptr<ZipReader>> ZipReader::open_checked(
    const std::string& path, const std::string& shown, int fd,
    std::shared_ptr<const ZipLayout> layout) {
  UniqueFd owned(fd);
  int code = 0;
  zip_t* z = zip_fdopen(owned.get(), ZIP_RDONLY, &code);  // dups it; closes ours on success
  if (!z) {
    zip_error_t err;
    zip_error_init_with_code(&err, code);
    std::string msg = zip_error_text(&err);
    zip_error_fini(&err);
    if (code == ZIP_ER_NOENT) return NotFound(shown + ": " + msg);
    if (code == ZIP_ER_OPEN || code == ZIP_ER_READ) return IoError(shown + ": " + msg);
    return Corrupt(shown + ": not a readable zip archive: " + msg);
  }
  (void)owned.release();
  std::unique_ptr<ZipReader> reader(new ZipReader(z, 0, path, shown, std::move(layout)));
  const std::vector<ZipEntry>& entries = reader->layout_->entries;
  zip_int64_t n = zip_get_num_entries(z, 0);
  if (n < 0 || static_cast<size_t>(n) != entries.size()) {
    return Corrupt(shown + ": libzip lists " + std::to_string(n) +
                   " members, its central directory " + std::to_string(entries.size()));
  }
  std::vector<const ZipEntry*> by_index(entries.size());
  for (const ZipEntry& e : entries) by_index[e.index] = &e;
  for (size_t i = 0; i < by_index.size(); ++i) {
    const ZipEntry& e = *by_index[i];
    zip_stat_t st;
    zip_stat_init(&st);
    constexpr zip_uint64_t need =
        ZIP_STAT_NAME | ZIP_STAT_SIZE | ZIP_STAT_COMP_SIZE | ZIP_STAT_CRC | ZIP_STAT_COMP_METHOD;
    if (zip_stat_index(z, i, ZIP_FL_ENC_RAW, &st) != 0 || (st.valid & need) != need ||
        st.name == nullptr || e.name != st.name || st.size != static_cast<uint64_t>(e.size) ||
        st.comp_size != static_cast<uint64_t>(e.comp_size) || st.crc != e.crc ||
        st.comp_method != e.method) {
      return Corrupt(shown + ": libzip reads central directory entry " + std::to_string(i) +
                     " differently from the layout check: refused, readers could disagree");
    }
  }
  reader->members_ = entries.size();
  return reader;
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
      started_(o.started_),
      done_(o.done_),
      in_left_(o.in_left_),
      out_(o.out_) {}

ZipReader::Stream::~Stream() {
  if (file_) zip_fclose(file_);
}

Result<std::span<const char>> ZipReader::Stream::next() {
  if (done_) return std::span<const char>();
  if (!started_) {
    started_ = true;
    bool raw_data = st_.comp_method == ZIP_CM_DEFLATE || st_.comp_method == ZIP_CM_STORE;
    file_ = zip_fopen_index(z_->z_, index_, raw_data ? ZIP_FL_COMPRESSED : 0);
    if (!file_) return Corrupt(z_->error());
    in_left_ = st_.comp_size;
    if (st_.comp_method == ZIP_CM_DEFLATE) {
      isal_inflate_init(scratch_->inflater());
      scratch_->inflater()->crc_flag = ISAL_GZIP_NO_HDR;  // raw deflate, CRC-32 of the output
    }
  }
  switch (st_.comp_method) {
    case ZIP_CM_DEFLATE:
      return inflated();
    case ZIP_CM_STORE:
      return raw();
    default:
      return by_libzip();
  }
}

Status ZipReader::Stream::check_crc() const {
  if (out_ == st_.size && scratch_->inflater()->crc != st_.crc) return Corrupt("CRC-32 mismatch");
  return Status::Ok();  // a short member: the caller's size check names both sizes
}

Status ZipReader::Stream::read_error() const {
  zip_error_t* e = zip_file_get_error(file_);
  if (zip_error_code_zip(e) == ZIP_ER_CRC) return Corrupt("CRC-32 mismatch");
  return Corrupt(zip_error_text(e));
}

Result<std::span<const char>> ZipReader::Stream::inflated() {
  inflate_state* s = scratch_->inflater();
  for (;;) {
    if (s->avail_in == 0 && in_left_ > 0) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(in_left_, ZipScratch::kChunk));
      zip_int64_t got = zip_fread(file_, scratch_->in(), want);
      if (got < 0) return read_error();
      if (got == 0) return Corrupt("truncated compressed data");
      in_left_ -= static_cast<uint64_t>(got);
      s->next_in = scratch_->in();
      s->avail_in = static_cast<uint32_t>(got);
    }
    s->next_out = scratch_->out();
    s->avail_out = static_cast<uint32_t>(ZipScratch::kChunk);
    if (isal_inflate(s) < 0) return Corrupt("invalid deflate data");
    size_t produced = ZipScratch::kChunk - s->avail_out;
    out_ += produced;
    if (out_ > st_.size) {
      return Corrupt("sizes that lie: the deflate stream holds more than the declared " +
                     std::to_string(st_.size) + " bytes");
    }
    bool finished = s->block_state == ISAL_BLOCK_FINISH;
    if (finished) {
      done_ = true;
      MAT_RETURN_IF_ERROR(check_crc());
    } else if (produced == 0 && s->avail_in == 0 && in_left_ == 0) {
      return Corrupt("deflate data ends early");
    }
    if (produced > 0 || finished) {
      return std::span<const char>(reinterpret_cast<const char*>(scratch_->out()), produced);
    }
  }
}

// libzip checks a stored member's CRC-32 itself when the whole member is read (its "crc"
// layer, zlib's crc32): computing it here again cost 5 ms per 64 MB .conda.
Result<std::span<const char>> ZipReader::Stream::raw() {
  if (in_left_ == 0) {
    // One more read: libzip compares the CRC-32 when it reaches the end.
    zip_int64_t extra = zip_fread(file_, scratch_->out(), 1);
    if (extra < 0) return read_error();
    if (extra > 0) return Corrupt("sizes that lie: more data than the declared size");
    done_ = true;
    return std::span<const char>();
  }
  size_t want = static_cast<size_t>(std::min<uint64_t>(in_left_, ZipScratch::kChunk));
  zip_int64_t got = zip_fread(file_, scratch_->out(), want);
  if (got < 0) return read_error();
  if (got == 0) return Corrupt("truncated member data");
  in_left_ -= static_cast<uint64_t>(got);
  out_ += static_cast<uint64_t>(got);
  return std::span<const char>(reinterpret_cast<const char*>(scratch_->out()),
                               static_cast<size_t>(got));
}

// libzip decompresses (bzip2, lzma, zstd when built with them) and checks the CRC-32 itself.
Result<std::span<const char>> ZipReader::Stream::by_libzip() {
  zip_int64_t got = zip_fread(file_, scratch_->out(), ZipScratch::kChunk);
  if (got < 0) return read_error();
  if (got == 0) done_ = true;
  return std::span<const char>(reinterpret_cast<const char*>(scratch_->out()),
                               static_cast<size_t>(got));
}

}  // namespace mat::cache
