// The shared corpus (../shared/corpus beside the project, or $MAT_CORPUS_DIR) for the GoogleTest
// suites. Test-only: MAT_SOURCE_DIR is defined by mat_add_test(). Tests that use it skip cleanly
// when the directory is absent.
#pragma once

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

namespace mat::testing_corpus {

inline std::string corpus_dir() {
  if (const char* env = std::getenv("MAT_CORPUS_DIR"); env && *env) return env;
  return std::string(MAT_SOURCE_DIR) + "/../shared/corpus";
}

// Every regular file below corpus/locks/<kind>/, sorted.
inline std::vector<std::filesystem::path> corpus_lock_files(const std::string& kind) {
  namespace sfs = std::filesystem;
  std::vector<sfs::path> out;
  sfs::path dir = sfs::path(corpus_dir()) / "locks" / kind;
  std::error_code ec;
  for (auto it = sfs::recursive_directory_iterator(dir, ec);
       !ec && it != sfs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file()) out.push_back(it->path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace mat::testing_corpus
