// cache/archive_handle.h: RAII for libarchive handles. Internal to cache/ (and its tests): no
// public header includes <archive.h>.
//
// A handle is used by one thread at a time; libarchive keeps no global state between handles,
// so different packages extract concurrently with one handle each.
#pragma once

#include <archive.h>
#include <archive_entry.h>

#include <memory>
#include <string>

namespace mat::cache {

struct ArchiveReadDeleter {
  void operator()(archive* a) const { archive_read_free(a); }  // also closes
};
struct ArchiveWriteDeleter {
  void operator()(archive* a) const { archive_write_free(a); }  // also closes
};
struct ArchiveEntryDeleter {
  void operator()(archive_entry* e) const { archive_entry_free(e); }
};

using ArchiveRead = std::unique_ptr<archive, ArchiveReadDeleter>;    // archive_read_new()
using ArchiveWrite = std::unique_ptr<archive, ArchiveWriteDeleter>;  // archive_write_new()
using ArchiveEntry = std::unique_ptr<archive_entry, ArchiveEntryDeleter>;

// libarchive's last error for `a`, never null ("unknown error" when it set none).
inline std::string archive_error(archive* a) {
  const char* msg = archive_error_string(a);
  return msg ? msg : "unknown error";
}

}  // namespace mat::cache
