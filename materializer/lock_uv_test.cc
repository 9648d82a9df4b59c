// uv.lock: packages, sources, and the markers derived from the dependency graph.
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "materializer/lock.h"
#include "tests/corpus.h"
#include "materializer/lock_pypi_test_util.h"
#include "materializer/pypi.h"

namespace mat {
namespace {

using namespace lock_test_util;

const char kUvLock[] = R"(version = 1
revision = 3
requires-python = ">=3.8"

[[package]]
name = "app"
version = "0.1.0"
source = { editable = "." }
dependencies = [
    { name = "anyio" },
    { name = "colorama", marker = "sys_platform == 'win32'" },
    { name = "tomli", marker = "python_full_version < '3.11'" },
]

[package.optional-dependencies]
extra = [{ name = "extra-only", marker = "extra == 'fast'" }]

[package.dev-dependencies]
dev = [{ name = "pytest" }]

[[package]]
name = "anyio"
version = "4.0.0"
source = { registry = "https://pypi.org/simple" }
dependencies = [{ name = "idna" }]
sdist = { url = "https://h/anyio-4.0.0.tar.gz", hash = "sha256:@A@", size = 100 }
wheels = [
    { url = "https://h/anyio-4.0.0-py3-none-any.whl", hash = "sha256:@B@", size = 10 },
]

[[package]]
name = "colorama"
version = "0.4.6"
source = { registry = "https://pypi.org/simple" }
dependencies = [{ name = "win-helper", marker = "platform_machine == 'AMD64'" }]
wheels = [{ url = "https://h/colorama-0.4.6-py2.py3-none-any.whl", hash = "sha256:@C@" }]

[[package]]
name = "extra-only"
version = "1.0"
source = { registry = "https://pypi.org/simple" }
wheels = [{ url = "https://h/extra_only-1.0-py3-none-any.whl", hash = "sha256:@C@" }]

[[package]]
name = "idna"
version = "3.7"
source = { registry = "https://pypi.org/simple" }
wheels = [{ url = "https://h/idna-3.7-py3-none-any.whl", hash = "sha256:@D@" }]

[[package]]
name = "pytest"
version = "8.0.0"
source = { registry = "https://pypi.org/simple" }
dependencies = [
    { name = "colorama", marker = "sys_platform == 'win32'" },
    { name = "tomli", marker = "python_full_version < '3.11'" },
    { name = "win-helper", marker = "sys_platform == 'win32'" },
]
wheels = [{ url = "https://h/pytest-8.0.0-py3-none-any.whl", hash = "sha256:@D@" }]

[[package]]
name = "tomli"
version = "2.0.1"
source = { registry = "https://pypi.org/simple" }
dependencies = [{ name = "cycle-a", marker = "os_name == 'posix'" }]
wheels = [{ url = "https://h/tomli-2.0.1-py3-none-any.whl", hash = "sha256:@D@" }]

[[package]]
name = "cycle-a"
version = "1.0"
source = { registry = "https://pypi.org/simple" }
dependencies = [{ name = "cycle-b" }]
wheels = [{ url = "https://h/cycle_a-1.0-py3-none-any.whl", hash = "sha256:@D@" }]

[[package]]
name = "cycle-b"
version = "1.0"
source = { registry = "https://pypi.org/simple" }
dependencies = [{ name = "cycle-a" }]
wheels = [{ url = "https://h/cycle_b-1.0-py3-none-any.whl", hash = "sha256:@D@" }]

[[package]]
name = "win-helper"
version = "1.0"
source = { git = "https://github.com/o/win-helper?rev=abc#abc" }
)";

TEST(UvLock, RegistryWheelsSdistAndSources) {
  auto r = parse_lock(fix(kUvLock), "/proj/uv.lock", linux64());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->format, LockFormat::kUvLock);
  EXPECT_EQ(r->version, 1);
  EXPECT_EQ(r->requires_python, ">=3.8");
  EXPECT_TRUE(r->platforms.empty());
  ASSERT_EQ(r->packages.size(), 9u);  // extra-only: only app's unselected extra reaches it
  const PackageRef& app = r->packages[0];
  EXPECT_EQ(app.source_kind, "editable");
  EXPECT_EQ(app.url, "file:///proj");
  EXPECT_FALSE(app.file_name.empty());
  EXPECT_EQ(app.line, 5);
  const PackageRef& anyio = r->packages[1];
  EXPECT_EQ(anyio.kind, PackageKind::kPypi);
  EXPECT_EQ(anyio.version, "4.0.0");
  EXPECT_EQ(anyio.channel, "https://pypi.org/simple");
  EXPECT_EQ(anyio.source_kind, "");
  EXPECT_FALSE(anyio.needs_index);
  EXPECT_EQ(anyio.line, 21);
  ASSERT_EQ(anyio.sdists.size(), 1u);
  EXPECT_EQ(anyio.sdists[0].sha256, kA);
  EXPECT_EQ(anyio.sdists[0].size, 100);
  ASSERT_EQ(anyio.wheels.size(), 1u);
  EXPECT_EQ(anyio.wheels[0].file_name, "anyio-4.0.0-py3-none-any.whl");
  EXPECT_EQ(anyio.wheels[0].sha256, kB);
  EXPECT_EQ(anyio.wheels[0].size, 10);
  const PackageRef* git = find(*r, "win-helper");
  ASSERT_TRUE(git);
  EXPECT_EQ(git->source_kind, "git");
  EXPECT_EQ(git->url, "git+https://github.com/o/win-helper?rev=abc#abc");
}

