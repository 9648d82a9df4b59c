// What a wheel installs and where: pip 23's _install_wheel, minus the writing. The cache tree
// holds the wheel's members exactly (already checked against RECORD by cache/extract.cc), so
// planning only reads the *.dist-info metadata and the .data/scripts first lines.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "materializer/base/fs.h"
#include "materializer/base/path_name.h"
#include "materializer/link_internal.h"
#include "materializer/wheel_internal.h"

namespace mat::wheel_internal {
namespace {

constexpr const char* kInstaller = "materializer\n";

Status walk(int dir_fd, const std::string& rel, const std::string& shown,
            std::vector<std::string>* out) {
  int fd = ::dup(dir_fd);
  if (fd < 0) return ErrnoStatus(shown + ": dup", errno);
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    ::close(fd);
    return ErrnoStatus(shown + ": list", errno);
  }
  std::vector<std::pair<std::string, unsigned char>> names;
  while (dirent* e = ::readdir(d)) {
    if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
    names.emplace_back(e->d_name, e->d_type);
  }
  ::closedir(d);
  for (const auto& [name, type] : names) {
    std::string path = rel.empty() ? name : rel + "/" + name;
    struct stat st;
    if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      return ErrnoStatus(shown + "/" + path + ": stat", errno);
    }
    if (S_ISDIR(st.st_mode)) {
      UniqueFd sub(::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!sub.valid()) return ErrnoStatus(shown + "/" + path + ": open", errno);
      MAT_RETURN_IF_ERROR(walk(sub.get(), path, shown, out));
    } else if (S_ISREG(st.st_mode)) {
      out->push_back(path);
    } else {
      return Corrupt(shown + "/" + path + ": not a regular file (wheels hold only files)");
    }
  }
  return Status::Ok();
}

std::string file_name_of(const WheelInput& in) {
  if (in.ref != nullptr && !in.ref->file_name.empty()) return in.ref->file_name;
  if (in.ref != nullptr && !in.ref->url.empty()) {
    std::string u = in.ref->url.substr(0, in.ref->url.find_first_of("?#"));
    return base_name(u);
  }
  return "";
}

// The single top-level *.dist-info directory (the cache guarantees there is exactly one).
Result<std::string> find_dist_info(const std::vector<std::string>& files,
                                   const std::string& label) {
  std::set<std::string> found;
  for (const std::string& f : files) {
    size_t slash = f.find('/');
    if (slash != std::string::npos &&
        std::string_view(f).substr(0, slash).ends_with(".dist-info")) {
      found.insert(f.substr(0, slash));
    }
  }
  if (found.size() != 1) {
    return Corrupt(label + ": expected exactly one top-level *.dist-info directory, found " +
                   std::to_string(found.size()));
  }
  return *found.begin();
}

// METADATA Name/Version against the wheel file name (and WHEEL's Wheel-Version, as pip's
// parse_wheel checks it).
Status check_metadata(const std::string& tree, const std::string& dist_info,
                      const std::string& label, const std::optional<WheelFileName>& fn) {
  MAT_ASSIGN_OR_RETURN(std::string wheel, read_file(path_join(tree, dist_info + "/WHEEL")));
  // pip's check_compatibility: a major version above 1 is refused; 0.x (early bdist_wheel)
  // and 1.x with a newer minor are installed.
  std::optional<std::string> wv = metadata_field(wheel, "Wheel-Version");
  std::string major = wv ? wv->substr(0, wv->find('.')) : "";
  if (major.empty() || major.find_first_not_of("0123456789") != std::string::npos ||
      std::stoll(major.substr(0, 9)) > 1) {
    return Corrupt(label + ": " + dist_info + "/WHEEL: unsupported Wheel-Version '" +
                   wv.value_or("") + "' (materializer installs version 1.x wheels)");
  }
  MAT_ASSIGN_OR_RETURN(std::string meta, read_file(path_join(tree, dist_info + "/METADATA")));
  std::string name = metadata_field(meta, "Name").value_or("");
  std::string version = metadata_field(meta, "Version").value_or("");
  if (name.empty() || version.empty()) {
    return Corrupt(label + ": " + dist_info + "/METADATA lacks a Name or Version field");
  }
  if (!fn) return Status::Ok();
  if (normalize_name(name) != normalize_name(fn->name) ||
      normalize_version(version) != normalize_version(fn->version)) {
    return Corrupt(label + ": METADATA says Name: " + name + ", Version: " + version +
                   " but the file name says Name: " + fn->name + ", Version: " + fn->version +
                   "; the wheel was renamed or is broken: re-lock or rebuild it");
  }
  return Status::Ok();
}

