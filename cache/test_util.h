// cache/test_util.h: fixtures for cache tests, built in memory with libarchive's writer so no
// binary test data is checked in. Test-only; never included by library code.
#pragma once

#include <dirent.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <tbb/task_arena.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "cache/archive_handle.h"
#include "cache/wheel_record.h"
#include "materializer/base/fs.h"
#include "materializer/base/hash.h"

namespace mat::cache::testing {

struct Member {
  std::string name;
  char type = 'f';   // 'f' file, 'd' dir, 'l' symlink, 'h' hard link, 'c' char device, 'p' fifo
  std::string data;  // 'f'
  std::string link;  // 'l' target, 'h' target member
  int mode = 0644;
};

enum class Compression { kNone, kZstd, kBzip2, kGzip };

inline la_ssize_t append_cb(archive*, void* out, const void* buf, size_t n) {
  static_cast<std::string*>(out)->append(static_cast<const char*>(buf), n);
  return static_cast<la_ssize_t>(n);
}

inline void add_members(archive* w, const std::vector<Member>& members) {
  for (const auto& m : members) {
    ArchiveEntry e(archive_entry_new());
    archive_entry_set_pathname(e.get(), m.name.c_str());
    archive_entry_set_perm(e.get(), static_cast<mode_t>(m.mode));
    archive_entry_set_mtime(e.get(), 1700000000, 0);
    switch (m.type) {
      case 'f':
        archive_entry_set_filetype(e.get(), AE_IFREG);
        archive_entry_set_size(e.get(), static_cast<la_int64_t>(m.data.size()));
        break;
      case 'd':
        archive_entry_set_filetype(e.get(), AE_IFDIR);
        break;
      case 'l':
        archive_entry_set_filetype(e.get(), AE_IFLNK);
        archive_entry_set_symlink(e.get(), m.link.c_str());
        break;
      case 'h':
        archive_entry_set_filetype(e.get(), AE_IFREG);
        archive_entry_set_hardlink(e.get(), m.link.c_str());
        archive_entry_set_size(e.get(), 0);
        break;
      case 'c':
        archive_entry_set_filetype(e.get(), AE_IFCHR);
        archive_entry_set_rdev(e.get(), 0x0103);
        break;
      case 'p':
        archive_entry_set_filetype(e.get(), AE_IFIFO);
        break;
    }
    // ARCHIVE_WARN: a name that is not UTF-8 is written raw (hdrcharset=BINARY), as wanted.
    ASSERT_GE(archive_write_header(w, e.get()), ARCHIVE_WARN) << archive_error(w);
    if (m.type == 'f' && !m.data.empty()) {
      ASSERT_EQ(archive_write_data(w, m.data.data(), m.data.size()),
                static_cast<la_ssize_t>(m.data.size()));
    }
  }
}

// Runs `fn` in a fresh arena of `threads` threads, or directly (outside any arena) for 0.
template <typename F>
void in_arena(int threads, F fn) {
  if (threads == 0) {
    fn();
    return;
  }
  tbb::task_arena arena(threads);
  arena.execute(fn);
}

inline std::string make_tar(const std::vector<Member>& members,
                            Compression c = Compression::kNone) {
  std::string out;
  ArchiveWrite w(archive_write_new());
  archive_write_set_format_pax_restricted(w.get());
  switch (c) {
    case Compression::kNone:
      break;
    case Compression::kZstd:
      archive_write_add_filter_zstd(w.get());
      break;
    case Compression::kBzip2:
      archive_write_add_filter_bzip2(w.get());
      break;
    case Compression::kGzip:
      archive_write_add_filter_gzip(w.get());
      break;
  }
  archive_write_set_bytes_in_last_block(w.get(), 1);
  EXPECT_EQ(archive_write_open(w.get(), &out, nullptr, append_cb, nullptr), ARCHIVE_OK);
  add_members(w.get(), members);
  EXPECT_EQ(archive_write_close(w.get()), ARCHIVE_OK) << archive_error(w.get());
  return out;
}

// A zip; members may be files, dirs and symlinks. `deflate` compresses file data.
inline std::string make_zip(const std::vector<Member>& members, bool deflate = false) {
  std::string out;
  ArchiveWrite w(archive_write_new());
  archive_write_set_format_zip(w.get());
  if (deflate) {
    archive_write_zip_set_compression_deflate(w.get());
  } else {
    archive_write_zip_set_compression_store(w.get());
  }
  archive_write_set_bytes_in_last_block(w.get(), 1);
  EXPECT_EQ(archive_write_open(w.get(), &out, nullptr, append_cb, nullptr), ARCHIVE_OK);
  add_members(w.get(), members);
  EXPECT_EQ(archive_write_close(w.get()), ARCHIVE_OK) << archive_error(w.get());
  return out;
}

// A wheel: `members` plus <dist_info>/RECORD listing every file member with its sha256 and size
// (as a valid wheel must), unless the members already include that RECORD.
inline std::string make_wheel(std::vector<Member> members,
                              const std::string& dist_info = "pkg-1.0.dist-info",
                              bool deflate = true) {
  const std::string record = dist_info + "/RECORD";
  bool has_record = false;
  std::vector<RecordRow> rows;
  for (const auto& m : members) {
    has_record = has_record || m.name == record;
    if (m.type == 'f') {
      rows.push_back({m.name, record_hash_of(m.data), std::to_string(m.data.size())});
    }
  }
  if (!has_record) {
    rows.push_back({record, "", ""});
    members.push_back({record, 'f', format_record(rows)});
  }
  return make_zip(members, deflate);
}

// A .conda: metadata.json, pkg-<name>.tar.zst (unless !with_pkg), info-<name>.tar.zst (unless
// !with_info), stored, in conda-package-handling's order.
inline std::string make_conda(const std::vector<Member>& info, const std::vector<Member>& pkg,
                              bool with_info = true, bool with_pkg = true) {
  std::vector<Member> outer = {{"metadata.json", 'f', R"({"conda_pkg_format_version": 2})"}};
  if (with_pkg) outer.push_back({"pkg-test-1.0-0.tar.zst", 'f', make_tar(pkg, Compression::kZstd)});
  if (with_info) {
    outer.push_back({"info-test-1.0-0.tar.zst", 'f', make_tar(info, Compression::kZstd)});
  }
  return make_zip(outer);
}

// info/paths.json as conda-build writes it for `pkg`: per file a "hardlink" entry with its
// sha256 and size_in_bytes (a hard-link member gets its target's), per symlink a "softlink"
// entry, per directory a "directory" entry. Names are written as they are (no JSON escapes).
inline std::string paths_json_for(const std::vector<Member>& pkg) {
  std::map<std::string, const Member*> by_name;
  for (const auto& m : pkg) by_name[m.name] = &m;
  std::string out = R"({"paths_version": 1, "paths": [)";
  bool first = true;
  for (const auto& m : pkg) {
    std::string name = m.name;
    while (name.ends_with('/')) name.pop_back();  // "dir/" members
    std::string entry = R"({"_path": ")" + name + R"(")";
    const Member* data = m.type == 'h' ? by_name.at(m.link) : &m;
    if (m.type == 'f' || m.type == 'h') {
      entry += R"(, "path_type": "hardlink", "sha256": ")" + sha256_hex(data->data) +
               R"(", "size_in_bytes": )" + std::to_string(data->data.size());
    } else if (m.type == 'l') {
      entry += R"(, "path_type": "softlink")";
    } else if (m.type == 'd') {
      entry += R"(, "path_type": "directory")";
    } else {
      continue;
    }
    out += (first ? "" : ", ") + entry + "}";
    first = false;
  }
  return out + "]}";
}

