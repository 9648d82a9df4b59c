// The install/prewarm stage driver. See install.h for the contract.
//
// Concurrency (STYLE.md §5): one curl-multi thread (fetch/) moves bytes and hashes them as they
// arrive; when a transfer completes, its verify → extract work is enqueued on a TBB arena of
// --jobs threads, so extraction overlaps with downloads still in flight. What then waits on the
// disk (the archive's fsync + rename, the tree's manifest fsync + rename) runs on one committer
// thread, so no worker sits idle in fsync. The main thread only waits. Linking then runs as
// parallel loops inside the same arena. Per-package state lives in `states[i]` for lock entry i;
// the fetch thread writes slot i in on_fetched and hands it to exactly one TBB task, which hands
// it to the committer, so no slot is ever written by two threads at once.
#include "materializer/install.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <tbb/concurrent_priority_queue.h>
#include <tbb/global_control.h>
#include <tbb/task_arena.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <nlohmann/json.hpp>
#include <thread>

#include "cache/growing_file.h"
#include "cache/store.h"
#include "fetch/fetcher.h"
#include "materializer/base/beneath.h"
#include "materializer/base/fs.h"
#include "materializer/base/hash.h"
#include "materializer/base/json.h"
#include "materializer/base/text.h"
#include "materializer/base/url.h"
#include "materializer/interrupt.h"
#include "materializer/cache_repair.h"
#include "materializer/local_files.h"
#include "materializer/progress.h"
#include "materializer/pypi_plan.h"
#include "materializer/stamp.h"
#include "materializer/trace.h"
#include "materializer/wheel.h"

namespace mat {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

struct PkgState {
  const PackageRef* ref = nullptr;
  cache::Key key;
  cache::ArchiveFormat format = cache::ArchiveFormat::kConda;
  Status status;
  bool cache_hit = false;   // extracted tree was already in the cache
  bool downloaded = false;  // bytes came over the network this run
  int64_t bytes = 0;        // archive size
  double download_s = 0, extract_s = 0, link_s = 0;
  std::string archive_path, tree;
  std::string http_version;
  int attempts = 0;
  FileLock lock;
  // An md5-only lock entry that the md5 index does not lead to (README "Cache layout"): locked
  // and downloaded as md5-<M>, hashed with both digests, then stored under its sha256 (rekey),
  // holding both locks. `fetched_sha256` is the downloaded bytes' digest; `rekey_wait` marks a
  // download whose sha256 entry another process held at that moment.
  bool by_md5 = false;
  FileLock md5_lock;
  std::string fetched_sha256;
  bool rekey_wait = false;
  // The entry's lock was held by another process producing it: this run waited for that
  // (lock_wait_s of it blocked on the lock itself) instead of downloading it too.
  bool lock_waited = false;
  double lock_wait_s = 0;
  std::unique_ptr<cache::PendingArchive> pending;
  // A .conda download that the streaming thread may extract as it arrives: the file it grows in
  // and how far it is (set at submission, then read-only but for `follow`).
  std::shared_ptr<cache::GrowingFile> growing;
  std::string growing_path;
  enum class Follow { kIdle, kFollowing, kDownloadDone, kGaveUp, kClosed };
  Follow follow = Follow::kIdle;  // guarded by Pipeline::stream_mu_
  bool streamed = false;          // extracted while downloading
  std::vector<std::string> warnings;  // cache entries passed over (main thread only)
};

// "zlib-1.3.1-h4ab18f5_1 (conda-forge/linux-64)"
std::string label(const PackageRef& r) {
  if (r.kind == PackageKind::kPypi) return r.name + "==" + r.version + " (" + r.file_name + ")";
  std::string chan = base_name(redact_url(r.channel));
  std::string s = r.name + "-" + r.version;
  if (!r.build.empty()) s += "-" + r.build;
  if (!chan.empty() || !r.subdir.empty()) s += " (" + chan + "/" + r.subdir + ")";
  return s;
}

const char* hint_for(Code c) {
  switch (c) {
    case Code::kHashMismatch:
      return "the server sent other bytes than the lock names: re-lock, or check the mirror "
             "or proxy in between";
    case Code::kNotFound:
      return "the file does not exist there: check the channel/mirror URL, or re-lock";
    case Code::kRetryable:
      return "a transient network failure: rerun the same command (finished packages stay "
             "cached)";
    case Code::kCorrupt:
      return "the archive is damaged or unsafe; nothing from it was installed and the cache "
             "did not keep it: rerun the same command to download it again, or report it to "
             "the channel";
    case Code::kNoSpace:
      return "free disk space (cache and prefix) and rerun";
    case Code::kCancelled:
      return "the run was interrupted: rerun the same command";
    default:
      return "";
  }
}

// Extraction errors name the archive by its file in the cache (a temp name, or the digest):
// `st` with that name replaced by the lock's file name for the package, which people know.
Status named_for(const Status& st, const std::string& archive_path, const PackageRef& ref) {
  const std::string cached = base_name(archive_path);
  const std::string& known = ref.file_name.empty() ? ref.name : ref.file_name;
  std::string msg = st.message();
  if (cached.empty() || known.empty() || !msg.starts_with(cached)) return st;
  return Status(st.code(), known + msg.substr(cached.size()));
}

// Adapts a cache PendingArchive to fetch's Sink, counting bytes for the progress line.
// When the package may be streamed, tells its GrowingFile how far the file has grown (the end
// is told by on_fetched, once the digest is verified).
class ArchiveSink : public fetch::Sink {
 public:
  ArchiveSink(cache::PendingArchive* p, Progress* progress, cache::GrowingFile* growing)
      : p_(p), progress_(progress), growing_(growing) {}
  Status reset() override {
    // Before an attempt from byte 0, the first included, or when a server answered a resume
    // with the whole file. Bytes a streaming reader already consumed may differ from the new
    // ones, so it is cancelled (the package is then extracted from the finished file).
    if (growing_ && p_->bytes() > 0) growing_->restarted();
    return p_->reset();
  }
  // A resumed download appends to the temp file as it stands: bytes [0, offset) stay, and so
  // does a streaming reader of them.
  Status resume(int64_t offset) override {
    if (p_->bytes() != offset) {
      return Internal("cannot resume at byte " + std::to_string(offset) + ": the temp file holds " +
                      std::to_string(p_->bytes()));
    }
    return Status::Ok();
  }
  Status write(const char* data, size_t len) override {
    progress_->add_download_bytes(static_cast<int64_t>(len));
    MAT_RETURN_IF_ERROR(p_->write(data, len));
    if (growing_) growing_->grew(p_->bytes());
    return Status::Ok();
  }
  Status finish() override { return p_->finish(); }
  void abort() override { p_->abort(); }  // on_fetched tells the GrowingFile

 private:
  cache::PendingArchive* p_;
  Progress* progress_;
  cache::GrowingFile* growing_;  // null: not streamed
};

// Counts outstanding TBB tasks so the main thread can wait for them without joining the arena.
class TaskLatch {
 public:
  void add() {
    std::lock_guard<std::mutex> l(mu_);
    ++n_;
  }
  void done() {
    std::lock_guard<std::mutex> l(mu_);
    if (--n_ == 0) cv_.notify_all();
  }
  void wait() {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [this] { return n_ == 0; });
  }

 private:
  std::mutex mu_;  // guards n_
  std::condition_variable cv_;
  int64_t n_ = 0;
};

// One thread that runs posted jobs in order: the cache's commits (fsync, rename), which block on
// the disk, not the CPU. On the bench's cold installs they were 0.2 s (conda) and 0.07 s
// (wheels, 13% of all worker time) of --jobs threads idling in fsync.
class Committer {
 public:
  Committer() : thread_([this] { run(); }) {}
  ~Committer() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();  // runs whatever is still queued first
  }
  Committer(const Committer&) = delete;
  Committer& operator=(const Committer&) = delete;

  void post(std::function<void()> job) {
    {
      std::lock_guard<std::mutex> l(mu_);
      jobs_.push_back(std::move(job));
    }
    cv_.notify_one();
  }

 private:
  void run() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock<std::mutex> l(mu_);
        cv_.wait(l, [this] { return stop_ || !jobs_.empty(); });
        if (jobs_.empty()) return;  // stop_ and drained
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      job();
    }
  }

  std::mutex mu_;  // guards jobs_ and stop_
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stop_ = false;
  std::thread thread_;  // last: starts after the members it uses exist
};

