// mat_fuzz_replay: runs fuzz targets over files without libFuzzer, so every build (release,
// asan) replays the seed corpus and the crash inputs kept in it as plain CTest tests.
//
//   mat_fuzz_replay TARGET PATH...    PATH: an input file, or a directory of them (not recursive);
//                                     a directory that does not exist holds no inputs
//
// Every *_fuzz.cc is compiled into this binary with its LLVMFuzzerTestOneInput and
// LLVMFuzzerInitialize renamed after the target (fuzz/CMakeLists.txt); replay_targets.inc, made
// by CMake, lists the targets. Exit status: 0 when every input ran (a crash aborts the process,
// with the sanitizers' report in the asan build), 2 for a usage error, an unreadable file, or
// no input at all (a target whose seeds went missing must not pass by running nothing).
#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#define MAT_FUZZ_TARGET(t)                                           \
  extern "C" int mat_fuzz_one_##t(const uint8_t* data, size_t size); \
  extern "C" __attribute__((weak)) int mat_fuzz_init_##t(int* argc, char*** argv);
#include "replay_targets.inc"
#undef MAT_FUZZ_TARGET

namespace {

struct Target {
  const char* name;
  int (*one)(const uint8_t*, size_t);
  int (*init)(int*, char***);  // null when the target has no LLVMFuzzerInitialize
};

const Target kTargets[] = {
#define MAT_FUZZ_TARGET(t) {#t, mat_fuzz_one_##t, mat_fuzz_init_##t},
#include "replay_targets.inc"
#undef MAT_FUZZ_TARGET
};

bool run_file(const Target& t, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "mat_fuzz_replay: %s: cannot read\n", path.c_str());
    return false;
  }
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // A copy of exactly the input's size, as libFuzzer gives it: ASan sees reads past the end.
  std::unique_ptr<uint8_t[]> copy(new uint8_t[bytes.size()]);
  std::copy(bytes.begin(), bytes.end(), copy.get());
  t.one(copy.get(), bytes.size());
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: mat_fuzz_replay TARGET PATH...\ntargets:");
    for (const Target& t : kTargets) std::fprintf(stderr, " %s", t.name);
    std::fprintf(stderr, "\n");
    return 2;
  }
  const Target* target = nullptr;
  for (const Target& t : kTargets) {
    if (std::strcmp(t.name, argv[1]) == 0) target = &t;
  }
  if (target == nullptr) {
    std::fprintf(stderr,
                 "mat_fuzz_replay: unknown target '%s' (run without arguments for the list)\n",
                 argv[1]);
    return 2;
  }
  if (target->init != nullptr) target->init(&argc, &argv);
  int ran = 0;
  bool ok = true;
  for (int i = 2; i < argc; ++i) {
    std::vector<std::string> files;
    struct stat st;
    const bool exists = ::stat(argv[i], &st) == 0;
    if (!exists && errno == ENOENT) continue;
    if (exists && S_ISDIR(st.st_mode)) {
      if (DIR* d = ::opendir(argv[i])) {
        while (dirent* e = ::readdir(d)) {
          std::string p = std::string(argv[i]) + "/" + e->d_name;
          if (e->d_name[0] != '.' && ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
            files.push_back(p);
          }
        }
        ::closedir(d);
      }
      std::sort(files.begin(), files.end());
    } else {
      files.push_back(argv[i]);
    }
    for (const std::string& f : files) {
      ok = run_file(*target, f) && ok;
      ++ran;
    }
  }
  std::printf("mat_fuzz_replay %s: %d inputs\n", target->name, ran);
  if (ran == 0) {
    std::fprintf(stderr, "mat_fuzz_replay %s: no inputs in the paths given\n", target->name);
    return 2;
  }
  return ok ? 0 : 2;
}
