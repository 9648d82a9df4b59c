#include "cache/zip_layout.h"

#include <isa-l/crc.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string_view>
#include <utility>

namespace mat::cache {
namespace {

constexpr uint32_t kLocalSig = 0x04034b50;         // "PK\3\4"
constexpr uint32_t kCentralSig = 0x02014b50;       // "PK\1\2"
constexpr uint32_t kEndSig = 0x06054b50;           // "PK\5\6"
constexpr uint32_t kZip64EndSig = 0x06064b50;      // "PK\6\6"
constexpr uint32_t kZip64LocatorSig = 0x07064b50;  // "PK\6\7"
constexpr uint32_t kDescriptorSig = 0x08074b50;    // "PK\7\8"
constexpr int64_t kLocalSize = 30, kCentralSize = 46, kEndSize = 22;
constexpr int64_t kZip64EndSize = 56, kZip64LocatorSize = 20;
constexpr int64_t kMaxDescriptor = 24;  // signature, CRC-32, two 8-byte sizes
constexpr uint64_t kSat32 = 0xffffffff;
constexpr uint16_t kSat16 = 0xffff;
// libzip 1.7 looks for the end record in the file's last CDBUFSIZE bytes (zipint.h): the
// longest comment, the end record and a zip64 locator.
constexpr int64_t kEndSearch = 65536 + kEndSize + kZip64LocatorSize;
// General purpose flags that change how an entry is read, so local header and central
// directory must agree on them: 0 encrypted, 3 data descriptor, 6 strong encryption, 11 UTF-8
// name, 13 masked local header.
constexpr uint16_t kFlagsThatMatter = 0x0001 | 0x0008 | 0x0040 | 0x0800 | 0x2000;
constexpr uint16_t kFlagDescriptor = 0x0008;
constexpr uint16_t kFlagEncrypted = 0x0001 | 0x0040 | 0x2000;
// Local headers are read through a window of this size: a wheel's small members share one
// pread, a big member costs one.
constexpr size_t kWindow = 16 << 10;
constexpr uint16_t kStored = 0, kDeflate = 8;

uint16_t le16(const unsigned char* p) { return static_cast<uint16_t>(p[0] | p[1] << 8); }
uint32_t le32(const unsigned char* p) { return le16(p) | static_cast<uint32_t>(le16(p + 2)) << 16; }
uint64_t le64(const unsigned char* p) { return le32(p) | static_cast<uint64_t>(le32(p + 4)) << 32; }
const unsigned char* bytes_of(const char* p) { return reinterpret_cast<const unsigned char*>(p); }

std::string shown_name(std::string_view raw) { return "'" + printable_zip_name(raw) + "'"; }

std::string num(int64_t v) { return std::to_string(v); }
std::string num(uint64_t v) { return std::to_string(v); }

// The fields of a local header, with zip64 sizes resolved.
struct LocalHeader {
  uint16_t flags = 0, method = 0, name_len = 0, extra_len = 0;
  uint32_t crc = 0;
  uint64_t comp_size = 0, size = 0;
  bool zip64 = false;  // has a zip64 extra field: a data descriptor's sizes are 8 bytes each
  int64_t length() const { return kLocalSize + name_len + extra_len; }
};

// `p`: the kLocalSize bytes at a local header (signature checked by the caller).
LocalHeader parse_local_fixed(const unsigned char* p) {
  LocalHeader h;
  h.flags = le16(p + 6);
  h.method = le16(p + 8);
  h.crc = le32(p + 14);
  h.comp_size = le32(p + 18);
  h.size = le32(p + 22);
  h.name_len = le16(p + 26);
  h.extra_len = le16(p + 28);
  return h;
}

// The data of the zip64 extended information field (id 1) in an extra field, if any. A field
// running past the end stops the search (some writers pad extra fields).
std::optional<std::span<const unsigned char>> find_zip64(std::span<const unsigned char> extra) {
  while (extra.size() >= 4) {
    uint16_t id = le16(extra.data()), len = le16(extra.data() + 2);
    if (len > extra.size() - 4) break;
    if (id == 1) return extra.subspan(4, len);
    extra = extra.subspan(4 + len);
  }
  return std::nullopt;
}

// Applies the local header's zip64 field: each saturated size (uncompressed first, then
// compressed) comes from it, as libarchive and libzip read it. nullptr, or what is wrong.
const char* apply_local_zip64(std::span<const unsigned char> extra, LocalHeader* h) {
  auto z = find_zip64(extra);
  h->zip64 = z.has_value();
  if (h->size != kSat32 && h->comp_size != kSat32) return nullptr;
  if (!z) return "the local header's sizes are saturated but it has no zip64 extra field";
  std::span<const unsigned char> f = *z;
  for (uint64_t* v : {&h->size, &h->comp_size}) {
    if (*v != kSat32) continue;
    if (f.size() < 8) return "the local header's zip64 extra field is too short";
    *v = le64(f.data());
    f = f.subspan(8);
  }
  return nullptr;
}

// Length of the data descriptor at the start of `p` for a member with these values, or 0 when
// it does not give them. Its signature is optional (tried first); its sizes are 8 bytes each
// when the local header has a zip64 extra field (libarchive's rule), else 4.
int64_t descriptor_length(std::span<const unsigned char> p, bool zip64, uint32_t crc, uint64_t comp,
                          uint64_t size) {
  auto fits = [&](size_t at) -> int64_t {
    size_t n = at + 4 + (zip64 ? 16 : 8);
    if (p.size() < n) return 0;
    const unsigned char* q = p.data() + at;
    uint64_t c = zip64 ? le64(q + 4) : le32(q + 4);
    uint64_t s = zip64 ? le64(q + 12) : le32(q + 8);
    return le32(q) == crc && c == comp && s == size ? static_cast<int64_t>(n) : 0;
  };
  if (p.size() >= 4 && le32(p.data()) == kDescriptorSig) {
    if (int64_t n = fits(4)) return n;
  }
  return fits(0);
}

// With the data-descriptor flag, a local header may give 0 for a value its writer did not know
// yet; otherwise it must give the central directory's.
bool local_agrees(uint64_t local, uint64_t central, uint16_t flags) {
  return local == central || ((flags & kFlagDescriptor) && local == 0);
}

// Reads ranges of a file with pread: the tail (end records) once, the rest through a window.
// Buffers are not zeroed first (memset of the 64 KiB tail and the central directory was 16% of
// the check's time).
class FileBytes {
 public:
  FileBytes(int fd, int64_t size) : fd_(fd), size_(size) {}

