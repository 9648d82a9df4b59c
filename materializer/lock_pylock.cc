// pylock.toml (PEP 751), lock-version 1.x.
//
//   lock-version = "1.0"
//   requires-python = ">=3.10"            # optional; so are environments, default-groups
//   [[packages]]                          # or `packages = [{...}, ...]`
//   name, version?, marker?, requires-python?, index?
//   exactly one source: vcs = {...} | directory = {...} | archive = {...}
//                       | sdist = {...} and/or wheels = [{...}, ...]
//   file tables: {name?, url | path, size?, upload-time?, hashes = {sha256 = ...}}
//
// PEP 751 makes hashes mandatory for files; we require sha256 (the one digest we verify).
// `path` is relative to the lock's directory. Every package is `requested`: the lock has no
// notion of top-level packages, and installing a lock names all of its packages.
// Markers may use the PEP 751 variables `extras` and `dependency_groups`; they are kept as
// written (LockFile::default_groups carries the file's default-groups for evaluating them).
#include "materializer/base/text.h"
#include "materializer/base/url.h"
#include "materializer/lock_toml_internal.h"

namespace mat::lock_internal {
namespace {

// One file table (a wheel, the sdist, or an archive) as a candidate.
Status read_file_table(const toml::table& t, const TomlField& f, int line,
                       const std::string& lock_dir, WheelCandidate& out) {
  int here = toml_line(t) ? toml_line(t) : line;
  std::string name, url, rel;
  MAT_RETURN_IF_ERROR(toml_string(t, "name", f, here, name));
  MAT_RETURN_IF_ERROR(toml_string(t, "url", f, here, url));
  MAT_RETURN_IF_ERROR(toml_string(t, "path", f, here, rel));
  if (url.empty() && rel.empty()) return f.error(nullptr, here, "url", "is missing (nor 'path')");
  out.url = url.empty() ? resolve_location(rel, lock_dir) : url;
  out.file_name = name.empty() ? url_file_name(url.empty() ? rel : url) : name;
  MAT_RETURN_IF_ERROR(toml_int(t, "size", f, here, out.size));
  const toml::table* hashes = nullptr;
  MAT_RETURN_IF_ERROR(toml_table(t, "hashes", f, here, hashes));
  if (!hashes) return f.error(nullptr, here, "hashes", "is missing (PEP 751 requires hashes)");
  std::string sha;
  MAT_RETURN_IF_ERROR(toml_string(*hashes, "sha256", f.nested("hashes"), here, sha));
  if (sha.empty()) {
    return f.error(hashes, here, "hashes.sha256",
                   "is missing; materializer verifies sha256 only, re-lock with sha256 hashes");
  }
  std::optional<std::string> hex = lower_hex(sha, 64);
  if (!hex) {
    return f.error(hashes->get("sha256"), here, "hashes.sha256",
                   "is not 64 hex digits: '" + printable(sha, 80) + "'");
  }
  out.sha256 = *hex;
  return Status::Ok();
}

void set_single_file(const WheelCandidate& c, PackageRef& ref) {
  ref.url = c.url;
  ref.file_name = c.file_name;
  ref.sha256 = c.sha256;
  ref.size = c.size;
}

// vcs = {type, url | path, requested-revision?, commit-id, subdirectory?}: pip's spelling
// "<type>+<url>@<commit>" so the entry names exactly what was locked.
Status read_vcs(const toml::table& t, const TomlField& f, int line, const std::string& lock_dir,
                PackageRef& ref) {
  std::string type, url, rel, commit;
  MAT_RETURN_IF_ERROR(toml_string(t, "type", f, line, type, /*required=*/true));
  MAT_RETURN_IF_ERROR(toml_string(t, "url", f, line, url));
  MAT_RETURN_IF_ERROR(toml_string(t, "path", f, line, rel));
  MAT_RETURN_IF_ERROR(toml_string(t, "commit-id", f, line, commit));
  if (url.empty() && rel.empty()) return f.error(nullptr, line, "url", "is missing (nor 'path')");
  std::string loc = url.empty() ? resolve_location(rel, lock_dir) : url;
  ref.url = type + "+" + loc + (commit.empty() ? "" : "@" + commit);
  ref.file_name = url_file_name(loc);
  ref.source_kind = "vcs";
  return Status::Ok();
}

Status read_directory(const toml::table& t, const TomlField& f, int line,
                      const std::string& lock_dir, PackageRef& ref) {
  std::string rel;
  MAT_RETURN_IF_ERROR(toml_string(t, "path", f, line, rel, /*required=*/true));
  bool editable = false;
  MAT_RETURN_IF_ERROR(toml_bool(t, "editable", f, line, editable));
  ref.url = resolve_location(rel, lock_dir);
  ref.file_name = url_file_name(ref.url);
  if (ref.file_name.empty()) ref.file_name = ref.name;
  ref.source_kind = "directory";
  return Status::Ok();
}

Status read_package(const toml::table& t, size_t index, const std::string& path,
                    const std::string& lock_dir, PackageRef& ref) {
  ref.kind = PackageKind::kPypi;
  ref.line = toml_line(t);
  TomlField f{path, "packages[" + std::to_string(index) + "]", ""};
  MAT_RETURN_IF_ERROR(toml_string(t, "name", f, ref.line, ref.name, /*required=*/true));
  f.subject = "package '" + ref.name + "'";
  MAT_RETURN_IF_ERROR(toml_string(t, "version", f, ref.line, ref.version));
  MAT_RETURN_IF_ERROR(toml_string(t, "marker", f, ref.line, ref.marker));
  MAT_RETURN_IF_ERROR(toml_string(t, "requires-python", f, ref.line, ref.requires_python));
  MAT_RETURN_IF_ERROR(toml_string(t, "index", f, ref.line, ref.channel));

  const toml::table *vcs = nullptr, *dir = nullptr, *archive = nullptr, *sdist = nullptr;
  const toml::array* wheels = nullptr;
  MAT_RETURN_IF_ERROR(toml_table(t, "vcs", f, ref.line, vcs));
  MAT_RETURN_IF_ERROR(toml_table(t, "directory", f, ref.line, dir));
  MAT_RETURN_IF_ERROR(toml_table(t, "archive", f, ref.line, archive));
  MAT_RETURN_IF_ERROR(toml_table(t, "sdist", f, ref.line, sdist));
  MAT_RETURN_IF_ERROR(toml_array(t, "wheels", f, ref.line, wheels));
  int sources = (vcs != nullptr) + (dir != nullptr) + (archive != nullptr) +
                (sdist != nullptr || wheels != nullptr);
  if (sources == 0) {
    return input_error(path, ref.line,
                       f.subject + ": names no source (wheels, sdist, archive, vcs or directory)");
  }
  if (sources > 1) {
    return input_error(path, ref.line,
                       f.subject +
                           ": has more than one of vcs, directory, archive and "
                           "sdist/wheels (PEP 751 allows one)");
  }
  if (vcs) return read_vcs(*vcs, f.nested("vcs"), ref.line, lock_dir, ref);
  if (dir) return read_directory(*dir, f.nested("directory"), ref.line, lock_dir, ref);
  if (archive) {
    WheelCandidate c;
    MAT_RETURN_IF_ERROR(read_file_table(*archive, f.nested("archive"), ref.line, lock_dir, c));
    // A wheel given as a direct archive is still a wheel: offer it as the one candidate so the
    // driver can install it. Any other archive is a source tree.
    if (c.file_name.ends_with(".whl")) {
      ref.wheels.push_back(c);
    } else {
      ref.source_kind = "archive";
    }
    set_single_file(c, ref);
    return Status::Ok();
  }
  if (sdist) {
    WheelCandidate c;
    MAT_RETURN_IF_ERROR(read_file_table(*sdist, f.nested("sdist"), ref.line, lock_dir, c));
    ref.sdists.push_back(std::move(c));
  }
  for (size_t i = 0; wheels && i < wheels->size(); ++i) {
    const toml::node& n = *wheels->get(i);
    const toml::table* w = n.as_table();
    if (!w) return f.error(&n, ref.line, "wheels[" + std::to_string(i) + "]", "must be a table");
    WheelCandidate c;
    MAT_RETURN_IF_ERROR(read_file_table(*w, f.element("wheels", i), ref.line, lock_dir, c));
    ref.wheels.push_back(std::move(c));
  }
  // Only the sdist: the file is known, so name it (the driver reports it as a source dist).
  if (ref.wheels.empty() && !ref.sdists.empty()) ref.file_name = ref.sdists.front().file_name;
  return Status::Ok();
}

}  // namespace

Result<LockFile> parse_pylock(const toml::table& root, const std::string& path,
                              const std::string& lock_dir) {
  LockFile lock;
  lock.format = LockFormat::kPylock;
  lock.path = path;
  TomlField f{path, "", ""};
  std::string version;
  MAT_RETURN_IF_ERROR(toml_string(root, "lock-version", f, 0, version, /*required=*/true));
  // PEP 751: refuse an unknown major version; a newer minor version only adds fields.
  if (!(version == "1" || version.starts_with("1."))) {
    return input_error(path, toml_line(*root.get("lock-version")),
                       "unsupported pylock lock-version '" + printable(version, 80) +
                           "': supported 1.x; re-lock with a tool that writes PEP 751 1.0");
  }
  lock.version = 1;
  MAT_RETURN_IF_ERROR(toml_string(root, "requires-python", f, 0, lock.requires_python));
  MAT_RETURN_IF_ERROR(toml_strings(root, "environments", f, 0, lock.environment_markers));
  MAT_RETURN_IF_ERROR(toml_strings(root, "default-groups", f, 0, lock.default_groups));
  const toml::array* packages = nullptr;
  MAT_RETURN_IF_ERROR(toml_array(root, "packages", f, 0, packages));
  if (!packages) return f.error(nullptr, 0, "packages", "is missing");
  for (size_t i = 0; i < packages->size(); ++i) {
    const toml::node& n = *packages->get(i);
    const toml::table* t = n.as_table();
    if (!t) return f.error(&n, 0, "packages[" + std::to_string(i) + "]", "must be a table");
    PackageRef ref;
    MAT_RETURN_IF_ERROR(read_package(*t, i, path, lock_dir, ref));
    lock.packages.push_back(std::move(ref));
  }
  return lock;
}

}  // namespace mat::lock_internal
