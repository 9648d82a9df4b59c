// Tests of package-index resolution against local indexes only: static file:// trees (PEP 503
// index.html pages, find-links directories) written into a temp dir, and PEP 691 JSON / HTML
// pages served by the in-process HTTP server on 127.0.0.1. No test needs the network.
#include "materializer/pypi_index.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <map>
#include <string>
#include <vector>

#include "fetch/fetcher.h"
#include "fetch/test_http_server.h"
#include "materializer/base/fs.h"
#include "materializer/base/hash.h"
#include "materializer/base/url.h"
#include "materializer/local_files.h"
#include "materializer/pypi_index_internal.h"

namespace mat::pypi {
namespace {

using fetch::testserver::Reply;
using fetch::testserver::TestHttpServer;
using internal::IndexFile;

constexpr const char* kJsonType = "Content-Type: application/vnd.pypi.simple.v1+json";
constexpr const char* kHtmlType = "Content-Type: text/html; charset=utf-8";

TargetPython linux_cp311() {
  TargetPython t;
  t.version = "3.11";
  t.full_version = "3.11.7";
  t.abi = "cp311";
  t.platform = "linux-64";
  t.glibc = "2.31";
  t.tags = {"cp311-cp311-manylinux_2_17_x86_64",
            "cp311-abi3-manylinux_2_17_x86_64",
            "cp311-none-manylinux_2_17_x86_64",
            "py3-none-manylinux_2_17_x86_64",
            "cp311-none-any",
            "py3-none-any"};
  return t;
}

// A distribution file: its bytes decide its sha256.
struct Dist {
  std::string file_name;
  std::string sha256() const { return sha256_hex("bytes of " + file_name); }
  std::string content() const { return "bytes of " + file_name; }
};

PackageRef pinned(std::string name, std::string version, std::vector<std::string> allowed) {
  PackageRef r;
  r.kind = PackageKind::kPypi;
  r.name = std::move(name);
  r.version = std::move(version);
  r.allowed_sha256 = std::move(allowed);
  r.needs_index = true;
  return r;
}

std::string html_page(const std::vector<std::string>& anchors) {
  std::string s =
      "<!DOCTYPE html>\n<html><head><meta name=\"pypi:repository-version\" "
      "content=\"1.1\"><title>Links</title></head><body>\n";
  for (const std::string& a : anchors) s += a + "<br/>\n";
  return s + "</body></html>\n";
}

// <a href="HREF#sha256=..." ATTRS>name</a>; with_hash=false leaves the fragment out.
std::string anchor(const std::string& href, const Dist& d, const std::string& attrs = "",
                   bool with_hash = true) {
  return "<a href=\"" + href + (with_hash ? "#sha256=" + d.sha256() : "") + "\"" +
         (attrs.empty() ? "" : " " + attrs) + ">" + d.file_name + "</a>";
}

class PypiIndexTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { fetch::global_init(); }

  void SetUp() override {
    char tmpl[] = "/tmp/pypi_index_test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    ASSERT_TRUE(server_.ok());
  }
  void TearDown() override { remove_all(root_).ignore(); }

  void write(const std::string& rel, const std::string& data) {
    const std::string path = path_join(root_, rel);
    ASSERT_TRUE(make_dirs(dir_name(path)).ok());
    ASSERT_TRUE(write_file_atomic(path, data).ok()) << path;
  }
  // Writes the dists under <root>/packages/ and returns their names.
  void write_packages(const std::vector<Dist>& dists) {
    for (const Dist& d : dists) write("packages/" + d.file_name, d.content());
  }
  std::string file_index() const { return path_to_file_url(path_join(root_, "simple")); }

  IndexOptions options(std::vector<std::string> indexes) const {
    IndexOptions o;
    o.index_urls = std::move(indexes);
    o.max_retries = 0;
    return o;
  }

  // Resolves one ref; the run-wide result must be ok.
  Status resolve(PackageRef& ref, const IndexOptions& o) {
    std::vector<PackageRef> refs{ref};
    Result<std::vector<Status>> r = resolve_on_index(refs, target_, o);
    EXPECT_TRUE(r.ok()) << r.status().to_string();
    if (!r.ok()) return r.status();
    EXPECT_EQ(r->size(), 1u);
    ref = refs[0];
    return (*r)[0];
  }

