#include "materializer/lock.h"
#include "tests/corpus.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "materializer/base/fs.h"

namespace mat {
namespace {

namespace sfs = std::filesystem;

const char kSha1[] = "fe51de6107f9edc7aa4f786a70f4a883943bc9d39b3bb7307c04c41410990726";
const char kMd51[] = "d7c89558ba9fa0495403155b64376d81";

LockSelection linux64(std::string env = "default") {
  LockSelection s;
  s.platform = "linux-64";
  s.environment = std::move(env);
  return s;
}

// Expects kInvalidInput whose message contains every one of `parts`.
void ExpectInvalid(const Result<LockFile>& r, std::initializer_list<const char*> parts) {
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidInput) << r.status().to_string();
  for (const char* p : parts) {
    EXPECT_NE(r.status().message().find(p), std::string::npos)
        << "missing '" << p << "' in: " << r.status().message();
  }
}

// ---------------------------------------------------------------------------------------------
// File names, platform

TEST(ParseCondaFileName, SplitsOnLastTwoDashes) {
  auto p = parse_conda_file_name("python-3.11.7-hab00c5b_1_cpython.conda");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->name, "python");
  EXPECT_EQ(p->version, "3.11.7");
  EXPECT_EQ(p->build, "hab00c5b_1_cpython");
  p = parse_conda_file_name("ld_impl_linux-64-2.40-h41732ed_0.tar.bz2");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->name, "ld_impl_linux-64");
  EXPECT_EQ(p->version, "2.40");
  EXPECT_EQ(p->build, "h41732ed_0");
}

TEST(ParseCondaFileName, RejectsNamesWithoutThreeParts) {
  EXPECT_FALSE(parse_conda_file_name("zlib.conda"));
  EXPECT_FALSE(parse_conda_file_name("zlib-1.3.conda"));
  EXPECT_FALSE(parse_conda_file_name("-1-2.conda"));
  EXPECT_FALSE(parse_conda_file_name("a--b.conda"));
}

TEST(HostPlatform, IsACondaSubdir) {
  std::string p = host_platform();
  EXPECT_NE(p.find('-'), std::string::npos) << p;
#if defined(__linux__) && defined(__x86_64__)
  EXPECT_EQ(p, "linux-64");
#elif defined(__linux__) && defined(__aarch64__)
  EXPECT_EQ(p, "linux-aarch64");
#endif
}

TEST(LockFormatName, NamesEachFormat) {
  EXPECT_STREQ(lock_format_name(LockFormat::kCondaLockV1), "conda-lock-v1");
  EXPECT_STREQ(lock_format_name(LockFormat::kExplicit), "explicit");
  EXPECT_STREQ(lock_format_name(LockFormat::kPixi), "pixi");
  LockFile f;
  f.format = LockFormat::kPixi;
  f.version = 6;
  EXPECT_EQ(lock_format_label(f), "pixi-v6");
}

// ---------------------------------------------------------------------------------------------
// Detection and generic errors

TEST(DetectLockFormat, FromContentNotName) {
  auto e = detect_lock_format("# platform: linux-64\n@EXPLICIT\n", "x.yml");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(*e, LockFormat::kExplicit);
  auto c = detect_lock_format("version: 1\nmetadata: {}\npackage: []\n", "pixi.lock");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(*c, LockFormat::kCondaLockV1);
  auto p = detect_lock_format("version: 6\nenvironments: {}\npackages: []\n", "conda-lock.yml");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(*p, LockFormat::kPixi);
}

TEST(ParseLock, EmptyFileIsInvalid) {
  ExpectInvalid(parse_lock("", "e.lock", linux64()), {"e.lock: empty lock file"});
  ExpectInvalid(parse_lock(" \n\n", "e.lock", linux64()), {"empty lock file"});
}

TEST(ParseLock, UnknownFormatIsInvalid) {
  // Unhashed pins are recognised as requirements.txt now, and refused for the missing hash
  // (lock_pypi_test.cc); prose is not any format.
  ExpectInvalid(parse_lock("numpy==1.26\nscipy\n", "requirements.txt", linux64()),
                {"requirements.txt:1: 'numpy' 1.26: pin has no --hash"});
  ExpectInvalid(parse_lock("just some words\n", "notes.txt", linux64()),
                {"notes.txt: not a recognised lock file",
                 "conda-lock.yml v1, @EXPLICIT, pixi.lock v4-v7, pylock.toml, uv.lock, "
                 "poetry.lock or requirements.txt"});
  ExpectInvalid(parse_lock("[[package]]\nname = \"x\"\n", "pylock.toml", linux64()),
                {"not a recognised lock file"});
  ExpectInvalid(parse_lock("foo: bar\n", "x.yml", linux64()), {"not a recognised lock file"});
}

TEST(ParseLock, UrlsWithoutExplicitMarkerSaySo) {
  ExpectInvalid(parse_lock("# platform: linux-64\nhttps://h/c/linux-64/a-1-0.conda#" +
                               std::string(kMd51) + "\n",
                           "spec.txt", linux64()),
                {"not a recognised lock file", "@EXPLICIT"});
}

TEST(ParseLock, YamlSyntaxErrorNamesLine) {
  const std::string text =
      "version: 6\n"
      "environments:\n"
      "  default:\n"
      "    packages: {linux-64: [\n"  // line 4: unterminated flow sequence
      "packages:\n"
      "- conda: x\n";
  auto r = parse_lock(text, "bad.lock", linux64());
  ExpectInvalid(r, {"bad.lock:", "YAML syntax error"});
  // yaml-cpp reports where it noticed the problem; it must be a real line of the file.
  std::string m = r.status().message();
  int line = std::atoi(m.substr(m.find(':') + 1).c_str());
  EXPECT_GE(line, 4);
  EXPECT_LE(line, 7);
}

