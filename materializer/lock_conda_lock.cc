// conda-lock.yml, version 1 (the unified multi-platform lock written by conda-lock >= 1.0).
//
//   version: 1                 # anywhere in the mapping, often last in older files
//   metadata: {platforms: [...], channels: [name | {url: name}], ...}
//   package:
//   - {name, version, manager: conda|pip, platform, url, hash: {md5?, sha256?},
//      category?, optional?, dependencies?}
//
// Only entries whose `platform` is the target are read (and validated): a broken entry for
// another platform should not stop this one.
#include "materializer/base/text.h"
#include "materializer/base/url.h"
#include "materializer/lock_internal.h"

namespace mat::lock_internal {
namespace {

// Reads the `hash:` mapping of a conda entry. Malformed values are errors naming the field.
Status read_conda_hashes(const YAML::Node& entry, const std::string& path, PackageRef& ref) {
  const YAML::Node hash = child(entry, "hash");
  if (!hash.IsDefined() || hash.IsNull()) return Status::Ok();
  if (!hash.IsMap()) {
    return input_error(path, line_of(hash),
                       "package '" + ref.name + "': field 'hash' must be a mapping");
  }
  struct Field {
    const char* key;
    size_t len;
    std::string* out;
  };
  for (const Field& f : {Field{"md5", 32, &ref.md5}, Field{"sha256", 64, &ref.sha256}}) {
    std::optional<std::string> v = scalar(hash, f.key);
    if (!v) continue;
    std::optional<std::string> hex = lower_hex(*v, f.len);
    if (!hex) {
      return input_error(path, line_of(child(hash, f.key)),
                         "package '" + ref.name + "': field 'hash." + f.key + "' is not " +
                             std::to_string(f.len) + " hex digits: '" + printable(*v, 80) + "'");
    }
    *f.out = *hex;
  }
  return Status::Ok();
}

// Builds a PackageRef from one selected `package:` entry.
Status read_entry(const YAML::Node& entry, const std::string& path, PackageRef& ref) {
  ref.line = line_of(entry);
  ref.name = scalar(entry, "name").value_or("");
  ref.version = scalar(entry, "version").value_or("");
  std::string subject = ref.name.empty() ? "package entry" : "package '" + ref.name + "'";
  std::string manager = scalar(entry, "manager").value_or("conda");
  if (manager == "pip") {
    ref.kind = PackageKind::kPypi;
  } else if (manager != "conda") {
    return input_error(
        path, ref.line,
        subject + ": unknown manager '" + printable(manager, 80) + "' (expected conda or pip)");
  }
  std::optional<std::string> url = scalar(entry, "url");
  if (!url || url->empty())
    return input_error(path, ref.line, subject + ": field 'url' is missing");
  if (ref.kind == PackageKind::kPypi) {
    // pip entries are refused by the driver as a whole; their hash may legitimately be a git
    // commit id (git+https URLs), so keep a sha256 only when it is one. The URL stays verbatim:
    // a git URL's fragment or @rev is its commit.
    ref.url = *url;
    if (auto v = scalar(child(entry, "hash"), "sha256"))
      ref.sha256 = lower_hex(*v, 64).value_or("");
    fill_derived(ref);
    classify_pypi_url(ref);
    return Status::Ok();
  }
  ref.url = url_strip_fragment(*url);
  MAT_RETURN_IF_ERROR(read_conda_hashes(entry, path, ref));
  fill_derived(ref);
  return Status::Ok();
}

}  // namespace

Result<LockFile> parse_conda_lock(const YAML::Node& root, const std::string& path,
                                  const LockSelection& sel) {
  LockFile lock;
  lock.format = LockFormat::kCondaLockV1;
  lock.path = path;
  const YAML::Node version = child(root, "version");
  if (!version.IsDefined()) {
    return input_error(path, 0, "conda-lock file has no 'version' key (expected version: 1)");
  }
  std::optional<int64_t> v = version.IsScalar() ? parse_int(version.Scalar()) : std::nullopt;
  if (!v || *v != 1) {
    return input_error(path, line_of(version),
                       "unsupported conda-lock version " +
                           (version.IsScalar() ? version.Scalar() : std::string("?")) +
                           ": supported 1; re-lock with a conda-lock that writes version 1");
  }
  lock.version = 1;
  const YAML::Node platforms = child(child(root, "metadata"), "platforms");
  if (is_seq(platforms)) {
    for (const YAML::Node& p : platforms) {
      if (p.IsScalar()) lock.platforms.push_back(p.Scalar());
    }
  }
  const YAML::Node packages = child(root, "package");
  if (!packages.IsDefined() || packages.IsNull())
    return lock;  // `package: []` written as `package:` (empty lock)
  if (!packages.IsSequence()) {
    return input_error(path, line_of(packages), "field 'package' must be a list");
  }
  for (const YAML::Node& entry : packages) {
    if (!entry.IsMap()) {
      return input_error(path, line_of(entry), "package entry must be a mapping");
    }
    std::optional<std::string> platform = scalar(entry, "platform");
    if (!platform) {
      return input_error(path, line_of(entry),
                         "package '" + printable(scalar(entry, "name").value_or("?")) +
                             "': field 'platform' is missing");
    }
    ++lock.entries;
    note_platform(lock, *platform);
    if (*platform != sel.platform) continue;
    PackageRef ref;
    MAT_RETURN_IF_ERROR(read_entry(entry, path, ref));
    lock.packages.push_back(std::move(ref));
  }
  if (lock.packages.empty() && !lock.platforms.empty()) {
    bool declared = false;
    for (const std::string& p : lock.platforms) declared = declared || p == sel.platform;
    if (!declared) {
      std::string list;
      for (const std::string& p : lock.platforms) list += (list.empty() ? "" : ", ") + p;
      return input_error(path, 0,
                         "lock has no packages for " + sel.platform + " (locked platforms: " +
                             list + "); pass --platform " + lock.platforms.front());
    }
  }
  MAT_RETURN_IF_ERROR(check_hashes(lock.packages, path, "sha256 or md5 hash",
                                   "re-lock with conda-lock to record hashes"));
  return lock;
}

}  // namespace mat::lock_internal