  Status load_tail(int64_t n) {
    tail_.reserve(static_cast<size_t>(n));
    tail_at_ = size_ - n;
    return read_at(tail_at_, tail_.data(), tail_.size());
  }
  std::span<const unsigned char> tail() const { return tail_.bytes(); }
  int64_t tail_at() const { return tail_at_; }

  // Bytes [off, off + n) of the file, n <= size - off; valid until the next call. Ranges wider
  // than the window get a buffer of their own (the central directory).
  Result<std::span<const unsigned char>> get(int64_t off, int64_t n) {
    if (off < 0 || n < 0 || n > size_ - off) return Internal("zip layout: read past the end");
    auto len = static_cast<size_t>(n);
    if (off >= tail_at_) return tail_.bytes().subspan(off - tail_at_, len);
    if (win_at_ >= 0 && off >= win_at_ && off + n <= win_at_ + std::ssize(win_.bytes())) {
      return win_.bytes().subspan(off - win_at_, len);
    }
    win_.reserve(std::max(len, static_cast<size_t>(std::min<int64_t>(kWindow, size_ - off))));
    win_at_ = -1;
    MAT_RETURN_IF_ERROR(read_at(off, win_.data(), win_.size()));
    win_at_ = off;
    return win_.bytes().first(len);
  }

 private:
  // A byte buffer that keeps its capacity and is never zero-filled.
  class Buffer {
   public:
    void reserve(size_t n) {
      if (n > cap_) {
        data_ = std::make_unique_for_overwrite<unsigned char[]>(n);
        cap_ = n;
      }
      size_ = n;
    }
    unsigned char* data() { return data_.get(); }
    size_t size() const { return size_; }
    std::span<const unsigned char> bytes() const { return {data_.get(), size_}; }

   private:
    std::unique_ptr<unsigned char[]> data_;
    size_t cap_ = 0, size_ = 0;
  };

  Status read_at(int64_t off, unsigned char* buf, size_t n) {
    while (n > 0) {
      ssize_t got = ::pread(fd_, buf, n, off);
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) return ErrnoStatus("read zip archive", errno);
      if (got == 0) return IoError("read zip archive: the file ended early (changed while read)");
      buf += got;
      n -= static_cast<size_t>(got);
      off += got;
    }
    return Status::Ok();
  }

