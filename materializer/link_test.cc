// link_packages end to end on hand-built cache trees (no archives): every path type, link
// modes, noarch python, legacy metadata, clobbering, records, history and failure handling.
#include "materializer/link.h"
#include "materializer/interrupt.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "materializer/base/beneath.h"
#include "materializer/base/fs.h"
#include "materializer/base/hash.h"
#include "materializer/link_internal.h"

namespace mat {
namespace {

using nlohmann::json;
using namespace std::string_literals;

const std::string kPh = link_internal::kDefaultPlaceholder;

struct stat lstat_or_die(const std::string& p) {
  struct stat st {};
  EXPECT_EQ(lstat(p.c_str(), &st), 0) << p;
  return st;
}

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return out;
  while (struct dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

std::string slurp(const std::string& p) {
  Result<std::string> r = read_file(p);
  EXPECT_TRUE(r.ok()) << p << ": " << r.status().to_string();
  return r.ok() ? *r : "";
}

// Builds a package tree the way cache/ extracts one: files plus info/.
class Tree {
 public:
  Tree(std::string dir, std::string name, std::string version, std::string build)
      : dir_(std::move(dir)) {
    index_ = {{"name", name},         {"version", version},        {"build", build},
              {"build_number", 0},    {"depends", json::array()},  {"license", "MIT"},
              {"subdir", "linux-64"}, {"timestamp", 1700000000000}};
    EXPECT_TRUE(make_dirs(dir_ + "/info").ok());
  }
  const std::string& dir() const { return dir_; }
  json& index() { return index_; }

  // Adds a regular file; `extra` is merged into its paths.json entry.
  void file(const std::string& path, const std::string& content, mode_t mode = 0644,
            json extra = json::object()) {
    write(path, content, mode);
    json e = {{"_path", path},
              {"path_type", "hardlink"},
              {"sha256", sha256_hex(content)},
              {"size_in_bytes", content.size()}};
    e.update(extra);
    paths_.push_back(e);
  }
  void softlink(const std::string& path, const std::string& target) {
    EXPECT_TRUE(make_dirs(dir_name(dir_ + "/" + path)).ok());
    EXPECT_EQ(symlink(target.c_str(), (dir_ + "/" + path).c_str()), 0);
    paths_.push_back({{"_path", path}, {"path_type", "softlink"}});
  }
  void directory(const std::string& path) {
    EXPECT_TRUE(make_dirs(dir_ + "/" + path).ok());
    paths_.push_back({{"_path", path}, {"path_type", "directory"}});
  }
  void info(const std::string& name, const std::string& content) {
    write("info/" + name, content, 0644);
  }
  // Writes index.json and (unless legacy) paths.json.
  void finish(bool legacy = false) {
    info("index.json", index_.dump());
    if (!legacy) info("paths.json", json{{"paths_version", 1}, {"paths", paths_}}.dump());
  }
  void write(const std::string& path, const std::string& content, mode_t mode) {
    std::string full = dir_ + "/" + path;
    EXPECT_TRUE(make_dirs(dir_name(full)).ok());
    EXPECT_TRUE(write_file_atomic(full, content, mode).ok());
    EXPECT_EQ(chmod(full.c_str(), mode), 0);
  }

 private:
  std::string dir_;
  json index_;
  json paths_ = json::array();
};

class LinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mlt-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    cache_ = root_ + "/cache";
    prefix_ = root_ + "/prefix";
  }
  void TearDown() override { remove_all(root_).ignore(); }

  Tree tree(const std::string& name, const std::string& version, const std::string& build) {
    return Tree(cache_ + "/v1/trees/" + name + "-" + build + "/pkg", name, version, build);
  }
  PackageRef& ref(const std::string& name, const std::string& version, const std::string& build) {
    auto r = std::make_unique<PackageRef>();
    r->name = name;
    r->version = version;
    r->build = build;
    r->subdir = "linux-64";
    r->channel = "https://user:secret@conda.anaconda.org/conda-forge";
    r->file_name = name + "-" + version + "-" + build + ".conda";
    r->url = r->channel + "/linux-64/" + r->file_name;
    r->sha256 = std::string(64, 'a');
    r->md5 = std::string(32, 'b');
    refs_.push_back(std::move(r));
    return *refs_.back();
  }
  LinkInput input(const Tree& t, const PackageRef& r) {
    return LinkInput{&r, t.dir(), cache_ + "/v1/archives/" + r.file_name, 1234};
  }
  LinkOptions options(LinkMode mode = LinkMode::kAuto) {
    LinkOptions o;
    o.prefix = prefix_;
    o.cache_root = cache_;
    o.mode = mode;
    o.python_version = "3.11";
    o.command_line = "materializer install -p " + prefix_;
    return o;
  }
  json record(const std::string& fn) { return json::parse(slurp(prefix_ + "/conda-meta/" + fn)); }
  std::string p(const std::string& rel) const { return prefix_ + "/" + rel; }

