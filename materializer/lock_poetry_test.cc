// poetry.lock: 1.x and 2.x files, sources, and python-versions translation.
#include <string>
#include <vector>

#include "materializer/lock.h"
#include "materializer/lock_pypi_test_util.h"
#include "materializer/lock_toml_internal.h"

namespace mat {
namespace {

using namespace lock_test_util;

const char kPoetryV2[] = R"([[package]]
name = "certifi"
version = "2024.2.2"
description = "x"
optional = false
python-versions = ">=3.6"
groups = ["main"]
files = [
    {file = "certifi-2024.2.2-py3-none-any.whl", hash = "sha256:@A@"},
    {file = "certifi-2024.2.2.tar.gz", hash = "sha256:@B@"},
]

[[package]]
name = "torch"
version = "2.3.0+cpu"
optional = true
python-versions = "^3.8"
markers = {main = "sys_platform == \"linux\""}
files = [
    {file = "torch-2.3.0+cpu-cp311-cp311-linux_x86_64.whl", hash = "sha256:@C@"},
    {file = "torch-2.3.0+cpu-cp311-cp311-linux_x86_64.whl.metadata", hash = "md5:00"},
]

[package.source]
type = "legacy"
url = "https://download.pytorch.org/whl/cpu"
reference = "torch-cpu"

[[package]]
name = "mylib"
version = "0.1.0"
python-versions = "*"
files = []

[package.source]
type = "git"
url = "https://github.com/o/mylib.git"
reference = "main"
resolved_reference = "abc123"

[[package]]
name = "local"
version = "0.2.0"
python-versions = ">=3.8 <4.0"
files = [{file = "local-0.2.0-py3-none-any.whl", hash = "sha256:@D@"}]

[package.source]
type = "file"
url = "dist/local-0.2.0-py3-none-any.whl"

[metadata]
lock-version = "2.1"
python-versions = "^3.9"
content-hash = "0000"
)";

TEST(Poetry, V2FilesSourcesAndPythonVersions) {
  auto r = parse_lock(fix(kPoetryV2), "/p/poetry.lock", linux64());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->format, LockFormat::kPoetry);
  EXPECT_EQ(r->version, 2);
  EXPECT_EQ(r->requires_python, ">=3.9,<4.0");
  ASSERT_EQ(r->packages.size(), 4u);
  const PackageRef& certifi = r->packages[0];
  EXPECT_EQ(certifi.kind, PackageKind::kPypi);
  EXPECT_TRUE(certifi.needs_index);
  EXPECT_TRUE(certifi.requested);
  EXPECT_EQ(certifi.requires_python, ">=3.6");
  EXPECT_EQ(certifi.allowed_sha256, (std::vector<std::string>{kA, kB}));
  ASSERT_EQ(certifi.wheels.size(), 1u);
  EXPECT_EQ(certifi.wheels[0].file_name, "certifi-2024.2.2-py3-none-any.whl");
  EXPECT_EQ(certifi.wheels[0].url, "");
  EXPECT_EQ(certifi.wheels[0].sha256, kA);
  ASSERT_EQ(certifi.sdists.size(), 1u);
  EXPECT_EQ(certifi.sdists[0].file_name, "certifi-2024.2.2.tar.gz");
  EXPECT_EQ(certifi.line, 1);
  const PackageRef& torch = r->packages[1];
  EXPECT_TRUE(torch.needs_index);
  EXPECT_EQ(torch.channel, "https://download.pytorch.org/whl/cpu");
  EXPECT_EQ(torch.requires_python, ">=3.8,<4.0");
  EXPECT_EQ(torch.marker, "sys_platform == \"linux\"");
  EXPECT_EQ(torch.allowed_sha256, std::vector<std::string>{kC});  // md5 ignored
  EXPECT_EQ(torch.line, 13);
  const PackageRef& mylib = r->packages[2];
  EXPECT_FALSE(mylib.needs_index);
  EXPECT_EQ(mylib.source_kind, "git");
  EXPECT_EQ(mylib.url, "git+https://github.com/o/mylib.git@abc123");
  EXPECT_EQ(mylib.requires_python, "");
  const PackageRef& local = r->packages[3];
  EXPECT_FALSE(local.needs_index);
  EXPECT_EQ(local.source_kind, "");
  EXPECT_EQ(local.url, "file:///p/dist/local-0.2.0-py3-none-any.whl");
  EXPECT_EQ(local.sha256, kD);
  EXPECT_EQ(local.requires_python, ">=3.8,<4.0");
  ASSERT_EQ(local.wheels.size(), 1u);
}

