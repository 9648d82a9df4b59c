// cache/zstd_readahead.h: decodes a zstd stream one step ahead of its reader, on another TBB
// worker when one is free. Internal to cache/.
//
// A .conda's pkg-*.tar.zst is a single zstd frame: its bytes can only be decoded in order, so
// one big package would be one thread decoding, parsing tar, hashing and writing files in turn.
// With this reader the decoding runs on a second thread, a few chunks ahead, while the caller
// parses the tar and writes the files: the two halves of the work overlap and a big package
// takes max(decode, write) instead of their sum.
//
// No thread waits for a helper that has not started: when the chunk the caller needs is not
// decoded yet and no helper holds the decoder, the caller decodes it itself. A helper is only
// enqueued (tbb::this_task_arena::enqueue) when the arena has more than one thread, so --jobs
// bounds it; in an arena of one the caller decodes everything in order, as a plain loop would.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "materializer/base/status.h"

namespace mat::cache {

struct ZstdReadAheadOptions {
  size_t chunk_bytes = 1 << 20;  // decoded bytes per chunk
  int max_chunks_ahead = 4;      // decoded chunks waiting for the caller, at most
};

class ZstdReadAhead {
 public:
  using Options = ZstdReadAheadOptions;
  // The compressed bytes, block by block: returns true with the next block in *data/*size
  // (a block may be empty), false at the end of the input, or an error. It is called by one
  // thread at a time, not always the same one, and never after the reader is destroyed.
  using Pull = std::function<Result<bool>(const void** data, size_t* size)>;

  // `where` names the stream in messages. Input that does not start with the zstd magic
  // number is passed through unchanged (a .conda whose inner tar is not compressed).
  ZstdReadAhead(Pull pull, std::string where, Options options = {});
  // Waits until no helper is inside `pull` or the decoder (a few milliseconds at most).
  ~ZstdReadAhead();
  ZstdReadAhead(const ZstdReadAhead&) = delete;
  ZstdReadAhead& operator=(const ZstdReadAhead&) = delete;

  // The next piece of decoded output, valid until the next call; empty at the end. Errors
  // (sticky): kCorrupt for a damaged or truncated frame, naming `where`; the pull's own error.
  Result<std::span<const char>> next();

  struct State;  // shared with the helper task; defined in the .cc

 private:
  std::shared_ptr<State> s_;
};

}  // namespace mat::cache
