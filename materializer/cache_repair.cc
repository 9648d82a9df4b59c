// `cache verify [--repair]`. See cache_repair.h for the contract.
//
// Locks: entries are locked one at a time, in key order, and a lock is held until that entry is
// repaired (the ones waiting for a download until the end of the batch). Installs take their
// blocking waits in key order too (install.cc, fetch_and_extract), so repair and installs never
// wait on each other in a cycle.
#include "materializer/cache_repair.h"

#include <cstdio>
#include <map>
#include <optional>

#include "materializer/base/fs.h"
#include "materializer/base/url.h"
#include "materializer/wheel.h"

namespace mat {
namespace {

using cache::VerifyProblem;
using Kind = RepairAction::Kind;

// A fetch sink that writes into a cache PendingArchive (install.cc's ArchiveSink without the
// progress line and the streaming reader).
class PendingSink : public fetch::Sink {
 public:
  explicit PendingSink(cache::PendingArchive* p) : p_(p) {}
  Status reset() override { return p_->reset(); }
  Status resume(int64_t offset) override {
    if (p_->bytes() == offset) return Status::Ok();
    return Internal("cannot resume at byte " + std::to_string(offset));
  }
  Status write(const char* data, size_t len) override { return p_->write(data, len); }
  Status finish() override { return p_->finish(); }
  void abort() override { p_->abort(); }

 private:
  cache::PendingArchive* p_;
};

// One entry being repaired; `lock` is held until it is done.
struct Entry {
  cache::Key key;
  FileLock lock;
  bool tree_bad = false;
  std::string url;  // recorded source, when the archive must be fetched
  cache::ArchiveFormat format = cache::ArchiveFormat::kConda;
  std::unique_ptr<cache::PendingArchive> pending;
};

std::string first_problem(const std::vector<VerifyProblem>& ps, VerifyProblem::Part part) {
  for (const auto& p : ps) {
    if (p.part == part) return p.problem;
  }
  return "";
}

class Repairer {
 public:
  explicit Repairer(const cache::Store& store) : store_(store) {}

  std::vector<RepairAction>& actions() { return actions_; }

  // Locks and re-verifies one entry, then repairs what it can without the network; an entry
  // that needs its archive fetched is returned (its lock held) for fetch_all().
  std::optional<Entry> start(const cache::Key& key) {
    Entry e{key, {}, false, "", cache::ArchiveFormat::kConda, nullptr};
    auto lock = store_.lock_entry(key, /*wait=*/true);
    if (!lock.ok()) return fail(key, lock.status());
    e.lock = std::move(lock).value();
    // Verified again under the lock: an install may have replaced it since the scan.
    auto now = store_.verify_entry(key);
    if (!now.ok()) return fail(key, now.status());
    if (now->empty()) {
      act(key, Kind::kFixedMeanwhile, "healthy now (another process replaced it)");
      return std::nullopt;
    }
    const std::string archive_why = first_problem(*now, VerifyProblem::Part::kArchive);
    const std::string tree_why = first_problem(*now, VerifyProblem::Part::kTree);
    e.tree_bad = !tree_why.empty();
    auto archive = store_.any_archive(key);
    if (!archive_why.empty()) {
      if (Status st = store_.remove_archive(key); !st.ok()) return fail(key, st);
    } else if (archive) {
      // The archive's digest was just verified: the tree comes from it, no network needed.
      reextract(key, archive->first, archive->second, "", Kind::kReextracted,
                "extracted afresh from its archive");
      return std::nullopt;
    }
    const std::string why = archive_why.empty() ? tree_why : archive_why;
    auto url = store_.find_source(key);
    std::optional<cache::ArchiveFormat> format;
    if (archive) format = archive->second;
    if (!format && url) format = cache::format_from_name(url_file_name(*url));
    if (!url || !format) {
      drop(key, e.tree_bad, why + "; no download URL is recorded for it");
      return std::nullopt;
    }
    e.url = *url;
    e.format = *format;
    return e;
  }

