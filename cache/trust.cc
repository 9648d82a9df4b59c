#include "cache/trust.h"

#include <fcntl.h>
#include <pwd.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <map>

namespace mat::cache {
namespace {

// "uid 1000 (alice)", or "uid 12345" when the uid has no name.
std::string who(uid_t uid) {
  std::string out = "uid " + std::to_string(uid);
  struct passwd pw;
  struct passwd* found = nullptr;
  char buf[4096];
  if (::getpwuid_r(uid, &pw, buf, sizeof buf, &found) == 0 && found && found->pw_name) {
    out += std::string(" (") + found->pw_name + ")";
  }
  return out;
}

std::string octal_mode(mode_t mode) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

bool trusted_owner(uid_t owner, uid_t euid) { return owner == euid || owner == 0; }

std::string owner_reason(const struct stat& st, uid_t euid) {
  if (trusted_owner(st.st_uid, euid)) return "";
  return "owned by " + who(st.st_uid) + ", not by " +
         (euid == 0 ? std::string("root") : "you (" + who(euid) + ") or root");
}

// Group write counts only when the group is not root's own (gid 0): a gid-0 object can be
// written by root-group members alone, who are root in all but name. Files extracted as root
// are gid 0 and keep a package's group write (cache/extract.cc), so a prefix made as root has
// conda's modes (many conda-forge packages ship 0664/0775 members).
std::string writable_reason(const struct stat& st) {
  const mode_t mode = st.st_mode;
  const bool g = (mode & S_IWGRP) != 0, o = (mode & S_IWOTH) != 0;
  if (!o && !(g && st.st_gid != 0)) return "";
  return std::string("writable by ") +
         (g && o ? "group and others"
          : g    ? "group"
                 : "others") +
         " (mode " + octal_mode(mode) + ")";
}

std::string join_reasons(const std::string& a, const std::string& b) {
  if (a.empty()) return b;
  if (b.empty()) return a;
  return a + ", and " + b;
}

// Single quotes unless the path is made of plain characters only.
std::string shell_quote(const std::string& s) {
  bool plain = !s.empty();
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '/' || c == '.' || c == '_' ||
          c == '-' || c == '+' || c == ',' || c == ':' || c == '@' || c == '%')) {
      plain = false;
    }
  }
  if (plain) return s;
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

// A directory on the way down, and what it is to the cache.
enum class Role { kAncestor, kStore };

// Opens `name` under `parent` as an O_PATH fd, never through a symlink; creates it first when
// `create` and it is missing. Checks it for `role`; a problem is appended to `problems`.
// Returns an invalid fd when the walk cannot go on below it (missing and !create, a symlink,
// not a directory). Errors: kIo, kNoSpace for other failures.
Result<UniqueFd> step(int parent, const std::string& name, const std::string& path, Role role,
                      bool create, uid_t euid, std::vector<TrustProblem>* problems) {
  constexpr int kFlags = O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
  int fd = ::openat(parent, name.c_str(), kFlags);
  if (fd < 0 && errno == ENOENT) {
    if (!create) return UniqueFd();
    // mkdirat never follows a symlink in the last component (EEXIST), and `parent` was
    // checked, so the new directory is where we think it is.
    if (::mkdirat(parent, name.c_str(), 0755) != 0 && errno != EEXIST) {
      return ErrnoStatus("mkdir " + path, errno);
    }
    fd = ::openat(parent, name.c_str(), kFlags);
  }
  if (fd < 0) {
    int err = errno;
    struct stat st;
    if ((err == ENOTDIR || err == ELOOP) &&
        ::fstatat(parent, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      if (S_ISLNK(st.st_mode)) {
        problems->push_back({path,
                             "is a symbolic link, and the cache's own directories must be real "
                             "directories (one who can change the link can move the cache)",
                             "replace the link by a directory, or point --cache-dir at the "
                             "real location"});
      } else {
        problems->push_back(
            {path, "is not a directory", "remove it (`rm " + shell_quote(path) + "`) and rerun"});
      }
      return UniqueFd();
    }
    return ErrnoStatus("open " + path, err);
  }
  UniqueFd dir(fd);
  struct stat st;
  if (::fstat(dir.get(), &st) != 0) return ErrnoStatus("stat " + path, errno);
  std::string why =
      role == Role::kAncestor ? distrust_ancestor_reason(st, euid) : distrust_reason(st, euid);
  if (!why.empty()) {
    problems->push_back({path, why, trust_fix(path, st, euid, role == Role::kAncestor)});
  }
  return dir;
}

std::vector<std::string> components(const std::string& path) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < path.size()) {
    size_t end = path.find('/', pos);
    if (end == std::string::npos) end = path.size();
    if (end > pos) out.push_back(path.substr(pos, end - pos));
    pos = end + 1;
  }
  return out;
}

}  // namespace