TEST(ParseLock, YamlSyntaxErrorExactLine) {
  const std::string text =
      "version: 1\n"
      "metadata: {platforms: [linux-64]}\n"
      "package:\n"
      "- name: a\n"
      "  version: \"1\\q\"\n"  // line 5: unknown escape character
      "  url: https://h/c/linux-64/a-1-0.conda\n";
  ExpectInvalid(parse_lock(text, "c.yml", linux64()), {"c.yml:5: YAML syntax error"});
}

TEST(LoadLock, MissingFileIsNotFound) {
  auto r = load_lock("/nonexistent/dir/conda-lock.yml", linux64());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kNotFound);
  EXPECT_NE(r.status().message().find("/nonexistent/dir/conda-lock.yml"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// conda-lock.yml v1

const char kCondaLock[] = R"(metadata:
  channels:
  - url: conda-forge
    used_env_vars: []
  - defaults
  platforms:
  - linux-64
  - osx-arm64
package:
- name: _libgcc_mutex
  version: '0.1'
  manager: conda
  platform: linux-64
  dependencies: {}
  url: https://conda.anaconda.org/conda-forge/linux-64/_libgcc_mutex-0.1-conda_forge.tar.bz2
  hash:
    md5: D7C89558BA9FA0495403155B64376D81
    sha256: fe51de6107f9edc7aa4f786a70f4a883943bc9d39b3bb7307c04c41410990726
  category: main
  optional: false
- name: zlib
  version: 1.3.1
  manager: conda
  platform: osx-arm64
  url: https://conda.anaconda.org/conda-forge/osx-arm64/zlib-1.3.1-h8359307_2.conda
  hash:
    md5: e3170d898ca6cb48f1bb567afb92f775
- name: tzdata
  version: 2024a
  manager: conda
  platform: linux-64
  url: https://conda.anaconda.org/conda-forge/noarch/tzdata-2024a-h0c530f3_0.conda
  hash:
    sha256: 8a2e8d0c1f6d1b2a8a3c8b2b3d0a55e5c8d2e8ab0b1c8d1e6f5c2e4a3b2c1d0e
- name: six
  version: 1.17.0
  manager: pip
  platform: linux-64
  url: https://files.pythonhosted.org/packages/b7/ce/six-1.17.0-py2.py3-none-any.whl
  hash:
    sha256: 4721f391ed90541fddacab5acf947aa0d3dc7d27b2e1e8eda2be8970586c3274
- name: python-dateutil
  version: 2.9.0.post1.dev3+g9eaa5de
  manager: pip
  platform: linux-64
  url: git+https://github.com/dateutil/dateutil@9eaa5de584f9f374c6e4943069925cc53522ad61
  hash:
    sha256: 9eaa5de584f9f374c6e4943069925cc53522ad61
- name: _libgcc_mutex
  version: '0.1'
  manager: conda
  platform: linux-64
  url: https://conda.anaconda.org/conda-forge/linux-64/_libgcc_mutex-0.1-conda_forge.tar.bz2
  hash:
    md5: d7c89558ba9fa0495403155b64376d81
version: 1
)";

TEST(CondaLock, SelectsPlatformEntriesWithFields) {
  auto r = parse_lock(kCondaLock, "conda-lock.yml", linux64());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->format, LockFormat::kCondaLockV1);
  EXPECT_EQ(r->version, 1);
  EXPECT_EQ(r->platforms, (std::vector<std::string>{"linux-64", "osx-arm64"}));
  ASSERT_EQ(r->packages.size(), 4u);  // the duplicate _libgcc_mutex is dropped
  const PackageRef& m = r->packages[0];
  EXPECT_EQ(m.kind, PackageKind::kConda);
  EXPECT_EQ(m.name, "_libgcc_mutex");
  EXPECT_EQ(m.version, "0.1");
  EXPECT_EQ(m.build, "conda_forge");
  EXPECT_EQ(m.subdir, "linux-64");
  EXPECT_EQ(m.channel, "https://conda.anaconda.org/conda-forge");
  EXPECT_EQ(m.file_name, "_libgcc_mutex-0.1-conda_forge.tar.bz2");
  EXPECT_EQ(m.md5, kMd51);  // lowercased
  EXPECT_EQ(m.sha256, kSha1);
  EXPECT_EQ(m.line, 10);
  const PackageRef& tz = r->packages[1];
  EXPECT_EQ(tz.subdir, "noarch");
  EXPECT_EQ(tz.md5, "");
  EXPECT_EQ(tz.line, 28);
}

TEST(CondaLock, PipEntriesAreKPypi) {
  auto r = parse_lock(kCondaLock, "conda-lock.yml", linux64());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  const PackageRef& six = r->packages[2];
  EXPECT_EQ(six.kind, PackageKind::kPypi);
  EXPECT_EQ(six.name, "six");
  EXPECT_EQ(six.version, "1.17.0");
  EXPECT_EQ(six.sha256, "4721f391ed90541fddacab5acf947aa0d3dc7d27b2e1e8eda2be8970586c3274");
  EXPECT_EQ(six.file_name, "six-1.17.0-py2.py3-none-any.whl");
  // A git commit in the sha256 field is not an error for pip entries; it is just not a sha256.
  const PackageRef& git = r->packages[3];
  EXPECT_EQ(git.kind, PackageKind::kPypi);
  EXPECT_EQ(git.sha256, "");
  EXPECT_EQ(git.url,
            "git+https://github.com/dateutil/dateutil@9eaa5de584f9f374c6e4943069925cc53522ad61");
}