  int fd_;
  int64_t size_;
  Buffer tail_;
  int64_t tail_at_ = 0;
  Buffer win_;
  int64_t win_at_ = -1;
};

// What the end records say.
struct EndRecord {
  int64_t at = 0;          // of the end record
  int64_t records_at = 0;  // where the central directory must end: the zip64 end record or `at`
  uint64_t entries = 0, cd_size = 0, cd_offset = 0;
};

// Another end record at `p` (before the real one, in libzip's search window) that a reader
// could take instead: a zip64 locator before it, or a non-empty central directory it points at
// that starts with an entry's signature. Such bytes in a real archive (a stored nested zip)
// point at the nested zip's own offsets, where no central directory lies.
Result<bool> plausible_end(FileBytes& file, int64_t p) {
  MAT_ASSIGN_OR_RETURN(auto rec, file.get(p, kEndSize));
  uint64_t cd_size = le32(rec.data() + 12), cd_offset = le32(rec.data() + 16);
  if (p >= kZip64LocatorSize) {
    MAT_ASSIGN_OR_RETURN(auto loc, file.get(p - kZip64LocatorSize, 4));
    if (le32(loc.data()) == kZip64LocatorSig) return true;
  }
  if (cd_size == 0 || cd_offset + cd_size > static_cast<uint64_t>(p)) return false;
  MAT_ASSIGN_OR_RETURN(auto sig, file.get(static_cast<int64_t>(cd_offset), 4));
  return le32(sig.data()) == kCentralSig;
}

Result<EndRecord> find_end(FileBytes& file, int64_t file_size, const std::string& shown) {
  auto bad = [&](const std::string& what) { return Corrupt(shown + ": " + what); };
  MAT_RETURN_IF_ERROR(file.load_tail(std::min(file_size, kEndSearch)));
  std::span<const unsigned char> tail = file.tail();
  const int64_t tail_at = file.tail_at();
  // The last end record is the one pip's zipfile takes; its comment must reach the file's end,
  // so no other end record can hide in the comment.
  int64_t at = -1;
  for (int64_t p = file_size - kEndSize; p >= tail_at && at < 0; --p) {
    if (le32(&tail[p - tail_at]) == kEndSig) at = p;
  }
  if (at < 0) return bad("not a zip archive: no end-of-central-directory record");
  const unsigned char* e = &tail[at - tail_at];
  if (at + kEndSize + le16(e + 20) != file_size) {
    return bad("the end-of-central-directory record at offset " + num(at) + " declares a " +
               num(int64_t{le16(e + 20)}) + "-byte comment but " + num(file_size - at - kEndSize) +
               " bytes follow it");
  }
  for (int64_t p = at - 1; p >= tail_at; --p) {
    if (le32(&tail[p - tail_at]) != kEndSig) continue;
    MAT_ASSIGN_OR_RETURN(bool plausible, plausible_end(file, p));
    if (plausible) {
      return bad("a second end-of-central-directory record at offset " + num(p) +
                 ", pointing at a central directory: readers could take either");
    }
  }
  EndRecord r;
  r.at = r.records_at = at;
  uint16_t disk = le16(e + 4), cd_disk = le16(e + 6), on_disk = le16(e + 8);
  uint64_t entries = le16(e + 10), cd_size = le32(e + 12), cd_offset = le32(e + 16);
  bool zip64 =
      at >= kZip64LocatorSize && le32(&tail[at - kZip64LocatorSize - tail_at]) == kZip64LocatorSig;
  if (!zip64) {
    if (disk != 0 || cd_disk != 0) return bad("spans several disks");
    if (on_disk != entries) {
      return bad("the end record counts " + num(uint64_t{on_disk}) + " entries on this disk and " +
                 num(entries) + " in all");
    }
    r.entries = entries, r.cd_size = cd_size, r.cd_offset = cd_offset;
    return r;
  }
  // zip64: the locator directly before the end record, the zip64 end record (version 1, no
  // extensible data) directly before the locator.
  const unsigned char* loc = &tail[at - kZip64LocatorSize - tail_at];
  uint64_t z64_at = le64(loc + 8);
  if (le32(loc + 4) != 0 || le32(loc + 16) > 1) return bad("spans several disks (zip64 locator)");
  const int64_t want_at = at - kZip64LocatorSize - kZip64EndSize;
  if (want_at < 0 || z64_at != static_cast<uint64_t>(want_at)) {
    return bad("the zip64 locator points at offset " + num(z64_at) +
               ", not at a zip64 end record directly before it");
  }
  MAT_ASSIGN_OR_RETURN(auto z, file.get(want_at, kZip64EndSize));
  if (le32(z.data()) != kZip64EndSig || le64(z.data() + 4) != kZip64EndSize - 12) {
    return bad("no zip64 end-of-central-directory record of the usual size at offset " +
               num(want_at));
  }
  if (le32(z.data() + 16) != 0 || le32(z.data() + 20) != 0) return bad("spans several disks");
  uint64_t on_disk64 = le64(z.data() + 24), entries64 = le64(z.data() + 32);
  uint64_t cd_size64 = le64(z.data() + 40), cd_offset64 = le64(z.data() + 48);
  auto agrees = [](uint64_t v32, uint64_t sat, uint64_t v64) { return v32 == sat || v32 == v64; };
  if (on_disk64 != entries64 || !agrees(on_disk, kSat16, on_disk64) ||
      !agrees(entries, kSat16, entries64) || !agrees(cd_size, kSat32, cd_size64) ||
      !agrees(cd_offset, kSat32, cd_offset64) || !agrees(disk, kSat16, 0) ||
      !agrees(cd_disk, kSat16, 0)) {
    return bad("the end record and the zip64 end record disagree (entries " + num(entries) +
               " vs " + num(entries64) + ", central directory " + num(cd_size) + " bytes at " +
               num(cd_offset) + " vs " + num(cd_size64) + " at " + num(cd_offset64) + ")");
  }
  r.records_at = want_at;
  r.entries = entries64, r.cd_size = cd_size64, r.cd_offset = cd_offset64;
  return r;
}

// Parses the central directory's entries (in its order), with zip64 values resolved.
Result<std::vector<ZipEntry>> read_central(FileBytes& file, const EndRecord& end,
                                           const std::string& shown) {
  auto bad = [&](const std::string& what) { return Corrupt(shown + ": " + what); };
  const auto records_at = static_cast<uint64_t>(end.records_at);
  if (end.cd_offset > records_at || end.cd_size != records_at - end.cd_offset) {
    return bad("the central directory (" + num(end.cd_size) + " bytes at offset " +
               num(end.cd_offset) + ") does not end where the end records begin (offset " +
               num(end.records_at) + ")");
  }
  if (end.entries > end.cd_size / kCentralSize) {
    return bad("the end record counts " + num(end.entries) + " entries, more than its " +
               num(end.cd_size) + "-byte central directory can hold");
  }
  MAT_ASSIGN_OR_RETURN(
      auto cd, file.get(static_cast<int64_t>(end.cd_offset), static_cast<int64_t>(end.cd_size)));
  std::vector<ZipEntry> out;
  out.reserve(end.entries);
  size_t pos = 0;
  for (uint64_t i = 0; i < end.entries; ++i) {
    const std::string which = "central directory entry " + num(i);
    if (cd.size() - pos < static_cast<size_t>(kCentralSize) || le32(&cd[pos]) != kCentralSig) {
      return bad(which + " (at offset " + num(end.cd_offset + pos) + ") is malformed");
    }
    const unsigned char* c = &cd[pos];
    size_t name_len = le16(c + 28), extra_len = le16(c + 30), comment_len = le16(c + 32);
    if (cd.size() - pos - kCentralSize < name_len + extra_len + comment_len) {
      return bad(which + " runs past the end of the central directory");
    }
    ZipEntry e;
    e.name.assign(reinterpret_cast<const char*>(c + kCentralSize), name_len);
    e.index = static_cast<uint32_t>(i);
    e.flags = le16(c + 8);
    e.method = le16(c + 10);
    e.crc = le32(c + 16);
    uint64_t comp = le32(c + 20), size = le32(c + 24), offset = le32(c + 42);
    uint32_t disk = le16(c + 34);
    if (size == kSat32 || comp == kSat32 || offset == kSat32 || disk == kSat16) {
      auto z = find_zip64({c + kCentralSize + name_len, extra_len});
      if (!z) {
        return bad("member " + shown_name(e.name) +
                   ": saturated fields in the central directory but no zip64 extra field");
      }
      std::span<const unsigned char> f = *z;
      for (uint64_t* v : {&size, &comp, &offset}) {
        if (*v != kSat32) continue;
        if (f.size() < 8) return bad("member " + shown_name(e.name) + ": zip64 field too short");
        *v = le64(f.data());
        f = f.subspan(8);
      }
      if (disk == kSat16) disk = f.size() >= 4 ? le32(f.data()) : 1;
    }
    if (disk != 0) return bad("member " + shown_name(e.name) + ": on another disk");
    constexpr auto kMax = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
    if (size > kMax || comp > kMax || offset > kMax) {
      return bad("member " + shown_name(e.name) + ": sizes or offset out of range");
    }
    e.comp_size = static_cast<int64_t>(comp);
    e.size = static_cast<int64_t>(size);
    e.offset = static_cast<int64_t>(offset);
    out.push_back(std::move(e));
    pos += kCentralSize + name_len + extra_len + comment_len;
  }
  if (pos != cd.size()) {
    return bad("the central directory holds " + num(static_cast<uint64_t>(cd.size() - pos)) +
               " bytes after its " + num(end.entries) + " entries (the end record's count)");
  }
  return out;
}

// Checks entry `e`'s local header and data descriptor against it; sets data_offset and end.
// `limit`: where the central directory begins (nothing of an entry may reach past it).
Status check_local(FileBytes& file, ZipEntry& e, int64_t limit, const std::string& shown) {
  auto bad = [&](const std::string& what) {
    return Corrupt(shown + ": member " + shown_name(e.name) + ": " + what);
  };
  if (limit - e.offset < kLocalSize) {
    return bad("its local header at offset " + num(e.offset) +
               " would run into the central directory");
  }
  MAT_ASSIGN_OR_RETURN(auto fixed, file.get(e.offset, kLocalSize));
  if (le32(fixed.data()) != kLocalSig) return bad("no local header at offset " + num(e.offset));
  LocalHeader h = parse_local_fixed(fixed.data());
  if (limit - e.offset < h.length()) {
    return bad("its local header at offset " + num(e.offset) + " runs into the central directory");
  }
  MAT_ASSIGN_OR_RETURN(auto var, file.get(e.offset + kLocalSize, h.name_len + h.extra_len));
  std::string_view local_name(reinterpret_cast<const char*>(var.data()), h.name_len);
  if (local_name != e.name) {
    return bad("the local header at offset " + num(e.offset) + " names it " +
               shown_name(local_name));
  }
  if (const char* why = apply_local_zip64(var.subspan(h.name_len), &h)) return bad(why);
  if (h.method != e.method) {
    return bad("compression method " + num(int64_t{h.method}) + " in the local header, " +
               num(int64_t{e.method}) + " in the central directory");
  }
  if ((h.flags ^ e.flags) & kFlagsThatMatter) {
    char text[64];
    std::snprintf(text, sizeof text, "flags 0x%04x in the local header, 0x%04x in the central",
                  h.flags, e.flags);
    return bad(std::string(text) + " directory");
  }
  auto u = [](int64_t v) { return static_cast<uint64_t>(v); };
  if (!local_agrees(h.crc, e.crc, e.flags) || !local_agrees(h.comp_size, u(e.comp_size), e.flags) ||
      !local_agrees(h.size, u(e.size), e.flags)) {
    return bad("the local header gives " + num(h.comp_size) + " compressed bytes, " + num(h.size) +
               " bytes, CRC-32 " + num(uint64_t{h.crc}) + "; the central directory " +
               num(e.comp_size) + ", " + num(e.size) + ", " + num(uint64_t{e.crc}));
  }
  e.data_offset = e.offset + h.length();
  if (e.comp_size > limit - e.data_offset) {
    return bad("its " + num(e.comp_size) + " bytes of data at offset " + num(e.data_offset) +
               " run into the central directory");
  }
  e.end = e.data_offset + e.comp_size;
  if (e.flags & kFlagDescriptor) {
    MAT_ASSIGN_OR_RETURN(auto d, file.get(e.end, std::min(kMaxDescriptor, limit - e.end)));
    int64_t n = descriptor_length(d, h.zip64, e.crc, u(e.comp_size), u(e.size));
    if (n == 0) {
      return bad("no data descriptor with its CRC-32 and sizes after its data (offset " +
                 num(e.end) + ")");
    }
    e.end += n;
  }
  return Status::Ok();
}

}  // namespace

