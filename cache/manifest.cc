#include "cache/manifest.h"

#include <simdjson.h>

#include <cstdio>
#include <cstring>

#include "materializer/base/doc_limits.h"
#include "materializer/base/hash.h"

namespace mat::cache {
namespace {

// Versions 1 and 2 (written before extraction kept each file's SHA-256) carry "xxh3".
constexpr int64_t kFirstSha256Version = 3;
constexpr int64_t kOldestVersion = 1;

// A member takes ~90 bytes of manifest: 256 MiB is ~3 million members, beyond any package.
constexpr int64_t kMaxManifestBytes = int64_t{256} << 20;

Status bad(const std::string& what, const std::string& why) {
  return Corrupt(what + ": " + why + "; run `materializer cache verify --repair`");
}

// Appends `s` as a JSON string. Bytes of an invalid UTF-8 string (which extraction never
// produces) become U+FFFD, so the output is always valid JSON.
void append_json_string(std::string* out, std::string_view s) {
  static const char kHex[] = "0123456789abcdef";
  const bool utf8 = simdjson::validate_utf8(s.data(), s.size());
  out->push_back('"');
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(ch);
    } else if (c < 0x20) {
      out->append("\\u00");
      out->push_back(kHex[c >> 4]);
      out->push_back(kHex[c & 15]);
    } else if (c >= 0x80 && !utf8) {
      out->append("\\ufffd");
    } else {
      out->push_back(ch);
    }
  }
  out->push_back('"');
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// `hex` (2 * n digits) into out[0..n); false if it is not that.
bool parse_hex(std::string_view hex, unsigned char* out, size_t n) {
  if (hex.size() != 2 * n) return false;
  for (size_t i = 0; i < n; ++i) {
    int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<unsigned char>(hi << 4 | lo);
  }
  return true;
}

// One "files" value to an entry; false if malformed. Fields may come in any order; unknown
// fields are ignored.
bool parse_entry(simdjson::ondemand::object obj, int64_t version, ManifestEntry* e) {
  std::string_view type, digest, target;
  uint64_t size = 0, mode = 0;
  bool have_size = false, have_mode = false, have_digest = false, have_target = false;
  const char* digest_key = version < kFirstSha256Version ? "xxh3" : "sha256";
  for (auto field : obj) {
    std::string_view key;
    if (field.unescaped_key().get(key) != simdjson::SUCCESS) return false;
    simdjson::ondemand::value v;
    if (field.value().get(v) != simdjson::SUCCESS) return false;
    if (key == "type") {
      if (v.get_string().get(type) != simdjson::SUCCESS) return false;
    } else if (key == "size") {
      if (v.get_uint64().get(size) != simdjson::SUCCESS) return false;
      have_size = true;
    } else if (key == "mode") {
      if (v.get_uint64().get(mode) != simdjson::SUCCESS) return false;
      have_mode = true;
    } else if (key == digest_key) {
      if (v.get_string().get(digest) != simdjson::SUCCESS) return false;
      have_digest = true;
    } else if (key == "target") {
      if (v.get_string().get(target) != simdjson::SUCCESS) return false;
      have_target = true;
    }
    // A string_view from get_string() points into the parser's string buffer, which stays
    // valid until the next document: keeping several of one object is fine.
  }
  if (type == "dir") {
    e->type = ManifestEntry::Type::kDir;
    return true;
  }
  if (type == "symlink") {
    e->type = ManifestEntry::Type::kSymlink;
    e->target = std::string(target);
    return have_target;
  }
  if (type != "file" || !have_size || !have_mode || !have_digest) return false;
  if (size > static_cast<uint64_t>(INT64_MAX)) return false;
  e->type = ManifestEntry::Type::kFile;
  e->size = static_cast<int64_t>(size);
  e->mode = static_cast<uint32_t>(mode) & 0777;
  if (version < kFirstSha256Version) {
    e->digest_kind = ManifestEntry::Digest::kXxh3;
    return parse_hex(digest, e->digest.data(), 8);
  }
  return parse_hex(digest, e->digest.data(), e->digest.size());
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

std::string ManifestEntry::digest_hex() const {
  return hex_of(digest.data(), digest_kind == Digest::kXxh3 ? 8 : digest.size());
}

std::string manifest_head(const Key& key) {
  // Key::str() is "sha256-" / "md5-" and hex digits: nothing to escape.
  return "{\"version\":" + std::to_string(kManifestVersion) + ",\"key\":\"" + key.str() + "\",";
}

Status write_manifest_json(const Key& key, const Manifest& m,
                           const std::function<Status(std::string_view)>& sink) {
  constexpr size_t kPiece = 256 << 10;
  std::string out;
  out.reserve(kPiece + 8192);
  out.append(manifest_head(key)).append("\"files\":{");
  bool first = true;
  for (const auto& [path, e] : m) {
    if (!first) out.push_back(',');
    first = false;
    append_json_string(&out, path);
    out.append(":{\"type\":\"").append(type_name(e.type)).push_back('"');
    if (e.type == ManifestEntry::Type::kFile) {
      out.append(",\"size\":").append(std::to_string(e.size));
      out.append(e.digest_kind == ManifestEntry::Digest::kXxh3 ? ",\"xxh3\":\"" : ",\"sha256\":\"");
      out.append(e.digest_hex()).push_back('"');
      out.append(",\"mode\":").append(std::to_string(e.mode));
    } else if (e.type == ManifestEntry::Type::kSymlink) {
      out.append(",\"target\":");
      append_json_string(&out, e.target);
    }
    out.push_back('}');
    if (out.size() >= kPiece) {
      MAT_RETURN_IF_ERROR(sink(out));
      out.clear();
    }
  }
  out.append("}}");
  return sink(out);
}

std::string manifest_to_json(const Key& key, const Manifest& m) {
  std::string out;
  write_manifest_json(key, m, [&out](std::string_view piece) {
    out.append(piece);
    return Status::Ok();
  }).ignore();  // this sink never fails
  return out;
}

Result<Manifest> parse_manifest(std::string_view text, const std::string& what) {
  // On-demand parsing: no document tree, so a manifest of 200k files costs its text and the
  // entries, not a DOM several times its size. Size and depth are bounded first (doc_limits.h).
  MAT_RETURN_IF_ERROR(
      check_doc_limits(text, DocFormat::kJson, what, DocLimits{kMaxManifestBytes}, Code::kCorrupt,
                       "run `materializer cache verify --repair`"));
  simdjson::padded_string padded(text);
  simdjson::ondemand::parser parser;
  simdjson::ondemand::document doc;
  if (parser.iterate(padded).get(doc) != simdjson::SUCCESS) return bad(what, "not valid JSON");
  simdjson::ondemand::object top;
  if (doc.get_object().get(top) != simdjson::SUCCESS) return bad(what, "not valid JSON");
  int64_t version = 0;
  if (top.find_field_unordered("version").get_int64().get(version) != simdjson::SUCCESS ||
      version < kOldestVersion || version > kManifestVersion) {
    return bad(what, "unsupported manifest version");
  }
  simdjson::ondemand::object files;
  if (top.find_field_unordered("files").get_object().get(files) != simdjson::SUCCESS) {
    return bad(what, "no \"files\" object");
  }
  Manifest m;
  for (auto field : files) {
    std::string_view path;
    simdjson::ondemand::object obj;
    if (field.unescaped_key().get(path) != simdjson::SUCCESS) return bad(what, "not valid JSON");
    std::string key(path);
    ManifestEntry e;
    if (field.value().get_object().get(obj) != simdjson::SUCCESS ||
        !parse_entry(obj, version, &e)) {
      return bad(what, "malformed entry for '" + key + "'");
    }
    m.emplace(std::move(key), std::move(e));
  }
  return m;
}

}  // namespace mat::cache
