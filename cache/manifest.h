// cache/manifest.h: the per-tree record of what extraction wrote (trees/<key>/manifest.json),
// used by `cache verify` without re-reading the archive. Internal to cache/.
//
//   {"version":3,"key":"sha256-…","files":{
//      "bin/x":{"type":"file","size":N,"sha256":"<64 hex>","mode":493},
//      "lib/l.so":{"type":"symlink","target":"l.so.1"},
//      "share/empty":{"type":"dir"}}}
//
// Paths are relative to pkg/, '/'-separated, UTF-8; every directory (explicit or created as a
// parent) is listed, so the manifest describes the whole tree. A tar hard link is listed as a
// "file" with its target's size, digest and mode. The SHA-256 of every file is the one that
// extraction computed while writing it, so it is also what info/paths.json and a wheel's
// RECORD were checked against.
//
// Version 3 vouches for the permission model (cache/trust.h: no file or directory of the tree
// is writable by group or others) and for the package's own metadata (a conda package's files
// matched its info/paths.json, a wheel's its RECORD, when it was extracted). Older versions
// carry an XXH3-64 per file ("xxh3": 16 hex digits) instead of the SHA-256: version 2 came from
// an extractor that did not check paths.json, version 1 (keys in sorted order, so "files"
// first) also kept a package's group/other write bits. find_tree() passes such trees over and
// they are extracted afresh; `cache verify` still reads them.
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

// The current version (see above).
inline constexpr int kManifestVersion = 3;

// The first bytes of every manifest this version writes: `{"version":3,"key":"<key>",`. A
// reader tells a current manifest of `key` from these alone (find_tree() reads no more).
std::string manifest_head(const Key& key);

// Serialises, manifest_head(key) first, into `sink`, in pieces of about 256 KiB: neither a JSON
// document nor the whole text is ever in memory (for 200k files a DOM cost ~110 MB, the text
// ~25 MB). Stops at the sink's first error and returns it. Never throws. Names that are not
// valid UTF-8 (which extraction never produces) are written with U+FFFD in place of their bytes.
Status write_manifest_json(const Key& key, const Manifest& m,
                           const std::function<Status(std::string_view)>& sink);
// The same into one string (tests).
std::string manifest_to_json(const Key& key, const Manifest& m);

// Parses manifest.json, versions 1 to 3, after checking its size (at most 256 MiB) and depth
// (doc_limits.h); kCorrupt naming `what` for anything else.
Result<Manifest> parse_manifest(std::string_view json, const std::string& what);

}  // namespace mat::cache