TEST(CondaLock, OtherDeclaredPlatform) {
  LockSelection sel = linux64();
  sel.platform = "osx-arm64";
  auto r = parse_lock(kCondaLock, "conda-lock.yml", sel);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_EQ(r->packages.size(), 1u);
  EXPECT_EQ(r->packages[0].name, "zlib");
  EXPECT_EQ(r->packages[0].subdir, "osx-arm64");
}

TEST(CondaLock, UndeclaredPlatformIsInvalid) {
  LockSelection sel = linux64();
  sel.platform = "win-64";
  ExpectInvalid(parse_lock(kCondaLock, "conda-lock.yml", sel),
                {"no packages for win-64", "linux-64, osx-arm64", "--platform linux-64"});
}

TEST(CondaLock, MissingUrlNamesLine) {
  const char* text = R"(version: 1
metadata: {platforms: [linux-64]}
package:
- name: zlib
  version: 1.3.1
  manager: conda
  platform: linux-64
  hash: {md5: e3170d898ca6cb48f1bb567afb92f775}
)";
  ExpectInvalid(parse_lock(text, "env.lock", linux64()),
                {"env.lock:4: package 'zlib': field 'url' is missing"});
}

TEST(CondaLock, MalformedHashNamesLineAndField) {
  const char* text = R"(version: 1
metadata: {platforms: [linux-64]}
package:
- name: zlib
  version: 1.3.1
  manager: conda
  platform: linux-64
  url: https://conda.anaconda.org/conda-forge/linux-64/zlib-1.3.1-h4ab18f5_1.conda
  hash:
    md5: e3170d898ca6cb48f1bb567afb92f775
    sha256: not-hex-at-all
)";
  ExpectInvalid(parse_lock(text, "env.lock", linux64()),
                {"env.lock:11:", "'hash.sha256'", "64 hex digits"});
}

TEST(CondaLock, NoHashNamesEveryLine) {
  const char* text = R"(version: 1
metadata: {platforms: [linux-64]}
package:
- name: a
  version: '1'
  manager: conda
  platform: linux-64
  url: https://h/c/linux-64/a-1-0.conda
  hash: {}
- name: b
  version: '1'
  manager: conda
  platform: linux-64
  url: https://h/c/linux-64/b-1-0.conda
  hash: {md5: null, sha256: null}
- name: c
  version: '1'
  manager: conda
  platform: linux-64
  url: https://h/c/linux-64/c-1-0.conda
  hash: {md5: e3170d898ca6cb48f1bb567afb92f775}
)";
  ExpectInvalid(parse_lock(text, "env.lock", linux64()),
                {"env.lock:4:", "2 packages have no sha256 or md5", "line 4: a-1-0.conda",
                 "line 10: b-1-0.conda"});
}

TEST(CondaLock, UnsupportedVersion) {
  ExpectInvalid(parse_lock("version: 2\nmetadata: {}\npackage: []\n", "c.yml", linux64()),
                {"c.yml:1: unsupported conda-lock version 2: supported 1"});
  ExpectInvalid(parse_lock("metadata: {}\npackage: []\n", "c.yml", linux64()),
                {"no 'version' key"});
}

TEST(CondaLock, UnknownManagerIsInvalid) {
  const char* text = R"(version: 1
package:
- name: a
  manager: npm
  platform: linux-64
  url: https://h/a.tgz
)";
  ExpectInvalid(parse_lock(text, "c.yml", linux64()), {"c.yml:3:", "unknown manager 'npm'"});
}

// ---------------------------------------------------------------------------------------------
// @EXPLICIT

TEST(Explicit, ParsesAllHashForms) {
  std::string text = std::string("# Generated by conda-lock.\n") +  // 1
                     "# platform: linux-64\n" +                     // 2
                     "@EXPLICIT\n" +                                // 3
                     "https://conda.anaconda.org/conda-forge/linux-64/"
                     "_libgcc_mutex-0.1-conda_forge.tar.bz2#" +
                     kMd51 + "\n" +     // 4
                     "# a comment\n" +  // 5
                     "\n" +             // 6
                     "https://repo.anaconda.com/pkgs/main/noarch/tzdata-2024b-h04d1e81_0.conda#" +
                     kSha1 + "\n" +  // 7
                     "https://conda.anaconda.org/conda-forge/linux-64/"
                     "python-3.11.7-hab00c5b_1_cpython.conda#sha256:" +
                     "AB" + std::string(kSha1).substr(2) + "\r\n";  // 8, CRLF
  auto r = parse_lock(text, "env.txt", linux64());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->format, LockFormat::kExplicit);
  EXPECT_EQ(r->platforms, (std::vector<std::string>{"linux-64"}));
  ASSERT_EQ(r->packages.size(), 3u);
  EXPECT_EQ(r->packages[0].md5, kMd51);
  EXPECT_EQ(r->packages[0].sha256, "");
  EXPECT_EQ(r->packages[0].line, 4);
  EXPECT_EQ(
      r->packages[0].url,
      "https://conda.anaconda.org/conda-forge/linux-64/_libgcc_mutex-0.1-conda_forge.tar.bz2");
  EXPECT_EQ(r->packages[1].sha256, kSha1);
  EXPECT_EQ(r->packages[1].subdir, "noarch");
  EXPECT_EQ(r->packages[1].channel, "https://repo.anaconda.com/pkgs/main");
  EXPECT_EQ(r->packages[1].line, 7);
  const PackageRef& py = r->packages[2];
  EXPECT_EQ(py.sha256, "ab" + std::string(kSha1).substr(2));
  EXPECT_EQ(py.name, "python");
  EXPECT_EQ(py.version, "3.11.7");
  EXPECT_EQ(py.build, "hab00c5b_1_cpython");
  EXPECT_EQ(py.file_name, "python-3.11.7-hab00c5b_1_cpython.conda");
  EXPECT_EQ(py.line, 8);
}

