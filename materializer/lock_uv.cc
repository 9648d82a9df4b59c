// uv.lock, version 1 (any revision), including uv's PEP 723 script locks.
//
//   version = 1
//   requires-python = ">=3.10"
//   resolution-markers = [...]                 # the forks of a universal resolution
//   [manifest]  members = [...] | requirements = [{name, marker?}] | dependency-groups
//   [[package]]
//   name, version?, source = {registry | git | path | directory | editable | virtual | url}
//   resolution-markers? = [...]                # forks that chose this version
//   dependencies = [{name, version?, source?, marker?, extra?}]
//   optional-dependencies.<extra> / dev-dependencies.<group> = [same]
//   sdist = {url | path, hash = "sha256:...", size}
//   wheels = [{url | path | filename, hash, size}, ...]
//
// uv.lock is universal: every package of every platform and Python is listed, and a package
// applies only where some dependency path reaches it. uv does not store that condition per
// package, so we derive it (see PackageMarkers below); the driver evaluates it and picks a
// wheel by tags. The project itself and workspace members (editable/virtual sources) come back
// with source_kind set; the driver skips them.
#include <algorithm>
#include <cctype>
#include <deque>
#include <map>
#include <unordered_map>

#include "materializer/base/url.h"
#include "materializer/lock_toml_internal.h"

