#include "materializer/pypi_plan.h"

#include <dirent.h>

#include <algorithm>
#include <cstring>

#include "materializer/base/fs.h"
#include "materializer/base/url.h"
#include "materializer/pypi_index.h"

namespace mat {
namespace {

std::string xy_of(const std::string& version) {
  size_t a = version.find('.');
  if (a == std::string::npos) return version;
  size_t b = version.find('.', a + 1);
  return version.substr(0, b);
}

// The version of a conda python already installed in the prefix, from its conda-meta record
// file name ("python-3.11.7-h...json"), or "".
std::string installed_python_version(const std::string& prefix) {
  if (prefix.empty()) return "";
  std::string meta = path_join(prefix, "conda-meta");
  DIR* d = ::opendir(meta.c_str());
  if (!d) return "";
  std::string found;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n.size() > 12 && n.compare(0, 7, "python-") == 0 && isdigit(n[7]) &&
        n.compare(n.size() - 5, 5, ".json") == 0) {
      auto parsed = parse_conda_file_name(n.substr(0, n.size() - 5) + ".conda");
      if (parsed && parsed->name == "python") found = parsed->version;
    }
  }
  ::closedir(d);
  return found;
}

Result<pypi::TargetPython> choose_target(const LockFile& lock, const PypiPlanOptions& o) {
  if (!o.python_path.empty()) {
    auto t = pypi::probe_interpreter(o.python_path);
    if (!t.ok()) return t.status().with_context("--python " + o.python_path);
    return t;
  }
  std::string full;
  for (const auto& p : lock.packages) {
    if (p.kind == PackageKind::kConda && p.name == "python") full = p.version;
  }
  if (full.empty()) full = installed_python_version(o.prefix);
  std::string xy = full.empty() ? o.python_version : xy_of(full);
  if (!o.python_version.empty()) xy = o.python_version;  // explicit flag wins for X.Y
  if (xy.empty()) {
    return InvalidInput(
        lock.path +
        ": PyPI packages need a target interpreter, and the lock has no conda python and the "
        "prefix has none installed: pass --python PATH or --python-version X.Y");
  }
  if (full.empty() || xy_of(full) != xy) full = "";
  std::string exe = o.prefix.empty() ? "" : path_join(o.prefix, "bin/python" + xy);
  return pypi::make_target(xy, full, o.platform, exe);
}

std::string first_tags(const pypi::TargetPython& t, size_t n) {
  std::string s;
  for (size_t i = 0; i < t.tags.size() && i < n; ++i) s += (i ? ", " : "") + t.tags[i];
  if (t.tags.size() > n) s += ", ...";
  return s;
}

std::string entry(const PackageRef& r) {
  std::string s = r.name + (r.version.empty() ? "" : "==" + r.version);
  if (r.line > 0) s += " (line " + std::to_string(r.line) + ")";
  return s;
}

}  // namespace