TEST(UvLock, MarkersAreDerivedFromTheDependencyGraph) {
  auto r = parse_lock(fix(kUvLock), "/proj/uv.lock", linux64());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  auto marker = [&](const char* name) {
    const PackageRef* p = find(*r, name);
    return p ? p->marker : std::string("<missing>");
  };
  EXPECT_EQ(marker("app"), "");
  EXPECT_EQ(marker("anyio"), "");
  EXPECT_EQ(marker("idna"), "");    // unconditional path app -> anyio -> idna
  EXPECT_EQ(marker("pytest"), "");  // the dev group: installed by default, as uv sync does
  // Reached only through app's optional extra, which is not selected: left out of the list.
  EXPECT_EQ(marker("extra-only"), "<missing>");
  // Two edges, same marker: absorbed into one.
  EXPECT_EQ(marker("colorama"), "sys_platform == 'win32'");
  EXPECT_EQ(marker("tomli"), "python_full_version < '3.11'");
  // Direct edge from pytest (win32) or via colorama (win32 and AMD64): the second is absorbed.
  EXPECT_EQ(marker("win-helper"), "sys_platform == 'win32'");
  // Through tomli, then a cycle: both members get tomli's marker AND the edge into the cycle.
  EXPECT_EQ(marker("cycle-a"), "(python_full_version < '3.11') and (os_name == 'posix')");
  EXPECT_EQ(marker("cycle-b"), marker("cycle-a"));
}

TEST(UvLock, MarkerIsAnOrOverDistinctPaths) {
  const std::string text = fix(R"(version = 1
[[package]]
name = "root"
version = "0"
source = { virtual = "." }
dependencies = [
    { name = "a", marker = "sys_platform == 'linux'" },
    { name = "b", marker = "sys_platform == 'darwin'" },
]
[[package]]
name = "a"
version = "1"
source = { registry = "https://pypi.org/simple" }
dependencies = [{ name = "c", marker = "python_version < '3.10'" }]
[[package]]
name = "b"
version = "1"
source = { registry = "https://pypi.org/simple" }
dependencies = [{ name = "c" }]
[[package]]
name = "c"
version = "1"
source = { registry = "https://pypi.org/simple" }
)");
  auto r = parse_lock(text, "/p/uv.lock", linux64());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(find(*r, "root")->source_kind, "virtual");
  EXPECT_EQ(find(*r, "c")->marker,
            "((sys_platform == 'linux') and (python_version < '3.10')) or "
            "(sys_platform == 'darwin')");
}

