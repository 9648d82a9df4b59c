// The link stage driver: plan → clobber → directories → link → records, as listed in link.h.
//
// Why this shape: a typical environment is 100–500 packages and 20k–100k paths, most of them
// small files whose cost is one linkat(). Parallelising over packages would leave cores idle
// behind the one package with 30k files (e.g. a CUDA toolkit), so the link pass runs over a
// flat list of (package, path) actions. Two things would race in that flat list — two packages
// writing one path, and two files creating one parent directory — so both are settled before
// it starts: clobbering is decided serially in lock order, and every directory is created up
// front, parents first. Records and history are written serially in lock order so their
// content never depends on timing.
#include "materializer/link.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "materializer/base/beneath.h"
#include "materializer/base/fs.h"
#include "materializer/base/hash.h"
#include "materializer/base/json.h"
#include "materializer/interrupt.h"
#include "materializer/link_internal.h"

namespace mat {
namespace {

using namespace link_internal;
using Clock = std::chrono::steady_clock;

constexpr const char* kIncompleteMarker = kIncompleteMarkerPath;
// on_progress is called every this many files per package (and at the end): often enough for
// a progress bar, rare enough that the callback's cost is invisible next to linkat().
constexpr int64_t kProgressEvery = 64;

// PackageState::skip values: why the link pass leaves a path alone.
constexpr char kClobbered = 1;    // a later package in lock order writes it
constexpr char kLinkedEarly = 2;  // a symlink used as a parent directory, made with the dirs

// Per-package state shared by the parallel passes. Only `mu` guards `status`; counters are
// atomics; per-path slots (skip, sha256_in_prefix) are written by the one task owning the path.
struct PackageState {
  PackagePlan plan;
  std::string label;
  std::vector<char> skip;                     // kClobbered or kLinkedEarly, else 0
  std::vector<std::string> sha256_in_prefix;  // per plan.paths entry
  std::string md5, sha256;
  int64_t size = -1;
  int64_t actions = 0;                // paths to write in all (progress total)
  std::vector<std::string> warnings;  // written only by serial passes
  std::atomic<bool> failed{false};
  std::atomic<int64_t> files{0}, bytes{0}, replaced{0}, nanos{0}, fallback_copies{0};
  std::mutex mu;
  Status status;  // GUARDED_BY(mu): first failure
};

void fail(PackageState& s, const Status& st) {
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.status.ok()) s.status = st.with_context(s.label);
  s.failed.store(true, std::memory_order_relaxed);
}

template <typename F>
void guarded(PackageState& s, F body) {
  run_guarded(body, [&](const Status& st) { fail(s, st); });
}

std::string ref_label(const LinkInput& in) {
  if (in.ref != nullptr && !in.ref->name.empty()) {
    return in.ref->name + "-" + in.ref->version + "-" + in.ref->build;
  }
  return in.tree;
}

// Archive digests for the record: the lock's when it has them (already verified by fetch),
// else hashed from the cached archive.
void fill_archive_facts(const LinkInput& in, PackageState& s) {
  if (in.ref != nullptr) {
    s.md5 = in.ref->md5;
    s.sha256 = in.ref->sha256;
    s.size = in.ref->size;
  }
  if (in.archive_size >= 0) s.size = in.archive_size;
  if (in.archive_path.empty()) return;
  for (auto [kind, slot] :
       {std::pair{HashKind::kMd5, &s.md5}, std::pair{HashKind::kSha256, &s.sha256}}) {
    if (!slot->empty()) continue;
    Result<std::string> h = hash_file(in.archive_path, kind);
    if (h.ok())
      *slot = *h;
    else
      s.warnings.push_back(in.archive_path +
                           ": cannot hash for conda-meta: " + h.status().message());
  }
  struct stat st;
  if (s.size < 0 && stat(in.archive_path.c_str(), &st) == 0) s.size = st.st_size;
}

void plan_all(const std::vector<LinkInput>& inputs, const LinkOptions& opts,
              std::vector<PackageState>& states) {
  PlanContext ctx{opts.prefix, opts.python_version};
  tbb::parallel_for(size_t{0}, inputs.size(), [&](size_t i) {
    PackageState& s = states[i];
    s.label = ref_label(inputs[i]);
    Clock::time_point t0 = Clock::now();
    guarded(s, [&] {
      Result<PackagePlan> plan = load_package_plan(inputs[i].tree, ctx);
      if (!plan.ok()) return fail(s, plan.status());
      s.plan = std::move(plan).value();
      s.label = s.plan.name + "-" + s.plan.version + "-" + s.plan.build;
      s.skip.assign(s.plan.paths.size(), 0);
      s.sha256_in_prefix.assign(s.plan.paths.size(), "");
      fill_archive_facts(inputs[i], s);
    });
    s.nanos += elapsed_ns(t0);
  });
}

// Serial, lock order: the last package to list a path owns it; earlier ones skip it.
void resolve_clobbers(std::vector<PackageState>& states) {
  struct Owner {
    size_t pkg, path;
  };
  std::unordered_map<std::string_view, Owner> owner;
  for (size_t i = 0; i < states.size(); ++i) {
    PackageState& s = states[i];
    if (s.failed) continue;
    for (size_t j = 0; j < s.plan.paths.size(); ++j) {
      const PathEntry& e = s.plan.paths[j];
      if (e.type == PathType::kDirectory) continue;  // directories are shared, not owned
      auto [it, inserted] = owner.try_emplace(e.target, Owner{i, j});
      if (inserted) continue;
      Owner prev = it->second;
      states[prev.pkg].skip[prev.path] = kClobbered;
      if (prev.pkg != i) {
        s.warnings.push_back(e.target + ": also in " + states[prev.pkg].label +
                             "; the later package in lock order wins");
      }
      it->second = Owner{i, j};
    }
  }
}

// Every directory the link pass needs, parents before children, created level by level (one
// parallel loop per depth) so that no file operation ever has to create or stat a parent.
// A parent that some package ships as a symlink ("lib64 -> lib") is created as that symlink
// here, so files of other packages land where conda would put them (through the link) instead
// of in a real directory that would then block the symlink.
using DirList = std::vector<std::pair<int, std::string>>;  // (depth, path), sorted

// Parents of every path still to be written, plus the packages' explicit (empty) directories.
DirList collect_directories(const std::vector<PackageState>& states) {
  std::unordered_set<std::string> dirs;
  auto add_parents = [&](const std::string& p) {
    for (size_t slash = p.rfind('/'); slash != std::string::npos && slash > 0;
         slash = p.rfind('/', slash - 1)) {
      if (!dirs.insert(p.substr(0, slash)).second) break;  // its parents are in already
    }
  };
  for (const PackageState& s : states) {
    if (s.failed) continue;
    for (size_t j = 0; j < s.plan.paths.size(); ++j) {
      const PathEntry& e = s.plan.paths[j];
      if (s.skip[j]) continue;
      add_parents(e.target);
      if (e.type == PathType::kDirectory) dirs.insert(e.target);
    }
  }
  DirList sorted;
  sorted.reserve(dirs.size());
  for (const std::string& d : dirs) {
    sorted.emplace_back(static_cast<int>(std::count(d.begin(), d.end(), '/')), d);
  }
  std::sort(sorted.begin(), sorted.end());
  return sorted;
}

struct PathRef {
  size_t pkg, path;
};
using Softlinks = std::unordered_map<std::string_view, PathRef>;

// One directory of the list: a plain directory, or the symlink a package ships in its place.
Status create_directory(const OpContext& ctx, DirCache& dirs, const std::vector<LinkInput>& inputs,
                        std::vector<PackageState>& states, const Softlinks& softlinks,
                        const std::string& dir) {
  auto link = softlinks.find(dir);
  if (link == softlinks.end()) return make_prefix_dir(ctx, dirs, dir);
  PackageState& s = states[link->second.pkg];
  OpOutcome out;
  Status st =
      link_path(ctx, dirs, inputs[link->second.pkg].tree, s.plan.paths[link->second.path], &out);
  if (st.ok()) {
    s.skip[link->second.path] = kLinkedEarly;
    s.files++;
  }
  return st;
}

void create_directories(const OpContext& ctx, const std::vector<LinkInput>& inputs,
                        std::vector<PackageState>& states) {
  Softlinks softlinks;
  for (size_t i = 0; i < states.size(); ++i) {
    if (states[i].failed) continue;
    for (size_t j = 0; j < states[i].plan.paths.size(); ++j) {
      const PathEntry& e = states[i].plan.paths[j];
      if (e.type == PathType::kSoftlink && !states[i].skip[j]) softlinks[e.target] = {i, j};
    }
  }
  DirList sorted = collect_directories(states);
  std::vector<Status> results(sorted.size());
  DirCaches caches(ctx);
  for (size_t begin = 0; begin < sorted.size();) {
    size_t end = begin;
    while (end < sorted.size() && sorted[end].first == sorted[begin].first) ++end;
    // Within one depth the list is sorted, so siblings are adjacent: a thread resolves their
    // parent once.
    tbb::parallel_for(begin, end, [&](size_t k) {
      results[k] =
          create_directory(ctx, caches.local(), inputs, states, softlinks, sorted[k].second);
    });
    begin = end;
  }
  std::unordered_map<std::string, Status> failed;
  for (size_t k = 0; k < sorted.size(); ++k) {
    if (!results[k].ok()) failed.emplace(sorted[k].second, results[k]);
  }
  // Explicit (empty) directories are a package's own paths: report their failure there.
  for (PackageState& s : states) {
    if (s.failed) continue;
    for (size_t j = 0; j < s.plan.paths.size(); ++j) {
      const PathEntry& e = s.plan.paths[j];
      if (s.skip[j] || (e.type != PathType::kDirectory && e.type != PathType::kSoftlink)) continue;
      auto it = failed.find(e.target);
      if (it != failed.end())
        fail(s, it->second);
      else if (e.type == PathType::kDirectory)
        s.files++;
    }
  }
}

struct Action {
  uint32_t pkg, path;
};

// The paths of one package still to write, grouped by target directory (stable, so the tree
// order stays within a directory): consecutive actions then share their directory fds.
std::vector<uint32_t> package_actions(const PackageState& s) {
  std::vector<uint32_t> order;
  for (size_t j = 0; j < s.plan.paths.size(); ++j) {
    if (s.skip[j] || s.plan.paths[j].type == PathType::kDirectory) continue;
    order.push_back(static_cast<uint32_t>(j));
  }
  auto dir_of = [&](uint32_t j) { return split_parent(s.plan.paths[j].target).first; };
  std::stable_sort(order.begin(), order.end(),
                   [&](uint32_t a, uint32_t b) { return dir_of(a) < dir_of(b); });
  return order;
}

void link_all(const std::vector<LinkInput>& inputs, const LinkOptions& opts, const OpContext& ctx,
              std::vector<PackageState>& states) {
  std::vector<std::vector<uint32_t>> order(states.size());
  tbb::parallel_for(size_t{0}, states.size(), [&](size_t i) {
    if (!states[i].failed) order[i] = package_actions(states[i]);
  });
  std::vector<Action> actions;
  for (size_t i = 0; i < states.size(); ++i) {
    PackageState& s = states[i];
    if (s.failed) continue;
    s.actions = s.files + static_cast<int64_t>(order[i].size());  // + dirs and early links
    for (uint32_t j : order[i]) actions.push_back(Action{static_cast<uint32_t>(i), j});
  }
  DirCaches caches(ctx);
  tbb::parallel_for(
      tbb::blocked_range<size_t>(0, actions.size()), [&](const tbb::blocked_range<size_t>& r) {
        DirCache& dirs = caches.local();
        for (size_t k = r.begin(); k != r.end(); ++k) {
          const Action a = actions[k];
          PackageState& s = states[a.pkg];
          if (s.failed.load(std::memory_order_relaxed)) continue;  // its record is lost anyway
          // SIGINT/SIGTERM: stop between two files (one relaxed load per file).
          if (interrupted()) {
            fail(s, interrupted_status("linking"));
            continue;
          }
          Clock::time_point t0 = Clock::now();
          guarded(s, [&] {
            OpOutcome out;
            Status st = link_path(ctx, dirs, inputs[a.pkg].tree, s.plan.paths[a.path], &out);
            if (!st.ok()) return fail(s, in_prefix_context(st, ctx.prefix));
            s.sha256_in_prefix[a.path] = std::move(out.sha256_in_prefix);
            s.bytes += out.bytes_copied;
            if (out.replaced) s.replaced++;
            if (out.fallback_copy) s.fallback_copies++;
            int64_t done = ++s.files;
            if (opts.on_progress && (done % kProgressEvery == 0 || done == s.actions)) {
              opts.on_progress(a.pkg, done);
            }
          });
          s.nanos += elapsed_ns(t0);
        }
      });
}

// conda-meta/<name>-*.json files present before this run, by package name. The name is parsed
// from the file name (name-version-build.json: version and build never contain '-').
std::unordered_map<std::string, std::vector<std::string>> existing_records(int meta_fd) {
  std::unordered_map<std::string, std::vector<std::string>> out;
  Result<std::vector<std::string>> names = list_dir_at(meta_fd, "conda-meta");
  if (!names.ok()) return out;
  for (const std::string& fn : *names) {
    if (fn.size() <= 5 || fn.compare(fn.size() - 5, 5, ".json") != 0) continue;
    std::string stem = fn.substr(0, fn.size() - 5);
    size_t b = stem.rfind('-');
    if (b == std::string::npos || b == 0) continue;
    size_t v = stem.rfind('-', b - 1);
    if (v == std::string::npos || v == 0) continue;
    out[stem.substr(0, v)].push_back(fn);
  }
  return out;
}

// Removes records of the same package name but another version/build (the lock replaced it);
// returns their history dist strings.
std::vector<std::string> remove_stale_records(int meta_fd, const std::vector<std::string>& files,
                                              const std::string& keep) {
  std::vector<std::string> removed;
  for (const std::string& fn : files) {
    if (fn == keep) continue;
    Result<std::string> data = read_file_at(meta_fd, fn, "conda-meta/" + fn);
    // Records already in the prefix are input too: bounded, and read without ever throwing (a
    // non-string field once escaped as a JSON exception and lost the run's report).
    Result<nlohmann::json> parsed =
        data.ok() ? parse_json(*data, "conda-meta/" + fn, DocLimits{int64_t{64} << 20}, Code::kCorrupt)
                  : Result<nlohmann::json>(data.status());
    if (unlink_at(meta_fd, fn) != 0) continue;
    if (!parsed.ok() || !parsed->is_object()) continue;
    const nlohmann::json& j = *parsed;
    auto str = [&](const char* k) {
      auto it = j.find(k);
      return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    removed.push_back(
        history_dist(str("channel"), str("subdir"), str("name"), str("version"), str("build")));
  }
  return removed;
}

struct RecordOutcome {
  std::vector<std::string> added, removed;
  // Records that were there before this run: a run killed between its records and its history
  // entry left them unrecorded in history (append_history adds those it lacks).
  std::vector<std::string> kept;
};

// Records are built and written in parallel (JSON of every path, then write + fsync + rename);
// the bookkeeping of replaced records and history runs after, in lock order.
RecordOutcome write_records(const std::vector<LinkInput>& inputs, const LinkOptions& opts,
                            LinkMode mode, int meta_fd, std::vector<PackageState>& states,
                            std::vector<std::string>* file_names) {
  RecordOutcome out;
  auto existing = existing_records(meta_fd);
  Fs& fs = opts.fs ? *opts.fs : posix_fs();
  file_names->assign(states.size(), "");
  tbb::parallel_for(size_t{0}, states.size(), [&](size_t i) {
    PackageState& s = states[i];
    if (s.failed) return;
    Clock::time_point t0 = Clock::now();
    guarded(s, [&] {
      std::string fn = record_file_name(s.plan);
      RecordInput in{&inputs[i], &s.plan, &s.sha256_in_prefix, s.md5, s.sha256, s.size, mode};
      std::string text = prefix_record_text(in);
      // A new inode renamed over the old record: never written through (a record a package
      // smuggled in as a hard link into the cache stays untouched there).
      Status st = write_file_atomic_at(meta_fd, fn, text, 0644, fs,
                                       path_join(opts.prefix, "conda-meta/" + fn));
      if (!st.ok()) return fail(s, st);
      (*file_names)[i] = std::move(fn);
    });
    s.nanos += elapsed_ns(t0);
  });
  for (size_t i = 0; i < states.size(); ++i) {
    PackageState& s = states[i];
    if (s.failed) continue;
    const std::string& fn = (*file_names)[i];
    const std::vector<std::string>& same_name = existing[s.plan.name];
    bool had = std::find(same_name.begin(), same_name.end(), fn) != same_name.end();
    for (std::string& d : remove_stale_records(meta_fd, same_name, fn)) {
      out.removed.push_back(std::move(d));
    }
    std::string channel = inputs[i].ref ? inputs[i].ref->channel : "";
    std::string subdir =
        s.plan.subdir.empty() && inputs[i].ref ? inputs[i].ref->subdir : s.plan.subdir;
    (had ? out.kept : out.added)
        .push_back(history_dist(channel, subdir, s.plan.name, s.plan.version, s.plan.build));
  }
  return out;
}

// conda-meta/history gets this run's entry appended, but not by opening it for writing: the
// old content plus the entry go to a new file renamed over it. An append (O_APPEND) would write
// through whatever inode is there, and a history that is a hard link into the cache (a package
// once shipped one) would carry the write into the cache, where `cache verify` then fails for
// good. The copy costs one read of a file that grows by a few lines per run.
Status append_history(const LinkOptions& opts, int meta_fd, const RecordOutcome& rec) {
  std::string shown = path_join(opts.prefix, "conda-meta/history");
  std::string text;
  Result<std::string> old = read_file_at(meta_fd, "history", shown);
  if (old.ok()) {
    text = std::move(old).value();
    if (!text.empty() && text.back() != '\n') text += '\n';
  } else if (old.status().code() != Code::kNotFound) {
    return old.status();
  }
  // What the history says is installed (its "+" and "-" lines replayed): a kept record it does
  // not list was written by a run killed before its history entry, and is added now, so the
  // history ends as an uninterrupted run's would.
  std::vector<std::string> added = rec.added;
  if (!rec.kept.empty()) {
    std::unordered_set<std::string> installed;
    for (size_t at = 0; at < text.size();) {
      size_t end = text.find('\n', at);
      if (end == std::string::npos) end = text.size();
      std::string_view line(text.data() + at, end - at);
      if (line.size() > 1 && line[0] == '+') installed.emplace(line.substr(1));
      if (line.size() > 1 && line[0] == '-') installed.erase(std::string(line.substr(1)));
      at = end + 1;
    }
    for (const std::string& d : rec.kept) {
      if (!installed.count(d)) added.push_back(d);
    }
  }
  text += history_entry(opts.command_line, rec.removed, added);
  Fs& fs = opts.fs ? *opts.fs : posix_fs();
  return write_file_atomic_at(meta_fd, "history", text, 0644, fs, shown);
}

// Prefix, conda-meta/ and the incomplete marker; any failure here is run-wide.
Result<Root> prepare_prefix(const LinkOptions& opts) {
  if (opts.prefix.empty() || opts.prefix[0] != '/') {
    return InvalidInput("prefix '" + opts.prefix + "' is not an absolute path");
  }
  MAT_ASSIGN_OR_RETURN(Root root, Root::open(opts.prefix, true, "the prefix"));
  MAT_RETURN_IF_ERROR(root.make_dirs("conda-meta"));
  std::string reason = "materializer is linking this prefix (" + opts.command_line +
                       "); if this file remains, the run failed or was interrupted: rerun it\n";
  MAT_RETURN_IF_ERROR(
      root.write_file_atomic(kIncompleteMarker, reason, 0644, opts.fs ? *opts.fs : posix_fs()));
  return root;
}

LinkMode choose_mode(const LinkOptions& opts, const std::vector<LinkInput>& inputs,
                     const std::vector<PackageState>& states, int meta_fd) {
  if (opts.mode != LinkMode::kAuto) return opts.mode;
  std::pair<std::string, std::string> fallback;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!states[i].failed) {
      fallback = {inputs[i].tree, "info/index.json"};
      break;
    }
  }
  std::string probe_dir = opts.cache_root.empty() ? "" : path_join(opts.cache_root, "v1/tmp");
  return probe_link_mode(probe_dir, fallback, meta_fd);
}

}  // namespace