  std::string root_;
  TargetPython target_ = linux_cp311();
  TestHttpServer server_;
};

// ---- parsing and URL helpers ----

TEST(PypiIndexUrl, ResolvesRelativeReferences) {
  const std::string base = "https://u:p@host/simple/numpy/";
  EXPECT_EQ(internal::resolve_url(base, "../../packages/a/b/x.whl#sha256=ab"),
            "https://u:p@host/packages/a/b/x.whl#sha256=ab");
  EXPECT_EQ(internal::resolve_url(base, "x.whl"), "https://u:p@host/simple/numpy/x.whl");
  EXPECT_EQ(internal::resolve_url(base, "./x.whl?a=1"), "https://u:p@host/simple/numpy/x.whl?a=1");
  EXPECT_EQ(internal::resolve_url(base, "/files/x.whl"), "https://u:p@host/files/x.whl");
  EXPECT_EQ(internal::resolve_url(base, "//cdn.example/x.whl"), "https://cdn.example/x.whl");
  EXPECT_EQ(internal::resolve_url(base, "https://other/y/../x.whl"), "https://other/x.whl");
  EXPECT_EQ(internal::resolve_url(base, "../../../../../x.whl"), "https://u:p@host/x.whl");
  EXPECT_EQ(internal::resolve_url("https://host/simple/numpy/index.html", "x.whl"),
            "https://host/simple/numpy/x.whl");
  EXPECT_EQ(internal::resolve_url("https://host", "x.whl"), "https://host/x.whl");
  EXPECT_EQ(internal::resolve_url("file:///srv/simple/numpy/index.html", "../../pk/x.whl"),
            "file:///srv/pk/x.whl");
  EXPECT_EQ(internal::resolve_url(base, "#frag"), "https://u:p@host/simple/numpy/#frag");
  EXPECT_EQ(internal::percent_decode("pkg-1.0%2Blocal-py3-none-any.whl"),
            "pkg-1.0+local-py3-none-any.whl");
  EXPECT_EQ(internal::percent_decode("100%"), "100%");
}

TEST(PypiIndexVersion, CanonicalFormsCompareEqual) {
  const std::map<std::string, std::string> cases = {
      {"1.0", "1"},
      {"1.0.0", "1"},
      {"v1.2", "1.2"},
      {"01.002", "1.2"},
      {"1.0-RC1", "1rc1"},
      {"1.0.alpha.2", "1a2"},
      {"1.0c3", "1rc3"},
      {"1.0b", "1b0"},
      {"1.0-1", "1.post1"},
      {"1.0.post", "1.post0"},
      {"1.0-rev2", "1.post2"},
      {"1.0.dev", "1.dev0"},
      {"2!1.0.post0.dev1+Ubuntu-01", "2!1.post0.dev1+ubuntu.1"},
      {"0!1.5", "1.5"},
  };
  for (const auto& [in, want] : cases) {
    EXPECT_EQ(internal::canonical_version(in).value_or("<none>"), want) << in;
  }
  EXPECT_FALSE(internal::canonical_version("1.0+").has_value());
  EXPECT_FALSE(internal::canonical_version("1.0+a.").has_value());
  EXPECT_FALSE(internal::canonical_version("banana").has_value());
  EXPECT_TRUE(internal::same_version("1.26.0", "1.26"));
  EXPECT_FALSE(internal::same_version("1.26.1", "1.26"));
  EXPECT_FALSE(internal::same_version("1.26+cpu", "1.26"));
  EXPECT_TRUE(internal::same_version("Weird-Version", "weird-version"));
}

TEST(PypiIndexSdist, RecognisesSdistNames) {
  EXPECT_TRUE(internal::is_sdist_of("python-dateutil-2.8.2.tar.gz", "python-dateutil", "2.8.2"));
  EXPECT_TRUE(internal::is_sdist_of("python_dateutil-2.8.2.tar.gz", "python-dateutil", "2.8.2"));
  EXPECT_TRUE(internal::is_sdist_of("Foo-1.0.zip", "foo", "1.0.0"));
  EXPECT_FALSE(internal::is_sdist_of("foo-1.1.tar.gz", "foo", "1.0"));
  EXPECT_FALSE(internal::is_sdist_of("foobar-1.0.tar.gz", "foo", "1.0"));
  EXPECT_FALSE(internal::is_sdist_of("foo-1.0-py3-none-any.whl", "foo", "1.0"));
}

TEST(PypiIndexParse, HtmlAnchorsFragmentsAndAttributes) {
  const std::string sha(64, 'a');
  const std::string page =
      "<html><body>"
      "<a href=\"../../packages/x/foo-1.0-py3-none-any.whl#sha256=" +
      std::string(64, 'A') +
      "\" data-requires-python=\"&gt;=3.8,&lt;4\">foo-1.0-py3-none-any.whl</a>"
      "<a href=\"foo-1.0.tar.gz#md5=0123\" data-yanked=\"\">foo-1.0.tar.gz</a>"
      "<a href=\"foo-1.0%2Bcpu-py3-none-any.whl\" data-yanked=\"broken\">x</a>"
      "<p><a href=\"../\">parent</a><a>no href</a></p>"
      "</body></html>";
  Result<std::vector<IndexFile>> r =
      internal::parse_simple_html(page, "https://u:p@host/simple/foo/");
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_EQ(r->size(), 3u);
  const IndexFile& w = (*r)[0];
  EXPECT_EQ(w.file_name, "foo-1.0-py3-none-any.whl");
  EXPECT_EQ(w.url, "https://u:p@host/packages/x/foo-1.0-py3-none-any.whl");
  EXPECT_EQ(w.sha256, sha);
  EXPECT_EQ(w.requires_python, ">=3.8,<4");
  EXPECT_FALSE(w.yanked);
  EXPECT_EQ((*r)[1].sha256, "");  // md5 fragments are not used
  EXPECT_TRUE((*r)[1].yanked);
  EXPECT_EQ((*r)[2].file_name, "foo-1.0+cpu-py3-none-any.whl");
  EXPECT_TRUE((*r)[2].yanked);
}

TEST(PypiIndexParse, HtmlBaseHrefAndEmptyPage) {
  Result<std::vector<IndexFile>> r = internal::parse_simple_html(
      "<html><head><base href=\"https://files.example/dl/\"></head><body>"
      "<a href=\"foo-1.0.tar.gz\">foo</a></body></html>",
      "https://host/simple/foo/");
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].url, "https://files.example/dl/foo-1.0.tar.gz");
  Result<std::vector<IndexFile>> empty = internal::parse_simple_html("", "https://host/");
  ASSERT_TRUE(empty.ok()) << empty.status().to_string();
  EXPECT_TRUE(empty->empty());
}