namespace mat::lock_internal {
namespace {

std::string normalize(std::string_view name) {
  std::string out;
  for (char c : name) {
    bool sep = c == '-' || c == '_' || c == '.';
    if (sep) {
      if (out.empty() || out.back() != '-') out += '-';
    } else {
      out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
  }
  return out;
}

// `source = { kind = "value" }` as "kind=value" (the identity dependency entries refer to).
Status read_source(const toml::table& pkg, const TomlField& f, int line, std::string& kind,
                   std::string& value) {
  const toml::table* src = nullptr;
  MAT_RETURN_IF_ERROR(toml_table(pkg, "source", f, line, src));
  if (!src) return Status::Ok();
  for (const char* k : {"registry", "git", "path", "directory", "editable", "virtual", "url"}) {
    if (src->get(k)) {
      kind = k;
      return toml_string(*src, k, f.nested("source"), line, value, /*required=*/true);
    }
  }
  return f.error(src, line, "source",
                 "has no known kind (registry, git, path, directory, editable, virtual, url)");
}

struct Dep {
  std::string name;     // normalised
  std::string version;  // "" = any
  std::string source;   // "kind=value" or ""
  std::string marker;
};

Status read_dep(const toml::node& n, const TomlField& f, int line, Dep& d) {
  const toml::table* t = n.as_table();
  if (!t) return f.error(&n, line, "", "must be a table");
  std::string name;
  MAT_RETURN_IF_ERROR(toml_string(*t, "name", f, line, name, /*required=*/true));
  d.name = normalize(name);
  MAT_RETURN_IF_ERROR(toml_string(*t, "version", f, line, d.version));
  MAT_RETURN_IF_ERROR(toml_string(*t, "marker", f, line, d.marker));
  std::string kind, value;
  MAT_RETURN_IF_ERROR(read_source(*t, f, line, kind, value));
  if (!kind.empty()) d.source = kind + "=" + value;
  return Status::Ok();
}

Status read_dep_list(const toml::array& a, const TomlField& f, int line, std::string_view key,
                     std::vector<Dep>& out) {
  for (size_t i = 0; i < a.size(); ++i) {
    Dep d;
    MAT_RETURN_IF_ERROR(read_dep(*a.get(i), f.element(key, i), line, d));
    out.push_back(std::move(d));
  }
  return Status::Ok();
}

// dependencies = [...] plus every list of a `<key>.<group> = [...]` table.
Status read_all_deps(const toml::table& t, const TomlField& f, int line, std::vector<Dep>& out) {
  const toml::array* plain = nullptr;
  MAT_RETURN_IF_ERROR(toml_array(t, "dependencies", f, line, plain));
  if (plain) MAT_RETURN_IF_ERROR(read_dep_list(*plain, f, line, "dependencies", out));
  for (const char* key : {"optional-dependencies", "dev-dependencies", "dependency-groups"}) {
    const toml::table* groups = nullptr;
    MAT_RETURN_IF_ERROR(toml_table(t, key, f, line, groups));
    if (!groups) continue;
    for (const auto& [group, node] : *groups) {
      std::string gkey = std::string(key) + "." + std::string(group.str());
      const toml::array* a = node.as_array();
      if (!a) return f.error(&node, line, gkey, "must be a list");
      MAT_RETURN_IF_ERROR(read_dep_list(*a, f, line, gkey, out));
    }
  }
  return Status::Ok();
}

struct UvPackage {
  PackageRef ref;
  std::string key;     // normalised name
  std::string source;  // "kind=value"
  std::vector<Dep> deps;
  std::vector<std::string> resolution_markers;
  bool project = false;  // editable / virtual: the project or a workspace member
};

// A wheel or sdist entry. `base` is where a relative `path` is resolved (the lock's directory,
// or a local registry's); `source_url` stands in when the entry names only a file name.
Status read_dist(const toml::table& t, const TomlField& f, int line, const std::string& base,
                 const std::string& source_url, WheelCandidate& c) {
  int here = toml_line(t) ? toml_line(t) : line;
  std::string url, rel, filename, hash;
  MAT_RETURN_IF_ERROR(toml_string(t, "url", f, here, url));
  MAT_RETURN_IF_ERROR(toml_string(t, "path", f, here, rel));
  MAT_RETURN_IF_ERROR(toml_string(t, "filename", f, here, filename));
  MAT_RETURN_IF_ERROR(toml_string(t, "hash", f, here, hash));
  MAT_RETURN_IF_ERROR(toml_int(t, "size", f, here, c.size));
  c.url = !url.empty() ? url : !rel.empty() ? resolve_location(rel, base) : source_url;
  c.file_name = !filename.empty() ? filename : url_file_name(c.url);
  if (!hash.empty()) {
    MAT_RETURN_IF_ERROR(parse_prefixed_sha256(hash, f, t.get("hash"), here, "hash", c.sha256));
  }
  return Status::Ok();
}

Status read_package(const toml::table& t, size_t index, const std::string& path,
                    const std::string& lock_dir, UvPackage& p) {
  PackageRef& ref = p.ref;
  ref.kind = PackageKind::kPypi;
  ref.line = toml_line(t);
  TomlField f{path, "package[" + std::to_string(index) + "]", ""};
  MAT_RETURN_IF_ERROR(toml_string(t, "name", f, ref.line, ref.name, /*required=*/true));
  f.subject = "package '" + ref.name + "'";
  p.key = normalize(ref.name);
  MAT_RETURN_IF_ERROR(toml_string(t, "version", f, ref.line, ref.version));
  std::string kind, value;
  MAT_RETURN_IF_ERROR(read_source(t, f, ref.line, kind, value));
  if (!kind.empty()) p.source = kind + "=" + value;
  MAT_RETURN_IF_ERROR(toml_strings(t, "resolution-markers", f, ref.line, p.resolution_markers));
  MAT_RETURN_IF_ERROR(read_all_deps(t, f, ref.line, p.deps));

  std::string base = lock_dir;  // where relative dist paths point
  std::string source_url;       // stands in for dists that name only a file
  if (kind == "registry") {
    ref.channel = has_url_scheme(value) ? value : resolve_location(value, lock_dir);
    if (!has_url_scheme(value)) base = file_url_to_path(ref.channel);
  } else if (kind == "git") {
    ref.source_kind = "git";
    ref.url = "git+" + value;
  } else if (kind == "url") {
    source_url = value;
  } else if (!kind.empty()) {  // path, directory, editable, virtual
    std::string url = resolve_location(value, lock_dir);
    if (kind == "path" &&
        (value.ends_with(".whl") || value.ends_with(".tar.gz") || value.ends_with(".zip"))) {
      source_url = url;  // a local archive: its dists below carry the hash
    } else {
      ref.source_kind = kind;
      ref.url = url;
    }
    p.project = kind == "editable" || kind == "virtual";
  }

  const toml::table* sdist = nullptr;
  MAT_RETURN_IF_ERROR(toml_table(t, "sdist", f, ref.line, sdist));
  if (sdist) {
    WheelCandidate c;
    MAT_RETURN_IF_ERROR(read_dist(*sdist, f.nested("sdist"), ref.line, base, source_url, c));
    ref.sdists.push_back(std::move(c));
  }
  const toml::array* wheels = nullptr;
  MAT_RETURN_IF_ERROR(toml_array(t, "wheels", f, ref.line, wheels));
  for (size_t i = 0; wheels && i < wheels->size(); ++i) {
    const toml::node& n = *wheels->get(i);
    const toml::table* w = n.as_table();
    if (!w) return f.error(&n, ref.line, "wheels[" + std::to_string(i) + "]", "must be a table");
    WheelCandidate c;
    MAT_RETURN_IF_ERROR(read_dist(*w, f.element("wheels", i), ref.line, base, source_url, c));
    ref.wheels.push_back(std::move(c));
  }
  if (!ref.url.empty()) {
    ref.file_name = url_file_name(url_strip_fragment(ref.url));
  } else if (ref.wheels.empty() && !ref.sdists.empty()) {
    ref.file_name = ref.sdists.front().file_name;
  }
  if (ref.file_name.empty() && !ref.source_kind.empty()) ref.file_name = ref.name;
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------
// Package markers.
//
// A package is installed when some path of dependency edges from a root reaches it with every
// edge marker true, so its marker is OR over incoming edges of (edge marker AND parent's
// marker), a fixed point over the (possibly cyclic) graph. We keep each marker as an OR of
// conjunctions of whole edge markers ("clauses", interned), with only two simplifications:
// a conjunction is a set (so cycles add nothing and the fixed point is reached), and a
// conjunction absorbs its supersets (A or (A and B) = A; the empty conjunction, "always",
// absorbs everything). Every step can only widen, which keeps the result sound: a package may
// be kept where uv would not install it, never dropped where uv would.
//   - Edge markers that mention `extra` (uv's extras and dependency-group conflict markers)
//     count as always true: we install every extra and group.
//   - A package's own resolution-markers (the forks that chose this version) are ANDed in,
//     unless they are all the file's forks (then they say nothing).
//   - Roots (marker ""): editable/virtual packages, [manifest] members, the script lock's
//     [manifest] requirements, and any package nothing depends on.
//   - Past kMaxTerms conjunctions a marker gives up to "" (always): long ORs help no one.

constexpr size_t kMaxTerms = 16;

using Term = std::vector<int>;  // sorted clause ids; empty = always

// True if `marker` uses the variable `extra` (outside quoted strings).
bool mentions_extra(std::string_view marker) {
  char quote = 0;
  for (size_t i = 0; i < marker.size(); ++i) {
    char c = marker[i];
    if (quote) {
      if (c == quote) quote = 0;
      continue;
    }
    if (c == '\'' || c == '"') {
      quote = c;
      continue;
    }
    bool word_start = i == 0 || !(std::isalnum(static_cast<unsigned char>(marker[i - 1])) ||
                                  marker[i - 1] == '_');
    if (word_start && marker.substr(i).starts_with("extra")) {
      size_t e = i + 5;
      if (e == marker.size() ||
          !(std::isalnum(static_cast<unsigned char>(marker[e])) || marker[e] == '_')) {
        return true;
      }
    }
  }
  return false;
}

class PackageMarkers {
 public:
  explicit PackageMarkers(size_t nodes) : terms_(nodes), gate_(nodes, -1), out_(nodes) {}

  // Clause id for a marker; -1 for "always" (empty, or mentions `extra`).
  int clause(const std::string& marker) {
    if (marker.empty() || mentions_extra(marker)) return -1;
    auto [it, added] = ids_.try_emplace(marker, static_cast<int>(clauses_.size()));
    if (added) clauses_.push_back(marker);
    return it->second;
  }
  void add_edge(size_t from, size_t to, int clause) { out_[from].push_back({to, clause}); }
  void set_gate(size_t node, int clause) { gate_[node] = clause; }
  void add_root(size_t node) { roots_.push_back(node); }

  void solve() {
    std::deque<size_t> queue;
    std::vector<bool> queued(terms_.size(), false);
    for (size_t r : roots_) {
      if (insert(r, Term{})) {
        queue.push_back(r);
        queued[r] = true;
      }
    }
    while (!queue.empty()) {
      size_t p = queue.front();
      queue.pop_front();
      queued[p] = false;
      std::vector<Term> from = effective(p);
      for (const auto& [to, c] : out_[p]) {
        bool changed = false;
        for (const Term& t : from) changed = insert(to, with(t, c)) || changed;
        if (changed && !queued[to]) {
          queue.push_back(to);
          queued[to] = true;
        }
      }
    }
  }

  // PEP 508 text of a node's marker; "" for always (or never reached: unknown, so kept).
  std::string render(size_t node) const {
    std::vector<Term> terms = effective(node);
    if (terms.empty() || (terms.size() == 1 && terms[0].empty())) {
      return terms.empty() && gate_[node] >= 0 ? clauses_[gate_[node]] : "";
    }
    std::string out;
    for (const Term& t : terms) {
      std::string conj;
      for (int c : t) {
        bool wrap = t.size() > 1 || terms.size() > 1;
        conj += (conj.empty() ? "" : " and ") + (wrap ? "(" + clauses_[c] + ")" : clauses_[c]);
      }
      out += (out.empty() ? "" : " or ") +
             (terms.size() > 1 && t.size() > 1 ? "(" + conj + ")" : conj);
    }
    return out;
  }

 private:
  static Term with(Term t, int c) {
    if (c < 0) return t;
    auto at = std::lower_bound(t.begin(), t.end(), c);
    if (at == t.end() || *at != c) t.insert(at, c);
    return t;
  }
  std::vector<Term> effective(size_t node) const {
    if (gate_[node] < 0) return terms_[node];
    std::vector<Term> out;
    for (const Term& t : terms_[node]) out.push_back(with(t, gate_[node]));
    return out;
  }
  // Adds `t` to node's OR with absorption; returns whether the marker widened.
  bool insert(size_t node, const Term& t) {
    std::vector<Term>& ts = terms_[node];
    for (const Term& e : ts) {
      if (std::includes(t.begin(), t.end(), e.begin(), e.end())) return false;  // e absorbs t
    }
    std::erase_if(
        ts, [&](const Term& e) { return std::includes(e.begin(), e.end(), t.begin(), t.end()); });
    ts.push_back(t);
    if (ts.size() > kMaxTerms) ts.assign(1, Term{});
    return true;
  }

  std::vector<std::vector<Term>> terms_;
  std::vector<int> gate_;
  std::vector<std::vector<std::pair<size_t, int>>> out_;
  std::vector<size_t> roots_;
  std::vector<std::string> clauses_;
  std::map<std::string, int> ids_;
};

// Targets of a dependency entry: packages with its name, narrowed by version and source when
// the entry gives them (uv adds them only when several versions share a name).
std::vector<size_t> targets(const Dep& d, const std::vector<UvPackage>& pkgs,
                            const std::unordered_multimap<std::string, size_t>& by_name) {
  std::vector<size_t> out;
  auto [lo, hi] = by_name.equal_range(d.name);
  for (auto it = lo; it != hi; ++it) {
    const UvPackage& p = pkgs[it->second];
    if (!d.version.empty() && p.ref.version != d.version) continue;
    if (!d.source.empty() && p.source != d.source) continue;
    out.push_back(it->second);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// `[manifest]`: workspace members are roots; a script lock's requirements (and a project-less
// lock's dependency groups) are the root edges.
Status read_manifest(const toml::table& root, const std::string& path,
                     std::vector<std::string>& members, std::vector<Dep>& requirements) {
  TomlField f{path, "", "manifest."};
  const toml::table* m = nullptr;
  MAT_RETURN_IF_ERROR(toml_table(root, "manifest", TomlField{path, "", ""}, 0, m));
  if (!m) return Status::Ok();
  int line = toml_line(*m);
  std::vector<std::string> names;
  MAT_RETURN_IF_ERROR(toml_strings(*m, "members", f, line, names));
  for (const std::string& n : names) members.push_back(normalize(n));
  const toml::array* reqs = nullptr;
  MAT_RETURN_IF_ERROR(toml_array(*m, "requirements", f, line, reqs));
  if (reqs) MAT_RETURN_IF_ERROR(read_dep_list(*reqs, f, line, "requirements", requirements));
  const toml::table* groups = nullptr;
  MAT_RETURN_IF_ERROR(toml_table(*m, "dependency-groups", f, line, groups));
  if (groups) {
    for (const auto& [group, node] : *groups) {
      const toml::array* a = node.as_array();
      std::string key = "dependency-groups." + std::string(group.str());
      if (!a) return f.error(&node, line, key, "must be a list");
      MAT_RETURN_IF_ERROR(read_dep_list(*a, f, line, key, requirements));
    }
  }
  // Manifest entries name requirements, not locked versions: match by name only.
  for (Dep& d : requirements) {
    d.version.clear();
    d.source.clear();
  }
  return Status::Ok();
}

// Fills ref.marker and ref.requested of every package from the dependency graph.
void derive_markers(std::vector<UvPackage>& pkgs, const std::vector<std::string>& members,
                    const std::vector<Dep>& requirements,
                    const std::vector<std::string>& all_forks) {
  const size_t n = pkgs.size();
  const size_t script_root = n;  // stands for a script lock's own requirements
  std::unordered_multimap<std::string, size_t> by_name;
  for (size_t i = 0; i < n; ++i) by_name.emplace(pkgs[i].key, i);

  PackageMarkers g(n + 1);
  std::vector<int> incoming(n, 0);
  std::vector<bool> root(n, false), direct(n, false);
  for (size_t i = 0; i < n; ++i) {
    root[i] =
        pkgs[i].project || std::find(members.begin(), members.end(), pkgs[i].key) != members.end();
  }
  auto add_edges = [&](size_t from, const Dep& d, bool from_root) {
    int c = g.clause(d.marker);
    for (size_t to : targets(d, pkgs, by_name)) {
      g.add_edge(from, to, c);
      ++incoming[to];
      if (from_root) direct[to] = true;
    }
  };
  for (size_t i = 0; i < n; ++i) {
    for (const Dep& d : pkgs[i].deps) add_edges(i, d, root[i]);
  }
  for (const Dep& d : requirements) add_edges(script_root, d, true);
  g.add_root(script_root);
  for (size_t i = 0; i < n; ++i) {
    if (incoming[i] == 0) root[i] = true;
    if (root[i]) g.add_root(i);
    const auto& rm = pkgs[i].resolution_markers;
    bool usable = !rm.empty() && std::none_of(rm.begin(), rm.end(), [](const std::string& m) {
      return m.empty() || mentions_extra(m);
    });
    if (usable && rm.size() == all_forks.size()) {
      usable = !std::is_permutation(rm.begin(), rm.end(), all_forks.begin());
    }
    if (usable) {
      std::string any;
      for (const std::string& m : rm) any += (any.empty() ? "" : " or ") + ("(" + m + ")");
      g.set_gate(i, g.clause(rm.size() == 1 ? rm[0] : any));
    }
  }
  g.solve();
  for (size_t i = 0; i < n; ++i) {
    pkgs[i].ref.marker = g.render(i);
    pkgs[i].ref.requested = root[i] || direct[i];
  }
}

}  // namespace

Result<LockFile> parse_uv_lock(const toml::table& root, const std::string& path,
                               const std::string& lock_dir) {
  LockFile lock;
  lock.format = LockFormat::kUvLock;
  lock.path = path;
  TomlField f{path, "", ""};
  int64_t version = 0;
  MAT_RETURN_IF_ERROR(toml_int(root, "version", f, 0, version));
  if (version != 1) {
    const toml::node* v = root.get("version");
    return input_error(path, v ? toml_line(*v) : 0,
                       "unsupported uv.lock version " + std::to_string(version) +
                           ": supported 1; re-lock with a uv that writes version 1");
  }
  lock.version = 1;
  MAT_RETURN_IF_ERROR(toml_string(root, "requires-python", f, 0, lock.requires_python));
  std::vector<std::string> forks;
  MAT_RETURN_IF_ERROR(toml_strings(root, "resolution-markers", f, 0, forks));
  std::vector<std::string> members;
  std::vector<Dep> requirements;
  MAT_RETURN_IF_ERROR(read_manifest(root, path, members, requirements));
  const toml::array* packages = nullptr;
  MAT_RETURN_IF_ERROR(toml_array(root, "package", f, 0, packages));
  std::vector<UvPackage> pkgs;
  for (size_t i = 0; packages && i < packages->size(); ++i) {
    const toml::node& n = *packages->get(i);
    const toml::table* t = n.as_table();
    if (!t) return f.error(&n, 0, "package[" + std::to_string(i) + "]", "must be a table");
    UvPackage p;
    MAT_RETURN_IF_ERROR(read_package(*t, i, path, lock_dir, p));
    pkgs.push_back(std::move(p));
  }
  derive_markers(pkgs, members, requirements, forks);
  for (UvPackage& p : pkgs) lock.packages.push_back(std::move(p.ref));
  return lock;
}

}  // namespace mat::lock_internal
