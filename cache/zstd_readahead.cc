#include "cache/zstd_readahead.h"

#include <tbb/task_arena.h>
#include <zstd.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <new>
#include <string>
#include <utility>
#include <vector>

namespace mat::cache {
namespace {

struct Chunk {
  std::unique_ptr<char[]> buf;
  size_t used = 0;
};

bool has_zstd_magic(const void* p, size_t n) {
  static constexpr unsigned char kMagic[4] = {0x28, 0xb5, 0x2f, 0xfd};  // 0xFD2FB528, LE
  return n >= 4 && std::memcmp(p, kMagic, 4) == 0;
}

}  // namespace

struct ZstdReadAhead::State {
  State(Pull p, std::string w, Options o)
      : pull(std::move(p)), where(std::move(w)), opt(o), dctx(ZSTD_createDCtx()) {}
  ~State() { ZSTD_freeDCtx(dctx); }  // null-safe

  // --- the decoder: used by whoever holds `decoding` -------------------------------------
  const Pull pull;
  const std::string where;
  const Options opt;
  ZSTD_DCtx* dctx;  // freed by ~ZstdReadAhead: a queued helper may keep State alive a while
  enum class Mode { kUnknown, kZstd, kRaw } mode = Mode::kUnknown;
  const char* in = nullptr;
  size_t in_size = 0, in_pos = 0;
  std::string head;  // the first bytes, until the mode is known
  bool input_done = false;
  size_t last_ret = 1;  // ZSTD_decompressStream's last hint: 0 once a frame is complete

  // Fills `c` with up to opt.chunk_bytes of output; sets *eof when the stream has ended.
  Status decode_into(Chunk& c, bool* eof) {
    c.used = 0;
    const size_t cap = opt.chunk_bytes;
    while (c.used < cap) {
      if (in_pos == in_size && !input_done) {
        const void* p = nullptr;
        size_t n = 0;
        MAT_ASSIGN_OR_RETURN(bool more, pull(&p, &n));
        if (!more) input_done = true;
        if (mode != Mode::kUnknown) {
          if (more) in = static_cast<const char*>(p), in_size = n, in_pos = 0;
          continue;
        }
        // The magic number may arrive split across blocks (a stream read in order hands out
        // whatever its source gave, a few bytes at a member's start): the first bytes are
        // gathered in `head` until there are four, then decoded from there.
        if (more) head.append(static_cast<const char*>(p), n);
        if (head.size() >= 4 || (input_done && !head.empty())) {
          mode = has_zstd_magic(head.data(), head.size()) ? Mode::kZstd : Mode::kRaw;
          in = head.data(), in_size = head.size(), in_pos = 0;
        }
        continue;
      }
      if (mode != Mode::kZstd) {  // raw, or no byte at all yet
        if (in_pos == in_size) {  // and the input is done
          if (mode == Mode::kUnknown) return Corrupt(where + ": empty member");
          *eof = true;
          return Status::Ok();
        }
        size_t n = std::min(cap - c.used, in_size - in_pos);
        std::memcpy(c.buf.get() + c.used, in + in_pos, n);
        c.used += n;
        in_pos += n;
        continue;
      }
      ZSTD_inBuffer zin{in, in_size, in_pos};
      ZSTD_outBuffer zout{c.buf.get() + c.used, cap - c.used, 0};
      const size_t before = zin.pos;
      size_t ret = ZSTD_decompressStream(dctx, &zout, &zin);
      if (ZSTD_isError(ret)) {
        return Corrupt(where + ": zstd: " + ZSTD_getErrorName(ret));
      }
      in_pos = zin.pos;
      c.used += zout.pos;
      // A call that moved nothing after a finished frame hints at the next frame's header;
      // keep the hint of the last call that did move data (0: the frame was complete).
      if (zin.pos != before || zout.pos > 0) last_ret = ret;
      if (in_pos == in_size && input_done && zout.pos == 0) {
        // Everything read and nothing more comes out: complete, or cut short.
        if (last_ret != 0) return Corrupt(where + ": zstd stream is truncated");
        *eof = true;
        return Status::Ok();
      }
    }
    return Status::Ok();
  }

  // --- hand-over between the consumer and at most one helper -------------------------------
  std::mutex mu;
  std::condition_variable cv;  // a chunk is ready, the decoder was released, a helper left
  std::deque<Chunk> ready;     // GUARDED_BY(mu): decoded, in order
  std::vector<Chunk> spare;    // GUARDED_BY(mu): for reuse
  bool decoding = false;       // GUARDED_BY(mu): someone is inside decode_into()
  bool finished = false;       // GUARDED_BY(mu): end of stream or error reached
  bool cancelled = false;      // GUARDED_BY(mu): the reader is gone
  bool helper_active = false;  // GUARDED_BY(mu): a helper is enqueued or running
  Status error;                // GUARDED_BY(mu)
  Chunk current;               // consumer only: the chunk last handed out

