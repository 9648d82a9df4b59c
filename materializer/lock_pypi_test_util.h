// Shared by the PyPI lock tests (lock_pypi_test.cc, lock_uv_test.cc, lock_requirements_test.cc,
// lock_poetry_test.cc): hash placeholders, error expectations and a scratch directory.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>
#include <utility>

#include "materializer/lock.h"

namespace mat::lock_test_util {

inline const std::string kA(64, 'a');
inline const std::string kB(64, 'b');
inline const std::string kC(64, 'c');
inline const std::string kD(64, 'd');

// Replaces @A@ .. @D@ with 64-digit hashes, so fixtures stay readable and line-exact.
inline std::string fix(std::string s) {
  for (auto [tag, hash] : {std::pair{"@A@", &kA}, {"@B@", &kB}, {"@C@", &kC}, {"@D@", &kD}}) {
    for (size_t at; (at = s.find(tag)) != std::string::npos;) s.replace(at, 3, *hash);
  }
  return s;
}

inline LockSelection linux64() { return LockSelection{}; }

inline void ExpectInvalid(const Result<LockFile>& r, std::initializer_list<std::string> parts) {
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidInput) << r.status().to_string();
  for (const std::string& p : parts) {
    EXPECT_NE(r.status().message().find(p), std::string::npos)
        << "missing '" << p << "' in: " << r.status().message();
  }
}

inline const PackageRef* find(const LockFile& lock, const std::string& name,
                              const std::string& version = "") {
  for (const PackageRef& r : lock.packages) {
    if (r.name == name && (version.empty() || r.version == version)) return &r;
  }
  return nullptr;
}

// A scratch directory removed at scope exit.
struct TempDir {
  std::filesystem::path dir;
  TempDir() {
    static int n = 0;  // tests run on one thread
    dir = std::filesystem::temp_directory_path() /
          ("mat_lock_pypi_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
    std::filesystem::create_directories(dir);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  std::string write(const std::string& rel, const std::string& text) const {
    std::filesystem::path p = dir / rel;
    std::filesystem::create_directories(p.parent_path());
    std::ofstream(p) << text;
    return p.string();
  }
};

}  // namespace mat::lock_test_util
