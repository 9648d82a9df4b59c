// cache/meta.h: the small records kept beside the entries, in ROOT/v1/meta/ (paths from
// cache/paths.h). Internal to cache/; Store exposes them (find_md5, find_source, ...).
//
//   md5-<M>.sha256   the md5 index: which sha256-keyed entry holds the archive whose MD5 is M,
//                    one line "sha256-<S> verified|claimed <xxh3>\n". "verified": this cache
//                    hashed the archive's bytes with both digests (a download for an md5-only
//                    lock, or a check of the stored archive). "claimed": a lock named M beside
//                    S, which nobody checked; a reader hashes the archive before using it. The
//                    xxh3 covers "md5-<M> sha256-<S> <state>", so damage (a flipped digit, a
//                    truncated or renamed file) makes the line unreadable, never a link to
//                    another entry.
//   <key>.source     "<url>\n": where the entry's archive was downloaded from, for
//                    `cache verify --repair`. Only http(s) URLs that carry no credentials
//                    (redact_url() leaves them unchanged): the cache may be readable by other
//                    users, and a file:// path is only allowed per lock (--allow-file-urls).
//
// Both are written whole into tmp/ and renamed (a reader sees the old record or the new one)
// and read as the rest of the store is (cache/trust.h): a regular file, owned by the effective
// uid or root, writable by nobody else, or it is ignored. No fsync: a record lost in a power
// cut costs one download, and a damaged one is refused.
//
// Thread safety: pure functions of their arguments and the file system.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>

#include "cache/store.h"
#include "materializer/base/fs.h"
#include "materializer/base/status.h"

namespace mat::cache {

// Largest record read (a source URL is at most kMaxSourceUrl bytes).
inline constexpr int64_t kMaxMetaBytes = 16 << 10;
inline constexpr size_t kMaxSourceUrl = 8 << 10;

// The line for md5 index file of `md5_hex` (32 lowercase hex digits).
std::string md5_link_text(std::string_view md5_hex, const Key& sha256, bool verified);
// Parses what md5_link_text() wrote for `md5_hex`; nullopt for anything else (damage).
std::optional<Md5Link> parse_md5_link(std::string_view text, std::string_view md5_hex);

// Whether `url` may be recorded as an entry's source (http/https, no credentials, no control
// characters, at most kMaxSourceUrl bytes).
bool recordable_source(std::string_view url);

// A small record of the store: kNotFound when absent; kCorrupt naming why when it is not a
// regular file, fails the trust check for `euid`, or is larger than kMaxMetaBytes; kIo.
// Never follows a symlink, never blocks on a fifo.
Result<std::string> read_trusted_record(const std::string& path, uid_t euid);

// Writes `text` to `tmp` (a fresh temp name, O_EXCL) and renames it to `path`.
// Errors: kIo, kNoSpace; nothing is left in tmp/.
Status write_record(Fs& fs, const std::string& tmp, const std::string& path,
                    std::string_view text);

}  // namespace mat::cache
