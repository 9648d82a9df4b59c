// install_wheels on hand-built wheel trees (the layout cache/ extracts a .whl into), plus the
// text kernels against pip 23 / distlib output captured by hand.
#include "materializer/wheel.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <clocale>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "cache/store.h"
#include "cache/wheel_record.h"
#include "materializer/base/fs.h"
#include "materializer/base/hash.h"
#include "materializer/wheel_internal.h"
#include "tests/corpus.h"

namespace mat {
namespace {

using namespace wheel_internal;
using cache::RecordRow;

const std::string kSp = "lib/python3.11/site-packages";

struct stat stat_or_die(const std::string& p) {
  struct stat st {};
  EXPECT_EQ(lstat(p.c_str(), &st), 0) << p;
  return st;
}

std::string slurp(const std::string& p) {
  Result<std::string> r = read_file(p);
  EXPECT_TRUE(r.ok()) << p << ": " << r.status().to_string();
  return r.ok() ? *r : "";
}

// An extracted wheel: files plus a RECORD that lists them, as a valid wheel's does.
class WheelTree {
 public:
  WheelTree(std::string dir, std::string name, std::string version, bool purelib = true)
      : dir_(std::move(dir)), dist_info_(name + "-" + version + ".dist-info") {
    file(dist_info_ + "/METADATA", "Metadata-Version: 2.1\nName: " + name +
                                       "\nVersion: " + version + "\n\nLong description.\n");
    file(dist_info_ + "/WHEEL", std::string("Wheel-Version: 1.0\nGenerator: test\n") +
                                    "Root-Is-Purelib: " + (purelib ? "true" : "false") +
                                    "\nTag: py3-none-any\n");
  }
  void file(const std::string& path, const std::string& content, mode_t mode = 0644) {
    std::string full = dir_ + "/" + path;
    EXPECT_TRUE(make_dirs(dir_name(full)).ok());
    EXPECT_TRUE(write_file_atomic(full, content, mode).ok());
    rows_.push_back({path, cache::record_hash_of(content), std::to_string(content.size())});
  }
  // Writes RECORD; returns the tree directory.
  const std::string& finish() {
    std::vector<RecordRow> rows = rows_;
    rows.push_back({dist_info_ + "/RECORD", "", ""});
    EXPECT_TRUE(
        write_file_atomic(dir_ + "/" + dist_info_ + "/RECORD", cache::format_record(rows)).ok());
    return dir_;
  }
  const std::string& dist_info() const { return dist_info_; }

 private:
  std::string dir_, dist_info_;
  std::vector<RecordRow> rows_;
};

class WheelInstallTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mat_wheel_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    prefix_ = root_ + "/prefix";
    opts_.prefix = prefix_;
    opts_.cache_root = root_ + "/cache";
    opts_.target.version = "3.11";
    opts_.target.executable = prefix_ + "/bin/python3.11";
  }
  void TearDown() override { remove_all(root_).ignore(); }

  WheelTree tree(const std::string& name, const std::string& version, bool purelib = true) {
    return WheelTree(root_ + "/cache/v1/trees/" + name + "-" + version + "/pkg", name, version,
                     purelib);
  }
  PackageRef& ref(const std::string& file_name, bool requested = true) {
    refs_.push_back(std::make_unique<PackageRef>());
    PackageRef& r = *refs_.back();
    r.kind = PackageKind::kPypi;
    r.file_name = file_name;
    r.name = file_name.substr(0, file_name.find('-'));
    r.requested = requested;
    return r;
  }
  WheelSummary install(const std::vector<WheelInput>& inputs) {
    Result<WheelSummary> r = install_wheels(inputs, opts_);
    EXPECT_TRUE(r.ok()) << r.status().to_string();
    return r.ok() ? *r : WheelSummary{};
  }
  std::string p(const std::string& rel) const { return prefix_ + "/" + rel; }
  std::vector<RecordRow> record(const std::string& dist_info) {
    return cache::parse_record(slurp(p(kSp + "/" + dist_info + "/RECORD")));
  }

  std::string root_, prefix_;
  WheelInstallOptions opts_;
  std::vector<std::unique_ptr<PackageRef>> refs_;
};

std::string launcher(const std::string& shebang, const std::string& module,
                     const std::string& import_name, const std::string& func) {
  return shebang + "# -*- coding: utf-8 -*-\nimport re\nimport sys\nfrom " + module + " import " +
         import_name +
         "\nif __name__ == '__main__':\n"
         "    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n"
         "    sys.exit(" +
         func + "())\n";
}

