#include "cache/meta.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>

#include "cache/paths.h"
#include "cache/trust.h"
#include "materializer/base/hash.h"
#include "materializer/base/url.h"

namespace mat::cache {
namespace {

constexpr std::string_view kVerified = "verified";
constexpr std::string_view kClaimed = "claimed";

std::string link_check(std::string_view md5_hex, const std::string& sha256_key,
                       std::string_view state) {
  std::string covered = "md5-";
  covered += md5_hex;
  covered += ' ';
  covered += sha256_key;
  covered += ' ';
  covered += state;
  return xxh3_hex(covered);
}

bool starts_with_ci(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
  }
  return true;
}

}  // namespace

std::string md5_link_text(std::string_view md5_hex, const Key& sha256, bool verified) {
  const std::string key = sha256.str();
  std::string_view state = verified ? kVerified : kClaimed;
  return key + " " + std::string(state) + " " + link_check(md5_hex, key, state) + "\n";
}

std::optional<Md5Link> parse_md5_link(std::string_view text, std::string_view md5_hex) {
  if (!text.ends_with('\n')) return std::nullopt;
  text.remove_suffix(1);
  size_t a = text.find(' ');
  if (a == std::string_view::npos) return std::nullopt;
  size_t b = text.find(' ', a + 1);
  if (b == std::string_view::npos) return std::nullopt;
  std::string_view key_text = text.substr(0, a);
  std::string_view state = text.substr(a + 1, b - a - 1);
  std::string_view check = text.substr(b + 1);
  auto key = parse_key(key_text);
  if (!key || key->kind != HashKind::kSha256 || key->str() != key_text) return std::nullopt;
  if (state != kVerified && state != kClaimed) return std::nullopt;
  if (check != link_check(md5_hex, key->str(), state)) return std::nullopt;
  return Md5Link{*key, state == kVerified};
}

bool recordable_source(std::string_view url) {
  if (url.empty() || url.size() > kMaxSourceUrl) return false;
  if (!starts_with_ci(url, "https://") && !starts_with_ci(url, "http://")) return false;
  for (char c : url) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return false;
  }
  return redact_url(url) == url;
}

Result<std::string> read_trusted_record(const std::string& path, uid_t euid) {
  // O_NONBLOCK: a fifo planted here must not hang the reader.
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT) return NotFound(path + ": missing");
    if (errno == ELOOP) return Corrupt(path + ": a symbolic link");
    return ErrnoStatus("open " + path, errno);
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return ErrnoStatus("stat " + path, errno);
  if (!S_ISREG(st.st_mode)) return Corrupt(path + ": not a regular file");
  if (std::string why = distrust_reason(st, euid); !why.empty()) return Corrupt(path + ": " + why);
  if (st.st_size > kMaxMetaBytes) {
    return Corrupt(path + ": " + std::to_string(st.st_size) + " bytes, more than a record holds");
  }
  std::string text(static_cast<size_t>(st.st_size), '\0');
  ssize_t n = ::pread(fd.get(), text.data(), text.size(), 0);
  if (n < 0) return ErrnoStatus("read " + path, errno);
  text.resize(static_cast<size_t>(n));
  return text;
}

Status write_record(Fs& fs, const std::string& tmp, const std::string& path,
                    std::string_view text) {
  MAT_ASSIGN_OR_RETURN(UniqueFd fd, create_new_file(tmp, 0644));
  Status st = fs.write_all(fd.get(), text.data(), text.size(), tmp);
  if (st.ok() && ::close(fd.release()) != 0) st = ErrnoStatus("close " + tmp, errno);
  if (st.ok()) st = fs.rename(tmp, path);
  if (!st.ok()) ::unlink(tmp.c_str());
  return st;
}

}  // namespace mat::cache
