// repair_cache(): per entry, by what is damaged, and nothing else touched. The refetch path
// needs a server: tests/e2e/test_cache_repair.py covers it.
#include "materializer/cache_repair.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "cache/test_util.h"
#include "materializer/base/hash.h"

namespace mat {
namespace {

using cache::ArchiveFormat;
using cache::Key;
using Kind = RepairAction::Kind;
namespace t = cache::testing;

class CacheRepairTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = cache::Store::open(root_);
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    store_ = std::move(s).value();
  }

  // A published entry (archive and tree) whose only file, lib/<name>, holds `content`.
  Key add_entry(const std::string& name, const std::string& content) {
    const std::string bytes = t::make_conda({{"info/index.json", 'f', R"({"name":"t"})"}},
                                            {{"lib/" + name, 'f', content}});
    Key key{HashKind::kSha256, sha256_hex(bytes)};
    auto p = store_->begin_archive(key, ArchiveFormat::kConda);
    EXPECT_TRUE(p.ok());
    EXPECT_TRUE((*p)->write(bytes.data(), bytes.size()).ok());
    EXPECT_TRUE((*p)->finish().ok());
    auto archive = (*p)->publish();
    EXPECT_TRUE(archive.ok());
    EXPECT_TRUE(store_->extract(key, *archive, ArchiveFormat::kConda, nullptr).ok());
    return key;
  }

  std::string file(const Key& key, const std::string& name) {
    return root_ + "/v1/trees/" + key.str() + "/pkg/lib/" + name;
  }
  std::string archive(const Key& key) {
    return root_ + "/v1/archives/" + key.str() + ".conda";
  }

  std::vector<RepairAction> repair() {
    auto problems = store_->verify();
    EXPECT_TRUE(problems.ok());
    auto actions = repair_cache(*store_, *problems, fetch::Options{});
    EXPECT_TRUE(actions.ok()) << actions.status().to_string();
    auto after = store_->verify();
    EXPECT_TRUE(after.ok() && after->empty()) << (after->empty() ? "" : after->front().problem);
    return actions.ok() ? *actions : std::vector<RepairAction>{};
  }

  static ino_t inode(const std::string& path) {
    struct stat st {};
    ::lstat(path.c_str(), &st);
    return st.st_ino;
  }

  t::TempDir dir_;
  std::string root_ = dir_ / "cache";
  std::unique_ptr<cache::Store> store_;
};

TEST_F(CacheRepairTest, DamagedTreeIsExtractedAfreshFromItsArchive) {
  Key bad = add_entry("a", "AAAA");
  Key good = add_entry("b", "BBBB");
  const ino_t good_file = inode(file(good, "b")), good_archive = inode(archive(good));
  ::chmod(file(bad, "a").c_str(), 0644);
  t::write_bytes(file(bad, "a"), "AAAB");
  auto actions = repair();
  ASSERT_EQ(actions.size(), 1u);
  EXPECT_EQ(actions[0].key, bad.str());
  EXPECT_EQ(actions[0].kind, Kind::kReextracted) << actions[0].detail;
  EXPECT_EQ(t::slurp(file(bad, "a")), "AAAA");
  EXPECT_EQ(inode(file(good, "b")), good_file);
  EXPECT_EQ(inode(archive(good)), good_archive);
}

TEST_F(CacheRepairTest, DamagedArchiveWithoutSourceIsRemovedAndTheGoodTreeKept) {
  Key key = add_entry("a", "AAAA");
  const ino_t tree_file = inode(file(key, "a"));
  t::write_bytes(archive(key), "truncated");
  auto actions = repair();
  ASSERT_EQ(actions.size(), 1u);
  EXPECT_EQ(actions[0].kind, Kind::kRemovedArchive) << actions[0].detail;
  EXPECT_FALSE(path_exists(archive(key)));
  EXPECT_EQ(inode(file(key, "a")), tree_file);
  EXPECT_TRUE(store_->find_tree(key));
}

TEST_F(CacheRepairTest, DamagedArchiveAndTreeWithoutSourceAreRemoved) {
  Key key = add_entry("a", "AAAA");
  Key good = add_entry("b", "BBBB");
  t::write_bytes(archive(key), "truncated");
  ::unlink(file(key, "a").c_str());
  auto actions = repair();
  ASSERT_EQ(actions.size(), 1u);
  EXPECT_EQ(actions[0].kind, Kind::kRemoved) << actions[0].detail;
  EXPECT_NE(actions[0].detail.find("no download URL is recorded"), std::string::npos);
  EXPECT_FALSE(store_->find_tree(key));
  EXPECT_FALSE(store_->any_archive(key));
  EXPECT_TRUE(store_->find_tree(good));
}

TEST_F(CacheRepairTest, EntryReplacedMeanwhileIsLeftAlone) {
  Key key = add_entry("a", "AAAA");
  ::chmod(file(key, "a").c_str(), 0644);
  t::write_bytes(file(key, "a"), "AAAB");
  auto problems = store_->verify();
  ASSERT_TRUE(problems.ok());
  ASSERT_FALSE(problems->empty());
  t::write_bytes(file(key, "a"), "AAAA");  // another process repaired it after the scan
  const ino_t now = inode(file(key, "a"));
  auto actions = repair_cache(*store_, *problems, fetch::Options{});
  ASSERT_TRUE(actions.ok());
  ASSERT_EQ(actions->size(), 1u);
  EXPECT_EQ((*actions)[0].kind, Kind::kFixedMeanwhile);
  EXPECT_EQ(inode(file(key, "a")), now);
}

TEST_F(CacheRepairTest, ArchiveThatNoLongerExtractsRemovesTheEntry) {
  // A good digest does not make a good archive: an entry whose archive was stored damaged by
  // an older version (here: its key is its own bytes) cannot be re-extracted.
  const std::string junk = "not a conda archive";
  Key key{HashKind::kSha256, sha256_hex(junk)};
  auto p = store_->begin_archive(key, ArchiveFormat::kConda);
  ASSERT_TRUE(p.ok());
  ASSERT_TRUE((*p)->write(junk.data(), junk.size()).ok());
  ASSERT_TRUE((*p)->finish().ok());
  ASSERT_TRUE((*p)->publish().ok());
  Key donor = add_entry("a", "AAAA");
  ASSERT_EQ(::rename((root_ + "/v1/trees/" + donor.str()).c_str(),
                     (root_ + "/v1/trees/" + key.str()).c_str()),
            0);  // a tree whose manifest names another key: damaged
  auto actions = repair();
  ASSERT_GE(actions.size(), 1u);
  EXPECT_EQ(actions[0].key, key.str());
  EXPECT_EQ(actions[0].kind, Kind::kRemoved) << actions[0].detail;
  EXPECT_FALSE(store_->any_archive(key));
}

}  // namespace
}  // namespace mat