TEST_F(WheelInstallTest, PurePackageWithRecordAndInstaller) {
  WheelTree t = tree("demo", "1.0");
  t.file("demo/__init__.py", "VALUE = 1\n");
  t.file("demo/sub/mod.py", "X = 2\n");
  WheelSummary s = install({{&ref("demo-1.0-py3-none-any.whl"), t.finish()}});
  ASSERT_EQ(s.results.size(), 1u);
  ASSERT_TRUE(s.results[0].status.ok()) << s.results[0].status.to_string();
  EXPECT_TRUE(s.complete);
  EXPECT_EQ(slurp(p(kSp + "/demo/sub/mod.py")), "X = 2\n");
  EXPECT_EQ(slurp(p(kSp + "/demo-1.0.dist-info/INSTALLER")), "materializer\n");
  EXPECT_EQ(slurp(p(kSp + "/demo-1.0.dist-info/REQUESTED")), "");
  // 4 wheel files (METADATA, WHEEL, 2 modules) + INSTALLER + REQUESTED + RECORD.
  EXPECT_EQ(s.results[0].files, 7);
  EXPECT_TRUE(s.results[0].warnings.empty());

  auto row = [&](const std::string& rel, const std::string& content) {
    return rel + "," + cache::record_hash_of(content) + "," + std::to_string(content.size()) +
           "\r\n";
  };
  const std::string di = kSp + "/demo-1.0.dist-info/";
  EXPECT_EQ(slurp(p(di + "RECORD")),
            row("demo-1.0.dist-info/INSTALLER", "materializer\n") +
                row("demo-1.0.dist-info/METADATA", slurp(p(di + "METADATA"))) +
                "demo-1.0.dist-info/RECORD,,\r\n" + row("demo-1.0.dist-info/REQUESTED", "") +
                row("demo-1.0.dist-info/WHEEL", slurp(p(di + "WHEEL"))) +
                row("demo/__init__.py", "VALUE = 1\n") + row("demo/sub/mod.py", "X = 2\n"));
}

TEST_F(WheelInstallTest, RequestedOff) {
  WheelTree t = tree("demo", "1.0");
  t.file("demo.py", "");
  WheelSummary s = install({{&ref("demo-1.0-py3-none-any.whl", false), t.finish()}});
  ASSERT_TRUE(s.results[0].status.ok()) << s.results[0].status.to_string();
  EXPECT_FALSE(path_exists(p(kSp + "/demo-1.0.dist-info/REQUESTED")));
  for (const RecordRow& r : record("demo-1.0.dist-info"))
    EXPECT_EQ(r.path.find("REQUESTED"), r.path.npos);
}

TEST_F(WheelInstallTest, PlatlibWheelWithExtensionModule) {
  WheelTree t = tree("fast", "2.0", /*purelib=*/false);
  t.file("fast/_speed.cpython-311-x86_64-linux-gnu.so",
         std::string("\x7f"
                     "ELF\0\0",
                     6),
         0755);
  t.file("fast-2.0.data/platlib/fast_extra.py", "E = 1\n");
  t.file("fast-2.0.data/purelib/fast_pure.py", "P = 1\n");
  WheelSummary s = install({{&ref("fast-2.0-cp311-cp311-linux_x86_64.whl"), t.finish()}});
  ASSERT_TRUE(s.results[0].status.ok()) << s.results[0].status.to_string();
  std::string so = p(kSp + "/fast/_speed.cpython-311-x86_64-linux-gnu.so");
  EXPECT_EQ(slurp(so).size(), 6u);
  EXPECT_EQ(stat_or_die(so).st_mode & 0777, 0755u);
  EXPECT_EQ(slurp(p(kSp + "/fast_extra.py")), "E = 1\n");
  EXPECT_EQ(slurp(p(kSp + "/fast_pure.py")), "P = 1\n");
  bool found = false;
  for (const RecordRow& r : record("fast-2.0.dist-info"))
    found = found || r.path == "fast_extra.py";
  EXPECT_TRUE(found) << "data files are recorded where they went";
}

