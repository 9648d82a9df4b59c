// The store's permission model (issue 11, defect 6; cache/trust.h, README "Permission model"):
// a cache that another user could change is refused, an entry that fails the check is passed
// over and replaced, nothing is created through a planted symlink, and `cache verify` says so.
//
// Tests run as root in CI; the cases that need another owner chown to uid 12345 and are
// skipped, with a message, when not root. Everything else holds for any user.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "cache/paths.h"
#include "cache/store.h"
#include "cache/test_util.h"
#include "cache/trust.h"
#include "materializer/base/hash.h"

namespace mat::cache {
namespace {

using testing::TempDir;

constexpr uid_t kOtherUid = 12345;

bool root() { return ::geteuid() == 0; }

// Group write is accepted on gid-0 objects (root's own group: cache/trust.h). Tests of group
// write give the object another group first; as a non-root user it has one already.
void foreign_group(const std::string& path) {
  if (root()) {
    ASSERT_EQ(::lchown(path.c_str(), static_cast<uid_t>(-1), 12345), 0) << path;
  }
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// lchown -R: `path` and everything below it to `uid`.
void chown_tree(const std::string& path, uid_t uid) {
  namespace fs = std::filesystem;
  ASSERT_EQ(::lchown(path.c_str(), uid, static_cast<gid_t>(-1)), 0) << path;
  if (!fs::is_directory(fs::symlink_status(path))) return;
  for (const auto& e : fs::recursive_directory_iterator(path)) {
    ASSERT_EQ(::lchown(e.path().c_str(), uid, static_cast<gid_t>(-1)), 0) << e.path();
  }
}

class StoreTrustTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = Store::open(root_);
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    store_ = std::move(s).value();
  }

  Result<std::unique_ptr<Store>> reopen(const std::string& at, const StoreOptions& o = {}) {
    return Store::open(at, posix_fs(), o);
  }

  // Opening the store at `at` fails naming `path` with `why`, and says how to fix it.
  void expect_refused(const std::string& at, const std::string& path, const std::string& why,
                      const std::string& fix) {
    auto s = reopen(at);
    ASSERT_FALSE(s.ok()) << "opened although " << path << " is " << why;
    EXPECT_EQ(s.status().code(), Code::kInvalidInput);
    const std::string& m = s.status().message();
    EXPECT_TRUE(contains(m, "\n  " + path + ": " + why)) << m;
    EXPECT_TRUE(contains(m, fix)) << m;
  }

  // An archive published and extracted into the store; returns its key and archive path.
  std::pair<Key, std::string> add_entry(const std::string& bytes, ArchiveFormat f) {
    Key key{HashKind::kSha256, sha256_hex(bytes)};
    auto p = store_->begin_archive(key, f);
    EXPECT_TRUE(p.ok()) << p.status().to_string();
    EXPECT_TRUE((*p)->write(bytes.data(), bytes.size()).ok());
    auto archive = (*p)->publish();
    EXPECT_TRUE(archive.ok()) << archive.status().to_string();
    auto tree = store_->extract(key, *archive, f, nullptr);
    EXPECT_TRUE(tree.ok()) << tree.status().to_string();
    return {key, *archive};
  }

  static std::string conda(const std::string& tag = "") {
    return testing::make_conda({{"info/index.json", 'f', R"({"name":"t)" + tag + R"("})"}},
                               {{"bin/t", 'f', "#!/bin/sh\n", "", 0755},
                                {"lib/l.so.1", 'f', "ELF"},
                                {"share/empty/", 'd'}});
  }

  std::string tree_dir(const Key& key) const { return root_ + "/v1/trees/" + key.str(); }
  std::vector<std::string> tmp_entries() const { return testing::list(root_ + "/v1/tmp"); }

  // find_tree() passes `key` over, naming `path` with a reason that contains `why`.
  void expect_passed_over(const Key& key, const std::string& path, const std::string& why) {
    Distrust d;
    EXPECT_FALSE(store_->find_tree(key, &d)) << "trusted although " << path << ": " << why;
    EXPECT_EQ(d.path, path);
    EXPECT_TRUE(contains(d.why, why)) << d.why;
    EXPECT_FALSE(d.legacy);
  }