  std::string root_, cache_, prefix_;
  std::vector<std::unique_ptr<PackageRef>> refs_;
};

// One package with every kind of path conda knows.
Tree full_tree(LinkTest* t, Tree tr) {
  (void)t;
  tr.file("bin/tool", "#!/bin/sh\necho hi\n", 0755);
  tr.file("lib/libfoo.so.1", "ELF...", 0755);
  tr.softlink("lib/libfoo.so", "libfoo.so.1");
  tr.directory("share/empty");
  tr.file("etc/conf.sh", "#!" + kPh + "/bin/bash\nPREFIX=" + kPh + "\n", 0750,
          {{"file_mode", "text"}, {"prefix_placeholder", kPh}});
  tr.file("lib/libbin.so",
          "\x7f"
          "ELF" +
              kPh + "/lib" + '\0' + "end",
          0755, {{"file_mode", "binary"}, {"prefix_placeholder", kPh}});
  tr.file("share/nolink.dat", "private copy", 0600, {{"no_link", true}});
  tr.finish();
  return tr;
}

TEST_F(LinkTest, LinksEveryPathTypeWithHardlinksOnOneFileSystem) {
  Tree tr = full_tree(this, tree("foo", "1.0", "h0_0"));
  std::string conf_before = slurp(tr.dir() + "/etc/conf.sh");
  std::string bin_before = slurp(tr.dir() + "/lib/libbin.so");
  std::vector<LinkInput> in = {input(tr, ref("foo", "1.0", "h0_0"))};
  Result<LinkSummary> s = link_packages(in, options());
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  ASSERT_TRUE(s->results[0].status.ok()) << s->results[0].status.to_string();
  EXPECT_TRUE(s->complete);
  EXPECT_EQ(s->mode_used, LinkMode::kHardlink);
  EXPECT_EQ(s->results[0].files, 7);
  EXPECT_EQ(s->results[0].prefix_replaced, 2);

  // Hardlinks share the inode; files needing their own bytes do not.
  EXPECT_EQ(lstat_or_die(p("bin/tool")).st_ino, lstat_or_die(tr.dir() + "/bin/tool").st_ino);
  EXPECT_EQ(lstat_or_die(p("bin/tool")).st_mode & 07777, 0755u);
  EXPECT_NE(lstat_or_die(p("etc/conf.sh")).st_ino, lstat_or_die(tr.dir() + "/etc/conf.sh").st_ino);
  EXPECT_NE(lstat_or_die(p("share/nolink.dat")).st_ino,
            lstat_or_die(tr.dir() + "/share/nolink.dat").st_ino);
  EXPECT_EQ(slurp(p("share/nolink.dat")), "private copy");
  EXPECT_EQ(lstat_or_die(p("share/nolink.dat")).st_mode & 07777, 0600u);

  // Symlink recreated with the same target; empty directory created.
  struct stat ls = lstat_or_die(p("lib/libfoo.so"));
  EXPECT_TRUE(S_ISLNK(ls.st_mode));
  char target[64] = {0};
  ASSERT_GT(readlink(p("lib/libfoo.so").c_str(), target, sizeof(target) - 1), 0);
  EXPECT_STREQ(target, "libfoo.so.1");
  EXPECT_TRUE(S_ISDIR(lstat_or_die(p("share/empty")).st_mode));

  // Prefix replaced in the copies, modes kept, cache untouched.
  EXPECT_EQ(slurp(p("etc/conf.sh")), "#!" + prefix_ + "/bin/bash\nPREFIX=" + prefix_ + "\n");
  EXPECT_EQ(lstat_or_die(p("etc/conf.sh")).st_mode & 07777, 0750u);
  std::string bin = slurp(p("lib/libbin.so"));
  EXPECT_EQ(bin.size(), bin_before.size());
  EXPECT_EQ(bin.substr(0, 4 + prefix_.size() + 5),
            "\x7f"
            "ELF" +
                prefix_ + "/lib\0"s);
  EXPECT_EQ(slurp(tr.dir() + "/etc/conf.sh"), conf_before);
  EXPECT_EQ(slurp(tr.dir() + "/lib/libbin.so"), bin_before);

  EXPECT_FALSE(path_exists(p("conda-meta/.materializer-incomplete")));
  // The probe leaves nothing behind in the cache's tmp area or the prefix.
  EXPECT_EQ(list_dir(cache_ + "/v1/tmp"), std::vector<std::string>{});
  EXPECT_EQ(list_dir(prefix_),
            (std::vector<std::string>{"bin", "conda-meta", "etc", "lib", "share"}));
}

TEST_F(LinkTest, CopyModeGivesDistinctInodesWithSameContentAndMode) {
  Tree tr = full_tree(this, tree("foo", "1.0", "h0_0"));
  std::vector<LinkInput> in = {input(tr, ref("foo", "1.0", "h0_0"))};
  Result<LinkSummary> s = link_packages(in, options(LinkMode::kCopy));
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE(s->results[0].status.ok()) << s->results[0].status.to_string();
  EXPECT_EQ(s->mode_used, LinkMode::kCopy);
  struct stat a = lstat_or_die(p("bin/tool")), b = lstat_or_die(tr.dir() + "/bin/tool");
  EXPECT_NE(a.st_ino, b.st_ino);
  EXPECT_EQ(a.st_mode & 07777, 0755u);
  EXPECT_EQ(a.st_mtim.tv_sec, b.st_mtim.tv_sec);
  EXPECT_EQ(slurp(p("bin/tool")), "#!/bin/sh\necho hi\n");
  EXPECT_GT(s->results[0].bytes_copied, 0);
  EXPECT_EQ(record("foo-1.0-h0_0.json")["link"]["type"], 3);
}

TEST_F(LinkTest, ForcedHardlinkModeLinks) {
  Tree tr = full_tree(this, tree("foo", "1.0", "h0_0"));
  std::vector<LinkInput> in = {input(tr, ref("foo", "1.0", "h0_0"))};
  Result<LinkSummary> s = link_packages(in, options(LinkMode::kHardlink));
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE(s->results[0].status.ok()) << s->results[0].status.to_string();
  EXPECT_EQ(lstat_or_die(p("lib/libfoo.so.1")).st_ino,
            lstat_or_die(tr.dir() + "/lib/libfoo.so.1").st_ino);
}

TEST_F(LinkTest, ExistingHardlinkIntoCacheIsReplacedNotWrittenThrough) {
  Tree tr = full_tree(this, tree("foo", "1.0", "h0_0"));
  std::string conf_before = slurp(tr.dir() + "/etc/conf.sh");
  ASSERT_TRUE(make_dirs(p("etc")).ok());
  ASSERT_EQ(link((tr.dir() + "/etc/conf.sh").c_str(), p("etc/conf.sh").c_str()), 0);
  ASSERT_TRUE(make_dirs(p("bin")).ok());
  ASSERT_TRUE(write_file_atomic(p("bin/tool"), "stale").ok());
  std::vector<LinkInput> in = {input(tr, ref("foo", "1.0", "h0_0"))};
  Result<LinkSummary> s = link_packages(in, options());
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE(s->results[0].status.ok()) << s->results[0].status.to_string();
  EXPECT_EQ(slurp(tr.dir() + "/etc/conf.sh"), conf_before);
  EXPECT_EQ(slurp(p("etc/conf.sh")), "#!" + prefix_ + "/bin/bash\nPREFIX=" + prefix_ + "\n");
  EXPECT_EQ(slurp(p("bin/tool")), "#!/bin/sh\necho hi\n");
}

TEST_F(LinkTest, RecordHasCondaFieldsAndHistoryIsAppended) {
  Tree tr = full_tree(this, tree("foo", "1.0", "h0_0"));
  std::vector<LinkInput> in = {input(tr, ref("foo", "1.0", "h0_0"))};
  Result<LinkSummary> s = link_packages(in, options());
  ASSERT_TRUE(s.ok());
  json r = record("foo-1.0-h0_0.json");
  EXPECT_EQ(r["name"], "foo");
  EXPECT_EQ(r["version"], "1.0");
  EXPECT_EQ(r["build"], "h0_0");
  EXPECT_EQ(r["build_number"], 0);
  EXPECT_EQ(r["license"], "MIT");
  EXPECT_EQ(r["fn"], "foo-1.0-h0_0.conda");
  EXPECT_EQ(r["sha256"], std::string(64, 'a'));
  EXPECT_EQ(r["md5"], std::string(32, 'b'));
  EXPECT_EQ(r["size"], 1234);
  EXPECT_EQ(r["subdir"], "linux-64");
  EXPECT_EQ(r["requested_spec"], "");
  EXPECT_EQ(r["url"].get<std::string>().find("secret"), std::string::npos) << r["url"];
  EXPECT_EQ(r["channel"].get<std::string>().find("secret"), std::string::npos);
  EXPECT_EQ(r["link"]["type"], 1);
  EXPECT_EQ(r["link"]["source"], tr.dir());
  EXPECT_EQ(r["extracted_package_dir"], tr.dir());
  EXPECT_EQ(r["package_tarball_full_path"], cache_ + "/v1/archives/foo-1.0-h0_0.conda");
  json files = r["files"];
  ASSERT_EQ(files.size(), 7u);
  EXPECT_EQ(files[0], "bin/tool");
  EXPECT_EQ(files[2], "lib/libfoo.so");
  json paths = r["paths_data"]["paths"];
  EXPECT_EQ(r["paths_data"]["paths_version"], 1);
  ASSERT_EQ(paths.size(), 7u);
  EXPECT_EQ(paths[0]["_path"], "bin/tool");
  EXPECT_FALSE(paths[0].contains("sha256_in_prefix"));
  EXPECT_EQ(paths[2]["path_type"], "softlink");
  EXPECT_EQ(paths[3]["path_type"], "directory");
  EXPECT_EQ(paths[4]["_path"], "etc/conf.sh");
  EXPECT_EQ(paths[4]["file_mode"], "text");
  EXPECT_EQ(paths[4]["prefix_placeholder"], kPh);
  EXPECT_EQ(paths[4]["sha256_in_prefix"], sha256_hex(slurp(p("etc/conf.sh"))));
  EXPECT_EQ(paths[5]["file_mode"], "binary");
  EXPECT_EQ(paths[5]["sha256_in_prefix"], sha256_hex(slurp(p("lib/libbin.so"))));

  std::string hist = slurp(p("conda-meta/history"));
  EXPECT_EQ(hist.substr(0, 4), "==> ");
  EXPECT_NE(hist.find(" <==\n# cmd: materializer install -p " + prefix_ +
                      "\n# materializer version: 0.1.0\n+conda-forge/linux-64::foo-1.0-h0_0\n"),
            std::string::npos)
      << hist;
  // A second run appends; the package is already recorded, so no "+" line.
  ASSERT_TRUE(link_packages(in, options()).ok());
  std::string hist2 = slurp(p("conda-meta/history"));
  EXPECT_EQ(hist2.substr(0, hist.size()), hist);
  EXPECT_EQ(hist2.find("+", hist.size()), std::string::npos);
}

TEST_F(LinkTest, StaleRecordOfSameNameIsRemoved) {
  ASSERT_TRUE(make_dirs(p("conda-meta")).ok());
  json old = {{"name", "foo"},
              {"version", "0.9"},
              {"build", "old_1"},
              {"channel", "https://conda.anaconda.org/conda-forge/linux-64"},
              {"subdir", "linux-64"}};
  ASSERT_TRUE(write_file_atomic(p("conda-meta/foo-0.9-old_1.json"), old.dump()).ok());
  ASSERT_TRUE(write_file_atomic(p("conda-meta/foo-bar-2.0-x_0.json"), "{}").ok());
  Tree tr = full_tree(this, tree("foo", "1.0", "h0_0"));
  std::vector<LinkInput> in = {input(tr, ref("foo", "1.0", "h0_0"))};
  ASSERT_TRUE(link_packages(in, options()).ok());
  EXPECT_FALSE(path_exists(p("conda-meta/foo-0.9-old_1.json")));
  EXPECT_TRUE(path_exists(p("conda-meta/foo-bar-2.0-x_0.json")));  // another package
  EXPECT_TRUE(path_exists(p("conda-meta/foo-1.0-h0_0.json")));
  EXPECT_NE(slurp(p("conda-meta/history")).find("-conda-forge/linux-64::foo-0.9-old_1\n"),
            std::string::npos);
}

TEST_F(LinkTest, NoarchPythonMapsPathsAndWritesEntryPoints) {
  Tree tr = tree("tool", "2.0", "pyhd8ed1ab_0");
  tr.index()["noarch"] = "python";
  tr.index()["subdir"] = "noarch";
  tr.file("site-packages/tool/__init__.py", "x = 1\n");
  tr.file("python-scripts/helper", "#!" + kPh + "/bin/python\n", 0755,
          {{"file_mode", "text"}, {"prefix_placeholder", kPh}});
  tr.file("info/licenses/LICENSE", "MIT\n");
  tr.info("link.json",
          json{{"noarch",
                {{"type", "python"},
                 {"entry_points", {"tool = tool.cli:main", "tool-x=tool.cli:App.run"}}}}}
              .dump());
  tr.finish();
  std::vector<LinkInput> in = {input(tr, ref("tool", "2.0", "pyhd8ed1ab_0"))};
  Result<LinkSummary> s = link_packages(in, options());
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE(s->results[0].status.ok()) << s->results[0].status.to_string();
  EXPECT_EQ(slurp(p("lib/python3.11/site-packages/tool/__init__.py")), "x = 1\n");
  EXPECT_EQ(slurp(p("bin/helper")), "#!" + prefix_ + "/bin/python\n");
  EXPECT_TRUE(path_exists(p("info/licenses/LICENSE")));
  std::string ep = slurp(p("bin/tool"));
  EXPECT_EQ(ep, "#!" + prefix_ +
                    "/bin/python3.11\n"
                    "# -*- coding: utf-8 -*-\n"
                    "import re\n"
                    "import sys\n"
                    "\n"
                    "from tool.cli import main\n"
                    "\n"
                    "if __name__ == '__main__':\n"
                    "    sys.argv[0] = re.sub(r'(-script\\.pyw?|\\.exe)?$', '', sys.argv[0])\n"
                    "    sys.exit(main())\n");
  EXPECT_EQ(lstat_or_die(p("bin/tool")).st_mode & 07777, 0755u);
  EXPECT_NE(slurp(p("bin/tool-x")).find("from tool.cli import App\n"), std::string::npos);
  EXPECT_NE(slurp(p("bin/tool-x")).find("sys.exit(App.run())"), std::string::npos);

  json r = record("tool-2.0-pyhd8ed1ab_0.json");
  json files = r["files"];
  ASSERT_EQ(files.size(), 5u);
  EXPECT_EQ(files[0], "lib/python3.11/site-packages/tool/__init__.py");
  EXPECT_EQ(files[1], "bin/helper");
  EXPECT_EQ(files[3], "bin/tool");
  EXPECT_EQ(files[4], "bin/tool-x");
  json ep_rec = r["paths_data"]["paths"][3];
  EXPECT_EQ(ep_rec["path_type"], "unix_python_entry_point");
  EXPECT_EQ(ep_rec["sha256"], sha256_hex(ep));
  EXPECT_EQ(r["subdir"], "noarch");
  EXPECT_EQ(r["noarch"], "python");
}

// `--python-version 3.11.7` is accepted: the launcher and site-packages still use X.Y only
// (conda's python is bin/python3.11, never bin/python3.11.7).
TEST_F(LinkTest, NoarchPythonUsesMajorMinorOfAFullPythonVersion) {
  Tree tr = tree("tool", "2.0", "pyhd8ed1ab_0");
  tr.index()["noarch"] = "python";
  tr.index()["subdir"] = "noarch";
  tr.file("site-packages/tool/__init__.py", "x = 1\n");
  tr.info(
      "link.json",
      json{{"noarch", {{"type", "python"}, {"entry_points", {"tool = tool.cli:main"}}}}}.dump());
  tr.finish();
  std::vector<LinkInput> in = {input(tr, ref("tool", "2.0", "pyhd8ed1ab_0"))};
  LinkOptions o = options();
  o.python_version = "3.11.7";
  Result<LinkSummary> s = link_packages(in, o);
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE(s->results[0].status.ok()) << s->results[0].status.to_string();
  EXPECT_EQ(slurp(p("lib/python3.11/site-packages/tool/__init__.py")), "x = 1\n");
  EXPECT_FALSE(path_exists(p("lib/python3.11.7")));
  std::string ep = slurp(p("bin/tool"));
  EXPECT_EQ(ep.substr(0, ep.find('\n')), "#!" + prefix_ + "/bin/python3.11") << ep;
}

TEST_F(LinkTest, NoarchPythonWithoutPythonVersionFailsOnlyThatPackage) {
  Tree py = tree("six", "1.16", "pyh_0");
  py.index()["noarch"] = "python";
  py.file("site-packages/six.py", "six\n");
  py.finish();
  Tree c = tree("zlib", "1.3", "h0_0");
  c.file("lib/libz.so", "z");
  c.finish();
  std::vector<LinkInput> in = {input(py, ref("six", "1.16", "pyh_0")),
                               input(c, ref("zlib", "1.3", "h0_0"))};
  LinkOptions o = options();
  o.python_version = "";
  Result<LinkSummary> s = link_packages(in, o);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->results[0].status.code(), Code::kInvalidInput);
  EXPECT_EQ(s->results[0].status.message(),
            "six-1.16-pyh_0: needs the python version: lock has no python package; "
            "pass --python-version X.Y");
  EXPECT_TRUE(s->results[1].status.ok());
  EXPECT_FALSE(s->complete);
  EXPECT_FALSE(path_exists(p("lib/python/site-packages/six.py")));
  EXPECT_TRUE(path_exists(p("conda-meta/zlib-1.3-h0_0.json")));
  EXPECT_FALSE(path_exists(p("conda-meta/six-1.16-pyh_0.json")));
  EXPECT_NE(slurp(p("conda-meta/.materializer-incomplete")).find("six-1.16-pyh_0"),
            std::string::npos);
}