TEST_F(WheelInstallTest, DataScriptsGetTheTargetShebang) {
  WheelTree t = tree("tool", "1.0");
  t.file("tool-1.0.data/scripts/tool-run", "#!python\nprint('run')\n");
  t.file("tool-1.0.data/scripts/tool-w", "#!pythonw -u\r\nprint('w')\n");
  t.file("tool-1.0.data/scripts/tool.sh", "#!/bin/sh\necho hi\n", 0755);
  WheelSummary s = install({{&ref("tool-1.0-py3-none-any.whl"), t.finish()}});
  ASSERT_TRUE(s.results[0].status.ok()) << s.results[0].status.to_string();
  const std::string exe = opts_.target.executable;
  EXPECT_EQ(slurp(p("bin/tool-run")), "#!" + exe + "\nprint('run')\n");
  // pip's fix_script replaces the whole first line ("-u" and the "\r" go with it).
  EXPECT_EQ(slurp(p("bin/tool-w")), "#!" + exe + "\nprint('w')\n");
  EXPECT_EQ(stat_or_die(p("bin/tool-run")).st_mode & 0777, 0755u);
  EXPECT_EQ(slurp(p("bin/tool.sh")), "#!/bin/sh\necho hi\n");
  // RECORD: rewritten scripts rehashed, at their installed path relative to site-packages.
  bool run = false, sh = false;
  for (const RecordRow& r : record("tool-1.0.dist-info")) {
    if (r.path == "../../../bin/tool-run") {
      run = true;
      EXPECT_EQ(r.hash, cache::record_hash_of(slurp(p("bin/tool-run"))));
      EXPECT_EQ(r.size, std::to_string(slurp(p("bin/tool-run")).size()));
    }
    if (r.path == "../../../bin/tool.sh") {
      sh = true;
      EXPECT_EQ(r.hash, cache::record_hash_of("#!/bin/sh\necho hi\n"));
    }
  }
  EXPECT_TRUE(run && sh);
}

TEST_F(WheelInstallTest, LongPrefixScriptsUseTheShTrampoline) {
  opts_.target.executable = "/opt/" + std::string(130, 'x') + "/bin/python3.11";
  WheelTree t = tree("tool", "1.0");
  t.file("tool-1.0.data/scripts/tool-run", "#!python\nprint('run')\n");
  t.file("tool-1.0.dist-info/entry_points.txt", "[console_scripts]\ntool = tool.cli:main\n");
  WheelSummary s = install({{&ref("tool-1.0-py3-none-any.whl"), t.finish()}});
  ASSERT_TRUE(s.results[0].status.ok()) << s.results[0].status.to_string();
  const std::string tramp =
      "#!/bin/sh\n'''exec' " + opts_.target.executable + " \"$0\" \"$@\"\n' '''\n";
  EXPECT_EQ(slurp(p("bin/tool-run")), tramp + "print('run')\n");
  EXPECT_EQ(slurp(p("bin/tool")), launcher(tramp, "tool.cli", "main", "main"));
}

TEST_F(WheelInstallTest, ShebangRules) {
  EXPECT_EQ(script_shebang("/usr/bin/python3"), "#!/usr/bin/python3\n");
  EXPECT_EQ(script_shebang("/a b/python"),
            "#!/bin/sh\n'''exec' \"/a b/python\" \"$0\" \"$@\"\n' '''\n");
  std::string exe124 = "/" + std::string(123, 'p');  // "#!" + 124 + "\n" = 127: still simple
  EXPECT_EQ(script_shebang(exe124), "#!" + exe124 + "\n");
  EXPECT_TRUE(script_shebang(exe124 + "x").starts_with("#!/bin/sh\n"));
  EXPECT_FALSE(fix_script("#!/usr/bin/env python\n", "/x").has_value());
  EXPECT_EQ(*fix_script("#!python", "/x"), "#!/x\n");
}

TEST_F(WheelInstallTest, DataAndHeaders) {
  WheelTree t = tree("hdr_pkg", "0.1");
  t.file("hdr_pkg-0.1.data/data/share/hdr/config.toml", "a = 1\n");
  t.file("hdr_pkg-0.1.data/headers/hdr.h", "#define HDR 1\n");
  WheelSummary s = install({{&ref("hdr_pkg-0.1-py3-none-any.whl"), t.finish()}});
  ASSERT_TRUE(s.results[0].status.ok()) << s.results[0].status.to_string();
  EXPECT_EQ(slurp(p("share/hdr/config.toml")), "a = 1\n");
  // pip's headers dir is named after the requirement: the file name's, '_' read as '-'.
  EXPECT_EQ(slurp(p("include/python3.11/hdr-pkg/hdr.h")), "#define HDR 1\n");
  std::vector<std::string> paths;
  for (const RecordRow& r : record("hdr_pkg-0.1.dist-info")) paths.push_back(r.path);
  EXPECT_NE(std::find(paths.begin(), paths.end(), "../../../share/hdr/config.toml"), paths.end());
  EXPECT_NE(std::find(paths.begin(), paths.end(), "../../../include/python3.11/hdr-pkg/hdr.h"),
            paths.end());
}