TEST(Explicit, WrongPlatformHeader) {
  std::string text = std::string("# platform: osx-arm64\n@EXPLICIT\n") +
                     "https://h/c/osx-arm64/a-1-0.conda#" + kMd51 + "\n";
  ExpectInvalid(
      parse_lock(text, "env.txt", linux64()),
      {"env.txt:1: lock is for osx-arm64, target is linux-64; pass --platform osx-arm64"});
}

TEST(Explicit, WithoutHeaderKeepsPlatformAndNoarch) {
  std::string text = std::string("@EXPLICIT\n") + "https://h/c/linux-64/a-1-0.conda#" + kMd51 +
                     "\n" + "https://h/c/osx-64/b-1-0.conda#" + kMd51 + "\n" +
                     "https://h/c/noarch/c-1-0.tar.bz2#" + kMd51 + "\n" +
                     "https://h/c/win-64/d-1-0.conda\n";  // ignored, so its missing hash too
  auto r = parse_lock(text, "env.txt", linux64());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_EQ(r->packages.size(), 2u);
  EXPECT_EQ(r->packages[0].name, "a");
  EXPECT_EQ(r->packages[1].name, "c");
  EXPECT_EQ(r->packages[1].subdir, "noarch");
  EXPECT_TRUE(r->platforms.empty());
}

TEST(Explicit, MissingHashesNameEveryLine) {
  const char* text =
      "# This is a comment\n"
      "@EXPLICIT\n"
      "https://repo.anaconda.com/pkgs/main/linux-64/_libgcc_mutex-0.1-main.conda\n"
      "https://repo.anaconda.com/pkgs/main/linux-64/ca-certificates-2025.2.25-h06a4308_0.conda\n";
  ExpectInvalid(
      parse_lock(text, "explicit.txt", linux64()),
      {"explicit.txt:3:", "2 packages have no md5 or sha256 fragment",
       "line 3: _libgcc_mutex-0.1-main.conda", "line 4: ca-certificates-2025.2.25-h06a4308_0.conda",
       "conda list --explicit --md5"});
}

TEST(Explicit, LineBeforeMarkerIsInvalid) {
  std::string text = std::string("# platform: linux-64\nzlib=1.3\n@EXPLICIT\n");
  ExpectInvalid(parse_lock(text, "env.txt", linux64()),
                {"env.txt:2: unexpected line before @EXPLICIT: 'zlib=1.3'"});
}

TEST(Explicit, PackageSpecIsNotAUrl) {
  std::string text = std::string("@EXPLICIT\n") + "https://h/c/linux-64/a-1-0.conda#" + kMd51 +
                     "\n" + "numpy=1.26.4=py311h64a7726_0\n";
  ExpectInvalid(parse_lock(text, "env.txt", linux64()),
                {"env.txt:3: not a package URL: 'numpy=1.26.4=py311h64a7726_0'"});
}

TEST(Explicit, MalformedFragment) {
  std::string text = "@EXPLICIT\nhttps://h/c/linux-64/a-1-0.conda#md5:" + std::string(kMd51);
  ExpectInvalid(parse_lock(text, "env.txt", linux64()),
                {"env.txt:2: malformed hash fragment '#md5:"});
  ExpectInvalid(parse_lock("@EXPLICIT\nhttps://h/c/linux-64/a-1-0.conda#abc\n", "e", linux64()),
                {"e:2: malformed hash fragment '#abc'"});
  ExpectInvalid(
      parse_lock("@EXPLICIT\nhttps://h/c/linux-64/a-1-0.conda#sha256:" + std::string(kMd51), "e",
                 linux64()),
      {"e:2: malformed hash fragment"});
}

TEST(Explicit, NonArchiveUrlIsInvalid) {
  ExpectInvalid(
      parse_lock("@EXPLICIT\nhttps://h/c/linux-64/a-1-0.whl#" + std::string(kMd51), "e", linux64()),
      {"e:2:", "does not name a .conda or .tar.bz2"});
}

TEST(Explicit, LocalPathsBecomeFileUrls) {
  std::string text = std::string("# platform: linux-64\n@EXPLICIT\n") +
                     "./pkgs/linux-64/a-1-0.conda#" + kMd51 + "\n" +
                     "/abs/chan/noarch/b-2-0.tar.bz2#" + kMd51 + "\n" +
                     "file:///x/linux-64/c-3-0.conda#" + kMd51 + "\n";
  auto r = parse_lock(text, "/tmp/locks/env.txt", linux64());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_EQ(r->packages.size(), 3u);
  EXPECT_EQ(r->packages[0].url, "file:///tmp/locks/pkgs/linux-64/a-1-0.conda");
  EXPECT_EQ(r->packages[0].channel, "file:///tmp/locks/pkgs");
  EXPECT_EQ(r->packages[1].url, "file:///abs/chan/noarch/b-2-0.tar.bz2");
  EXPECT_EQ(r->packages[2].url, "file:///x/linux-64/c-3-0.conda");
}

TEST(Explicit, DuplicateUrlKeepsFirst) {
  std::string text = std::string("@EXPLICIT\n") + "https://h/c/linux-64/a-1-0.conda#" + kMd51 +
                     "\n" + "https://h/c/linux-64/a-1-0.conda#" + kSha1 + "\n";
  auto r = parse_lock(text, "env.txt", linux64());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_EQ(r->packages.size(), 1u);
  EXPECT_EQ(r->packages[0].md5, kMd51);
  EXPECT_EQ(r->packages[0].line, 2);
}

// ---------------------------------------------------------------------------------------------
// pixi.lock

