// PyPI lock formats: detection, pylock.toml, the PyPI entries of conda-lock and pixi locks, and
// the shared corpus of every PyPI format. uv.lock, requirements.txt and poetry.lock have their
// own lock_*_test.cc.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "materializer/base/fs.h"
#include "materializer/lock.h"
#include "tests/corpus.h"
#include "materializer/lock_pypi_test_util.h"

namespace mat {
namespace {

namespace sfs = std::filesystem;

using namespace lock_test_util;

// ---------------------------------------------------------------------------------------------
// Detection

TEST(DetectLockFormat, PypiFormatsFromContent) {
  struct Case {
    const char* text;
    LockFormat want;
  } cases[] = {
      {"lock-version = \"1.0\"\n[[packages]]\nname = \"a\"\n", LockFormat::kPylock},
      {"version = 1\nrequires-python = \">=3.8\"\n[[package]]\nname = \"a\"\n",
       LockFormat::kUvLock},
      {"version = 1\n[[package]]\nname = \"a\"\n", LockFormat::kUvLock},
      {"[[package]]\nname = \"a\"\n[metadata]\nlock-version = \"2.0\"\n", LockFormat::kPoetry},
      {"[[package]]\nname = \"a\"\n[metadata]\ncontent-hash = \"x\"\n[metadata.files]\na = []\n",
       LockFormat::kPoetry},
      {"a==1 --hash=sha256:x\n", LockFormat::kRequirements},
      {"# comment\n-i https://x/simple\n\nfoo[bar]==1.0 ; python_version < \"3.9\" \\\n"
       "    --hash=sha256:y\n",
       LockFormat::kRequirements},
      {"-r base.txt\n", LockFormat::kRequirements},
      {"https://h/p/x-1.0-py3-none-any.whl\n", LockFormat::kRequirements},
      {"version: 1\nmetadata: {}\npackage: []\n", LockFormat::kCondaLockV1},
      {"version: 6\nenvironments: {}\npackages: []\n", LockFormat::kPixi},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    auto f = detect_lock_format(c.text, "lock");
    ASSERT_TRUE(f.ok()) << f.status().to_string();
    EXPECT_EQ(*f, c.want);
  }
}

TEST(DetectLockFormat, OtherTomlIsNotALockFile) {
  ExpectInvalid(parse_lock("[tool.poetry]\nname = \"x\"\n", "pyproject.toml", linux64()),
                {"pyproject.toml: not a recognised lock file", "pylock.toml, uv.lock"});
  ExpectInvalid(parse_lock("version = 2\nfoo = 1\n", "x.toml", linux64()),
                {"not a recognised lock file"});
}

TEST(ParseLock, TomlSyntaxErrorNamesLine) {
  const std::string text =
      "lock-version = \"1.0\"\n"
      "[[packages]]\n"
      "name = \"a\"\n"
      "version = \"1.0\n";  // line 4: unterminated string
  ExpectInvalid(parse_lock(text, "pylock.toml", linux64()), {"pylock.toml:4: TOML syntax error"});
}

TEST(LockFormatName, NamesPypiFormats) {
  EXPECT_STREQ(lock_format_name(LockFormat::kPylock), "pylock");
  EXPECT_STREQ(lock_format_name(LockFormat::kUvLock), "uv-lock");
  EXPECT_STREQ(lock_format_name(LockFormat::kRequirements), "requirements");
  EXPECT_STREQ(lock_format_name(LockFormat::kPoetry), "poetry-lock");
}

// ---------------------------------------------------------------------------------------------
// pylock.toml

const char kPylock[] = R"(lock-version = "1.0"
created-by = "test"
requires-python = ">=3.9"
environments = ["sys_platform == 'linux'", "sys_platform == 'darwin'"]
default-groups = ["default"]

[[packages]]
name = "numpy"
version = "2.0.0"
marker = "python_version >= '3.9'"
requires-python = ">=3.9"
index = "https://pypi.org/simple"
sdist = { url = "https://h/numpy-2.0.0.tar.gz", size = 100, hashes = { sha256 = "@A@" } }
wheels = [
  { url = "https://h/numpy-2.0.0-cp312-cp312-manylinux_2_17_x86_64.whl", size = 10, hashes = { sha256 = "@B@" } },
  { name = "numpy-2.0.0-cp312-cp312-win_amd64.whl", url = "https://h/dl?id=7", hashes = { sha256 = "@C@", md5 = "x" } },
]

[[packages]]
name = "local"
version = "0.1"

[[packages.wheels]]
path = "../dist/local-0.1-py3-none-any.whl"

[packages.wheels.hashes]
sha256 = "@D@"
)";

TEST(Pylock, WheelsSdistMarkersAndFileFields) {
  auto r = parse_lock(fix(kPylock), "/proj/sub/pylock.toml", linux64());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->format, LockFormat::kPylock);
  EXPECT_EQ(r->version, 1);
  EXPECT_EQ(lock_format_label(*r), "pylock");
  EXPECT_EQ(r->requires_python, ">=3.9");
  EXPECT_EQ(r->environment_markers,
            (std::vector<std::string>{"sys_platform == 'linux'", "sys_platform == 'darwin'"}));
  EXPECT_EQ(r->default_groups, std::vector<std::string>{"default"});
  EXPECT_TRUE(r->platforms.empty());
  ASSERT_EQ(r->packages.size(), 2u);
  const PackageRef& np = r->packages[0];
  EXPECT_EQ(np.kind, PackageKind::kPypi);
  EXPECT_EQ(np.name, "numpy");
  EXPECT_EQ(np.version, "2.0.0");
  EXPECT_EQ(np.marker, "python_version >= '3.9'");
  EXPECT_EQ(np.requires_python, ">=3.9");
  EXPECT_EQ(np.channel, "https://pypi.org/simple");
  EXPECT_EQ(np.line, 7);
  EXPECT_TRUE(np.requested);
  EXPECT_FALSE(np.needs_index);
  EXPECT_EQ(np.source_kind, "");
  ASSERT_EQ(np.sdists.size(), 1u);
  EXPECT_EQ(np.sdists[0].file_name, "numpy-2.0.0.tar.gz");
  EXPECT_EQ(np.sdists[0].sha256, kA);
  EXPECT_EQ(np.sdists[0].size, 100);
  ASSERT_EQ(np.wheels.size(), 2u);
  EXPECT_EQ(np.wheels[0].file_name, "numpy-2.0.0-cp312-cp312-manylinux_2_17_x86_64.whl");
  EXPECT_EQ(np.wheels[0].sha256, kB);
  EXPECT_EQ(np.wheels[0].size, 10);
  EXPECT_EQ(np.wheels[1].file_name, "numpy-2.0.0-cp312-cp312-win_amd64.whl");  // `name` wins
  EXPECT_EQ(np.wheels[1].url, "https://h/dl?id=7");
  EXPECT_EQ(np.wheels[1].size, -1);
  const PackageRef& local = r->packages[1];
  EXPECT_EQ(local.line, 19);
  ASSERT_EQ(local.wheels.size(), 1u);
  EXPECT_EQ(local.wheels[0].url, "file:///proj/dist/local-0.1-py3-none-any.whl");
  EXPECT_EQ(local.wheels[0].file_name, "local-0.1-py3-none-any.whl");
  EXPECT_EQ(local.wheels[0].sha256, kD);
}

