#include "cache/paths.h"

#include <unistd.h>

#include <cctype>
#include <charconv>

#include "materializer/base/fs.h"
#include "materializer/base/hash.h"

namespace mat::cache {
namespace {

constexpr std::string_view kSha256Prefix = "sha256-";
constexpr std::string_view kMd5Prefix = "md5-";
constexpr std::string_view kTmpPrefix = ".tmp-";
constexpr std::string_view kSourceSuffix = ".source";
constexpr std::string_view kMd5LinkSuffix = ".sha256";

size_t hex_len(HashKind kind) { return kind == HashKind::kSha256 ? 64 : 32; }

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

std::string Key::str() const {
  return std::string(kind == HashKind::kSha256 ? kSha256Prefix : kMd5Prefix) + lower(hex);
}

std::optional<ArchiveFormat> format_from_name(std::string_view file_name) {
  if (file_name.ends_with(".conda")) return ArchiveFormat::kConda;
  if (file_name.ends_with(".tar.bz2")) return ArchiveFormat::kTarBz2;
  if (file_name.ends_with(".whl")) return ArchiveFormat::kWheel;
  return std::nullopt;
}

const char* format_ext(ArchiveFormat f) {
  switch (f) {
    case ArchiveFormat::kConda:
      return ".conda";
    case ArchiveFormat::kTarBz2:
      return ".tar.bz2";
    case ArchiveFormat::kWheel:
      return ".whl";
  }
  return "";
}

Status check_key(const Key& key) {
  if (is_hex(key.hex, hex_len(key.kind))) return Status::Ok();
  return InvalidInput("cache key '" + key.str() + "': expected " +
                      std::to_string(hex_len(key.kind)) + " hex digits; fix the lock's hash");
}

std::optional<Key> parse_key(std::string_view s) {
  Key key;
  if (s.starts_with(kSha256Prefix)) {
    key.kind = HashKind::kSha256;
    s.remove_prefix(kSha256Prefix.size());
  } else if (s.starts_with(kMd5Prefix)) {
    key.kind = HashKind::kMd5;
    s.remove_prefix(kMd5Prefix.size());
  } else {
    return std::nullopt;
  }
  if (s.size() != hex_len(key.kind) || !is_hex(s, s.size())) return std::nullopt;
  key.hex = lower(s);
  return key;
}

std::optional<std::pair<Key, ArchiveFormat>> parse_archive_name(std::string_view file_name) {
  auto f = format_from_name(file_name);
  if (!f) return std::nullopt;
  file_name.remove_suffix(std::string_view(format_ext(*f)).size());
  auto key = parse_key(file_name);
  if (!key) return std::nullopt;
  return std::make_pair(std::move(*key), *f);
}

std::optional<MetaName> parse_meta_name(std::string_view file_name) {
  for (bool link : {false, true}) {
    std::string_view suffix = link ? kMd5LinkSuffix : kSourceSuffix;
    if (!file_name.ends_with(suffix)) continue;
    auto key = parse_key(file_name.substr(0, file_name.size() - suffix.size()));
    if (!key || (link && key->kind != HashKind::kMd5)) return std::nullopt;
    if (key->str() != file_name.substr(0, file_name.size() - suffix.size())) return std::nullopt;
    return MetaName{std::move(*key), link};
  }
  return std::nullopt;
}

std::optional<pid_t> tmp_name_pid(std::string_view file_name) {
  if (!file_name.starts_with(kTmpPrefix)) return std::nullopt;
  file_name.remove_prefix(kTmpPrefix.size());
  pid_t pid = 0;
  auto [end, ec] = std::from_chars(file_name.data(), file_name.data() + file_name.size(), pid);
  if (ec != std::errc() || end == file_name.data() || pid <= 0) return std::nullopt;
  if (end == file_name.data() + file_name.size() || *end != '-') return std::nullopt;
  return pid;
}

Paths::Paths(std::string root)
    : root_(std::move(root)),
      v1_(path_join(root_, "v1")),
      archives_(path_join(v1_, "archives")),
      trees_(path_join(v1_, "trees")),
      locks_(path_join(v1_, "locks")),
      tmp_(path_join(v1_, "tmp")),
      meta_(path_join(v1_, "meta")) {}

const std::vector<std::string>& Paths::store_dirs() {
  static const std::vector<std::string> dirs = {"v1", "v1/archives", "v1/trees", "v1/locks",
                                                "v1/tmp"};
  return dirs;
}

const std::vector<std::string>& Paths::optional_store_dirs() {
  static const std::vector<std::string> dirs = {"v1/meta"};
  return dirs;
}

std::string Paths::archive(const Key& key, ArchiveFormat f) const {
  return path_join(archives_, key.str() + format_ext(f));
}

std::string Paths::tree(const Key& key) const { return path_join(trees_, key.str()); }
std::string Paths::tree_pkg(const Key& key) const { return pkg_in(tree(key)); }
std::string Paths::tree_manifest(const Key& key) const { return manifest_in(tree(key)); }
std::string Paths::lock(const Key& key) const { return path_join(locks_, key.str() + ".lock"); }

std::string Paths::source(const Key& key) const {
  return path_join(meta_, key.str() + std::string(kSourceSuffix));
}
std::string Paths::md5_link(std::string_view md5_hex) const {
  return path_join(meta_, std::string(kMd5Prefix) + std::string(md5_hex) +
                              std::string(kMd5LinkSuffix));
}

std::string Paths::new_tmp_path(std::string_view suffix) const {
  std::string name(kTmpPrefix);
  name += std::to_string(::getpid());
  name += '-';
  name += random_token();
  name += suffix;
  return path_join(tmp_, name);
}

std::string Paths::pkg_in(const std::string& tree_dir) { return path_join(tree_dir, "pkg"); }
std::string Paths::manifest_in(const std::string& tree_dir) {
  return path_join(tree_dir, "manifest.json");
}

}  // namespace mat::cache