TEST(PypiIndexParse, JsonFiles) {
  const std::string page = R"({
    "meta": {"api-version": "1.1"},
    "name": "foo",
    "files": [
      {"filename": "foo-1.0-py3-none-any.whl", "url": "../../files/foo-1.0-py3-none-any.whl",
       "hashes": {"sha256": ")" +
                           std::string(64, 'b') + R"("}, "requires-python": ">=3.9",
       "yanked": false, "size": 1234},
      {"filename": "foo-1.0.tar.gz", "url": "https://cdn/foo-1.0.tar.gz", "hashes": {},
       "requires-python": null, "yanked": "bad build"},
      {"filename": 7, "url": "x"},
      "junk"
    ]})";
  Result<std::vector<IndexFile>> r = internal::parse_simple_page(
      page, "application/vnd.pypi.simple.v1+json", "http://h:1/simple/foo/");
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ((*r)[0].url, "http://h:1/files/foo-1.0-py3-none-any.whl");
  EXPECT_EQ((*r)[0].sha256, std::string(64, 'b'));
  EXPECT_EQ((*r)[0].requires_python, ">=3.9");
  EXPECT_EQ((*r)[0].size, 1234);
  EXPECT_FALSE((*r)[0].yanked);
  EXPECT_EQ((*r)[1].sha256, "");
  EXPECT_TRUE((*r)[1].yanked);
  EXPECT_EQ((*r)[2].file_name, "x");  // no usable filename: the URL's last component

  Result<std::vector<IndexFile>> v2 =
      internal::parse_simple_json(R"({"meta": {"api-version": "2.0"}, "files": []})", "http://h/");
  EXPECT_EQ(v2.status().code(), Code::kInvalidInput);
  EXPECT_EQ(internal::parse_simple_json("{not json", "http://h/").status().code(), Code::kCorrupt);
  // No content type (file://): sniffed.
  Result<std::vector<IndexFile>> sniffed =
      internal::parse_simple_page(R"( {"files": []})", "", "file:///x/");
  ASSERT_TRUE(sniffed.ok()) << sniffed.status().to_string();
}

// ---- resolution on file:// indexes ----

TEST_F(PypiIndexTest, FileIndexPicksBestRankedWheelWithAllowedHash) {
  const Dist any{"Foo_Bar-1.0-py3-none-any.whl"};
  const Dist abi3{"Foo_Bar-1.0-cp311-abi3-manylinux_2_17_x86_64.whl"};
  const Dist best_disallowed{"Foo_Bar-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"};
  const Dist mac{"Foo_Bar-1.0-cp311-cp311-macosx_11_0_arm64.whl"};
  write_packages({any, abi3, best_disallowed, mac});
  write("simple/foo-bar/index.html",
        html_page({anchor("../../packages/" + any.file_name, any),
                   anchor("../../packages/" + best_disallowed.file_name, best_disallowed),
                   anchor("../../packages/" + abi3.file_name, abi3),
                   anchor("../../packages/" + mac.file_name, mac)}));
  PackageRef ref = pinned("Foo.Bar", "1.0", {any.sha256(), abi3.sha256(), mac.sha256()});
  Status s = resolve(ref, options({file_index()}));
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(ref.file_name, abi3.file_name);
  EXPECT_EQ(ref.sha256, abi3.sha256());
  EXPECT_EQ(ref.url, path_to_file_url(path_join(root_, "packages/" + abi3.file_name)));
  EXPECT_TRUE(ref.sdists.empty());
}