// pip's is_entrypoint_wrapper: EP, EP.exe, EP-script.py and EP.pya made by setuptools.
bool is_entrypoint_wrapper(const std::string& path, const EntryPoints& eps) {
  std::string name = base_name(path);
  std::string low = name;
  for (char& c : low) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::string match = name;
  if (low.ends_with(".exe") || low.ends_with(".pya")) {
    match = name.substr(0, name.size() - 4);
  } else if (low.ends_with("-script.py")) {
    match = name.substr(0, name.size() - 10);
  }
  auto in = [&](const std::vector<EntryPoint>& v) {
    return std::any_of(v.begin(), v.end(), [&](const EntryPoint& e) { return e.name == match; });
  };
  return in(eps.console) || in(eps.gui);
}

// Maps "<x>.data/<scheme>/<sub>" to its target; kCorrupt for pip's InstallationErrors.
Result<std::string> data_target(const std::string& path, const Scheme& s,
                                const std::string& label) {
  size_t a = path.find('/');
  size_t b = path.find('/', a + 1);
  if (b == std::string::npos) {
    return Corrupt(label + ": unexpected file " + path +
                   ": .data directory contents should be named like '<scheme key>/<path>'");
  }
  std::string key = path.substr(a + 1, b - a - 1);
  std::string sub = path.substr(b + 1);
  const std::map<std::string, const std::string*> dirs = {{"purelib", &s.purelib},
                                                          {"platlib", &s.platlib},
                                                          {"headers", &s.headers},
                                                          {"scripts", &s.scripts},
                                                          {"data", &s.data}};
  auto it = dirs.find(key);
  if (it == dirs.end()) {
    return Corrupt(label + ": unknown scheme key '" + key + "' (file " + path +
                   "); .data subdirectories must be data, headers, platlib, purelib or scripts");
  }
  return it->second->empty() ? sub : path_join(*it->second, sub);
}

}  // namespace

Scheme prefix_scheme(const std::string& python_version, const std::string& dist_name) {
  std::string sp = "lib/python" + python_version + "/site-packages";
  return Scheme{sp, sp, "include/python" + python_version + "/" + dist_name, "bin", ""};
}

Result<std::vector<std::string>> list_tree_files(const std::string& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus(dir + ": open", errno);
  std::vector<std::string> out;
  MAT_RETURN_IF_ERROR(walk(fd.get(), "", dir, &out));
  std::sort(out.begin(), out.end());
  return out;
}

Status check_tree(const std::string& tree, const std::string& file_name) {
  std::string label = file_name.empty() ? tree : file_name;
  MAT_ASSIGN_OR_RETURN(std::vector<std::string> files, list_tree_files(tree));
  MAT_ASSIGN_OR_RETURN(std::string dist_info, find_dist_info(files, label));
  return check_metadata(tree, dist_info, label, parse_wheel_file_name(file_name));
}