std::string printable_zip_name(std::string_view raw) {
  std::string out;
  constexpr size_t kMax = 200;
  size_t i = 0;
  while (i < raw.size() && out.size() < kMax) {
    auto c = static_cast<unsigned char>(raw[i]);
    size_t n = c < 0x80             ? 1
               : (c & 0xe0) == 0xc0 ? 2
               : (c & 0xf0) == 0xe0 ? 3
               : (c & 0xf8) == 0xf0 ? 4
                                    : 0;
    bool ok = n > 0 && i + n <= raw.size() && (n > 1 || (c >= 0x20 && c != 0x7f));
    for (size_t k = 1; ok && k < n; ++k) {
      ok = (static_cast<unsigned char>(raw[i + k]) & 0xc0) == 0x80;
    }
    if (ok) {
      out.append(raw.substr(i, n));
      i += n;
    } else {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
      ++i;
    }
  }
  if (i < raw.size()) out += "...";
  return out;
}

Result<ZipLayout> check_zip_layout(int fd, int64_t file_size, const std::string& shown) {
  if (file_size < kEndSize) {
    return Corrupt(shown + ": not a zip archive: " + num(file_size) + " bytes");
  }
  FileBytes file(fd, file_size);
  MAT_ASSIGN_OR_RETURN(EndRecord end, find_end(file, file_size, shown));
  MAT_ASSIGN_OR_RETURN(std::vector<ZipEntry> entries, read_central(file, end, shown));

  // Duplicate names: which copy counts differs between readers (first, last, in order).
  std::vector<std::string_view> names;
  names.reserve(entries.size());
  for (const ZipEntry& e : entries) names.emplace_back(e.name);
  std::sort(names.begin(), names.end());
  if (auto dup = std::adjacent_find(names.begin(), names.end()); dup != names.end()) {
    return Corrupt(shown + ": member " + shown_name(*dup) +
                   ": duplicate member name in the central directory");
  }

  // The entries in file order must tile [0, central directory). Writers list them in file
  // order, so the sort (and its temporary buffer) is seldom needed.
  auto by_offset = [](const ZipEntry& a, const ZipEntry& b) { return a.offset < b.offset; };
  if (!std::is_sorted(entries.begin(), entries.end(), by_offset)) {
    std::stable_sort(entries.begin(), entries.end(), by_offset);
  }
  const auto limit = static_cast<int64_t>(end.cd_offset);
  int64_t at = 0;
  const ZipEntry* prev = nullptr;
  for (ZipEntry& e : entries) {
    if (e.offset < at) {
      return Corrupt(shown + ": member " + shown_name(e.name) + ": its local header (offset " +
                     num(e.offset) + ") lies inside member " + shown_name(prev->name) +
                     ", which ends at offset " + num(at));
    }
    if (e.offset > at) {
      return Corrupt(shown + ": member " + shown_name(e.name) + ": " + num(e.offset - at) +
                     " bytes that no central directory entry owns before it (offsets " + num(at) +
                     "-" + num(e.offset) + ")" +
                     (prev ? "" : "; a zip here must start with its first member"));
    }
    MAT_RETURN_IF_ERROR(check_local(file, e, limit, shown));
    at = e.end;
    prev = &e;
  }
  if (at != limit) {
    return Corrupt(shown + ": " + num(limit - at) +
                   " bytes that no central directory entry owns before the central directory "
                   "(offsets " +
                   num(at) + "-" + num(limit) + ")");
  }
  return ZipLayout{std::move(entries), limit};
}