class Pipeline {
 public:
  Pipeline(const InstallOptions& opts, const std::vector<PackageRef>& plan, cache::Store& store,
           Progress& progress, tbb::task_arena& arena, Trace& trace)
      : opts_(opts),
        plan_(plan),
        store_(store),
        progress_(progress),
        arena_(arena),
        trace_(trace) {}

  std::vector<PkgState>& states() { return states_; }
  double download_wall = 0, fetch_extract_wall = 0;
  std::atomic<int64_t> downloaded_bytes{0};
  int64_t legacy_entries = 0;  // trees of an older version, extracted afresh (main thread)

  // Stage 1: cache lookup, per-entry locks, download + verify + extract for the misses.
  Status fetch_and_extract() {
    states_.resize(plan_.size());
    std::vector<size_t> todo, deferred;
    for (size_t i = 0; i < states_.size(); ++i) {
      if (!init_state(i)) continue;
      if (states_[i].cache_hit) continue;
      MAT_ASSIGN_OR_RETURN(FileLock l, store_.lock_entry(states_[i].key, /*wait=*/false));
      if (!l.held()) {
        deferred.push_back(i);  // another process is producing it; wait for it later
        continue;
      }
      states_[i].lock = std::move(l);
      if (!recheck_hit(i)) todo.push_back(i);
    }
    auto t0 = Clock::now();
    MAT_RETURN_IF_ERROR(run_round(todo));
    MAT_RETURN_IF_ERROR(finish_rekeys(todo));
    // Entries another process was producing: wait for each, then take over whatever it left.
    // The waits go in key order ("md5-" before "sha256-"), as do those of finish_rekeys(), while
    // a process holds only locks that sort before the one it waits for: two processes never
    // wait on each other (in lock-file order, A waiting for B's entry while B waits for A's
    // was possible when both took over entries a third process failed to produce).
    std::sort(deferred.begin(), deferred.end(), [&](size_t a, size_t b) {
      return states_[a].key.str() < states_[b].key.str();
    });
    std::vector<size_t> round2;
    for (size_t i : deferred) {
      PkgState& s = states_[i];
      progress_.detail(label(*s.ref) + ": waiting for another process to cache it");
      auto w0 = Clock::now();
      MAT_ASSIGN_OR_RETURN(FileLock l, store_.lock_entry(s.key, /*wait=*/true));
      s.lock_waited = true;
      s.lock_wait_s = seconds_since(w0);
      trace_.add(s.ref->name, "wait for the cache entry", w0, Clock::now(), Trace::kMainLane);
      s.lock = std::move(l);
      if (!recheck_hit(i)) round2.push_back(i);
    }
    MAT_RETURN_IF_ERROR(run_round(round2));
    MAT_RETURN_IF_ERROR(finish_rekeys(round2));
    store_.sync_dirs();  // this run's renames into archives/ and trees/, made durable at once
    fetch_extract_wall = seconds_since(t0);
    return Status::Ok();
  }

 private:
  // A package whose archive is ready to publish (downloaded) or extract (found in the cache).
  struct Ready {
    int64_t size = 0;
    size_t index = 0;
    bool publish = false;
    bool operator<(const Ready& o) const {
      return size != o.size ? size < o.size : index > o.index;
    }
  };

  // Fills key/format; returns false (status set) if the entry cannot be handled.
  bool init_state(size_t i) {
    PkgState& s = states_[i];
    s.ref = &plan_[i];
    const PackageRef& r = *s.ref;
    s.key = r.sha256.empty() ? cache::Key{HashKind::kMd5, r.md5}
                             : cache::Key{HashKind::kSha256, r.sha256};
    auto fmt = cache::format_from_name(r.file_name);
    bool wheel = fmt && *fmt == cache::ArchiveFormat::kWheel;
    if (!fmt || wheel != (r.kind == PackageKind::kPypi)) {
      s.status = InvalidInput(
          "'" + r.file_name + "' is not a " +
          (r.kind == PackageKind::kPypi ? "wheel (.whl)" : "conda package (.conda or .tar.bz2)"));
      return false;
    }
    s.format = *fmt;
    s.bytes = r.size;
    if (r.sha256.empty() && is_hex(r.md5, 32)) resolve_md5(s);
    cache::Distrust bad;
    if (auto tree = store_.find_tree(s.key, &bad)) {
      s.cache_hit = true;
      s.tree = *tree;
      cache::Distrust bad_archive;
      s.archive_path = store_.find_archive(s.key, s.format, &bad_archive).value_or("");
      note_distrust(s, bad_archive, "not used");
      // Entries made before sources were recorded learn theirs now (one lstat per hit with an
      // http(s) URL), so `cache verify --repair` can fetch them again.
      if (r.url.starts_with("http") && !store_.has_source(s.key)) {
        store_.record_source(s.key, r.url).ignore();
      }
    } else {
      note_distrust(s, bad, "extracting it afresh");
    }
    return true;
  }

  // An md5-only lock entry (README "Cache layout"): the sha256 entry the md5 index leads to,
  // when its archive has that md5 (a lock's unchecked claim is checked against the stored
  // archive once, then recorded as verified); else an md5-<M> entry an older version made;
  // else by_md5 (downloaded, then stored under its sha256).
  void resolve_md5(PkgState& s) {
    const std::string& md5 = s.ref->md5;
    s.by_md5 = false;
    if (auto link = store_.find_md5(md5)) {
      if (link->verified || confirm_md5_claim(s, *link)) {
        if (store_.find_tree(link->sha256) || store_.find_archive(link->sha256, s.format)) {
          s.key = link->sha256;
          return;
        }
      }
    }
    if (store_.find_tree(s.key) || store_.find_archive(s.key, s.format)) return;  // md5-<M>
    s.by_md5 = true;
  }

  // Hashes the archive a claim leads to (once per entry: the record then says "verified").
  bool confirm_md5_claim(const PkgState& s, const cache::Md5Link& link) {
    auto archive = store_.find_archive(link.sha256, s.format);
    if (!archive) return false;
    auto got = hash_file(*archive, HashKind::kMd5);
    if (!got.ok() || *got != s.key.str().substr(4)) return false;  // s.key: md5-<lowercase M>
    store_.record_md5(s.ref->md5, link.sha256, /*verified=*/true).ignore();
    return true;
  }

  // What the cache learns from an entry this run produced or waited for (cache/meta.h): its
  // source URL (http(s) without credentials only), and its md5 when the lock named one:
  // verified for a by_md5 download (both digests came from the bytes), else a claim, unless
  // a record is there already.
  void record_meta(const PkgState& s) {
    store_.record_source(s.key, s.ref->url).ignore();
    if (s.key.kind != HashKind::kSha256 || s.ref->md5.empty()) return;
    if (s.by_md5) {
      store_.record_md5(s.ref->md5, s.key, /*verified=*/true).ignore();
    } else if (!store_.find_md5(s.ref->md5)) {
      store_.record_md5(s.ref->md5, s.key, /*verified=*/false).ignore();
    }
  }

  static void release_locks(PkgState& s) {
    s.lock.release();
    s.md5_lock.release();
  }

  // An entry the cache passed over (README "Permission model"): a warning naming it and why,
  // unless it is merely an older version's (then a -v note). `then` says what happens instead.
  void note_distrust(PkgState& s, const cache::Distrust& d, const char* then) {
    if (d.path.empty()) return;
    std::string text = "cache entry " + d.path + ": " + d.why + ": " + then;
    if (d.legacy) {
      ++legacy_entries;
      progress_.detail(label(*s.ref) + ": " + text);
      return;
    }
    progress_.line("warning: " + label(*s.ref) + ": " + text);
    s.warnings.push_back(std::move(text));
  }

  bool recheck_hit(size_t i) {
    PkgState& s = states_[i];
    if (s.by_md5) {
      // The process we waited for may have stored it under its sha256.
      auto link = store_.find_md5(s.ref->md5);
      if (!link || !link->verified || !store_.find_tree(link->sha256)) return false;
      s.key = link->sha256;
      s.by_md5 = false;
    }
    if (auto tree = store_.find_tree(s.key)) {
      s.cache_hit = true;
      s.tree = *tree;
      s.archive_path = store_.find_archive(s.key, s.format).value_or("");
      s.lock.release();
      return true;
    }
    return false;
  }

