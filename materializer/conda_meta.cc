// conda-meta records and history, in the shapes conda writes them (conda/models/records.py
// PrefixRecord, conda/history.py History.write_changes), so conda, mamba and pixi tooling can
// read a materialised prefix.
#include <time.h>

#include <algorithm>
#include <string>
#include <vector>

#include "materializer/base/hash.h"
#include "materializer/base/json.h"
#include "materializer/base/url.h"
#include "materializer/link_internal.h"

namespace mat::link_internal {
namespace {

using nlohmann::json;

const char* file_mode_name(FileMode m) { return m == FileMode::kBinary ? "binary" : "text"; }

json path_record(const PathEntry& e, const std::string& sha256_in_prefix) {
  json p = json::object();
  p["_path"] = e.target;
  p["path_type"] = path_type_name(e.type);
  if (e.type == PathType::kEntryPoint) {
    p["sha256"] = sha256_hex(e.script);
    p["size_in_bytes"] = static_cast<int64_t>(e.script.size());
    return p;
  }
  if (!e.sha256.empty()) p["sha256"] = e.sha256;
  if (e.size >= 0) p["size_in_bytes"] = e.size;
  if (!e.placeholder.empty()) {
    p["file_mode"] = file_mode_name(e.file_mode);
    p["prefix_placeholder"] = e.placeholder;
  }
  if (!sha256_in_prefix.empty()) p["sha256_in_prefix"] = sha256_in_prefix;
  return p;
}

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

}  // namespace

std::string record_file_name(const PackagePlan& plan) {
  return plan.name + "-" + plan.version + "-" + plan.build + ".json";
}

namespace {

// The record without its two per-path lists, "files" and "paths_data", which are null here
// (so their keys sit where they sort).
json record_head(const RecordInput& in) {
  const PackagePlan& plan = *in.plan;
  const LinkInput& li = *in.input;
  json r = plan.index;
  // conda's PackageRecord always has these lists; an index.json without them means "none".
  for (const char* key : {"depends", "constrains"}) {
    if (!r.contains(key) || r[key].is_null()) r[key] = json::array();
  }
  r["files"] = nullptr;
  r["paths_data"] = nullptr;
  if (li.ref != nullptr) {
    // Credentials never land on disk: conda-meta is readable by anyone who can read the prefix.
    r["url"] = redact_url(li.ref->url);
    r["channel"] = redact_url(li.ref->channel);
    r["fn"] = li.ref->file_name.empty() ? url_file_name(li.ref->url) : li.ref->file_name;
  }
  if (!in.md5.empty()) r["md5"] = in.md5;
  if (!in.sha256.empty()) r["sha256"] = in.sha256;
  if (in.size >= 0) r["size"] = in.size;
  std::string subdir = plan.subdir;
  if (subdir.empty() && li.ref != nullptr) subdir = li.ref->subdir;
  if (!subdir.empty()) r["subdir"] = subdir;
  // conda's LinkType: 1 hardlink, 2 softlink, 3 copy. A reflink is a copy to conda.
  r["link"] = {{"source", li.tree}, {"type", in.mode == LinkMode::kHardlink ? 1 : 3}};
  r["extracted_package_dir"] = li.tree;
  r["package_tarball_full_path"] = li.archive_path;
  r["requested_spec"] = "";
  return r;
}

// A JSON string as nlohmann's dump(…, ensure_ascii = true) writes it (through dump_json: never
// throws, invalid UTF-8 becomes U+FFFD).
void append_string(std::string* out, const std::string& s) {
  *out += dump_json(json(s), -1, /*ensure_ascii=*/true);
}

// `text`, a value pretty-printed at depth 0, placed at depth 1 (its inner lines shifted).
void append_indented(std::string* out, const std::string& text) {
  for (char c : text) {
    out->push_back(c);
    if (c == '\n') out->append("  ");
  }
}

// path_record(e, sha256_in_prefix) at depth 3, keys in the order a json object sorts them.
void append_path_record(std::string* out, const PathEntry& e, const std::string& sha256_in_prefix) {
  const char* kIndent = "\n        ";
  bool entry_point = e.type == PathType::kEntryPoint;
  bool placeholder = !entry_point && !e.placeholder.empty();
  *out += "{";
  *out += kIndent;
  *out += "\"_path\": ";
  append_string(out, e.target);
  auto field = [&](const char* key) {
    *out += ",";
    *out += kIndent;
    *out += "\"";
    *out += key;
    *out += "\": ";
  };
  if (placeholder) {
    field("file_mode");
    append_string(out, file_mode_name(e.file_mode));
  }
  field("path_type");
  append_string(out, path_type_name(e.type));
  if (placeholder) {
    field("prefix_placeholder");
    append_string(out, e.placeholder);
  }
  if (entry_point) {
    field("sha256");
    *out += "\"" + sha256_hex(e.script) + "\"";
    field("size_in_bytes");
    *out += std::to_string(e.script.size());
  } else {
    if (!e.sha256.empty()) {
      field("sha256");
      append_string(out, e.sha256);
    }
    if (!sha256_in_prefix.empty()) {
      field("sha256_in_prefix");
      append_string(out, sha256_in_prefix);
    }
    if (e.size >= 0) {
      field("size_in_bytes");
      *out += std::to_string(e.size);
    }
  }
  *out += "\n      }";
}

}  // namespace

json build_prefix_record(const RecordInput& in) {
  const PackagePlan& plan = *in.plan;
  json r = record_head(in);
  json files = json::array();
  json paths = json::array();
  for (size_t i = 0; i < plan.paths.size(); ++i) {
    const PathEntry& e = plan.paths[i];
    files.push_back(e.target);
    paths.push_back(path_record(e, (*in.sha256_in_prefix)[i]));
  }
  r["files"] = std::move(files);
  r["paths_data"] = {{"paths_version", 1}, {"paths", std::move(paths)}};
  return r;
}

// build_prefix_record(in).dump(2, ' ', true) + "\n", byte for byte, without the document: the
// two per-path lists are written straight into the text. For 200k paths the document and its
// dump peaked at ~230 MB of heap; this holds the text only (~300 bytes a path).
std::string prefix_record_text(const RecordInput& in) {
  const PackagePlan& plan = *in.plan;
  json head = record_head(in);
  std::string out;
  out.reserve(4096 + plan.paths.size() * 320);
  bool first = true;
  for (auto it = head.begin(); it != head.end(); ++it) {
    out += first ? "{\n  " : ",\n  ";
    first = false;
    append_string(&out, it.key());
    out += ": ";
    if (it.key() == "files") {
      if (plan.paths.empty()) {
        out += "[]";
        continue;
      }
      out += "[";
      for (size_t i = 0; i < plan.paths.size(); ++i) {
        out += i ? ",\n    " : "\n    ";
        append_string(&out, plan.paths[i].target);
      }
      out += "\n  ]";
    } else if (it.key() == "paths_data") {
      out += "{\n    \"paths\": ";
      if (plan.paths.empty()) {
        out += "[]";
      } else {
        out += "[";
        for (size_t i = 0; i < plan.paths.size(); ++i) {
          out += i ? ",\n      " : "\n      ";
          append_path_record(&out, plan.paths[i], (*in.sha256_in_prefix)[i]);
        }
        out += "\n    ]";
      }
      out += ",\n    \"paths_version\": 1\n  }";
    } else {
      append_indented(&out, dump_json(it.value(), 2, /*ensure_ascii=*/true));
    }
  }
  out += first ? "{}\n" : "\n}\n";
  return out;
}

std::string channel_display_name(const std::string& channel_url) {
  // Like conda's canonical name: credentials are dropped, not masked.
  std::string url = redact_url(channel_url);
  if (size_t scheme = url.find("://"); scheme != std::string::npos) {
    size_t host = scheme + 3;
    size_t at = url.find('@', host);
    if (at != std::string::npos && at < url.find('/', host)) url.erase(host, at + 1 - host);
  }
  while (!url.empty() && url.back() == '/') url.pop_back();
  for (std::string_view host : {"https://conda.anaconda.org/", "http://conda.anaconda.org/",
                                "https://repo.anaconda.com/", "http://repo.anaconda.com/"}) {
    if (!starts_with(url, host)) continue;
    std::string rest = url.substr(host.size());
    if (starts_with(rest, "t/")) {  // token segment: "t/<token>/conda-forge"
      size_t slash = rest.find('/', 2);
      rest = slash == std::string::npos ? "" : rest.substr(slash + 1);
    }
    if (!rest.empty()) return rest;
  }
  return url;
}

std::string history_dist(const std::string& channel, const std::string& subdir,
                         const std::string& name, const std::string& version,
                         const std::string& build) {
  std::string ch = channel_display_name(channel);
  // Records written by conda keep the subdir in "channel"; do not repeat it.
  if (!subdir.empty() && ch.size() > subdir.size() &&
      ch.compare(ch.size() - subdir.size() - 1, std::string::npos, "/" + subdir) == 0) {
    ch.resize(ch.size() - subdir.size() - 1);
  }
  std::string out = ch;
  if (!subdir.empty()) out += "/" + subdir;
  return out + "::" + name + "-" + version + "-" + build;
}

std::string history_entry(const std::string& command_line, const std::vector<std::string>& removed,
                          const std::vector<std::string>& added) {
  char stamp[32] = {0};
  time_t now = time(nullptr);
  struct tm tm;
  localtime_r(&now, &tm);
  strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &tm);
  std::string out = "==> " + std::string(stamp) + " <==\n";
  out += "# cmd: " + command_line + "\n";
  out += "# materializer version: 0.1.0\n";
  std::vector<std::string> r = removed, a = added;
  std::sort(r.begin(), r.end());
  std::sort(a.begin(), a.end());
  for (const std::string& d : r) out += "-" + d + "\n";
  for (const std::string& d : a) out += "+" + d + "\n";
  return out;
}

}  // namespace mat::link_internal
