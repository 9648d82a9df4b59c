// trace: a Chrome trace-event timeline of one run (--trace FILE.json), so a user *sees* where
// startup time goes: one lane per worker thread (extract per package), one for the committer
// (fsync + rename) and one per concurrent download. Opens in Perfetto (ui.perfetto.dev) or
// chrome://tracing.
//
// Thread-safe: add() may be called from any thread (a mutex guards the event list; a run has a
// few events per package, so contention is irrelevant). Disabled traces cost one branch.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "materializer/base/status.h"

namespace mat {

class Trace {
 public:
  using Clock = std::chrono::steady_clock;

  explicit Trace(bool enabled) : enabled_(enabled), t0_(Clock::now()) {}

  bool enabled() const { return enabled_; }

  // A complete span [start, end) on lane `tid` ("ph": "X").
  void add(const std::string& name, const char* category, Clock::time_point start,
           Clock::time_point end, int64_t tid);
  // Download spans overlap in time; each gets the first free "download k" lane.
  void add_download(const std::string& name, Clock::time_point start, Clock::time_point end);

  // Lane of the calling thread: the TBB worker slot (0..jobs), or kMainLane.
  static int64_t worker_lane();
  static constexpr int64_t kMainLane = 0;
  // The install's committer thread (fsync + rename of archives and trees).
  static constexpr int64_t kStreamLane = 998;  // extraction while downloading
  static constexpr int64_t kCommitLane = 999;
  static constexpr int64_t kDownloadLaneBase = 1000;

  // Writes {"traceEvents": [...]} with lane names. Errors: kIo, kNoSpace.
  Status write(const std::string& path) const;

 private:
  struct Event {
    std::string name;
    const char* category;
    int64_t ts_us, dur_us, tid;
  };
  bool enabled_;
  Clock::time_point t0_;
  mutable std::mutex mu_;  // guards events_ and download_lane_end_
  std::vector<Event> events_;
  std::vector<int64_t> download_lane_end_;  // per download lane: end of its last span (us)
};

}  // namespace mat
