// The records of v1/meta/ (cache/meta.h): the md5 index and entry sources. Damage to a record
// is a miss, never a link to another entry; records others could change are ignored; sources
// never hold credentials; verify() and the per-entry repair primitives see them.
#include "cache/meta.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache/paths.h"
#include "cache/store.h"
#include "cache/test_util.h"
#include "materializer/base/hash.h"

namespace mat::cache {
namespace {

using testing::TempDir;

class StoreMetaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = Store::open(root_);
    ASSERT_TRUE(s.ok()) << s.status().to_string();
    store_ = std::move(s).value();
  }

  // Publishes `bytes` as an archive and returns its key.
  Key add_archive(const std::string& bytes, ArchiveFormat f = ArchiveFormat::kConda) {
    Key key{HashKind::kSha256, sha256_hex(bytes)};
    auto p = store_->begin_archive(key, f);
    EXPECT_TRUE(p.ok());
    EXPECT_TRUE((*p)->write(bytes.data(), bytes.size()).ok());
    EXPECT_TRUE((*p)->finish().ok());
    EXPECT_TRUE((*p)->publish().ok());
    return key;
  }

  std::string conda() {
    return testing::make_conda({{"info/index.json", 'f', R"({"name":"t"})"}},
                               {{"bin/t", 'f', "#!/bin/sh\n", "", 0755}, {"lib/l", 'f', "ELF"}});
  }

  std::string link_path(const std::string& md5) const {
    return root_ + "/v1/meta/md5-" + md5 + ".sha256";
  }

  TempDir dir_;
  std::string root_ = dir_ / "cache";
  std::unique_ptr<Store> store_;
};

const std::string kMd5 = md5_hex("some archive");
const Key kSha{HashKind::kSha256, sha256_hex("some archive")};
const Key kOther{HashKind::kSha256, sha256_hex("another archive")};

TEST_F(StoreMetaTest, Md5LinkRoundTrips) {
  EXPECT_FALSE(store_->find_md5(kMd5));
  ASSERT_TRUE(store_->record_md5(kMd5, kSha, /*verified=*/false).ok());
  auto link = store_->find_md5(kMd5);
  ASSERT_TRUE(link);
  EXPECT_EQ(link->sha256, kSha);
  EXPECT_FALSE(link->verified);
  ASSERT_TRUE(store_->record_md5(kMd5, kSha, /*verified=*/true).ok());
  EXPECT_TRUE(store_->find_md5(kMd5)->verified);
  // Upper-case digests (as some locks write them) find the same record.
  std::string upper = kMd5;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  EXPECT_EQ(store_->find_md5(upper)->sha256, kSha);
  EXPECT_TRUE(testing::list(root_ + "/v1/tmp").empty());
}

TEST_F(StoreMetaTest, DamagedMd5LinkIsAMissNeverAnotherEntry) {
  ASSERT_TRUE(store_->record_md5(kMd5, kSha, true).ok());
  const std::string path = link_path(kMd5);
  const std::string good = testing::slurp(path);
  // Every single-character change: a flipped digit of the sha256 would name another entry.
  for (size_t i = 0; i < good.size(); ++i) {
    for (char c : {good[i] == '0' ? '1' : '0', good[i] == ' ' ? 'x' : ' '}) {
      std::string bad = good;
      bad[i] = c;
      testing::write_bytes(path, bad);
      ::chmod(path.c_str(), 0644);
      auto link = store_->find_md5(kMd5);
      EXPECT_FALSE(link) << "byte " << i << " -> '" << c << "' gave " << link->sha256.str();
    }
  }
  for (size_t n : {size_t{0}, good.size() / 2, good.size() - 1}) {
    testing::write_bytes(path, good.substr(0, n));
    EXPECT_FALSE(store_->find_md5(kMd5)) << n;
  }
  // A record copied under another md5's name does not lead anywhere either.
  const std::string other_md5 = md5_hex("another archive");
  testing::write_bytes(link_path(other_md5), good);
  EXPECT_FALSE(store_->find_md5(other_md5));
}