  // Downloads the archives of `entries` again (in parallel), verifies each against its key,
  // publishes it and extracts the tree where it was damaged.
  Status fetch_all(std::vector<Entry>& entries, const fetch::Options& options) {
    if (entries.empty()) return Status::Ok();
    std::vector<fetch::FetchResult> results(entries.size());
    // Each callback writes its own slot; results are read after finish() joined the loop.
    auto fetcher = fetch::Fetcher::create(
        options, [&](fetch::FetchResult&& r) { results[r.id] = std::move(r); });
    if (!fetcher.ok()) return fetcher.status();
    std::vector<bool> submitted(entries.size(), false);
    for (size_t i = 0; i < entries.size(); ++i) {
      Entry& e = entries[i];
      auto pending = store_.begin_archive(e.key, e.format);
      if (!pending.ok()) {
        results[i].status = pending.status();
        continue;
      }
      e.pending = std::move(pending).value();
      fetch::Request req;
      req.url = e.url;
      req.sink = std::make_unique<PendingSink>(e.pending.get());
      req.want_sha256 = e.key.kind == HashKind::kSha256;
      req.want_md5 = e.key.kind == HashKind::kMd5;
      req.id = i;
      (*fetcher)->submit(std::move(req));
      submitted[i] = true;
    }
    (*fetcher)->finish();
    for (size_t i = 0; i < entries.size(); ++i) {
      Entry& e = entries[i];
      const fetch::FetchResult& r = results[i];
      Status st = r.status;
      const std::string& got = e.key.kind == HashKind::kSha256 ? r.sha256 : r.md5;
      if (st.ok() && submitted[i] && got != e.key.hex) {
        st = HashMismatch(std::string(e.key.kind == HashKind::kSha256 ? "sha256" : "md5") +
                          " mismatch: expected " + e.key.hex + ", got " + got);
      }
      const std::string from = redact_url(e.url);
      Result<std::string> published = st.ok() ? e.pending->publish() : Result<std::string>(st);
      if (!published.ok()) {
        if (e.pending) e.pending->abort();
        drop(e.key, e.tree_bad,
             "fetching it again from " + from + " failed: " + published.status().message());
      } else if (e.tree_bad) {
        reextract(e.key, *published, e.format, url_file_name(e.url), Kind::kRefetched,
                  "fetched again from " + from + ", extracted afresh");
      } else {
        act(e.key, Kind::kRefetched, "archive fetched again from " + from);
      }
      e.pending.reset();
      e.lock.release();
    }
    return Status::Ok();
  }

  void remove_record(const VerifyProblem& p) {
    Status st = store_.remove_record(p.path);
    if (st.ok()) {
      act(p.key, Kind::kRemovedRecord, p.path + " removed (" + p.problem + ")");
    } else {
      act(p.key, Kind::kFailed, st.message());
    }
  }

 private:
  // The tree of `key` afresh from a verified archive. `file_name` (the wheel's, when known)
  // lets a wheel tree be checked as install checks it.
  void reextract(const cache::Key& key, const std::string& archive, cache::ArchiveFormat f,
                 const std::string& file_name, Kind kind, const std::string& what) {
    // extract() keeps a trusted tree that is there: the damaged one goes first.
    Status st = store_.remove_tree(key);
    if (!st.ok()) {
      fail(key, st);
      return;
    }
    cache::ExtractStats stats;
    auto pkg = store_.extract(key, archive, f, &stats);
    st = pkg.status();
    if (st.ok() && f == cache::ArchiveFormat::kWheel && !file_name.empty()) {
      st = check_wheel_tree(*pkg, file_name);
    }
    if (!st.ok()) {
      drop(key, true, "its archive does not extract: " + st.message());
      return;
    }
    act(key, kind, what + " (" + std::to_string(stats.files) + " files)");
  }

  // No way to get the entry back here: remove what is damaged (the whole entry when its tree
  // is; else only the archive, and the intact tree stays in use).
  void drop(const cache::Key& key, bool tree_bad, const std::string& why) {
    Status st = tree_bad ? store_.remove_entry(key) : store_.remove_archive(key);
    if (!st.ok()) {
      fail(key, st);
    } else if (tree_bad) {
      act(key, Kind::kRemoved,
          why + "; removed: the next install that needs it downloads it again");
    } else {
      act(key, Kind::kRemovedArchive,
          why + "; the damaged archive was removed, its tree is intact and stays in use");
    }
  }