  // REQUIRES: mu held.
  Chunk take_spare() {
    if (!spare.empty()) {
      Chunk c = std::move(spare.back());
      spare.pop_back();
      return c;
    }
    return Chunk{std::make_unique_for_overwrite<char[]>(opt.chunk_bytes), 0};
  }
  // REQUIRES: mu held; the caller has just left decode_into() with `st` and `eof`.
  void finish_step(Chunk c, const Status& st, bool eof) {
    decoding = false;
    if (!st.ok()) {
      error = st;
      finished = true;
    } else {
      if (c.used > 0) ready.push_back(std::move(c));
      if (eof) finished = true;
    }
    if (c.buf) spare.push_back(std::move(c));
  }
  // REQUIRES: mu held.
  bool helper_wanted() const {
    return !helper_active && !finished && !cancelled &&
           static_cast<int>(ready.size()) < opt.max_chunks_ahead &&
           tbb::this_task_arena::max_concurrency() > 1;
  }
};

namespace {

void helper_main(const std::shared_ptr<ZstdReadAhead::State>& s) {
  std::unique_lock l(s->mu);
  for (;;) {
    if (s->cancelled || s->finished || s->decoding ||
        static_cast<int>(s->ready.size()) >= s->opt.max_chunks_ahead) {
      break;
    }
    s->decoding = true;
    Status st;
    bool eof = false;
    Chunk c;
    try {
      c = s->take_spare();
      l.unlock();
      st = s->decode_into(c, &eof);
    } catch (const std::bad_alloc&) {
      if (!l.owns_lock()) l.lock();
      s->finish_step(std::move(c), Internal(s->where + ": out of memory decoding"), false);
      break;
    }
    l.lock();
    s->finish_step(std::move(c), st, eof);
    s->cv.notify_all();
  }
  s->helper_active = false;
  s->cv.notify_all();
}

// REQUIRES: s->mu held by `l`.
void maybe_enqueue_helper(const std::shared_ptr<ZstdReadAhead::State>& s) {
  if (!s->helper_wanted()) return;
  s->helper_active = true;
  tbb::this_task_arena::enqueue([s] { helper_main(s); });
}

}  // namespace

ZstdReadAhead::ZstdReadAhead(Pull pull, std::string where, Options options)
    : s_(std::make_shared<State>(std::move(pull), std::move(where), options)) {
  if (s_->opt.chunk_bytes == 0) s_->error = Internal("ZstdReadAhead: chunk_bytes is 0");
  if (s_->dctx == nullptr) s_->error = Internal("ZSTD_createDCtx failed");
  if (!s_->error.ok()) s_->finished = true;
}

ZstdReadAhead::~ZstdReadAhead() {
  std::unique_lock l(s_->mu);
  s_->cancelled = true;
  // A helper inside decode_into() is using `pull`, whose source the caller is about to reuse.
  s_->cv.wait(l, [this] { return !s_->decoding; });
  // A helper still queued holds the State until it runs (and finds it cancelled): give back
  // the decoder's window and the chunks now, not then.
  ZSTD_freeDCtx(s_->dctx);
  s_->dctx = nullptr;
  s_->ready.clear();
  s_->spare.clear();
  s_->current = Chunk{};
}

Result<std::span<const char>> ZstdReadAhead::next() {
  State& s = *s_;
  std::unique_lock l(s.mu);
  if (s.current.buf) {
    s.spare.push_back(std::move(s.current));
    s.current = Chunk{};
  }
  for (;;) {
    if (!s.ready.empty()) {
      s.current = std::move(s.ready.front());
      s.ready.pop_front();
      maybe_enqueue_helper(s_);
      return std::span<const char>(s.current.buf.get(), s.current.used);
    }
    if (s.finished) {
      if (!s.error.ok()) return s.error;
      return std::span<const char>();
    }
    if (!s.decoding) {
      // Nobody is decoding the chunk we need: decode it here rather than wait for a helper.
      s.decoding = true;
      Chunk c = s.take_spare();
      l.unlock();
      bool eof = false;
      Status st;
      try {
        st = s.decode_into(c, &eof);
      } catch (const std::bad_alloc&) {
        st = Internal(s.where + ": out of memory decoding");
      }
      l.lock();
      s.finish_step(std::move(c), st, eof);
      s.cv.notify_all();
      continue;
    }
    s.cv.wait(l);
  }
}

}  // namespace mat::cache