// --- reading in order --------------------------------------------------------------------------

struct ZipStreamReader::Inflater {
  z_stream z{};
  bool ready = false, ended = false;
  std::vector<char> out = std::vector<char>(256 << 10);
  ~Inflater() {
    if (ready) inflateEnd(&z);
  }
};

ZipStreamReader::ZipStreamReader(const ByteSource& next, std::string shown)
    : next_(next), shown_(std::move(shown)) {}
ZipStreamReader::~ZipStreamReader() = default;

Status ZipStreamReader::member_error(const std::string& what) const {
  return Corrupt(shown_ + ": member " + shown_name(cur_ ? cur_->name : "") +
                 " (outer zip, read in order): " + what);
}

Result<bool> ZipStreamReader::more() {
  if (avail_.empty() && !source_done_) {
    MAT_ASSIGN_OR_RETURN(avail_, next_());
    source_done_ = avail_.empty();
  }
  return !avail_.empty();
}

// Headers and data descriptors may straddle the source's blocks: the unconsumed bytes are
// copied into carry_ (before next_() invalidates them) and joined with the next block. That
// happens a few times per archive, not per block.
Result<std::span<const char>> ZipStreamReader::peek(size_t n) {
  while (avail_.size() < n && !source_done_) {
    std::vector<char> joined(avail_.begin(), avail_.end());
    MAT_ASSIGN_OR_RETURN(std::span<const char> block, next_());
    source_done_ = block.empty();
    joined.insert(joined.end(), block.begin(), block.end());
    carry_.swap(joined);
    avail_ = std::span<const char>(carry_);
  }
  return avail_.first(std::min(n, avail_.size()));
}

