#include "cache/paths.h"

#include <gtest/gtest.h>
#include <unistd.h>

namespace mat::cache {
namespace {

const std::string kSha(64, 'a');
const std::string kMd5(32, 'b');

TEST(CachePaths, LayoutMatchesStoreHeader) {
  Paths p("/c");
  Key k{HashKind::kSha256, kSha};
  EXPECT_EQ(p.archives_dir(), "/c/v1/archives");
  EXPECT_EQ(p.archive(k, ArchiveFormat::kConda), "/c/v1/archives/sha256-" + kSha + ".conda");
  EXPECT_EQ(p.archive(k, ArchiveFormat::kTarBz2), "/c/v1/archives/sha256-" + kSha + ".tar.bz2");
  EXPECT_EQ(p.archive(k, ArchiveFormat::kWheel), "/c/v1/archives/sha256-" + kSha + ".whl");
  EXPECT_EQ(p.tree(k), "/c/v1/trees/sha256-" + kSha);
  EXPECT_EQ(p.tree_pkg(k), "/c/v1/trees/sha256-" + kSha + "/pkg");
  EXPECT_EQ(p.tree_manifest(k), "/c/v1/trees/sha256-" + kSha + "/manifest.json");
  EXPECT_EQ(p.lock(Key{HashKind::kMd5, kMd5}), "/c/v1/locks/md5-" + kMd5 + ".lock");
  EXPECT_EQ(p.tmp_dir(), "/c/v1/tmp");
}

TEST(CachePaths, TmpNamesCarryPidAndAreUnique) {
  Paths p("/c");
  std::string a = p.new_tmp_path(".conda"), b = p.new_tmp_path(".conda");
  EXPECT_NE(a, b);
  std::string prefix = "/c/v1/tmp/.tmp-" + std::to_string(::getpid()) + "-";
  EXPECT_EQ(a.rfind(prefix, 0), 0u) << a;
  EXPECT_TRUE(a.ends_with(".conda"));
  EXPECT_EQ(tmp_name_pid(a.substr(a.rfind('/') + 1)), ::getpid());
  EXPECT_EQ(tmp_name_pid(".tmp-12-abc"), 12);
  EXPECT_EQ(tmp_name_pid(".tmp-x-abc"), std::nullopt);
  EXPECT_EQ(tmp_name_pid("other"), std::nullopt);
}

TEST(CachePaths, KeyStrIsLowercase) {
  EXPECT_EQ((Key{HashKind::kSha256, std::string(64, 'A')}).str(), "sha256-" + kSha);
  EXPECT_EQ((Key{HashKind::kMd5, kMd5}).str(), "md5-" + kMd5);
}

TEST(CachePaths, CheckKeyRejectsAnythingButHex) {
  EXPECT_TRUE(check_key({HashKind::kSha256, kSha}).ok());
  EXPECT_TRUE(check_key({HashKind::kMd5, kMd5}).ok());
  for (const std::string& bad :
       {std::string("../../etc/passwd"), std::string(63, 'a'), std::string(32, 'a'),
        std::string(62, 'a') + "/.", std::string(63, 'a') + "g", std::string()}) {
    Status st = check_key({HashKind::kSha256, bad});
    EXPECT_EQ(st.code(), Code::kInvalidInput) << bad;
  }
  EXPECT_FALSE(check_key({HashKind::kMd5, kSha}).ok());
}

TEST(CachePaths, ParseKeyAndArchiveNameRoundTrip) {
  Key k{HashKind::kSha256, kSha};
  EXPECT_EQ(parse_key(k.str()), k);
  EXPECT_EQ(parse_key("md5-" + kMd5), (Key{HashKind::kMd5, kMd5}));
  EXPECT_EQ(parse_key("sha256-" + kMd5), std::nullopt);
  EXPECT_EQ(parse_key("sha1-" + kMd5), std::nullopt);
  auto a = parse_archive_name("sha256-" + kSha + ".tar.bz2");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->first, k);
  EXPECT_EQ(a->second, ArchiveFormat::kTarBz2);
  EXPECT_FALSE(parse_archive_name("sha256-" + kSha + ".zip"));
  EXPECT_FALSE(parse_archive_name(".tmp-1-2.conda"));
}

TEST(CachePaths, FormatFromName) {
  EXPECT_EQ(format_from_name("zlib-1.3-h1.conda"), ArchiveFormat::kConda);
  EXPECT_EQ(format_from_name("zlib-1.3-h1.tar.bz2"), ArchiveFormat::kTarBz2);
  EXPECT_EQ(format_from_name("six-1.17.0-py2.py3-none-any.whl"), ArchiveFormat::kWheel);
  EXPECT_EQ(format_from_name("six-1.17.0.tar.gz"), std::nullopt);
  EXPECT_STREQ(format_ext(ArchiveFormat::kTarBz2), ".tar.bz2");
}

}  // namespace
}  // namespace mat::cache