TEST(UvLock, ForkedVersionsUseResolutionMarkers) {
  const std::string text = fix(R"(version = 1
requires-python = ">=3.8"
resolution-markers = ["python_full_version >= '3.9'", "python_full_version < '3.9'"]
[[package]]
name = "root"
version = "0"
source = { editable = "." }
dependencies = [
    { name = "numpy", version = "1.24.4", source = { registry = "https://pypi.org/simple" }, marker = "python_full_version < '3.9'" },
    { name = "numpy", version = "2.0.0", source = { registry = "https://pypi.org/simple" }, marker = "python_full_version >= '3.9'" },
    { name = "shared" },
]
[[package]]
name = "shared"
version = "1"
source = { registry = "https://pypi.org/simple" }
resolution-markers = ["python_full_version < '3.9'", "python_full_version >= '3.9'"]
[[package]]
name = "numpy"
version = "1.24.4"
source = { registry = "https://pypi.org/simple" }
resolution-markers = ["python_full_version < '3.9'"]
dependencies = [{ name = "helper" }]
[[package]]
name = "numpy"
version = "2.0.0"
source = { registry = "https://pypi.org/simple" }
resolution-markers = ["python_full_version >= '3.9'"]
[[package]]
name = "helper"
version = "1"
source = { registry = "https://pypi.org/simple" }
resolution-markers = ["python_full_version < '3.9' and os_name == 'nt'", "python_full_version >= '3.12'"]
)");
  auto r = parse_lock(text, "/p/uv.lock", linux64());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  // The edge marker and the fork's marker are the same clause: a conjunction is a set.
  EXPECT_EQ(find(*r, "numpy", "1.24.4")->marker, "python_full_version < '3.9'");
  EXPECT_EQ(find(*r, "numpy", "2.0.0")->marker, "python_full_version >= '3.9'");
  // Chosen in every fork of the file: no condition.
  EXPECT_EQ(find(*r, "shared")->marker, "");
  // Reached through the old numpy only, and gated by its own forks.
  EXPECT_EQ(find(*r, "helper")->marker,
            "(python_full_version < '3.9') and ((python_full_version < '3.9' and os_name == "
            "'nt') or (python_full_version >= '3.12'))");
}

TEST(UvLock, RequestedIsTheProjectsDirectDependencies) {
  auto r = parse_lock(fix(kUvLock), "/proj/uv.lock", linux64());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  for (const char* name : {"app", "anyio", "colorama", "tomli", "pytest"}) {
    EXPECT_TRUE(find(*r, name)->requested) << name;
  }
  for (const char* name : {"idna", "cycle-a", "cycle-b", "win-helper"}) {
    EXPECT_FALSE(find(*r, name)->requested) << name;
  }
}

TEST(UvLock, ScriptManifestRequirementsAreRoots) {
  const std::string text = fix(R"(version = 1
requires-python = ">=3.12"

[manifest]
requirements = [{ name = "httpx" }, { name = "winonly", marker = "sys_platform == 'win32'" }]

[[package]]
name = "httpx"
version = "0.27.0"
source = { registry = "https://pypi.org/simple" }
dependencies = [{ name = "idna" }]
wheels = [{ url = "https://h/httpx-0.27.0-py3-none-any.whl", hash = "sha256:@A@" }]

[[package]]
name = "idna"
version = "3.7"
source = { registry = "https://pypi.org/simple" }
wheels = [{ url = "https://h/idna-3.7-py3-none-any.whl", hash = "sha256:@B@" }]

[[package]]
name = "winonly"
version = "1"
source = { registry = "https://pypi.org/simple" }
dependencies = [{ name = "idna", marker = "python_version < '3.13'" }]
wheels = [{ url = "https://h/winonly-1-py3-none-any.whl", hash = "sha256:@B@" }]
)");
  auto r = parse_lock(text, "/p/x.py.lock", linux64());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(find(*r, "httpx")->marker, "");
  EXPECT_TRUE(find(*r, "httpx")->requested);
  EXPECT_EQ(find(*r, "winonly")->marker, "sys_platform == 'win32'");
  EXPECT_TRUE(find(*r, "winonly")->requested);
  EXPECT_EQ(find(*r, "idna")->marker, "");
  EXPECT_FALSE(find(*r, "idna")->requested);
}

