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

#include <dirent.h>
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

#include "materializer/base/fs.h"
#include "materializer/base/hash.h"
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

void create_directories(const OpContext& ctx, const std::vector<LinkInput>& inputs,
                        std::vector<PackageState>& states) {
  struct PathRef {
    size_t pkg, path;
  };
  std::unordered_map<std::string_view, PathRef> softlinks;
  for (size_t i = 0; i < states.size(); ++i) {
    if (states[i].failed) continue;
    for (size_t j = 0; j < states[i].plan.paths.size(); ++j) {
      const PathEntry& e = states[i].plan.paths[j];
      if (e.type == PathType::kSoftlink && !states[i].skip[j]) softlinks[e.target] = {i, j};
    }
  }
  DirList sorted = collect_directories(states);
  std::vector<Status> results(sorted.size());
  for (size_t begin = 0; begin < sorted.size();) {
    size_t end = begin;
    while (end < sorted.size() && sorted[end].first == sorted[begin].first) ++end;
    tbb::parallel_for(begin, end, [&](size_t k) {
      const std::string& dir = sorted[k].second;
      auto link = softlinks.find(dir);
      if (link == softlinks.end()) {
        results[k] = make_prefix_dir(ctx.prefix_fd, dir);
        return;
      }
      PackageState& s = states[link->second.pkg];
      OpOutcome out;
      results[k] =
          link_path(ctx, inputs[link->second.pkg].tree, s.plan.paths[link->second.path], &out);
      if (results[k].ok()) {
        s.skip[link->second.path] = kLinkedEarly;
        s.files++;
      }
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

void link_all(const std::vector<LinkInput>& inputs, const LinkOptions& opts, const OpContext& ctx,
              std::vector<PackageState>& states) {
  std::vector<Action> actions;
  for (size_t i = 0; i < states.size(); ++i) {
    PackageState& s = states[i];
    if (s.failed) continue;
    s.actions = s.files;  // directories and early symlinks are done already
    for (size_t j = 0; j < s.plan.paths.size(); ++j) {
      if (s.skip[j] || s.plan.paths[j].type == PathType::kDirectory) continue;
      actions.push_back(Action{static_cast<uint32_t>(i), static_cast<uint32_t>(j)});
      s.actions++;
    }
  }
  tbb::parallel_for(
      tbb::blocked_range<size_t>(0, actions.size()), [&](const tbb::blocked_range<size_t>& r) {
        for (size_t k = r.begin(); k != r.end(); ++k) {
          const Action a = actions[k];
          PackageState& s = states[a.pkg];
          if (s.failed.load(std::memory_order_relaxed)) continue;  // its record is lost anyway
          Clock::time_point t0 = Clock::now();
          guarded(s, [&] {
            OpOutcome out;
            Status st = link_path(ctx, inputs[a.pkg].tree, s.plan.paths[a.path], &out);
            if (!st.ok()) return fail(s, st);
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
std::unordered_map<std::string, std::vector<std::string>> existing_records(
    const std::string& meta_dir) {
  std::unordered_map<std::string, std::vector<std::string>> out;
  UniqueFd fd(open(meta_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return out;
  DIR* d = fdopendir(fd.release());
  if (d == nullptr) return out;
  while (struct dirent* ent = readdir(d)) {
    std::string fn = ent->d_name;
    if (fn.size() <= 5 || fn.compare(fn.size() - 5, 5, ".json") != 0) continue;
    std::string stem = fn.substr(0, fn.size() - 5);
    size_t b = stem.rfind('-');
    if (b == std::string::npos || b == 0) continue;
    size_t v = stem.rfind('-', b - 1);
    if (v == std::string::npos || v == 0) continue;
    out[stem.substr(0, v)].push_back(fn);
  }
  closedir(d);
  return out;
}

// Removes records of the same package name but another version/build (the lock replaced it);
// returns their history dist strings.
std::vector<std::string> remove_stale_records(const std::string& meta_dir,
                                              const std::vector<std::string>& files,
                                              const std::string& keep) {
  std::vector<std::string> removed;
  for (const std::string& fn : files) {
    if (fn == keep) continue;
    std::string path = path_join(meta_dir, fn);
    Result<std::string> data = read_file(path);
    nlohmann::json j = data.ok() ? nlohmann::json::parse(*data, nullptr, false) : nlohmann::json();
    if (unlink(path.c_str()) != 0) continue;
    if (!j.is_object()) continue;
    auto str = [&](const char* k) { return j.value(k, std::string()); };
    removed.push_back(
        history_dist(str("channel"), str("subdir"), str("name"), str("version"), str("build")));
  }
  return removed;
}

struct RecordOutcome {
  std::vector<std::string> added, removed;
};

// Records are built and written in parallel (JSON of every path, then write + fsync + rename);
// the bookkeeping of replaced records and history runs after, in lock order.
RecordOutcome write_records(const std::vector<LinkInput>& inputs, const LinkOptions& opts,
                            LinkMode mode, std::vector<PackageState>& states) {
  RecordOutcome out;
  std::string meta_dir = path_join(opts.prefix, "conda-meta");
  auto existing = existing_records(meta_dir);
  Fs& fs = opts.fs ? *opts.fs : posix_fs();
  std::vector<std::string> file_names(states.size());
  tbb::parallel_for(size_t{0}, states.size(), [&](size_t i) {
    PackageState& s = states[i];
    if (s.failed) return;
    Clock::time_point t0 = Clock::now();
    guarded(s, [&] {
      std::string fn = record_file_name(s.plan);
      RecordInput in{&inputs[i], &s.plan, &s.sha256_in_prefix, s.md5, s.sha256, s.size, mode};
      std::string text = prefix_record_text(in);
      Status st = write_file_atomic(path_join(meta_dir, fn), text, 0644, fs);
      if (!st.ok()) return fail(s, st);
      file_names[i] = std::move(fn);
    });
    s.nanos += elapsed_ns(t0);
  });
  for (size_t i = 0; i < states.size(); ++i) {
    PackageState& s = states[i];
    if (s.failed) continue;
    const std::string& fn = file_names[i];
    const std::vector<std::string>& same_name = existing[s.plan.name];
    bool had = std::find(same_name.begin(), same_name.end(), fn) != same_name.end();
    for (std::string& d : remove_stale_records(meta_dir, same_name, fn)) {
      out.removed.push_back(std::move(d));
    }
    if (!had) {
      std::string channel = inputs[i].ref ? inputs[i].ref->channel : "";
      std::string subdir =
          s.plan.subdir.empty() && inputs[i].ref ? inputs[i].ref->subdir : s.plan.subdir;
      out.added.push_back(history_dist(channel, subdir, s.plan.name, s.plan.version, s.plan.build));
    }
  }
  return out;
}

Status append_history(const LinkOptions& opts, const RecordOutcome& rec) {
  std::string path = path_join(opts.prefix, "conda-meta/history");
  std::string entry = history_entry(opts.command_line, rec.removed, rec.added);
  UniqueFd fd(open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (!fd.valid()) return ErrnoStatus(path + ": open", errno);
  Fs& fs = opts.fs ? *opts.fs : posix_fs();
  return fs.write_all(fd.get(), entry.data(), entry.size(), path);
}

// Prefix, conda-meta/ and the incomplete marker; any failure here is run-wide.
Result<UniqueFd> prepare_prefix(const LinkOptions& opts) {
  if (opts.prefix.empty() || opts.prefix[0] != '/') {
    return InvalidInput("prefix '" + opts.prefix + "' is not an absolute path");
  }
  MAT_RETURN_IF_ERROR(make_dirs(path_join(opts.prefix, "conda-meta")));
  UniqueFd fd(open(opts.prefix.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus(opts.prefix + ": open", errno);
  std::string reason = "materializer is linking this prefix (" + opts.command_line +
                       "); if this file remains, the run failed or was interrupted: rerun it\n";
  MAT_RETURN_IF_ERROR(write_file_atomic(path_join(opts.prefix, kIncompleteMarker), reason, 0644,
                                        opts.fs ? *opts.fs : posix_fs()));
  return fd;
}

LinkMode choose_mode(const LinkOptions& opts, const std::vector<LinkInput>& inputs,
                     const std::vector<PackageState>& states, int prefix_fd) {
  if (opts.mode != LinkMode::kAuto) return opts.mode;
  std::string fallback;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (!states[i].failed) {
      fallback = path_join(inputs[i].tree, "info/index.json");
      break;
    }
  }
  std::string probe_dir = opts.cache_root.empty() ? "" : path_join(opts.cache_root, "v1/tmp");
  return probe_link_mode(probe_dir, fallback, prefix_fd);
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
  MAT_ASSIGN_OR_RETURN(UniqueFd prefix_fd, prepare_prefix(opts));
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
  summary.mode_used = choose_mode(opts, inputs, states, prefix_fd.get());
  phase_done("clobbers");
  OpContext ctx;
  ctx.prefix_fd = prefix_fd.get();
  ctx.prefix = opts.prefix;
  ctx.mode = summary.mode_used;
  ctx.forced = opts.mode != LinkMode::kAuto;
  ctx.fs = opts.fs ? opts.fs : &posix_fs();
  create_directories(ctx, inputs, states);  // 3a. directories (parallel per depth)
  phase_done("directories");
  link_all(inputs, opts, ctx, states);  // 3b. files (parallel over all paths)
  phase_done("files");
  RecordOutcome rec = write_records(inputs, opts, summary.mode_used, states);  // 4. records
  MAT_RETURN_IF_ERROR(append_history(opts, rec));
  phase_done("records");

  summary.complete = true;
  std::string failures;
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
  std::string marker = path_join(opts.prefix, kIncompleteMarker);
  if (summary.complete) {
    if (!opts.keep_incomplete_marker && unlink(marker.c_str()) != 0 && errno != ENOENT) {
      return ErrnoStatus(marker + ": remove", errno);
    }
  } else {
    // Best effort: the marker already exists; this only makes it say what went wrong.
    write_file_atomic(marker, "materializer could not link every package:\n" + failures, 0644,
                      *ctx.fs)
        .ignore();
  }
  return summary;
}

}  // namespace mat