TEST(Pylock, PlatformSelectionDoesNotFilter) {
  LockSelection win;
  win.platform = "win-64";
  auto r = parse_lock(fix(kPylock), "/proj/pylock.toml", win);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->packages.size(), 2u);
}

TEST(Pylock, ArchiveVcsAndDirectorySetSourceKind) {
  const std::string text = fix(R"(lock-version = "1.0"
packages = [
  { name = "src", archive = { url = "https://h/src-1.0.tar.gz", hashes = { sha256 = "@A@" } } },
  { name = "whl", archive = { path = "w/whl-1.0-py3-none-any.whl", size = 5, hashes = { sha256 = "@B@" } } },
  { name = "repo", vcs = { type = "git", url = "https://github.com/o/repo.git", commit-id = "abc123" } },
  { name = "proj", directory = { path = ".", editable = true } },
]
)");
  auto r = parse_lock(text, "/p/pylock.toml", linux64());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_EQ(r->packages.size(), 4u);
  const PackageRef& src = r->packages[0];
  EXPECT_EQ(src.source_kind, "archive");
  EXPECT_TRUE(src.wheels.empty());
  EXPECT_EQ(src.url, "https://h/src-1.0.tar.gz");
  EXPECT_EQ(src.sha256, kA);
  EXPECT_EQ(src.line, 3);
  // A wheel given as an archive is installable: it is the one candidate.
  const PackageRef& whl = r->packages[1];
  EXPECT_EQ(whl.source_kind, "");
  ASSERT_EQ(whl.wheels.size(), 1u);
  EXPECT_EQ(whl.wheels[0].url, "file:///p/w/whl-1.0-py3-none-any.whl");
  EXPECT_EQ(whl.wheels[0].size, 5);
  const PackageRef& repo = r->packages[2];
  EXPECT_EQ(repo.source_kind, "vcs");
  EXPECT_EQ(repo.url, "git+https://github.com/o/repo.git@abc123");
  EXPECT_TRUE(repo.wheels.empty());
  const PackageRef& proj = r->packages[3];
  EXPECT_EQ(proj.source_kind, "directory");
  EXPECT_EQ(proj.url, "file:///p");
}

