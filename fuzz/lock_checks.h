// fuzz/lock_checks.h: what every lock-parser target does and checks. Each target feeds its input
// to the binary's own entry point, parse_lock (materializer/lock.h: what load_lock runs on a
// file's bytes), with the binary's limits (the default --max-lock-size, kMaxDocDepth checked
// before yaml-cpp or toml++ see the text) and its default file policy (local files only in the
// lock's own folder); the per-format targets differ by seeds, dictionaries and selections.
// On top of "no crash, no exception, no sanitizer report" it checks the contract in lock.h.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "fuzz/fuzz_util.h"
#include "materializer/local_files.h"
#include "materializer/lock.h"

namespace mat::fuzz {

inline bool is_lower_hex(const std::string& s, size_t n) {
  if (s.size() != n) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// A failed parse is the user's input (kInvalidInput) or a `-r` include that cannot be read
// (kNotFound, kIo); kInternal or any other code would be a bug. A successful one keeps the
// documented field formats: digests lowercase hex of the right length (or empty), and no conda
// entry without a digest ("we never install unverified bytes").
inline void check_lock_result(const Result<LockFile>& r) {
  if (!r.ok()) {
    Code c = r.status().code();
    MAT_FUZZ_CHECK(c == Code::kInvalidInput || c == Code::kNotFound || c == Code::kIo,
                   r.status().to_string());
    MAT_FUZZ_CHECK(!r.status().message().empty(), "an error without a message");
    return;
  }
  for (const PackageRef& p : r->packages) {
    MAT_FUZZ_CHECK(p.sha256.empty() || is_lower_hex(p.sha256, 64), p.sha256);
    MAT_FUZZ_CHECK(p.md5.empty() || is_lower_hex(p.md5, 32), p.md5);
    if (p.kind == PackageKind::kConda) {
      MAT_FUZZ_CHECK(!p.sha256.empty() || !p.md5.empty(), "conda entry without a digest: " + p.url);
    }
    for (const auto* list : {&p.wheels, &p.sdists}) {
      for (const WheelCandidate& w : *list) {
        MAT_FUZZ_CHECK(w.sha256.empty() || is_lower_hex(w.sha256, 64), w.sha256);
      }
    }
    for (const std::string& h : p.allowed_sha256) MAT_FUZZ_CHECK(is_lower_hex(h, 64), h);
  }
  (void)lock_format_label(*r);
}

// The input written as scratch_dir()/`name` (so requirements `-r` includes and relative paths
// resolve beside it, as for a real lock), then parse_lock once per selection, each result
// checked. The default file policy is made once, for that lock path.
inline void fuzz_parse_lock(std::string_view input, const std::string& name,
                            std::vector<LockSelection> sels) {
  const std::string path = scratch_file(name, input);
  static const LocalFiles files = [&] {
    Result<LocalFiles> f = LocalFiles::make(path, {});
    if (!f.ok()) fail(__FILE__, __LINE__, "LocalFiles::make", f.status().to_string());
    return *f;
  }();
  const std::string content(input);
  for (LockSelection& sel : sels) {
    sel.local_files = &files;
    check_lock_result(parse_lock(content, path, sel));
  }
}

inline LockSelection for_platform(const char* platform) {
  LockSelection sel;
  sel.platform = platform;
  return sel;
}

}  // namespace mat::fuzz