TEST_F(WheelInstallTest, UnknownDataSchemeIsCorrupt) {
  WheelTree t = tree("bad", "1.0");
  t.file("bad-1.0.data/etc/x.conf", "x\n");
  WheelSummary s = install({{&ref("bad-1.0-py3-none-any.whl"), t.finish()}});
  EXPECT_EQ(s.results[0].status.code(), Code::kCorrupt) << s.results[0].status.to_string();
  EXPECT_FALSE(s.complete);
}

TEST_F(WheelInstallTest, ConsoleAndGuiEntryPoints) {
  WheelTree t = tree("app", "1.0");
  t.file("app/__init__.py", "");
  t.file("app-1.0.dist-info/entry_points.txt",
         "# comment\n[console_scripts]\n  App-CLI   =   app.cli:Main.run [extra1, extra2]\n"
         "; another comment\nplain=app:main\n\n[gui_scripts]\napp-gui = app.gui:start\n"
         "[app.plugins]\nnot a script = whatever\n");
  // setuptools' own wrapper for an entry point is not installed (pip's is_entrypoint_wrapper).
  t.file("app-1.0.data/scripts/plain-script.py", "#!python\nold wrapper\n");
  WheelSummary s = install({{&ref("app-1.0-py3-none-any.whl"), t.finish()}});
  ASSERT_TRUE(s.results[0].status.ok()) << s.results[0].status.to_string();
  const std::string sb = "#!" + opts_.target.executable + "\n";
  EXPECT_EQ(slurp(p("bin/App-CLI")), launcher(sb, "app.cli", "Main", "Main.run"));
  EXPECT_EQ(slurp(p("bin/plain")), launcher(sb, "app", "main", "main"));
  EXPECT_EQ(slurp(p("bin/app-gui")), launcher(sb, "app.gui", "start", "start"));
  EXPECT_EQ(stat_or_die(p("bin/App-CLI")).st_mode & 0777, 0755u);
  EXPECT_FALSE(path_exists(p("bin/plain-script.py")));
  EXPECT_FALSE(path_exists(p("bin/not a script")));
  std::vector<RecordRow> rows = record("app-1.0.dist-info");
  ASSERT_TRUE(std::is_sorted(rows.begin(), rows.end()));
  EXPECT_EQ(rows[0].path, "../../../bin/App-CLI");
  EXPECT_EQ(rows[0].hash, cache::record_hash_of(slurp(p("bin/App-CLI"))));
  // The skipped wrapper keeps its wheel RECORD row, as pip leaves it.
  bool wrapper_row = false;
  for (const RecordRow& r : rows)
    wrapper_row = wrapper_row || r.path == "app-1.0.data/scripts/plain-script.py";
  EXPECT_TRUE(wrapper_row);
}

TEST_F(WheelInstallTest, EntryPointWithoutCallableIsCorrupt) {
  WheelTree t = tree("app", "1.0");
  t.file("app-1.0.dist-info/entry_points.txt", "[console_scripts]\napp = app.cli\n");
  WheelSummary s = install({{&ref("app-1.0-py3-none-any.whl"), t.finish()}});
  EXPECT_EQ(s.results[0].status.code(), Code::kCorrupt);
  EXPECT_NE(s.results[0].status.message().find("app = app.cli"), std::string::npos)
      << s.results[0].status.message();
}

// Issue 11: a console_scripts / gui_scripts name becomes bin/<name>. pip writes "../../x"
// wherever it leads; here anything but one file name fails the wheel before it is installed.
TEST_F(WheelInstallTest, Issue11ScriptNamesMustBeOneFileName) {
  ASSERT_TRUE(make_dirs(root_ + "/canary").ok());
  const std::pair<std::string, std::string> cases[] = {
      {"console_scripts", "../../canary/x"},
      {"console_scripts", "/tmp/mat-issue11-x"},
      {"console_scripts", "a/b"},
      {"gui_scripts", "../escape"},
      {"console_scripts", ".."},
      {"gui_scripts", "x\x1b[0m"},
  };
  int n = 0;
  for (const auto& [group, name] : cases) {
    std::string dist = "evil" + std::to_string(n++);
    WheelTree t = tree(dist, "1.0");
    t.file(dist + "/__init__.py", "def main(): pass\n");
    t.file(dist + "-1.0.dist-info/entry_points.txt",
           "[" + group + "]\n" + name + " = " + dist + ":main\n");
    WheelSummary s = install({{&ref(dist + "-1.0-py3-none-any.whl"), t.finish()}});
    ASSERT_EQ(s.results.size(), 1u);
    const Status& st = s.results[0].status;
    EXPECT_EQ(st.code(), Code::kCorrupt) << group << " " << name << ": " << st.to_string();
    EXPECT_NE(st.message().find(group + " name"), std::string::npos) << st.message();
    EXPECT_FALSE(path_exists(p(kSp + "/" + dist)));  // refused before anything is linked
  }
  EXPECT_FALSE(path_exists(root_ + "/canary/x"));
  EXPECT_FALSE(path_exists("/tmp/mat-issue11-x"));
  EXPECT_FALSE(path_exists(root_ + "/escape"));
  EXPECT_FALSE(path_exists(p("bin/a")));
  EXPECT_FALSE(path_exists(p("escape")));
}