TEST_F(PypiIndexTest, OtherVersionsAreIgnoredEvenWithAllowedHashes) {
  const Dist old_best{"foo-0.9-cp311-cp311-manylinux_2_17_x86_64.whl"};
  const Dist wanted{"foo-1.0.0-py3-none-any.whl"};
  write("simple/foo/index.html", html_page({anchor("/pk/" + old_best.file_name, old_best),
                                            anchor("/pk/" + wanted.file_name, wanted)}));
  PackageRef ref = pinned("foo", "1.0", {old_best.sha256(), wanted.sha256()});
  Status s = resolve(ref, options({file_index() + "/"}));
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(ref.file_name, wanted.file_name);  // "1.0.0" is "1.0"
  EXPECT_EQ(ref.url, "file:///pk/" + wanted.file_name);
}

TEST_F(PypiIndexTest, RequiresPythonExcludesFiles) {
  const Dist best{"foo-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"};
  const Dist any{"foo-1.0-py3-none-any.whl"};
  write("simple/foo/index.html",
        html_page(
            {anchor("../../packages/" + best.file_name, best, "data-requires-python=\"&gt;=3.12\""),
             anchor("../../packages/" + any.file_name, any, "data-requires-python=\"&gt;=3.8\"")}));
  PackageRef ref = pinned("foo", "1.0", {best.sha256(), any.sha256()});
  Status s = resolve(ref, options({file_index()}));
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(ref.file_name, any.file_name);
}

TEST_F(PypiIndexTest, YankedFilesAreChosenOnlyWhenNothingElseFits) {
  const Dist best{"foo-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"};
  const Dist any{"foo-1.0-py3-none-any.whl"};
  write("simple/foo/index.html", html_page({anchor("/p/" + best.file_name, best, "data-yanked"),
                                            anchor("/p/" + any.file_name, any)}));
  PackageRef ref = pinned("foo", "1.0", {best.sha256(), any.sha256()});
  Status s = resolve(ref, options({file_index()}));
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(ref.file_name, any.file_name);

  // Only the yanked file fits: an exact pin still gets it, as pip does.
  PackageRef only = pinned("foo", "1.0", {best.sha256()});
  s = resolve(only, options({file_index()}));
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(only.file_name, best.file_name);
}

TEST_F(PypiIndexTest, SdistOnlyFillsSdistsAndNoUrl) {
  const Dist sdist{"python-dateutil-2.8.2.tar.gz"};
  const Dist other{"python-dateutil-2.8.1.tar.gz"};
  const Dist mac{"python_dateutil-2.8.2-cp311-cp311-macosx_11_0_arm64.whl"};
  write("simple/python-dateutil/index.html", html_page({anchor("../../p/" + other.file_name, other),
                                                        anchor("../../p/" + sdist.file_name, sdist),
                                                        anchor("../../p/" + mac.file_name, mac)}));
  PackageRef ref = pinned("python_dateutil", "2.8.2", {sdist.sha256(), mac.sha256()});
  Status s = resolve(ref, options({file_index()}));
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(ref.url, "");
  ASSERT_EQ(ref.sdists.size(), 1u);
  EXPECT_EQ(ref.sdists[0].file_name, sdist.file_name);
  EXPECT_EQ(ref.sdists[0].sha256, sdist.sha256());
  EXPECT_EQ(ref.sdists[0].url, path_to_file_url(path_join(root_, "p/" + sdist.file_name)));
}

