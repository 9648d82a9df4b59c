// `materializer cache verify [--repair]`: what verify found, and the per-entry repair
// (README "Cache commands").
//
// Repair works entry by entry, each under its entry lock (a running install that is producing
// the entry finishes first; one that starts meanwhile waits), and re-verifies the entry once it
// holds the lock (another process may have replaced it). Then, by what is damaged:
//   - the tree, with a good archive (its digest verified): the tree is extracted afresh from it;
//   - the archive (or the tree with no archive left): the archive is fetched again from the
//     entry's recorded source (meta/<key>.source: http(s) only, no credentials), verified
//     against the key, published, and the tree extracted from it if it was damaged too;
//   - with no source: the damaged parts are removed (a good tree is kept); the next install
//     that needs the entry downloads it;
//   - a damaged record of meta/ (md5 index, source): removed.
// Entries that are fine are never touched (not even re-read after verify), and neither are
// the good parts of a damaged one.
#pragma once

#include <string>
#include <vector>

#include "cache/store.h"
#include "fetch/fetcher.h"
#include "materializer/base/status.h"

namespace mat {

// What repair did about one entry or record, in key order.
struct RepairAction {
  enum class Kind {
    kReextracted,     // tree extracted afresh from the verified archive
    kRefetched,       // archive downloaded again (and the tree extracted, if it was damaged)
    kRemoved,         // entry removed: the next install fetches it
    kRemovedArchive,  // damaged archive removed; the tree is intact
    kRemovedRecord,   // damaged meta/ record removed
    kFixedMeanwhile,  // healthy once its lock was held: another process replaced it
    kFailed,          // could not be repaired (see detail)
  };
  std::string key;
  Kind kind = Kind::kFailed;
  std::string detail;  // human-readable: what was done and why ("fetched again from URL")
};

// Repairs the entries and records that `problems` (from Store::verify()) name. Problems of
// Part::kOther (directory permissions, stray files) are left for the caller to report.
// Refetches use `fetch_options` (one fetcher for all of them, transfers in parallel).
// Errors only for run-wide failures (the fetcher could not start).
Result<std::vector<RepairAction>> repair_cache(const cache::Store& store,
                                               const std::vector<cache::VerifyProblem>& problems,
                                               const fetch::Options& fetch_options);

// The `cache verify` command: prints the problems (stdout), with `repair` repairs them and
// prints what it did, then verifies again. Returns the exit code: 0 the cache is healthy
// (after the repair), 1 problems remain (each printed with what to do), or a run-wide
// failure.
int verify_cache_command(const cache::Store& store, const std::string& cache_dir, bool repair);

}  // namespace mat