  std::optional<Entry> fail(const cache::Key& key, const Status& st) {
    act(key, Kind::kFailed, st.message());
    return std::nullopt;
  }
  void act(const cache::Key& key, Kind kind, std::string detail) {
    act(key.str(), kind, std::move(detail));
  }
  void act(const std::string& key, Kind kind, std::string detail) {
    actions_.push_back(RepairAction{key, kind, std::move(detail)});
  }

  const cache::Store& store_;
  std::vector<RepairAction> actions_;
};

const char* verb(Kind k) {
  switch (k) {
    case Kind::kReextracted:
    case Kind::kRefetched:
      return "repaired";
    case Kind::kRemoved:
    case Kind::kRemovedArchive:
    case Kind::kRemovedRecord:
      return "removed";
    case Kind::kFixedMeanwhile:
      return "ok";
    case Kind::kFailed:
      return "not repaired";
  }
  return "";
}

void print_problems(const std::vector<VerifyProblem>& problems) {
  for (const auto& p : problems) {
    if (p.key.empty()) {
      std::printf("%s: %s\n", p.path.c_str(), p.problem.c_str());
    } else {
      std::printf("%s: %s: %s\n", p.key.c_str(), p.path.c_str(), p.problem.c_str());
    }
  }
}

}  // namespace

Result<std::vector<RepairAction>> repair_cache(const cache::Store& store,
                                               const std::vector<VerifyProblem>& problems,
                                               const fetch::Options& fetch_options) {
  Repairer repairer(store);
  std::map<std::string, cache::Key> keys;  // key order: the lock order (see the top)
  for (const auto& p : problems) {
    if (p.part == VerifyProblem::Part::kMeta) {
      repairer.remove_record(p);
    } else if (p.part != VerifyProblem::Part::kOther) {
      if (auto key = cache::parse_key(p.key)) keys.emplace(p.key, *key);
    }
  }
  std::vector<Entry> to_fetch;
  for (const auto& [name, key] : keys) {
    if (auto e = repairer.start(key)) to_fetch.push_back(std::move(*e));
  }
  MAT_RETURN_IF_ERROR(repairer.fetch_all(to_fetch, fetch_options));
  return std::move(repairer.actions());
}

int verify_cache_command(const cache::Store& store, const std::string& cache_dir, bool repair) {
  auto problems = store.verify();
  if (!problems.ok()) {
    std::fprintf(stderr, "error: %s\n", problems.status().to_string().c_str());
    return 1;
  }
  print_problems(*problems);
  if (problems->empty()) {
    std::printf("cache %s: ok\n", cache_dir.c_str());
    return 0;
  }
  if (!repair) {
    std::fprintf(stderr,
                 "error: %zu problem(s) in %s; repair the damaged entries with `materializer "
                 "cache verify --repair` (fix the permissions named above first)\n",
                 problems->size(), cache_dir.c_str());
    return 1;
  }
  auto actions = repair_cache(store, *problems, fetch::Options{});
  if (!actions.ok()) {
    std::fprintf(stderr, "error: repairing %s: %s\n", cache_dir.c_str(),
                 actions.status().to_string().c_str());
    return 1;
  }
  int repaired = 0, removed = 0;
  for (const auto& a : *actions) {
    std::printf("%s %s: %s\n", verb(a.kind), a.key.c_str(), a.detail.c_str());
    repaired += a.kind == Kind::kReextracted || a.kind == Kind::kRefetched;
    removed += a.kind == Kind::kRemoved || a.kind == Kind::kRemovedArchive ||
               a.kind == Kind::kRemovedRecord;
  }
  auto after = store.verify();
  if (!after.ok()) {
    std::fprintf(stderr, "error: %s\n", after.status().to_string().c_str());
    return 1;
  }
  if (after->empty()) {
    std::printf("cache %s: ok (%d repaired, %d removed)\n", cache_dir.c_str(), repaired,
                removed);
    return 0;
  }
  std::printf("still wrong after the repair:\n");
  print_problems(*after);
  std::fprintf(stderr,
               "error: %zu problem(s) remain in %s: fix the permissions or remove the files "
               "named above, then run `materializer cache verify --repair` again\n",
               after->size(), cache_dir.c_str());
  return 1;
}

}  // namespace mat