TEST(Pylock, MissingOrMalformedHashNamesLineAndField) {
  ExpectInvalid(parse_lock(R"(lock-version = "1.0"

[[packages]]
name = "a"
version = "1"

[[packages.wheels]]
url = "https://h/a-1-py3-none-any.whl"
)",
                           "pylock.toml", linux64()),
                {"pylock.toml:7: package 'a': field 'wheels[0].hashes' is missing"});
  ExpectInvalid(
      parse_lock(R"(lock-version = "1.0"
[[packages]]
name = "a"
sdist = { url = "https://h/a-1.tar.gz", hashes = { sha512 = "00" } }
)",
                 "pylock.toml", linux64()),
      {"pylock.toml:4: package 'a': field 'sdist.hashes.sha256' is missing", "sha256 only"});
  ExpectInvalid(parse_lock(R"(lock-version = "1.0"
[[packages]]
name = "a"
wheels = [{ url = "https://h/a-1-py3-none-any.whl", hashes = { sha256 = "xyz" } }]
)",
                           "pylock.toml", linux64()),
                {"pylock.toml:4: package 'a': field 'wheels[0].hashes.sha256' is not 64 hex "
                 "digits: 'xyz'"});
}

TEST(Pylock, StructuralErrors) {
  ExpectInvalid(parse_lock("lock-version = \"2.0\"\npackages = []\n", "pylock.toml", linux64()),
                {"pylock.toml:1: unsupported pylock lock-version '2.0': supported 1.x"});
  ExpectInvalid(parse_lock("lock-version = \"1.0\"\n", "pylock.toml", linux64()),
                {"pylock.toml: field 'packages' is missing"});
  ExpectInvalid(parse_lock("lock-version = \"1.0\"\n[[packages]]\nversion = \"1\"\n", "pylock.toml",
                           linux64()),
                {"pylock.toml:2: packages[0]: field 'name' is missing"});
  ExpectInvalid(
      parse_lock("lock-version = \"1.0\"\n[[packages]]\nname = \"a\"\n", "pylock.toml", linux64()),
      {"pylock.toml:2: package 'a': names no source"});
  ExpectInvalid(parse_lock("lock-version = \"1.0\"\n[[packages]]\nname = \"a\"\nversion = 1\n"
                           "directory = {path = \".\"}\n",
                           "pylock.toml", linux64()),
                {"pylock.toml:4: package 'a': field 'version' must be a string, not an integer"});
  ExpectInvalid(parse_lock(fix("lock-version = \"1.0\"\n[[packages]]\nname = \"a\"\n"
                               "directory = {path = \".\"}\n"
                               "archive = {url = \"https://h/a.tar.gz\", hashes = {sha256 = "
                               "\"@A@\"}}\n"),
                           "pylock.toml", linux64()),
                {"pylock.toml:2: package 'a': has more than one of"});
}

// ---------------------------------------------------------------------------------------------
// PyPI entries of conda-lock and pixi locks

