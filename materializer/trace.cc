#include "materializer/trace.h"

#include <tbb/task_arena.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

#include "materializer/base/fs.h"
#include "materializer/base/json.h"

namespace mat {

namespace {
int64_t us_between(Trace::Clock::time_point a, Trace::Clock::time_point b) {
  return std::chrono::duration_cast<std::chrono::microseconds>(b - a).count();
}
}  // namespace

int64_t Trace::worker_lane() {
  int slot = tbb::this_task_arena::current_thread_index();
  return slot == tbb::task_arena::not_initialized ? kMainLane : 1 + slot;
}

void Trace::add(const std::string& name, const char* category, Clock::time_point start,
                Clock::time_point end, int64_t tid) {
  if (!enabled_) return;
  Event e{name, category, us_between(t0_, start), std::max<int64_t>(1, us_between(start, end)),
          tid};
  std::lock_guard<std::mutex> lock(mu_);
  events_.push_back(std::move(e));
}

void Trace::add_download(const std::string& name, Clock::time_point start, Clock::time_point end) {
  if (!enabled_) return;
  int64_t s = us_between(t0_, start), e = us_between(t0_, end);
  std::lock_guard<std::mutex> lock(mu_);
  // Completions arrive roughly in end order, not start order; first-fit on lane end times
  // still never overlaps two spans on one lane.
  size_t lane = 0;
  while (lane < download_lane_end_.size() && download_lane_end_[lane] > s) ++lane;
  if (lane == download_lane_end_.size()) download_lane_end_.push_back(0);
  download_lane_end_[lane] = std::max(download_lane_end_[lane], e);
  events_.push_back(Event{name, "download", s, std::max<int64_t>(1, e - s),
                          kDownloadLaneBase + static_cast<int64_t>(lane)});
}

Status Trace::write(const std::string& path) const {
  nlohmann::json events = nlohmann::json::array();
  std::set<int64_t> lanes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const Event& e : events_) {
      events.push_back({{"name", e.name},
                        {"cat", e.category},
                        {"ph", "X"},
                        {"ts", e.ts_us},
                        {"dur", e.dur_us},
                        {"pid", 1},
                        {"tid", e.tid}});
      lanes.insert(e.tid);
    }
  }
  events.push_back(
      {{"name", "process_name"}, {"ph", "M"}, {"pid", 1}, {"args", {{"name", "materializer"}}}});
  for (int64_t tid : lanes) {
    std::string name = tid == kMainLane     ? "main"
                       : tid == kCommitLane ? "commit (fsync, rename)"
                       : tid == kStreamLane ? "stream (extract while downloading)"
                       : tid >= kDownloadLaneBase
                           ? "download " + std::to_string(tid - kDownloadLaneBase)
                           : "worker " + std::to_string(tid - 1);
    events.push_back({{"name", "thread_name"},
                      {"ph", "M"},
                      {"pid", 1},
                      {"tid", tid},
                      {"args", {{"name", name}}}});
    events.push_back({{"name", "thread_sort_index"},
                      {"ph", "M"},
                      {"pid", 1},
                      {"tid", tid},
                      {"args", {{"sort_index", tid}}}});
  }
  nlohmann::json doc = {{"traceEvents", std::move(events)}, {"displayTimeUnit", "ms"}};
  return write_file_atomic(path, dump_json(doc) + "\n");
}

}  // namespace mat
