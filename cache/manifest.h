// cache/manifest.h: the per-tree record of what extraction wrote (trees/<key>/manifest.json),
// used by `cache verify` without re-reading the archive. Internal to cache/.
//
//   {"version":2,"key":"sha256-…","files":{
//      "bin/x":{"type":"file","size":N,"sha256":"<64 hex>","mode":493},
//      "lib/l.so":{"type":"symlink","target":"l.so.1"},
//      "share/empty":{"type":"dir"}}}
//
// Paths are relative to pkg/, '/'-separated, UTF-8; every directory (explicit or created as a
// parent) is listed, so the manifest describes the whole tree. A tar hard link is listed as a
// "file" with its target's size, digest and mode. The SHA-256 of every file is the one that
// extraction computed while writing it, so it is also what info/paths.json and a wheel's
// RECORD were checked against. Version-1 manifests (written before the SHA-256 was kept) carry
// an XXH3-64 ("xxh3": 16 hex digits) instead; they are still read, for `cache verify`.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "cache/store.h"
#include "materializer/base/status.h"

namespace mat::cache {

// Laid out to keep the per-file cost small (a package may hold hundreds of thousands of files,
// each an entry held in memory while the package is extracted): 80 bytes, no heap allocation
// but a symlink's target.
struct ManifestEntry {
  enum class Type : uint8_t { kFile, kSymlink, kDir };
  // What `digest` holds (kFile): the SHA-256, or, read from a version-1 manifest, an XXH3-64
  // (big-endian in the first 8 bytes).
  enum class Digest : uint8_t { kSha256, kXxh3 };
  Type type = Type::kFile;
  Digest digest_kind = Digest::kSha256;
  uint32_t mode = 0;                       // kFile: permission bits on disk (0777 range)
  int64_t size = 0;                        // kFile
  std::array<unsigned char, 32> digest{};  // kFile
  std::string target;                      // kSymlink
  bool operator==(const ManifestEntry&) const = default;

  // kFile: the digest as lowercase hex (64 digits for SHA-256, 16 for XXH3).
  std::string digest_hex() const;
};

// Sorted by path, so the JSON is deterministic.
using Manifest = std::map<std::string, ManifestEntry>;

const char* type_name(ManifestEntry::Type t);

// Serialises (version 2) into `sink`, in pieces of about 256 KiB: neither a JSON document nor
// the whole text is ever in memory (for 200k files a DOM cost ~110 MB, the text ~25 MB). Stops
// at the sink's first error and returns it. Never throws. Names that are not valid UTF-8 (which
// extraction never produces) are written with U+FFFD in place of their bytes.
Status write_manifest_json(const Key& key, const Manifest& m,
                           const std::function<Status(std::string_view)>& sink);
// The same into one string (tests).
std::string manifest_to_json(const Key& key, const Manifest& m);

// Parses manifest.json, version 1 or 2; kCorrupt naming `what` if it is neither.
Result<Manifest> parse_manifest(std::string_view json, const std::string& what);

}  // namespace mat::cache
