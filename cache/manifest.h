// cache/manifest.h: the per-tree record of what extraction wrote (trees/<key>/manifest.json),
// used by `cache verify` without re-reading the archive. Internal to cache/.
//
//   {"version":1,"key":"sha256-…","files":{
//      "bin/x":{"type":"file","size":N,"xxh3":"<16 hex>","mode":493},
//      "lib/l.so":{"type":"symlink","target":"l.so.1"},
//      "share/empty":{"type":"dir"}}}
//
// Paths are relative to pkg/, '/'-separated, UTF-8; every directory (explicit or created as a
// parent) is listed, so the manifest describes the whole tree. A tar hard link is listed as a
// "file" with its target's size, digest and mode.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "cache/store.h"
#include "materializer/base/status.h"

namespace mat::cache {

struct ManifestEntry {
  enum class Type { kFile, kSymlink, kDir };
  Type type = Type::kFile;
  int64_t size = 0;    // kFile
  std::string xxh3;    // kFile: 16 lowercase hex digits (same as mat::xxh3_hex)
  uint32_t mode = 0;   // kFile: permission bits on disk (0777 range)
  std::string target;  // kSymlink
  bool operator==(const ManifestEntry&) const = default;
};

// Sorted by path, so the JSON is deterministic.
using Manifest = std::map<std::string, ManifestEntry>;

const char* type_name(ManifestEntry::Type t);

// Serialises; never throws. REQUIRES: all paths and targets are valid UTF-8 (extraction
// guarantees it).
std::string manifest_to_json(const Key& key, const Manifest& m);

// Parses manifest.json; kCorrupt naming `what` if it is not a version-1 manifest.
Result<Manifest> parse_manifest(std::string_view json, const std::string& what);

// 64-bit digest as 16 lowercase hex digits, big-endian (matches mat::xxh3_hex).
std::string u64_hex(uint64_t v);

}  // namespace mat::cache