TEST_F(WheelInstallTest, DataSchemeIntoCondaMetaIsRefused) {
  // NAME.data/data/ lands in the prefix root: conda-meta/ there is the installer's alone.
  for (std::string member : {"conda-meta/history", "conda-meta/numpy-1-0.json"}) {
    WheelTree t = tree("meta", "1.0");
    t.file("meta/__init__.py", "");
    t.file("meta-1.0.data/data/" + member, "forged\n");
    WheelSummary s = install({{&ref("meta-1.0-py3-none-any.whl"), t.finish()}});
    const Status& st = s.results[0].status;
    EXPECT_EQ(st.code(), Code::kCorrupt) << st.to_string();
    EXPECT_NE(st.message().find("inside conda-meta/"), std::string::npos) << st.message();
    EXPECT_FALSE(path_exists(p("conda-meta/history")));
    EXPECT_FALSE(path_exists(p(kSp + "/meta")));
  }
}

TEST_F(WheelInstallTest, LockNameThatWouldEscapeTheHeadersDirIsRefused) {
  // Without a parseable file name the lock's name names include/pythonX.Y/<name>/.
  WheelTree t = tree("x", "1.0");
  t.file("x-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: ../../x\nVersion: 1.0\n\n");
  t.file("x-1.0.data/headers/x.h", "#define X 1\n");
  PackageRef& r = ref("");
  r.name = "../../x";
  r.version = "1.0";
  WheelSummary s = install({{&r, t.finish()}});
  EXPECT_EQ(s.results[0].status.code(), Code::kCorrupt) << s.results[0].status.to_string();
  EXPECT_FALSE(path_exists(p("x.h")));
  EXPECT_FALSE(path_exists(p("include")));
}

TEST_F(WheelInstallTest, ParentSymlinkOutOfThePrefixIsNotFollowed) {
  // A conda package (or anything before) left site-packages/pkg -> ../../../.. ; a wheel's
  // pkg/ files must not follow it out of the prefix.
  ASSERT_TRUE(make_dirs(p(kSp)).ok());
  ASSERT_EQ(symlink("../../../..", p(kSp + "/demo").c_str()), 0);
  WheelTree t = tree("demo", "1.0");
  t.file("demo/__init__.py", "VALUE = 1\n");
  WheelSummary s = install({{&ref("demo-1.0-py3-none-any.whl"), t.finish()}});
  EXPECT_EQ(s.results[0].status.code(), Code::kCorrupt) << s.results[0].status.to_string();
  EXPECT_NE(s.results[0].status.message().find("resolves outside the prefix"), std::string::npos)
      << s.results[0].status.message();
  EXPECT_FALSE(path_exists(root_ + "/__init__.py"));
}

TEST_F(WheelInstallTest, PipEntryPointsAreVersioned) {
  std::vector<EntryPoint> in = {{"pip", "pip._internal.cli.main", "main"},
                                {"pip3", "pip._internal.cli.main", "main"},
                                {"pip3.9", "pip._internal.cli.main", "main"},
                                {"other", "m", "f"}};
  std::vector<std::string> names;
  for (const EntryPoint& e : console_script_specs(in, "3.11")) names.push_back(e.name);
  EXPECT_EQ(names, (std::vector<std::string>{"pip", "pip3", "pip3.11", "other"}));
}