TEST(UvLock, LocalSourcesAndFileOnlyDists) {
  const std::string text = fix(R"(version = 1
[[package]]
name = "whl"
version = "1.0"
source = { path = "dist/whl-1.0-py3-none-any.whl" }
wheels = [{ filename = "whl-1.0-py3-none-any.whl", hash = "sha256:@A@" }]
[[package]]
name = "dir"
version = "1.0"
source = { directory = "libs/dir" }
[[package]]
name = "direct"
version = "1.0"
source = { url = "https://h/direct-1.0-py3-none-any.whl" }
wheels = [{ hash = "sha256:@B@" }]
[[package]]
name = "flat"
version = "1.0"
source = { registry = "wheels" }
wheels = [{ path = "flat-1.0-py3-none-any.whl", hash = "sha256:@C@" }]
)");
  auto r = parse_lock(text, "/p/uv.lock", linux64());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  const PackageRef* whl = find(*r, "whl");
  EXPECT_EQ(whl->source_kind, "");
  ASSERT_EQ(whl->wheels.size(), 1u);
  EXPECT_EQ(whl->wheels[0].url, "file:///p/dist/whl-1.0-py3-none-any.whl");
  EXPECT_EQ(whl->wheels[0].file_name, "whl-1.0-py3-none-any.whl");
  EXPECT_EQ(find(*r, "dir")->source_kind, "directory");
  EXPECT_EQ(find(*r, "dir")->url, "file:///p/libs/dir");
  const PackageRef* direct = find(*r, "direct");
  ASSERT_EQ(direct->wheels.size(), 1u);
  EXPECT_EQ(direct->wheels[0].url, "https://h/direct-1.0-py3-none-any.whl");
  EXPECT_EQ(direct->wheels[0].file_name, "direct-1.0-py3-none-any.whl");
  EXPECT_EQ(direct->wheels[0].sha256, kB);
  const PackageRef* flat = find(*r, "flat");
  EXPECT_EQ(flat->channel, "file:///p/wheels");
  EXPECT_EQ(flat->wheels[0].url, "file:///p/wheels/flat-1.0-py3-none-any.whl");
}

TEST(UvLock, Errors) {
  ExpectInvalid(parse_lock("version = 2\n[[package]]\nname = \"a\"\n", "uv.lock", linux64()),
                {"uv.lock:1: unsupported uv.lock version 2: supported 1"});
  ExpectInvalid(parse_lock(R"(version = 1
[[package]]
name = "a"
version = "1"
source = { registry = "https://pypi.org/simple" }
wheels = [
    { url = "https://h/a-1-py3-none-any.whl", hash = "sha256:123" },
]
)",
                           "uv.lock", linux64()),
                {"uv.lock:7: package 'a': field 'wheels[0].hash' is not sha256:<64 hex digits>"});
  ExpectInvalid(parse_lock("version = 1\n[[package]]\nname = \"a\"\nsource = { foo = \"x\" }\n",
                           "uv.lock", linux64()),
                {"uv.lock:4: package 'a': field 'source' has no known kind"});
  ExpectInvalid(parse_lock("version = 1\n[[package]]\nversion = \"1\"\n", "uv.lock", linux64()),
                {"uv.lock:2: package[0]: field 'name' is missing"});
}

// ---------------------------------------------------------------------------------------------
// Extras, groups and uv's conflict markers: what `uv sync` installs by default (the projects,
// their `dev` group, no optional extras), or what LockSelection names.

const char kSelectionLock[] = R"uv(version = 1
revision = 3
requires-python = ">=3.10"
conflicts = [[
    { package = "proj", extra = "tasks" },
    { package = "proj", group = "dev" },
]]

[[package]]
name = "proj"
version = "0.1.0"
source = { editable = "." }
dependencies = [
    { name = "docker" },
    { name = "requests", extra = ["socks"] },
]

[package.optional-dependencies]
tasks = [
    { name = "taskq", marker = "extra == 'extra-4-proj-tasks'" },
]
web = [
    { name = "flaskish" },
    { name = "fast", marker = "extra == 'web' and python_version >= '3.11'" },
    { name = "slow", marker = "extra == 'other'" },
]

[package.dev-dependencies]
dev = [{ name = "pytest", marker = "extra == 'group-4-proj-dev'" }]
lint = [{ name = "ruff" }]

