#include "materializer/base/hash.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>

#include "materializer/base/fs.h"

namespace mat {

struct Hasher::Impl {
  EVP_MD_CTX* ctx = nullptr;
  const EVP_MD* md = nullptr;
  ~Impl() { EVP_MD_CTX_free(ctx); }
};

Hasher::Hasher(HashKind kind) : kind_(kind), impl_(std::make_unique<Impl>()) {
  impl_->ctx = EVP_MD_CTX_new();
  switch (kind) {
    case HashKind::kSha256:
      impl_->md = EVP_sha256();
      break;
    case HashKind::kMd5:
      impl_->md = EVP_md5();
      break;
    case HashKind::kSha384:
      impl_->md = EVP_sha384();
      break;
    case HashKind::kSha512:
      impl_->md = EVP_sha512();
      break;
  }
  reset();
}
Hasher::~Hasher() = default;
Hasher::Hasher(Hasher&&) noexcept = default;
Hasher& Hasher::operator=(Hasher&&) noexcept = default;

void Hasher::reset() { EVP_DigestInit_ex(impl_->ctx, impl_->md, nullptr); }

void Hasher::update(const void* data, size_t len) {
  if (len) EVP_DigestUpdate(impl_->ctx, data, len);
}

static std::string to_hex(const unsigned char* p, size_t n) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out(n * 2, '0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = kDigits[p[i] >> 4];
    out[2 * i + 1] = kDigits[p[i] & 15];
  }
  return out;
}

std::string Hasher::hex() {
  unsigned char buf[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(impl_->ctx, buf, &n);
  reset();
  return to_hex(buf, n);
}

Result<std::string> hash_file(const std::string& path, HashKind kind) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus(path, errno);
  Hasher h(kind);
  std::string buf(1 << 20, '\0');
  for (;;) {
    ssize_t n = ::read(fd.get(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(path, errno);
    }
    if (n == 0) break;
    h.update(buf.data(), static_cast<size_t>(n));
  }
  return h.hex();
}

std::string sha256_hex(std::string_view data) {
  Hasher h(HashKind::kSha256);
  h.update(data);
  return h.hex();
}

std::string md5_hex(std::string_view data) {
  Hasher h(HashKind::kMd5);
  h.update(data);
  return h.hex();
}

static std::string u64_hex(uint64_t v) {
  unsigned char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<unsigned char>(v >> (56 - 8 * i));
  return to_hex(b, 8);
}

std::string xxh3_hex(std::string_view data) { return u64_hex(XXH3_64bits(data.data(), data.size())); }

Result<std::string> xxh3_file(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid()) return ErrnoStatus(path, errno);
  XXH3_state_t* st = XXH3_createState();
  XXH3_64bits_reset(st);
  std::string buf(1 << 18, '\0');
  for (;;) {
    ssize_t n = ::read(fd.get(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      XXH3_freeState(st);
      return ErrnoStatus(path, errno);
    }
    if (n == 0) break;
    XXH3_64bits_update(st, buf.data(), static_cast<size_t>(n));
  }
  uint64_t v = XXH3_64bits_digest(st);
  XXH3_freeState(st);
  return u64_hex(v);
}

bool is_hex(std::string_view s, size_t n) {
  if (s.size() != n) return false;
  for (char c : s) {
    bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    if (!ok) return false;
  }
  return true;
}

}  // namespace mat