TEST_F(WheelInstallTest, NamespacePackageWithoutInit) {
  WheelTree t = tree("ns_part", "1.0");
  t.file("nsroot/part/mod.py", "M = 1\n");
  WheelTree u = tree("ns_other", "1.0");
  u.file("nsroot/other/mod.py", "O = 1\n");
  WheelSummary s = install({{&ref("ns_part-1.0-py3-none-any.whl"), t.finish()},
                            {&ref("ns_other-1.0-py3-none-any.whl"), u.finish()}});
  ASSERT_TRUE(s.complete);
  EXPECT_FALSE(path_exists(p(kSp + "/nsroot/__init__.py")));
  EXPECT_EQ(slurp(p(kSp + "/nsroot/part/mod.py")), "M = 1\n");
  EXPECT_EQ(slurp(p(kSp + "/nsroot/other/mod.py")), "O = 1\n");
  EXPECT_TRUE(s.results[0].warnings.empty());
  EXPECT_TRUE(s.results[1].warnings.empty());
}

TEST_F(WheelInstallTest, MetadataMismatchIsCorrupt) {
  WheelTree t = tree("real_name", "1.0");
  t.file("real_name.py", "");
  WheelSummary s = install({{&ref("other-2.0-py3-none-any.whl"), t.finish()}});
  ASSERT_EQ(s.results[0].status.code(), Code::kCorrupt);
  EXPECT_NE(s.results[0].status.message().find(
                "other-2.0-py3-none-any.whl: METADATA says Name: real_name, Version: 1.0 but "
                "the file name says Name: other, Version: 2.0"),
            std::string::npos)
      << s.results[0].status.message();
  EXPECT_FALSE(path_exists(p(kSp + "/real_name.py")));
}

TEST_F(WheelInstallTest, NormalisedNamesAndVersionsMatch) {
  WheelTree t = tree("Foo.Bar", "1.0.0-Beta2");
  t.file("foo_bar.py", "");
  WheelSummary s = install({{&ref("foo_bar-1.0b2-py3-none-any.whl"), t.finish()}});
  EXPECT_TRUE(s.results[0].status.ok()) << s.results[0].status.to_string();
  EXPECT_EQ(normalize_version("v1.0.0"), "1");
  EXPECT_EQ(normalize_version("1.0-1"), "1.post1");
  EXPECT_EQ(normalize_version("2.0.DEV3"), "2.dev3");
  EXPECT_EQ(normalize_version("1.0+Local_B"), "1+local.b");
  EXPECT_EQ(normalize_name("Foo__Bar.baz"), "foo-bar-baz");
}

TEST_F(WheelInstallTest, ClobberIsReplacedWithAWarning) {
  // A conda package's file already there (a hard link into its own cache tree, say).
  ASSERT_TRUE(make_dirs(p(kSp + "/shared")).ok());
  ASSERT_TRUE(write_file_atomic(p(kSp + "/shared/x.py"), "conda\n").ok());
  std::string outside = root_ + "/conda-cache-x.py";
  ASSERT_EQ(link(p(kSp + "/shared/x.py").c_str(), outside.c_str()), 0);
  WheelTree a = tree("first", "1.0");
  a.file("shared/x.py", "first\n");
  a.file("shared/both.py", "first\n");
  WheelTree b = tree("second", "1.0");
  b.file("shared/both.py", "second\n");
  WheelSummary s = install({{&ref("first-1.0-py3-none-any.whl"), a.finish()},
                            {&ref("second-1.0-py3-none-any.whl"), b.finish()}});
  ASSERT_TRUE(s.complete);
  EXPECT_EQ(slurp(p(kSp + "/shared/x.py")), "first\n");
  EXPECT_EQ(slurp(outside), "conda\n") << "never written through";
  EXPECT_EQ(slurp(p(kSp + "/shared/both.py")), "second\n");
  ASSERT_EQ(s.results[0].warnings.size(), 1u);
  EXPECT_NE(s.results[0].warnings[0].find(kSp + "/shared/x.py: already in the prefix"),
            std::string::npos)
      << s.results[0].warnings[0];
  ASSERT_EQ(s.results[1].warnings.size(), 1u);
  EXPECT_NE(s.results[1].warnings[0].find("also installed by first-1.0-py3-none-any.whl"),
            std::string::npos)
      << s.results[1].warnings[0];

  // Installing the same wheels again is a reinstall: no warnings.
  WheelSummary again = install({{&ref("first-1.0-py3-none-any.whl"), a.finish()}});
  ASSERT_TRUE(again.complete);
  EXPECT_TRUE(again.results[0].warnings.empty()) << again.results[0].warnings[0];
}