const char kPixiV6[] = R"(version: 6
environments:
  default:
    channels:
    - url: https://conda.anaconda.org/conda-forge/
    packages:
      linux-64:
      - conda: https://conda.anaconda.org/conda-forge/linux-64/python-3.12.3-hab00c5b_0_cpython.conda
      - conda: ./local/noarch/mypkg-0.1-pyh4616a5c_0.conda
      - pypi: https://files.pythonhosted.org/packages/d5/50/decorator-5.1.1-py3-none-any.whl
      - conda: https://conda.anaconda.org/conda-forge/noarch/tzdata-2024a-h0c530f3_0.conda
      osx-arm64:
      - conda: https://conda.anaconda.org/conda-forge/noarch/tzdata-2024a-h0c530f3_0.conda
  lint:
    channels:
    - url: https://conda.anaconda.org/conda-forge/
    packages:
      linux-64:
      - conda: https://conda.anaconda.org/conda-forge/noarch/tzdata-2024a-h0c530f3_0.conda
packages:
- conda: https://conda.anaconda.org/conda-forge/noarch/tzdata-2024a-h0c530f3_0.conda
  sha256: FE51DE6107F9EDC7AA4F786A70F4A883943BC9D39B3BB7307C04C41410990726
  md5: d7c89558ba9fa0495403155b64376d81
  license: LicenseRef-Public-Domain
  size: 119815
- conda: https://conda.anaconda.org/conda-forge/linux-64/python-3.12.3-hab00c5b_0_cpython.conda
  sha256: f9865bcbff69f15fd89a33a2da12ad616e98d65ce7c83c644b92e66e5016b227
  md5: 2540b74d304f71d3e89c81209db4db84
  depends:
  - bzip2 >=1.0.8,<2.0a0
  size: 31991381
- conda: ./local/noarch/mypkg-0.1-pyh4616a5c_0.conda
  name: mypkg
  version: '0.1'
  build: pyh4616a5c_0
  subdir: noarch
  sha256: 1a95494abe572a8819c933f978df89f00bde72ea9432d46a70632599e8029ea4
- pypi: https://files.pythonhosted.org/packages/d5/50/decorator-5.1.1-py3-none-any.whl
  name: decorator
  version: 5.1.1
  sha256: 637996211036b6385ef91435e4fae22989472f9d571faba8927ba8253acbc330
  requires_python: '>=3.5'
)";

TEST(Pixi, V6SelectsEnvironmentPlatformInOrder) {
  auto r = parse_lock(kPixiV6, "/proj/pixi.lock", linux64());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->format, LockFormat::kPixi);
  EXPECT_EQ(r->version, 6);
  EXPECT_EQ(r->environments, (std::vector<std::string>{"default", "lint"}));
  EXPECT_EQ(r->platforms, (std::vector<std::string>{"linux-64", "osx-arm64"}));
  ASSERT_EQ(r->packages.size(), 4u);
  const PackageRef& py = r->packages[0];
  EXPECT_EQ(py.kind, PackageKind::kConda);
  EXPECT_EQ(py.name, "python");  // v6 omits name/version/build: parsed from the file name
  EXPECT_EQ(py.version, "3.12.3");
  EXPECT_EQ(py.build, "hab00c5b_0_cpython");
  EXPECT_EQ(py.subdir, "linux-64");
  EXPECT_EQ(py.channel, "https://conda.anaconda.org/conda-forge");
  EXPECT_EQ(py.size, 31991381);
  EXPECT_EQ(py.line, 26);
  const PackageRef& local = r->packages[1];
  EXPECT_EQ(local.url, "file:///proj/local/noarch/mypkg-0.1-pyh4616a5c_0.conda");
  EXPECT_EQ(local.name, "mypkg");
  EXPECT_EQ(local.subdir, "noarch");
  EXPECT_EQ(local.size, -1);
  EXPECT_EQ(local.md5, "");
  EXPECT_EQ(local.line, 32);
  const PackageRef& dec = r->packages[2];
  EXPECT_EQ(dec.kind, PackageKind::kPypi);
  EXPECT_EQ(dec.name, "decorator");
  EXPECT_EQ(dec.version, "5.1.1");
  EXPECT_EQ(dec.sha256, "637996211036b6385ef91435e4fae22989472f9d571faba8927ba8253acbc330");
  EXPECT_EQ(dec.line, 38);
  const PackageRef& tz = r->packages[3];
  EXPECT_EQ(tz.sha256, kSha1);  // lowercased
  EXPECT_EQ(tz.subdir, "noarch");
  EXPECT_EQ(tz.line, 21);
}

TEST(Pixi, OtherEnvironment) {
  auto r = parse_lock(kPixiV6, "/proj/pixi.lock", linux64("lint"));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_EQ(r->packages.size(), 1u);
  EXPECT_EQ(r->packages[0].name, "tzdata");
}

TEST(Pixi, UnknownEnvironmentListsAvailable) {
  ExpectInvalid(parse_lock(kPixiV6, "pixi.lock", linux64("docs")),
                {"pixi.lock: environment 'docs' not found (available: default, lint)"});
}

TEST(Pixi, PlatformNotLockedForEnvironment) {
  LockSelection sel = linux64("lint");
  sel.platform = "osx-arm64";
  ExpectInvalid(
      parse_lock(kPixiV6, "pixi.lock", sel),
      {"environment 'lint' is not locked for osx-arm64 (locked: linux-64)", "--platform linux-64"});
}