TEST(Pixi, PypiEntriesCarryRequiresPythonAndSourceKind) {
  const std::string text = fix(R"(version: 6
environments:
  default:
    channels:
    - url: https://conda.anaconda.org/conda-forge/
    packages:
      linux-64:
      - pypi: https://files.pythonhosted.org/packages/aa/numpy-2.2.2-cp313-cp313-manylinux_2_17_x86_64.whl
      - pypi: git+https://github.com/squidfunk/mike#2d4ad799442f4592db8ad53b179bfb33db8c69ac
      - pypi: ./
packages:
- pypi: https://files.pythonhosted.org/packages/aa/numpy-2.2.2-cp313-cp313-manylinux_2_17_x86_64.whl
  name: numpy
  version: 2.2.2
  sha256: @A@
  requires_dist:
  - pytest ; extra == 'test'
  requires_python: '>=3.10'
- pypi: git+https://github.com/squidfunk/mike#2d4ad799442f4592db8ad53b179bfb33db8c69ac
  name: mike
  version: 2.2.0
  requires_python: '>=3.9'
- pypi: ./
  name: proj
  version: 0.1.0
)");
  auto r = parse_lock(text, "/w/pixi.lock", linux64());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_EQ(r->packages.size(), 3u);
  const PackageRef& np = r->packages[0];
  EXPECT_EQ(np.requires_python, ">=3.10");
  EXPECT_EQ(np.file_name, "numpy-2.2.2-cp313-cp313-manylinux_2_17_x86_64.whl");
  EXPECT_EQ(np.source_kind, "");
  EXPECT_EQ(np.sha256, kA);
  const PackageRef& mike = r->packages[1];
  EXPECT_EQ(mike.source_kind, "git");
  EXPECT_EQ(mike.file_name, "mike");
  EXPECT_EQ(mike.requires_python, ">=3.9");
  const PackageRef& proj = r->packages[2];
  EXPECT_EQ(proj.source_kind, "path");
  EXPECT_EQ(proj.url, "file:///w");
  EXPECT_EQ(proj.file_name, "w");
}

TEST(CondaLock, PipGitEntryIsAGitSource) {
  const std::string text = R"(version: 1
metadata: {platforms: [linux-64]}
package:
- name: dateutil
  version: 2.9.0
  manager: pip
  platform: linux-64
  url: git+https://github.com/dateutil/dateutil@9eaa5de584f9f374c6e4943069925cc53522ad61
  hash: {sha256: 9eaa5de584f9f374c6e4943069925cc53522ad61}
- name: six
  version: 1.17.0
  manager: pip
  platform: linux-64
  url: https://files.pythonhosted.org/packages/b7/six-1.17.0-py2.py3-none-any.whl
  hash: {sha256: 4721f391ed90541fddacab5acf947aa0d3dc7d27b2e1e8eda2be8970586c3274}
)";
  auto r = parse_lock(text, "conda-lock.yml", linux64());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_EQ(r->packages.size(), 2u);
  EXPECT_EQ(r->packages[0].source_kind, "git");
  EXPECT_EQ(r->packages[0].file_name, "dateutil");
  EXPECT_EQ(r->packages[1].source_kind, "");
  EXPECT_EQ(r->packages[1].file_name, "six-1.17.0-py2.py3-none-any.whl");
}

// ---------------------------------------------------------------------------------------------
// Corpus: every pylock, uv.lock, hashed requirements and poetry lock in the shared corpus.

using testing_corpus::corpus_dir;
std::vector<sfs::path> corpus_files(const std::string& kind) {
  return testing_corpus::corpus_lock_files(kind);
}

std::string case_name(const sfs::path& p) { return p.parent_path().filename().string(); }