const char* link_mode_name(LinkMode m) {
  switch (m) {
    case LinkMode::kAuto:
      return "auto";
    case LinkMode::kHardlink:
      return "hardlink";
    case LinkMode::kReflink:
      return "reflink";
    case LinkMode::kCopy:
      return "copy";
  }
  return "auto";
}

Result<LinkSummary> link_packages(const std::vector<LinkInput>& inputs,
                                  const LinkOptions& options) {
  LinkOptions opts = options;
  // The prefix is written into files verbatim: "/env/" would become "/env//bin/python".
  while (opts.prefix.size() > 1 && opts.prefix.back() == '/') opts.prefix.pop_back();
  MAT_ASSIGN_OR_RETURN(Root root, prepare_prefix(opts));
  MAT_ASSIGN_OR_RETURN(BeneathDir meta, root.dir("conda-meta"));
  struct stat meta_st;
  if (fstat(meta.fd.get(), &meta_st) != 0) return ErrnoStatus(opts.prefix + "/conda-meta", errno);
  std::vector<PackageState> states(inputs.size());

  LinkSummary summary;
  Clock::time_point mark = Clock::now();
  auto phase_done = [&](const char* name) {
    Clock::time_point now = Clock::now();
    summary.phases.push_back(LinkPhase{name, mark, now});
    mark = now;
  };
  plan_all(inputs, opts, states);  // 1. plan (parallel)
  phase_done("plan");
  resolve_clobbers(states);        // 2. clobber (serial, lock order)
  summary.mode_used = choose_mode(opts, inputs, states, meta.fd.get());
  phase_done("clobbers");
  OpContext ctx;
  ctx.prefix_fd = root.fd();
  ctx.prefix = opts.prefix;
  ctx.mode = summary.mode_used;
  ctx.forced = opts.mode != LinkMode::kAuto;
  ctx.fs = opts.fs ? opts.fs : &posix_fs();
  ctx.meta_dev = meta_st.st_dev;
  ctx.meta_ino = meta_st.st_ino;
  create_directories(ctx, inputs, states);  // 3a. directories (parallel per depth)
  phase_done("directories");
  link_all(inputs, opts, ctx, states);  // 3b. files (parallel over all paths)
  phase_done("files");
  std::vector<std::string> records;
  RecordOutcome rec =
      write_records(inputs, opts, summary.mode_used, meta.fd.get(), states, &records);  // 4.
  // A history that cannot be written does not hide which packages failed (on a full disk,
  // those are what the user needs to see): it is reported beside them.
  summary.history = append_history(opts, meta.fd.get(), rec);
  phase_done("records");

  summary.complete = summary.history.ok();
  std::string failures = summary.history.ok() ? "" : summary.history.to_string() + "\n";
  summary.results.resize(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    PackageState& s = states[i];
    LinkResult& r = summary.results[i];
    r.status = s.status;
    r.files = s.files;
    r.bytes_copied = s.bytes;
    r.prefix_replaced = s.replaced;
    r.seconds = static_cast<double>(s.nanos.load()) / 1e9;
    r.warnings = std::move(s.warnings);
    if (s.status.ok() && !records[i].empty()) r.record_file = "conda-meta/" + records[i];
    if (int64_t n = s.fallback_copies.load(); n > 0) {
      r.warnings.push_back(std::to_string(n) +
                           " file(s) were copied because hard-linking them from the cache "
                           "failed (too many links, or another file system)");
    }
    if (!r.status.ok()) {
      summary.complete = false;
      failures += r.status.to_string() + "\n";
    }
  }
  if (summary.complete) {
    if (!opts.keep_incomplete_marker) MAT_RETURN_IF_ERROR(root.remove(kIncompleteMarker));
  } else {
    // Best effort: the marker already exists; this only makes it say what went wrong.
    root.write_file_atomic(kIncompleteMarker,
                           "materializer could not link every package:\n" + failures, 0644, *ctx.fs)
        .ignore();
  }
  return summary;
}

}  // namespace mat
