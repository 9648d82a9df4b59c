// The write primitive (beneath.h): directories resolved beneath a root at the moment of the
// write, entries made with one component and no following. Every resolution test runs twice:
// with openat2 and with the component walk older kernels get.
#include "materializer/base/beneath.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "materializer/base/fs.h"

namespace mat {
namespace {

std::vector<std::string> names_in(const std::string& dir) {
  std::vector<std::string> out;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      std::string n = e->d_name;
      if (n != "." && n != "..") out.push_back(n);
    }
    closedir(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string slurp(const std::string& p) {
  Result<std::string> r = read_file(p);
  return r.ok() ? *r : "<" + r.status().message() + ">";
}

// A sandbox: SANDBOX/up/root is the root; SANDBOX/up/canary and SANDBOX/canary sit one and two
// levels above it, where the escapes below would write. Both must stay empty.
class BeneathTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    force_beneath_walk_for_testing(GetParam());
    char tmpl[] = "/tmp/mat-beneath-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    sandbox_ = tmpl;
    root_ = sandbox_ + "/up/root";
    ASSERT_TRUE(make_dirs(root_).ok());
    ASSERT_TRUE(make_dirs(sandbox_ + "/up/canary").ok());
    ASSERT_TRUE(make_dirs(sandbox_ + "/canary").ok());
    fd_.reset(open(root_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(fd_.valid());
  }
  void TearDown() override {
    force_beneath_walk_for_testing(false);
    EXPECT_EQ(names_in(sandbox_ + "/up/canary"), std::vector<std::string>{});
    EXPECT_EQ(names_in(sandbox_ + "/canary"), std::vector<std::string>{});
    EXPECT_EQ(names_in(sandbox_), (std::vector<std::string>{"canary", "up"}));
    EXPECT_EQ(names_in(sandbox_ + "/up"), (std::vector<std::string>{"canary", "root"}));
    remove_all(sandbox_).ignore();
  }
  std::string r(const std::string& rel) const { return root_ + "/" + rel; }
  void mkdir_p(const std::string& rel) { ASSERT_TRUE(make_dirs(r(rel)).ok()); }
  void link(const std::string& target, const std::string& rel) {
    ASSERT_EQ(symlink(target.c_str(), r(rel).c_str()), 0) << rel;
  }
  Result<BeneathDir> open_dir(const std::string& rel, Follow follow = Follow::kBeneath) {
    return open_dir_beneath(fd_.get(), rel, follow, "the prefix");
  }
  // What the link pass does for one file: parent resolved beneath, then an O_EXCL create.
  Status write_file(const std::string& rel, const std::string& data) {
    auto [dir, name] = split_parent(rel);
    MAT_ASSIGN_OR_RETURN(BeneathDir d, open_dir(std::string(dir)));
    UniqueFd fd;
    if (int err = create_file_at(d.fd.get(), name, 0644, Existing::kReplace, &fd)) {
      return ErrnoStatus(rel, err);
    }
    return posix_fs().write_all(fd.get(), data.data(), data.size(), rel);
  }

  std::string sandbox_, root_;
  UniqueFd fd_;
};

INSTANTIATE_TEST_SUITE_P(OpenAt2AndWalk, BeneathTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& p) {
                           return p.param ? "Walk" : "OpenAt2";
                         });

TEST_P(BeneathTest, PlainDirectoryResolvesWithoutSymlinks) {
  mkdir_p("lib/python3.11");
  Result<BeneathDir> d = open_dir("lib/python3.11");
  ASSERT_TRUE(d.ok()) << d.status().to_string();
  EXPECT_FALSE(d->via_symlink);
  Result<BeneathDir> self = open_dir("");
  ASSERT_TRUE(self.ok());
  EXPECT_FALSE(self->via_symlink);
}

TEST_P(BeneathTest, InRootSymlinkParentsKeepWorking) {
  // conda packages ship these ("lib64 -> lib", "x -> ../lib/y"); writes through them stay.
  mkdir_p("lib/y");
  link("lib", "lib64");
  mkdir_p("share");
  link("../lib/y", "share/y");
  ASSERT_TRUE(write_file("lib64/libz.so", "z").ok());
  ASSERT_TRUE(write_file("share/y/data", "d").ok());
  EXPECT_EQ(slurp(r("lib/libz.so")), "z");
  EXPECT_EQ(slurp(r("lib/y/data")), "d");
  Result<BeneathDir> d = open_dir("lib64");
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d->via_symlink);
  // A link back to the root itself is beneath it too.
  link("..", "lib/up");
  EXPECT_TRUE(write_file("lib/up/top.txt", "t").ok());
  EXPECT_EQ(slurp(r("top.txt")), "t");
}

TEST_P(BeneathTest, SymlinksChainedAcrossPackagesCannotEscape) {
  // Issue 11: A ships a/b -> .., B ships a/b/c -> ../.., C ships a/b/c/x/pwned.txt. Each is
  // fine on its own; on a shared prefix the third write would land two levels above it.
  mkdir_p("a");
  link("..", "a/b");                       // package A
  Result<BeneathDir> b = open_dir("a/b");  // package B writes a/b/c: parent a/b (= the root)
  ASSERT_TRUE(b.ok()) << b.status().to_string();
  ASSERT_EQ(symlink_at("../..", b->fd.get(), "c", Existing::kReplace), 0);
  char target[64];
  ASSERT_EQ(readlink(r("c").c_str(), target, sizeof target), 5);  // B's link, inside the root
  Result<BeneathDir> x = open_dir("a/b/c");  // package C: parent a/b/c leads to SANDBOX
  ASSERT_FALSE(x.ok());
  EXPECT_EQ(x.status().code(), Code::kCorrupt);
  EXPECT_NE(x.status().message().find("'a/b/c' resolves outside the prefix"), std::string::npos)
      << x.status().message();
  Status st = write_file("a/b/c/canary/pwned.txt", "pwned");
  EXPECT_EQ(st.code(), Code::kCorrupt) << st.to_string();
}

TEST_P(BeneathTest, AbsoluteSymlinkParentIsRefused) {
  link(sandbox_ + "/up/canary", "abs");
  link("/", "slash");
  for (const char* rel : {"abs", "abs/sub", "slash/tmp"}) {
    Result<BeneathDir> d = open_dir(rel);
    ASSERT_FALSE(d.ok()) << rel;
    EXPECT_EQ(d.status().code(), Code::kCorrupt) << rel;
  }
  EXPECT_EQ(write_file("abs/pwned.txt", "pwned").code(), Code::kCorrupt);
}

TEST_P(BeneathTest, DotDotAboveTheRootIsRefused) {
  mkdir_p("a");
  for (const char* rel : {"..", "../canary", "a/../..", "a/../../canary", "/tmp"}) {
    Result<BeneathDir> d = open_dir(rel);
    ASSERT_FALSE(d.ok()) << rel;
    EXPECT_EQ(d.status().code(), Code::kCorrupt) << rel;
  }
  link("../../canary", "a/up2");  // climbs out through a relative link
  EXPECT_EQ(open_dir("a/up2").status().code(), Code::kCorrupt);
  EXPECT_TRUE(open_dir("a/..").ok());  // back to the root: fine
}

TEST_P(BeneathTest, EntryNamesAreOneComponent) {
  mkdir_p("d");
  UniqueFd f;
  for (const char* name : {"..", ".", "", "../x", "a/b", "/tmp/x"}) {
    EXPECT_EQ(create_file_at(fd_.get(), name, 0644, Existing::kReplace, &f), EINVAL) << name;
    EXPECT_EQ(symlink_at("t", fd_.get(), name, Existing::kReplace), EINVAL) << name;
    EXPECT_EQ(mkdir_at(fd_.get(), name, 0755), EINVAL) << name;
    EXPECT_EQ(unlink_at(fd_.get(), name), EINVAL) << name;
    EXPECT_EQ(link_at(fd_.get(), "d", fd_.get(), name, Existing::kReplace), EINVAL) << name;
    EXPECT_FALSE(write_file_atomic_at(fd_.get(), name, "x", 0644, posix_fs(), name).ok()) << name;
  }
}

TEST_P(BeneathTest, MagicLinksAreRefused) {
  // /proc/self/cwd and /proc/self/root are magic links: following them jumps anywhere.
  UniqueFd proc(open("/proc/self", O_PATH | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(proc.valid());
  for (const char* rel : {"cwd", "root", "root/tmp", "cwd/x"}) {
    Result<BeneathDir> d = open_dir_beneath(proc.get(), rel, Follow::kBeneath, "/proc/self");
    ASSERT_FALSE(d.ok()) << rel;
    EXPECT_EQ(d.status().code(), Code::kCorrupt) << rel << ": " << d.status().to_string();
  }
  // A link in the root that points into /proc is absolute, hence refused as well.
  link("/proc/self/cwd", "cwd");
  EXPECT_EQ(open_dir("cwd").status().code(), Code::kCorrupt);
}

TEST_P(BeneathTest, SymlinkLoopsAndFilesOnTheWayAreErrors) {
  link("loop2", "loop1");
  link("loop1", "loop2");
  EXPECT_EQ(open_dir("loop1").status().code(), Code::kCorrupt);
  ASSERT_TRUE(write_file("file", "f").ok());
  EXPECT_EQ(open_dir("file/sub").status().code(), Code::kCorrupt);
  EXPECT_EQ(open_dir("missing/sub").status().code(), Code::kNotFound);
}

TEST_P(BeneathTest, FollowNeverRefusesEveryLink) {
  // Cache trees: x -> /etc with x/shadow listed, or an in-tree x -> lib with x/y.
  mkdir_p("lib");
  link("lib", "inside");
  link(sandbox_ + "/canary", "outside");
  EXPECT_TRUE(open_dir("lib", Follow::kNever).ok());
  for (const char* rel : {"inside", "outside", "outside/sub"}) {
    Result<BeneathDir> d = open_dir(rel, Follow::kNever);
    ASSERT_FALSE(d.ok()) << rel;
    EXPECT_EQ(d.status().code(), Code::kCorrupt) << rel;
    EXPECT_NE(d.status().message().find("symlink"), std::string::npos) << d.status().message();
  }
}

TEST_P(BeneathTest, ReplacingNeverWritesThroughAHardLink) {
  // A prefix file may be a hard link into the cache: replacing it must leave the cache alone.
  std::string cache = sandbox_ + "/up/canary/cached";
  ASSERT_TRUE(write_file_atomic(cache, "cache bytes").ok());
  ASSERT_EQ(::link(cache.c_str(), r("linked").c_str()), 0);
  ASSERT_EQ(::link(cache.c_str(), r("linked2").c_str()), 0);
  ASSERT_TRUE(write_file("linked", "new").ok());
  ASSERT_TRUE(write_file_atomic_at(fd_.get(), "linked2", "new2", 0644, posix_fs(), "linked2").ok());
  EXPECT_EQ(slurp(cache), "cache bytes");
  EXPECT_EQ(slurp(r("linked")), "new");
  EXPECT_EQ(slurp(r("linked2")), "new2");
  // A symlink at the name is replaced, not followed.
  link(cache, "sym");
  ASSERT_TRUE(write_file("sym", "mine").ok());
  EXPECT_EQ(slurp(cache), "cache bytes");
  struct stat st;
  ASSERT_EQ(lstat(r("sym").c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  ASSERT_EQ(unlink(cache.c_str()), 0);  // the sandbox's canary must end up empty
}

TEST_P(BeneathTest, MkdirKeepsDirectoriesAndLinksToThemAndReplacesFiles) {
  mkdir_p("lib");
  link("lib", "lib64");
  ASSERT_TRUE(write_file("file", "f").ok());
  EXPECT_EQ(mkdir_at(fd_.get(), "lib", 0755), 0);
  EXPECT_EQ(mkdir_at(fd_.get(), "lib64", 0755), 0);
  EXPECT_EQ(mkdir_at(fd_.get(), "file", 0755), 0);
  struct stat st;
  ASSERT_EQ(lstat(r("lib64").c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  ASSERT_EQ(lstat(r("file").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
}

TEST_P(BeneathTest, RootOperationsResolveBeneath) {
  Result<Root> root = Root::open(root_, false, "the prefix");
  ASSERT_TRUE(root.ok()) << root.status().to_string();
  ASSERT_TRUE(root->make_dirs("conda-meta/sub").ok());
  ASSERT_TRUE(root->write_file_atomic("conda-meta/x.json", "{}", 0644, posix_fs()).ok());
  EXPECT_EQ(*root->read_file("conda-meta/x.json"), "{}");
  ASSERT_TRUE(root->remove("conda-meta/x.json").ok());
  EXPECT_TRUE(root->remove("conda-meta/x.json").ok());  // already gone
  EXPECT_TRUE(root->remove("nowhere/x").ok());          // no parent either
  link("../canary", "meta-out");
  EXPECT_EQ(root->write_file_atomic("meta-out/x.json", "{}", 0644, posix_fs()).code(),
            Code::kCorrupt);
  EXPECT_EQ(root->make_dirs("meta-out/sub").code(), Code::kCorrupt);
  EXPECT_FALSE(root->read_file("meta-out/x").ok());
  EXPECT_EQ(Root::open("relative", false, "x").status().code(), Code::kInvalidInput);
}

TEST_P(BeneathTest, AtomicWriteOfALongNameFitsItsTempName) {
  std::string name = std::string(250, 'r') + ".json";  // 255 bytes: the longest file name
  Status st = write_file_atomic_at(fd_.get(), name, "{}", 0644, posix_fs(), name);
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_EQ(slurp(r(name)), "{}");
  EXPECT_EQ(names_in(root_), std::vector<std::string>{name});
}

TEST(BeneathFailures, AtomicWriteLeavesNoTempFileWhenTheRenameFails) {
  char tmpl[] = "/tmp/mat-beneath-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  UniqueFd fd(open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  FaultFs fault(posix_fs());
  fault.fail_renames(true);
  EXPECT_FALSE(write_file_atomic_at(fd.get(), "history", "x", 0644, fault, "history").ok());
  EXPECT_EQ(names_in(dir), std::vector<std::string>{});
  fault.fail_renames(false);
  fault.fail_write_after(1);
  EXPECT_EQ(write_file_atomic_at(fd.get(), "history", "x", 0644, fault, "history").code(),
            Code::kNoSpace);
  EXPECT_EQ(names_in(dir), std::vector<std::string>{});
  remove_all(dir).ignore();
}

}  // namespace
}  // namespace mat