void ZipStreamReader::skip(size_t n) {
  avail_ = avail_.subspan(n);
  pos_ += static_cast<int64_t>(n);
}

Status ZipStreamReader::take(void* out, size_t n) {
  MAT_ASSIGN_OR_RETURN(std::span<const char> bytes, peek(n));
  if (bytes.size() < n) {
    return Corrupt(shown_ + ": the zip ends at offset " + num(pos_ + std::ssize(bytes)) +
                   " (outer zip, read in order), inside a header");
  }
  std::memcpy(out, bytes.data(), n);
  skip(n);
  return Status::Ok();
}

Result<std::optional<ZipEntry>> ZipStreamReader::next_entry() {
  while (cur_ && !cur_done_) {  // the rest of the current member
    MAT_ASSIGN_OR_RETURN(std::span<const char> rest, read());
    (void)rest;
  }
  cur_.reset();
  if (cd_offset_ >= 0) return std::optional<ZipEntry>();
  unsigned char fixed[kLocalSize];
  MAT_RETURN_IF_ERROR(take(fixed, 4));
  uint32_t sig = le32(fixed);
  if (sig == kCentralSig || sig == kEndSig || sig == kZip64EndSig) {
    cd_offset_ = pos_ - 4;
    return std::optional<ZipEntry>();
  }
  if (sig != kLocalSig) {
    return Corrupt(shown_ + ": the bytes at offset " + num(pos_ - 4) +
                   " (outer zip, read in order) are neither a local header nor the central "
                   "directory");
  }
  ZipEntry e;
  e.offset = pos_ - 4;
  MAT_RETURN_IF_ERROR(take(fixed + 4, kLocalSize - 4));
  LocalHeader h = parse_local_fixed(fixed);
  std::vector<char> var(h.name_len + h.extra_len);
  MAT_RETURN_IF_ERROR(take(var.data(), var.size()));
  e.name.assign(var.data(), h.name_len);
  e.data_offset = pos_;
  e.method = h.method;
  e.flags = h.flags;
  e.crc = h.crc;
  cur_ = e;
  cur_done_ = false;
  if (const char* why = apply_local_zip64(
          {bytes_of(var.data()) + h.name_len, static_cast<size_t>(h.extra_len)}, &h)) {
    return member_error(why);
  }
  cur_->comp_size = static_cast<int64_t>(std::min<uint64_t>(h.comp_size, INT64_MAX));
  cur_->size = static_cast<int64_t>(std::min<uint64_t>(h.size, INT64_MAX));
  cur_zip64_ = h.zip64;
  comp_read_ = out_ = 0;
  crc_ = 0;
  if (h.flags & kFlagEncrypted) return member_error("encrypted");
  if (h.method != kStored && h.method != kDeflate) {
    return member_error("compression method " + num(int64_t{h.method}) +
                        " cannot be read in order");
  }
  const bool descriptor = h.flags & kFlagDescriptor;
  if (h.method == kStored && descriptor && (h.comp_size == 0 || h.size == 0)) {
    // The local header may give one size, or none: a stored member is as long as either.
    const uint64_t known = std::max(h.comp_size, h.size);
    if (known == 0) {
      // Either empty, and its data descriptor follows at once, or its size is only in the
      // descriptor: no way to find its end but guessing at signatures in the data.
      MAT_ASSIGN_OR_RETURN(std::span<const char> d, peek(kMaxDescriptor));
      if (descriptor_length({bytes_of(d.data()), d.size()}, h.zip64, 0, 0, 0) == 0) {
        return member_error("a stored member whose size only its data descriptor gives");
      }
    }
    cur_->comp_size = static_cast<int64_t>(std::min<uint64_t>(known, INT64_MAX));
  } else if (h.method == kStored && h.comp_size != h.size) {
    return member_error("a stored member of " + num(h.comp_size) + " bytes declares " +
                        num(h.size));
  }
  if (h.method == kDeflate) {
    if (!inflater_) inflater_ = std::make_unique<Inflater>();
    Inflater& in = *inflater_;
    in.ended = false;
    int r = in.ready ? inflateReset(&in.z) : inflateInit2(&in.z, -MAX_WBITS);
    if (r != Z_OK) return Internal("zlib: cannot set up inflate");
    in.ready = true;
  }
  return cur_;
}

