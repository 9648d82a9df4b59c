#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "materializer/base/fs.h"
#include "materializer/base/hash.h"
#include "materializer/base/status.h"
#include "materializer/base/url.h"

namespace mat {
namespace {

std::string make_temp_dir() {
  char tmpl[] = "/tmp/mat-base-test-XXXXXX";
  return ::mkdtemp(tmpl);
}

TEST(Status, CodesAndContext) {
  Status s = HashMismatch("expected a, got b");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.to_string(), "hash-mismatch: expected a, got b");
  EXPECT_EQ(s.with_context("zlib").message(), "zlib: expected a, got b");
  EXPECT_TRUE(Status::Ok().ok());
  EXPECT_EQ(ErrnoStatus("write x", ENOSPC).code(), Code::kNoSpace);
  EXPECT_EQ(ErrnoStatus("open x", ENOENT).code(), Code::kNotFound);
}

Result<int> half(int x) {
  if (x % 2) return InvalidInput("odd");
  return x / 2;
}
Result<int> quarter(int x) {
  MAT_ASSIGN_OR_RETURN(int h, half(x));
  return half(h);
}

TEST(Result, ValueOrError) {
  EXPECT_EQ(quarter(8).value(), 2);
  EXPECT_EQ(quarter(6).status().code(), Code::kInvalidInput);
  EXPECT_TRUE(quarter(8).status().ok());
}

TEST(Hash, KnownVectors) {
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(md5_hex(""), "d41d8cd98f00b204e9800998ecf8427e");
  Hasher h(HashKind::kSha256);
  h.update("a");
  h.update("bc");
  EXPECT_EQ(h.hex(), sha256_hex("abc"));
  h.update("abc");  // hex() reset the state
  EXPECT_EQ(h.hex(), sha256_hex("abc"));
  EXPECT_EQ(xxh3_hex("abc").size(), 16u);
  EXPECT_NE(xxh3_hex("abc"), xxh3_hex("abd"));
  EXPECT_TRUE(is_hex("0aF9", 4));
  EXPECT_FALSE(is_hex("0aG9", 4));
  EXPECT_FALSE(is_hex("0a", 4));
}

TEST(Hash, FileMatchesBuffer) {
  std::string dir = make_temp_dir();
  std::string p = dir + "/f";
  std::string data(3 << 20, 'x');
  ASSERT_TRUE(write_file_atomic(p, data).ok());
  EXPECT_EQ(hash_file(p, HashKind::kSha256).value(), sha256_hex(data));
  EXPECT_EQ(xxh3_file(p).value(), xxh3_hex(data));
  EXPECT_EQ(hash_file(dir + "/missing", HashKind::kMd5).status().code(), Code::kNotFound);
  ASSERT_TRUE(remove_all(dir).ok());
}

TEST(Url, RedactsCredentials) {
  EXPECT_EQ(redact_url("https://user:hunter2@host.org/a/b.conda"),
            "https://***@host.org/a/b.conda");
  EXPECT_EQ(redact_url("https://conda.anaconda.org/t/abc-123/conda-forge/x.conda"),
            "https://conda.anaconda.org/t/***/conda-forge/x.conda");
  EXPECT_EQ(redact_url("https://h/x.whl?token=s3cr3t&a=1"), "https://h/x.whl?token=***&a=1");
  EXPECT_EQ(redact_url("https://h/x.whl"), "https://h/x.whl");
  EXPECT_EQ(redact_url("https://h/a@b/x"), "https://h/a@b/x");
}

// Each case is one way a redaction has failed, or could: the secret must not survive in any
// part, and the rest of the URL must (a redaction that eats the host is no use in a message).
TEST(Url, RedactsEveryPartOfTheUserinfo) {
  // A raw '@' in the password: everything up to the last '@' is userinfo (taking the first
  // printed "ss@host").
  EXPECT_EQ(redact_url("https://user:p@ss@host.org/c/x.conda"), "https://***@host.org/c/x.conda");
  EXPECT_EQ(redact_url("https://t@k@n@host.org/x"), "https://***@host.org/x");
  EXPECT_EQ(redact_url("https://user:pa:ss:wd@host.org:8443/x"), "https://***@host.org:8443/x");
  EXPECT_EQ(redact_url("https://user:p%40ss%3Aw@host.org/x"), "https://***@host.org/x");
  EXPECT_EQ(redact_url("https://user%40corp:pw@host.org/x"), "https://***@host.org/x");
  // One character is still a secret.
  EXPECT_EQ(redact_url("https://u:p@h/x"), "https://***@h/x");
  EXPECT_EQ(redact_url("https://t@h/x"), "https://***@h/x");
  EXPECT_EQ(redact_url("http://a:b@127.0.0.1:8000"), "http://***@127.0.0.1:8000");
  EXPECT_EQ(redact_url("HTTPS://user:pw@HOST/x"), "HTTPS://***@HOST/x");
  // '@' after the authority is not userinfo.
  EXPECT_EQ(redact_url("https://h/x?a=b@c"), "https://h/x?a=b@c");
  EXPECT_EQ(redact_url("https://h#a@b"), "https://h#a@b");
  EXPECT_EQ(redact_url("https://u:p@h/a@b/x"), "https://***@h/a@b/x");
}

TEST(Url, RedactsCondaTokens) {
  EXPECT_EQ(redact_url("https://h/t/x/conda-forge/linux-64/a.conda"),
            "https://h/t/***/conda-forge/linux-64/a.conda");
  EXPECT_EQ(redact_url("https://h/t/tk-1.2_3/c"), "https://h/t/***/c");
  EXPECT_EQ(redact_url("https://h/t/tk"), "https://h/t/***");
  EXPECT_EQ(redact_url("https://h/t/tk?x=1"), "https://h/t/***?x=1");
  EXPECT_EQ(redact_url("https://u:p@h/t/tk/c/x.conda"), "https://***@h/t/***/c/x.conda");
  EXPECT_EQ(redact_url("https://h/get/x.conda"), "https://h/get/x.conda");
}

TEST(Url, RedactsSecretQueryParameters) {
  EXPECT_EQ(redact_url("https://h/x?token=a"), "https://h/x?token=***");
  EXPECT_EQ(redact_url("https://h/x?a=1&Token=abc&b=2"), "https://h/x?a=1&Token=***&b=2");
  EXPECT_EQ(redact_url("https://h/x?access_token=abc#frag"), "https://h/x?access_token=***#frag");
  EXPECT_EQ(redact_url("https://b.s3.amazonaws.com/x.conda?X-Amz-Credential=AK%2F1&"
                       "X-Amz-Signature=f00&X-Amz-Security-Token=tt"),
            "https://b.s3.amazonaws.com/x.conda?X-Amz-Credential=***&X-Amz-Signature=***&"
            "X-Amz-Security-Token=***");
  EXPECT_EQ(redact_url("https://h/x?sig=s&api_key=k&X-Goog-Signature=g"),
            "https://h/x?sig=***&api_key=***&X-Goog-Signature=***");
  EXPECT_EQ(redact_url("https://h/x?key=k1&key=k2"), "https://h/x?key=***&key=***");
  // Not secrets: other names, names that merely contain a secret's name, empty values.
  EXPECT_EQ(redact_url("https://h/x?monkey=1&tokens=2"), "https://h/x?monkey=1&tokens=2");
  EXPECT_EQ(redact_url("https://h/x?token=&token"), "https://h/x?token=&token");
}

TEST(Url, Pieces) {
  EXPECT_EQ(url_file_name("https://h/c/linux-64/z-1-0.conda#abc"), "z-1-0.conda");
  EXPECT_EQ(url_strip_fragment("https://h/z.conda#sha256:ab"), "https://h/z.conda");
  EXPECT_EQ(file_url_to_path("file:///a/b%20c"), "/a/b c");
  EXPECT_EQ(file_url_to_path(path_to_file_url("/tmp/ü x")), "/tmp/ü x");
  EXPECT_TRUE(is_file_url("file:///x"));
}

TEST(Fs, Paths) {
  EXPECT_EQ(path_join("/a/", "/b"), "/a/b");
  EXPECT_EQ(dir_name("/a/b/c"), "/a/b");
  EXPECT_EQ(dir_name("/a"), "/");
  EXPECT_EQ(dir_name("a"), "");
  EXPECT_EQ(base_name("/a/b/"), "b");
  EXPECT_EQ(absolute_path("/a//./b/"), "/a/b");
  EXPECT_EQ(lexical_normal("a/b/../c"), "a/c");
  EXPECT_EQ(lexical_normal("./a//b/."), "a/b");
  EXPECT_EQ(lexical_normal("a/.."), "");
  EXPECT_EQ(lexical_normal("../../a"), "a");
  EXPECT_EQ(lexical_normal("/x/./y/../z/"), "/x/z");
  EXPECT_EQ(lexical_normal("/a/../.."), "/");
  EXPECT_EQ(lexical_normal("/"), "/");
}

TEST(Fs, AtomicWriteFailureLeavesNothing) {
  std::string dir = make_temp_dir();
  FaultFs fault(posix_fs());
  fault.fail_write_after(1);
  Status s = write_file_atomic(dir + "/x", "data", 0644, fault);
  EXPECT_EQ(s.code(), Code::kNoSpace);
  EXPECT_FALSE(path_exists(dir + "/x"));
  fault.fail_write_after(0);
  fault.fail_renames(true);
  EXPECT_FALSE(write_file_atomic(dir + "/x", "data", 0644, fault).ok());
  EXPECT_FALSE(path_exists(dir + "/x"));
  ASSERT_TRUE(remove_all(dir).ok());
  EXPECT_FALSE(path_exists(dir));
}

TEST(Fs, MakeDirsAndRemoveReadOnlyTree) {
  std::string dir = make_temp_dir();
  ASSERT_TRUE(make_dirs(dir + "/a/b/c").ok());
  ASSERT_TRUE(write_file_atomic(dir + "/a/b/c/f", "x").ok());
  ::chmod((dir + "/a/b").c_str(), 0500);
  EXPECT_TRUE(remove_all(dir).ok());
  EXPECT_FALSE(path_exists(dir));
}

TEST(FileLock, ExclusiveAcrossDescriptors) {
  std::string dir = make_temp_dir();
  auto a = FileLock::acquire(dir + "/l");
  ASSERT_TRUE(a.ok());
  auto b = FileLock::try_acquire(dir + "/l");
  ASSERT_TRUE(b.ok());
  EXPECT_FALSE(b->held());
  a->release();
  auto c = FileLock::try_acquire(dir + "/l");
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->held());
  ASSERT_TRUE(remove_all(dir).ok());
}

}  // namespace
}  // namespace mat
