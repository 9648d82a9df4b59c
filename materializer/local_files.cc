#include "materializer/local_files.h"

#include <sys/stat.h>

#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdlib>

#include "materializer/base/fs.h"
#include "materializer/base/text.h"
#include "materializer/base/url.h"

namespace mat {
namespace {

// realpath(3), or "" with errno set.
std::string real_path(const std::string& p) {
  char buf[PATH_MAX];
  if (::realpath(p.c_str(), buf) == nullptr) return "";
  return buf;
}

// The path the kernel would open: realpath of the deepest existing ancestor, then the missing
// rest as written. "" if the missing rest has "." or ".." (the kernel would fail on it too,
// unless the folders appear meanwhile).
std::string resolve(const std::string& abs) {
  std::string head = abs;  // not normalised lexically: ".." after a symlink is the kernel's
  std::string tail;
  for (;;) {
    std::string real = real_path(head);
    if (!real.empty()) return tail.empty() ? real : path_join(real, tail);
    if (errno != ENOENT && errno != ENOTDIR) return "";
    size_t slash = head.rfind('/');
    if (slash == std::string::npos || head == "/") return "";
    std::string last = head.substr(slash + 1);
    if (last == "." || last == "..") return "";
    if (!last.empty()) tail = tail.empty() ? last : last + "/" + tail;
    head = slash == 0 ? "/" : head.substr(0, slash);
  }
}

bool inside(const std::string& path, const std::string& root) {
  if (root == "/") return true;
  return path == root || (path.starts_with(root) && path[root.size()] == '/');
}

}  // namespace

Result<LocalFiles> LocalFiles::make(const std::string& lock_path,
                                    const std::vector<std::string>& allowed_dirs) {
  LocalFiles out;
  for (const std::string& d : allowed_dirs) {
    std::string real = real_path(absolute_path(d));
    struct stat st {};
    if (real.empty() || ::stat(real.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return InvalidInput("--allow-file-urls " + printable(d) + ": not an existing directory");
    }
    out.roots_.push_back(real);
  }
  // The lock's own folder, when the lock is a regular file (not a pipe or a device). The folder
  // is the one its relative paths are resolved against: that of the path as given.
  struct stat st {};
  if (::stat(lock_path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
    std::string dir = dir_name(absolute_path(lock_path));
    std::string real = real_path(dir.empty() ? "/" : dir);
    if (!real.empty()) out.roots_.push_back(real);
  }
  return out;
}

LocalFiles LocalFiles::anywhere() {
  LocalFiles out;
  out.anywhere_ = true;
  return out;
}

Result<std::string> LocalFiles::resolve_and_check(const std::string& path,
                                                  const std::string& shown) const {
  const std::string hint =
      "; pass --allow-file-urls DIR to allow the folder that holds it (by default only the "
      "lock's own folder is allowed)";
  if (path.empty() || path[0] != '/') {
    return InvalidInput(shown + ": not a local absolute path" + hint);
  }
  std::string resolved = resolve(path);
  if (resolved.empty()) {
    return InvalidInput(shown + ": cannot be resolved to a path without '..'" + hint);
  }
  if (anywhere_) return resolved;
  for (const std::string& root : roots_) {
    if (inside(resolved, root)) return resolved;
  }
  std::string allowed;
  for (const std::string& r : roots_) allowed += (allowed.empty() ? "" : ", ") + printable(r);
  return InvalidInput(shown + ": local file outside the allowed folders (" +
                      (allowed.empty() ? std::string("none: the lock is not a local file")
                                       : allowed) +
                      ")" + hint);
}

Result<std::string> LocalFiles::check_url(std::string_view url) const {
  const std::string shown = shown_url(url, 200);
  std::string path = file_url_to_path(url);
  if (path.empty()) {
    return InvalidInput(shown + ": not a local file URL (file:///path; no host)");
  }
  MAT_ASSIGN_OR_RETURN(std::string resolved, resolve_and_check(path, shown));
  // libcurl removes "." and ".." segments lexically, then decodes, then the kernel resolves
  // symlinks as realpath did. A URL without dot segments (literal or encoded) and without
  // encoded slashes is therefore opened as the resolved path and is kept as written, so
  // reports and records show what the lock says; any other is replaced by the URL of the
  // resolved path.
  std::string lower(url.substr(0, url.find_first_of("?#")));
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  bool plain = lower.find("%2e") == std::string::npos && lower.find("%2f") == std::string::npos;
  for (size_t i = 0; plain && i < lower.size();) {
    size_t j = lower.find('/', i);
    if (j == std::string::npos) j = lower.size();
    std::string_view seg(lower.data() + i, j - i);
    plain = seg != "." && seg != "..";
    i = j + 1;
  }
  if (plain) return std::string(url);
  return path_to_file_url(resolved);
}

Result<std::string> LocalFiles::check_path(const std::string& path) const {
  return resolve_and_check(path, printable(path));
}

}  // namespace mat