std::string distrust_reason(const struct stat& st, uid_t euid) {
  return join_reasons(owner_reason(st, euid), writable_reason(st));
}

std::string distrust_ancestor_reason(const struct stat& st, uid_t euid) {
  // Sticky (like /tmp): others may create names in it but not rename or remove ours; what we
  // made below it is checked as a store directory in turn.
  const bool sticky = S_ISDIR(st.st_mode) && (st.st_mode & S_ISVTX) != 0;
  return join_reasons(owner_reason(st, euid), sticky ? "" : writable_reason(st));
}

std::string trust_fix(const std::string& path, const struct stat& st, uid_t euid, bool ancestor) {
  const std::string quoted = shell_quote(path);
  std::string fix;
  if (!trusted_owner(st.st_uid, euid)) {
    if (ancestor) {
      return "use a --cache-dir outside " + quoted +
             " (its owner can rename or replace anything in it)";
    }
    fix = "`chown -R " + std::to_string(euid) + " " + quoted +
          "` if you trust everything in it, else use another --cache-dir";
  }
  if (!writable_reason(st).empty()) {
    std::string chmod = "`chmod go-w " + quoted + "`";
    fix = fix.empty() ? chmod : chmod + " and " + fix;
  }
  return fix;
}

Result<std::string> open_trusted_dirs(const std::string& root,
                                      const std::vector<std::string>& subdirs, uid_t euid,
                                      std::vector<TrustProblem>* problems,
                                      const std::vector<std::string>& optional_subdirs) {
  // The deepest part of `root` that exists, resolved: the check applies to the directories the
  // cache really lives in, and the store then uses that path, so a symlink on the way that
  // someone changes later does not move this run's cache.
  std::string existing = root;
  std::vector<std::string> missing;  // deepest first
  for (;;) {
    char* real = ::realpath(existing.c_str(), nullptr);
    if (real) {
      existing = real;
      std::free(real);
      break;
    }
    if (errno != ENOENT || existing == "/") return ErrnoStatus("resolve " + existing, errno);
    missing.push_back(base_name(existing));
    existing = dir_name(existing);
  }
  for (const auto& m : missing) {
    if (m == "..") {
      return InvalidInput("cache " + root +
                          ": '..' after a directory that does not exist; give the cache "
                          "directory without '..'");
    }
  }

  const size_t before = problems->size();
  auto ok_so_far = [&] { return problems->size() == before; };
  UniqueFd cur(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!cur.valid()) return ErrnoStatus("open /", errno);
  std::vector<std::string> comps = components(existing);
  const size_t depth = comps.size() + missing.size();  // of the root
  {
    struct stat st;
    if (::fstat(cur.get(), &st) != 0) return ErrnoStatus("stat /", errno);
    std::string why = depth == 0 ? distrust_reason(st, euid) : distrust_ancestor_reason(st, euid);
    if (!why.empty()) problems->push_back({"/", why, trust_fix("/", st, euid, depth > 0)});
  }
  std::string path;
  for (size_t i = 0; i < depth; ++i) {
    const bool exists = i < comps.size();
    const std::string& name = exists ? comps[i] : missing[missing.size() - 1 - (i - comps.size())];
    path += "/" + name;
    // Below a directory that failed, nothing is created; existing ones are still checked so
    // that one message lists every problem.
    MAT_ASSIGN_OR_RETURN(
        UniqueFd next, step(cur.get(), name, path, i + 1 == depth ? Role::kStore : Role::kAncestor,
                            /*create=*/!exists && ok_so_far(), euid, problems));
    if (!next.valid()) return path;
    cur = std::move(next);
  }
  const std::string real_root = path.empty() ? "/" : path;

  std::map<std::string, UniqueFd> opened;  // subdir -> fd, for its children
  for (const auto& sub : subdirs) {
    int parent = cur.get();
    std::string parent_rel = dir_name(sub);
    if (!parent_rel.empty()) {
      auto it = opened.find(parent_rel);
      if (it == opened.end()) continue;  // the parent could not be opened: reported already
      parent = it->second.get();
    }
    MAT_ASSIGN_OR_RETURN(UniqueFd fd, step(parent, base_name(sub), path_join(real_root, sub),
                                           Role::kStore, ok_so_far(), euid, problems));
    if (fd.valid()) opened.emplace(sub, std::move(fd));
  }
  for (const auto& sub : optional_subdirs) {
    auto it = opened.find(dir_name(sub));
    if (it == opened.end()) continue;
    // Absent (not ours to create) is fine; distrust is in `problems`.
    step(it->second.get(), base_name(sub), path_join(real_root, sub), Role::kStore, ok_so_far(),
         euid, problems)
        .status()
        .ignore();
  }
  return real_root;
}

Result<UniqueFd> create_new_file(const std::string& path, mode_t mode) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
  if (!fd.valid()) return ErrnoStatus("create " + path, errno);
  return fd;
}

}  // namespace mat::cache