TEST_F(LinkTest, LegacyPackageUsesFilesHasPrefixAndNoLink) {
  Tree tr = tree("old", "0.1", "py27_0");
  tr.write("bin/script", "#!" + kPh + "/bin/python\n", 0755);
  const std::string ph = "/opt/" + std::string(60, 'c');
  tr.write("lib/libold.so", "x" + ph + "/lib" + '\0' + "y", 0644);
  tr.write("share/data", "data", 0644);
  ASSERT_EQ(symlink("data", (tr.dir() + "/share/alias").c_str()), 0);
  tr.info("files", "bin/script\nlib/libold.so\nshare/data\nshare/alias\n");
  tr.info("has_prefix", "bin/script\n" + ph + " binary lib/libold.so\n");
  tr.info("no_link", "share/data\n");
  tr.finish(/*legacy=*/true);
  std::vector<LinkInput> in = {input(tr, ref("old", "0.1", "py27_0"))};
  Result<LinkSummary> s = link_packages(in, options());
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE(s->results[0].status.ok()) << s->results[0].status.to_string();
  EXPECT_EQ(slurp(p("bin/script")), "#!" + prefix_ + "/bin/python\n");
  std::string lib = slurp(p("lib/libold.so"));
  EXPECT_EQ(lib.size(), 1 + ph.size() + 6);
  EXPECT_EQ(lib.substr(0, 1 + prefix_.size() + 5), "x" + prefix_ + "/lib\0"s);
  EXPECT_NE(lstat_or_die(p("share/data")).st_ino, lstat_or_die(tr.dir() + "/share/data").st_ino);
  EXPECT_TRUE(S_ISLNK(lstat_or_die(p("share/alias")).st_mode));
  json r = record("old-0.1-py27_0.json");
  EXPECT_EQ(r["paths_data"]["paths"][3]["path_type"], "softlink");
  EXPECT_EQ(r["paths_data"]["paths"][0]["prefix_placeholder"], kPh);
  EXPECT_EQ(r["paths_data"]["paths"][1]["file_mode"], "binary");
}