TEST_F(StoreMetaTest, RecordsOthersCouldChangeAreIgnored) {
  ASSERT_TRUE(store_->record_md5(kMd5, kSha, true).ok());
  const std::string path = link_path(kMd5);
  ASSERT_EQ(::chmod(path.c_str(), 0666), 0);
  EXPECT_FALSE(store_->find_md5(kMd5));
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  EXPECT_TRUE(store_->find_md5(kMd5));
  // A symlink to a good record elsewhere is not followed.
  const std::string elsewhere = dir_ / "elsewhere";
  ASSERT_EQ(::rename(path.c_str(), elsewhere.c_str()), 0);
  ASSERT_EQ(::symlink(elsewhere.c_str(), path.c_str()), 0);
  EXPECT_FALSE(store_->find_md5(kMd5));
  ASSERT_TRUE(store_->record_source(kSha, "https://example.org/a.conda").ok());
  const std::string source = root_ + "/v1/meta/" + kSha.str() + ".source";
  ASSERT_EQ(::chmod(source.c_str(), 0646), 0);
  EXPECT_FALSE(store_->find_source(kSha));
}

TEST_F(StoreMetaTest, SourcesAreOnlyPlainHttpUrls) {
  const std::string plain = "https://conda.example.org/c/linux-64/a-1-0.conda";
  for (const std::string& url :
       {std::string("file:///srv/channel/a-1-0.conda"), std::string("ftp://h/a.conda"),
        std::string("https://user:pw@h/a.conda"), std::string("https://h/t/tok123/a.conda"),
        std::string("https://h/a.conda?token=abc"), std::string("https://h/a\n.conda"),
        std::string("https://h/") + std::string(kMaxSourceUrl, 'a')}) {
    ASSERT_TRUE(store_->record_source(kSha, url).ok()) << url;
    EXPECT_FALSE(store_->has_source(kSha)) << url;
  }
  ASSERT_TRUE(store_->record_source(kSha, plain).ok());
  EXPECT_TRUE(store_->has_source(kSha));
  EXPECT_EQ(store_->find_source(kSha), plain);
  EXPECT_EQ(testing::slurp(root_ + "/v1/meta/" + kSha.str() + ".source"), plain + "\n");
}

TEST_F(StoreMetaTest, VerifyNamesDamagedRecordsAndRemoveRecordDropsThem) {
  const std::string bytes = conda();
  Key key = add_archive(bytes);
  const std::string right_md5 = md5_hex(bytes);
  ASSERT_TRUE(store_->record_md5(right_md5, key, true).ok());
  ASSERT_TRUE(store_->record_source(key, "https://h/a.conda").ok());
  auto v = store_->verify();
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->empty()) << v->front().path << ": " << v->front().problem;

  // A verified record whose archive has another md5 (only this cache writes "verified", so
  // this is damage), and a source record with garbage.
  ASSERT_TRUE(store_->record_md5(kMd5, key, true).ok());
  testing::write_bytes(root_ + "/v1/meta/" + key.str() + ".source", "not a url");
  v = store_->verify();
  ASSERT_TRUE(v.ok());
  ASSERT_EQ(v->size(), 2u);
  for (const auto& p : *v) {
    EXPECT_EQ(p.part, VerifyProblem::Part::kMeta) << p.path;
    ASSERT_TRUE(store_->remove_record(p.path).ok());
    EXPECT_FALSE(path_exists(p.path));
  }
  EXPECT_TRUE(store_->verify()->empty());
  EXPECT_TRUE(store_->find_md5(right_md5));  // the good record stays
  // remove_record() removes nothing outside meta/.
  EXPECT_FALSE(store_->remove_record(store_->find_archive(key, ArchiveFormat::kConda).value()).ok());
  EXPECT_FALSE(store_->remove_record(root_ + "/v1/meta/../archives/x").ok());
}

