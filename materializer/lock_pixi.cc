// pixi.lock (rattler_lock), versions 4 to 7.
//
//   version: 6
//   platforms: [{name, subdir?, virtual-packages}]       # v7 only; names key the lists below
//   environments:
//     <env>: {channels, indexes?, packages: {<platform>: [{conda: URL} | {pypi: URL}, ...]}}
//   packages:
//   - conda: URL          # v6, v7: the key names kind and location
//     name?, version?, build?, subdir?, sha256, md5, size, ...
//   - kind: conda         # v4, v5: `kind` plus `url:` (pypi may have `path:` instead)
//     url: URL
//
// Environment entries refer to package entries by location (the exact string). Since v6 an
// environment entry may add name/version/build/subdir to pick one of several packages that
// share a location (source packages built per variant); we match on those fields too.
// The versions differ only in these spellings, so one reader serves all four; v7's
// `conda_source:` entries are source builds, which we refuse with a clear message.
#include <unordered_map>

#include "materializer/base/text.h"
#include "materializer/base/url.h"
#include "materializer/lock_internal.h"

namespace mat::lock_internal {
namespace {

constexpr int64_t kMinVersion = 4;
constexpr int64_t kMaxVersion = 7;

struct Located {
  std::string kind;  // "conda", "pypi", "conda_source"
  std::string location;
};

// Kind and location of a top-level package entry, or of an environment entry.
std::optional<Located> locate(const YAML::Node& entry) {
  for (const char* k : {"conda", "pypi", "conda_source"}) {
    if (auto loc = scalar(entry, k)) return Located{k, *loc};
  }
  if (auto kind = scalar(entry, "kind")) {
    if (auto url = scalar(entry, "url")) return Located{*kind, *url};
    if (auto p = scalar(entry, "path")) return Located{*kind, *p};
  }
  return std::nullopt;
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const std::string& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}

// Field of a package entry used to disambiguate; name/version/build fall back to the file name
// and subdir to the URL, as v6 omits what the URL already says.
std::string package_field(const YAML::Node& pkg, const std::string& location, const char* key) {
  if (auto v = scalar(pkg, key)) return *v;
  PackageRef tmp;
  tmp.url = location;
  fill_derived(tmp);
  std::string_view k(key);
  if (k == "name") return tmp.name;
  if (k == "version") return tmp.version;
  if (k == "build") return tmp.build;
  if (k == "subdir") return tmp.subdir;
  return "";
}

// Among packages sharing a location, the one whose fields agree with the environment entry.
// v4/v5 locks repeat a noarch package once per platform with `subdir: <platform>`; the
// entry for the target platform is preferred so that `line` points at it.
const YAML::Node* pick(const std::vector<YAML::Node>& candidates, const YAML::Node& ref,
                       const std::string& location, const std::string& platform) {
  const YAML::Node* first = nullptr;
  for (const YAML::Node& pkg : candidates) {
    bool match = true;
    for (const char* key : {"name", "version", "build", "subdir"}) {
      std::optional<std::string> want = scalar(ref, key);
      if (want && *want != package_field(pkg, location, key)) match = false;
    }
    if (!match) continue;
    if (candidates.size() == 1 || scalar(pkg, "subdir") == platform) return &pkg;
    if (!first) first = &pkg;
  }
  return first;
}

// Reads sha256/md5/size of a conda package entry, validating each.
Status read_conda_digests(const YAML::Node& pkg, const std::string& path, PackageRef& ref) {
  struct Field {
    const char* key;
    size_t len;
    std::string* out;
  };
  for (const Field& f : {Field{"sha256", 64, &ref.sha256}, Field{"md5", 32, &ref.md5}}) {
    std::optional<std::string> v = scalar(pkg, f.key);
    if (!v) continue;
    std::optional<std::string> hex = lower_hex(*v, f.len);
    if (!hex) {
      return input_error(path, line_of(child(pkg, f.key)),
                         "package '" + ref.file_name + "': field '" + f.key + "' is not " +
                             std::to_string(f.len) + " hex digits: '" + printable(*v, 80) + "'");
    }
    *f.out = *hex;
  }
  if (auto size = scalar(pkg, "size")) {
    std::optional<int64_t> n = parse_int(*size);
    if (!n) {
      return input_error(
          path, line_of(child(pkg, "size")),
          "package '" + ref.file_name + "': field 'size' is not a byte count: '" + *size + "'");
    }
    ref.size = *n;
  }
  return Status::Ok();
}

Status read_conda(const YAML::Node& pkg, const std::string& location, const std::string& path,
                  const std::string& lock_dir, PackageRef& ref) {
  ref.kind = PackageKind::kConda;
  ref.line = line_of(pkg);
  ref.url = url_strip_fragment(resolve_location(location, lock_dir));
  ref.name = scalar(pkg, "name").value_or("");
  ref.version = scalar(pkg, "version").value_or("");
  ref.build = scalar(pkg, "build").value_or("");
  ref.subdir = scalar(pkg, "subdir").value_or("");
  fill_derived(ref);
  // Old rattler locks (v4) write the target platform as the subdir of noarch packages; the
  // URL's directory is where the file really lives.
  PackageRef by_url;
  by_url.url = ref.url;
  fill_derived(by_url);
  if (by_url.subdir == "noarch") ref.subdir = "noarch";
  if (!is_conda_archive(ref.file_name)) {
    return input_error(path, ref.line,
                       "conda package '" + location +
                           "' is not a .conda or .tar.bz2 archive (a source package?); "
                           "materializer installs built packages only");
  }
  return read_conda_digests(pkg, path, ref);
}

void read_pypi(const YAML::Node* pkg, const std::string& location, const std::string& lock_dir,
               int line, PackageRef& ref) {
  ref.kind = PackageKind::kPypi;
  ref.line = pkg ? line_of(*pkg) : line;
  // Kept verbatim apart from resolving local paths: a git URL's fragment is its commit.
  ref.url = resolve_location(location, lock_dir);
  if (pkg) {
    ref.name = scalar(*pkg, "name").value_or("");
    ref.version = scalar(*pkg, "version").value_or("");
    if (auto v = scalar(*pkg, "sha256")) ref.sha256 = lower_hex(*v, 64).value_or("");
    ref.requires_python = scalar(*pkg, "requires_python").value_or("");
  }
  classify_pypi_url(ref);
}

using PackageIndex = std::unordered_map<std::string, std::vector<YAML::Node>>;

std::string index_key(const std::string& kind, const std::string& location) {
  return kind + '\n' + location;
}

Result<PackageIndex> index_packages(const YAML::Node& root, const std::string& path) {
  PackageIndex index;
  const YAML::Node packages = child(root, "packages");
  if (!packages.IsDefined() || packages.IsNull()) return index;
  if (!packages.IsSequence()) {
    return input_error(path, line_of(packages), "field 'packages' must be a list");
  }
  for (const YAML::Node& pkg : packages) {
    // Entries of kinds we do not know are skipped: they only matter if referenced, and then
    // the reference fails with a message naming it.
    if (std::optional<Located> loc = locate(pkg)) {
      index[index_key(loc->kind, loc->location)].push_back(pkg);
    }
  }
  return index;
}

// Platforms the lock declares: v7's `platforms:` names, else every environment's keys.
std::vector<std::string> declared_platforms(const YAML::Node& root, const YAML::Node& envs) {
  std::vector<std::string> out;
  auto add = [&](const std::string& p) {
    for (const std::string& q : out) {
      if (q == p) return;
    }
    out.push_back(p);
  };
  const YAML::Node platforms = child(root, "platforms");
  if (is_seq(platforms)) {
    for (const YAML::Node& p : platforms) {
      if (auto name = scalar(p, "name")) add(*name);
    }
    return out;
  }
  for (const auto& env : envs) {
    const YAML::Node pkgs = child(env.second, "packages");
    if (!is_map(pkgs)) continue;
    for (const auto& kv : pkgs) add(kv.first.Scalar());
  }
  return out;
}

// The entries of environment `env` for `platform`, or an error naming what exists.
Result<YAML::Node> select_list(const YAML::Node& env, const LockSelection& sel,
                               const std::string& path) {
  const YAML::Node pkgs = child(env, "packages");
  if (!pkgs.IsDefined() || pkgs.IsNull()) return YAML::Node(YAML::NodeType::Sequence);
  if (!pkgs.IsMap()) {
    return input_error(path, line_of(pkgs),
                       "environment '" + sel.environment + "': field 'packages' must be a mapping");
  }
  const YAML::Node list = child(pkgs, sel.platform.c_str());
  if (list.IsDefined() && list.IsNull()) return YAML::Node(YAML::NodeType::Sequence);
  if (is_seq(list)) return list;
  if (list.IsDefined()) {
    return input_error(
        path, line_of(list),
        "environment '" + sel.environment + "', platform " + sel.platform + ": expected a list");
  }
  std::vector<std::string> have;
  for (const auto& kv : pkgs) have.push_back(kv.first.Scalar());
  if (have.empty()) return YAML::Node(YAML::NodeType::Sequence);
  return input_error(path, 0,
                     "environment '" + sel.environment + "' is not locked for " + sel.platform +
                         " (locked: " + join(have) + "); pass --platform " + have.front());
}

}  // namespace

Result<LockFile> parse_pixi(const YAML::Node& root, const std::string& path,
                            const std::string& lock_dir, const LockSelection& sel) {
  LockFile lock;
  lock.format = LockFormat::kPixi;
  lock.path = path;
  const YAML::Node version = child(root, "version");
  std::optional<int64_t> v =
      (version.IsDefined() && version.IsScalar()) ? parse_int(version.Scalar()) : std::nullopt;
  if (!v || *v < kMinVersion || *v > kMaxVersion) {
    std::string shown = (version.IsDefined() && version.IsScalar()) ? version.Scalar() : "?";
    return input_error(path, line_of(version),
                       "unsupported pixi.lock version " + shown +
                           ": supported 4, 5, 6, 7; re-lock with a current pixi");
  }
  lock.version = static_cast<int>(*v);

  const YAML::Node envs = child(root, "environments");
  if (!is_map(envs)) {
    return input_error(path, line_of(envs), "field 'environments' is missing or not a mapping");
  }
  for (const auto& kv : envs) lock.environments.push_back(kv.first.Scalar());
  lock.platforms = declared_platforms(root, envs);
  const YAML::Node env = child(envs, sel.environment.c_str());
  if (!env.IsDefined()) {
    return input_error(path, 0,
                       "environment '" + sel.environment + "' not found (available: " +
                           join(lock.environments) + "); pass --environment NAME");
  }
  if (!env.IsMap()) {
    return input_error(path, line_of(env),
                       "environment '" + sel.environment + "' must be a mapping");
  }
  MAT_ASSIGN_OR_RETURN(YAML::Node list, select_list(env, sel, path));
  MAT_ASSIGN_OR_RETURN(PackageIndex index, index_packages(root, path));
  if (const YAML::Node all = child(root, "packages"); is_seq(all)) {
    lock.entries = static_cast<int64_t>(all.size());
  }
  lock.entry_platforms = lock.platforms;

  for (const YAML::Node& item : list) {
    const int line = line_of(item);
    std::optional<Located> loc = locate(item);
    if (!loc) {
      return input_error(path, line, "environment entry must be `conda: <url>` or `pypi: <url>`");
    }
    if (loc->kind == "conda_source") {
      return input_error(path, line,
                         "'" + loc->location +
                             "' is a source package (built by pixi from source); materializer "
                             "installs built packages only");
    }
    auto it = index.find(index_key(loc->kind, loc->location));
    const YAML::Node* pkg =
        it == index.end() ? nullptr : pick(it->second, item, loc->location, sel.platform);
    PackageRef ref;
    if (loc->kind == "pypi") {
      // A dangling pypi reference still yields a kPypi entry: the driver refuses pypi entries
      // as a whole, and that is the more useful message.
      read_pypi(pkg, loc->location, lock_dir, line, ref);
    } else if (loc->kind == "conda") {
      if (!pkg) {
        return input_error(path, line,
                           "environment '" + sel.environment + "' (" + sel.platform +
                               ") refers to conda package '" + shown_url(loc->location, 200) +
                               "', which is not listed under 'packages:'");
      }
      MAT_RETURN_IF_ERROR(read_conda(*pkg, loc->location, path, lock_dir, ref));
    } else {
      return input_error(path, line, "unknown package kind '" + loc->kind + "'");
    }
    lock.packages.push_back(std::move(ref));
  }
  MAT_RETURN_IF_ERROR(check_hashes(lock.packages, path, "sha256 or md5 hash",
                                   "re-lock with pixi to record hashes"));
  return lock;
}

}  // namespace mat::lock_internal