TEST_F(LinkTest, ClobberLaterPackageInLockOrderWins) {
  Tree a = tree("a", "1", "0");
  a.file("bin/same", "from a");
  a.file("bin/only-a", "a");
  a.finish();
  Tree b = tree("b", "1", "0");
  b.file("bin/same", "from b");
  b.finish();
  std::vector<LinkInput> in = {input(a, ref("a", "1", "0")), input(b, ref("b", "1", "0"))};
  Result<LinkSummary> s = link_packages(in, options());
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE(s->complete);
  EXPECT_EQ(slurp(p("bin/same")), "from b");
  EXPECT_TRUE(s->results[0].warnings.empty());
  ASSERT_EQ(s->results[1].warnings.size(), 1u);
  EXPECT_EQ(s->results[1].warnings[0],
            "bin/same: also in a-1-0; the later package in lock order wins");
  EXPECT_EQ(s->results[0].files, 1);
  EXPECT_EQ(s->results[1].files, 1);
}

TEST_F(LinkTest, MissingTreeFileFailsThePackageAndKeepsTheMarker) {
  Tree bad = tree("bad", "1", "0");
  bad.file("lib/present", "x");
  bad.finish();
  ASSERT_EQ(unlink((bad.dir() + "/lib/present").c_str()), 0);
  Tree good = tree("good", "1", "0");
  good.file("lib/good", "g");
  good.finish();
  std::vector<LinkInput> in = {input(bad, ref("bad", "1", "0")),
                               input(good, ref("good", "1", "0"))};
  Result<LinkSummary> s = link_packages(in, options());
  ASSERT_TRUE(s.ok());
  EXPECT_FALSE(s->complete);
  EXPECT_FALSE(s->results[0].status.ok());
  EXPECT_NE(s->results[0].status.message().find("bad-1-0: "), std::string::npos);
  EXPECT_NE(s->results[0].status.message().find("lib/present"), std::string::npos)
      << s->results[0].status.message();
  EXPECT_TRUE(s->results[1].status.ok());
  EXPECT_FALSE(path_exists(p("conda-meta/bad-1-0.json")));
  EXPECT_TRUE(path_exists(p("conda-meta/good-1-0.json")));
  EXPECT_TRUE(path_exists(p("conda-meta/.materializer-incomplete")));
  EXPECT_EQ(slurp(p("conda-meta/history")).find("bad-1-0"), std::string::npos);
}