TEST(Poetry, V1MetadataFiles) {
  const std::string text = fix(R"([[package]]
name = "Flask"
version = "2.0.0"
category = "main"
optional = false
python-versions = ">=3.6"

[[package]]
name = "zope.interface"
version = "5.0"
category = "dev"
optional = false
python-versions = ">=2.7, !=3.0.*, !=3.1.*"

[metadata]
lock-version = "1.1"
python-versions = "~3.8"
content-hash = "x"

[metadata.files]
flask = [
    {file = "Flask-2.0.0-py3-none-any.whl", hash = "sha256:@A@"},
]
"zope.interface" = [
    {file = "zope.interface-5.0.tar.gz", hash = "sha256:@B@"},
]
)");
  auto r = parse_lock(text, "/p/poetry.lock", linux64());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->version, 1);
  EXPECT_EQ(r->requires_python, ">=3.8,<3.9");
  ASSERT_EQ(r->packages.size(), 2u);
  EXPECT_EQ(r->packages[0].allowed_sha256, std::vector<std::string>{kA});
  EXPECT_EQ(r->packages[0].wheels.size(), 1u);
  EXPECT_EQ(r->packages[1].allowed_sha256, std::vector<std::string>{kB});
  EXPECT_EQ(r->packages[1].sdists.size(), 1u);
  EXPECT_EQ(r->packages[1].requires_python, ">=2.7,!=3.0.*,!=3.1.*");
}

TEST(Poetry, Errors) {
  ExpectInvalid(parse_lock(R"([[package]]
name = "a"
version = "1"
files = []

[metadata]
lock-version = "2.0"
content-hash = "x"
)",
                           "poetry.lock", linux64()),
                {"poetry.lock:1: package 'a' 1: no sha256 file hashes in the lock"});
  ExpectInvalid(parse_lock(R"([[package]]
name = "a"
version = "1"
files = [{file = "a-1.tar.gz", hash = "sha256:nothex"}]
[metadata]
lock-version = "2.0"
)",
                           "poetry.lock", linux64()),
                {"poetry.lock:4: package 'a': field 'files[0].hash' is not sha256:<64 hex"});
  ExpectInvalid(parse_lock("[[package]]\nname = \"a\"\nversion = \"1\"\n[package.source]\n"
                           "type = \"svn\"\nurl = \"x\"\n[metadata]\nlock-version = \"2.0\"\n",
                           "poetry.lock", linux64()),
                {"poetry.lock:5: package 'a': field 'source.type' is 'svn'"});
  ExpectInvalid(parse_lock("[metadata]\nlock-version = \"3.0\"\n", "poetry.lock", linux64()),
                {"poetry.lock:2: unsupported poetry lock-version '3.0'"});
}

TEST(PoetryToPep440, TranslatesCaretTildeAndWildcards) {
  using lock_internal::poetry_to_pep440;
  EXPECT_EQ(poetry_to_pep440("*"), "");
  EXPECT_EQ(poetry_to_pep440(""), "");
  EXPECT_EQ(poetry_to_pep440("^3.8"), ">=3.8,<4.0");
  EXPECT_EQ(poetry_to_pep440("^1.2.3"), ">=1.2.3,<2.0.0");
  EXPECT_EQ(poetry_to_pep440("^0.2.3"), ">=0.2.3,<0.3.0");
  EXPECT_EQ(poetry_to_pep440("^0.0.3"), ">=0.0.3,<0.0.4");
  EXPECT_EQ(poetry_to_pep440("^0"), ">=0,<1");
  EXPECT_EQ(poetry_to_pep440("~3.9"), ">=3.9,<3.10");
  EXPECT_EQ(poetry_to_pep440("~1.2.3"), ">=1.2.3,<1.3.0");
  EXPECT_EQ(poetry_to_pep440("~1"), ">=1,<2");
  EXPECT_EQ(poetry_to_pep440("~=3.8"), "~=3.8");
  EXPECT_EQ(poetry_to_pep440(">=3.8,<4.0"), ">=3.8,<4.0");
  EXPECT_EQ(poetry_to_pep440(">= 3.8, < 4.0"), ">=3.8,<4.0");
  EXPECT_EQ(poetry_to_pep440(">=3.6 <4"), ">=3.6,<4");
  EXPECT_EQ(poetry_to_pep440("3.8.*"), "==3.8.*");
  EXPECT_EQ(poetry_to_pep440("3.9"), "==3.9");
  EXPECT_EQ(poetry_to_pep440("=3.9"), "==3.9");
  EXPECT_EQ(poetry_to_pep440("2.7.* || >=3.5"), "");  // a union: not one specifier set
  EXPECT_EQ(poetry_to_pep440("^3.8a1"), "");          // cannot bump a pre-release: widen
}

}  // namespace
}  // namespace mat