  Status run_round(std::vector<size_t> todo) {
    if (todo.empty()) return Status::Ok();
    // Largest first: the long poles start early and the small tail fills the gaps.
    std::stable_sort(todo.begin(), todo.end(), [&](size_t a, size_t b) {
      return states_[a].ref->size > states_[b].ref->size;
    });
    TaskLatch latch;
    fetch::Options fo;
    fo.max_parallel = std::max(1, opts_.max_downloads);
    fo.ca_bundle = opts_.ca_bundle;
    fo.offline = opts_.offline;
    fo.max_host_connections = opts_.max_connections_per_host;
    fo.stall_timeout_s = opts_.stall_timeout_s;
    // One fetch loop (decrypt + SHA-256 + write) keeps ~6 extracting cores busy (bench/README:
    // ~250 MB/s per loop, ~40 MB/s of archives per extracting core); more cores get more loops
    // so downloading never becomes the one serial stage.
    fo.loops = std::clamp((arena_.max_concurrency() + 5) / 6, 1, 16);
    // The streaming thread picks the largest download, and most locks give no sizes: the
    // responses' Content-Length tells them.
    fo.on_progress = [this](uint64_t id, int64_t, int64_t total) {
      const PkgState& s = states_[static_cast<size_t>(id)];
      if (s.growing && total > 0) s.growing->expect(total);
    };
    auto t0 = Clock::now();
    auto fetcher = fetch::Fetcher::create(
        fo, [&](fetch::FetchResult&& r) { on_fetched(std::move(r), latch); });
    if (!fetcher.ok()) return fetcher.status();
    // SIGINT/SIGTERM end every transfer at once (kCancelled; their temp files go with them).
    InterruptHook cancel_downloads([&] { (*fetcher)->cancel(); }, {});
    int64_t dl_count = 0, dl_bytes = 0;
    bool streamable = false;
    for (size_t i : todo) {
      PkgState& s = states_[i];
      cache::Distrust bad;
      if (auto archive = store_.find_archive(s.key, s.format, &bad)) {
        s.archive_path = *archive;  // downloaded earlier, never extracted: extract only
        latch.add();
        struct stat st {};
        schedule(i, /*publish=*/false,
                 ::stat(archive->c_str(), &st) == 0 ? static_cast<int64_t>(st.st_size) : 0, latch);
        continue;
      }
      note_distrust(s, bad, "downloading it afresh");
      auto pending = store_.begin_archive(s.key, s.format);
      if (!pending.ok()) {
        s.status = pending.status();
        release_locks(s);
        continue;
      }
      s.pending = std::move(pending).value();
      // A by_md5 tree cannot be extracted as it arrives: its key is known only at the end.
      if (opts_.stream && s.format == cache::ArchiveFormat::kConda && !s.by_md5) {
        s.growing = std::make_shared<cache::GrowingFile>();
        s.growing_path = s.pending->path();
        streamable = true;
      }
      fetch::Request req;
      req.url = s.ref->url;
      req.sink = std::make_unique<ArchiveSink>(s.pending.get(), &progress_, s.growing.get());
      req.want_sha256 = !s.ref->sha256.empty() || s.by_md5;
      // MD5 only when the lock gives no SHA-256 (as micromamba and rattler do): the SHA-256
      // check is the stronger one, and MD5 would cost ~0.8 CPU-s per GB on the fetch thread.
      req.want_md5 = s.ref->sha256.empty() && !s.ref->md5.empty();
      req.expected_size = s.ref->size;
      req.id = i;
      latch.add();
      (*fetcher)->submit(std::move(req));
      ++dl_count;
      dl_bytes += std::max<int64_t>(0, s.ref->size);
    }
    progress_.set_totals(static_cast<int64_t>(states_.size()), dl_count, dl_bytes);
    std::thread streamer;
    if (streamable) streamer = std::thread([this, &todo, &latch] { stream(todo, latch); });
    (*fetcher)->finish();
    download_wall += seconds_since(t0);
    latch.wait();
    if (streamer.joinable()) streamer.join();
    return Status::Ok();
  }