// Acts as if SIGINT arrived while the file `at` is being written.
class InterruptAtFs : public InterruptibleFs {
 public:
  explicit InterruptAtFs(std::string at) : InterruptibleFs(posix_fs()), at_(std::move(at)) {}
  Status write_all(int fd, const void* data, size_t len, const std::string& what) override {
    if (what.find(at_) != std::string::npos) set_interrupt_for_testing(SIGINT);
    return InterruptibleFs::write_all(fd, data, len, what);
  }

 private:
  std::string at_;
};

TEST_F(LinkTest, InterruptStopsLinkingKeepsTheMarkerAndWritesNoRecord) {
  Tree tr = full_tree(this, tree("foo", "1.0", "h0_0"));
  std::vector<LinkInput> in = {input(tr, ref("foo", "1.0", "h0_0"))};
  InterruptAtFs fs("etc/conf.sh");  // a file with a prefix placeholder: written, not linked
  LinkOptions o = options();
  o.fs = &fs;
  Result<LinkSummary> s = link_packages(in, o);
  set_interrupt_for_testing(0);
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  EXPECT_FALSE(s->complete);
  EXPECT_EQ(s->results[0].status.code(), Code::kCancelled) << s->results[0].status.to_string();
  EXPECT_NE(s->results[0].status.message().find("interrupted (SIGINT)"), std::string::npos);
  EXPECT_FALSE(path_exists(p("conda-meta/foo-1.0-h0_0.json")));
  EXPECT_TRUE(path_exists(p("conda-meta/.materializer-incomplete")));
  // Nothing half-written stays: no temp file of the records, history or marker.
  DIR* d = opendir(p("conda-meta").c_str());
  ASSERT_NE(d, nullptr);
  while (dirent* e = readdir(d)) EXPECT_FALSE(is_temp_name(e->d_name)) << e->d_name;
  closedir(d);
  // The rerun completes.
  s = link_packages(in, options());
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE(s->complete);
}

TEST_F(LinkTest, HistoryListsRecordsAKilledRunWroteBeforeItsHistoryEntry) {
  Tree tr = full_tree(this, tree("foo", "1.0", "h0_0"));
  std::vector<LinkInput> in = {input(tr, ref("foo", "1.0", "h0_0"))};
  ASSERT_TRUE(link_packages(in, options()).ok());
  // As a run killed between the records and the history leaves it: the record, no history.
  ASSERT_EQ(unlink(p("conda-meta/history").c_str()), 0);
  ASSERT_TRUE(link_packages(in, options()).ok());
  std::string hist = slurp(p("conda-meta/history"));
  EXPECT_NE(hist.find("\n+conda-forge/linux-64::foo-1.0-h0_0\n"), std::string::npos) << hist;
  // Once listed, a rerun adds no second "+" line.
  ASSERT_TRUE(link_packages(in, options()).ok());
  std::string hist2 = slurp(p("conda-meta/history"));
  EXPECT_EQ(hist2.find("+", hist.size()), std::string::npos) << hist2;
}

TEST_F(LinkTest, MissingTreeIsNotFound) {
  PackageRef& r = ref("ghost", "1", "0");
  std::vector<LinkInput> in = {LinkInput{&r, cache_ + "/v1/trees/nope/pkg", "", -1}};
  Result<LinkSummary> s = link_packages(in, options());
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->results[0].status.code(), Code::kNotFound);
  EXPECT_FALSE(s->complete);
}

TEST_F(LinkTest, BinaryPlaceholderShorterThanPrefixNamesTheFile) {
  Tree tr = tree("bin", "1", "0");
  tr.file("lib/libshort.so", "/ph/lib"s + '\0', 0644,
          {{"file_mode", "binary"}, {"prefix_placeholder", "/ph"}});
  tr.finish();
  std::vector<LinkInput> in = {input(tr, ref("bin", "1", "0"))};
  Result<LinkSummary> s = link_packages(in, options());
  ASSERT_TRUE(s.ok());
  const Status& st = s->results[0].status;
  EXPECT_EQ(st.code(), Code::kInvalidInput);
  EXPECT_EQ(st.message().find("bin-1-0: lib/libshort.so: prefix '" + prefix_ + "'"), 0u)
      << st.message();
  EXPECT_NE(st.message().find("use a shorter --prefix"), std::string::npos);
}

// Fails writes of one prefix path with ENOSPC; everything else goes to the real file system.
class FailOnePathFs : public Fs {
 public:
  explicit FailOnePathFs(std::string what) : what_(std::move(what)) {}
  Status write_all(int fd, const void* data, size_t len, const std::string& what) override {
    if (what == what_) return ErrnoStatus("write " + what, ENOSPC);
    return posix_fs().write_all(fd, data, len, what);
  }

 private:
  std::string what_;
};

TEST_F(LinkTest, DiskFullWhileWritingAReplacedFileFailsThePackage) {
  Tree tr = tree("t", "1", "0");
  tr.file("etc/x", "p=" + kPh + "\n", 0644, {{"file_mode", "text"}, {"prefix_placeholder", kPh}});
  tr.finish();
  Tree ok = tree("u", "1", "0");
  ok.file("etc/y", "p=" + kPh + "\n", 0644, {{"file_mode", "text"}, {"prefix_placeholder", kPh}});
  ok.finish();
  FailOnePathFs fs("etc/x");
  LinkOptions o = options();
  o.fs = &fs;
  std::vector<LinkInput> in = {input(tr, ref("t", "1", "0")), input(ok, ref("u", "1", "0"))};
  Result<LinkSummary> s = link_packages(in, o);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->results[0].status.code(), Code::kNoSpace);
  EXPECT_TRUE(s->results[1].status.ok());
  EXPECT_FALSE(path_exists(p("conda-meta/t-1-0.json")));
  EXPECT_TRUE(path_exists(p("conda-meta/u-1-0.json")));
  EXPECT_TRUE(path_exists(p("conda-meta/.materializer-incomplete")));
}

