// Cryptographic digests (OpenSSL libcrypto) and fast internal checksums (xxHash).
//
// Hasher is a streaming SHA-256 or MD5 (or SHA-384/SHA-512, which only wheel RECORD rows use):
// update() as bytes arrive, then hex(). One object per stream; not thread-safe; movable, not
// copyable.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "materializer/base/status.h"

namespace mat {

// Cache keys are only ever kSha256 or kMd5; kSha384/kSha512 verify wheel RECORD rows.
enum class HashKind { kSha256, kMd5, kSha384, kSha512 };

class Hasher {
 public:
  explicit Hasher(HashKind kind);
  ~Hasher();
  Hasher(Hasher&&) noexcept;
  Hasher& operator=(Hasher&&) noexcept;
  Hasher(const Hasher&) = delete;
  Hasher& operator=(const Hasher&) = delete;

  HashKind kind() const { return kind_; }
  void update(const void* data, size_t len);
  void update(std::string_view s) { update(s.data(), s.size()); }
  // Finishes the digest and returns lowercase hex. The hasher is reset afterwards.
  std::string hex();
  // Finishes the digest into `out` (32 bytes for SHA-256, 16 for MD5) and returns its length.
  // The hasher is reset afterwards. No allocation: for digests kept per file.
  size_t finish(unsigned char* out);
  // Starts over (used when a transfer is retried from byte 0).
  void reset();

 private:
  struct Impl;
  HashKind kind_;
  std::unique_ptr<Impl> impl_;
};

// Digest of a whole file, streamed. Errors: kNotFound, kIo.
Result<std::string> hash_file(const std::string& path, HashKind kind);
std::string sha256_hex(std::string_view data);
// Lowercase hex of `n` raw bytes.
std::string hex_of(const unsigned char* data, size_t n);
std::string md5_hex(std::string_view data);

// XXH3-64 of a buffer / a file, as 16 lowercase hex digits. Not cryptographic: only for
// checking our own cached trees against bit rot and tampering by accident.
std::string xxh3_hex(std::string_view data);
Result<std::string> xxh3_file(const std::string& path);

// True if `s` is exactly `n` lowercase-or-uppercase hex digits.
bool is_hex(std::string_view s, size_t n);

}  // namespace mat