// What every PyPI entry must look like, whatever its format.
void ExpectSanePypi(const LockFile& lock, const std::string& what) {
  EXPECT_TRUE(lock.platforms.empty()) << what;
  for (const PackageRef& r : lock.packages) {
    SCOPED_TRACE(what + ": " + r.name);
    EXPECT_EQ(r.kind, PackageKind::kPypi);
    EXPECT_FALSE(r.name.empty());
    EXPECT_GT(r.line, 0);
    for (const auto* list : {&r.wheels, &r.sdists}) {
      for (const WheelCandidate& c : *list) {
        EXPECT_FALSE(c.file_name.empty());
        EXPECT_TRUE(c.sha256.empty() || c.sha256.size() == 64) << c.sha256;
        if (!r.needs_index) {
          EXPECT_NE(c.url.find(':'), std::string::npos) << c.url;
        }
      }
    }
    for (const WheelCandidate& w : r.wheels) EXPECT_TRUE(w.file_name.ends_with(".whl"));
    if (r.needs_index) {
      EXPECT_FALSE(r.allowed_sha256.empty());
      EXPECT_FALSE(r.version.empty());
    }
    if (r.source_kind.empty() && !r.needs_index) {
      EXPECT_TRUE(!r.wheels.empty() || !r.sdists.empty() || !r.url.empty());
    }
  }
}

#define SKIP_WITHOUT(kind)                                                                       \
  do {                                                                                           \
    if (corpus_files(kind).empty()) {                                                            \
      GTEST_SKIP() << "no " << kind << " corpus at " << corpus_dir() << " (set MAT_CORPUS_DIR)"; \
    }                                                                                            \
  } while (0)

TEST(LockCorpus, PylockFiles) {
  SKIP_WITHOUT("pylock");
  for (const sfs::path& f : corpus_files("pylock")) {
    SCOPED_TRACE(f.string());
    auto r = load_lock(f.string(), linux64());
    std::string name = case_name(f);
    // pip-test-invalidhash is a negative case for the download ("wrong hash"): its sha256 is
    // well-formed, so it parses; the cache's verification is what refuses it.
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_EQ(r->format, LockFormat::kPylock);
    EXPECT_FALSE(r->packages.empty());
    ExpectSanePypi(*r, f.string());
    if (name == "pip-test-directory") {
      for (const PackageRef& p : r->packages) EXPECT_EQ(p.source_kind, "directory");
    } else if (name == "pip-test-onearchive") {
      EXPECT_EQ(r->packages[0].source_kind, "archive");
      EXPECT_EQ(r->packages[0].sha256.size(), 64u);
    } else if (name == "pip-test-onesdist" || name == "pip-test-invalidhash") {
      ASSERT_EQ(r->packages[0].sdists.size(), 1u);
      EXPECT_TRUE(r->packages[0].sdists[0].url.starts_with("file:///"));
      EXPECT_TRUE(r->packages[0].wheels.empty());
    } else if (name == "pip-test-mixed") {
      EXPECT_EQ(r->packages[0].wheels.size(), 1u);
      EXPECT_EQ(r->packages[1].source_kind, "directory");
    } else if (name == "comfy-cli") {
      EXPECT_GT(r->packages.size(), 40u);
      EXPECT_EQ(r->requires_python, ">=3.10");
      int dirs = 0;
      for (const PackageRef& p : r->packages) {
        dirs += p.source_kind == "directory";
        if (p.source_kind.empty()) {
          EXPECT_EQ(p.channel, "https://pypi.org/simple") << p.name;
        }
      }
      EXPECT_EQ(dirs, 1);
    } else if (name == "pdm-demo") {
      EXPECT_EQ(r->default_groups, std::vector<std::string>{"default"});
      EXPECT_FALSE(r->environment_markers.empty());
      EXPECT_NE(find(*r, "colorama")->marker.find("sys_platform"), std::string::npos);
    }
  }
}