TEST_F(LinkTest, DiskFullForEveryWriteIsARunWideError) {
  Tree tr = tree("t", "1", "0");
  tr.file("etc/x", "x");
  tr.finish();
  FaultFs fault(posix_fs());
  fault.fail_write_after(1);  // the incomplete marker is the first write
  LinkOptions o = options();
  o.fs = &fault;
  std::vector<LinkInput> in = {input(tr, ref("t", "1", "0"))};
  Result<LinkSummary> s = link_packages(in, o);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), Code::kNoSpace);
  EXPECT_FALSE(path_exists(p("etc/x")));
}

TEST_F(LinkTest, ProgressReportsEveryFileOfEveryPackage) {
  Tree tr = tree("many", "1", "0");
  for (int i = 0; i < 150; ++i) tr.file("share/f" + std::to_string(i), std::to_string(i));
  tr.finish();
  std::vector<LinkInput> in = {input(tr, ref("many", "1", "0"))};
  LinkOptions o = options();
  std::atomic<int64_t> max_seen{0};
  std::atomic<int> calls{0};
  o.on_progress = [&](size_t pkg, int64_t files) {
    EXPECT_EQ(pkg, 0u);
    calls++;
    int64_t cur = max_seen.load();
    while (files > cur && !max_seen.compare_exchange_weak(cur, files)) {
    }
  };
  Result<LinkSummary> s = link_packages(in, o);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(max_seen.load(), 150);
  EXPECT_GE(calls.load(), 2);
  EXPECT_EQ(s->results[0].files, 150);
}

TEST_F(LinkTest, SymlinkedParentDirectoryFromAnotherPackageIsKept) {
  Tree a = tree("sysroot", "1", "0");
  a.file("x/lib/libc.so", "c");
  a.softlink("x/lib64", "lib");
  a.finish();
  Tree b = tree("extra", "1", "0");
  b.file("x/lib64/libextra.so", "e");
  b.finish();
  std::vector<LinkInput> in = {input(a, ref("sysroot", "1", "0")),
                               input(b, ref("extra", "1", "0"))};
  LinkOptions o = options();
  o.prefix += "/";  // trailing slash is normalised away
  Result<LinkSummary> s = link_packages(in, o);
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE(s->results[0].status.ok()) << s->results[0].status.to_string();
  ASSERT_TRUE(s->results[1].status.ok()) << s->results[1].status.to_string();
  EXPECT_TRUE(S_ISLNK(lstat_or_die(p("x/lib64")).st_mode));
  EXPECT_EQ(slurp(p("x/lib/libextra.so")), "e");
  EXPECT_EQ(s->results[0].files, 2);
}

TEST_F(LinkTest, AutoModeAcrossFileSystemsFallsBackToCopy) {
  char tmpl[] = "/dev/shm/mlt-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) GTEST_SKIP() << "no /dev/shm";
  std::string other = tmpl;
  struct stat a {
  }, b{};
  if (stat(other.c_str(), &a) != 0 || stat(root_.c_str(), &b) != 0 || a.st_dev == b.st_dev) {
    remove_all(other).ignore();
    GTEST_SKIP() << "/dev/shm and /tmp share a file system";
  }
  Tree tr = full_tree(this, tree("foo", "1.0", "h0_0"));
  std::vector<LinkInput> in = {input(tr, ref("foo", "1.0", "h0_0"))};
  LinkOptions o = options();
  o.prefix = other + "/prefix";
  Result<LinkSummary> s = link_packages(in, o);
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE(s->results[0].status.ok()) << s->results[0].status.to_string();
  EXPECT_NE(s->mode_used, LinkMode::kHardlink);
  EXPECT_EQ(slurp(o.prefix + "/bin/tool"), "#!/bin/sh\necho hi\n");
  // A forced hardlink across file systems is an error, not a silent copy.
  LinkOptions forced = o;
  forced.mode = LinkMode::kHardlink;
  forced.prefix = other + "/prefix2";
  Result<LinkSummary> f = link_packages(in, forced);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->results[0].status.code(), Code::kIo);
  EXPECT_NE(f->results[0].status.message().find("--link-mode hardlink"), std::string::npos)
      << f->results[0].status.message();
  remove_all(other).ignore();
}

TEST_F(LinkTest, RelativePrefixIsRejected) {
  LinkOptions o = options();
  o.prefix = "relative/env";
  Result<LinkSummary> s = link_packages({}, o);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), Code::kInvalidInput);
}

TEST_F(LinkTest, PathEscapingThePrefixIsCorrupt) {
  Tree tr = tree("evil", "1", "0");
  tr.file("lib/ok", "x");
  tr.finish();
  json paths = {{"paths_version", 1},
                {"paths", {{{"_path", "../outside"}, {"path_type", "hardlink"}}}}};
  tr.info("paths.json", paths.dump());
  std::vector<LinkInput> in = {input(tr, ref("evil", "1", "0"))};
  Result<LinkSummary> s = link_packages(in, options());
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->results[0].status.code(), Code::kCorrupt);
  EXPECT_FALSE(path_exists(root_ + "/outside"));
}

TEST_F(LinkTest, MalformedPathsJsonIsCorruptAndSaysWhat) {
  const std::pair<std::string, std::string> cases[] = {
      {"{\"paths\": [", "malformed metadata"},
      {"[1, 2]", "not a JSON object"},
      {"{\"paths\": 3}", "'paths' is not a list"},
      {"{\"paths\": [7]}", "not an object"},
      {"{\"paths\": [{\"path_type\": \"hardlink\"}]}", "no string '_path'"},
      {"{\"paths\": [{\"_path\": \"a\", \"path_type\": \"fifo\"}]}", "unknown path_type"},
  };
  int n = 0;
  for (const auto& [text, want] : cases) {
    std::string name = "bad" + std::to_string(n++);
    Tree tr = tree(name, "1", "0");
    tr.file("lib/ok", "x");
    tr.finish();
    tr.info("paths.json", text);
    std::vector<LinkInput> in = {input(tr, ref(name, "1", "0"))};
    Result<LinkSummary> s = link_packages(in, options());
    ASSERT_TRUE(s.ok()) << text;
    EXPECT_EQ(s->results[0].status.code(), Code::kCorrupt) << text;
    EXPECT_NE(s->results[0].status.message().find(want), std::string::npos)
        << text << " -> " << s->results[0].status.message();
    EXPECT_NE(s->results[0].status.message().find("paths.json"), std::string::npos)
        << s->results[0].status.message();
  }
}

