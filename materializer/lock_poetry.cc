// poetry.lock, lock-version 1.x and 2.x.
//
//   [[package]]
//   name, version, optional?, python-versions?, groups?, markers? (2.1: string or per-group)
//   files = [{file = "x.whl", hash = "sha256:..."}, ...]      # lock-version >= 2.0
//   [package.source]  type = legacy | url | file | directory | git, url, reference,
//                     resolved_reference?
//   [metadata]  lock-version, python-versions, content-hash
//   [metadata.files]  <name> = [{file, hash}, ...]              # lock-version 1.x
//
// A poetry lock names files and their hashes but not where to get them: entries come back with
// needs_index = true, allowed_sha256 = the file hashes, and the file names as wheel (url "") or
// sdist candidates, for the index resolver to match. Every package is included (optional ones
// and every group too) and `requested` (the lock does not say which were top-level).
#include <algorithm>
#include <cctype>

#include "materializer/base/url.h"
#include "materializer/lock_toml_internal.h"

namespace mat::lock_internal {
namespace {

std::string normalize(std::string_view name) {
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

// "1.2.3" with component `i` incremented and the rest dropped to zero ("1.3.0"); "" if the
// components are not plain numbers.
std::string bump(std::string_view version, size_t i) {
  std::vector<std::string> parts;
  size_t at = 0;
  while (at <= version.size()) {
    size_t dot = version.find('.', at);
    if (dot == std::string_view::npos) dot = version.size();
    parts.emplace_back(version.substr(at, dot - at));
    at = dot + 1;
  }
  std::string out;
  for (size_t k = 0; k < parts.size(); ++k) {
    std::optional<int64_t> n = parse_int(parts[k]);
    if (!n) return "";
    int64_t v = k < i ? *n : k == i ? *n + 1 : 0;
    out += (k ? "." : "") + std::to_string(v);
  }
  return out;
}

// One poetry constraint as PEP 440 clauses (comma-joined); "" = any; nullopt = cannot say.
std::optional<std::string> translate(std::string_view c) {
  if (c.empty() || c == "*") return "";
  if (c[0] == '^' || (c[0] == '~' && !c.starts_with("~="))) {
    std::string_view v = c.substr(1);
    size_t dots = static_cast<size_t>(std::count(v.begin(), v.end(), '.'));
    size_t i = 0;
    if (c[0] == '^') {
      // The first non-zero component moves; all zeros: the last one given.
      std::string_view rest = v;
      i = dots;
      for (size_t k = 0; k <= dots; ++k) {
        size_t dot = rest.find('.');
        if (rest.substr(0, dot) != "0") {
          i = k;
          break;
        }
        rest = dot == std::string_view::npos ? "" : rest.substr(dot + 1);
      }
    } else {
      i = dots >= 1 ? 1 : 0;
    }
    std::string upper = bump(v, i);
    if (upper.empty()) return std::nullopt;
    return ">=" + std::string(v) + ",<" + upper;
  }
  if (std::isdigit(static_cast<unsigned char>(c[0]))) return "==" + std::string(c);
  if (c[0] == '=' && !c.starts_with("==")) return "=" + std::string(c);
  return std::string(c);
}

// Reads the hash list of one package: sha256 values into allowed_sha256, file names into
// wheels / sdists. `files` comes from the package (2.x) or metadata.files (1.x).
Status read_files(const toml::array& files, const TomlField& f, std::string_view key, int line,
                  PackageRef& ref) {
  for (size_t i = 0; i < files.size(); ++i) {
    const toml::node& n = *files.get(i);
    const toml::table* t = n.as_table();
    TomlField ef = f.element(key, i);
    if (!t) {
      return f.error(&n, line, std::string(key) + "[" + std::to_string(i) + "]", "must be a table");
    }
    WheelCandidate c;
    std::string hash;
    MAT_RETURN_IF_ERROR(toml_string(*t, "file", ef, line, c.file_name, /*required=*/true));
    MAT_RETURN_IF_ERROR(toml_string(*t, "hash", ef, line, hash, /*required=*/true));
    MAT_RETURN_IF_ERROR(parse_prefixed_sha256(hash, ef, t->get("hash"), line, "hash", c.sha256));
    if (c.sha256.empty()) continue;  // md5 and other digests: not something we verify
    ref.allowed_sha256.push_back(c.sha256);
    (c.file_name.ends_with(".whl") ? ref.wheels : ref.sdists).push_back(std::move(c));
  }
  return Status::Ok();
}

// [package.source]: a legacy index is where to look; anything else is not an index package.
Status read_source(const toml::table& src, const TomlField& f, int line,
                   const std::string& lock_dir, PackageRef& ref) {
  std::string type, url, resolved;
  MAT_RETURN_IF_ERROR(toml_string(src, "type", f, line, type, /*required=*/true));
  MAT_RETURN_IF_ERROR(toml_string(src, "url", f, line, url));
  MAT_RETURN_IF_ERROR(toml_string(src, "resolved_reference", f, line, resolved));
  if (type == "legacy") {
    ref.channel = url;
    return Status::Ok();
  }
  ref.needs_index = false;
  if (type == "git") {
    ref.source_kind = "git";
    ref.url = "git+" + url + (resolved.empty() ? "" : "@" + resolved);
    ref.file_name = url_file_name(url);
    return Status::Ok();
  }
  if (type != "url" && type != "file" && type != "directory") {
    return f.error(src.get("type"), line, "type",
                   "is '" + type + "': expected legacy, url, file, directory or git");
  }
  ref.url = type == "url" ? url : resolve_location(url, lock_dir);
  ref.file_name = url_file_name(ref.url);
  if (type != "directory" && ref.file_name.ends_with(".whl")) {
    // A wheel named directly: the one candidate, with its hash from `files` if listed.
    WheelCandidate c{ref.url, ref.file_name, "", -1};
    for (const WheelCandidate& w : ref.wheels) {
      if (w.file_name == c.file_name) c.sha256 = w.sha256;
    }
    if (c.sha256.empty() && ref.allowed_sha256.size() == 1) c.sha256 = ref.allowed_sha256[0];
    ref.sha256 = c.sha256;
    ref.wheels.assign(1, c);
    return Status::Ok();
  }
  ref.source_kind = type == "url" ? "url" : type == "file" ? "path" : "directory";
  return Status::Ok();
}

// 2.1's `markers`: one marker, or one per group (any group installs it, so OR them).
Status read_markers(const toml::table& t, const TomlField& f, int line, std::string& out) {
  const toml::node* n = t.get("markers");
  if (!n) return Status::Ok();
  if (const auto* s = n->as_string()) {
    out = s->get();
    return Status::Ok();
  }
  const toml::table* groups = n->as_table();
  if (!groups) return f.error(n, line, "markers", "must be a string or a table");
  std::string any;
  for (const auto& [group, m] : *groups) {
    const auto* s = m.as_string();
    if (!s) return f.error(&m, line, "markers." + std::string(group.str()), "must be a string");
    if (s->get().empty()) return Status::Ok();  // unconditional in one group
    any += (any.empty() ? "" : " or ") + ("(" + s->get() + ")");
  }
  if (groups->size() == 1) any = any.substr(1, any.size() - 2);
  out = any;
  return Status::Ok();
}

Status read_package(const toml::table& t, size_t index, const std::string& path,
                    const std::string& lock_dir, const toml::table* old_files, PackageRef& ref) {
  ref.kind = PackageKind::kPypi;
  ref.line = toml_line(t);
  ref.needs_index = true;
  TomlField f{path, "package[" + std::to_string(index) + "]", ""};
  MAT_RETURN_IF_ERROR(toml_string(t, "name", f, ref.line, ref.name, /*required=*/true));
  f.subject = "package '" + ref.name + "'";
  MAT_RETURN_IF_ERROR(toml_string(t, "version", f, ref.line, ref.version, /*required=*/true));
  std::string python_versions;
  MAT_RETURN_IF_ERROR(toml_string(t, "python-versions", f, ref.line, python_versions));
  ref.requires_python = poetry_to_pep440(python_versions);
  MAT_RETURN_IF_ERROR(read_markers(t, f, ref.line, ref.marker));

  const toml::array* files = nullptr;
  MAT_RETURN_IF_ERROR(toml_array(t, "files", f, ref.line, files));
  if (files) {
    MAT_RETURN_IF_ERROR(read_files(*files, f, "files", ref.line, ref));
  } else if (old_files) {
    // 1.x: metadata.files keyed by name (as written, or normalised by older poetry).
    for (const auto& [key, node] : *old_files) {
      if (normalize(key.str()) != normalize(ref.name)) continue;
      const toml::array* a = node.as_array();
      TomlField mf{path, f.subject, "metadata.files."};
      if (!a) return mf.error(&node, ref.line, key.str(), "must be a list");
      MAT_RETURN_IF_ERROR(read_files(*a, mf, key.str(), toml_line(node), ref));
    }
  }
  const toml::table* source = nullptr;
  MAT_RETURN_IF_ERROR(toml_table(t, "source", f, ref.line, source));
  if (source)
    MAT_RETURN_IF_ERROR(read_source(*source, f.nested("source"), ref.line, lock_dir, ref));
  if (ref.needs_index && ref.allowed_sha256.empty()) {
    return input_error(path, ref.line,
                       f.subject + " " + ref.version +
                           ": no sha256 file hashes in the lock; re-lock with a current poetry");
  }
  if (ref.file_name.empty()) {
    ref.file_name = !ref.wheels.empty()   ? ref.wheels.front().file_name
                    : !ref.sdists.empty() ? ref.sdists.front().file_name
                                          : ref.name;
  }
  return Status::Ok();
}

}  // namespace

std::string poetry_to_pep440(std::string_view constraint) {
  if (constraint.find("||") != std::string_view::npos) return "";
  // Tokens split at commas and spaces; an operator standing alone joins the version after it.
  std::vector<std::string> tokens;
  std::string pending;
  size_t i = 0;
  while (i < constraint.size()) {
    size_t j = constraint.find_first_of(", \t", i);
    if (j == std::string_view::npos) j = constraint.size();
    std::string tok(constraint.substr(i, j - i));
    i = j + 1;
    if (tok.empty()) continue;
    if (tok.find_first_not_of("<>=!~^") == std::string::npos) {
      pending += tok;
      continue;
    }
    tokens.push_back(pending + tok);
    pending.clear();
  }
  std::string out;
  for (const std::string& tok : tokens) {
    std::optional<std::string> t = translate(tok);
    if (!t) return "";
    if (!t->empty()) out += (out.empty() ? "" : ",") + *t;
  }
  return out;
}

Result<LockFile> parse_poetry_lock(const toml::table& root, const std::string& path,
                                   const std::string& lock_dir) {
  LockFile lock;
  lock.format = LockFormat::kPoetry;
  lock.path = path;
  TomlField f{path, "", ""};
  const toml::table* metadata = nullptr;
  MAT_RETURN_IF_ERROR(toml_table(root, "metadata", f, 0, metadata));
  TomlField mf{path, "", "metadata."};
  std::string lock_version, python_versions;
  const toml::table* old_files = nullptr;
  if (metadata) {
    int line = toml_line(*metadata);
    MAT_RETURN_IF_ERROR(toml_string(*metadata, "lock-version", mf, line, lock_version));
    MAT_RETURN_IF_ERROR(toml_string(*metadata, "python-versions", mf, line, python_versions));
    MAT_RETURN_IF_ERROR(toml_table(*metadata, "files", mf, line, old_files));
  }
  // Poetry 1.0 wrote no lock-version; 1.1 through 2.1 are read the same way.
  lock.version = lock_version.empty() ? 1 : static_cast<int>(lock_version[0] - '0');
  if (lock.version < 1 || lock.version > 2) {
    return input_error(
        path, toml_line(*metadata->get("lock-version")),
        "unsupported poetry lock-version '" + lock_version + "': supported 1.x and 2.x");
  }
  lock.requires_python = poetry_to_pep440(python_versions);
  const toml::array* packages = nullptr;
  MAT_RETURN_IF_ERROR(toml_array(root, "package", f, 0, packages));
  for (size_t i = 0; packages && i < packages->size(); ++i) {
    const toml::node& n = *packages->get(i);
    const toml::table* t = n.as_table();
    if (!t) return f.error(&n, 0, "package[" + std::to_string(i) + "]", "must be a table");
    PackageRef ref;
    MAT_RETURN_IF_ERROR(read_package(*t, i, path, lock_dir, old_files, ref));
    lock.packages.push_back(std::move(ref));
  }
  return lock;
}

}  // namespace mat::lock_internal
