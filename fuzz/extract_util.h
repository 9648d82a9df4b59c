// fuzz/extract_util.h: the archive-extraction targets' shared harness (cache/extract.h).
//
// The input is written to <scratch>/in/<name> and extracted into <scratch>/a/b/out, an empty
// directory made afresh each time. After every extraction, whatever its outcome:
//   - nothing was written outside `out`: <scratch>/in, <scratch>/a, <scratch>/a/b and
//     <scratch> hold only what the harness put there (a member escaping by "..", an absolute
//     name, or a link followed on the way would land in one of them);
//   - a failure is kCorrupt or kInvalidInput (a damaged or hostile archive), never kInternal,
//     kIo or anything else (kNoSpace only when the harness's own cap on bytes written, CappedFs,
//     was reached: tmpfs is memory, and the current main has no expansion limit);
// and after a success:
//   - every symlink the manifest lists stays inside the package root;
//   - the manifest survives its JSON round trip (so every name is valid UTF-8);
//   - every path of the manifest exists in `out`, with the type listed.
#pragma once

#include <dirent.h>
#include <sys/stat.h>
#include <tbb/task_arena.h>

#include <atomic>
#include <clocale>
#include <cstring>
#include <set>
#include <string>

#include "cache/extract.h"
#include "cache/manifest.h"
#include "fuzz/fuzz_util.h"

namespace mat::fuzz {

// posix_fs() with a cap on the bytes written per extraction (kNoSpace past it). Thread-safe, as
// Fs implementations must be (big wheels are extracted by several readers at once).
class CappedFs : public Fs {
 public:
  static constexpr int64_t kCap = int64_t{64} << 20;
  void reset() {
    written_ = 0;
    hit_ = false;
  }
  bool hit() const { return hit_; }
  Status write_all(int fd, const void* data, size_t len, const std::string& what) override {
    if (written_.fetch_add(static_cast<int64_t>(len)) + static_cast<int64_t>(len) > kCap) {
      hit_ = true;
      return NoSpace(what + ": the fuzz harness's cap of 64 MB written per input");
    }
    return posix_fs().write_all(fd, data, len, what);
  }

 private:
  std::atomic<int64_t> written_{0};
  std::atomic<bool> hit_{false};
};

inline CappedFs& capped_fs() {
  static CappedFs fs;
  return fs;
}

struct ExtractPaths {
  std::string archive, out;
};

inline void extract_init() {
  // As main() does: pax names are decoded into the process locale (cache/extract.h).
  if (std::setlocale(LC_CTYPE, "C.UTF-8") == nullptr) std::setlocale(LC_CTYPE, "en_US.UTF-8");
}

// Names in `dir` other than "." and "..".
inline std::set<std::string> list_dir(const std::string& dir) {
  std::set<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return names;
  while (dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) {
      names.insert(e->d_name);
    }
  }
  ::closedir(d);
  return names;
}

// Writes the input as <scratch>/in/<name> and makes an empty <scratch>/a/b/<out>.
inline ExtractPaths prepare_extract(std::string_view input, const std::string& name,
                                    const std::string& out = "out") {
  const std::string& s = scratch_dir();
  static const bool dirs = [&] {
    for (const char* d : {"/in", "/a", "/a/b"}) ::mkdir((s + d).c_str(), 0755);
    return true;
  }();
  (void)dirs;
  ExtractPaths p{s + "/in/" + name, s + "/a/b/" + out};
  write_whole(p.archive, input);
  remove_all(p.out).ignore();
  if (::mkdir(p.out.c_str(), 0755) != 0) fail(__FILE__, __LINE__, "mkdir", p.out);
  return p;
}

// The containment check: only the harness's own entries exist around `out` dirs.
inline void check_nothing_outside(const std::set<std::string>& outs) {
  const std::string& s = scratch_dir();
  for (const auto& name : list_dir(s + "/a/b")) {
    MAT_FUZZ_CHECK(outs.count(name) == 1, "written outside the target: a/b/" + name);
  }
  for (const auto& [dir, allowed] :
       {std::pair<std::string, std::set<std::string>>{"/a", {"b"}}, {"", {"in", "a"}}}) {
    for (const auto& name : list_dir(s + dir)) {
      MAT_FUZZ_CHECK(allowed.count(name) == 1,
                     "written outside the target: " + s + dir + "/" + name);
    }
  }
}

inline void check_extract_result(const Result<cache::Manifest>& r, const std::string& out) {
  if (!r.ok()) {
    Code c = r.status().code();
    MAT_FUZZ_CHECK(c == Code::kCorrupt || c == Code::kInvalidInput ||
                       (c == Code::kNoSpace && capped_fs().hit()),
                   r.status().to_string());
    return;
  }
  const cache::Manifest& m = *r;
  for (const auto& [path, e] : m) {
    struct stat st;
    MAT_FUZZ_CHECK(::lstat((out + "/" + path).c_str(), &st) == 0, "listed but missing: " + path);
    switch (e.type) {
      case cache::ManifestEntry::Type::kFile:
        MAT_FUZZ_CHECK(S_ISREG(st.st_mode) && st.st_size == e.size, "not the file listed: " + path);
        break;
      case cache::ManifestEntry::Type::kDir:
        MAT_FUZZ_CHECK(S_ISDIR(st.st_mode), "not a directory: " + path);
        break;
      case cache::ManifestEntry::Type::kSymlink:
        MAT_FUZZ_CHECK(S_ISLNK(st.st_mode), "not a symlink: " + path);
        MAT_FUZZ_CHECK(cache::symlink_stays_inside(m, path, e.target),
                       "symlink escapes: " + path + " -> " + e.target);
        break;
    }
  }
  const cache::Key key{HashKind::kSha256, std::string(64, '0')};
  Result<cache::Manifest> again =
      cache::parse_manifest(cache::manifest_to_json(key, m), "manifest.json");
  MAT_FUZZ_CHECK(again.ok() && *again == m, "manifest JSON round trip");
}

// Extractions run in an arena of one thread: the bzip2 and zstd readers then decode on the
// calling thread and enqueue no helper that would outlive the call (their concurrency is
// fuzzed by the bz2 and zstd_readahead targets, which wait for their helpers), so every
// execution is deterministic and LeakSanitizer sees everything.
inline tbb::task_arena& serial_arena() {
  static tbb::task_arena arena(1);
  return arena;
}

// One extraction from a file, with every check above.
inline void fuzz_extract_file(std::string_view input, const std::string& name,
                              cache::ArchiveFormat f) {
  static cache::ExtractScratch scratch;
  ExtractPaths p = prepare_extract(input, name);
  capped_fs().reset();
  Result<cache::Manifest> r = Internal("not run");
  serial_arena().execute(
      [&] { r = cache::extract_archive(p.archive, f, p.out, capped_fs(), scratch); });
  check_nothing_outside({"out"});
  check_extract_result(r, p.out);
}

}  // namespace mat::fuzz
