// Reading a package's metadata from its cache tree: the "plan" stage of linking.
//
// Mirrors conda/gateways/disk/read.py (read_paths_json, read_has_prefix, read_no_link) and the
// noarch handling of conda/core/path_actions.py. nlohmann::json throws on type mismatches; those
// exceptions stay inside load_package_plan and become kCorrupt. info/paths.json, the one big
// file (a record per path: 8 MB over a 150-package environment), is read with simdjson: with
// nlohmann it was a fifth of a warm install's CPU time.
#include <simdjson.h>
#include <sys/stat.h>

#include <sstream>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "materializer/base/fs.h"
#include "materializer/base/json.h"
#include "materializer/base/path_name.h"
#include "materializer/link_internal.h"

namespace mat::link_internal {
namespace {

using nlohmann::json;

// conda's yield_lines: stripped lines, skipping blanks and '#' comments. A missing file yields
// nothing (the info/ files other than index.json are optional).
std::vector<std::string> read_lines(const std::string& path) {
  std::vector<std::string> lines;
  Result<std::string> data = read_file(path);
  if (!data.ok()) return lines;
  std::istringstream in(*data);
  std::string line;
  while (std::getline(in, line)) {
    size_t b = line.find_first_not_of(" \t\r\n\f\v");
    if (b == std::string::npos) continue;
    size_t e = line.find_last_not_of(" \t\r\n\f\v");
    line = line.substr(b, e - b + 1);
    if (line[0] == '#') continue;
    lines.push_back(line);
  }
  return lines;
}

// info/index.json and info/link.json are a few hundred bytes in every real package; 8 MiB is
// far beyond any of them and bounds nlohmann's tree (~10x the text) per worker.
constexpr int64_t kMaxSmallMetadataBytes = int64_t{8} << 20;
// info/paths.json holds a record per file (~150 bytes each): 256 MiB is ~1.7 million files.
constexpr int64_t kMaxPathsJsonBytes = int64_t{256} << 20;
constexpr const char* kBadPackageHint =
    "the package is malformed: nothing from it was installed; report it to the channel";

Result<json> read_json(const std::string& path, bool required) {
  Result<std::string> data = read_file(path);
  if (!data.ok()) {
    if (!required && data.status().code() == Code::kNotFound) return json();
    return data.status();
  }
  MAT_ASSIGN_OR_RETURN(json j, parse_json(*data, path, DocLimits{kMaxSmallMetadataBytes},
                                          Code::kCorrupt, kBadPackageHint));
  if (!j.is_object()) return Corrupt(path + ": not a JSON object; " + kBadPackageHint);
  return j;
}

std::string json_string(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return "";
  if (it->is_string()) return it->get<std::string>();
  return dump_json(*it);
}

Result<PathType> parse_path_type(const std::string& s) {
  if (s.empty() || s == "hardlink") return PathType::kHardlink;
  if (s == "softlink") return PathType::kSoftlink;
  if (s == "directory") return PathType::kDirectory;
  return Corrupt("unknown path_type '" + s + "'");
}

Result<FileMode> parse_file_mode(const std::string& s) {
  if (s.empty() || s == "text") return FileMode::kText;
  if (s == "binary") return FileMode::kBinary;
  return Corrupt("unknown file_mode '" + s + "'");
}

// nlohmann's json_string() for a simdjson field: missing or null -> "", a string -> its value,
// anything else -> its compact JSON text.
std::string field_string(simdjson::dom::object obj, const char* key) {
  simdjson::dom::element v;
  if (obj[key].get(v) != simdjson::SUCCESS || v.is_null()) return "";
  std::string_view sv;
  if (v.get(sv) == simdjson::SUCCESS) return std::string(sv);
  return simdjson::minify(v);
}

// Parses info/paths.json. NotFound if the file is absent (a legacy package).
Result<std::vector<PathEntry>> read_paths_json(const std::string& path) {
  // One parser per thread: it keeps its buffers between the packages a thread plans. Its
  // depth and size limits are ours (doc_limits.h), set once per thread.
  thread_local simdjson::dom::parser parser(kMaxPathsJsonBytes);
  thread_local bool limited = parser.allocate(4096, kMaxDocDepth) == simdjson::SUCCESS;
  if (!limited) return Internal("simdjson: cannot allocate a parser");
  simdjson::padded_string text;
  if (auto err = simdjson::padded_string::load(path).get(text); err != simdjson::SUCCESS) {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0 && errno == ENOENT) return NotFound(path);
    return Corrupt(path + ": cannot read: " + simdjson::error_message(err) +
                   "; the cache entry may be damaged: run `materializer cache verify`");
  }
  // A huge paths.json leaves the parser holding buffers sized for it, ~10x the text (200k
  // paths: 41 MB of text, ~450 MB reserved, ~65 MB touched): they go back as soon as it is
  // parsed instead of staying with the thread through the records written later.
  struct ReleaseBigParser {
    size_t bytes;
    ~ReleaseBigParser() {
      if (bytes > (16u << 20)) parser = simdjson::dom::parser();
    }
  } release{text.size()};
  auto malformed = [&](const std::string& why) {
    return Corrupt(path + ": malformed metadata: " + why +
                   "; the package is malformed (remove it from the lock), or its cache entry "
                   "was changed (run `materializer cache verify`)");
  };
  simdjson::dom::element root;
  if (auto err = parser.parse(text).get(root); err != simdjson::SUCCESS) {
    if (err == simdjson::DEPTH_ERROR) {
      return Corrupt(path + ": JSON nested deeper than " + std::to_string(kMaxDocDepth) +
                     " levels (the limit); " + kBadPackageHint);
    }
    if (err == simdjson::CAPACITY) {
      return Corrupt(path + ": JSON document of " + std::to_string(text.size()) +
                     " bytes is larger than the limit of " +
                     std::to_string(kMaxPathsJsonBytes >> 20) + " MiB; " + kBadPackageHint);
    }
    return malformed(simdjson::error_message(err));
  }
  simdjson::dom::object top;
  if (root.get(top) != simdjson::SUCCESS) return malformed("not a JSON object");
  simdjson::dom::array paths;
  if (top["paths"].get(paths) != simdjson::SUCCESS) return malformed("'paths' is not a list");
  std::vector<PathEntry> out;
  out.reserve(paths.size());
  for (simdjson::dom::element item : paths) {
    simdjson::dom::object p;
    if (item.get(p) != simdjson::SUCCESS) return malformed("an entry of 'paths' is not an object");
    PathEntry e;
    std::string_view name;
    if (p["_path"].get(name) != simdjson::SUCCESS) {
      return malformed("an entry of 'paths' has no string '_path'");
    }
    e.path = std::string(name);
    Result<PathType> type = parse_path_type(field_string(p, "path_type"));
    if (!type.ok()) return malformed(e.path + ": " + type.status().message());
    e.type = *type;
    e.placeholder = field_string(p, "prefix_placeholder");
    if (!e.placeholder.empty()) {
      Result<FileMode> mode = parse_file_mode(field_string(p, "file_mode"));
      if (!mode.ok()) return malformed(e.path + ": " + mode.status().message());
      e.file_mode = *mode;
    }
    e.sha256 = field_string(p, "sha256");
    int64_t size = 0;
    if (p["size_in_bytes"].get(size) == simdjson::SUCCESS) e.size = size;
    bool no_link = false;
    if (p["no_link"].get(no_link) == simdjson::SUCCESS) e.no_link = no_link;
    out.push_back(std::move(e));
  }
  return out;
}

// Packages built before paths.json (conda-build < 3): info/files lists the paths; has_prefix,
// no_link and no_softlink annotate them; the path type comes from the tree itself.
Result<std::vector<PathEntry>> read_legacy_paths(const std::string& tree) {
  std::string info = path_join(tree, "info");
  std::unordered_map<std::string, HasPrefixLine> has_prefix;
  for (const std::string& line : read_lines(path_join(info, "has_prefix"))) {
    HasPrefixLine hp;
    if (!parse_has_prefix_line(line, &hp)) {
      return Corrupt(path_join(info, "has_prefix") + ": malformed line '" + line + "'");
    }
    has_prefix[hp.path] = hp;
  }
  std::unordered_set<std::string> no_link;
  for (const char* name : {"no_link", "no_softlink"}) {
    for (std::string& line : read_lines(path_join(info, name))) no_link.insert(std::move(line));
  }
  std::vector<PathEntry> out;
  for (std::string& f : read_lines(path_join(info, "files"))) {
    PathEntry e;
    e.path = std::move(f);
    if (auto it = has_prefix.find(e.path); it != has_prefix.end()) {
      e.placeholder = it->second.placeholder;
      MAT_ASSIGN_OR_RETURN(e.file_mode, parse_file_mode(it->second.mode));
    }
    e.no_link = no_link.count(e.path) > 0;
    struct stat st;
    std::string full = path_join(tree, e.path);
    if (lstat(full.c_str(), &st) == 0) {
      if (S_ISLNK(st.st_mode))
        e.type = PathType::kSoftlink;
      else if (S_ISDIR(st.st_mode))
        e.type = PathType::kDirectory;
    }
    out.push_back(std::move(e));
  }
  return out;
}

// "3.11.4" -> "3.11"; the site-packages directory only uses major.minor.
std::string major_minor(const std::string& v) {
  size_t dot = v.find('.');
  if (dot == std::string::npos) return v;
  size_t dot2 = v.find('.', dot + 1);
  return dot2 == std::string::npos ? v : v.substr(0, dot2);
}

std::string trim(std::string s) {
  size_t b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

// conda's parse_entry_point_def: "cmd = module:func" (func may be "obj.attr").
bool parse_entry_point(const std::string& def, std::string* cmd, std::string* module,
                       std::string* func) {
  size_t colon = def.rfind(':');
  if (colon == std::string::npos) return false;
  std::string left = def.substr(0, colon);
  size_t eq = left.rfind('=');
  if (eq == std::string::npos) return false;
  *cmd = trim(left.substr(0, eq));
  *module = trim(left.substr(eq + 1));
  *func = trim(def.substr(colon + 1));
  return !cmd->empty() && !module->empty() && !func->empty();
}

Status add_entry_points(const json& link_json, const PlanContext& ctx, PackagePlan* plan) {
  auto noarch = link_json.find("noarch");
  if (noarch == link_json.end() || !noarch->is_object()) return Status::Ok();
  auto eps = noarch->find("entry_points");
  if (eps == noarch->end() || !eps->is_array()) return Status::Ok();
  std::string python = path_join(ctx.prefix, "bin/python" + major_minor(ctx.python_version));
  for (const json& ep : *eps) {
    std::string cmd, module, func;
    if (!ep.is_string() || !parse_entry_point(ep.get<std::string>(), &cmd, &module, &func)) {
      return Corrupt("info/link.json: malformed entry point " + dump_json(ep));
    }
    MAT_RETURN_IF_ERROR(check_path_component(cmd, "info/link.json: entry point name"));
    PathEntry e;
    e.type = PathType::kEntryPoint;
    e.path = e.target = "bin/" + cmd;
    e.script = entry_point_script(python, module, func);
    e.sha256 = "";  // filled from the script when recorded
    e.size = static_cast<int64_t>(e.script.size());
    plan->paths.push_back(std::move(e));
  }
  return Status::Ok();
}

bool is_noarch_python(const json& index, const json& link_json) {
  // index.json "noarch": "python" (conda-build 3); link.json {"noarch": {"type": "python"}}
  // (both are written by current conda-build). A legacy boolean `noarch: true` is generic.
  if (auto it = index.find("noarch"); it != index.end() && it->is_string()) {
    if (it->get<std::string>() == "python") return true;
  }
  if (!link_json.is_object()) return false;
  auto noarch = link_json.find("noarch");
  return noarch != link_json.end() && noarch->is_object() &&
         json_string(*noarch, "type") == "python";
}

// A target (after the noarch python mapping, with the lock's python version in it) must be a
// plain relative path outside conda-meta/: records, history and markers there are the
// installer's, and a package's file linked there would be a hard link into the cache that
// later writes (conda's own among them) could write through.
Status check_target(const std::string& target) {
  MAT_RETURN_IF_ERROR(check_relative_path(target, "target path"));
  if (in_conda_meta(target)) {
    return Corrupt("path '" + shown_name(target) + "' is inside conda-meta/, which only the " +
                   "installer writes; the package is malformed: remove it from the lock");
  }
  return Status::Ok();
}

Result<PackagePlan> load_plan_unchecked(const std::string& tree, const PlanContext& ctx) {
  PackagePlan plan;
  std::string info = path_join(tree, "info");
  MAT_ASSIGN_OR_RETURN(plan.index, read_json(path_join(info, "index.json"), true));
  plan.name = json_string(plan.index, "name");
  plan.version = json_string(plan.index, "version");
  plan.build = json_string(plan.index, "build");
  plan.subdir = json_string(plan.index, "subdir");
  // name, version and build become conda-meta/<name>-<version>-<build>.json.
  for (auto [field, value] : {std::pair{"name", &plan.name}, std::pair{"version", &plan.version},
                              std::pair{"build", &plan.build}}) {
    MAT_RETURN_IF_ERROR(check_path_component(*value, std::string("info/index.json: ") + field));
  }
  MAT_RETURN_IF_ERROR(
      check_path_component(record_file_name(plan), "info/index.json: record file name"));
  MAT_ASSIGN_OR_RETURN(json link_json, read_json(path_join(info, "link.json"), false));
  Result<std::vector<PathEntry>> paths = read_paths_json(path_join(info, "paths.json"));
  if (paths.ok()) {
    plan.paths = std::move(paths).value();
  } else if (paths.status().code() == Code::kNotFound) {
    MAT_ASSIGN_OR_RETURN(plan.paths, read_legacy_paths(tree));
  } else {
    return paths.status();
  }
  plan.noarch_python = is_noarch_python(plan.index, link_json);
  if (plan.noarch_python && ctx.python_version.empty()) {
    return InvalidInput(
        "needs the python version: lock has no python package; pass --python-version X.Y");
  }
  for (PathEntry& e : plan.paths) {
    if (const char* why = relative_path_problem(e.path)) {
      return Corrupt("path '" + shown_name(e.path) + "' escapes the prefix or cannot be a file " +
                     "name (" + why + "); the package is malformed");
    }
    e.target = plan.noarch_python ? noarch_python_target(e.path, ctx.python_version) : e.path;
    MAT_RETURN_IF_ERROR(check_target(e.target));
  }
  if (plan.noarch_python && link_json.is_object()) {
    MAT_RETURN_IF_ERROR(add_entry_points(link_json, ctx, &plan));
  }
  return plan;
}

}  // namespace

const char* path_type_name(PathType t) {
  switch (t) {
    case PathType::kHardlink:
      return "hardlink";
    case PathType::kSoftlink:
      return "softlink";
    case PathType::kDirectory:
      return "directory";
    case PathType::kEntryPoint:
      return "unix_python_entry_point";
  }
  return "hardlink";
}

bool parse_has_prefix_line(const std::string& line, HasPrefixLine* out) {
  // shlex.split(posix=False) keeps quoted runs together (quotes included); conda then strips
  // the quote characters from both ends of each token.
  std::vector<std::string> tokens;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && isspace(static_cast<unsigned char>(line[i]))) ++i;
    if (i >= line.size()) break;
    std::string tok;
    while (i < line.size() && !isspace(static_cast<unsigned char>(line[i]))) {
      char q = line[i];
      if (q == '"' || q == '\'') {
        size_t close = line.find(q, i + 1);
        if (close == std::string::npos) close = line.size() - 1;
        tok.append(line, i, close - i + 1);
        i = close + 1;
      } else {
        tok.push_back(line[i++]);
      }
    }
    size_t b = tok.find_first_not_of("\"'");
    size_t e = tok.find_last_not_of("\"'");
    tokens.push_back(b == std::string::npos ? "" : tok.substr(b, e - b + 1));
  }
  if (tokens.size() == 1) {
    *out = {kDefaultPlaceholder, "text", tokens[0]};
    return true;
  }
  if (tokens.size() == 3 && (tokens[1] == "text" || tokens[1] == "binary")) {
    *out = {tokens[0], tokens[1], tokens[2]};
    return true;
  }
  return false;
}

std::string noarch_python_target(const std::string& path, const std::string& python_version) {
  static constexpr std::string_view kSite = "site-packages/";
  static constexpr std::string_view kScripts = "python-scripts/";
  std::string_view p = path;
  if (p.substr(0, kSite.size()) == kSite) {
    return "lib/python" + major_minor(python_version) + "/" + path;
  }
  if (p.substr(0, kScripts.size()) == kScripts) {
    return "bin/" + path.substr(kScripts.size());
  }
  return path;
}

Result<PackagePlan> load_package_plan(const std::string& tree, const PlanContext& ctx) {
  if (tree.empty()) return NotFound("no extracted package to link (an earlier stage failed)");
  if (!is_dir(tree)) {
    return NotFound(tree +
                    ": extracted package not found in the cache (removed while installing?); "
                    "rerun the same command");
  }
  try {
    return load_plan_unchecked(tree, ctx);
  } catch (const nlohmann::json::exception& e) {
    return Corrupt(path_join(tree, "info") + ": malformed metadata: " + e.what() +
                   "; the package is malformed (remove it from the lock), or its cache entry "
                   "was changed (run `materializer cache verify`)");
  }
}

}  // namespace mat::link_internal