  // The streaming thread: extracts the largest .conda still downloading as its bytes arrive
  // (cache::GrowingFile, Store::extract_streamed), then the next largest, until none is left.
  // When the network is the bottleneck the biggest download ends last, and without this its
  // whole extraction would come after its last byte (bench, serve.py --limit-rate 5m: mkl's
  // 1.0 s of 27 s). It runs outside the arena, on an arena of its own with one slot (so the
  // zstd decoding stays on this thread): it mostly waits for bytes, and the --jobs workers stay
  // free for the downloads that finish meanwhile. If the streamed extraction fails for any
  // reason but a failed download, the package falls back to the ordinary path (from the
  // complete file), whose result or error is the canonical one.
  void stream(const std::vector<size_t>& todo, TaskLatch& latch) {
    tbb::task_arena solo(1, 1);
    for (int waits = 0;;) {
      size_t i = SIZE_MAX;
      int64_t best = -1;
      bool claimed = false;
      {
        std::lock_guard<std::mutex> l(stream_mu_);
        for (size_t j : todo) {
          const PkgState& s = states_[j];
          if (!s.growing || s.follow != PkgState::Follow::kIdle) continue;
          int64_t size = s.ref->size > 0 ? s.ref->size : s.growing->expected();
          if (size > best) {
            best = size;
            i = j;
          }
        }
        if (i == SIZE_MAX) return;
        // No size known yet (a lock without sizes, responses not started): wait a little for
        // the Content-Lengths rather than follow whichever comes first in the lock.
        if (best <= 0 && waits < kStreamSizeWaits) {
          ++waits;
        } else {
          states_[i].follow = PkgState::Follow::kFollowing;
          claimed = true;
        }
      }
      if (!claimed) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        continue;
      }
      solo.execute([&] { stream_one(i, latch); });
    }
  }
  static constexpr int kStreamSizeWaits = 50;  // x 10 ms

  void stream_one(size_t i, TaskLatch& latch) {
    PkgState& s = states_[i];  // until the hand-off below: key, format, growing* only
    auto t0 = Clock::now();
    Result<std::unique_ptr<cache::PendingTree>> tree = Internal("not started");
    auto reader = cache::GrowingFileReader::open(s.growing_path, s.growing);
    if (reader.ok()) {
      tree = store_.extract_streamed(s.key, s.growing_path, s.format,
                                     [&reader] { return (*reader)->next(); });
    } else {
      tree = reader.status();
    }
    {
      std::lock_guard<std::mutex> l(stream_mu_);
      if (s.follow != PkgState::Follow::kDownloadDone) {
        // Still downloading (on_fetched will queue it as usual), or the download failed
        // (on_fetched has settled the package): nothing of it is this thread's.
        if (s.follow == PkgState::Follow::kFollowing) {
          s.follow = PkgState::Follow::kGaveUp;
          progress_.detail(label(*s.ref) + ": extracting while downloading stopped (" +
                           tree.status().to_string() + "); extracting once it is downloaded");
        }
        return;
      }
    }
    // The download is complete and verified (on_fetched left the package to this thread).
    if (!tree.ok()) {
      progress_.detail(label(*s.ref) + ": extracting while downloading failed (" +
                       named_for(tree.status(), s.growing_path, *s.ref).to_string() +
                       "); extracting from the file");
      schedule(i, /*publish=*/true, s.bytes, latch);
      return;
    }
    s.streamed = true;
    s.extract_s = seconds_since(t0);
    trace_.add(s.ref->name, "extract", t0, Clock::now(), Trace::kStreamLane);
    progress_.extract_done();
    hand_to_committer(s, /*publish=*/true, std::move(tree).value(), latch);
  }

  // Runs on a fetch thread (several with fo.loops > 1): check the digests, then hand the rest
  // to a TBB worker.
  void on_fetched(fetch::FetchResult&& r, TaskLatch& latch) {
    size_t i = static_cast<size_t>(r.id);
    PkgState& s = states_[i];
    auto done_at = Clock::now();
    trace_.add_download(s.ref->name,
                        done_at - std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(r.seconds)),
                        done_at);
    s.download_s = r.seconds;
    s.attempts = r.attempts;
    s.http_version = r.http_version;
    progress_.download_done();
    Status st = r.status;
    if (st.ok()) st = verify_digests(*s.ref, r);
    if (!st.ok()) {
      if (s.growing) {
        std::lock_guard<std::mutex> l(stream_mu_);
        s.follow = PkgState::Follow::kClosed;
        s.growing->failed();  // a streaming extraction of it stops and leaves nothing
      }
      s.status = st;
      s.pending->abort();
      s.pending.reset();
      release_locks(s);
      latch.done();
      return;
    }
    s.downloaded = true;
    s.bytes = r.bytes;
    downloaded_bytes += r.bytes;
    progress_.detail("downloaded " + label(*s.ref) + " (" + human_bytes(r.bytes) + ", HTTP/" +
                     r.http_version + ")");
    if (s.by_md5) {
      s.fetched_sha256 = r.sha256;
      rekey(i, /*wait=*/false, latch);
      return;
    }
    if (s.growing) {
      std::lock_guard<std::mutex> l(stream_mu_);
      if (s.follow == PkgState::Follow::kFollowing) {
        s.follow = PkgState::Follow::kDownloadDone;
        s.growing->complete();  // the streaming thread finishes it
        return;
      }
      s.follow = PkgState::Follow::kClosed;
    }
    schedule(i, /*publish=*/true, r.bytes, latch);
  }

  // A by_md5 download is complete and its md5 verified: from here on it is the entry of its
  // sha256, whose lock it takes besides the md5 one. On a fetch thread (wait=false): when
  // another process holds that lock, the package is set aside (rekey_wait, its temp file kept)
  // for finish_rekeys(). If the sha256 entry is there already (stored by a sha256 lock before
  // the index knew its md5), it is used and the download dropped.
  void rekey(size_t i, bool wait, TaskLatch& latch) {
    PkgState& s = states_[i];
    cache::Key key{HashKind::kSha256, s.fetched_sha256};
    auto w0 = Clock::now();
    auto lock = store_.lock_entry(key, wait);
    if (lock.ok() && !lock->held()) {
      s.rekey_wait = true;
      latch.done();
      return;
    }
    Status st = lock.status();
    if (st.ok()) st = s.pending->retarget(key);
    if (!st.ok()) {
      s.status = st;
      s.pending->abort();
      s.pending.reset();
      release_locks(s);
      latch.done();
      return;
    }
    if (wait) {
      s.lock_waited = true;
      s.lock_wait_s += seconds_since(w0);
    }
    s.md5_lock = std::move(s.lock);
    s.lock = std::move(lock).value();
    s.key = key;
    if (auto tree = store_.find_tree(key)) {
      s.pending->abort();
      s.pending.reset();
      s.tree = *tree;
      s.archive_path = store_.find_archive(key, s.format).value_or("");
      record_meta(s);
      release_locks(s);
      latch.done();
      return;
    }
    schedule(i, /*publish=*/true, s.bytes, latch);
  }

  // The rekey_wait packages of `round`: each waits for its sha256 entry's lock (in key order,
  // see fetch_and_extract), then goes on as rekey() does.
  Status finish_rekeys(const std::vector<size_t>& round) {
    std::vector<size_t> waiting;
    for (size_t i : round) {
      if (states_[i].rekey_wait) waiting.push_back(i);
    }
    if (waiting.empty()) return Status::Ok();
    std::sort(waiting.begin(), waiting.end(), [&](size_t a, size_t b) {
      return states_[a].fetched_sha256 < states_[b].fetched_sha256;
    });
    TaskLatch latch;
    for (size_t i : waiting) {
      states_[i].rekey_wait = false;
      progress_.detail(label(*states_[i].ref) + ": waiting for another process to cache it");
      latch.add();
      rekey(i, /*wait=*/true, latch);
    }
    latch.wait();
    return Status::Ok();
  }

  // Queues package i's publish (when `publish`) and extraction. Workers take the largest ready
  // package first, whatever order the downloads finished in: HTTP/2 interleaves the transfers,
  // so the small ones land first, and a big package left for last would be a serial tail.
  // `bytes` is the archive's real size: the order must not depend on the lock giving sizes
  // (conda-lock v1 and @EXPLICIT files have none; then every package tied, and extraction
  // followed the download order, i.e. the lock's alphabetical order, with the biggest
  // package, mkl, extracted 1.7 s after it had arrived).
  void schedule(size_t i, bool publish, int64_t bytes, TaskLatch& latch) {
    ready_.push(Ready{bytes, i, publish});
    arena_.enqueue([this, &latch] {
      Ready r;
      bool popped = ready_.try_pop(r);  // one push per enqueue: never empty here
      if (popped) {
        extract(r, latch);
      } else {
        latch.done();
      }
    });
  }

  // Runs on a TBB worker; the entry lock is held. A downloaded archive is extracted from its
  // temp file (its digest was checked on the fetch thread); the committer then publishes it
  // and the tree, and only then releases the entry lock and counts the package done.
  void extract(const Ready& r, TaskLatch& latch) {
    PkgState& s = states_[r.index];
    auto t0 = Clock::now();
    const std::string& archive = r.publish ? s.pending->path() : s.archive_path;
    auto tree = store_.extract_pending(s.key, archive, s.format);
    if (tree.ok() && s.format == cache::ArchiveFormat::kWheel) {
      Status st = check_wheel_tree((*tree)->pkg_dir(), s.ref->file_name);
      if (!st.ok()) tree = st;
    }
    if (tree.ok() && !r.publish) cache::drop_page_cache(s.archive_path);  // clean: published
    s.extract_s = seconds_since(t0);
    trace_.add(s.ref->name, "extract", t0, Clock::now(), Trace::worker_lane());
    progress_.extract_done();
    if (!tree.ok()) {
      s.status = named_for(tree.status(), archive, *s.ref);
      // A verified archive that will not extract is unsafe or damaged: drop the whole entry
      // so the next run downloads afresh instead of failing on the cached copy forever. Not
      // when the run was interrupted or the disk failed: the archive is fine.
      const Code c = s.status.code();
      if (r.publish) {
        s.pending->abort();
        s.pending.reset();
      } else if (c != Code::kCancelled && c != Code::kNoSpace && c != Code::kIo) {
        store_.remove_entry(s.key).ignore();
      }
      release_locks(s);
      latch.done();
      return;
    }
    hand_to_committer(s, r.publish, std::move(tree).value(), latch);
  }

  void hand_to_committer(PkgState& s, bool publish, std::unique_ptr<cache::PendingTree> tree,
                         TaskLatch& latch) {
    // shared_ptr: std::function needs a copyable job.
    std::shared_ptr<cache::PendingTree> pending_tree = std::move(tree);
    committer_.post([this, &s, &latch, pending_tree, publish]() mutable {
      commit(s, publish, *pending_tree);
      pending_tree.reset();  // an uncommitted tree's temp dir goes here, on this thread
      if (s.status.ok()) record_meta(s);
      release_locks(s);
      latch.done();
    });
  }

  // Runs on the committer thread.
  void commit(PkgState& s, bool publish, cache::PendingTree& tree) {
    auto t0 = Clock::now();
    if (publish) {
      auto published = s.pending->publish();
      s.pending.reset();
      if (!published.ok()) {
        s.status = published.status();
        return;
      }
      s.archive_path = *published;
      cache::drop_page_cache(s.archive_path);  // read by the extraction, fsynced: clean now
    }
    auto committed = tree.commit();
    trace_.add(s.ref->name, "commit", t0, Clock::now(), Trace::kCommitLane);
    if (!committed.ok()) {
      s.status = committed.status();
      return;
    }
    s.tree = *committed;
    const cache::ExtractStats& stats = tree.stats();
    progress_.detail("extracted " + label(*s.ref) + " (" + std::to_string(stats.files) + " files)");
  }

  static Status verify_digests(const PackageRef& ref, const fetch::FetchResult& r) {
    auto check = [&](const char* what, const std::string& want, const std::string& got) {
      if (want.empty() || want == got) return Status::Ok();
      return HashMismatch(std::string(what) + " mismatch: expected " + want + ", got " + got +
                          " (" + std::to_string(r.bytes) + " bytes from " + shown_url(ref.url) +
                          ")" + fetch::unexpected_content_type_note(r.content_type));
    };
    if (!ref.sha256.empty()) return check("sha256", ref.sha256, r.sha256);
    return check("md5", ref.md5, r.md5);
  }

  const InstallOptions& opts_;
  const std::vector<PackageRef>& plan_;
  cache::Store& store_;
  Progress& progress_;
  tbb::task_arena& arena_;
  Trace& trace_;
  std::vector<PkgState> states_;
  tbb::concurrent_priority_queue<Ready> ready_;  // largest on top
  std::mutex stream_mu_;  // guards PkgState::follow, the hand-off between on_fetched and stream
  Committer committer_;   // last: joined (its queue drained) before the state it writes goes
};