TEST_F(StoreMetaTest, VerifyEntryAndRemoveTreeKeepTheGoodParts) {
  const std::string bytes = conda();
  Key key = add_archive(bytes);
  auto archive = store_->find_archive(key, ArchiveFormat::kConda);
  ASSERT_TRUE(store_->extract(key, *archive, ArchiveFormat::kConda, nullptr).ok());
  auto v = store_->verify_entry(key);
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE(v->empty());
  const std::string file = *store_->find_tree(key) + "/lib/l";
  ::chmod(file.c_str(), 0644);
  testing::write_bytes(file, "ELG");
  v = store_->verify_entry(key);
  ASSERT_EQ(v->size(), 1u);
  EXPECT_EQ((*v)[0].part, VerifyProblem::Part::kTree);
  EXPECT_EQ(store_->any_archive(key)->first, *archive);
  ASSERT_TRUE(store_->remove_tree(key).ok());
  EXPECT_FALSE(store_->find_tree(key));
  EXPECT_TRUE(store_->find_archive(key, ArchiveFormat::kConda));
  EXPECT_TRUE(store_->verify_entry(key)->empty());

  testing::write_bytes(*archive, bytes.substr(0, 10));
  v = store_->verify_entry(key);
  ASSERT_EQ(v->size(), 1u);
  EXPECT_EQ((*v)[0].part, VerifyProblem::Part::kArchive);
  ASSERT_TRUE(store_->remove_archive(key).ok());
  EXPECT_FALSE(store_->any_archive(key));
}

TEST_F(StoreMetaTest, CleanAllDropsTheRecordsOfRemovedEntries) {
  const std::string bytes = conda();
  Key key = add_archive(bytes);
  ASSERT_TRUE(store_->record_md5(md5_hex(bytes), key, true).ok());
  ASSERT_TRUE(store_->record_source(key, "https://h/a.conda").ok());
  ASSERT_TRUE(store_->clean(/*all=*/false).ok());
  EXPECT_EQ(testing::list(root_ + "/v1/meta").size(), 2u);
  ASSERT_TRUE(store_->clean(/*all=*/true).ok());
  EXPECT_TRUE(testing::list(root_ + "/v1/meta").empty());
}

// An older version's cache that this user cannot write has no meta/ (root's, shared: open()
// cannot create it then). Everything works without it; records are simply absent.
TEST_F(StoreMetaTest, CacheWithoutMetaDirectoryWorks) {
  Key key = add_archive(conda());
  ASSERT_EQ(::rmdir((root_ + "/v1/meta").c_str()), 0);
  EXPECT_FALSE(store_->find_md5(kMd5));
  EXPECT_FALSE(store_->find_source(key));
  EXPECT_FALSE(store_->record_md5(kMd5, key, true).ok());
  EXPECT_TRUE(testing::list(root_ + "/v1/tmp").empty());
  auto v = store_->verify();
  ASSERT_TRUE(v.ok()) << v.status().to_string();
  EXPECT_TRUE(v->empty());
  EXPECT_TRUE(store_->clean(/*all=*/true).ok());
  // A store opened on it creates meta/ when it can.
  auto reopened = Store::open(root_);
  ASSERT_TRUE(reopened.ok()) << reopened.status().to_string();
  EXPECT_TRUE(path_exists(root_ + "/v1/meta"));
}

TEST_F(StoreMetaTest, RetargetPublishesUnderTheSha256) {
  const std::string bytes = conda();
  Key md5{HashKind::kMd5, md5_hex(bytes)};
  Key sha{HashKind::kSha256, sha256_hex(bytes)};
  auto p = store_->begin_archive(md5, ArchiveFormat::kConda);
  ASSERT_TRUE(p.ok());
  ASSERT_TRUE((*p)->write(bytes.data(), bytes.size()).ok());
  ASSERT_TRUE((*p)->finish().ok());
  EXPECT_FALSE((*p)->retarget(Key{HashKind::kSha256, "../x"}).ok());
  ASSERT_TRUE((*p)->retarget(sha).ok());
  auto path = (*p)->publish();
  ASSERT_TRUE(path.ok());
  EXPECT_EQ(*path, root_ + "/v1/archives/" + sha.str() + ".conda");
  EXPECT_FALSE(store_->any_archive(md5));
}

}  // namespace
}  // namespace mat::cache