TEST_F(PypiIndexTest, NotFoundMessageListsFilesSeenAndTags) {
  const Dist bad_hash{"foo-1.0-py3-none-any.whl"};
  const Dist mac{"foo-1.0-cp311-cp311-macosx_11_0_arm64.whl"};
  const Dist py312{"foo-1.0-cp312-cp312-manylinux_2_17_x86_64.whl"};
  const Dist other{"foo-2.0-py3-none-any.whl"};
  write("simple/foo/index.html",
        html_page({anchor("a/" + bad_hash.file_name, bad_hash), anchor("a/" + mac.file_name, mac),
                   anchor("a/" + py312.file_name, py312), anchor("a/" + other.file_name, other)}));
  PackageRef ref = pinned("foo", "1.0", {mac.sha256(), py312.sha256(), std::string(64, 'e')});
  Status s = resolve(ref, options({file_index()}));
  EXPECT_EQ(s.code(), Code::kNotFound) << s.to_string();
  const std::string& m = s.message();
  EXPECT_TRUE(
      m.starts_with("foo==1.0: no file with an allowed hash fits "
                    "cp311-cp311-manylinux_2_17_x86_64, cp311-abi3-manylinux_2_17_x86_64, "
                    "cp311-none-manylinux_2_17_x86_64..."))
      << m;
  EXPECT_NE(m.find(bad_hash.file_name + " (hash not allowed)"), std::string::npos) << m;
  EXPECT_NE(m.find(mac.file_name + " (incompatible tags)"), std::string::npos) << m;
  EXPECT_NE(m.find(py312.file_name + " (incompatible tags)"), std::string::npos) << m;
  EXPECT_EQ(m.find(other.file_name), std::string::npos) << m;
  EXPECT_NE(m.find("other versions: 1 file ignored"), std::string::npos) << m;
  EXPECT_EQ(ref.url, "");
}

TEST_F(PypiIndexTest, LocalFilesWithoutPageHashAreHashed) {
  const Dist good{"foo-1.0-py3-none-any.whl"};
  const Dist tampered{"foo-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"};
  write_packages({good});
  write("packages/" + tampered.file_name, "not the allowed bytes");
  write("simple/foo/index.html",
        html_page({anchor("../../packages/" + tampered.file_name, tampered, "", false),
                   anchor("../../packages/" + good.file_name, good, "", false)}));
  PackageRef ref = pinned("foo", "1.0", {good.sha256(), tampered.sha256()});
  Status s = resolve(ref, options({file_index()}));
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(ref.file_name, good.file_name);  // the better-ranked file's bytes are not allowed
  EXPECT_EQ(ref.sha256, good.sha256());
  EXPECT_EQ(ref.size, static_cast<int64_t>(good.content().size()));
}

TEST_F(PypiIndexTest, FindLinksDirectoryIsListed) {
  const Dist wheel{"foo-1.0-py3-none-any.whl"};
  const Dist other_project{"bar-1.0-py3-none-any.whl"};
  write("wheelhouse/" + wheel.file_name, wheel.content());
  write("wheelhouse/" + other_project.file_name, other_project.content());
  write("wheelhouse/sub/foo-1.0-cp311-cp311-manylinux_2_17_x86_64.whl", "nested: not listed");
  IndexOptions o;
  o.find_links = {path_to_file_url(path_join(root_, "wheelhouse"))};
  PackageRef ref = pinned("foo", "1.0", {wheel.sha256()});
  Status s = resolve(ref, o);
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(ref.file_name, wheel.file_name);
  EXPECT_EQ(ref.url, path_to_file_url(path_join(root_, "wheelhouse/" + wheel.file_name)));
  EXPECT_EQ(ref.size, static_cast<int64_t>(wheel.content().size()));

  // A local find-links HTML page.
  write("links/index.html", html_page({anchor("../wheelhouse/" + wheel.file_name, wheel)}));
  PackageRef paged = pinned("foo", "1.0", {wheel.sha256()});
  o.find_links = {path_to_file_url(path_join(root_, "links/index.html"))};
  s = resolve(paged, o);
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(paged.url, path_to_file_url(path_join(root_, "wheelhouse/" + wheel.file_name)));

  // A plain path works too.
  PackageRef again = pinned("foo", "1.0", {wheel.sha256()});
  o.find_links = {path_join(root_, "wheelhouse")};
  s = resolve(again, o);
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(again.file_name, wheel.file_name);
}

TEST_F(PypiIndexTest, LockListedHashVouchesForFilesWithoutPageHash) {
  // poetry.lock names each file with its hash; a remote page without hashes is then usable.
  const Dist wheel{"foo-1.0-py3-none-any.whl"};
  const Dist unlisted{"foo-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"};
  server_.route("/simple/foo/", [&](int) {
    return Reply{200,
                 html_page({anchor(unlisted.file_name, unlisted, "", false),
                            anchor(wheel.file_name, wheel, "", false)}),
                 {kHtmlType},
                 -1,
                 0};
  });
  PackageRef ref = pinned("foo", "1.0", {});
  ref.wheels = {WheelCandidate{"", wheel.file_name, wheel.sha256(), -1}};
  Status s = resolve(ref, options({server_.url("/simple")}));
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(ref.file_name, wheel.file_name);
  EXPECT_EQ(ref.sha256, wheel.sha256());
  EXPECT_EQ(ref.url, server_.url("/simple/foo/" + wheel.file_name));

  // Without the lock's per-file hash, a remote file without a page hash is refused.
  PackageRef strict = pinned("foo", "1.0", {wheel.sha256()});
  s = resolve(strict, options({server_.url("/simple")}));
  EXPECT_EQ(s.code(), Code::kNotFound);
  EXPECT_NE(s.message().find(wheel.file_name + " (no sha256 on the page)"), std::string::npos)
      << s.message();
}