TEST_F(WheelInstallTest, UnchangedFilesShareTheCacheInode) {
  WheelTree t = tree("demo", "1.0");
  t.file("demo.py", "X = 1\n");
  t.file("demo-1.0.data/scripts/run", "#!python\nimport demo\n");
  const std::string dir = t.finish();
  opts_.mode = LinkMode::kHardlink;
  WheelSummary s = install({{&ref("demo-1.0-py3-none-any.whl"), dir}});
  ASSERT_TRUE(s.complete) << s.results[0].status.to_string();
  EXPECT_EQ(s.mode_used, LinkMode::kHardlink);
  EXPECT_EQ(stat_or_die(p(kSp + "/demo.py")).st_ino, stat_or_die(dir + "/demo.py").st_ino);
  EXPECT_NE(stat_or_die(p("bin/run")).st_ino,
            stat_or_die(dir + "/demo-1.0.data/scripts/run").st_ino);
  EXPECT_EQ(slurp(dir + "/demo-1.0.data/scripts/run"), "#!python\nimport demo\n");
  // Copy mode: a private inode.
  remove_all(prefix_).ignore();
  opts_.mode = LinkMode::kCopy;
  s = install({{&ref("demo-1.0-py3-none-any.whl"), dir}});
  ASSERT_TRUE(s.complete);
  EXPECT_NE(stat_or_die(p(kSp + "/demo.py")).st_ino, stat_or_die(dir + "/demo.py").st_ino);
}

TEST_F(WheelInstallTest, ResultsAreIndexedByInput) {
  WheelTree good = tree("good", "1.0");
  good.file("good.py", "");
  WheelTree bad = tree("bad", "1.0");
  bad.file("bad.py", "");
  WheelSummary s = install({{&ref("bad-9.9-py3-none-any.whl"), bad.finish()},
                            {&ref("good-1.0-py3-none-any.whl"), good.finish()}});
  ASSERT_EQ(s.results.size(), 2u);
  EXPECT_FALSE(s.results[0].status.ok());
  EXPECT_TRUE(s.results[1].status.ok());
  EXPECT_FALSE(s.complete);
  EXPECT_TRUE(path_exists(p(kSp + "/good-1.0.dist-info/RECORD")));
  EXPECT_FALSE(path_exists(p(kSp + "/bad-1.0.dist-info")));
}

TEST_F(WheelInstallTest, RelativePrefixIsInvalidInput) {
  opts_.prefix = "relative/prefix";
  Result<WheelSummary> r = install_wheels({}, opts_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidInput);
}