Result<WheelPlan> plan_wheel(const WheelInput& in, const PlanOptions& opts) {
  WheelPlan plan;
  std::string fname = file_name_of(in);
  plan.label = fname.empty() ? in.tree : fname;
  std::optional<WheelFileName> fn = parse_wheel_file_name(fname);
  if (!fn && in.ref != nullptr && !in.ref->name.empty()) {
    fn = WheelFileName{in.ref->name, in.ref->version};
  }
  MAT_ASSIGN_OR_RETURN(std::vector<std::string> files, list_tree_files(in.tree));
  MAT_ASSIGN_OR_RETURN(plan.dist_info, find_dist_info(files, plan.label));
  MAT_RETURN_IF_ERROR(check_metadata(in.tree, plan.dist_info, plan.label, fn));
  MAT_RETURN_IF_ERROR(check_path_component(plan.dist_info, plan.label + ": *.dist-info directory"));

  // pip's headers directory uses the requirement name: the file name's, '_' read as '-'. The
  // file name comes from the lock or a server: it becomes include/pythonX.Y/<name>/.
  std::string dist_name = fn ? fn->name : plan.dist_info.substr(0, plan.dist_info.find('-'));
  std::replace(dist_name.begin(), dist_name.end(), '_', '-');
  MAT_RETURN_IF_ERROR(check_path_component(dist_name, plan.label + ": wheel name"));
  Scheme scheme = prefix_scheme(opts.python_version, dist_name);
  plan.lib_dir = scheme.purelib;  // Root-Is-Purelib true or false: same directory here

  const std::string di = plan.dist_info + "/";
  MAT_ASSIGN_OR_RETURN(std::string record_text, read_file(path_join(in.tree, di + "RECORD")));
  plan.record = cache::parse_record(record_text);
  EntryPoints eps;
  if (path_exists(path_join(in.tree, di + "entry_points.txt"))) {
    MAT_ASSIGN_OR_RETURN(std::string text, read_file(path_join(in.tree, di + "entry_points.txt")));
    Result<EntryPoints> parsed = parse_entry_points(text);
    if (!parsed.ok()) return parsed.status().with_context(plan.label);
    eps = std::move(parsed).value();
  }

  // Files written below are generated; the tree's copies (if any) must not be linked.
  const std::set<std::string> generated_names = {di + "RECORD", di + "INSTALLER", di + "REQUESTED"};
  std::vector<FileAction> root, data, scripts;
  for (const std::string& f : files) {
    size_t slash = f.find('/');
    bool is_data =
        slash != std::string::npos && std::string_view(f).substr(0, slash).ends_with(".data");
    if (!is_data) {
      if (generated_names.count(f)) continue;
      root.push_back(FileAction{.target = path_join(scheme.purelib, f), .src = f, .record_src = f});
      continue;
    }
    MAT_ASSIGN_OR_RETURN(std::string target, data_target(f, scheme, plan.label));
    size_t b = f.find('/', slash + 1);
    if (f.compare(slash + 1, b - slash - 1, "scripts") != 0) {
      data.push_back(FileAction{.target = target, .src = f, .record_src = f});
      continue;
    }
    if (is_entrypoint_wrapper(f, eps)) continue;
    FileAction a{.target = target, .src = f, .record_src = f};
    MAT_ASSIGN_OR_RETURN(std::string body, read_file(path_join(in.tree, f)));
    if (std::optional<std::string> fixed = fix_script(body, opts.executable)) {
      a.src.clear();
      a.data = std::move(*fixed);
      a.mode = 0755;
      a.changed = true;
    }
    scripts.push_back(std::move(a));
  }
  // pip's order: root-scheme files, other .data schemes, then scripts (a later file wins).
  for (auto* group : {&root, &data, &scripts}) {
    for (FileAction& a : *group) plan.files.push_back(std::move(a));
  }

  plan.generated_begin = plan.files.size();
  // A script name becomes bin/<name>: "../../x", "/tmp/x" or "a/b" must not (pip writes them
  // wherever they lead).
  auto add_script = [&](const EntryPoint& ep, const char* group) -> Status {
    MAT_RETURN_IF_ERROR(check_path_component(
        ep.name, plan.label + ": " + di + "entry_points.txt: " + group + " name"));
    plan.files.push_back(FileAction{.target = path_join(scheme.scripts, ep.name),
                                    .data = launcher_script(opts.executable, ep),
                                    .mode = 0755});
    return Status::Ok();
  };
  for (const EntryPoint& ep : console_script_specs(eps.console, opts.python_version)) {
    MAT_RETURN_IF_ERROR(add_script(ep, "console_scripts"));
  }
  for (const EntryPoint& ep : eps.gui) MAT_RETURN_IF_ERROR(add_script(ep, "gui_scripts"));
  plan.files.push_back(
      FileAction{.target = path_join(scheme.purelib, di + "INSTALLER"), .data = kInstaller});
  if (in.ref != nullptr && in.ref->requested) {
    plan.files.push_back(FileAction{.target = path_join(scheme.purelib, di + "REQUESTED")});
  }
  // Every target, in one place: a plain relative path (the python version and the names above
  // are in it), and never conda-meta/ (a .data/data member "conda-meta/history" would land
  // there).
  for (const FileAction& a : plan.files) {
    MAT_RETURN_IF_ERROR(check_relative_path(a.target, plan.label + ": target path"));
    if (link_internal::in_conda_meta(a.target)) {
      return Corrupt(plan.label + ": " + (a.src.empty() ? a.target : a.src) + " would be " +
                     "installed as " + a.target + ", inside conda-meta/, which only the " +
                     "installer writes; the wheel is malformed: remove it from the lock");
    }
  }
  return plan;
}