Result<std::span<const char>> ZipStreamReader::read() {
  if (!cur_) return Internal("ZipStreamReader::read() without a member");
  if (cur_done_) return std::span<const char>();
  return cur_->method == kStored ? read_stored() : read_deflated();
}

Result<std::span<const char>> ZipStreamReader::read_stored() {
  const int64_t left = cur_->comp_size - comp_read_;
  if (left == 0) {
    MAT_RETURN_IF_ERROR(finish_member());
    return std::span<const char>();
  }
  MAT_ASSIGN_OR_RETURN(bool any, more());
  if (!any) return member_error("its data ends early");
  std::span<const char> block = avail_.first(std::min<size_t>(avail_.size(), left));
  skip(block.size());
  comp_read_ += std::ssize(block);
  out_ += std::ssize(block);
  crc_ = crc32_gzip_refl(crc_, bytes_of(block.data()), block.size());
  return block;
}

// zlib rather than igzip: zlib stops exactly at the end of the deflate stream (igzip keeps up
// to 8 bytes past it in its bit buffer), which is how a member whose size only its data
// descriptor gives is found to end. Deflated outer members are rare in .conda files (one in the
// corpus); the file path keeps igzip.
Result<std::span<const char>> ZipStreamReader::read_deflated() {
  Inflater& in = *inflater_;
  const bool comp_known = !(cur_->flags & kFlagDescriptor) || cur_->comp_size != 0;
  const bool size_known = !(cur_->flags & kFlagDescriptor) || cur_->size != 0;
  for (;;) {
    if (in.ended) {
      MAT_RETURN_IF_ERROR(finish_member());
      return std::span<const char>();
    }
    int64_t in_max = comp_known ? cur_->comp_size - comp_read_ : INT64_MAX;
    if (in_max == 0) return member_error("its deflate stream runs past its compressed size");
    MAT_ASSIGN_OR_RETURN(bool any, more());
    if (!any) return member_error("its data ends early");
    auto given = static_cast<uInt>(
        std::min<int64_t>({std::ssize(avail_), in_max, std::numeric_limits<uInt>::max()}));
    in.z.next_in = const_cast<Bytef*>(bytes_of(avail_.data()));
    in.z.avail_in = given;
    in.z.next_out = reinterpret_cast<Bytef*>(in.out.data());
    in.z.avail_out = static_cast<uInt>(in.out.size());
    int r = inflate(&in.z, Z_NO_FLUSH);
    if (r != Z_OK && r != Z_STREAM_END && r != Z_BUF_ERROR) {
      return member_error("invalid deflate data");
    }
    size_t used = given - in.z.avail_in;
    skip(used);
    comp_read_ += static_cast<int64_t>(used);
    in.ended = r == Z_STREAM_END;
    size_t produced = in.out.size() - in.z.avail_out;
    if (produced > 0) {
      out_ += static_cast<int64_t>(produced);
      if (size_known && out_ > cur_->size) {
        return member_error("its deflate stream holds more than the declared " + num(cur_->size) +
                            " bytes");
      }
      crc_ = crc32_gzip_refl(crc_, bytes_of(in.out.data()), produced);
      return std::span<const char>(in.out.data(), produced);
    }
  }
}

