// The wheel install driver: plan → clobber → directories → link → compile → RECORD.
//
// Same shape as the conda link stage (link.cc), for the same reasons: a wheel set is a few to a
// few hundred wheels but up to tens of thousands of files (one torch wheel has ~10k), so the
// file pass runs over a flat (wheel, file) list rather than per wheel, and everything that
// could race in that list — two wheels writing one path, two files creating one directory — is
// settled before it starts. The file operations themselves are the conda linker's
// (link_internal::link_path / write_prefix_file): hardlink from the cache when the bytes are
// unchanged, create with O_EXCL and replace by unlink + create, never write through.
//
// Versus pip 23 (`pip install --no-deps --no-index --prefix P x.whl`), on purpose:
//   - INSTALLER says "materializer"; no direct_url.json (PEP 610) is written: the lock, not a
//     local file, is the origin.
//   - a long or spaced interpreter path in a .data/scripts "#!python" line gets distlib's
//     /bin/sh trampoline (pip's fix_script writes the raw, unusable long shebang).
//   - .pyc files are recorded with sha256 and size (pip writes "path,,"), and only
//     site-packages is compiled (pip also compiles .py files it put in bin/ or data dirs).
//   - unchanged files keep the cache tree's mode (the zip's permission bits | 0400); pip
//     applies 0644/0755 by the zip's executable bit.
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <exception>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "cache/wheel_record.h"
#include "materializer/base/beneath.h"
#include "materializer/base/fs.h"
#include "materializer/link_internal.h"
#include "materializer/wheel.h"
#include "materializer/wheel_internal.h"

extern char** environ;