// The lock's bytes, refused (kInvalidInput) beyond `max_bytes` before more is read: a regular
// file by its size, anything else (a pipe) as it is read.
Result<std::string> read_lock_bytes(const std::string& path, int64_t max_bytes) {
  auto too_big = [&](const std::string& size) {
    return InvalidInput(path + ": lock file" + (size.empty() ? "" : " of " + size) +
                        " is larger than the limit of " + std::to_string(max_bytes) +
                        " bytes; if it is genuine, raise the limit with --max-lock-size");
  };
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus("cannot read lock file: " + path, errno);
  struct stat st {};
  if (::fstat(fd.get(), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > max_bytes) {
    return too_big(std::to_string(st.st_size) + " bytes");
  }
  std::string out;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus("cannot read lock file: " + path, errno);
    if (n == 0) return out;
    out.append(buf, static_cast<size_t>(n));
    if (static_cast<int64_t>(out.size()) > max_bytes) return too_big("");
  }
}

// One URL or local path a run could read, checked against the policy and replaced by the URL
// of the path it resolves to (local_files.h). Other schemes are left to fetch/, which accepts
// only http, https and file.
Status check_local_source(std::string& url, const LocalFiles& files, const std::string& where) {
  if (url.empty()) return Status::Ok();
  if (url_scheme_is_file(url)) {
    if (!is_file_url(url)) {
      return InvalidInput(where + ": " + shown_url(url, 200) +
                          ": write local files as file:///absolute/path");
    }
    Result<std::string> ok = files.check_url(url);
    if (!ok.ok()) return ok.status().with_context(where);
    url = *ok;
  } else if (url[0] == '/') {
    Result<std::string> ok = files.check_path(url);
    if (!ok.ok()) return ok.status().with_context(where);
    url = *ok;
  }
  return Status::Ok();
}

Status check_local_sources(LockFile& lock, InstallOptions& opts, const LocalFiles& files) {
  for (PackageRef& r : lock.packages) {
    // Git, directory and editable sources are refused or skipped by the driver before anything
    // is read; their paths (a uv workspace member) are not files to fetch.
    if (!r.source_kind.empty() && r.source_kind != "archive") continue;
    std::string where = lock.path + (r.line > 0 ? ":" + std::to_string(r.line) : "") +
                        ": package '" + printable(r.name, 80) + "'";
    MAT_RETURN_IF_ERROR(check_local_source(r.url, files, where));
    for (auto* list : {&r.wheels, &r.sdists}) {
      for (WheelCandidate& c : *list) MAT_RETURN_IF_ERROR(check_local_source(c.url, files, where));
    }
  }
  struct Setting {
    std::vector<std::string>* urls;
    std::string where;
  };
  const Setting settings[] = {
      {&lock.index.index_urls, lock.path + ": --index-url"},
      {&lock.index.find_links, lock.path + ": --find-links"},
      {&opts.index.index_urls, "--index-url"},
      {&opts.extra_index_urls, "--extra-index-url"},
      {&opts.index.find_links, "--find-links"},
  };
  for (const Setting& s : settings) {
    for (std::string& u : *s.urls) MAT_RETURN_IF_ERROR(check_local_source(u, files, s.where));
  }
  return Status::Ok();
}

std::string join_names(const std::vector<std::string>& v) {
  std::string out;
  for (const std::string& s : v) out += (out.empty() ? "" : ", ") + (s.empty() ? "none" : s);
  return out;
}

// A run that would install nothing is an error, never "environment ready": an empty lock, a
// selection that kept 0 of N entries (the wrong --platform or --environment), or selected
// entries that were all skipped (markers, the project itself). Also refuses two wheels of one
// PyPI name that the markers left both in (lock formats with markers are checked here, once
// they are evaluated; see parse_lock for the others).
Status check_selection(const LockFile& lock, const std::vector<PackageRef>& plan, size_t n_conda,
                       const LockSelection& sel, size_t skipped) {
  std::map<std::string, const PackageRef*> wheels;
  for (size_t i = n_conda; i < plan.size(); ++i) {
    const PackageRef& w = plan[i];
    auto [it, fresh] = wheels.try_emplace(pypi::normalize_name(w.name), &w);
    if (fresh || it->second->url == w.url) continue;
    auto where = [](const PackageRef& r) {
      return (r.line > 0 ? "line " + std::to_string(r.line) : std::string("an entry")) + " (" +
             printable(r.file_name, 120) + ")";
    };
    return InvalidInput(lock.path + ": package '" + printable(w.name, 80) +
                        "' is selected twice for this target: " + where(*it->second) + " and " +
                        where(w) +
                        "; their markers overlap, so which one to install is ambiguous: re-lock");
  }
  if (!plan.empty()) return Status::Ok();
  const std::string n = std::to_string(lock.entries);
  if (lock.entries == 0) {
    return InvalidInput(lock.path +
                        ": the lock lists no packages, so there is nothing to install; "
                        "re-lock the environment with its packages");
  }
  if (lock.packages.empty()) {
    std::string why = "0 of its " + n + " packages are for platform " + sel.platform;
    if (lock.format == LockFormat::kPixi) why += " in environment '" + sel.environment + "'";
    std::string hint;
    for (const std::string& p : lock.entry_platforms) {
      if (!p.empty() && p != sel.platform && p != "noarch") {
        hint = "; pass --platform " + p;
        break;
      }
    }
    if (lock.format == LockFormat::kPixi && hint.empty()) hint = "; pass --environment NAME";
    return InvalidInput(lock.path + ": " + why + " (platforms in the lock: " +
                        join_names(lock.entry_platforms) + "); nothing to install" + hint);
  }
  return InvalidInput(lock.path + ": none of the " + std::to_string(lock.packages.size()) +
                      " packages selected applies to this target (" + std::to_string(skipped) +
                      " skipped by their markers or as the project itself; see the notes); "
                      "nothing to install; pass --python or --python-version to choose another "
                      "interpreter");
}

std::string python_version_of(const LockFile& lock, const std::string& override_version) {
  if (!override_version.empty()) return override_version;
  for (const auto& p : lock.packages) {
    if (p.kind == PackageKind::kConda && p.name == "python") {
      size_t a = p.version.find('.');
      if (a == std::string::npos) return "";
      size_t b = p.version.find('.', a + 1);
      return p.version.substr(0, b);
    }
  }
  return "";
}

// --dry-run: what would be installed, from where, and whether the cache already has it.
void print_plan(const std::vector<PackageRef>& plan, const cache::Store* store,
                const pypi::TargetPython* target) {
  if (target) {
    std::printf(
        "target: %s %s (%s), %s\n", target->implementation.c_str(),
        target->full_version.empty() ? target->version.c_str() : target->full_version.c_str(),
        target->abi.c_str(), target->platform.c_str());
  }
  for (const auto& r : plan) {
    cache::Key key{r.sha256.empty() ? HashKind::kMd5 : HashKind::kSha256,
                   r.sha256.empty() ? r.md5 : r.sha256};
    bool cached = store && store->find_tree(key).has_value();
    std::printf("%-6s %-40s %s%s\n", r.kind == PackageKind::kPypi ? "pypi" : "conda",
                label(r).c_str(), shown_url(r.url).c_str(), cached ? "  [cached]" : "");
  }
  std::printf("%zu packages\n", plan.size());
}

void print_failures(const std::vector<PkgState>& states, size_t total) {
  size_t failed = 0;
  for (const auto& s : states) failed += s.status.ok() ? 0 : 1;
  if (failed == 0) return;
  std::fprintf(stderr, "error: %zu of %zu packages failed:\n", failed, total);
  for (const auto& s : states) {
    if (s.status.ok()) continue;
    std::fprintf(stderr, "  %s\n    url:   %s\n    error: %s\n",
                 clip_message(label(*s.ref)).c_str(), shown_url(s.ref->url).c_str(),
                 clip_message(s.status.to_string()).c_str());
    const char* hint = hint_for(s.status.code());
    if (*hint) std::fprintf(stderr, "    fix:   %s\n", hint);
  }
}