TEST_F(PypiIndexTest, PageHashMustMatchTheLocksHashForThatFile) {
  const Dist wheel{"foo-1.0-py3-none-any.whl"};
  write("simple/foo/index.html", html_page({anchor("/p/" + wheel.file_name, wheel)}));
  PackageRef ref = pinned("foo", "1.0", {wheel.sha256()});
  ref.wheels = {WheelCandidate{"", wheel.file_name, std::string(64, 'c'), -1}};
  Status s = resolve(ref, options({file_index()}));
  EXPECT_EQ(s.code(), Code::kNotFound);
  EXPECT_NE(s.message().find("differs from the lock's"), std::string::npos) << s.message();
}

TEST_F(PypiIndexTest, RefWithoutAnyHashIsInvalidInput) {
  write("simple/foo/index.html", html_page({}));
  PackageRef ref = pinned("foo", "1.0", {});
  Status s = resolve(ref, options({file_index()}));
  EXPECT_EQ(s.code(), Code::kInvalidInput) << s.to_string();
}

// ---- resolution over HTTP ----

TEST_F(PypiIndexTest, JsonPageOverHttpWithAcceptHeader) {
  const Dist best{"foo-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"};
  const Dist any{"foo-1.0-py3-none-any.whl"};
  const std::string json = R"({"meta": {"api-version": "1.1"}, "name": "foo", "files": [
      {"filename": ")" + any.file_name +
                           R"(", "url": "../../files/)" + any.file_name +
                           R"(", "hashes": {"sha256": ")" + any.sha256() + R"("}, "size": 10},
      {"filename": ")" + best.file_name +
                           R"(", "url": "../../files/)" + best.file_name +
                           R"(", "hashes": {"sha256": ")" + best.sha256() +
                           R"("}, "size": 20, "requires-python": ">=3.8"}]})";
  server_.route("/simple/foo/", [&](int) { return Reply{200, json, {kJsonType}, -1, 0}; });
  PackageRef ref = pinned("FOO", "1.0", {any.sha256(), best.sha256()});
  Status s = resolve(ref, options({server_.url("/simple/")}));
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(ref.file_name, best.file_name);
  EXPECT_EQ(ref.url, server_.url("/files/" + best.file_name));
  EXPECT_EQ(ref.size, 20);
  const std::string head = server_.last_request("/simple/foo/");
  EXPECT_NE(head.find("Accept: application/vnd.pypi.simple.v1+json, "
                      "application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"),
            std::string::npos)
      << head;
}

TEST_F(PypiIndexTest, PrimaryNotFoundThenExtraIndexHit) {
  const Dist wheel{"foo-1.0-py3-none-any.whl"};
  write("simple/foo/index.html", html_page({anchor("/p/" + wheel.file_name, wheel)}));
  PackageRef ref = pinned("foo", "1.0", {wheel.sha256()});
  Status s = resolve(ref, options({server_.url("/primary"), file_index()}));
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(ref.url, "file:///p/" + wheel.file_name);
  EXPECT_EQ(server_.hits("/primary/foo/"), 1);
}

