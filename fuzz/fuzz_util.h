// fuzz/fuzz_util.h: what the fuzz targets share. Each target is one `<name>_fuzz.cc` defining
// LLVMFuzzerTestOneInput (and, if it needs one, LLVMFuzzerInitialize); it is built as a libFuzzer
// binary by the `fuzz` preset and, in every other build, linked into `mat_fuzz_replay`, which
// runs the committed seed corpus (tests/fuzz_corpus/<name>/) as a plain CTest test.
//
// Targets only call project functions (public or *_internal.h); nothing here reaches into a
// parser. Parsers that read files get the input through a per-process scratch directory on
// tmpfs (scratch_dir()), reused across executions so that one execution costs a few system
// calls, not a directory tree.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "materializer/base/fs.h"
#include "materializer/base/status.h"

namespace mat::fuzz {

// Aborts (a crash libFuzzer reports, with the input saved) when `cond` is false: for the
// properties a target checks beyond "no crash", e.g. "a parser never returns kInternal".
#define MAT_FUZZ_CHECK(cond, what)                                                \
  do {                                                                            \
    if (!(cond)) ::mat::fuzz::fail(__FILE__, __LINE__, #cond, std::string(what)); \
  } while (0)

[[noreturn]] inline void fail(const char* file, int line, const char* cond,
                              const std::string& what) {
  std::fprintf(stderr, "%s:%d: fuzz check failed: %s: %s\n", file, line, cond, what.c_str());
  std::abort();
}

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// The process's scratch directory, made on first use and removed at exit:
// $MAT_FUZZ_TMP/<pid> (scripts/fuzz.sh points it at a directory it removes afterwards), else
// /dev/shm/mat-fuzz-<pid> (tmpfs: no disk I/O per execution), else $TMPDIR or /tmp.
inline const std::string& scratch_dir() {
  // Leaked on purpose: the atexit handler below runs after static destructors registered later.
  static const std::string& dir = *new std::string([] {
    std::string base;
    if (const char* t = std::getenv("MAT_FUZZ_TMP"); t != nullptr && *t != '\0') {
      base = std::string(t) + "/";
    } else if (is_dir("/dev/shm")) {
      base = "/dev/shm/mat-fuzz-";
    } else {
      const char* t2 = std::getenv("TMPDIR");
      base = std::string(t2 != nullptr && *t2 != '\0' ? t2 : "/tmp") + "/mat-fuzz-";
    }
    std::string d = base + std::to_string(::getpid());
    if (Status st = make_dirs(d, 0700); !st.ok()) {
      std::fprintf(stderr, "fuzz: cannot make the scratch directory: %s\n", st.to_string().c_str());
      std::abort();
    }
    return d;
  }());
  static const bool cleanup = std::atexit([] { remove_all(scratch_dir()).ignore(); }) == 0;
  (void)cleanup;
  return dir;
}

// Writes `data` to `path` (created or truncated). Aborts on failure: a harness that cannot
// write its input would fuzz nothing.
inline void write_whole(const std::string& path, std::string_view data) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  size_t done = 0;
  while (fd >= 0 && done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  if (fd < 0 || done != data.size()) {
    std::fprintf(stderr, "fuzz: cannot write %s\n", path.c_str());
    std::abort();
  }
  ::close(fd);
}

// scratch_dir()/name holding `data`; returns its path.
inline std::string scratch_file(const std::string& name, std::string_view data) {
  std::string path = scratch_dir() + "/" + name;
  write_whole(path, data);
  return path;
}

// Polls `done` (every 100 us) for up to 10 s; a failed check after that. For state that
// helper tasks (oneTBB enqueue) release after the call under test returned.
template <typename F>
void wait_until(F done, const char* what) {
  for (int i = 0; i < 100000; ++i) {
    if (done()) return;
    ::usleep(100);
  }
  fail(__FILE__, __LINE__, "wait_until", what);
}

// Several files in one input, for readers of a whole tree (info/ of a conda package, a wheel's
// *.dist-info): slots in a fixed order, separated by a line "--8<--"; a slot missing at the end,
// or holding exactly "<absent>", is a file that does not exist. Seeds stay readable text.
inline constexpr std::string_view kSlotSeparator = "\n--8<--\n";
inline constexpr std::string_view kAbsent = "<absent>";

inline std::vector<std::string_view> split_slots(std::string_view input, size_t slots) {
  std::vector<std::string_view> out;
  while (out.size() + 1 < slots) {
    size_t at = input.find(kSlotSeparator);
    if (at == std::string_view::npos) break;
    out.push_back(input.substr(0, at));
    input.remove_prefix(at + kSlotSeparator.size());
  }
  out.push_back(input);
  return out;
}

// Writes slot `i` to `path`, or removes `path` when the slot is absent.
inline void put_slot(const std::vector<std::string_view>& slots, size_t i,
                     const std::string& path) {
  if (i >= slots.size() || slots[i] == kAbsent) {
    ::unlink(path.c_str());
  } else {
    write_whole(path, slots[i]);
  }
}

// Deepest nesting of '[' / '{' in `text`, quotes ignored (an upper bound on a JSON, YAML flow
// or TOML inline document's nesting).
inline int bracket_depth(std::string_view text) {
  int depth = 0, deepest = 0;
  for (char c : text) {
    if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

}  // namespace mat::fuzz