[[package]]
name = "docker"
version = "7.1.0"
source = { registry = "https://pypi.org/simple" }
dependencies = [
    { name = "pywin32", marker = "sys_platform == 'win32' or (extra == 'extra-4-proj-tasks' and extra == 'group-4-proj-dev')" },
    { name = "nodev", marker = "extra != 'group-4-proj-dev'" },
]

[[package]]
name = "requests"
version = "2.32.0"
source = { registry = "https://pypi.org/simple" }

[package.optional-dependencies]
socks = [{ name = "pysocks" }]
use-chardet = [{ name = "chardet" }]

[[package]]
name = "pywin32"
version = "311"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "nodev"
version = "1"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "pysocks"
version = "1.7.1"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "chardet"
version = "5.0"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "taskq"
version = "1"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "flaskish"
version = "1"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "fast"
version = "1"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "slow"
version = "1"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "pytest"
version = "8"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "ruff"
version = "0.6"
source = { registry = "https://pypi.org/simple" }
)uv";

std::string marker_of(const LockFile& lock, const char* name) {
  const PackageRef* p = find(lock, name);
  return p ? p->marker : std::string("<missing>");
}

TEST(UvLockSelection, DefaultsAreTheDevGroupAndNoExtras) {
  auto r = parse_lock(kSelectionLock, "/p/uv.lock", linux64());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  // Conflict variables decided (tasks off, dev on): only the environment part is left.
  EXPECT_EQ(marker_of(*r, "pywin32"), "sys_platform == 'win32'");
  EXPECT_EQ(marker_of(*r, "nodev"), "<missing>");  // extra != 'group-4-proj-dev': false
  EXPECT_EQ(marker_of(*r, "pytest"), "");          // dev group, its own conflict marker true
  EXPECT_TRUE(find(*r, "pytest")->requested);
  EXPECT_EQ(marker_of(*r, "ruff"), "<missing>");  // lint group: not a default group
  // `extra = ["socks"]` on the edge activates requests' socks list, not its other extras.
  EXPECT_EQ(marker_of(*r, "pysocks"), "");
  EXPECT_FALSE(find(*r, "pysocks")->requested);
  EXPECT_EQ(marker_of(*r, "chardet"), "<missing>");
  // The project's own extras are off.
  for (const char* name : {"taskq", "flaskish", "fast", "slow"}) {
    EXPECT_EQ(marker_of(*r, name), "<missing>") << name;
  }
  EXPECT_EQ(r->packages.size(), 6u);  // proj, docker, requests, pywin32, pysocks, pytest
}

TEST(UvLockSelection, SelectedExtrasAndGroups) {
  LockSelection sel = linux64();
  sel.extras = {"Tasks", "web"};  // normalised
  sel.groups = {"lint"};          // replaces the default: no dev
  auto r = parse_lock(kSelectionLock, "/p/uv.lock", sel);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(marker_of(*r, "pytest"), "<missing>");
  EXPECT_EQ(marker_of(*r, "ruff"), "");
  EXPECT_EQ(marker_of(*r, "taskq"), "");
  EXPECT_TRUE(find(*r, "taskq")->requested);
  EXPECT_EQ(marker_of(*r, "nodev"), "");  // dev is off now
  // tasks on but dev off: the conflict clause is false.
  EXPECT_EQ(marker_of(*r, "pywin32"), "sys_platform == 'win32'");
  // A plain `extra == 'x'` on an edge of x's own list is true; another extra's is not.
  EXPECT_EQ(marker_of(*r, "flaskish"), "");
  EXPECT_EQ(marker_of(*r, "fast"), "python_version >= '3.11'");
  EXPECT_EQ(marker_of(*r, "slow"), "<missing>");

  sel.groups = {"dev"};
  sel.extras = {"tasks"};
  r = parse_lock(kSelectionLock, "/p/uv.lock", sel);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(marker_of(*r, "pywin32"), "");  // tasks and dev: the conflict clause holds
}

