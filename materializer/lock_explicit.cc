// @EXPLICIT files (`conda list --explicit`, conda-lock's rendered per-platform locks).
//
// Grammar, as conda and rattler read it: lines starting with '#' are comments, except that
// `# platform: <subdir>` names the file's platform; one line is `@EXPLICIT`; every other
// non-empty line after it is a package URL whose fragment is the archive hash: 32 hex digits
// (md5), 64 hex digits or `sha256:<64 hex>` (sha256). rattler (explicit_environment_spec.rs)
// accepts exactly these three forms, and conda's own writer emits `#<md5>`.
#include <cctype>
#include <string_view>

#include "materializer/base/text.h"
#include "materializer/base/url.h"
#include "materializer/lock_internal.h"

namespace mat::lock_internal {
namespace {

std::string_view trim_view(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// Splits `content` into lines (without "\n" or "\r\n").
std::vector<std::string_view> split_lines(std::string_view content) {
  std::vector<std::string_view> lines;
  size_t i = 0;
  while (i < content.size()) {
    size_t nl = content.find('\n', i);
    if (nl == std::string_view::npos) nl = content.size();
    lines.push_back(content.substr(i, nl - i));
    i = nl + 1;
  }
  return lines;
}

// Sets ref.sha256 / ref.md5 from a URL fragment. Returns false if the fragment is not one of
// the accepted forms.
bool set_hash_from_fragment(std::string_view frag, PackageRef& ref) {
  if (frag.starts_with("sha256:")) {
    auto h = lower_hex(frag.substr(7), 64);
    if (h) ref.sha256 = *h;
    return h.has_value();
  }
  if (auto h = lower_hex(frag, 64)) {
    ref.sha256 = *h;
    return true;
  }
  if (auto h = lower_hex(frag, 32)) {
    ref.md5 = *h;
    return true;
  }
  return false;
}

// Parses one package line (already trimmed, not a comment) into `ref`.
Status parse_entry(std::string_view line, int line_no, const std::string& path,
                   const std::string& lock_dir, PackageRef& ref) {
  size_t hash_pos = line.find('#');
  std::string_view location = line.substr(0, hash_pos);
  bool is_path =
      location.starts_with("/") || location.starts_with("./") || location.starts_with("../");
  if (!has_url_scheme(location) && !is_path) {
    return input_error(path, line_no,
                       "not a package URL: '" + std::string(line) +
                           "'; @EXPLICIT files list one package URL per line");
  }
  ref.url = resolve_location(std::string(location), lock_dir);
  ref.line = line_no;
  fill_derived(ref);
  if (!is_conda_archive(ref.file_name)) {
    return input_error(path, line_no,
                       "'" + std::string(location) + "' does not name a .conda or .tar.bz2 file");
  }
  if (hash_pos != std::string_view::npos &&
      !set_hash_from_fragment(line.substr(hash_pos + 1), ref)) {
    return input_error(path, line_no,
                       "malformed hash fragment '#" + printable(line.substr(hash_pos + 1), 80) +
                           "': expected #<32 hex md5>, #<64 hex sha256> or #sha256:<64 hex>");
  }
  return Status::Ok();
}

}  // namespace

Result<LockFile> parse_explicit(std::string_view content, const std::string& path,
                                const std::string& lock_dir, const LockSelection& sel) {
  LockFile lock;
  lock.format = LockFormat::kExplicit;
  lock.path = path;
  std::string declared;  // from `# platform: X`
  int declared_line = 0;
  bool seen_marker = false;
  std::vector<PackageRef> all;
  std::vector<std::string_view> lines = split_lines(content);
  for (size_t i = 0; i < lines.size(); ++i) {
    const int line_no = static_cast<int>(i) + 1;
    std::string_view line = trim_view(lines[i]);
    if (line.empty()) continue;
    if (line[0] == '#') {
      std::string_view c = trim_view(line.substr(1));
      if (c.starts_with("platform:")) {
        declared = std::string(trim_view(c.substr(9)));
        declared_line = line_no;
      }
      continue;
    }
    if (line == "@EXPLICIT") {
      seen_marker = true;
      continue;
    }
    if (!seen_marker) {
      return input_error(path, line_no,
                         "unexpected line before @EXPLICIT: '" + std::string(line) +
                             "'; only comments may precede the @EXPLICIT line");
    }
    PackageRef ref;
    MAT_RETURN_IF_ERROR(parse_entry(line, line_no, path, lock_dir, ref));
    ++lock.entries;
    note_platform(lock, ref.subdir);
    all.push_back(std::move(ref));
  }

  if (!declared.empty()) {
    lock.platforms.push_back(declared);
    if (declared != sel.platform) {
      return input_error(path, declared_line,
                         "lock is for " + printable(declared, 80) + ", target is " +
                             printable(sel.platform, 80) + "; pass --platform " +
                             printable(declared, 80));
    }
    lock.packages = std::move(all);
  } else {
    // No header: the URL's subdir is the only platform evidence. Entries of another subdir
    // are skipped rather than fatal, since such a file may serve several platforms; entries
    // whose URL names no subdir (a plain folder of packages) are kept, as micromamba keeps
    // them: an explicit file is written for one platform (`conda list --explicit`).
    for (PackageRef& r : all) {
      if (r.subdir.empty() || r.subdir == sel.platform || r.subdir == "noarch") {
        lock.packages.push_back(std::move(r));
      }
    }
  }
  MAT_RETURN_IF_ERROR(check_hashes(lock.packages, path, "md5 or sha256 fragment",
                                   "regenerate with `conda list --explicit --md5` or conda-lock"));
  return lock;
}

}  // namespace mat::lock_internal