TEST(Pixi, DanglingCondaReferenceNamesLine) {
  std::string text = kPixiV6;
  text.replace(
      text.find("- conda: https://conda.anaconda.org/conda-forge/linux-64/python"),
      std::string("- conda: https://conda.anaconda.org/conda-forge/linux-64/python").size(),
      "- conda: https://conda.anaconda.org/conda-forge/linux-64/pythonX");
  ExpectInvalid(parse_lock(text, "pixi.lock", linux64()),
                {"pixi.lock:8:", "refers to conda package", "not listed under 'packages:'"});
}

TEST(Pixi, MalformedHashNamesLineAndField) {
  std::string text = kPixiV6;
  text.replace(text.find("md5: 2540b74d304f71d3e89c81209db4db84"), 37, "md5: 2540b74d30");
  ExpectInvalid(parse_lock(text, "pixi.lock", linux64()),
                {"pixi.lock:28:", "field 'md5' is not 32 hex digits"});
}

TEST(Pixi, CondaWithoutHashIsInvalid) {
  std::string text = kPixiV6;
  text.replace(text.find("  sha256: 1a95494a"), 75, "");
  ExpectInvalid(parse_lock(text, "pixi.lock", linux64()),
                {"pixi.lock:32: mypkg-0.1-pyh4616a5c_0.conda has no sha256 or md5"});
}

const char kPixiV5[] = R"(version: 5
environments:
  default:
    channels:
    - url: https://conda.anaconda.org/conda-forge/
    packages:
      linux-64:
      - conda: https://conda.anaconda.org/conda-forge/linux-64/_libgcc_mutex-0.1-conda_forge.tar.bz2
      - pypi: ./links/requests-2.31.0-py3-none-any.whl
packages:
- kind: conda
  name: _libgcc_mutex
  version: '0.1'
  build: conda_forge
  subdir: linux-64
  url: https://conda.anaconda.org/conda-forge/linux-64/_libgcc_mutex-0.1-conda_forge.tar.bz2
  sha256: fe51de6107f9edc7aa4f786a70f4a883943bc9d39b3bb7307c04c41410990726
  md5: d7c89558ba9fa0495403155b64376d81
  size: 2562
- kind: pypi
  name: requests
  version: 2.31.0
  path: ./links/requests-2.31.0-py3-none-any.whl
  sha256: 58cd2187c01e70e6e26505bca751777aa9f2ee0b7f4300988b709f44e013003f
)";

TEST(Pixi, V5KindAndUrlEntries) {
  auto r = parse_lock(kPixiV5, "/p/q/pixi.lock", linux64());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->version, 5);
  ASSERT_EQ(r->packages.size(), 2u);
  EXPECT_EQ(r->packages[0].kind, PackageKind::kConda);
  EXPECT_EQ(r->packages[0].name, "_libgcc_mutex");
  EXPECT_EQ(r->packages[0].md5, kMd51);
  EXPECT_EQ(r->packages[0].sha256, kSha1);
  EXPECT_EQ(r->packages[0].size, 2562);
  EXPECT_EQ(r->packages[0].line, 11);
  EXPECT_EQ(r->packages[1].kind, PackageKind::kPypi);
  EXPECT_EQ(r->packages[1].name, "requests");
  EXPECT_EQ(r->packages[1].url, "file:///p/q/links/requests-2.31.0-py3-none-any.whl");
  EXPECT_EQ(r->packages[1].line, 20);
}

TEST(Pixi, SharedLocationDisambiguatedByFields) {
  const char* text = R"(version: 6
environments:
  default:
    channels: []
    packages:
      linux-64:
      - conda: ../chan/linux-64/pkg-1-0.conda
        build: second
packages:
- conda: ../chan/linux-64/pkg-1-0.conda
  build: first
  sha256: fe51de6107f9edc7aa4f786a70f4a883943bc9d39b3bb7307c04c41410990726
- conda: ../chan/linux-64/pkg-1-0.conda
  build: second
  md5: d7c89558ba9fa0495403155b64376d81
)";
  auto r = parse_lock(text, "/a/b/pixi.lock", linux64());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_EQ(r->packages.size(), 1u);
  EXPECT_EQ(r->packages[0].build, "second");
  EXPECT_EQ(r->packages[0].md5, kMd51);
  EXPECT_EQ(r->packages[0].url, "file:///a/chan/linux-64/pkg-1-0.conda");
  EXPECT_EQ(r->packages[0].line, 13);
}

TEST(Pixi, SourcePackagesAreRefused) {
  const char* v6 = R"(version: 6
environments:
  default:
    packages:
      linux-64:
      - conda: ../minimal-project
packages:
- conda: ../minimal-project
  name: minimal-project
  version: '0.1'
  build: first
  subdir: linux-64
)";
  ExpectInvalid(parse_lock(v6, "pixi.lock", linux64()),
                {"pixi.lock:8:", "'../minimal-project' is not a .conda or .tar.bz2 archive"});
  const char* v7 = R"(version: 7
platforms:
- name: linux-64
environments:
  default:
    packages:
      linux-64:
      - conda_source: child-package[87dc0b8a] @ child-package
packages:
- conda_source: child-package[87dc0b8a] @ child-package
  version: 0.1.0
)";
  ExpectInvalid(parse_lock(v7, "pixi.lock", linux64()), {"pixi.lock:8:", "is a source package"});
}