Status ZipStreamReader::finish_member() {
  ZipEntry& e = *cur_;
  auto u = [](int64_t v) { return static_cast<uint64_t>(v); };
  if (!local_agrees(u(e.comp_size), u(comp_read_), e.flags) ||
      !local_agrees(u(e.size), u(out_), e.flags) || !local_agrees(e.crc, crc_, e.flags)) {
    return member_error("read " + num(comp_read_) + " compressed bytes, " + num(out_) +
                        " bytes, CRC-32 " + num(uint64_t{crc_}) + "; its local header gives " +
                        num(e.comp_size) + ", " + num(e.size) + ", " + num(uint64_t{e.crc}));
  }
  if (e.flags & kFlagDescriptor) {
    MAT_ASSIGN_OR_RETURN(std::span<const char> d, peek(kMaxDescriptor));
    int64_t n = descriptor_length({bytes_of(d.data()), d.size()}, cur_zip64_, crc_,
                                  static_cast<uint64_t>(comp_read_), static_cast<uint64_t>(out_));
    if (n == 0) return member_error("no data descriptor with its CRC-32 and sizes after its data");
    skip(static_cast<size_t>(n));
  }
  e.comp_size = comp_read_;
  e.size = out_;
  e.crc = crc_;
  e.end = pos_;
  seen_.push_back(e);
  cur_done_ = true;
  return Status::Ok();
}

Status check_streamed_layout(const ZipStreamReader& stream, const ZipLayout& layout,
                             const std::string& shown) {
  auto bad = [&](const std::string& what) {
    return Corrupt(shown + ": " + what +
                   " (the outer zip read in order differs from its central "
                   "directory)");
  };
  auto where = [](const ZipEntry& e) {
    return shown_name(e.name) + " at offset " + num(e.offset) + " (" + num(e.comp_size) +
           " bytes of data, " + num(e.size) + " uncompressed, CRC-32 " + num(uint64_t{e.crc}) +
           ", ending at " + num(e.end) + ")";
  };
  const std::vector<ZipEntry>& seen = stream.seen();
  const std::vector<ZipEntry>& listed = layout.entries;
  for (size_t i = 0; i < std::max(seen.size(), listed.size()); ++i) {
    if (i >= listed.size()) {
      return bad("member " + where(seen[i]) + " was read but is not in the central directory");
    }
    if (i >= seen.size()) {
      return bad("member " + where(listed[i]) + " is in the central directory but was not read");
    }
    const ZipEntry& s = seen[i];
    const ZipEntry& c = listed[i];
    if (s.offset != c.offset || s.name != c.name || s.data_offset != c.data_offset ||
        s.method != c.method || s.comp_size != c.comp_size || s.size != c.size || s.crc != c.crc ||
        s.end != c.end) {
      return bad("member " + where(s) + " was read where the central directory lists " + where(c));
    }
  }
  if (stream.cd_offset() != layout.cd_offset) {
    return bad("the central directory begins at offset " + num(layout.cd_offset) +
               ", but the members read end at " + num(stream.cd_offset()));
  }
  return Status::Ok();
}

}  // namespace mat::cache