TEST_F(LinkTest, PathsJsonFieldsOfOtherTypesAreTolerated) {
  // conda reads these with dict.get(); a number where a string is expected is kept as its text.
  Tree tr = tree("odd", "1", "0");
  tr.file("lib/ok", "x");
  tr.finish();
  json paths = {{"paths_version", 1},
                {"paths",
                 {{{"_path", "lib/ok"}, {"path_type", nullptr}, {"sha256", 12},
                   {"size_in_bytes", 1}, {"no_link", false}}}}};
  tr.info("paths.json", paths.dump());
  std::vector<LinkInput> in = {input(tr, ref("odd", "1", "0"))};
  Result<LinkSummary> s = link_packages(in, options());
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE(s->results[0].status.ok()) << s->results[0].status.to_string();
  EXPECT_EQ(slurp(prefix_ + "/lib/ok"), "x");
}

// ---- issue 11: every write stays inside the prefix -----------------------------------------

// Link tests for escapes: the prefix sits two levels below a sandbox, with a canary directory
// beside it and one two levels up (where "a/b -> .." + "a/b/c -> ../.." would put a write).
class LinkEscapeTest : public LinkTest, public ::testing::WithParamInterface<bool> {
 protected:
  void SetUp() override {
    LinkTest::SetUp();
    force_beneath_walk_for_testing(GetParam());
    prefix_ = root_ + "/up/prefix";
    ASSERT_TRUE(make_dirs(root_ + "/up/canary").ok());
    ASSERT_TRUE(make_dirs(root_ + "/canary").ok());
  }
  void TearDown() override {
    force_beneath_walk_for_testing(false);
    // Nothing but the canaries, the cache and the prefix, and the canaries untouched.
    EXPECT_EQ(list_dir(root_), (std::vector<std::string>{"cache", "canary", "up"}));
    EXPECT_EQ(list_dir(root_ + "/up"), (std::vector<std::string>{"canary", "prefix"}));
    EXPECT_EQ(list_dir(root_ + "/canary"), std::vector<std::string>{});
    EXPECT_EQ(list_dir(root_ + "/up/canary"), std::vector<std::string>{});
    LinkTest::TearDown();
  }
};

INSTANTIATE_TEST_SUITE_P(OpenAt2AndWalk, LinkEscapeTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& p) {
                           return p.param ? "Walk" : "OpenAt2";
                         });

TEST_P(LinkEscapeTest, Issue11SymlinksChainedAcrossPackagesStayInside) {
  Tree a = tree("chain-a", "1", "0");
  a.softlink("a/b", "..");
  a.finish();
  Tree b = tree("chain-b", "1", "0");
  b.softlink("a/b/c", "../..");
  b.finish();
  Tree c = tree("chain-c", "1", "0");
  c.file("a/b/c/canary/pwned.txt", "pwned");
  c.finish();
  std::vector<LinkInput> in = {input(a, ref("chain-a", "1", "0")),
                               input(b, ref("chain-b", "1", "0")),
                               input(c, ref("chain-c", "1", "0"))};
  Result<LinkSummary> s = link_packages(in, options());
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  EXPECT_FALSE(s->complete);
  const Status& st = s->results[2].status;
  EXPECT_EQ(st.code(), Code::kCorrupt) << st.to_string();
  EXPECT_EQ(st.message().find("chain-c-1-0: a/b/c/canary"), 0u) << st.message();
  EXPECT_NE(st.message().find("resolves outside the prefix"), std::string::npos) << st.message();
  EXPECT_FALSE(path_exists(p("conda-meta/chain-c-1-0.json")));
  EXPECT_TRUE(path_exists(p("conda-meta/.materializer-incomplete")));
  // A and B only made symlinks, inside the prefix (B's landed at prefix/c through A's).
  EXPECT_TRUE(s->results[0].status.ok()) << s->results[0].status.to_string();
  EXPECT_TRUE(s->results[1].status.ok()) << s->results[1].status.to_string();
}

TEST_P(LinkEscapeTest, AbsoluteSymlinkParentFromAnotherPackageIsRefused) {
  // The cache refuses absolute links in a package, but a prefix may hold one already (left by
  // another tool); nothing may be written through it.
  ASSERT_TRUE(make_dirs(p("share")).ok());
  ASSERT_EQ(symlink((root_ + "/canary").c_str(), p("share/out").c_str()), 0);
  Tree t = tree("abs", "1", "0");
  t.file("share/out/pwned.txt", "pwned");
  t.directory("share/out/dir");
  t.finish();
  Result<LinkSummary> s = link_packages({input(t, ref("abs", "1", "0"))}, options());
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->results[0].status.code(), Code::kCorrupt) << s->results[0].status.to_string();
}

TEST_P(LinkEscapeTest, SourceThroughASymlinkInTheTreeIsRefused) {
  // A tampered tree: x -> <a secret directory> plus a paths.json entry x/secret would link or
  // copy the secret into the prefix. Sources are resolved beneath the tree with no symlink.
  ASSERT_TRUE(write_file_atomic(root_ + "/up/canary/secret", "secret").ok());
  for (LinkMode mode : {LinkMode::kHardlink, LinkMode::kCopy}) {
    std::string name = mode == LinkMode::kCopy ? "steal-copy" : "steal-link";
    Tree t = tree(name, "1", "0");
    t.file("lib/ok", "x");
    ASSERT_EQ(symlink((root_ + "/up/canary").c_str(), (t.dir() + "/x").c_str()), 0);
    t.finish();
    json paths = {{"paths_version", 1},
                  {"paths",
                   {{{"_path", "lib/ok"}, {"path_type", "hardlink"}},
                    {{"_path", "x/secret"}, {"path_type", "hardlink"}}}}};
    t.info("paths.json", paths.dump());
    Result<LinkSummary> s = link_packages({input(t, ref(name, "1", "0"))}, options(mode));
    ASSERT_TRUE(s.ok());
    const Status& st = s->results[0].status;
    EXPECT_EQ(st.code(), Code::kCorrupt) << st.to_string();
    EXPECT_NE(st.message().find("symlink"), std::string::npos) << st.message();
    EXPECT_FALSE(path_exists(p("x/secret")));
  }
  ASSERT_EQ(unlink((root_ + "/up/canary/secret").c_str()), 0);
}