std::vector<cache::RecordRow> installed_record_rows(const WheelPlan& plan,
                                                    const std::vector<cache::RecordRow>& extra) {
  // installed: wheel RECORD path -> installed RECORD path (relative to lib_dir); later wins.
  std::map<std::string, std::string> installed;
  std::vector<std::string> installed_order;
  std::map<std::string, const FileAction*> changed;  // by installed path
  for (size_t i = 0; i < plan.generated_begin; ++i) {
    const FileAction& a = plan.files[i];
    std::string rel = relative_to(a.target, plan.lib_dir);
    if (installed.emplace(a.record_src, rel).second) installed_order.push_back(a.record_src);
    installed[a.record_src] = rel;
    if (a.changed) changed[rel] = &a;
  }
  std::vector<cache::RecordRow> rows;
  for (const cache::RecordRow& old : plan.record) {
    auto it = installed.find(old.path);
    std::string path = it == installed.end() ? old.path : it->second;
    if (it != installed.end()) installed.erase(it);
    if (auto c = changed.find(path); c != changed.end()) {
      rows.push_back(
          {path, cache::record_hash_of(c->second->data), std::to_string(c->second->data.size())});
    } else {
      rows.push_back({path, old.hash, old.size});
    }
  }
  for (size_t i = plan.generated_begin; i < plan.files.size(); ++i) {
    const FileAction& a = plan.files[i];
    rows.push_back({relative_to(a.target, plan.lib_dir), cache::record_hash_of(a.data),
                    std::to_string(a.data.size())});
  }
  for (const std::string& src : installed_order) {
    if (auto it = installed.find(src); it != installed.end()) rows.push_back({it->second, "", ""});
  }
  // The wheel's RECORD row for itself ("…/RECORD,,"); pip appends it when the wheel omits it.
  const std::string record = plan.dist_info + "/RECORD";
  if (std::none_of(rows.begin(), rows.end(), [&](const auto& r) { return r.path == record; })) {
    rows.push_back({record, "", ""});
  }
  rows.insert(rows.end(), extra.begin(), extra.end());
  std::sort(rows.begin(), rows.end());
  return rows;
}

}  // namespace mat::wheel_internal

namespace mat {

Status check_wheel_tree(const std::string& tree, const std::string& file_name) {
  return wheel_internal::check_tree(tree, file_name);
}

}  // namespace mat