Result<PypiPlan> plan_pypi(const LockFile& lock, const PypiPlanOptions& o) {
  PypiPlan plan;
  std::vector<const PackageRef*> pypi_refs;
  for (const auto& p : lock.packages) {
    if (p.kind == PackageKind::kPypi) pypi_refs.push_back(&p);
  }
  if (pypi_refs.empty()) return plan;
  MAT_ASSIGN_OR_RETURN(pypi::TargetPython target, choose_target(lock, o));

  std::vector<std::string> refused;   // sdists and non-archive sources
  std::vector<std::string> unfit;     // no compatible wheel
  std::vector<PackageRef> need_index;
  std::vector<size_t> need_index_pos;
  std::vector<std::pair<size_t, PackageRef>> ready;  // (position in pypi_refs, resolved ref)
  const std::vector<std::string>& groups = o.groups.empty() ? lock.default_groups : o.groups;
  for (size_t pos = 0; pos < pypi_refs.size(); ++pos) {
    PackageRef r = *pypi_refs[pos];
    if (!r.marker.empty()) {
      auto m = pypi::evaluate_marker(r.marker, target, o.extras, groups);
      if (!m.ok()) return m.status().with_context(lock.path + ": " + entry(r));
      if (!*m) {
        plan.notes.push_back(entry(r) + ": skipped, marker '" + r.marker + "' is false for " +
                             target.implementation + " " + target.version + " on " +
                             target.platform);
        continue;
      }
    }
    if (r.source_kind == "virtual" || r.source_kind == "editable") {
      plan.notes.push_back(entry(r) + ": skipped, it is the locked project itself (" +
                           r.source_kind + "); materializer installs its locked dependencies");
      continue;
    }
    if (!r.source_kind.empty()) {
      refused.push_back(entry(r) + ": a " + r.source_kind + " source (" + shown_url(r.url, 200) +
                        "), not a wheel");
      continue;
    }
    if (!r.requires_python.empty()) {
      std::string v = target.full_version.empty() ? target.version : target.full_version;
      auto ok = pypi::version_satisfies(v, r.requires_python);
      if (ok.ok() && !*ok) {
        unfit.push_back(entry(r) + ": requires-python '" + r.requires_python + "' excludes " +
                        v);
        continue;
      }
    }
    if (r.needs_index) {
      need_index.push_back(std::move(r));
      need_index_pos.push_back(pos);
      continue;
    }
    if (!r.wheels.empty()) {
      auto w = pypi::pick_wheel(r.wheels, target);
      if (!w) {
        if (!r.sdists.empty()) {
          refused.push_back(entry(r) + ": only a source distribution fits (" +
                            r.sdists.front().file_name + ")");
        } else {
          std::string files;
          for (const auto& c : r.wheels) files += (files.empty() ? "" : ", ") + c.file_name;
          unfit.push_back(entry(r) + ": no wheel fits " + first_tags(target, 3) +
                          "; files in the lock: " + files);
        }
        continue;
      }
      r.url = w->url;
      r.file_name = w->file_name;
      r.sha256 = w->sha256;
      r.size = w->size;
    } else if (r.url.empty()) {
      if (!r.sdists.empty()) {
        refused.push_back(entry(r) + ": only a source distribution (" +
                          r.sdists.front().file_name + ")");
      } else {
        unfit.push_back(entry(r) + ": the lock names no file for it");
      }
      continue;
    }
    if (r.file_name.empty()) r.file_name = url_file_name(r.url);
    auto wn = pypi::parse_wheel_name(r.file_name);
    if (!wn) {
      refused.push_back(entry(r) + ": " + r.file_name + " is a source distribution, not a wheel");
      continue;
    }
    if (!pypi::wheel_rank(*wn, target)) {
      unfit.push_back(entry(r) + ": " + r.file_name + " does not fit " + first_tags(target, 3));
      continue;
    }
    if (r.sha256.empty()) {
      unfit.push_back(entry(r) + ": no sha256 for " + r.file_name + " in the lock");
      continue;
    }
    ready.emplace_back(pos, std::move(r));
  }

  if (!need_index.empty()) {
    pypi::IndexOptions io;
    const auto& lock_urls = lock.index.index_urls;
    std::string primary = !o.cli_index.index_urls.empty() ? o.cli_index.index_urls.front()
                          : !lock_urls.empty()            ? lock_urls.front()
                                                          : "https://pypi.org/simple";
    io.index_urls.push_back(primary);
    if (!o.cli_extra_index_urls.empty()) {
      for (const auto& u : o.cli_extra_index_urls) io.index_urls.push_back(u);
    } else {
      for (size_t i = 1; i < lock_urls.size(); ++i) io.index_urls.push_back(lock_urls[i]);
    }
    io.find_links = !o.cli_index.find_links.empty() ? o.cli_index.find_links
                                                    : lock.index.find_links;
    io.ca_bundle = o.ca_bundle;
    io.offline = o.offline;
    io.max_parallel = o.max_downloads;
    io.max_host_connections = o.max_connections_per_host;
    io.stall_timeout_s = o.stall_timeout_s;
    io.local_files = o.local_files;
    MAT_ASSIGN_OR_RETURN(std::vector<Status> statuses,
                         pypi::resolve_on_index(need_index, target, io));
    std::string index_failures;
    Code worst = Code::kOk;
    for (size_t i = 0; i < need_index.size(); ++i) {
      PackageRef& r = need_index[i];
      if (!statuses[i].ok()) {
        index_failures += "\n  " + entry(r) + ": " + statuses[i].message();
        if (worst == Code::kOk || statuses[i].code() == Code::kRetryable) {
          worst = statuses[i].code();
        }
        continue;
      }
      if (r.url.empty()) {
        refused.push_back(entry(r) + ": only a source distribution on the index (" +
                          (r.sdists.empty() ? std::string("?") : r.sdists.front().file_name) +
                          ")");
        continue;
      }
      ready.emplace_back(need_index_pos[i], std::move(r));
    }
    if (!index_failures.empty() && refused.empty() && unfit.empty()) {
      return Status(worst == Code::kRetryable ? Code::kRetryable : Code::kNotFound,
                    "package index: no usable file for:" + index_failures);
    }
    if (!index_failures.empty()) unfit.push_back("package index:" + index_failures);
  }

  if (!refused.empty() || !unfit.empty()) {
    std::string msg = lock.path + ": cannot install these PyPI entries; nothing was installed:";
    for (const auto& s : refused) msg += "\n  " + s;
    for (const auto& s : unfit) msg += "\n  " + s;
    if (!refused.empty()) {
      msg += "\n  source distributions and git/path sources are out of scope: lock wheels "
             "(e.g. `uv lock` / `pip-compile` with binary-only indexes)";
    }
    return InvalidInput(msg);
  }
  // Lock order (index-resolved entries were resolved after the others).
  std::stable_sort(ready.begin(), ready.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [pos, r] : ready) plan.wheels.push_back(std::move(r));
  plan.target = std::move(target);
  return plan;
}

}  // namespace mat
