#include "cache/manifest.h"

#include <cinttypes>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "materializer/base/json.h"

namespace mat::cache {
namespace {

using json = nlohmann::json;

// A member takes ~90 bytes of manifest: 256 MiB is ~3 million members, beyond any package.
constexpr int64_t kMaxManifestBytes = int64_t{256} << 20;

Status bad(const std::string& what, const std::string& why) {
  return Corrupt(what + ": " + why + "; run `materializer cache verify --repair`");
}

// One "files" value to an entry; false if malformed.
bool parse_entry(const json& v, ManifestEntry* e) {
  if (!v.is_object()) return false;
  auto type = v.find("type");
  if (type == v.end() || !type->is_string()) return false;
  const auto& t = type->get_ref<const std::string&>();
  if (t == "dir") {
    e->type = ManifestEntry::Type::kDir;
    return true;
  }
  if (t == "symlink") {
    e->type = ManifestEntry::Type::kSymlink;
    auto target = v.find("target");
    if (target == v.end() || !target->is_string()) return false;
    e->target = target->get<std::string>();
    return true;
  }
  if (t != "file") return false;
  e->type = ManifestEntry::Type::kFile;
  auto size = v.find("size");
  auto xxh3 = v.find("xxh3");
  auto mode = v.find("mode");
  if (size == v.end() || !size->is_number_unsigned()) return false;
  if (xxh3 == v.end() || !xxh3->is_string()) return false;
  if (mode == v.end() || !mode->is_number_unsigned()) return false;
  e->size = size->get<int64_t>();
  e->xxh3 = xxh3->get<std::string>();
  e->mode = mode->get<uint32_t>() & 0777;
  return true;
}

}  // namespace

const char* type_name(ManifestEntry::Type t) {
  switch (t) {
    case ManifestEntry::Type::kFile:
      return "file";
    case ManifestEntry::Type::kSymlink:
      return "symlink";
    case ManifestEntry::Type::kDir:
      return "dir";
  }
  return "?";
}

std::string u64_hex(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016" PRIx64, v);
  return buf;
}

std::string manifest_to_json(const Key& key, const Manifest& m) {
  json files = json::object();
  for (const auto& [path, e] : m) {
    json v = {{"type", type_name(e.type)}};
    if (e.type == ManifestEntry::Type::kFile) {
      v["size"] = e.size;
      v["xxh3"] = e.xxh3;
      v["mode"] = e.mode;
    } else if (e.type == ManifestEntry::Type::kSymlink) {
      v["target"] = e.target;
    }
    files[path] = std::move(v);
  }
  // Written by hand around "files" so that version and key come first (nlohmann sorts an
  // object's keys). `replace` instead of throwing on invalid UTF-8: extraction already rejects
  // such names, so this only guards the no-exceptions contract.
  return manifest_head(key) +
         "\"files\":" + files.dump(-1, ' ', false, json::error_handler_t::replace) + "}";
}

std::string manifest_head(const Key& key) {
  // Key::str() is "sha256-" / "md5-" and hex digits: nothing to escape.
  return "{\"version\":" + std::to_string(kManifestVersion) + ",\"key\":\"" + key.str() + "\",";
}

Result<Manifest> parse_manifest(std::string_view text, const std::string& what) {
  Result<json> parsed = parse_json(text, what, DocLimits{kMaxManifestBytes}, Code::kCorrupt,
                                   "run `materializer cache verify --repair`");
  if (!parsed.ok()) return parsed.status();
  const json& doc = *parsed;
  if (!doc.is_object()) return bad(what, "not valid JSON");
  auto version = doc.find("version");
  if (version == doc.end() || !(*version == 1 || *version == kManifestVersion)) {
    return bad(what, "unsupported manifest version");
  }
  auto files = doc.find("files");
  if (files == doc.end() || !files->is_object()) return bad(what, "no \"files\" object");
  Manifest m;
  for (const auto& [path, v] : files->items()) {
    ManifestEntry e;
    if (!parse_entry(v, &e)) return bad(what, "malformed entry for '" + path + "'");
    m.emplace(path, std::move(e));
  }
  return m;
}

}  // namespace mat::cache