  // Extracting `key` again publishes a fresh tree with the package's own bytes, owned by us and
  // passing the check; what was there is gone (moved aside into tmp/ and removed).
  void expect_replaced(const Key& key, const std::string& archive) {
    auto pkg = store_->extract(key, archive, ArchiveFormat::kConda, nullptr);
    ASSERT_TRUE(pkg.ok()) << pkg.status().to_string();
    ASSERT_EQ(store_->find_tree(key), *pkg);
    EXPECT_EQ(testing::slurp(*pkg + "/bin/t"), "#!/bin/sh\n");
    EXPECT_EQ(testing::slurp(*pkg + "/lib/l.so.1"), "ELF");
    struct stat st;
    ASSERT_EQ(::lstat((*pkg + "/lib/l.so.1").c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, ::geteuid());
    EXPECT_EQ(st.st_mode & 07777, 0644u);
    EXPECT_TRUE(tmp_entries().empty()) << ::testing::PrintToString(tmp_entries());
  }

  TempDir dir_;
  std::string root_ = dir_ / "cache";
  std::unique_ptr<Store> store_;
};

// ---- the cache's own directories, and those above it -----------------------------------------

TEST_F(StoreTrustTest, OpenRefusesACacheDirectoryWritableByGroupOrOthers) {
  const std::map<mode_t, std::string> modes = {
      {0775, "writable by group (mode 0775)"},
      {0757, "writable by others (mode 0757)"},
      {0777, "writable by group and others (mode 0777)"},
      // Sticky is no excuse inside the cache: entry names are predictable.
      {01777, "writable by group and others (mode 1777)"}};
  for (const char* rel : {"", "/v1", "/v1/archives", "/v1/trees", "/v1/locks", "/v1/tmp"}) {
    const std::string dir = root_ + rel;
    for (const auto& [mode, why] : modes) {
      SCOPED_TRACE(dir + " " + why);
      foreign_group(dir);
      ASSERT_EQ(::chmod(dir.c_str(), mode), 0);
      expect_refused(root_, dir, why, "`chmod go-w " + dir + "`");
      ASSERT_EQ(::chmod(dir.c_str(), 0755), 0);
      EXPECT_TRUE(reopen(root_).ok());
    }
  }
}

TEST_F(StoreTrustTest, OpenRefusesAWritableAncestorUnlessSticky) {
  const std::string shared = dir_ / "shared";
  const std::string cache = shared + "/deeper/cache";
  ASSERT_TRUE(make_dirs(shared).ok());
  ASSERT_EQ(::chmod(shared.c_str(), 0777), 0);
  expect_refused(cache, shared, "writable by group and others (mode 0777)",
                 "`chmod go-w " + shared + "`");
  // Nothing is created below a directory that failed.
  EXPECT_FALSE(path_exists(shared + "/deeper"));
  // Sticky, like /tmp: others cannot rename or remove what is ours in it.
  ASSERT_EQ(::chmod(shared.c_str(), 01777), 0);
  auto s = reopen(cache);
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  EXPECT_TRUE(is_dir(cache + "/v1/trees"));
}

TEST_F(StoreTrustTest, OpenRefusesDirectoriesOwnedByAnotherUser) {
  if (!root()) GTEST_SKIP() << "needs root to chown to uid " << kOtherUid;
  const std::string trees = root_ + "/v1/trees";
  ASSERT_EQ(::chown(trees.c_str(), kOtherUid, static_cast<gid_t>(-1)), 0);
  expect_refused(root_, trees, "owned by uid 12345, not by root", "`chown -R 0 " + trees + "`");
  ASSERT_EQ(::chown(trees.c_str(), 0, static_cast<gid_t>(-1)), 0);

  // A directory above the cache: its owner could rename the cache and put another in its place.
  const std::string theirs = dir_ / "theirs";
  ASSERT_TRUE(make_dirs(theirs).ok());
  ASSERT_EQ(::chown(theirs.c_str(), kOtherUid, static_cast<gid_t>(-1)), 0);
  expect_refused(theirs + "/cache", theirs, "owned by uid 12345, not by root",
                 "use a --cache-dir outside " + theirs);
  EXPECT_FALSE(path_exists(theirs + "/cache"));
}

TEST_F(StoreTrustTest, OpenRefusesASymlinkedStoreDirectoryAndCreatesNothingThroughIt) {
  // v1/tmp pointing elsewhere: temp files would be made wherever the link's owner chose.
  const std::string tmp = root_ + "/v1/tmp";
  const std::string elsewhere = dir_ / "elsewhere";
  ASSERT_TRUE(remove_all(tmp).ok());
  ASSERT_EQ(::symlink(elsewhere.c_str(), tmp.c_str()), 0);
  expect_refused(root_, tmp, "is a symbolic link", "replace the link by a directory");
  EXPECT_FALSE(path_exists(elsewhere));
  // Pointing at a real directory is refused all the same.
  ASSERT_TRUE(make_dirs(elsewhere).ok());
  expect_refused(root_, tmp, "is a symbolic link", "replace the link by a directory");
  EXPECT_TRUE(testing::list(elsewhere).empty());
}

TEST_F(StoreTrustTest, OpenResolvesASymlinkedRootAndUsesTheRealPath) {
  const std::string link = dir_ / "link";
  ASSERT_EQ(::symlink(root_.c_str(), link.c_str()), 0);
  auto s = reopen(link);
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  // Changing the link later cannot move this store.
  EXPECT_EQ((*s)->root(), root_);
}

TEST_F(StoreTrustTest, VerifyListsTheUntrustedDirectoriesOnly) {
  add_entry(conda(), ArchiveFormat::kConda);
  const std::string trees = root_ + "/v1/trees";
  ASSERT_EQ(::chmod(trees.c_str(), 0777), 0);
  StoreOptions report;
  report.report_distrust = true;
  auto s = reopen(root_, report);
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  auto v = (*s)->verify();
  ASSERT_TRUE(v.ok()) << v.status().to_string();
  ASSERT_EQ(v->size(), 1u);
  EXPECT_EQ((*v)[0].path, trees);
  EXPECT_TRUE(contains((*v)[0].problem,
                       "writable by group and others (mode 0777): fix: "
                       "`chmod go-w " +
                           trees + "`"))
      << (*v)[0].problem;
}

// ---- entries -----------------------------------------------------------------------------------

// A shared cache's typical hole: the entry's directory (or pkg/) writable by others, who can
// then replace any file in it.
TEST_F(StoreTrustTest, TreeWhoseDirectoryOthersCanWriteIsPassedOverAndReplaced) {
  auto [key, archive] = add_entry(conda(), ArchiveFormat::kConda);
  for (const std::string& dir : {tree_dir(key), tree_dir(key) + "/pkg"}) {
    SCOPED_TRACE(dir);
    ASSERT_EQ(::chmod(dir.c_str(), 0777), 0);
    const std::string file = tree_dir(key) + "/pkg/lib/l.so.1";
    ASSERT_EQ(::unlink(file.c_str()), 0);
    testing::write_bytes(file, "EVIL");  // another user's replacement
    expect_passed_over(key, dir, "writable by group and others (mode 0777)");
    expect_replaced(key, archive);
  }
}

TEST_F(StoreTrustTest, TreeOwnedByAnotherUserIsPassedOverAndReplaced) {
  if (!root()) GTEST_SKIP() << "needs root to chown to uid " << kOtherUid;
  auto [key, archive] = add_entry(conda(), ArchiveFormat::kConda);
  // The whole entry (as if another user had published it), or only pkg/ or the manifest.
  for (const std::string& what :
       {tree_dir(key), tree_dir(key) + "/pkg", tree_dir(key) + "/manifest.json"}) {
    SCOPED_TRACE(what);
    chown_tree(what, kOtherUid);
    testing::write_bytes(tree_dir(key) + "/pkg/lib/l.so.1", "EVL");
    expect_passed_over(key, what, "owned by uid 12345, not by root");
    expect_replaced(key, archive);
  }
}

TEST_F(StoreTrustTest, ManifestMustVouchForItsEntry) {
  auto [key, archive] = add_entry(conda("a"), ArchiveFormat::kConda);
  const std::string manifest = tree_dir(key) + "/manifest.json";

  ASSERT_EQ(::chmod(manifest.c_str(), 0666), 0);
  expect_passed_over(key, manifest, "writable by group and others (mode 0666)");
  expect_replaced(key, archive);

  // Two entries swapped by name: each manifest names the other key.
  auto [other, other_archive] = add_entry(conda("b"), ArchiveFormat::kConda);
  const std::string swap = dir_ / "swap";
  ASSERT_EQ(::rename(tree_dir(key).c_str(), swap.c_str()), 0);
  ASSERT_EQ(::rename(tree_dir(other).c_str(), tree_dir(key).c_str()), 0);
  ASSERT_EQ(::rename(swap.c_str(), tree_dir(other).c_str()), 0);
  expect_passed_over(key, manifest, "not a manifest this version wrote for the entry");
  expect_passed_over(other, tree_dir(other) + "/manifest.json", "not a manifest");
  expect_replaced(key, archive);

  // A manifest that is a symlink (to a good one) is not followed.
  ASSERT_EQ(::rename(manifest.c_str(), (dir_ / "m.json").c_str()), 0);
  ASSERT_EQ(::symlink((dir_ / "m.json").c_str(), manifest.c_str()), 0);
  expect_passed_over(key, manifest, "a symbolic link");
  expect_replaced(key, archive);
}

// Version-1 trees came from an extractor that kept a package's 0666: not trusted, but no sign
// of tampering either (Distrust::legacy: the driver says so only at -v).
TEST_F(StoreTrustTest, VersionOneTreeIsPassedOverAsLegacyAndReplaced) {
  auto [key, archive] = add_entry(conda(), ArchiveFormat::kConda);
  const std::string manifest = tree_dir(key) + "/manifest.json";
  auto doc = nlohmann::json::parse(testing::slurp(manifest));
  doc["version"] = 1;
  ASSERT_EQ(::unlink(manifest.c_str()), 0);
  testing::write_bytes(manifest, doc.dump());  // nlohmann sorts keys: "files" first, as v1 did
  ASSERT_EQ(::chmod((tree_dir(key) + "/pkg/lib/l.so.1").c_str(), 0666), 0);
  Distrust d;
  EXPECT_FALSE(store_->find_tree(key, &d));
  EXPECT_EQ(d.path, manifest);
  EXPECT_TRUE(d.legacy);
  EXPECT_TRUE(contains(d.why, "older materializer (manifest version 1)")) << d.why;
  expect_replaced(key, archive);
}

TEST_F(StoreTrustTest, TreeNameTakenByAFileOrSymlinkIsReplaced) {
  auto [key, archive] = add_entry(conda(), ArchiveFormat::kConda);
  const std::string elsewhere = dir_ / "elsewhere";
  ASSERT_TRUE(make_dirs(elsewhere + "/pkg").ok());
  testing::write_bytes(elsewhere + "/pkg/x", "x");
  ASSERT_TRUE(remove_all(tree_dir(key)).ok());
  ASSERT_EQ(::symlink(elsewhere.c_str(), tree_dir(key).c_str()), 0);
  expect_passed_over(key, tree_dir(key), "not a directory");
  expect_replaced(key, archive);
  EXPECT_EQ(testing::slurp(elsewhere + "/pkg/x"), "x");  // the link was moved, not its target

  ASSERT_TRUE(remove_all(tree_dir(key)).ok());
  testing::write_bytes(tree_dir(key), "a file");
  expect_passed_over(key, tree_dir(key), "not a directory");
  expect_replaced(key, archive);
}

TEST_F(StoreTrustTest, ArchiveThatFailsTheCheckIsPassedOverAndReplaced) {
  const std::string bytes = conda();
  auto [key, archive] = add_entry(bytes, ArchiveFormat::kConda);
  auto republish = [&, key = key] {
    auto p = store_->begin_archive(key, ArchiveFormat::kConda);
    ASSERT_TRUE(p.ok()) << p.status().to_string();
    ASSERT_TRUE((*p)->write(bytes.data(), bytes.size()).ok());
    auto r = (*p)->publish();
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_EQ(store_->find_archive(key, ArchiveFormat::kConda), *r);
    EXPECT_EQ(testing::slurp(*r), bytes);
    EXPECT_EQ(testing::file_mode(*r) & 07777, 0644u);
    EXPECT_TRUE(tmp_entries().empty());
  };

  ASSERT_EQ(::chmod(archive.c_str(), 0646), 0);
  testing::write_bytes(archive, "tampered");
  Distrust d;
  EXPECT_FALSE(store_->find_archive(key, ArchiveFormat::kConda, &d));
  EXPECT_EQ(d.path, archive);
  EXPECT_TRUE(contains(d.why, "writable by others (mode 0646)")) << d.why;
  republish();  // publish() no longer keeps "theirs" when it fails the check

  ASSERT_TRUE(remove_all(archive).ok());
  ASSERT_TRUE(make_dirs(archive + "/sub").ok());  // a directory in the way
  EXPECT_FALSE(store_->find_archive(key, ArchiveFormat::kConda, &d));
  EXPECT_TRUE(contains(d.why, "not a regular file")) << d.why;
  republish();

  if (!root()) GTEST_SKIP() << "needs root to chown to uid " << kOtherUid;
  ASSERT_EQ(::chown(archive.c_str(), kOtherUid, static_cast<gid_t>(-1)), 0);
  EXPECT_FALSE(store_->find_archive(key, ArchiveFormat::kConda, &d));
  EXPECT_TRUE(contains(d.why, "owned by uid 12345")) << d.why;
  republish();
}

// ---- files the cache creates: never through a planted symlink --------------------------------

TEST_F(StoreTrustTest, LockFileIsNeverOpenedThroughASymlink) {
  Key key{HashKind::kSha256, sha256_hex("k")};
  const std::string lock = root_ + "/v1/locks/" + key.str() + ".lock";
  // Dangling: the old open(O_CREAT) created the target, wherever it pointed.
  const std::string victim = dir_ / "victim";
  ASSERT_EQ(::symlink(victim.c_str(), lock.c_str()), 0);
  for (bool wait : {false, true}) {
    auto l = store_->lock_entry(key, wait);
    ASSERT_FALSE(l.ok());
    EXPECT_TRUE(contains(l.status().message(), lock + ": is a symbolic link"))
        << l.status().message();
    EXPECT_TRUE(contains(l.status().message(), "`rm " + lock + "`")) << l.status().message();
    EXPECT_FALSE(path_exists(victim));
  }
  // Pointing at an existing file: not opened, not changed.
  testing::write_bytes(victim, "keep");
  ASSERT_EQ(::chmod(victim.c_str(), 0644), 0);
  EXPECT_FALSE(store_->lock_entry(key, false).ok());
  EXPECT_EQ(testing::slurp(victim), "keep");
  EXPECT_EQ(testing::file_mode(victim) & 07777, 0644u);
}

TEST_F(StoreTrustTest, LockFilesArePrivate) {
  // flock needs only a read-only fd: a lock file others can open is one they can hold for ever.
  Key key{HashKind::kSha256, sha256_hex("k")};
  const std::string lock = root_ + "/v1/locks/" + key.str() + ".lock";
  {
    auto l = store_->lock_entry(key, false);
    ASSERT_TRUE(l.ok() && l->held());
  }
  EXPECT_EQ(testing::file_mode(lock) & 07777, 0600u);
  ASSERT_EQ(::chmod(lock.c_str(), 0644), 0);  // as an older version made them
  ASSERT_TRUE(store_->lock_entry(key, true).ok());
  EXPECT_EQ(testing::file_mode(lock) & 07777, 0600u);

  if (!root()) GTEST_SKIP() << "needs root to chown to uid " << kOtherUid;
  ASSERT_EQ(::chown(lock.c_str(), kOtherUid, static_cast<gid_t>(-1)), 0);
  auto l = store_->lock_entry(key, false);
  ASSERT_FALSE(l.ok());
  EXPECT_TRUE(contains(l.status().message(), "owned by uid 12345")) << l.status().message();
}

TEST_F(StoreTrustTest, TempFilesAreNeverCreatedThroughASymlink) {
  // Temp names are random, but whatever creates them must not follow a link planted there.
  const std::string planted = root_ + "/v1/tmp/.tmp-1-planted.conda";
  const std::string victim = dir_ / "victim";
  ASSERT_EQ(::symlink(victim.c_str(), planted.c_str()), 0);
  auto fd = create_new_file(planted, 0644);
  ASSERT_FALSE(fd.ok());
  EXPECT_TRUE(contains(fd.status().message(), "create " + planted)) << fd.status().message();
  EXPECT_FALSE(path_exists(victim));
}

TEST_F(StoreTrustTest, GroupWriteOfRootsGroupIsTrusted) {
  if (!root()) GTEST_SKIP() << "needs root: only root's files are gid 0";
  // A member shipped 0664 is extracted 0664 by root (gid 0) and recorded so in the manifest.
  auto [key, archive] = add_entry(
      testing::make_conda({{"info/index.json", 'f', R"({"name":"g"})"}},
                          {{"lib/g.so", 'f', "ELF", "", 0664}}),
      ArchiveFormat::kConda);
  ASSERT_EQ(testing::file_mode(tree_dir(key) + "/pkg/lib/g.so") & 07777, 0664u);
  for (const std::string& dir : {root_, root_ + "/v1/trees", tree_dir(key)}) {
    ASSERT_EQ(::chmod(dir.c_str(), 0775), 0);
  }
  ASSERT_EQ(::chmod(archive.c_str(), 0664), 0);
  auto store = reopen(root_);
  ASSERT_TRUE(store.ok()) << store.status().to_string();
  EXPECT_TRUE((*store)->find_tree(key).has_value());
  auto v = (*store)->verify();
  ASSERT_TRUE(v.ok()) << v.status().to_string();
  std::string problems;
  for (const auto& e : *v) problems += e.path + ": " + e.problem + "\n";
  EXPECT_TRUE(v->empty()) << problems;
}

// ---- cache verify --------------------------------------------------------------------------

TEST_F(StoreTrustTest, VerifyReportsEveryMemberAndEntryOthersCouldChange) {
  auto [key, archive] = add_entry(conda(), ArchiveFormat::kConda);
  const std::string pkg = tree_dir(key) + "/pkg";
  // Changes only the owner (or root) can make, which the warm path does not stat for.
  for (const std::string& p : {pkg + "/lib/l.so.1", pkg + "/share/empty", archive}) {
    foreign_group(p);
  }
  ASSERT_EQ(::chmod((pkg + "/lib/l.so.1").c_str(), 0666), 0);
  ASSERT_EQ(::chmod((pkg + "/share/empty").c_str(), 0777), 0);
  ASSERT_EQ(::chmod(archive.c_str(), 0664), 0);
  const std::string lock = root_ + "/v1/locks/" + key.str() + ".lock";
  ASSERT_EQ(::symlink("/etc/passwd", lock.c_str()), 0);
  if (root()) {
    ASSERT_EQ(::lchown((pkg + "/bin/t").c_str(), kOtherUid, static_cast<gid_t>(-1)), 0);
  }

  auto v = store_->verify();
  ASSERT_TRUE(v.ok()) << v.status().to_string();
  std::multimap<std::string, std::string> got;
  for (const auto& p : *v) got.emplace(p.path, p.problem);
  auto has = [&](const std::string& path, const std::string& what) {
    auto [a, b] = got.equal_range(path);
    for (auto it = a; it != b; ++it) {
      if (contains(it->second, what)) return true;
    }
    return false;
  };
  EXPECT_TRUE(has(pkg + "/lib/l.so.1", "writable by group and others (mode 0666)"))
      << ::testing::PrintToString(got);
  EXPECT_TRUE(has(pkg + "/share/empty", "writable by group and others (mode 0777)"))
      << ::testing::PrintToString(got);
  EXPECT_TRUE(has(archive, "writable by group (mode 0664)")) << ::testing::PrintToString(got);
  EXPECT_TRUE(has(lock, "not a regular file")) << ::testing::PrintToString(got);
  if (root()) {
    EXPECT_TRUE(has(pkg + "/bin/t", "owned by uid 12345")) << ::testing::PrintToString(got);
  }
}

}  // namespace
}  // namespace mat::cache