namespace mat {
namespace {

using namespace wheel_internal;
using link_internal::elapsed_ns;
using link_internal::OpContext;
using link_internal::run_guarded;
using Clock = std::chrono::steady_clock;

constexpr const char* kFallbackPython = "/usr/bin/python3";
// Clobber warnings listed one by one per wheel; the rest are counted. A wheel replacing a
// conda package's copy of itself (numpy from PyPI over numpy from conda-forge) would otherwise
// print thousands of lines.
constexpr size_t kMaxClobberWarnings = 20;

// Per-wheel state shared by the parallel passes. `mu` guards `status`; counters are atomics;
// skip[] slots are written by the serial clobber pass only.
struct WheelState {
  WheelPlan plan;
  std::string label;
  std::vector<char> skip;             // per plan.files: a later wheel writes the target
  std::vector<std::string> replaced;  // targets found in the prefix (plan pass)
  std::vector<std::string> warnings;  // written by serial passes only
  std::vector<cache::RecordRow> pyc_rows;
  std::atomic<bool> failed{false};
  std::atomic<int64_t> files{0}, nanos{0};
  std::mutex mu;
  Status status;  // GUARDED_BY(mu)
};

void fail(WheelState& s, const Status& st) {
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.status.ok()) s.status = st.message().starts_with(s.label) ? st : st.with_context(s.label);
  s.failed = true;
}

template <typename F>
void guarded(WheelState& s, F body) {
  run_guarded(body, [&](const Status& st) { fail(s, st); });
}

// Prefix paths an earlier install of this same *.dist-info recorded: replacing those is a
// reinstall, not a clobber.
std::set<std::string> previously_recorded(const Root& prefix, const WheelPlan& plan) {
  std::set<std::string> out;
  Result<std::string> text = prefix.read_file(plan.lib_dir + "/" + plan.dist_info + "/RECORD");
  if (!text.ok()) return out;
  for (const cache::RecordRow& r : cache::parse_record(*text)) {
    out.insert(lexical_normal(plan.lib_dir + "/" + r.path));
  }
  return out;
}

// Which planned targets already exist in the prefix (before this run writes anything).
void find_existing(const Root& prefix, const std::string& tree, WheelState& s) {
  std::set<std::string> earlier = previously_recorded(prefix, s.plan);
  for (const FileAction& a : s.plan.files) {
    struct stat st;
    if (fstatat(prefix.fd(), a.target.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (earlier.count(a.target)) continue;
    struct stat src;
    if (!a.write() && stat(path_join(tree, a.src).c_str(), &src) == 0 && src.st_ino == st.st_ino &&
        src.st_dev == st.st_dev) {
      continue;  // the same cache file, linked by an earlier run
    }
    s.replaced.push_back(a.target);
  }
}

void plan_all(const std::vector<WheelInput>& inputs, const PlanOptions& popts, const Root& prefix,
              std::vector<WheelState>& states) {
  tbb::parallel_for(size_t{0}, inputs.size(), [&](size_t i) {
    WheelState& s = states[i];
    Clock::time_point t0 = Clock::now();
    s.label = inputs[i].ref && !inputs[i].ref->file_name.empty() ? inputs[i].ref->file_name
                                                                 : inputs[i].tree;
    guarded(s, [&] {
      Result<WheelPlan> plan = plan_wheel(inputs[i], popts);
      if (!plan.ok()) return fail(s, plan.status());
      s.plan = std::move(plan).value();
      s.label = s.plan.label;
      s.skip.assign(s.plan.files.size(), 0);
      find_existing(prefix, inputs[i].tree, s);
    });
    s.nanos += elapsed_ns(t0);
  });
}

// Serial, input order: the last wheel to write a path owns it; the replaced-in-prefix findings
// become warnings here so their order never depends on timing.
void resolve_clobbers(std::vector<WheelState>& states) {
  struct Owner {
    size_t wheel, file;
  };
  std::unordered_map<std::string, Owner> owner;
  for (size_t i = 0; i < states.size(); ++i) {
    WheelState& s = states[i];
    if (s.failed) continue;
    size_t shown = 0, hidden = 0;
    for (const std::string& t : s.replaced) {
      if (shown++ < kMaxClobberWarnings) {
        s.warnings.push_back(t +
                             ": already in the prefix (from a conda package or another "
                             "install); replaced");
      } else {
        ++hidden;
      }
    }
    if (hidden > 0) {
      s.warnings.push_back("... and " + std::to_string(hidden) +
                           " more paths already in the prefix were replaced");
    }
    for (size_t j = 0; j < s.plan.files.size(); ++j) {
      auto [it, inserted] = owner.try_emplace(s.plan.files[j].target, Owner{i, j});
      if (inserted) continue;
      Owner prev = it->second;
      states[prev.wheel].skip[prev.file] = 1;
      if (prev.wheel != i) {
        s.warnings.push_back(s.plan.files[j].target + ": also installed by " +
                             states[prev.wheel].label + "; the later wheel in lock order wins");
      }
      it->second = Owner{i, j};
    }
  }
}

// Parent directories of every target, created parents-first (the set's order: by depth, then
// by path, so siblings are adjacent and share one resolved parent). A failure fails the wheels
// that needed the directory.
void create_directories(const OpContext& ctx, std::vector<WheelState>& states) {
  std::set<std::pair<int, std::string>> dirs;  // (depth, path)
  for (const WheelState& s : states) {
    if (s.failed) continue;
    for (size_t j = 0; j < s.plan.files.size(); ++j) {
      const std::string& t = s.plan.files[j].target;
      for (size_t slash = t.find('/'); slash != std::string::npos; slash = t.find('/', slash + 1)) {
        std::string d = t.substr(0, slash);
        dirs.emplace(static_cast<int>(std::count(d.begin(), d.end(), '/')), d);
      }
    }
  }
  link_internal::DirCache cache(ctx);
  for (const auto& [depth, d] : dirs) {
    Status st = link_internal::make_prefix_dir(ctx, cache, d);
    if (st.ok()) continue;
    for (WheelState& s : states) {
      if (s.failed) continue;
      for (const FileAction& a : s.plan.files) {
        if (a.target.starts_with(d + "/")) {
          fail(s, st);
          break;
        }
      }
    }
  }
}

void link_all(const std::vector<WheelInput>& inputs, const OpContext& ctx,
              std::vector<WheelState>& states) {
  struct Action {
    uint32_t wheel, file;
  };
  // Per wheel, grouped by target directory (stable: tree order within a directory), so
  // consecutive actions share their resolved directories (see link.cc).
  std::vector<std::vector<uint32_t>> order(states.size());
  tbb::parallel_for(size_t{0}, states.size(), [&](size_t i) {
    const WheelState& s = states[i];
    if (s.failed) return;
    for (size_t j = 0; j < s.plan.files.size(); ++j) {
      if (!s.skip[j]) order[i].push_back(static_cast<uint32_t>(j));
    }
    auto dir_of = [&](uint32_t j) { return split_parent(s.plan.files[j].target).first; };
    std::stable_sort(order[i].begin(), order[i].end(),
                     [&](uint32_t a, uint32_t b) { return dir_of(a) < dir_of(b); });
  });
  std::vector<Action> actions;
  for (size_t i = 0; i < states.size(); ++i) {
    for (uint32_t j : order[i]) actions.push_back({static_cast<uint32_t>(i), j});
  }
  link_internal::DirCaches caches(ctx);
  tbb::parallel_for(
      tbb::blocked_range<size_t>(0, actions.size()), [&](const tbb::blocked_range<size_t>& r) {
        link_internal::DirCache& dirs = caches.local();
        for (size_t k = r.begin(); k != r.end(); ++k) {
          WheelState& s = states[actions[k].wheel];
          if (s.failed.load(std::memory_order_relaxed)) continue;
          const FileAction& a = s.plan.files[actions[k].file];
          Clock::time_point t0 = Clock::now();
          guarded(s, [&] {
            Status st;
            if (a.write()) {
              st = link_internal::write_prefix_file(ctx, dirs, a.target, a.data, a.mode);
            } else {
              link_internal::PathEntry e;
              e.path = a.src;
              e.target = a.target;
              link_internal::OpOutcome out;
              st = link_internal::link_path(ctx, dirs, inputs[actions[k].wheel].tree, e, &out);
            }
            if (!st.ok()) return fail(s, st);
            s.files++;
          });
          s.nanos += elapsed_ns(t0);
        }
      });
}

// ---- --compile ----

// Runs argv[0] with stdout+stderr captured; returns (exit status, output).
Result<std::pair<int, std::string>> run_captured(const std::vector<std::string>& args) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return ErrnoStatus("pipe", errno);
  UniqueFd rd(fds[0]), wr(fds[1]);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, wr.get(), 1);
  posix_spawn_file_actions_adddup2(&fa, wr.get(), 2);
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, args[0].c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  wr.reset();
  if (rc != 0) return ErrnoStatus(args[0] + ": run", rc);
  std::string output;
  char buf[4096];
  for (;;) {
    ssize_t n = read(rd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (output.size() < (1 << 20)) output.append(buf, static_cast<size_t>(n));
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return ErrnoStatus(args[0] + ": wait", errno);
  }
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return std::make_pair(code, output);
}

// The .pyc compileall wrote for `py` (prefix-relative), as a RECORD row relative to lib_dir.
std::optional<cache::RecordRow> pyc_row(const std::string& prefix, const std::string& lib_dir,
                                        const std::string& py, const std::string& cache_tag) {
  std::string dir = dir_name(py);
  std::string stem = base_name(py);
  stem.resize(stem.size() - 3);
  std::string pyc = path_join(dir, "__pycache__/" + stem + "." + cache_tag + ".pyc");
  Result<std::string> data = read_file(path_join(prefix, pyc));
  if (!data.ok()) return std::nullopt;  // compileall could not compile it (pip records none)
  return cache::RecordRow{relative_to(pyc, lib_dir), cache::record_hash_of(*data),
                          std::to_string(data->size())};
}

// sys.implementation.cache_tag of `exe`: the target's own ("cpython-311") when it is the
// target interpreter, else asked from the fallback interpreter.
std::string cache_tag_of(const std::string& exe, const pypi::TargetPython& target) {
  if (exe == target.executable && !target.version.empty()) {
    std::string v = target.version;
    v.erase(std::remove(v.begin(), v.end(), '.'), v.end());
    return (target.implementation.empty() ? std::string("cpython") : target.implementation) + "-" +
           v;
  }
  auto r = run_captured({exe, "-c", "import sys; print(sys.implementation.cache_tag)"});
  if (!r.ok() || r->first != 0) return "";
  std::string tag = r->second;
  while (!tag.empty() && (tag.back() == '\n' || tag.back() == '\r')) tag.pop_back();
  return tag;
}

// compileall runs with our privileges and writes <dir>/__pycache__/*.pyc for every directory
// it walks, following a __pycache__ symlink wherever it leads (importlib's _write_atomic makes
// the directory and renames into it). It never descends into a symlinked directory, so its
// writes land in the real directories below site-packages: this walks exactly those and
// refuses a __pycache__ that is anything but a real directory. Such a link can only come from
// a package (chained through another's, it may point out of the prefix). Reads only: one
// getdents per directory, one fstatat per __pycache__ found.
Status check_pycache_dirs(int dir_fd, const std::string& shown, int depth) {
  // Python's recursion limit ends compileall's walk at about this depth as well.
  if (depth > 1000) return Status::Ok();
  MAT_ASSIGN_OR_RETURN(std::vector<std::string> names, list_dir_at(dir_fd, shown));
  for (const std::string& name : names) {
    struct stat st;
    if (fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    std::string sub = shown + "/" + name;
    if (name == "__pycache__") {
      if (!S_ISDIR(st.st_mode)) {
        return Corrupt("--compile: " + sub + " is not a directory (a symlink or file from a " +
                       "package): python would write .pyc files through it; remove it, or " +
                       "run without --compile");
      }
      continue;  // compileall does not look inside
    }
    if (!S_ISDIR(st.st_mode)) continue;
    UniqueFd fd(openat(dir_fd, name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd.valid()) return ErrnoStatus(sub + ": open", errno);
    MAT_RETURN_IF_ERROR(check_pycache_dirs(fd.get(), sub, depth + 1));
  }
  return Status::Ok();
}

Status compile_all(const WheelInstallOptions& opts, const Root& prefix,
                   std::vector<WheelState>& states, WheelSummary* summary) {
  std::set<std::string> lib_dirs;
  for (const WheelState& s : states) {
    if (!s.failed) lib_dirs.insert(s.plan.lib_dir);
  }
  if (lib_dirs.empty()) return Status::Ok();
  for (const std::string& d : lib_dirs) {
    // python is handed PREFIX/<d>: it must lead to the directory the wheels were linked into.
    MAT_ASSIGN_OR_RETURN(BeneathDir dir, prefix.dir(d));
    MAT_RETURN_IF_ERROR(check_pycache_dirs(dir.fd.get(), d, 0));
  }
  std::string exe = opts.target.executable;
  if (exe.empty() || access(exe.c_str(), X_OK) != 0) exe = kFallbackPython;
  if (access(exe.c_str(), X_OK) != 0) {
    return NotFound("--compile: no interpreter: '" + opts.target.executable + "' and " +
                    kFallbackPython + " are not executable; install python or drop --compile");
  }
  std::vector<std::string> args = {exe,  "-m", "compileall",
                                   "-q", "-j", std::to_string(std::max(opts.jobs, 0))};
  // -d: the path compiled into the .pyc for tracebacks; one directory here (purelib ==
  // platlib), so it is exactly the directory being compiled, without symlink surprises.
  if (lib_dirs.size() == 1) {
    args.push_back("-d");
    args.push_back(path_join(opts.prefix, *lib_dirs.begin()));
  }
  for (const std::string& d : lib_dirs) args.push_back(path_join(opts.prefix, d));
  Clock::time_point t0 = Clock::now();
  MAT_ASSIGN_OR_RETURN(auto run, run_captured(args));
  if (run.first != 0) {
    std::string out =
        run.second.size() > 2000 ? "..." + run.second.substr(run.second.size() - 2000) : run.second;
    summary->warnings.push_back("compileall exited with status " + std::to_string(run.first) +
                                " (files it could not compile have no .pyc): " + out);
  }
  std::string tag = cache_tag_of(exe, opts.target);
  tbb::parallel_for(size_t{0}, states.size(), [&](size_t i) {
    WheelState& s = states[i];
    if (s.failed || tag.empty()) return;
    guarded(s, [&] {
      for (size_t j = 0; j < s.plan.files.size(); ++j) {
        const std::string& t = s.plan.files[j].target;
        if (!t.ends_with(".py") || !t.starts_with(s.plan.lib_dir + "/")) continue;
        if (auto row = pyc_row(opts.prefix, s.plan.lib_dir, t, tag)) s.pyc_rows.push_back(*row);
      }
    });
  });
  summary->compile_seconds = static_cast<double>(elapsed_ns(t0)) / 1e9;
  return Status::Ok();
}

void write_records(const OpContext& ctx, std::vector<WheelState>& states) {
  link_internal::DirCache dirs(ctx);
  for (WheelState& s : states) {
    if (s.failed) continue;
    Clock::time_point t0 = Clock::now();
    guarded(s, [&] {
      std::string text = cache::format_record(installed_record_rows(s.plan, s.pyc_rows));
      std::string path = s.plan.lib_dir + "/" + s.plan.dist_info + "/RECORD";
      Status st = link_internal::write_prefix_file(ctx, dirs, path, text, 0644);
      if (!st.ok()) return fail(s, st);
      s.files++;
    });
    s.nanos += elapsed_ns(t0);
  }
}

}  // namespace

Result<WheelSummary> install_wheels(const std::vector<WheelInput>& inputs,
                                    const WheelInstallOptions& options) {
  WheelInstallOptions opts = options;
  while (opts.prefix.size() > 1 && opts.prefix.back() == '/') opts.prefix.pop_back();
  if (opts.prefix.empty() || opts.prefix[0] != '/') {
    return InvalidInput("prefix '" + opts.prefix + "' is not an absolute path");
  }
  if (opts.target.version.empty()) {
    return InvalidInput("installing wheels needs the target Python version (X.Y)");
  }
  MAT_ASSIGN_OR_RETURN(Root prefix, Root::open(opts.prefix, true, "the prefix"));
  // conda-meta/ (made by the driver before the conda packages) is never a wheel's to write.
  struct stat meta_st {};
  if (Result<BeneathDir> meta = prefix.dir("conda-meta"); meta.ok()) {
    if (fstat(meta->fd.get(), &meta_st) != 0)
      return ErrnoStatus(opts.prefix + "/conda-meta", errno);
  }

  PlanOptions popts;
  popts.python_version = opts.target.version;
  popts.executable = !opts.target.executable.empty()
                         ? opts.target.executable
                         : path_join(opts.prefix, "bin/python" + opts.target.version);
  std::vector<WheelState> states(inputs.size());
  plan_all(inputs, popts, prefix, states);                        // 1. plan (parallel)
  resolve_clobbers(states);                                       // 2. clobber (serial)

  WheelSummary summary;
  summary.mode_used = opts.mode;
  if (opts.mode == LinkMode::kAuto) {
    std::pair<std::string, std::string> fallback;
    for (size_t i = 0; i < inputs.size() && fallback.first.empty(); ++i) {
      if (!states[i].failed) fallback = {inputs[i].tree, states[i].plan.dist_info + "/RECORD"};
    }
    std::string probe_dir = opts.cache_root.empty() ? "" : path_join(opts.cache_root, "v1/tmp");
    summary.mode_used = link_internal::probe_link_mode(probe_dir, fallback, prefix.fd());
  }
  OpContext ctx;
  ctx.prefix_fd = prefix.fd();
  ctx.prefix = opts.prefix;
  ctx.mode = summary.mode_used;
  ctx.forced = opts.mode != LinkMode::kAuto;
  ctx.fs = opts.fs ? opts.fs : &posix_fs();
  ctx.meta_dev = meta_st.st_dev;
  ctx.meta_ino = meta_st.st_ino;

  create_directories(ctx, states);              // 3a. directories (serial, parents first)
  link_all(inputs, ctx, states);                // 3b. files (parallel over all files)
  if (opts.compile) {                           // 4. compileall (one process, -j workers)
    MAT_RETURN_IF_ERROR(compile_all(opts, prefix, states, &summary));
  }
  write_records(ctx, states);  // 5. RECORD (serial, input order)

  summary.complete = true;
  summary.results.resize(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    WheelResult& r = summary.results[i];
    r.status = states[i].status;
    r.files = states[i].files;
    r.seconds = static_cast<double>(states[i].nanos.load()) / 1e9;
    r.warnings = std::move(states[i].warnings);
    if (!r.status.ok()) summary.complete = false;
  }
  return summary;
}

}  // namespace mat