TEST(UvLockSelection, ExtrasNamedByEdgesPropagate) {
  // b[x] is asked for only deep in the graph; its list's marker names the conflict variable
  // the edge itself activates (uv writes such markers for conflicting extras).
  const std::string text = R"uv(version = 1
[[package]]
name = "root"
version = "0"
source = { virtual = "." }
dependencies = [{ name = "a" }]
[[package]]
name = "a"
version = "1"
source = { registry = "https://pypi.org/simple" }
dependencies = [{ name = "b", extra = ["x"], marker = "extra == 'extra-1-b-x' and os_name == 'posix'" }]
[[package]]
name = "b"
version = "1"
source = { registry = "https://pypi.org/simple" }
[package.optional-dependencies]
x = [{ name = "c" }]
y = [{ name = "d" }]
[[package]]
name = "c"
version = "1"
source = { registry = "https://pypi.org/simple" }
[[package]]
name = "d"
version = "1"
source = { registry = "https://pypi.org/simple" }
)uv";
  auto r = parse_lock(text, "/p/uv.lock", linux64());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(marker_of(*r, "b"), "os_name == 'posix'");
  EXPECT_EQ(marker_of(*r, "c"), "os_name == 'posix'");
  EXPECT_EQ(marker_of(*r, "d"), "<missing>");
}

TEST(UvLockSelection, ManifestGroupsOfAProjectlessLock) {
  const std::string text = R"uv(version = 1
[manifest]
[manifest.dependency-groups]
dev = [{ name = "a" }]
docs = [{ name = "b" }]
[[package]]
name = "a"
version = "1"
source = { registry = "https://pypi.org/simple" }
[[package]]
name = "b"
version = "1"
source = { registry = "https://pypi.org/simple" }
)uv";
  auto r = parse_lock(text, "/p/uv.lock", linux64());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(marker_of(*r, "a"), "");
  EXPECT_EQ(marker_of(*r, "b"), "<missing>");
  LockSelection sel = linux64();
  sel.groups = {"docs"};
  r = parse_lock(text, "/p/uv.lock", sel);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(marker_of(*r, "a"), "<missing>");
  EXPECT_EQ(marker_of(*r, "b"), "");
}

TEST(UvLockSelection, MalformedExtraMarkerNamesTheLine) {
  const std::string text = R"uv(version = 1
[[package]]
name = "root"
version = "0"
source = { virtual = "." }
dependencies = [{ name = "a", marker = "extra == 'x' and" }]
[[package]]
name = "a"
version = "1"
source = { registry = "https://pypi.org/simple" }
)uv";
  ExpectInvalid(parse_lock(text, "uv.lock", linux64()),
                {"uv.lock:2:", "dependency 'a'", "invalid marker"});
}

// The shared corpus: pydantic-ai's uv.lock reaches pywin32 through docker with the marker
// "sys_platform == 'win32' or (<conflict extras>)"; on Linux it must not be selected.
TEST(UvLockSelection, CorpusPydanticAiPywin32IsWindowsOnly) {
  std::string path = testing_corpus::corpus_dir() + "/locks/uv/pydantic-ai/uv.lock";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "no corpus lock " << path;
  auto r = load_lock(path, linux64());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  const PackageRef* pywin32 = find(*r, "pywin32");
  ASSERT_TRUE(pywin32);
  EXPECT_EQ(pywin32->marker, "sys_platform == 'win32'");
  for (const char* platform : {"linux-64", "linux-aarch64", "osx-arm64", "win-64"}) {
    for (const char* py : {"3.11", "3.12"}) {
      auto t = pypi::make_target(py, "", platform, "", platform[0] == 'l' ? "2.28" : "");
      ASSERT_TRUE(t.ok()) << t.status().to_string();
      auto on = pypi::evaluate_marker(pywin32->marker, *t);
      ASSERT_TRUE(on.ok()) << on.status().to_string();
      EXPECT_EQ(*on, std::string(platform) == "win-64") << platform << " " << py;
    }
  }
  // No derived marker is left naming `extra`: the driver evaluates them as they are.
  for (const PackageRef& p : r->packages) {
    EXPECT_EQ(p.marker.find("extra"), std::string::npos) << p.name << ": " << p.marker;
  }
  // The dev group is on; the mcp-tasks extras (which conflict with it) are off.
  EXPECT_TRUE(find(*r, "pytest"));
  EXPECT_FALSE(find(*r, "fastmcp-tasks"));
}

}  // namespace
}  // namespace mat
