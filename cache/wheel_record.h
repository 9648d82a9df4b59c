// cache/wheel_record.h: a wheel's *.dist-info/RECORD (PEP 376 / PEP 427) — read, write, hash.
//
// The cache checks every extracted wheel against its own RECORD (extract.cc); the installer
// (materializer/wheel_*.cc) reads the same rows and writes the installed RECORD. Both use these
// helpers so the two sides agree on quoting and hash spelling.
//
// Pure functions; thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace mat::cache {

// One RECORD row: path, "sha256=<urlsafe base64, no padding>" (or ""), size in bytes (or "").
struct RecordRow {
  std::string path, hash, size;
  bool operator==(const RecordRow&) const = default;
  // Python's tuple order, which pip's RECORD writer sorts by.
  bool operator<(const RecordRow& o) const {
    if (path != o.path) return path < o.path;
    if (hash != o.hash) return hash < o.hash;
    return size < o.size;
  }
};

// Reads RECORD as pip does: str.splitlines() (\n, \r\n, \r), then csv.reader's excel dialect
// per line (',' separated, '"' quoting with doubled quotes inside). Empty lines are skipped; a
// row with fewer than three fields gets "" for the missing ones, extra fields are dropped.
std::vector<RecordRow> parse_record(std::string_view text);

// Writes rows as Python's csv.writer does (QUOTE_MINIMAL, "\r\n" line endings), which is
// what pip's installed RECORD files contain byte for byte.
std::string format_record(const std::vector<RecordRow>& rows);

// RFC 4648 §5 base64 ("-_" alphabet) without '=' padding.
std::string urlsafe_b64_nopad(std::string_view bytes);
// "sha256=<urlsafe b64 nopad>" for a lowercase/uppercase hex SHA-256 digest ("" if malformed).
std::string record_hash_from_hex(std::string_view sha256_hex);
// "<algo>=<urlsafe b64 nopad>" for any hex digest ("sha512", 128 hex digits); "" if malformed.
std::string record_hash_from_hex(std::string_view algo, std::string_view hex);
// "sha256=…" of `data`.
std::string record_hash_of(std::string_view data);

}  // namespace mat::cache