TEST(Pixi, V7NamedPlatforms) {
  const char* text = R"(version: 7
platforms:
- name: linux-64
- name: x86-cuda13
  subdir: linux-64
environments:
  default:
    packages:
      linux-64:
      - conda: https://h/c/noarch/ca-certificates-2026.7.22-hbd8a1cb_0.conda
      x86-cuda13:
      - conda: https://h/c/noarch/tzdata-2026c-h151e31d_0.conda
packages:
- conda: https://h/c/noarch/ca-certificates-2026.7.22-hbd8a1cb_0.conda
  sha256: fe51de6107f9edc7aa4f786a70f4a883943bc9d39b3bb7307c04c41410990726
- conda: https://h/c/noarch/tzdata-2026c-h151e31d_0.conda
  md5: d7c89558ba9fa0495403155b64376d81
)";
  auto r = parse_lock(text, "pixi.lock", linux64());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->version, 7);
  EXPECT_EQ(r->platforms, (std::vector<std::string>{"linux-64", "x86-cuda13"}));
  ASSERT_EQ(r->packages.size(), 1u);
  EXPECT_EQ(r->packages[0].name, "ca-certificates");
  LockSelection cuda = linux64();
  cuda.platform = "x86-cuda13";
  auto c = parse_lock(text, "pixi.lock", cuda);
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  ASSERT_EQ(c->packages.size(), 1u);
  EXPECT_EQ(c->packages[0].name, "tzdata");
}

TEST(Pixi, UnsupportedVersions) {
  ExpectInvalid(parse_lock("version: 3\nenvironments: {}\npackages: []\n", "pixi.lock", linux64()),
                {"pixi.lock:1: unsupported pixi.lock version 3: supported 4, 5, 6, 7"});
  ExpectInvalid(parse_lock("version: 8\nenvironments: {}\npackages: []\n", "pixi.lock", linux64()),
                {"unsupported pixi.lock version 8"});
}

TEST(LoadLock, ResolvesRelativePathsAgainstLockDirectory) {
  sfs::path dir = sfs::temp_directory_path() / ("mat_lock_test_" + std::to_string(::getpid()));
  sfs::create_directories(dir / "sub");
  {
    std::ofstream out(dir / "sub" / "pixi.lock");
    out << kPixiV6;
  }
  auto r = load_lock((dir / "sub" / "pixi.lock").string(), linux64());
  sfs::remove_all(dir);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->packages[1].url,
            "file://" + (dir / "sub" / "local/noarch/mypkg-0.1-pyh4616a5c_0.conda").string());
}

// ---------------------------------------------------------------------------------------------
// Corpus: every conda-lock, @EXPLICIT and pixi lock in the shared corpus.

using testing_corpus::corpus_dir;
std::vector<sfs::path> corpus_files(const std::string& kind) {
  return testing_corpus::corpus_lock_files(kind);
}

// Subdirectory name under locks/<kind>/ (the corpus names each case by its folder).
std::string case_name(const sfs::path& p) { return p.parent_path().filename().string(); }

void ExpectSane(const LockFile& lock, const std::string& what,
                const std::string& platform = "linux-64") {
  for (const PackageRef& r : lock.packages) {
    EXPECT_NE(r.url.find(':'), std::string::npos) << what << ": relative url " << r.url;
    EXPECT_FALSE(r.file_name.empty()) << what << ": " << r.url;
    EXPECT_GT(r.line, 0) << what << ": " << r.url;
    if (r.kind != PackageKind::kConda) continue;
    EXPECT_TRUE(r.url.starts_with("https://") || r.url.starts_with("http://") ||
                r.url.starts_with("file:///"))
        << what << ": " << r.url;
    EXPECT_TRUE(!r.sha256.empty() || !r.md5.empty()) << what << ": " << r.url;
    EXPECT_TRUE(r.sha256.empty() || r.sha256.size() == 64) << what;
    EXPECT_TRUE(r.md5.empty() || r.md5.size() == 32) << what;
    EXPECT_FALSE(r.name.empty()) << what << ": " << r.url;
    EXPECT_FALSE(r.version.empty()) << what << ": " << r.url;
    EXPECT_FALSE(r.build.empty()) << what << ": " << r.url;
    EXPECT_FALSE(r.subdir.empty()) << what << ": " << r.url;
    // v7 platform names ("x86-cuda13") are not subdirs; older formats key by subdir.
    if (lock.format != LockFormat::kPixi || lock.version < 7) {
      EXPECT_TRUE(r.subdir == platform || r.subdir == "noarch") << what << ": " << r.url;
    }
    EXPECT_EQ(r.url.find('#'), std::string::npos) << what;
  }
}

int count_conda(const LockFile& lock) {
  int n = 0;
  for (const PackageRef& r : lock.packages) n += r.kind == PackageKind::kConda;
  return n;
}

#define SKIP_WITHOUT_CORPUS()                                                     \
  do {                                                                            \
    if (!sfs::exists(sfs::path(corpus_dir()) / "locks")) {                        \
      GTEST_SKIP() << "no corpus at " << corpus_dir() << " (set MAT_CORPUS_DIR)"; \
    }                                                                             \
  } while (0)

TEST(LockCorpus, CondaLockFiles) {
  SKIP_WITHOUT_CORPUS();
  auto files = corpus_files("conda-lock");
  ASSERT_FALSE(files.empty());
  for (const sfs::path& f : files) {
    SCOPED_TRACE(f.string());
    auto r = load_lock(f.string(), linux64());
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_EQ(r->format, LockFormat::kCondaLockV1);
    EXPECT_GT(count_conda(*r), 0);
    ExpectSane(*r, f.string());
    bool has_pip = false;
    for (const PackageRef& p : r->packages) has_pip = has_pip || p.kind == PackageKind::kPypi;
    std::string name = case_name(f);
    if (name == "conda-lock-install-with-pip-deps" || name == "mamba-pip-git-https" ||
        name == "rattler-pypi-matplotlib") {
      EXPECT_TRUE(has_pip) << name;
    }
  }
}

