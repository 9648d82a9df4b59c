// Lock-file front door: format detection, the shared helpers of lock_internal.h, and the
// exception boundary around yaml-cpp and toml++ (which report syntax errors by throwing).
#include "materializer/lock.h"

#include <sys/utsname.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <istream>
#include <streambuf>
#include <string_view>
#include <unordered_map>

#include "materializer/base/doc_limits.h"
#include "materializer/base/fs.h"
#include "materializer/base/hash.h"
#include "materializer/base/text.h"
#include "materializer/base/url.h"
#include "materializer/lock_internal.h"
#include "materializer/lock_toml_internal.h"

namespace mat {
namespace lock_internal {

Status input_error(const std::string& path, int line, const std::string& what) {
  if (line <= 0) return InvalidInput(path + ": " + what);
  return InvalidInput(path + ":" + std::to_string(line) + ": " + what);
}

bool is_map(const YAML::Node& node) { return node.IsDefined() && node.IsMap(); }
bool is_seq(const YAML::Node& node) { return node.IsDefined() && node.IsSequence(); }

int line_of(const YAML::Node& node) {
  if (!node.IsDefined()) return 0;
  YAML::Mark m = node.Mark();
  return m.is_null() ? 0 : m.line + 1;
}

YAML::Node child(const YAML::Node& map, const char* key) {
  if (!is_map(map)) return YAML::Node(YAML::NodeType::Undefined);
  return map[key];
}

std::optional<std::string> scalar(const YAML::Node& map, const char* key) {
  const YAML::Node v = child(map, key);
  if (!v.IsDefined() || !v.IsScalar()) return std::nullopt;
  return v.Scalar();
}

std::optional<std::string> lower_hex(std::string_view value, size_t n) {
  if (!is_hex(value, n)) return std::nullopt;
  std::string out(value);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::optional<int64_t> parse_int(std::string_view s) {
  int64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || v < 0) return std::nullopt;
  return v;
}

bool has_url_scheme(std::string_view loc) {
  // RFC 3986 scheme: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":". Requiring two or more
  // characters keeps Windows drive letters ("C:\...") out.
  size_t colon = loc.find(':');
  if (colon == std::string_view::npos || colon < 2) return false;
  if (!std::isalpha(static_cast<unsigned char>(loc[0]))) return false;
  for (size_t i = 1; i < colon; ++i) {
    unsigned char c = static_cast<unsigned char>(loc[i]);
    if (!std::isalnum(c) && c != '+' && c != '-' && c != '.') return false;
  }
  return true;
}

std::string resolve_location(const std::string& loc, const std::string& lock_dir) {
  if (has_url_scheme(loc)) return loc;
  if (!loc.empty() && loc[0] == '/') return path_to_file_url(lexical_normal(loc));
  return path_to_file_url(lexical_normal(lock_dir + "/" + loc));
}

bool is_conda_archive(std::string_view file_name) {
  return file_name.ends_with(".conda") || file_name.ends_with(".tar.bz2");
}

// Conda subdirs are "noarch" or "<os>-<arch>" ("linux-64", "osx-arm64", "emscripten-wasm32").
// A file served from any other directory (a local folder of packages) has no subdir in its URL.
bool looks_like_subdir(const std::string& name) {
  if (name == "noarch") return true;
  size_t dash = name.find('-');
  if (dash == std::string::npos || dash == 0 || dash + 1 == name.size()) return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

void fill_derived(PackageRef& ref) {
  ref.file_name = url_file_name(ref.url);
  if (ref.kind != PackageKind::kConda) return;
  if (ref.name.empty() || ref.version.empty() || ref.build.empty()) {
    if (auto parsed = parse_conda_file_name(ref.file_name)) {
      if (ref.name.empty()) ref.name = parsed->name;
      if (ref.version.empty()) ref.version = parsed->version;
      if (ref.build.empty()) ref.build = parsed->build;
    }
  }
  // ".../<channel>/<subdir>/<file>": the parent directory is the subdir.
  std::string base = url_strip_fragment(ref.url);
  size_t q = base.find('?');
  if (q != std::string::npos) base.resize(q);
  size_t slash = base.rfind('/');
  if (slash == std::string::npos) return;
  std::string parent_dir = base.substr(0, slash);
  size_t slash2 = parent_dir.rfind('/');
  std::string parent_name = slash2 == std::string::npos ? "" : parent_dir.substr(slash2 + 1);
  if (ref.subdir.empty() && looks_like_subdir(parent_name)) ref.subdir = parent_name;
  if (ref.channel.empty()) {
    ref.channel = (parent_name == ref.subdir && slash2 != std::string::npos)
                      ? parent_dir.substr(0, slash2)
                      : parent_dir;
  }
}

Status check_hashes(const std::vector<PackageRef>& refs, const std::string& path,
                    const std::string& missing, const std::string& hint) {
  std::string list;
  int count = 0;
  int first_line = 0;
  for (const PackageRef& r : refs) {
    if (r.kind != PackageKind::kConda || !r.sha256.empty() || !r.md5.empty()) continue;
    if (count++ == 0) first_line = r.line;
    if (!list.empty()) list += ", ";
    list += "line " + std::to_string(r.line) + ": " + r.file_name;
  }
  if (count == 0) return Status::Ok();
  std::string what =
      count == 1 ? list.substr(list.find(": ") + 2) + " has no " + missing
                 : std::to_string(count) + " packages have no " + missing + " (" + list + ")";
  return input_error(path, first_line, what + "; " + hint);
}

void classify_pypi_url(PackageRef& ref) {
  std::string_view url = ref.url;
  bool vcs = url.starts_with("git+") || url.starts_with("hg+") || url.starts_with("svn+") ||
             url.starts_with("bzr+");
  std::string file = url_file_name(url_strip_fragment(ref.url));
  if (vcs) {
    ref.source_kind = url.starts_with("git+") ? "git" : "vcs";
    // "repo.git@<rev>" -> "repo.git": the revision is not part of a name.
    if (size_t at = file.find('@'); at != std::string::npos) file.resize(at);
  } else if (is_file_url(ref.url) && !file.ends_with(".whl") && !file.ends_with(".tar.gz") &&
             !file.ends_with(".zip") && !file.ends_with(".tar.bz2") && !file.ends_with(".tgz")) {
    ref.source_kind = "path";  // a local project directory
  }
  ref.file_name = file.empty() ? ref.name : file;
}

void note_platform(LockFile& lock, const std::string& platform) {
  for (const std::string& p : lock.entry_platforms) {
    if (p == platform) return;
  }
  lock.entry_platforms.push_back(platform);
}

namespace {

// Field length limits. Names, versions, builds and subdirs are tens of bytes in every real
// lock; a file name must fit NAME_MAX; URLs (with tokens) and markers (uv writes long ones)
// get more room.
constexpr size_t kMaxShortField = 256;
constexpr size_t kMaxFileName = 255;
constexpr size_t kMaxUrl = 8192;
constexpr size_t kMaxMarker = 65536;

std::string subject_of(const PackageRef& r) {
  return r.name.empty() ? std::string("package entry") : "package '" + printable(r.name, 80) + "'";
}

Status check_field(const LockFile& lock, const PackageRef& r, const char* field,
                   std::string_view value, size_t max_len) {
  const char* problem = single_line_problem(value, max_len);
  if (problem == nullptr) return Status::Ok();
  std::string what = subject_of(r) + ": field '" + field + "' " + problem;
  what += value.size() > max_len ? " (" + std::to_string(value.size()) + " bytes; the limit is " +
                                       std::to_string(max_len) + ")"
                                 : ": '" + printable(value, 120) + "'";
  return input_error(lock.path, r.line, what + "; fix or re-generate the lock");
}

Status check_candidate(const LockFile& lock, const PackageRef& r, const WheelCandidate& c) {
  MAT_RETURN_IF_ERROR(check_field(lock, r, "url", c.url, kMaxUrl));
  return check_field(lock, r, "file name", c.file_name, kMaxFileName);
}

std::string normalized_pypi(std::string_view name) {
  // PEP 503: runs of -, _ and . become one -, lowercase.
  std::string out;
  for (char c : name) {
    if (c == '-' || c == '_' || c == '.') {
      if (out.empty() || out.back() != '-') out += '-';
    } else {
      out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
  }
  return out;
}

// "line 12 (zlib-1.3.1-h1.conda, sha256 3f2a1b2c…)" or "entry 3 (...)".
std::string describe(const PackageRef& r, size_t index) {
  std::string where =
      r.line > 0 ? "line " + std::to_string(r.line) : "entry " + std::to_string(index + 1);
  std::string what = printable(redact_url(r.url.empty() ? r.file_name : r.url), 160);
  if (!r.sha256.empty()) {
    what += ", sha256 " + r.sha256.substr(0, 12) + "...";
  } else if (!r.md5.empty()) {
    what += ", md5 " + r.md5.substr(0, 12) + "...";
  }
  return where + " (" + what + ")";
}

// The same file listed again: same URL, name, version and build, and no hash that disagrees
// (conda-lock repeats an entry with only its md5; @EXPLICIT files, one with #md5 and one with
// #sha256).
bool same_file(const PackageRef& a, const PackageRef& b) {
  auto agree = [](const std::string& x, const std::string& y) {
    return x.empty() || y.empty() || x == y;
  };
  return a.url == b.url && a.version == b.version && a.build == b.build &&
         agree(a.sha256, b.sha256) && agree(a.md5, b.md5);
}

}  // namespace

Status check_fields(const LockFile& lock) {
  for (const PackageRef& r : lock.packages) {
    MAT_RETURN_IF_ERROR(check_field(lock, r, "name", r.name, kMaxShortField));
    MAT_RETURN_IF_ERROR(check_field(lock, r, "version", r.version, kMaxShortField));
    MAT_RETURN_IF_ERROR(check_field(lock, r, "build", r.build, kMaxShortField));
    MAT_RETURN_IF_ERROR(check_field(lock, r, "subdir", r.subdir, kMaxShortField));
    MAT_RETURN_IF_ERROR(check_field(lock, r, "channel", r.channel, kMaxUrl));
    MAT_RETURN_IF_ERROR(check_field(lock, r, "url", r.url, kMaxUrl));
    MAT_RETURN_IF_ERROR(check_field(lock, r, "file name", r.file_name, kMaxFileName));
    MAT_RETURN_IF_ERROR(check_field(lock, r, "marker", r.marker, kMaxMarker));
    MAT_RETURN_IF_ERROR(check_field(lock, r, "requires-python", r.requires_python, kMaxMarker));
    for (const auto* list : {&r.wheels, &r.sdists}) {
      for (const WheelCandidate& c : *list) MAT_RETURN_IF_ERROR(check_candidate(lock, r, c));
    }
  }
  return Status::Ok();
}

Status check_duplicates(LockFile& lock) {
  // PyPI-only formats may list a name once per environment (markers): checked by the driver.
  const bool pypi_pinned =
      lock.format == LockFormat::kCondaLockV1 || lock.format == LockFormat::kPixi;
  std::unordered_map<std::string, size_t> first;  // kind + name -> index in `out`
  std::vector<PackageRef> out;
  std::vector<size_t> index_of;  // position in the lock's selection, for messages
  out.reserve(lock.packages.size());
  for (size_t i = 0; i < lock.packages.size(); ++i) {
    PackageRef& r = lock.packages[i];
    // Nameless entries (a dangling pixi pypi reference) are refused later by what needs the
    // name; they are no one's duplicate.
    if ((r.kind == PackageKind::kPypi && !pypi_pinned) || r.name.empty()) {
      out.push_back(std::move(r));
      index_of.push_back(i);
      continue;
    }
    const std::string key = r.kind == PackageKind::kConda ? "conda\n" + r.name
                                                          : "pypi\n" + normalized_pypi(r.name);
    auto [it, fresh] = first.try_emplace(key, out.size());
    if (!fresh) {
      PackageRef& prev = out[it->second];
      if (same_file(prev, r)) {  // a repeat of the same file: keep the first, with every hash
        if (prev.sha256.empty()) prev.sha256 = r.sha256;
        if (prev.md5.empty()) prev.md5 = r.md5;
        continue;
      }
      return input_error(
          lock.path, r.line,
          subject_of(r) + " is selected twice, as different files: " +
              describe(prev, index_of[it->second]) + " and " + describe(r, i) +
              "; a lock names one file per package (whichever came first would win): "
              "re-lock, or remove one of the entries");
    }
    out.push_back(std::move(r));
    index_of.push_back(i);
  }
  lock.packages = std::move(out);
  return Status::Ok();
}

}  // namespace lock_internal

using namespace lock_internal;

const char* lock_format_name(LockFormat f) {
  switch (f) {
    case LockFormat::kCondaLockV1:
      return "conda-lock-v1";
    case LockFormat::kExplicit:
      return "explicit";
    case LockFormat::kPixi:
      return "pixi";
    case LockFormat::kPylock:
      return "pylock";
    case LockFormat::kUvLock:
      return "uv-lock";
    case LockFormat::kRequirements:
      return "requirements";
    case LockFormat::kPoetry:
      return "poetry-lock";
  }
  return "unknown";
}

std::string lock_format_label(const LockFile& lock) {
  if (lock.format == LockFormat::kPixi) return "pixi-v" + std::to_string(lock.version);
  return lock_format_name(lock.format);
}

namespace {

constexpr const char* kUnknownFormat =
    "not a recognised lock file: expected conda-lock.yml v1, @EXPLICIT, pixi.lock v4-v7, "
    "pylock.toml, uv.lock, poetry.lock or requirements.txt";

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// Calls f(line) for each line of `content` until f returns true; returns whether it did.
template <typename F>
bool any_line(std::string_view content, F f) {
  size_t i = 0;
  while (i < content.size()) {
    size_t nl = content.find('\n', i);
    if (nl == std::string_view::npos) nl = content.size();
    if (f(trim(content.substr(i, nl - i)))) return true;
    i = nl + 1;
  }
  return false;
}

bool is_explicit_text(std::string_view content) {
  return any_line(content, [](std::string_view l) { return l == "@EXPLICIT"; });
}

// Whether a YAML syntax error should be reported as such: only when the text looks like it
// meant to be one of our YAML formats (a top-level key we know). Otherwise a TOML or
// requirements file would get a confusing YAML message instead of "not a lock file".
bool looks_like_yaml_lock(std::string_view content) {
  return any_line(content, [](std::string_view l) {
    return l.starts_with("version:") || l.starts_with("package:") || l.starts_with("packages:") ||
           l.starts_with("environments:") || l.starts_with("metadata:");
  });
}

// A URL as first meaningful line without @EXPLICIT: a conda "text spec" file that forgot the
// marker; worth saying so.
bool first_line_is_url(std::string_view content) {
  bool url = false;
  any_line(content, [&](std::string_view l) {
    if (l.empty() || l[0] == '#') return false;
    url = l.find("://") != std::string_view::npos;
    return true;
  });
  return url;
}

// Strips a UTF-8 byte-order mark; editors on Windows add one.
std::string_view without_bom(std::string_view s) {
  if (s.starts_with("\xEF\xBB\xBF")) s.remove_prefix(3);
  return s;
}

// Whether a TOML syntax error should be reported as such: the text has a table header or key
// that one of our TOML formats starts with. Otherwise YAML and text formats get their turn.
bool looks_like_toml_lock(std::string_view content) {
  return any_line(content, [](std::string_view l) {
    return l.starts_with("[[package") || l.starts_with("[metadata") ||
           l.starts_with("lock-version") || l.starts_with("version =") ||
           l.starts_with("requires-python =");
  });
}

// The TOML formats, told apart by their top-level keys. nullopt: none of them.
std::optional<LockFormat> classify_toml(const toml::table& t) {
  if (const toml::table* meta = t["metadata"].as_table()) {
    if (meta->contains("content-hash") || meta->contains("lock-version")) {
      return LockFormat::kPoetry;
    }
  }
  if (t.contains("lock-version")) return LockFormat::kPylock;
  if (t["version"].is_integer() && (t["package"].is_array() || t.contains("requires-python"))) {
    return LockFormat::kUvLock;
  }
  return std::nullopt;
}

// An istream over text it does not own.
class ViewStreamBuf : public std::streambuf {
 public:
  explicit ViewStreamBuf(std::string_view s) {
    char* p = const_cast<char*>(s.data());  // never written: get area only
    setg(p, p, p + s.size());
  }
};

constexpr const char* kDepthHint = "no lock format nests that deeply: the file is malformed";

// Where the parsed document of a format lives between detection and parsing.
struct Parsed {
  YAML::Node yaml;
  toml::table toml;
};

// Detects the format; for YAML and TOML formats also returns the parsed document in `out`.
// Order: @EXPLICIT (a marker line), TOML (cheap to reject: toml++ stops at the first line of
// YAML or requirements text), requirements (every line a pip option or requirement), YAML.
// May throw YAML::Exception only through YAML::Load, which callers guard.
Result<LockFormat> detect(std::string_view content, const std::string& path, Parsed* out) {
  if (trim(content).empty()) return input_error(path, 0, "empty lock file");
  if (is_explicit_text(content)) return LockFormat::kExplicit;
  // toml++ recurses per dotted-key component and table level (100,000 of them crashed it);
  // yaml-cpp per nesting level: both only see documents within kMaxDocDepth.
  const Status toml_depth =
      check_doc_limits(content, DocFormat::kToml, path, DocLimits{INT64_MAX, kMaxDocDepth},
                       Code::kInvalidInput, kDepthHint);
  if (!toml_depth.ok() && looks_like_toml_lock(content)) return toml_depth;
  if (toml_depth.ok()) {  // else not TOML: no TOML lock nests that deeply
    try {
      toml::table t = toml::parse(content, std::string_view(path));
      std::optional<LockFormat> f = classify_toml(t);
      if (!f) return input_error(path, 0, kUnknownFormat);
      if (out) out->toml = std::move(t);
      return *f;
    } catch (const toml::parse_error& e) {
      if (looks_like_toml_lock(content)) {
        const toml::source_position& p = e.source().begin;
        return input_error(path, p ? static_cast<int>(p.line) : 0,
                           "TOML syntax error: " + std::string(e.description()));
      }
    }
  }
  if (looks_like_requirements(content)) return LockFormat::kRequirements;
  if (Status deep = check_doc_limits(content, DocFormat::kYaml, path,
                                     DocLimits{INT64_MAX, kMaxDocDepth}, Code::kInvalidInput,
                                     kDepthHint);
      !deep.ok()) {
    return looks_like_yaml_lock(content) ? deep : input_error(path, 0, kUnknownFormat);
  }
  YAML::Node doc;
  try {
    // Read in place: YAML::Load(std::string) would copy the text twice (string, stringstream).
    ViewStreamBuf buf(content);
    std::istream in(&buf);
    doc = YAML::Load(in);
  } catch (const YAML::Exception& e) {
    if (!looks_like_yaml_lock(content)) return input_error(path, 0, kUnknownFormat);
    return input_error(path, e.mark.is_null() ? 0 : e.mark.line + 1, "YAML syntax error: " + e.msg);
  }
  const YAML::Node& cdoc = doc;  // const lookups never insert keys
  if (cdoc.IsMap()) {
    if (cdoc["environments"].IsDefined() ||
        (cdoc["packages"].IsDefined() && cdoc["version"].IsDefined())) {
      if (out) out->yaml = doc;
      return LockFormat::kPixi;
    }
    if (cdoc["package"].IsDefined()) {
      if (out) out->yaml = doc;
      return LockFormat::kCondaLockV1;
    }
  }
  if (first_line_is_url(content)) {
    return input_error(path, 0,
                       std::string(kUnknownFormat) +
                           " (URL lines without an @EXPLICIT line; add `@EXPLICIT` before them)");
  }
  return input_error(path, 0, kUnknownFormat);
}

}  // namespace

Result<LockFormat> detect_lock_format(const std::string& content, const std::string& path) {
  try {
    return detect(without_bom(content), path, nullptr);
  } catch (const YAML::Exception& e) {
    return input_error(path, 0, std::string("YAML error: ") + e.what());
  }
}

namespace {

Result<LockFile> parse_format(std::string_view text, const std::string& path,
                              const std::string& lock_dir, const LockSelection& sel) {
  // yaml-cpp throws on syntax errors and bad conversions; nothing may escape this API.
  try {
    Parsed doc;
    MAT_ASSIGN_OR_RETURN(LockFormat format, detect(text, path, &doc));
    switch (format) {
      case LockFormat::kExplicit:
        return parse_explicit(text, path, lock_dir, sel);
      case LockFormat::kCondaLockV1:
        return parse_conda_lock(doc.yaml, path, sel);
      case LockFormat::kPixi:
        return parse_pixi(doc.yaml, path, lock_dir, sel);
      // PyPI formats have no conda platform; only uv.lock reads `sel` (extras and groups).
      case LockFormat::kPylock:
        return parse_pylock(doc.toml, path, lock_dir);
      case LockFormat::kUvLock:
        return parse_uv_lock(doc.toml, path, lock_dir, sel);
      case LockFormat::kPoetry:
        return parse_poetry_lock(doc.toml, path, lock_dir);
      case LockFormat::kRequirements:
        return parse_requirements(text, path, lock_dir, sel.local_files);
    }
    return Internal(path + ": unhandled lock format");
  } catch (const YAML::Exception& e) {
    return input_error(path, e.mark.is_null() ? 0 : e.mark.line + 1, "YAML error: " + e.msg);
  }
}

}  // namespace

Result<LockFile> parse_lock(const std::string& content, const std::string& path,
                            const LockSelection& sel) {
  if (static_cast<int64_t>(content.size()) > sel.max_bytes) {
    return input_error(path, 0,
                       "lock file of " + std::to_string(content.size()) +
                           " bytes is larger than the limit of " + std::to_string(sel.max_bytes) +
                           " bytes; if it is genuine, raise the limit with --max-lock-size");
  }
  std::string_view text = without_bom(content);
  std::string lock_dir = dir_name(absolute_path(path));
  if (lock_dir.empty()) lock_dir = "/";
  MAT_ASSIGN_OR_RETURN(LockFile lock, parse_format(text, path, lock_dir, sel));
  // PyPI-only formats return every entry (uv.lock counts its own).
  lock.entries = std::max(lock.entries, static_cast<int64_t>(lock.packages.size()));
  MAT_RETURN_IF_ERROR(check_fields(lock));
  MAT_RETURN_IF_ERROR(check_duplicates(lock));
  return lock;
}

Result<LockFile> load_lock(const std::string& path, const LockSelection& sel) {
  Result<std::string> content = read_file(path);
  if (!content.ok()) {
    const Status& s = content.status();
    return Status(s.code(), "cannot read lock file: " + s.message());
  }
  return parse_lock(*content, path, sel);
}

std::optional<CondaFileName> parse_conda_file_name(const std::string& file_name) {
  std::string_view s(file_name);
  if (s.ends_with(".conda")) {
    s.remove_suffix(6);
  } else if (s.ends_with(".tar.bz2")) {
    s.remove_suffix(8);
  }
  size_t b = s.rfind('-');
  if (b == std::string_view::npos || b == 0) return std::nullopt;
  size_t v = s.rfind('-', b - 1);
  if (v == std::string_view::npos || v == 0) return std::nullopt;
  CondaFileName out{std::string(s.substr(0, v)), std::string(s.substr(v + 1, b - v - 1)),
                    std::string(s.substr(b + 1))};
  if (out.version.empty() || out.build.empty()) return std::nullopt;
  return out;
}

std::string host_platform() {
  struct utsname u;
  if (::uname(&u) != 0) return "linux-64";
  std::string_view sys(u.sysname), m(u.machine);
  if (sys == "Darwin") return (m == "arm64" || m == "aarch64") ? "osx-arm64" : "osx-64";
  std::string os = sys == "Linux" ? "linux" : std::string(sys);
  std::transform(os.begin(), os.end(), os.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (m == "x86_64" || m == "amd64") return os + "-64";
  if (m == "i386" || m == "i486" || m == "i586" || m == "i686") return os + "-32";
  if (m == "arm64") return os + "-aarch64";
  // aarch64, ppc64le, s390x, armv6l, armv7l, riscv64 are conda subdir names as they are.
  return os + "-" + std::string(m);
}

}  // namespace mat