TEST_F(PypiIndexTest, NotFoundOnEveryIndexNamesThePages) {
  write("simple/bar/index.html", html_page({}));  // the file index exists, foo does not
  std::vector<PackageRef> refs{pinned("foo", "1.0", {std::string(64, 'a')}),
                               pinned("bar", "1.0", {std::string(64, 'a')})};
  refs.insert(refs.begin() + 1, PackageRef{});  // a conda entry in between is left alone
  Result<std::vector<Status>> r =
      resolve_on_index(refs, target_, options({server_.url("/simple"), file_index()}));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_EQ(r->size(), 3u);
  EXPECT_TRUE((*r)[1].ok());
  const Status& s = (*r)[0];
  EXPECT_EQ(s.code(), Code::kNotFound) << s.to_string();
  EXPECT_NE(s.message().find("files seen: none (no page found)"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find(server_.url("/simple/foo/") + " (HTTP 404)"), std::string::npos)
      << s.message();
  EXPECT_EQ((*r)[2].code(), Code::kNotFound);
}

TEST_F(PypiIndexTest, FindLinksHtmlPageOverHttp) {
  const Dist wheel{"foo-1.0-py3-none-any.whl"};
  const Dist other{"bar-2.0-py3-none-any.whl"};
  server_.route("/links.html", [&](int) {
    return Reply{
        200,
        html_page({anchor("dl/" + other.file_name, other), anchor("dl/" + wheel.file_name, wheel)}),
        {kHtmlType},
        -1,
        0};
  });
  IndexOptions o = options({});
  o.find_links = {server_.url("/links.html")};
  std::vector<PackageRef> refs{pinned("foo", "1.0", {wheel.sha256()}),
                               pinned("bar", "2.0", {other.sha256()})};
  Result<std::vector<Status>> r = resolve_on_index(refs, target_, o);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_TRUE((*r)[0].ok()) << (*r)[0].to_string();
  EXPECT_TRUE((*r)[1].ok()) << (*r)[1].to_string();
  EXPECT_EQ(refs[0].url, server_.url("/dl/" + wheel.file_name));
  EXPECT_EQ(refs[1].url, server_.url("/dl/" + other.file_name));
  EXPECT_EQ(server_.hits("/links.html"), 1);  // one fetch serves every package
}

TEST_F(PypiIndexTest, CredentialsAreUsedButNeverShown) {
  const Dist wheel{"foo-1.0-py3-none-any.whl"};
  server_.route("/private/simple/foo/", [&](int) {
    return Reply{
        200, html_page({anchor("../../files/" + wheel.file_name, wheel)}), {kHtmlType}, -1, 0};
  });
  const std::string index = server_.url_with_auth("user:s3cret", "/private/simple");
  std::vector<PackageRef> refs{pinned("foo", "1.0", {wheel.sha256()}),
                               pinned("missing", "1.0", {wheel.sha256()})};
  Result<std::vector<Status>> r = resolve_on_index(refs, target_, options({index}));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_TRUE((*r)[0].ok()) << (*r)[0].to_string();
  // Kept for the download (relative to the credentialed page)...
  EXPECT_EQ(refs[0].url, server_.url_with_auth("user:s3cret", "/private/files/" + wheel.file_name));
  EXPECT_NE(server_.last_request("/private/simple/foo/").find("Authorization: Basic"),
            std::string::npos);
  // ...never in messages.
  EXPECT_EQ((*r)[1].code(), Code::kNotFound);
  EXPECT_EQ((*r)[1].message().find("s3cret"), std::string::npos) << (*r)[1].message();
  EXPECT_NE((*r)[1].message().find("***@127.0.0.1"), std::string::npos) << (*r)[1].message();

  // Run-wide errors too.
  int dead_port = 0;
  {
    TestHttpServer gone;
    dead_port = gone.port();
  }
  std::vector<PackageRef> one{pinned("foo", "1.0", {wheel.sha256()})};
  Result<std::vector<Status>> down = resolve_on_index(
      one, target_,
      options({"http://user:s3cret@127.0.0.1:" + std::to_string(dead_port) + "/simple"}));
  ASSERT_FALSE(down.ok());
  EXPECT_EQ(down.status().message().find("s3cret"), std::string::npos) << down.status().message();
}

TEST_F(PypiIndexTest, UnreachableIndexIsRunWideError) {
  int dead_port = 0;
  {
    TestHttpServer gone;
    dead_port = gone.port();
  }
  std::vector<PackageRef> refs{pinned("foo", "1.0", {std::string(64, 'a')}),
                               pinned("bar", "1.0", {std::string(64, 'a')})};
  Result<std::vector<Status>> r = resolve_on_index(
      refs, target_, options({"http://127.0.0.1:" + std::to_string(dead_port) + "/simple"}));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kRetryable) << r.status().to_string();
  EXPECT_NE(r.status().message().find("no package index could be reached"), std::string::npos);

  Result<std::vector<Status>> missing =
      resolve_on_index(refs, target_, options({path_to_file_url(path_join(root_, "nope"))}));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("index directory does not exist"), std::string::npos)
      << missing.status().message();
}

TEST_F(PypiIndexTest, ServerErrorOnOneIndexIsRetryableForThatPackage) {
  server_.route("/flaky/foo/", [](int) { return Reply{503, "busy", {}, -1, 0}; });
  write("simple/bar/index.html", html_page({}));
  std::vector<PackageRef> refs{pinned("foo", "1.0", {std::string(64, 'a')})};
  Result<std::vector<Status>> r =
      resolve_on_index(refs, target_, options({server_.url("/flaky"), file_index()}));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ((*r)[0].code(), Code::kRetryable) << (*r)[0].to_string();
}