nlohmann::json make_report(const InstallOptions& opts, const LockFile* lock,
                           const std::vector<PkgState>& states, int exit_code, double wall,
                           double dl_wall, double fx_wall, double link_wall,
                           int64_t downloaded_bytes, const std::string& link_mode) {
  nlohmann::json j;
  j["materializer_version"] = "0.1.0";
  j["command"] = opts.prefix.empty() ? "prewarm" : "install";
  j["ok"] = exit_code == 0;
  j["exit_code"] = exit_code;
  j["wall_seconds"] = wall;
  j["noop"] = link_mode == "noop";
  j["prefix"] = opts.prefix;
  j["cache_dir"] = opts.cache_dir;
  j["lock"] = {{"path", opts.lock_path},
               {"format", lock ? lock_format_label(*lock) : ""},
               {"platform", opts.selection.platform},
               {"environment", opts.selection.environment}};
  double ex_sum = 0, link_sum = 0, dl_sum = 0;
  int64_t hits = 0;
  nlohmann::json pkgs = nlohmann::json::array();
  for (const auto& s : states) {
    if (!s.ref) continue;
    ex_sum += s.extract_s;
    link_sum += s.link_s;
    dl_sum += s.download_s;
    hits += s.cache_hit ? 1 : 0;
    nlohmann::json p = {{"name", s.ref->name},
                        {"version", s.ref->version},
                        {"build", s.ref->build},
                        {"url", redact_url(s.ref->url)},
                        {"key", s.key.str()},
                        {"bytes", s.bytes},
                        {"cache_hit", s.cache_hit},
                        {"downloaded", s.downloaded},
                        {"download_seconds", s.download_s},
                        {"extract_seconds", s.extract_s},
                        {"link_seconds", s.link_s},
                        {"status", code_name(s.status.code())}};
    if (!s.http_version.empty()) p["http_version"] = s.http_version;
    if (s.attempts > 1) p["attempts"] = s.attempts;
    if (s.streamed) p["streamed"] = true;
    if (s.lock_waited) p["lock_wait_seconds"] = s.lock_wait_s;
    if (!s.warnings.empty()) p["warnings"] = s.warnings;
    p["error"] =
        s.status.ok() ? nlohmann::json(nullptr) : nlohmann::json(clip_message(s.status.message()));
    pkgs.push_back(std::move(p));
  }
  j["packages"] = std::move(pkgs);
  j["totals"] = {
      {"packages", states.size()}, {"cache_hits", hits}, {"downloaded_bytes", downloaded_bytes}};
  j["stages"] = {
      {"download", {{"seconds", dl_wall}, {"bytes", downloaded_bytes}, {"sum_seconds", dl_sum}}},
      {"fetch_extract", {{"seconds", fx_wall}}},
      {"extract", {{"seconds", fx_wall}, {"sum_seconds", ex_sum}}},
      {"link", {{"seconds", link_wall}, {"sum_seconds", link_sum}, {"mode", link_mode}}}};
  return j;
}

int finish(const InstallOptions& opts, const LockFile* lock, const std::vector<PkgState>& states,
           int exit_code, Clock::time_point t0, double dl_wall, double fx_wall, double link_wall,
           int64_t dl_bytes, const std::string& link_mode) {
  if (!opts.report_path.empty()) {
    auto j = make_report(opts, lock, states, exit_code, seconds_since(t0), dl_wall, fx_wall,
                         link_wall, dl_bytes, link_mode);
    Status st = write_file_atomic(opts.report_path, dump_json(j, 2) + "\n");
    if (!st.ok()) {
      std::fprintf(stderr, "warning: could not write report: %s\n",
                   clip_message(st.to_string()).c_str());
    }
  }
  return exit_code;
}

// What an interrupted run leaves (README "Interrupted runs"), and the command that resumes it:
// the same one (the cache keeps what was completed; a touched prefix stays marked incomplete).
std::string interrupt_note(const InstallOptions& opts, bool prefix_touched) {
  std::string again = "; run the same command again to finish: " + opts.command_line;
  if (opts.prefix.empty()) return "the cache keeps every package completed so far" + again;
  if (!prefix_touched) {
    return "the prefix " + opts.prefix +
           " was not touched; packages completed so far stay cached" + again;
  }
  return "the prefix " + opts.prefix + " is incomplete (marked by " + kIncompleteMarkerPath +
         ", so no later run takes it for materialized)" + again;
}

int report_interrupt(const InstallOptions& opts, bool prefix_touched) {
  std::fprintf(stderr, "interrupted (%s): %s\n", interrupt_name(),
               interrupt_note(opts, prefix_touched).c_str());
  return interrupt_exit_code();
}

}  // namespace

std::string default_cache_dir() {
  if (const char* d = std::getenv("MATERIALIZER_CACHE_DIR"); d && *d) return d;
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return path_join(x, "materializer");
  const char* home = std::getenv("HOME");
  return path_join(path_join(home && *home ? home : "/tmp", ".cache"), "materializer");
}