// make_conda() with `info` plus an info/paths.json that matches `pkg` (paths_json_for).
inline std::string make_conda_package(std::vector<Member> info, const std::vector<Member>& pkg) {
  info.push_back({"info/paths.json", 'f', paths_json_for(pkg)});
  return make_conda(info, pkg);
}

// --- zips written byte by byte ------------------------------------------------------------
// libarchive's writer only makes consistent zips; these tests need local headers and central
// directory entries that disagree, bytes no entry owns, entries hidden inside others.

inline void put_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
inline uint32_t crc32_of(const std::string& data) {
  return static_cast<uint32_t>(
      ::crc32(0, reinterpret_cast<const Bytef*>(data.data()), static_cast<uInt>(data.size())));
}
// Raw deflate (no zlib header), as zip members hold it.
inline std::string deflate_raw(const std::string& data) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, 6, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&z, data.size()), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}
// A zstd skippable frame holding `payload`: zstd decoders pass over it.
inline std::string zstd_skippable(const std::string& payload) {
  std::string out;
  put_le(out, 0x184D2A50, 4);
  put_le(out, payload.size(), 4);
  return out + payload;
}

// One member as a local header or a central directory entry describes it.
struct RawEntry {
  std::string name;
  std::string data;             // as stored in the archive (already compressed for method 8)
  uint16_t method = 0;          // 0 stored, 8 deflate
  int64_t size = -1;            // uncompressed bytes; -1: data.size()
  std::optional<uint32_t> crc;  // of the uncompressed bytes; unset: crc32_of(data)
  int64_t comp_size = -1;       // compressed bytes the records give; -1: data.size()
  uint16_t flags = 0;           // 0x0008: CRC-32 and sizes (also) in a data descriptor
  bool zero_in_local = false;   // with 0x0008: 0 for CRC-32 and sizes in the local header
  bool descriptor_sig = true;   // the descriptor's optional signature
  std::string central_extra;    // the central directory entry's extra field