TEST(LockCorpus, UvFiles) {
  SKIP_WITHOUT("uv");
  for (const sfs::path& f : corpus_files("uv")) {
    SCOPED_TRACE(f.string());
    LockSelection sel = linux64();
    // uv's own repository has no `dev` group: by default only the project is selected. Select
    // its groups so the graph below is exercised.
    if (case_name(f) == "uv-root") sel.groups = {"check", "docker", "docs", "release"};
    auto r = load_lock(f.string(), sel);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_EQ(r->format, LockFormat::kUvLock);
    EXPECT_GT(r->packages.size(), 5u);
    ExpectSanePypi(*r, f.string());
    int registry = 0, projects = 0, conditional = 0;
    for (const PackageRef& p : r->packages) {
      registry += !p.channel.empty();
      projects += p.source_kind == "editable" || p.source_kind == "virtual";
      conditional += !p.marker.empty();
      if (!p.channel.empty()) {
        EXPECT_TRUE(!p.wheels.empty() || !p.sdists.empty()) << p.name;
      }
      // Derived markers are bounded (kMaxTerms) and balanced.
      EXPECT_EQ(std::count(p.marker.begin(), p.marker.end(), '('),
                std::count(p.marker.begin(), p.marker.end(), ')'))
          << p.marker;
    }
    EXPECT_GT(registry, 5);
    std::string name = case_name(f);
    if (name == "uv-script-create-python-mirror") {
      EXPECT_EQ(projects, 0);  // a script lock: roots come from [manifest] requirements
    } else {
      EXPECT_GE(projects, 1) << name;
    }
    if (name == "uv-built-by-uv") {
      EXPECT_EQ(find(*r, "colorama")->marker, "sys_platform == 'win32'");
      EXPECT_EQ(find(*r, "anyio")->marker, "");
      EXPECT_TRUE(find(*r, "anyio")->requested);
      EXPECT_FALSE(find(*r, "idna")->requested);
    }
    if (name == "uv-root" || name == "pydantic-ai") {
      EXPECT_GT(conditional, 0) << name;
    }
    if (name == "pydantic-ai") {
      int git = 0;
      for (const PackageRef& p : r->packages) git += p.source_kind == "git";
      EXPECT_GE(git, 1);
    }
  }
}

TEST(LockCorpus, RequirementsFiles) {
  SKIP_WITHOUT("requirements-hashed");
  for (const sfs::path& f : corpus_files("requirements-hashed")) {
    SCOPED_TRACE(f.string());
    auto r = load_lock(f.string(), linux64());
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_EQ(r->format, LockFormat::kRequirements);
    EXPECT_GT(r->packages.size(), 3u);
    ExpectSanePypi(*r, f.string());
    for (const PackageRef& p : r->packages) {
      EXPECT_TRUE(p.needs_index) << p.name;
      EXPECT_TRUE(p.requested);
    }
    std::string name = case_name(f);
    if (name == "uv-poetry-with-hashes") {
      EXPECT_EQ(r->packages.size(), 5u);
      EXPECT_EQ(find(*r, "psycopg2")->allowed_sha256.size(), 4u);
      EXPECT_NE(find(*r, "ansicon")->marker.find("platform_system == \"Windows\""),
                std::string::npos);
      EXPECT_EQ(find(*r, "urllib3")->allowed_sha256.size(), 1u);  // "--hash sha256:" spelling
    }
    if (name == "warehouse-main") {
      EXPECT_GT(r->packages.size(), 100u);
    }
  }
}

TEST(LockCorpus, PoetryFiles) {
  SKIP_WITHOUT("poetry");
  for (const sfs::path& f : corpus_files("poetry")) {
    SCOPED_TRACE(f.string());
    auto r = load_lock(f.string(), linux64());
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_EQ(r->format, LockFormat::kPoetry);
    ExpectSanePypi(*r, f.string());
  }
}

// Every PyPI-format corpus file is recognised as its own format, not confused with another.
TEST(LockCorpus, PypiFormatsDetectedFromContent) {
  const std::pair<const char*, LockFormat> kinds[] = {
      {"pylock", LockFormat::kPylock},
      {"uv", LockFormat::kUvLock},
      {"requirements-hashed", LockFormat::kRequirements},
      {"poetry", LockFormat::kPoetry},
      {"pixi", LockFormat::kPixi},
      {"conda-lock", LockFormat::kCondaLockV1},
  };
  int seen = 0;
  for (const auto& [kind, format] : kinds) {
    for (const sfs::path& f : corpus_files(kind)) {
      SCOPED_TRACE(f.string());
      Result<std::string> text = read_file(f.string());
      ASSERT_TRUE(text.ok());
      auto d = detect_lock_format(*text, f.string());
      ASSERT_TRUE(d.ok()) << d.status().to_string();
      EXPECT_EQ(*d, format);
      ++seen;
    }
  }
  if (seen == 0) GTEST_SKIP() << "no corpus at " << corpus_dir();
}

}  // namespace
}  // namespace mat
