#include "materializer/stamp.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "materializer/base/beneath.h"
#include "materializer/base/fs.h"
#include "materializer/base/hash.h"
#include "materializer/base/json.h"
#include "materializer/link.h"

namespace mat {

std::string install_input_hash(const std::string& lock_bytes, const InstallOptions& o) {
  Hasher h(HashKind::kSha256);
  auto field = [&](const std::string& s) {
    h.update(s);
    h.update("\0", 1);
  };
  field("materializer-stamp-v2");
  field(lock_bytes);
  field(o.selection.platform);
  field(o.selection.environment);
  field(o.python_version);
  field(o.python_path);
  if (!o.python_path.empty()) {
    // The interpreter the path names now: its real path and identity (an upgrade that moves
    // python3 -> python3.12 keeps the path the user typed). One realpath and one stat.
    char* real = ::realpath(o.python_path.c_str(), nullptr);
    struct stat st {};
    if (real != nullptr && ::stat(real, &st) == 0) {
      field(real);
      field(std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + ":" +
            std::to_string(st.st_size) + ":" + std::to_string(st.st_mtim.tv_sec) + "." +
            std::to_string(st.st_mtim.tv_nsec));
    } else {
      field("?");
    }
    std::free(real);
  }
  field(o.prefix);
  for (const auto& v : {o.index.index_urls, o.index.find_links, o.extra_index_urls, o.extras,
                        o.groups, o.allow_file_urls}) {
    field(std::to_string(v.size()));
    for (const auto& s : v) field(s);
  }
  field(link_mode_name(o.link_mode));
  field(o.compile ? "compile" : "no-compile");
  return h.hex();
}

// Included requirements files are read in full by the lock reader; none is near this.
constexpr int64_t kMaxInputBytes = int64_t{64} << 20;

bool stamp_matches(const std::string& prefix, const std::string& input_hash) {
  if (path_exists(path_join(prefix, kIncompleteMarkerPath))) return false;
  auto text = read_file(path_join(prefix, kStampPath));
  if (!text.ok()) return false;
  // Anyone who could write the prefix could write this file: bounded like any other input. A
  // stamp lists a record per package (~50 bytes): 16 MiB is far beyond any environment.
  Result<nlohmann::json> parsed =
      parse_json(*text, kStampPath, DocLimits{int64_t{16} << 20}, Code::kCorrupt);
  if (!parsed.ok()) return false;
  const nlohmann::json& j = *parsed;
  if (!j.is_object() || j.value("input_hash", "") != input_hash) return false;
  const auto paths = j.find("paths");
  if (paths == j.end()) return false;
  if (!paths->is_array()) return false;
  for (const auto& p : *paths) {
    if (!p.is_string() || ::access(path_join(prefix, p.get<std::string>()).c_str(), F_OK) != 0) {
      return false;
    }
  }
  // Files the lock included: their bytes decided the result as much as the lock's did.
  const auto inputs = j.find("inputs");
  if (inputs != j.end()) {
    if (!inputs->is_array()) return false;
    for (const auto& in : *inputs) {
      if (!in.is_object() || !in.value("path", nlohmann::json()).is_string() ||
          !in.value("sha256", nlohmann::json()).is_string()) {
        return false;
      }
      // The stamp is as hostile as the prefix: hash regular files of lock size only (never
      // a FIFO that blocks or /dev/zero that never ends).
      const std::string path = in["path"].get<std::string>();
      struct stat st {};
      if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > kMaxInputBytes) {
        return false;
      }
      Result<std::string> h = hash_file(path, HashKind::kSha256);
      if (!h.ok() || *h != in["sha256"].get<std::string>()) return false;
    }
  }
  return true;
}

Status write_stamp(const std::string& prefix, const std::string& input_hash,
                   const std::vector<std::string>& paths, const std::vector<InputFile>& inputs) {
  nlohmann::json j = {{"version", 1}, {"input_hash", input_hash}, {"paths", paths}};
  if (!inputs.empty()) {
    nlohmann::json arr = nlohmann::json::array();
    for (const InputFile& f : inputs) arr.push_back({{"path", f.path}, {"sha256", f.sha256}});
    j["inputs"] = std::move(arr);
  }
  MAT_ASSIGN_OR_RETURN(Root root, Root::open(prefix, false, "the prefix"));
  return root.write_file_atomic(kStampPath, dump_json(j, 1) + "\n", 0644, posix_fs());
}

Status remove_stamp(const std::string& prefix) {
  MAT_ASSIGN_OR_RETURN(Root root, Root::open(prefix, false, "the prefix"));
  return root.remove(kStampPath);
}

Result<UniqueFd> lock_prefix(const Root& root, const std::function<void()>& on_wait, int* swept) {
  auto [dir, name] = split_parent(kPrefixLockPath);
  MAT_ASSIGN_OR_RETURN(BeneathDir meta, root.dir(dir));
  const std::string shown = path_join(root.path(), kPrefixLockPath);
  UniqueFd fd(::openat(meta.fd.get(), std::string(name).c_str(),
                       O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd.valid()) return ErrnoStatus(shown + ": open", errno);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return Status(Code::kIo, shown + ": not a regular file; remove it and rerun");
  }
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK) return ErrnoStatus(shown + ": lock", errno);
    if (on_wait) on_wait();
    while (::flock(fd.get(), LOCK_EX) != 0) {
      if (errno != EINTR) return ErrnoStatus(shown + ": lock", errno);
    }
  }
  MAT_ASSIGN_OR_RETURN(int n, sweep_temp_files_at(meta.fd.get(), path_join(root.path(), dir)));
  if (swept) *swept = n;
  return fd;
}

}  // namespace mat
