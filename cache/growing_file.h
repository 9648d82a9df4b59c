// cache/growing_file.h: reading a file while another thread is still writing it — an archive
// whose download is in progress — so its extraction can start before the last byte arrives.
//
// The writer (the download sink, on a fetch thread) reports how far the file has grown and how
// it ended; a reader (GrowingFileReader) reads at its own fd with pread and blocks only for
// bytes that have not been written yet. The end of the file is reported to readers only by
// complete(), which the caller makes once the whole download is verified: a reader that sees
// the end has read exactly the verified bytes. A retry from byte 0 (restarted()) or a failed
// download (failed()) makes readers fail with kCancelled; they cannot resume, since bytes they
// already consumed may differ from the new ones. A download resumed with HTTP Range keeps the
// bytes written so far and is no restart: the writer just goes on calling grew().
//
// Thread safety: one writer thread and any number of reader threads.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "materializer/base/fs.h"
#include "materializer/base/status.h"

namespace mat::cache {

class GrowingFile {
 public:
  // --- writer -------------------------------------------------------------------------------
  // The file now holds `size` bytes from offset 0, readable by others.
  void grew(int64_t size);
  // Truncated for a retry from byte 0: readers fail.
  void restarted();
  // The size the file will have, once known (the response's Content-Length): a hint for
  // choosing what to read, not a limit.
  void expect(int64_t total);
  // Every byte is in the file and verified: readers reach its end.
  void complete();
  // The download failed or was abandoned: readers fail.
  void failed();

  // --- reader -------------------------------------------------------------------------------
  // Waits until the file holds more than `pos` bytes and, unless it is complete, at least
  // `pos + want` of them (fewer wake-ups: a download grows ~16 KiB at a time). Returns the size
  // so far (> pos), or `pos` itself at the end of a complete file; kCancelled if the download
  // restarted or failed; kInternal if `pos` is past the end.
  Result<int64_t> wait_beyond(int64_t pos, int64_t want);

  // The size reported so far, and the expected total (0: not known).
  int64_t size() const;
  int64_t expected() const;

 private:
  enum class State { kGrowing, kComplete, kFailed };
  mutable std::mutex mu_;  // guards everything below
  std::condition_variable cv_;
  int64_t size_ = 0;
  int64_t expected_ = 0;
  int64_t wake_at_ = -1;  // a reader waits for this size (-1: none waits)
  State state_ = State::kGrowing;
};

// Reads a GrowingFile front to back in blocks. One reader per thread.
class GrowingFileReader {
 public:
  // Opens `path` (the file the writer writes). `block` bytes are read per call at most.
  static Result<std::unique_ptr<GrowingFileReader>> open(const std::string& path,
                                                         std::shared_ptr<GrowingFile> file,
                                                         size_t block = 256 << 10);
  // The next bytes, valid until the next call; empty at the end of the complete file. Errors:
  // kCancelled (see GrowingFile), kIo.
  Result<std::span<const char>> next();
  int64_t offset() const { return pos_; }

 private:
  GrowingFileReader(std::string path, std::shared_ptr<GrowingFile> file, UniqueFd fd, size_t block)
      : path_(std::move(path)), file_(std::move(file)), fd_(std::move(fd)), buf_(block) {}

  std::string path_;
  std::shared_ptr<GrowingFile> file_;
  UniqueFd fd_;
  std::vector<char> buf_;
  int64_t pos_ = 0;
};

}  // namespace mat::cache