int run_install(const InstallOptions& in) {
  auto t0 = Clock::now();
  InstallOptions opts = in;
  opts.cache_dir = absolute_path(opts.cache_dir.empty() ? default_cache_dir() : opts.cache_dir);
  if (!opts.prefix.empty()) opts.prefix = absolute_path(opts.prefix);
  const bool installing = !opts.prefix.empty();
  std::vector<PkgState> no_states;
  Trace trace(!opts.trace_path.empty());
  // Written however the run ends, so a failed run can be looked at too.
  struct TraceWriter {
    const Trace& trace;
    const std::string& path;
    ~TraceWriter() {
      if (!trace.enabled()) return;
      Status st = trace.write(path);
      if (!st.ok()) {
        std::fprintf(stderr, "warning: trace: %s\n", clip_message(st.to_string()).c_str());
      }
    }
  } trace_writer{trace, opts.trace_path};

  // Stage 0: the lock, and the no-op fast path: a prefix already materialized from the same
  // input is left alone after a few stats (no parsing, no cache, no per-file work).
  auto lock_bytes = read_lock_bytes(opts.lock_path, opts.max_lock_bytes);
  if (!lock_bytes.ok()) {
    std::fprintf(stderr, "error: %s\n", clip_message(lock_bytes.status().message()).c_str());
    return finish(opts, nullptr, no_states, 2, t0, 0, 0, 0, 0, "");
  }
  auto local_files = LocalFiles::make(opts.lock_path, opts.allow_file_urls);
  if (!local_files.ok()) {
    std::fprintf(stderr, "error: %s\n", clip_message(local_files.status().message()).c_str());
    return finish(opts, nullptr, no_states, 2, t0, 0, 0, 0, 0, "");
  }
  opts.selection.max_bytes = opts.max_lock_bytes;
  opts.selection.local_files = &*local_files;
  const std::string input_hash = install_input_hash(*lock_bytes, opts);
  if (installing && !opts.force && !opts.dry_run && stamp_matches(opts.prefix, input_hash)) {
    if (opts.verbosity > 0) {
      std::fprintf(stderr,
                   "%s is already materialized from this lock: nothing to do (%.3f s; "
                   "--force reinstalls)\n",
                   opts.prefix.c_str(), seconds_since(t0));
    }
    return finish(opts, nullptr, no_states, 0, t0, 0, 0, 0, 0, "noop");
  }
  auto lock = parse_lock(*lock_bytes, opts.lock_path, opts.selection);
  std::string().swap(*lock_bytes);  // up to --max-lock-size, not needed any more
  if (!lock.ok()) {
    std::fprintf(stderr, "error: %s\n", clip_message(lock.status().message()).c_str());
    return finish(opts, nullptr, no_states, 2, t0, 0, 0, 0, 0, "");
  }
  // Every local file the run could read (file:// URLs, local paths, index and find-links
  // folders), checked against --allow-file-urls before anything is read or requested.
  if (Status local = check_local_sources(*lock, opts, *local_files); !local.ok()) {
    std::fprintf(stderr, "error: %s\n", clip_message(local.message()).c_str());
    return finish(opts, &*lock, no_states, 2, t0, 0, 0, 0, 0, "");
  }
  // The cache before anything is fetched (index pages included): one that another user could
  // change is refused with exit 2, each directory named with its fix (README "Permission
  // model"); other failures to open it are exit 1, except for --dry-run, which then only
  // cannot tell cache hits.
  // Writes into the cache and the prefix stop at the next block once SIGINT/SIGTERM arrived.
  InterruptibleFs fs(posix_fs());
  set_interrupt_note(interrupt_note(opts, false));
  cache::StoreOptions store_options;
  store_options.limits = opts.extract_limits;
  auto store = cache::Store::open(opts.cache_dir, fs, store_options);
  const bool plan_without_cache =
      !store.ok() && opts.dry_run && store.status().code() != Code::kInvalidInput;
  if (!store.ok() && !plan_without_cache) {
    std::fprintf(stderr, "error: cache %s: %s\n", opts.cache_dir.c_str(),
                 clip_message(store.status().to_string()).c_str());
    int code = store.status().code() == Code::kInvalidInput ? 2 : 1;
    return finish(opts, &*lock, no_states, code, t0, 0, 0, 0, 0, "");
  }
  // Stage 0b: PyPI entries become one wheel each for the target interpreter (or a clear
  // refusal) before anything is downloaded.
  PypiPlanOptions po;
  po.prefix = opts.prefix;
  po.platform = opts.selection.platform;
  po.python_path = opts.python_path;
  po.python_version = opts.python_version;
  po.cli_index = opts.index;
  po.cli_extra_index_urls = opts.extra_index_urls;
  po.extras = opts.extras;
  po.groups = opts.groups;
  po.ca_bundle = opts.ca_bundle;
  po.offline = opts.offline;
  po.max_downloads = opts.max_downloads;
  po.local_files = &*local_files;
  po.max_connections_per_host = opts.max_connections_per_host;
  po.stall_timeout_s = opts.stall_timeout_s;
  auto pyplan = plan_pypi(*lock, po);
  if (!pyplan.ok()) {
    std::fprintf(stderr, "error: %s\n", clip_message(pyplan.status().message()).c_str());
    int code = pyplan.status().code() == Code::kInvalidInput ? 2 : 1;
    return finish(opts, &*lock, no_states, code, t0, 0, 0, 0, 0, "");
  }
  if (opts.verbosity > 0) {
    for (const auto& n : pyplan->notes) std::fprintf(stderr, "note: %s\n", clip_message(n).c_str());
  }
  // The download plan: conda packages in lock order, then the wheels in lock order. The conda
  // entries move: a lock's entries are its biggest structure (~800 bytes each), and only the
  // python version is read from them later.
  const std::string lock_python = python_version_of(*lock, opts.python_version);
  std::vector<PackageRef> plan;
  for (auto& p : lock->packages) {
    if (p.kind == PackageKind::kConda) plan.push_back(std::move(p));
  }
  const size_t n_conda = plan.size();
  for (auto& w : pyplan->wheels) plan.push_back(std::move(w));
  Status selected = check_selection(*lock, plan, n_conda, opts.selection, pyplan->notes.size());
  if (!selected.ok()) {
    std::fprintf(stderr, "error: %s\n", clip_message(selected.message()).c_str());
    return finish(opts, &*lock, no_states, 2, t0, 0, 0, 0, 0, "");
  }
  if (opts.dry_run) {
    print_plan(plan, store.ok() ? store->get() : nullptr,
               pyplan->target ? &*pyplan->target : nullptr);
    return finish(opts, &*lock, no_states, 0, t0, 0, 0, 0, 0, "");
  }

  int jobs = opts.jobs > 0 ? opts.jobs : static_cast<int>(std::thread::hardware_concurrency());
  jobs = std::max(1, jobs);
  // jobs workers for the arena, plus the main thread that mostly waits (it joins the arena only
  // for the link stage).
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism,
                         static_cast<size_t>(jobs) + 1);
  tbb::task_arena arena(jobs, 0);

  // Temp files of processes that died (killed mid-download) are garbage; live ones are kept.
  (*store)->clean(/*all=*/false).ignore();
  // An interrupt's hard stop exits without the destructors that remove this run's temp files.
  InterruptHook cache_temps({}, [&store] { (*store)->remove_own_temp_files(); });
  if (interrupted()) return finish(opts, &*lock, no_states, report_interrupt(opts, false), t0, 0, 0, 0, 0, "");

  Progress progress(opts.verbosity, ::isatty(STDERR_FILENO) != 0);
  progress.start();
  Pipeline pipe(opts, plan, **store, progress, arena, trace);
  auto t_fx = Clock::now();
  Status st = pipe.fetch_and_extract();
  trace.add("fetch + verify + extract", "stage", t_fx, Clock::now(), Trace::kMainLane);
  auto& states = pipe.states();
  if (pipe.legacy_entries > 0) {
    progress.line("note: " + std::to_string(pipe.legacy_entries) +
                  " cache entries made by an older materializer were extracted afresh (once; "
                  "README \"Permission model\")");
  }
  if (interrupted()) {
    progress.stop();
    return finish(opts, &*lock, states, report_interrupt(opts, false), t0, pipe.download_wall,
                  pipe.fetch_extract_wall, 0, pipe.downloaded_bytes, "");
  }
  if (!st.ok()) {
    progress.stop();
    std::fprintf(stderr, "error: %s\n", clip_message(st.to_string()).c_str());
    return finish(opts, &*lock, states, 1, t0, pipe.download_wall, pipe.fetch_extract_wall, 0,
                  pipe.downloaded_bytes, "");
  }
  size_t failed = 0, hits = 0;
  for (const auto& s : states) {
    failed += s.status.ok() ? 0 : 1;
    hits += s.cache_hit ? 1 : 0;
  }
  progress.stop();
  progress.line("fetch+extract: " + std::to_string(states.size()) + " packages (" +
                std::to_string(hits) + " cached, " + human_bytes(pipe.downloaded_bytes) +
                " downloaded) in " + std::to_string(pipe.fetch_extract_wall).substr(0, 5) + " s");
  if (failed > 0) {
    print_failures(states, states.size());
    std::fprintf(stderr, "%s\n",
                 installing ? "The prefix was not touched. Every package that did verify is "
                              "cached: fix the failures above and rerun the same command."
                            : "Every package that did verify is cached: fix the failures above "
                              "and rerun the same command.");
    return finish(opts, &*lock, states, 1, t0, pipe.download_wall, pipe.fetch_extract_wall, 0,
                  pipe.downloaded_bytes, "");
  }
  if (!installing) {
    progress.line("prewarmed " + std::to_string(states.size()) + " packages into " +
                  opts.cache_dir);
    return finish(opts, &*lock, states, 0, t0, pipe.download_wall, pipe.fetch_extract_wall, 0,
                  pipe.downloaded_bytes, "");
  }

  // Stage 2: link the conda packages into the prefix.
  std::vector<LinkInput> inputs(n_conda);
  for (size_t i = 0; i < n_conda; ++i) {
    inputs[i].ref = states[i].ref;
    inputs[i].tree = states[i].tree;
    inputs[i].archive_path = states[i].archive_path;
    inputs[i].archive_size = states[i].bytes;
  }
  LinkOptions lo;
  lo.prefix = opts.prefix;
  lo.cache_root = opts.cache_dir;
  lo.mode = opts.link_mode;
  lo.python_version = lock_python;
  if (lo.python_version.empty() && pyplan->target) lo.python_version = pyplan->target->version;
  lo.command_line = opts.command_line;
  lo.keep_incomplete_marker = plan.size() > n_conda;  // wheels still to come
  lo.fs = &fs;
  std::vector<std::atomic<int64_t>> last(states.size());
  lo.on_progress = [&](size_t i, int64_t files) {
    int64_t prev = last[i].exchange(files, std::memory_order_relaxed);
    if (files > prev) progress.add_linked(files - prev);
  };
  progress.start();
  auto t_link = Clock::now();
  // From here on the prefix changes: it must not look complete (or like a no-op) until the end.
  Result<Root> root = Root::open(opts.prefix, true, "the prefix");
  Status pre = root.status();
  if (pre.ok()) pre = root->make_dirs("conda-meta");
  // One run at a time changes a prefix; holding the lock, the temp files of runs that were
  // killed are swept (README "Interrupted runs").
  UniqueFd prefix_lock;
  std::optional<InterruptHook> prefix_temps;
  Result<BeneathDir> meta_dir = Status(Code::kInternal, "not opened");
  if (pre.ok()) {
    int swept = 0;
    Result<UniqueFd> locked = lock_prefix(
        *root,
        [&] {
          progress.line("waiting for another materializer run to finish installing into " +
                        opts.prefix);
        },
        &swept);
    pre = locked.status();
    if (locked.ok()) prefix_lock = std::move(locked).value();
    if (pre.ok()) meta_dir = root->dir("conda-meta");
    if (meta_dir.ok()) {
      // The hard stop removes this run's temp files in conda-meta/ (all of them live there).
      int meta_fd = meta_dir->fd.get();
      prefix_temps.emplace(std::function<void()>{}, [meta_fd] {
        sweep_temp_files_at(meta_fd, "conda-meta", ::getpid()).status().ignore();
      });
    }
    set_interrupt_note(interrupt_note(opts, true));
    if (swept > 0) {
      progress.detail("removed " + std::to_string(swept) +
                      " temp file(s) an interrupted run left in " + opts.prefix + "/conda-meta");
    }
  }
  if (pre.ok()) pre = remove_stamp(opts.prefix);
  if (pre.ok()) {
    pre = root->write_file_atomic(
        kIncompleteMarkerPath, "materializer is installing into this prefix\n", 0644, posix_fs());
  }
  if (!pre.ok()) {
    progress.stop();
    std::fprintf(stderr, "error: preparing %s: %s\n", opts.prefix.c_str(),
                 clip_message(pre.to_string()).c_str());
    return finish(opts, &*lock, states, 1, t0, pipe.download_wall, pipe.fetch_extract_wall, 0,
                  pipe.downloaded_bytes, "");
  }
  Result<LinkSummary> summary = Status(Code::kInternal, "link did not run");
  if (n_conda > 0) {
    arena.execute([&] { summary = link_packages(inputs, lo); });
    trace.add("link conda packages", "stage", t_link, Clock::now(), Trace::kMainLane);
    if (summary.ok()) {
      for (const LinkPhase& ph : summary->phases) {
        trace.add(std::string("link: ") + ph.name, "stage", ph.start, ph.end, Trace::kMainLane);
      }
    }
  } else {
    LinkSummary empty;
    empty.complete = true;
    summary = empty;
  }
  // Stage 3: wheels, after the conda python they run on is in place.
  Result<WheelSummary> wsummary = WheelSummary{{}, true, 0};
  if (summary.ok() && summary->complete && plan.size() > n_conda) {
    std::vector<WheelInput> winputs(plan.size() - n_conda);
    for (size_t i = n_conda; i < plan.size(); ++i) {
      winputs[i - n_conda].ref = states[i].ref;
      winputs[i - n_conda].tree = states[i].tree;
    }
    WheelInstallOptions wo;
    wo.prefix = opts.prefix;
    wo.cache_root = opts.cache_dir;
    wo.mode = opts.link_mode;
    wo.target = *pyplan->target;
    wo.compile = opts.compile;
    wo.jobs = jobs;
    wo.fs = &fs;
    auto t_wheels = Clock::now();
    arena.execute([&] { wsummary = install_wheels(winputs, wo); });
    trace.add("install wheels", "stage", t_wheels, Clock::now(), Trace::kMainLane);
  }
  if (summary.ok() && summary->complete && wsummary.ok() && wsummary->complete) {
    // Everything is linked and recorded: only now may the prefix look complete.
    if (Status removed = root->remove(kIncompleteMarkerPath); !removed.ok()) wsummary = removed;
  }
  double link_wall = seconds_since(t_link);
  progress.stop();
  const bool all_linked =
      summary.ok() && summary->complete && wsummary.ok() && wsummary->complete;
  if (interrupted() && !all_linked) {
    return finish(opts, &*lock, states, report_interrupt(opts, true), t0, pipe.download_wall,
                  pipe.fetch_extract_wall, link_wall, pipe.downloaded_bytes, "");
  }
  if (!summary.ok()) {
    std::fprintf(stderr, "error: linking into %s: %s\n", opts.prefix.c_str(),
                 clip_message(summary.status().to_string()).c_str());
    return finish(opts, &*lock, states, 1, t0, pipe.download_wall, pipe.fetch_extract_wall,
                  link_wall, pipe.downloaded_bytes, "");
  }
  if (!wsummary.ok()) {
    std::fprintf(stderr, "error: installing wheels into %s: %s\n", opts.prefix.c_str(),
                 clip_message(wsummary.status().to_string()).c_str());
    return finish(opts, &*lock, states, 1, t0, pipe.download_wall, pipe.fetch_extract_wall,
                  link_wall, pipe.downloaded_bytes, "");
  }
  int64_t files = 0;
  bool wheels_done = true;
  for (size_t i = 0; i < n_conda; ++i) {
    const LinkResult& r = summary->results[i];
    states[i].link_s = r.seconds;
    if (!r.status.ok()) states[i].status = r.status;
    files += r.files;
    for (const auto& w : r.warnings) progress.line("warning: " + label(*states[i].ref) + ": " + w);
  }
  for (size_t i = n_conda; i < plan.size(); ++i) {
    if (wsummary->results.size() != plan.size() - n_conda) {
      wheels_done = false;  // not run: the conda stage failed
      break;
    }
    const WheelResult& r = wsummary->results[i - n_conda];
    states[i].link_s = r.seconds;
    if (!r.status.ok()) states[i].status = r.status;
    files += r.files;
    for (const auto& w : r.warnings) progress.line("warning: " + label(*states[i].ref) + ": " + w);
  }
  std::string mode = link_mode_name(summary->mode_used);
  int exit_code = 0;
  if (!summary->complete || !wheels_done || !wsummary->complete) {
    print_failures(states, states.size());
    if (!summary->history.ok()) {
      std::fprintf(stderr, "error: %s\n", summary->history.to_string().c_str());
    }
    std::fprintf(stderr,
                 "The prefix %s is incomplete (conda-meta/.materializer-incomplete); packages "
                 "without a conda-meta record were not fully linked. Fix the failures above and "
                 "rerun the same command, or delete the prefix.\n",
                 opts.prefix.c_str());
    exit_code = 1;
  } else {
    // The records link_packages wrote (named from validated index.json fields): the lock's
    // own name/version/build never become a path.
    std::vector<std::string> recorded;
    for (size_t i = 0; i < n_conda; ++i) recorded.push_back(summary->results[i].record_file);
    Status stamped = write_stamp(opts.prefix, input_hash, recorded, lock->input_files);
    if (!stamped.ok()) progress.line("warning: no-op stamp not written: " + stamped.to_string());
    progress.line("linked " + std::to_string(files) + " files (" + mode + ") in " +
                  std::to_string(link_wall).substr(0, 5) + " s");
    progress.line("environment ready: " + opts.prefix + " (" +
                  std::to_string(seconds_since(t0)).substr(0, 5) + " s)");
  }
  return finish(opts, &*lock, states, exit_code, t0, pipe.download_wall, pipe.fetch_extract_wall,
                link_wall, pipe.downloaded_bytes, mode);
}