TEST_F(PypiIndexTest, OfflineReadsOnlyFileIndexes) {
  const Dist wheel{"foo-1.0-py3-none-any.whl"};
  write("simple/foo/index.html", html_page({anchor("/p/" + wheel.file_name, wheel)}));
  IndexOptions o = options({server_.url("/simple"), file_index()});
  o.offline = true;
  PackageRef ref = pinned("foo", "1.0", {wheel.sha256()});
  Status s = resolve(ref, o);
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(ref.file_name, wheel.file_name);
  EXPECT_EQ(server_.total_hits(), 0);

  // Not on the file index: not found, and the message says the other index was skipped.
  PackageRef absent = pinned("bar", "1.0", {wheel.sha256()});
  s = resolve(absent, o);
  EXPECT_EQ(s.code(), Code::kNotFound) << s.to_string();
  EXPECT_NE(s.message().find(server_.url("/simple/bar/") + " (skipped: offline)"),
            std::string::npos)
      << s.message();

  std::vector<PackageRef> refs{pinned("foo", "1.0", {wheel.sha256()})};
  o.index_urls = {server_.url("/simple")};
  Result<std::vector<Status>> r = resolve_on_index(refs, target_, o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidInput);
  EXPECT_NE(r.status().message().find("offline"), std::string::npos) << r.status().message();
}

TEST_F(PypiIndexTest, NothingToResolveTouchesNoIndex) {
  std::vector<PackageRef> refs{PackageRef{}, pinned("foo", "1.0", {})};
  refs[1].needs_index = false;
  Result<std::vector<Status>> r = resolve_on_index(refs, target_, IndexOptions{});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->size(), 2u);
  std::vector<PackageRef> needs{pinned("foo", "1.0", {std::string(64, 'a')})};
  EXPECT_EQ(resolve_on_index(needs, target_, IndexOptions{}).status().code(), Code::kInvalidInput);
}

TEST_F(PypiIndexTest, ManyPackagesResolveInOneRun) {
  constexpr int kPackages = 60;
  std::vector<PackageRef> refs;
  for (int i = 0; i < kPackages; ++i) {
    const std::string name = "pkg" + std::to_string(i);
    const Dist d{name + "-1.0-py3-none-any.whl"};
    server_.route("/simple/" + name + "/", [d](int) {
      return Reply{200, html_page({anchor("/f/" + d.file_name, d)}), {kHtmlType}, -1, 0};
    });
    refs.push_back(pinned(name, "1.0", {d.sha256()}));
  }
  refs.push_back(refs[0]);  // the same project twice: one page fetch
  Result<std::vector<Status>> r =
      resolve_on_index(refs, target_, options({server_.url("/simple")}));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  for (int i = 0; i <= kPackages; ++i) {
    EXPECT_TRUE((*r)[i].ok()) << (*r)[i].to_string();
    EXPECT_EQ(refs[i].file_name, refs[i].name + "-1.0-py3-none-any.whl");
  }
  EXPECT_EQ(server_.total_hits(), kPackages);
}

// Issue 11, defect 11: a page may not make us read a local file outside the allowed folders,
// not even to hash it; one inside them is read (and hashed) as before.
TEST_F(PypiIndexTest, PageLinksToLocalFilesFollowTheFilePolicy) {
  const Dist secret{"foo-1.0-py3-none-any.whl"};
  write("outside/" + secret.file_name, secret.content());
  write("inside/" + secret.file_name, secret.content());
  const std::string outside = path_to_file_url(path_join(root_, "outside/" + secret.file_name));
  const std::string inside = path_to_file_url(path_join(root_, "inside/" + secret.file_name));
  server_.route("/links.html", [&](int) {
    return Reply{200, html_page({anchor(outside, secret, "", false)}), {kHtmlType}, -1, 0};
  });
  Result<LocalFiles> files = LocalFiles::make(path_join(root_, "inside/lock.txt"),
                                              {path_join(root_, "inside")});
  ASSERT_TRUE(files.ok()) << files.status().to_string();
  IndexOptions o = options({});
  o.find_links = {server_.url("/links.html")};
  o.local_files = &*files;
  PackageRef ref = pinned("foo", "1.0", {secret.sha256()});
  Status s = resolve(ref, o);
  EXPECT_EQ(s.code(), Code::kNotFound) << s.to_string();
  EXPECT_NE(s.message().find("outside the allowed folders"), std::string::npos) << s.message();
  EXPECT_TRUE(ref.url.empty());
  server_.route("/links.html", [&](int) {
    return Reply{200, html_page({anchor(inside, secret, "", false)}), {kHtmlType}, -1, 0};
  });
  PackageRef ok = pinned("foo", "1.0", {secret.sha256()});
  Status s2 = resolve(ok, o);
  ASSERT_TRUE(s2.ok()) << s2.to_string();
  EXPECT_EQ(ok.url, inside);
}

}  // namespace
}  // namespace mat::pypi
