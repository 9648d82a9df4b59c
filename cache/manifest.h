// cache/manifest.h: the per-tree record of what extraction wrote (trees/<key>/manifest.json),
// used by `cache verify` without re-reading the archive. Internal to cache/.
//
//   {"version":2,"key":"sha256-…","files":{
//      "bin/x":{"type":"file","size":N,"xxh3":"<16 hex>","mode":493},
//      "lib/l.so":{"type":"symlink","target":"l.so.1"},
//      "share/empty":{"type":"dir"}}}
//
// Paths are relative to pkg/, '/'-separated, UTF-8; every directory (explicit or created as a
// parent) is listed, so the manifest describes the whole tree. A tar hard link is listed as a
// "file" with its target's size, digest and mode.
//
// Version 2 vouches for the permission model (cache/trust.h): no file or directory of the tree
// is writable by group or others. Version 1 (same fields, keys in sorted order, so "files"
// first) came from an extractor that kept a package's group/other write bits; find_tree()
// passes such trees over, and they are extracted afresh.
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

inline constexpr int kManifestVersion = 2;

// The first bytes of every manifest this version writes: `{"version":2,"key":"<key>",`. A
// reader tells a current manifest of `key` from these alone (find_tree() reads no more).
std::string manifest_head(const Key& key);

// Serialises, manifest_head(key) first; never throws. REQUIRES: all paths and targets are valid
// UTF-8 (extraction guarantees it).
std::string manifest_to_json(const Key& key, const Manifest& m);

// Parses manifest.json (version 1 or 2); kCorrupt naming `what` for anything else.
Result<Manifest> parse_manifest(std::string_view json, const std::string& what);

// 64-bit digest as 16 lowercase hex digits, big-endian (matches mat::xxh3_hex).
std::string u64_hex(uint64_t v);

}  // namespace mat::cache