TEST(LockCorpus, ExplicitFiles) {
  SKIP_WITHOUT_CORPUS();
  auto files = corpus_files("explicit");
  ASSERT_FALSE(files.empty());
  for (const sfs::path& f : files) {
    SCOPED_TRACE(f.string());
    auto r = load_lock(f.string(), linux64());
    std::string name = case_name(f);
    if (name == "conda-explicit-support") {
      // Written without hash fragments (MANIFEST: "no hashes"). mamba-explicit-linux is noted
      // as hashless too, but every URL in it carries an md5, so it must parse.
      ExpectInvalid(r, {"no md5 or sha256 fragment", "conda list --explicit --md5"});
    } else if (name.find("win-64") != std::string::npos ||
               name.find("vs2015") != std::string::npos ||
               name.find("osx-arm64") != std::string::npos) {
      ExpectInvalid(r, {"lock is for ", "target is linux-64; pass --platform"});
    } else {
      ASSERT_TRUE(r.ok()) << r.status().to_string();
      EXPECT_EQ(r->format, LockFormat::kExplicit);
      EXPECT_GT(count_conda(*r), 0);
      ExpectSane(*r, f.string());
    }
  }
}

TEST(LockCorpus, ExplicitNonLinuxFilesParseForTheirPlatform) {
  SKIP_WITHOUT_CORPUS();
  for (const sfs::path& f : corpus_files("explicit")) {
    std::string text = read_file(f.string()).value();
    size_t at = text.find("# platform: ");
    if (at == std::string::npos) continue;
    LockSelection sel;
    sel.platform = text.substr(at + 12, text.find('\n', at) - at - 12);
    if (sel.platform == "linux-64") continue;
    SCOPED_TRACE(f.string());
    auto r = parse_lock(text, f.string(), sel);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_GT(r->packages.size(), 0u);
  }
}

TEST(LockCorpus, PixiFilesEveryEnvironment) {
  SKIP_WITHOUT_CORPUS();
  auto files = corpus_files("pixi");
  ASSERT_FALSE(files.empty());
  int parsed_envs = 0;
  for (const sfs::path& f : files) {
    SCOPED_TRACE(f.string());
    std::string name = case_name(f);
    auto first = load_lock(f.string(), linux64());
    // The environment list comes with any successful parse; the default environment of a
    // win-only lock fails with "not locked for linux-64", which still names the problem.
    std::vector<std::string> envs;
    if (first.ok()) {
      envs = first->environments;
    } else {
      envs = {"default"};
    }
    for (const std::string& env : envs) {
      SCOPED_TRACE(env);
      auto r = load_lock(f.string(), linux64(env));
      if (name == "rattler-conda-path-v6") {
        ExpectInvalid(r, {"is not a .conda or .tar.bz2 archive"});
        continue;
      }
      if (name == "rattler-sources-v7" || name == "pixi-test-pypi-extras-v4") {
        // win-64 only.
        ExpectInvalid(r, {"is not locked for linux-64", "--platform"});
        continue;
      }
      if (!r.ok() && r.status().message().find("is not locked for linux-64") != std::string::npos) {
        continue;  // an environment for other platforms only
      }
      if (!r.ok() && name == "pixi-examples-cpp-git-source") {
        ExpectInvalid(r, {"is a source package"});
        continue;
      }
      ASSERT_TRUE(r.ok()) << r.status().to_string();
      EXPECT_EQ(r->format, LockFormat::kPixi);
      EXPECT_GE(r->version, 4);
      EXPECT_LE(r->version, 7);
      ExpectSane(*r, f.string() + " [" + env + "]");
      ++parsed_envs;
    }
  }
  EXPECT_GT(parsed_envs, 10);
}

// Every declared platform of every environment (of every conda-lock file too): either a sane
// result or one of the errors that name a real limitation.
TEST(LockCorpus, EveryDeclaredPlatformAndEnvironment) {
  SKIP_WITHOUT_CORPUS();
  int parsed = 0;
  for (const char* kind : {"conda-lock", "pixi"}) {
    for (const sfs::path& f : corpus_files(kind)) {
      // yaml-cpp parses ~5 MB/s, and pixi-root (480 KB) has 10 environments x 5 platforms;
      // the big files are covered for linux-64 by LockCorpus.Pixi*.
      if (sfs::file_size(f) > 256 * 1024) continue;
      SCOPED_TRACE(f.string());
      std::string text = read_file(f.string()).value();
      // Any parse reports the declared platforms and environments; linux-64 may be absent.
      std::vector<std::string> platforms, envs{"default"};
      for (const char* p : {"linux-64", "win-64", "osx-arm64"}) {
        LockSelection sel = linux64();
        sel.platform = p;
        auto probe = parse_lock(text, f.string(), sel);
        if (probe.ok()) {
          platforms = probe->platforms;
          if (!probe->environments.empty()) envs = probe->environments;
          break;
        }
      }
      for (const std::string& env : envs) {
        for (const std::string& platform : platforms) {
          SCOPED_TRACE(env + " / " + platform);
          LockSelection sel = linux64(env);
          sel.platform = platform;
          auto r = parse_lock(text, f.string(), sel);
          if (!r.ok()) {
            const std::string& m = r.status().message();
            EXPECT_TRUE(m.find("is not locked for") != std::string::npos ||
                        m.find("source package") != std::string::npos)
                << m;
            continue;
          }
          ExpectSane(*r, f.string(), platform);
          ++parsed;
        }
      }
    }
  }
  EXPECT_GT(parsed, 40);
}

TEST(LockCorpus, PixiLargeLockHasManyPackages) {
  SKIP_WITHOUT_CORPUS();
  sfs::path f = sfs::path(corpus_dir()) / "locks/pixi/pixi-examples-turtlesim/pixi.lock";
  if (!sfs::exists(f)) GTEST_SKIP();
  auto r = load_lock(f.string(), linux64());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_GT(count_conda(*r), 100);
}

}  // namespace
}  // namespace mat
