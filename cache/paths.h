// cache/paths.h: every path inside the store is built here and nowhere else (leveldb's
// db/filename.h). Internal to cache/.
//
//   ROOT/v1/archives/<key><ext>
//   ROOT/v1/trees/<key>/{pkg/,manifest.json}
//   ROOT/v1/locks/<key>.lock
//   ROOT/v1/tmp/.tmp-<pid>-<token>[<suffix>]
//   ROOT/v1/meta/{md5-<M>.sha256,<key>.source}   (cache/meta.h)
//
// Keys come from lock files, i.e. from untrusted input: every Store method runs check_key()
// before a key reaches a Paths function, so a key can never contain '/' or "..".
// Thread safety: Paths is immutable; all functions are pure apart from new_tmp_path()'s random
// token.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cache/store.h"
#include "materializer/base/status.h"

namespace mat::cache {

// kInvalidInput unless `key.hex` is 64 (SHA-256) or 32 (MD5) hex digits.
Status check_key(const Key& key);


// Splits "sha256-<hex><ext>" (a file name in archives/) into key and format.
std::optional<std::pair<Key, ArchiveFormat>> parse_archive_name(std::string_view file_name);

// What a file name in meta/ is: the source of entry `key`, or the md5 index link of `key`
// (an md5 key); nullopt for anything else.
struct MetaName {
  Key key;
  bool md5_link = false;
};
std::optional<MetaName> parse_meta_name(std::string_view file_name);

// Temp names are ".tmp-<pid>-<token>..."; returns the pid, or nullopt for other names.
std::optional<pid_t> tmp_name_pid(std::string_view file_name);

class Paths {
 public:
  // `root` must be absolute (Store::open makes it so).
  explicit Paths(std::string root);

  const std::string& root() const { return root_; }
  const std::string& v1_dir() const { return v1_; }
  const std::string& archives_dir() const { return archives_; }
  const std::string& trees_dir() const { return trees_; }
  const std::string& locks_dir() const { return locks_; }
  const std::string& tmp_dir() const { return tmp_; }
  const std::string& meta_dir() const { return meta_; }

  // REQUIRES: check_key(key).ok()
  std::string archive(const Key& key, ArchiveFormat f) const;
  std::string tree(const Key& key) const;           // trees/<key>
  std::string tree_pkg(const Key& key) const;       // trees/<key>/pkg
  std::string tree_manifest(const Key& key) const;  // trees/<key>/manifest.json
  std::string lock(const Key& key) const;           // locks/<key>.lock
  std::string source(const Key& key) const;         // meta/<key>.source
  // meta/md5-<hex>.sha256. REQUIRES: `md5_hex` is 32 lowercase hex digits.
  std::string md5_link(std::string_view md5_hex) const;

  // A fresh, unused name in tmp/: ".tmp-<pid>-<token><suffix>".
  std::string new_tmp_path(std::string_view suffix = "") const;

  // The store's own directories relative to the root, parents first: "v1", "v1/archives",
  // "v1/trees", "v1/locks", "v1/tmp".
  static const std::vector<std::string>& store_dirs();
  // Directories created when possible: "v1/meta". A cache that an older version made and this
  // user cannot write (root's, shared read-only) has none; its records are then simply absent.
  static const std::vector<std::string>& optional_store_dirs();

  // Inside a tree directory (published or temp): "<dir>/pkg", "<dir>/manifest.json".
  static std::string pkg_in(const std::string& tree_dir);
  static std::string manifest_in(const std::string& tree_dir);

 private:
  std::string root_, v1_, archives_, trees_, locks_, tmp_, meta_;
};

}  // namespace mat::cache