  uint32_t crc_value() const { return crc ? *crc : crc32_of(data); }
  uint64_t size_value() const { return size >= 0 ? static_cast<uint64_t>(size) : data.size(); }
  uint64_t comp_value() const {
    return comp_size >= 0 ? static_cast<uint64_t>(comp_size) : data.size();
  }
};

// Deflated member `name` holding `plain`.
inline RawEntry deflated(const std::string& name, const std::string& plain) {
  return {name, deflate_raw(plain), 8, static_cast<int64_t>(plain.size()), crc32_of(plain)};
}

class RawZip {
 public:
  // Appends `e`'s local header, data and (flag 0x0008) data descriptor; returns its offset.
  size_t local(const RawEntry& e) {
    size_t at = out_.size();
    bool zero = (e.flags & 0x0008) && e.zero_in_local;
    put_le(out_, 0x04034b50, 4);
    put_le(out_, 20, 2);
    put_le(out_, e.flags, 2);
    put_le(out_, e.method, 2);
    put_le(out_, 0, 2);
    put_le(out_, 0x21, 2);
    put_le(out_, zero ? 0 : e.crc_value(), 4);
    put_le(out_, zero ? 0 : e.comp_value(), 4);
    put_le(out_, zero ? 0 : e.size_value(), 4);
    put_le(out_, e.name.size(), 2);
    put_le(out_, 0, 2);
    out_ += e.name + e.data;
    if (e.flags & 0x0008) {
      if (e.descriptor_sig) put_le(out_, 0x08074b50, 4);
      put_le(out_, e.crc_value(), 4);
      put_le(out_, e.comp_value(), 4);
      put_le(out_, e.size_value(), 4);
    }
    return at;
  }
  // Appends bytes that no entry owns.
  void bytes(const std::string& b) { out_ += b; }
  // Lists `e` in the central directory with its local header at `offset`.
  void central(const RawEntry& e, size_t offset) {
    put_le(cd_, 0x02014b50, 4);
    put_le(cd_, 3 << 8 | 20, 2);
    put_le(cd_, 20, 2);
    put_le(cd_, e.flags, 2);
    put_le(cd_, e.method, 2);
    put_le(cd_, 0, 2);
    put_le(cd_, 0x21, 2);
    put_le(cd_, e.crc_value(), 4);
    put_le(cd_, e.comp_value(), 4);
    put_le(cd_, e.size_value(), 4);
    put_le(cd_, e.name.size(), 2);
    put_le(cd_, e.central_extra.size(), 2);
    put_le(cd_, 0, 2);                        // comment
    put_le(cd_, 0, 2);                        // disk
    put_le(cd_, 0, 2);                        // internal attributes
    put_le(cd_, uint64_t{0100644} << 16, 4);  // external: a regular file, 0644
    put_le(cd_, offset, 4);
    cd_ += e.name + e.central_extra;
    ++listed_;
  }
  // Both: a consistent member.
  size_t add(const RawEntry& e) {
    size_t at = local(e);
    central(e, at);
    return at;
  }
  const std::string& so_far() const { return out_; }
  // The zip: what was appended, the central directory, `after_cd` (bytes no record owns), the
  // end record counting `count` entries (default: those listed) and `comment`.
  std::string finish(std::optional<uint16_t> count = std::nullopt, const std::string& after_cd = "",
                     const std::string& comment = "") const {
    std::string z = out_;
    size_t cd_at = z.size();
    z += cd_ + after_cd;
    uint16_t n = count ? *count : static_cast<uint16_t>(listed_);
    put_le(z, 0x06054b50, 4);
    put_le(z, 0, 4);  // disk numbers
    put_le(z, n, 2);
    put_le(z, n, 2);
    put_le(z, cd_.size(), 4);
    put_le(z, cd_at, 4);
    put_le(z, comment.size(), 2);
    return z + comment;
  }
  // The same with zip64 end records: the zip64 end record (counting `count64` entries), its
  // locator, and an end record whose fields are saturated, or (saturate = false) plain.
  std::string finish64(std::optional<uint64_t> count64 = std::nullopt, bool saturate = true) const {
    std::string z = out_;
    const size_t cd_at = z.size();
    z += cd_;
    const size_t z64_at = z.size();
    const uint64_t n = count64 ? *count64 : static_cast<uint64_t>(listed_);
    put_le(z, 0x06064b50, 4);
    put_le(z, 44, 8);
    put_le(z, 45, 2);
    put_le(z, 45, 2);
    put_le(z, 0, 8);  // disk numbers
    put_le(z, n, 8);
    put_le(z, n, 8);
    put_le(z, cd_.size(), 8);
    put_le(z, cd_at, 8);
    put_le(z, 0x07064b50, 4);
    put_le(z, 0, 4);
    put_le(z, z64_at, 8);
    put_le(z, 1, 4);
    put_le(z, 0x06054b50, 4);
    put_le(z, 0, 4);
    put_le(z, saturate ? 0xffff : static_cast<uint64_t>(listed_), 2);
    put_le(z, saturate ? 0xffff : static_cast<uint64_t>(listed_), 2);
    put_le(z, saturate ? 0xffffffff : cd_.size(), 4);
    put_le(z, saturate ? 0xffffffff : cd_at, 4);
    put_le(z, 0, 2);
    return z;
  }

 private:
  std::string out_, cd_;
  int listed_ = 0;
};

inline void write_bytes(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(data.data(), static_cast<std::streamsize>(data.size()));
  ASSERT_TRUE(f.good()) << path;
}

inline std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline std::vector<std::string> list(const std::string& dir) {
  std::vector<std::string> out;
  if (auto* d = ::opendir(dir.c_str())) {
    while (auto* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") out.push_back(n);
    }
    ::closedir(d);
  }
  return out;
}

inline mode_t file_mode(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return 0;
  return st.st_mode;
}

inline std::string read_link(const std::string& path) {
  char buf[4096];
  ssize_t n = ::readlink(path.c_str(), buf, sizeof buf);
  return n < 0 ? std::string() : std::string(buf, static_cast<size_t>(n));
}

// A fresh directory under $TMPDIR, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/mat_cache_test.XXXXXX";
    path_ = ::mkdtemp(tmpl.data()) ? tmpl : "";
    EXPECT_FALSE(path_.empty());
  }
  ~TempDir() {
    if (!path_.empty()) remove_all(path_).ignore();
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& rel) const { return path_ + "/" + rel; }

 private:
  std::string path_;
};

}  // namespace mat::cache::testing