TEST_F(WheelInstallTest, CompileWritesPycsAndRecordsThem) {
  if (access("/usr/bin/python3", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/python3";
  opts_.target.executable = "/nonexistent/python3.11";  // falls back to /usr/bin/python3
  opts_.compile = true;
  opts_.jobs = 2;
  WheelTree t = tree("demo", "1.0");
  t.file("demo/__init__.py", "X = 1\n");
  t.file("demo/broken.py", "print 'python 2'\n");
  WheelSummary s = install({{&ref("demo-1.0-py3-none-any.whl"), t.finish()}});
  ASSERT_TRUE(s.complete) << s.results[0].status.to_string();
  EXPECT_GT(s.compile_seconds, 0);
  EXPECT_FALSE(s.warnings.empty()) << "compileall reports broken.py";
  std::vector<RecordRow> rows = record("demo-1.0.dist-info");
  int pycs = 0;
  for (const RecordRow& r : rows) {
    if (!r.path.ends_with(".pyc")) continue;
    ++pycs;
    EXPECT_TRUE(r.path.starts_with("demo/__pycache__/__init__.cpython-")) << r.path;
    EXPECT_EQ(r.hash, cache::record_hash_of(slurp(p(kSp + "/" + r.path))));
    EXPECT_EQ(r.size, std::to_string(slurp(p(kSp + "/" + r.path)).size()));
  }
  EXPECT_EQ(pycs, 1);
  EXPECT_TRUE(std::is_sorted(rows.begin(), rows.end()));
}

TEST_F(WheelInstallTest, CompileRefusesAPycacheSymlinkOutOfThePrefix) {
  // compileall would write demo/__pycache__/__init__.cpython-311.pyc through the link.
  if (access("/usr/bin/python3", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/python3";
  opts_.target.executable = "/nonexistent/python3.11";
  opts_.compile = true;
  ASSERT_TRUE(make_dirs(root_ + "/canary").ok());
  ASSERT_TRUE(make_dirs(p(kSp + "/demo")).ok());
  ASSERT_EQ(symlink((root_ + "/canary").c_str(), p(kSp + "/demo/__pycache__").c_str()), 0);
  WheelTree t = tree("demo", "1.0");
  t.file("demo/__init__.py", "X = 1\n");
  Result<WheelSummary> r = install_wheels({{&ref("demo-1.0-py3-none-any.whl"), t.finish()}}, opts_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kCorrupt);
  EXPECT_NE(r.status().message().find(kSp + "/demo/__pycache__ is not a directory"),
            std::string::npos)
      << r.status().message();
  EXPECT_TRUE(std::filesystem::is_empty(root_ + "/canary"));
}

TEST_F(WheelInstallTest, CompileWithoutAnyInterpreterIsRunWide) {
  if (access("/usr/bin/python3", X_OK) == 0) GTEST_SKIP() << "/usr/bin/python3 exists";
  opts_.target.executable = "/nonexistent/python3.11";
  opts_.compile = true;
  WheelTree t = tree("demo", "1.0");
  t.file("demo.py", "");
  Result<WheelSummary> r = install_wheels({{&ref("demo-1.0-py3-none-any.whl"), t.finish()}}, opts_);
  EXPECT_EQ(r.status().code(), Code::kNotFound);
}

TEST(WheelText, RelativePaths) {
  EXPECT_EQ(relative_to("bin/x", kSp), "../../../bin/x");
  EXPECT_EQ(relative_to(kSp + "/a/b.py", kSp), "a/b.py");
  EXPECT_EQ(relative_to("include/python3.11/n/h.h", kSp), "../../../include/python3.11/n/h.h");
}

TEST(WheelText, MetadataFields) {
  std::string m = "Metadata-Version: 2.1\nname:  Foo \nVersion: 1.0\n\nName: body\n";
  EXPECT_EQ(metadata_field(m, "Name"), "Foo");
  EXPECT_EQ(metadata_field(m, "version"), "1.0");
  EXPECT_FALSE(metadata_field(m, "Summary").has_value());
}

// ---- the shared corpus: every wheel the cache accepts installs ------------------------------
// MAT_WHEEL_KEEP=DIR keeps the prefixes (DIR/<wheel>/) for comparing with pip by hand.

TEST(WheelCorpus, InstallsEveryWheelTheCacheAccepts) {
  std::string dir = testing_corpus::corpus_dir() + "/wheels";
  if (!is_dir(dir)) GTEST_SKIP() << "no corpus at " << dir;
  ASSERT_NE(std::setlocale(LC_CTYPE, "C.UTF-8"), nullptr);
  const char* keep = std::getenv("MAT_WHEEL_KEEP");
  char tmpl[] = "/tmp/mat_wheel_corpus.XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string root = keep && *keep ? keep : tmpl;
  auto store = cache::Store::open(root + "/cache");
  ASSERT_TRUE(store.ok()) << store.status().to_string();
  Result<std::vector<std::string>> names = list_tree_files(dir);
  ASSERT_TRUE(names.ok());
  int installed = 0;
  for (const std::string& name : *names) {
    if (!name.ends_with(".whl")) continue;
    SCOPED_TRACE(name);
    std::string path = dir + "/" + name;
    Result<std::string> sha = hash_file(path, HashKind::kSha256);
    ASSERT_TRUE(sha.ok());
    cache::Key key{HashKind::kSha256, *sha};
    auto tree = (*store)->extract(key, path, cache::ArchiveFormat::kWheel, nullptr);
    if (!tree.ok()) continue;  // rejected by the cache (cache/store_test.cc lists which)
    PackageRef ref;
    ref.kind = PackageKind::kPypi;
    ref.file_name = name;
    WheelInstallOptions opts;
    opts.prefix = root + "/" + name;
    opts.cache_root = root + "/cache";
    opts.target.version = "3.11";
    opts.target.executable = "/usr/bin/python3";
    Result<WheelSummary> r = install_wheels({{&ref, *tree}}, opts);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    // The one non-standard file name ("-cpu1" after the platform tag) still parses: only the
    // name and version fields are read.
    EXPECT_TRUE(r->results[0].status.ok()) << r->results[0].status.to_string();
    if (r->results[0].status.ok()) ++installed;
  }
  EXPECT_GT(installed, 0);
  std::printf("[ corpus   ] wheels: %d installed\n", installed);
  remove_all(tmpl).ignore();  // unused when MAT_WHEEL_KEEP names the root
  if (!(keep && *keep)) remove_all(root).ignore();
}

}  // namespace
}  // namespace mat