int run_cache_command(const std::string& what, const std::string& cache_dir_in, bool all,
                      bool json, bool repair) {
  std::string cache_dir = absolute_path(cache_dir_in.empty() ? default_cache_dir() : cache_dir_in);
  // `verify` reports directories that fail the permission model among its problems; `stats`
  // and `clean` refuse such a cache, as install does (exit 2).
  cache::StoreOptions so;
  so.report_distrust = what == "verify";
  auto store = cache::Store::open(cache_dir, posix_fs(), so);
  if (!store.ok()) {
    std::fprintf(stderr, "error: cache %s: %s\n", cache_dir.c_str(),
                 clip_message(store.status().to_string()).c_str());
    return store.status().code() == Code::kInvalidInput ? 2 : 1;
  }
  if (what == "stats") {
    auto s = (*store)->stats();
    if (!s.ok()) {
      std::fprintf(stderr, "error: %s\n", clip_message(s.status().to_string()).c_str());
      return 1;
    }
    if (json) {
      nlohmann::json j = {{"cache_dir", cache_dir},
                          {"archives", s->archives},
                          {"archive_bytes", s->archive_bytes},
                          {"trees", s->trees},
                          {"tree_files", s->tree_files},
                          {"tree_bytes", s->tree_bytes},
                          {"tmp_entries", s->tmp_entries}};
      std::printf("%s\n", dump_json(j, 2).c_str());
    } else {
      std::printf(
          "cache:     %s\narchives:  %lld (%s)\ntrees:     %lld (%lld files, %s)\ntmp:       "
          "%lld\n",
          cache_dir.c_str(), static_cast<long long>(s->archives),
          human_bytes(s->archive_bytes).c_str(), static_cast<long long>(s->trees),
          static_cast<long long>(s->tree_files), human_bytes(s->tree_bytes).c_str(),
          static_cast<long long>(s->tmp_entries));
    }
    return 0;
  }
  if (what == "verify") return verify_cache_command(**store, cache_dir, repair);
  if (what == "clean") {
    Status st = (*store)->clean(all);
    if (!st.ok()) {
      std::fprintf(stderr, "error: %s\n", clip_message(st.to_string()).c_str());
      return 1;
    }
    std::printf("cleaned %s%s\n", cache_dir.c_str(), all ? " (all entries)" : " (temp files)");
    return 0;
  }
  std::fprintf(stderr, "error: unknown cache command '%s' (stats, verify, clean)\n", what.c_str());
  return 2;
}

}  // namespace mat