TEST_P(LinkEscapeTest, IndexJsonFieldsThatWouldEscapeAreRefused) {
  // conda-meta/<name>-<version>-<build>.json: each field is one file-name component.
  const std::pair<const char*, std::string> cases[] = {
      {"name", "../../canary/x"}, {"version", "1/../../../canary"}, {"build", "/tmp/x"},
      {"name", "a\nb"},           {"build", std::string(250, 'b')},
  };
  int n = 0;
  for (const auto& [field, value] : cases) {
    std::string name = "meta" + std::to_string(n++);
    Tree t = tree(name, "1", "0");
    t.file("lib/" + name, "x");
    t.index()[field] = value;
    t.finish();
    Result<LinkSummary> s = link_packages({input(t, ref(name, "1", "0"))}, options());
    ASSERT_TRUE(s.ok());
    const Status& st = s->results[0].status;
    EXPECT_EQ(st.code(), Code::kCorrupt) << field << "=" << value;
    EXPECT_NE(st.message().find(std::string("info/index.json: ")), std::string::npos)
        << st.message();
    EXPECT_FALSE(path_exists(p("lib/" + name)));  // refused before anything is linked
  }
  EXPECT_EQ(list_dir(p("conda-meta")),
            (std::vector<std::string>{".materializer-incomplete", "history"}));
}

TEST_F(LinkTest, CondaMetaMembersAreRefused) {
  // A package's conda-meta/history would be hard-linked into the prefix; appending to it would
  // then write into the cache. Any member there (or named conda-meta) is refused.
  int n = 0;
  for (std::string bad : {"conda-meta/history", "conda-meta/numpy-1-0.json", "conda-meta"}) {
    std::string name = "meta" + std::to_string(n++);
    Tree t = tree(name, "1", "0");
    t.file("lib/" + name, "x");
    t.file(bad, "{}");
    t.finish();
    Result<LinkSummary> s = link_packages({input(t, ref(name, "1", "0"))}, options());
    ASSERT_TRUE(s.ok());
    const Status& st = s->results[0].status;
    EXPECT_EQ(st.code(), Code::kCorrupt) << bad;
    EXPECT_NE(st.message().find("conda-meta/, which only the installer writes"), std::string::npos)
        << st.message();
    EXPECT_FALSE(path_exists(p("lib/" + name)));
    EXPECT_TRUE(path_exists(p("conda-meta/.materializer-incomplete")));
  }
  // Legacy packages (info/files) too.
  Tree legacy = tree("legacy", "1", "0");
  legacy.file("conda-meta/history", "evil\n");
  legacy.info("files", "conda-meta/history\n");
  legacy.finish(/*legacy=*/true);
  Result<LinkSummary> s = link_packages({input(legacy, ref("legacy", "1", "0"))}, options());
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->results[0].status.code(), Code::kCorrupt);
  EXPECT_EQ(slurp(p("conda-meta/history")).find("evil"), std::string::npos);
}

TEST_F(LinkTest, CondaMetaReachedThroughASymlinkIsRefused) {
  Tree a = tree("alias", "1", "0");
  a.softlink("cm", "conda-meta");
  a.finish();
  Tree b = tree("planter", "1", "0");
  b.file("cm/fake-1-0.json", "{\"name\": \"fake\"}");
  b.file("cm/history", "forged\n");
  b.finish();
  Result<LinkSummary> s = link_packages(
      {input(a, ref("alias", "1", "0")), input(b, ref("planter", "1", "0"))}, options());
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->results[1].status.code(), Code::kCorrupt) << s->results[1].status.to_string();
  EXPECT_NE(s->results[1].status.message().find("conda-meta/ through a symlink"), std::string::npos)
      << s->results[1].status.message();
  EXPECT_FALSE(path_exists(p("conda-meta/fake-1-0.json")));
  EXPECT_EQ(slurp(p("conda-meta/history")).find("forged"), std::string::npos);
}

TEST_F(LinkTest, HistoryAndRecordsAreNeverWrittenThrough) {
  // A history or record that is a hard link into the cache (left by an older, hostile install)
  // is replaced by a new file; the cache file keeps its bytes.
  Tree tr = full_tree(this, tree("foo", "1.0", "h0_0"));
  std::string cached = tr.dir() + "/share/cached-history";
  ASSERT_TRUE(write_file_atomic(cached, "==> old entry <==\n").ok());
  ASSERT_TRUE(write_file_atomic(tr.dir() + "/share/cached-record", "{}").ok());
  ASSERT_TRUE(make_dirs(p("conda-meta")).ok());
  ASSERT_EQ(link(cached.c_str(), p("conda-meta/history").c_str()), 0);
  ASSERT_EQ(
      link((tr.dir() + "/share/cached-record").c_str(), p("conda-meta/foo-1.0-h0_0.json").c_str()),
      0);
  std::vector<LinkInput> in = {input(tr, ref("foo", "1.0", "h0_0"))};
  ASSERT_TRUE(link_packages(in, options()).ok());
  ASSERT_TRUE(link_packages(in, options()).ok());
  EXPECT_EQ(slurp(cached), "==> old entry <==\n");
  EXPECT_EQ(slurp(tr.dir() + "/share/cached-record"), "{}");
  std::string hist = slurp(p("conda-meta/history"));
  EXPECT_EQ(hist.find("==> old entry <==\n==> "), 0u) << hist;  // old content kept, then ours
  EXPECT_EQ(lstat_or_die(p("conda-meta/history")).st_nlink, 1u);
  EXPECT_EQ(record("foo-1.0-h0_0.json")["name"], "foo");
}

TEST_F(LinkTest, EntryPointNamesAreOneFileName) {
  // link.json entry points become bin/<name>: "a/b" (a subdirectory), "../x" (an escape) and
  // control characters are refused like any other path component.
  int n = 0;
  for (std::string cmd : {"a/b", "../../x", "x\ty"}) {
    std::string name = "ep" + std::to_string(n++);
    Tree t = tree(name, "1", "0");
    t.index()["noarch"] = "python";
    t.file("site-packages/" + name + ".py", "def main(): pass\n");
    t.info("link.json",
           json{{"noarch", {{"type", "python"}, {"entry_points", {cmd + " = " + name + ":main"}}}}}
               .dump());
    t.finish();
    Result<LinkSummary> s = link_packages({input(t, ref(name, "1", "0"))}, options());
    ASSERT_TRUE(s.ok());
    EXPECT_EQ(s->results[0].status.code(), Code::kCorrupt) << cmd;
    EXPECT_NE(s->results[0].status.message().find("entry point name"), std::string::npos)
        << s->results[0].status.message();
  }
  EXPECT_FALSE(path_exists(p("bin")));
}

TEST_F(LinkTest, RecordFileIsReportedPerPackage) {
  Tree tr = full_tree(this, tree("foo", "1.0", "h0_0"));
  Result<LinkSummary> s = link_packages({input(tr, ref("foo", "1.0", "h0_0"))}, options());
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->results[0].record_file, "conda-meta/foo-1.0-h0_0.json");
}

}  // namespace
}  // namespace mat
