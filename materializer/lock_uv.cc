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
#include <optional>
#include <set>
#include <unordered_map>

#include "materializer/base/url.h"
#include "materializer/lock_toml_internal.h"
#include "materializer/pypi.h"

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
  std::vector<std::string> extras;  // `extra = [...]`: the target's extras it activates
                                    // (normalised)
  int line = 0;                     // the owning package's line, for messages
};

Status read_dep(const toml::node& n, const TomlField& f, int line, Dep& d) {
  const toml::table* t = n.as_table();
  if (!t) return f.error(&n, line, "", "must be a table");
  std::string name;
  MAT_RETURN_IF_ERROR(toml_string(*t, "name", f, line, name, /*required=*/true));
  d.name = normalize(name);
  MAT_RETURN_IF_ERROR(toml_string(*t, "version", f, line, d.version));
  MAT_RETURN_IF_ERROR(toml_string(*t, "marker", f, line, d.marker));
  MAT_RETURN_IF_ERROR(toml_strings(*t, "extra", f, line, d.extras));
  for (std::string& e : d.extras) e = normalize(e);
  d.line = line;
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

// Named dependency lists (extras, groups): (normalised name, its list), in lock order.
using NamedDeps = std::vector<std::pair<std::string, std::vector<Dep>>>;

// Every list of a `<key>.<name> = [...]` table (optional-dependencies, dev-dependencies).
Status read_named_deps(const toml::table& t, const char* key, const TomlField& f, int line,
                       NamedDeps& out) {
  const toml::table* lists = nullptr;
  MAT_RETURN_IF_ERROR(toml_table(t, key, f, line, lists));
  if (!lists) return Status::Ok();
  for (const auto& [name, node] : *lists) {
    std::string nkey = std::string(key) + "." + std::string(name.str());
    const toml::array* a = node.as_array();
    if (!a) return f.error(&node, line, nkey, "must be a list");
    std::vector<Dep> deps;
    MAT_RETURN_IF_ERROR(read_dep_list(*a, f, line, nkey, deps));
    out.emplace_back(normalize(name.str()), std::move(deps));
  }
  return Status::Ok();
}

const std::vector<Dep>* find_named(const NamedDeps& lists, const std::string& name) {
  for (const auto& [n, deps] : lists) {
    if (n == name) return &deps;
  }
  return nullptr;
}

struct UvPackage {
  PackageRef ref;
  std::string key;        // normalised name
  std::string source;     // "kind=value"
  std::vector<Dep> deps;  // dependencies = [...]
  NamedDeps extras;       // [package.optional-dependencies]
  NamedDeps groups;       // [package.dev-dependencies] (uv's name for dependency groups)
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
  const toml::array* deps = nullptr;
  MAT_RETURN_IF_ERROR(toml_array(t, "dependencies", f, ref.line, deps));
  if (deps) MAT_RETURN_IF_ERROR(read_dep_list(*deps, f, ref.line, "dependencies", p.deps));
  MAT_RETURN_IF_ERROR(read_named_deps(t, "optional-dependencies", f, ref.line, p.extras));
  MAT_RETURN_IF_ERROR(read_named_deps(t, "dev-dependencies", f, ref.line, p.groups));
  MAT_RETURN_IF_ERROR(read_named_deps(t, "dependency-groups", f, ref.line, p.groups));

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
// What `uv sync` installs by default: the root projects (editable/virtual packages, [manifest]
// members, a script lock's [manifest] requirements), their dependencies, the default dependency
// groups of the root projects, and no optional extras. uv's default groups are ["dev"] unless
// pyproject's [tool.uv] default-groups says otherwise; the lock does not record that setting,
// so "dev" it is. LockSelection::extras / groups replace these defaults (extras apply to every
// root project that declares them, groups to every root project and the manifest's own groups).
// Every workspace member is a root project, as `uv sync --all-packages` has it; plain `uv sync`
// at a workspace root installs only the root project and what it reaches (a subset of ours).
//
// The graph has a node per package and a node per (package, extra) some edge or the selection
// names: `{ name = "requests", extra = ["socks"] }` leads to requests and to requests[socks],
// whose edges are requests' `optional-dependencies.socks` list (and one to requests itself).
//
// A package is installed when some path of edges from a root reaches it with every edge marker
// true, so its marker is OR over incoming edges of (edge marker AND parent's marker), a fixed
// point over the (possibly cyclic) graph. We keep each marker as an OR of conjunctions of whole
// edge markers ("clauses", interned), with only two simplifications: a conjunction is a set (so
// cycles add nothing and the fixed point is reached), and a conjunction absorbs its supersets
// (A or (A and B) = A; the empty conjunction, "always", absorbs everything). Every step can only
// widen, which keeps the result sound: a package may be kept where uv would not install it,
// never dropped where uv would.
//   - Edge markers that use `extra` are decided from the selection before they become clauses:
//     uv's conflict markers `extra == 'extra-<N>-<pkg>-<x>'` / `'group-<N>-<pkg>-<g>'` (N the
//     length of pkg) are true when pkg's extra x / group g is active, and a plain
//     `extra == 'x'` on an edge of package P when P[x] is active. As uv does (installable.rs),
//     the active extras are the selected ones plus every extra some followed edge asks for, an
//     edge's own extras counting while its marker is decided; the environment is unknown here,
//     so environment comparisons never stop this propagation (hence the one way this can err
//     narrow: `extra != '<conflict item>'` where only another environment activates the item).
//     An edge decided false is dropped; what is left mentions environment variables only
//     (anything still naming `extra` widens to "always"), and the driver evaluates it.
//   - A package's own resolution-markers (the forks that chose this version) are ANDed in,
//     with conflict variables decided the same way, unless they are all the file's forks (then
//     they say nothing).
//   - Roots (marker ""): the root projects above, the script lock's requirements, the
//     selected groups of [manifest] dependency-groups, and any package nothing depends on.
//   - Packages no active edge reaches (only through an unselected extra or group) are left out
//     of the lock's list, as conda formats leave out other platforms.
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

  // PEP 508 text of a node's marker; "" for always; nullopt if no path reaches the node.
  std::optional<std::string> render(size_t node) const {
    std::vector<Term> terms = effective(node);
    if (terms.empty()) return std::nullopt;
    if (terms.size() == 1 && terms[0].empty()) return std::string();
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

struct Manifest {
  std::vector<std::string> members;  // normalised
  std::vector<Dep> requirements;     // a script lock's requirements
  NamedDeps groups;                  // a project-less lock's dependency groups
};

// `[manifest]`: workspace members are roots; a script lock's requirements (and a project-less
// lock's dependency groups) are the root edges.
Status read_manifest(const toml::table& root, const std::string& path, Manifest& out) {
  TomlField f{path, "", "manifest."};
  const toml::table* m = nullptr;
  MAT_RETURN_IF_ERROR(toml_table(root, "manifest", TomlField{path, "", ""}, 0, m));
  if (!m) return Status::Ok();
  int line = toml_line(*m);
  std::vector<std::string> names;
  MAT_RETURN_IF_ERROR(toml_strings(*m, "members", f, line, names));
  for (const std::string& n : names) out.members.push_back(normalize(n));
  const toml::array* reqs = nullptr;
  MAT_RETURN_IF_ERROR(toml_array(*m, "requirements", f, line, reqs));
  if (reqs) MAT_RETURN_IF_ERROR(read_dep_list(*reqs, f, line, "requirements", out.requirements));
  MAT_RETURN_IF_ERROR(read_named_deps(*m, "dependency-groups", f, line, out.groups));
  // Manifest entries name requirements, not locked versions: match by name only.
  auto by_name_only = [](std::vector<Dep>& deps) {
    for (Dep& d : deps) {
      d.version.clear();
      d.source.clear();
    }
  };
  by_name_only(out.requirements);
  for (auto& [group, deps] : out.groups) by_name_only(deps);
  return Status::Ok();
}

// uv's conflict variable: `extra-<N>-<package>-<extra>` / `group-<N>-<package>-<group>`, N the
// length of the (normalised) package name.
struct ConflictItem {
  bool group = false;
  std::string package, name;
};

std::optional<ConflictItem> parse_conflict_item(std::string_view v) {
  ConflictItem item;
  if (v.starts_with("extra-")) {
    item.group = false;
  } else if (v.starts_with("group-")) {
    item.group = true;
  } else {
    return std::nullopt;
  }
  v.remove_prefix(6);
  size_t digits = 0;
  while (digits < v.size() && std::isdigit(static_cast<unsigned char>(v[digits]))) ++digits;
  if (digits == 0 || digits > 4) return std::nullopt;
  size_t n = std::stoul(std::string(v.substr(0, digits)));
  v.remove_prefix(digits);
  if (v.size() < n + 3 || v[0] != '-' || v[n + 1] != '-') return std::nullopt;
  item.package = std::string(v.substr(1, n));
  item.name = std::string(v.substr(n + 2));
  return item;
}

using NamePair = std::pair<std::string, std::string>;  // (package key, extra or group)

// The extras and groups in force, as conflict markers and `extra ==` comparisons ask.
struct Activation {
  std::set<NamePair> extras;
  std::set<NamePair> groups;
};

// One list of edges leaving a node: whose they are and, for an optional-dependencies list,
// which extra.
struct EdgeList {
  const std::vector<Dep>* deps;
  std::string owner;     // package key; "" for the manifest
  std::string in_extra;  // the extra this list belongs to, "" for dependencies and groups
};

// A dependency edge's marker under `a`: nullopt = never taken; "" = always; otherwise a marker
// over environment variables only. Markers that do not use `extra` come back as written.
Result<std::optional<std::string>> edge_marker(const Dep& d, const EdgeList& from,
                                               const Activation& a, const std::string& path) {
  if (!mentions_extra(d.marker)) return std::optional<std::string>(d.marker);
  auto decide = [&](const pypi::MarkerComparison& c) -> std::optional<bool> {
    if (c.variable != "extra" || (c.op != "==" && c.op != "!=")) return std::nullopt;
    bool on = false;
    if (std::optional<ConflictItem> item = parse_conflict_item(c.value)) {
      NamePair key{item->package, item->name};
      if (item->group) {
        on = a.groups.count(key) > 0;
      } else {
        // The edge's own extras count as active while its marker is decided (uv does so).
        on = a.extras.count(key) > 0 ||
             (item->package == d.name &&
              std::find(d.extras.begin(), d.extras.end(), item->name) != d.extras.end());
      }
    } else if (!from.owner.empty()) {
      std::string x = normalize(c.value);
      on = x == from.in_extra || a.extras.count({from.owner, x}) > 0;
    } else {
      return std::nullopt;
    }
    return c.op == "==" ? on : !on;
  };
  Result<std::optional<std::string>> r = pypi::partially_evaluate_marker(d.marker, decide);
  if (!r.ok()) {
    return input_error(path, d.line, "dependency '" + d.name + "': " + r.status().message());
  }
  if (*r && mentions_extra(**r)) return std::optional<std::string>(std::string());  // widen
  return r;
}

// A package's resolution-markers with conflict variables decided: the forks that can still
// apply, or nullopt when they cannot narrow the package (none left, one always true, or one
// still naming `extra`).
std::optional<std::vector<std::string>> live_forks(const std::vector<std::string>& forks,
                                                   const Activation& a) {
  std::vector<std::string> out;
  for (const std::string& m : forks) {
    if (m.empty()) return std::nullopt;
    if (!mentions_extra(m)) {
      out.push_back(m);
      continue;
    }
    auto decide = [&](const pypi::MarkerComparison& c) -> std::optional<bool> {
      if (c.variable != "extra" || (c.op != "==" && c.op != "!=")) return std::nullopt;
      std::optional<ConflictItem> item = parse_conflict_item(c.value);
      if (!item) return std::nullopt;
      bool on = (item->group ? a.groups : a.extras).count({item->package, item->name}) > 0;
      return c.op == "==" ? on : !on;
    };
    Result<std::optional<std::string>> r = pypi::partially_evaluate_marker(m, decide);
    if (!r.ok() || (*r && (r->value().empty() || mentions_extra(**r)))) return std::nullopt;
    if (*r) out.push_back(**r);
  }
  if (out.empty()) return std::nullopt;
  return out;
}

// Fills ref.marker and ref.requested of every package from the dependency graph; `keep[i]` is
// false for packages the selection leaves out.
Status derive_markers(std::vector<UvPackage>& pkgs, const Manifest& manifest,
                      const std::vector<std::string>& all_forks, const LockSelection& sel,
                      const std::string& path, std::vector<bool>& keep) {
  const size_t n = pkgs.size();
  const size_t script_root = n;  // stands for the manifest's requirements and groups
  std::unordered_multimap<std::string, size_t> by_name;
  for (size_t i = 0; i < n; ++i) by_name.emplace(pkgs[i].key, i);

  std::vector<std::string> want_extras, want_groups;
  for (const std::string& e : sel.extras) want_extras.push_back(normalize(e));
  for (const std::string& g : sel.groups) want_groups.push_back(normalize(g));
  if (want_groups.empty()) want_groups.push_back("dev");  // uv's default-groups
  auto wanted = [](const std::vector<std::string>& v, const std::string& x) {
    return std::find(v.begin(), v.end(), x) != v.end();
  };

  // The root projects: editable/virtual packages and workspace members.
  std::vector<bool> project(n, false);
  for (size_t i = 0; i < n; ++i) {
    project[i] = pkgs[i].project || wanted(manifest.members, pkgs[i].key);
  }

  // Node ids: packages 0..n-1, the manifest n, then one per (package, extra) named anywhere.
  std::map<std::pair<size_t, std::string>, size_t> extra_node;
  std::vector<std::pair<size_t, std::string>> extra_of;
  auto intern = [&](size_t pkg, const std::string& x) {
    auto [it, added] = extra_node.try_emplace({pkg, x}, n + 1 + extra_of.size());
    if (added) extra_of.emplace_back(pkg, x);
    return it->second;
  };
  std::vector<int> incoming(n, 0);
  auto scan = [&](const std::vector<Dep>& deps) {
    for (const Dep& d : deps) {
      for (size_t to : targets(d, pkgs, by_name)) {
        ++incoming[to];
        for (const std::string& e : d.extras) intern(to, e);
      }
    }
  };
  for (const UvPackage& p : pkgs) {
    scan(p.deps);
    for (const auto& [x, deps] : p.extras) scan(deps);
    for (const auto& [g, deps] : p.groups) scan(deps);
  }
  scan(manifest.requirements);
  for (const auto& [g, deps] : manifest.groups) scan(deps);

  Activation act;
  std::vector<size_t> roots{script_root};
  std::vector<bool> root(n, false);
  for (size_t i = 0; i < n; ++i) {
    root[i] = project[i] || incoming[i] == 0;
    if (root[i]) roots.push_back(i);
    if (!project[i]) continue;
    for (const std::string& x : want_extras) {
      if (!find_named(pkgs[i].extras, x)) continue;
      act.extras.insert({pkgs[i].key, x});
      roots.push_back(intern(i, x));
    }
    for (const std::string& g : want_groups) {
      if (find_named(pkgs[i].groups, g)) act.groups.insert({pkgs[i].key, g});
    }
  }
  const size_t total = n + 1 + extra_of.size();

  // The edge lists leaving a node.
  auto lists = [&](size_t node) {
    std::vector<EdgeList> out;
    if (node < n) {
      const UvPackage& p = pkgs[node];
      out.push_back({&p.deps, p.key, ""});
      if (project[node]) {
        for (const auto& [g, deps] : p.groups) {
          if (wanted(want_groups, g)) out.push_back({&deps, p.key, ""});
        }
      }
    } else if (node == script_root) {
      out.push_back({&manifest.requirements, "", ""});
      for (const auto& [g, deps] : manifest.groups) {
        if (wanted(want_groups, g)) out.push_back({&deps, "", ""});
      }
    } else {
      const auto& [pkg, x] = extra_of[node - n - 1];
      if (const std::vector<Dep>* deps = find_named(pkgs[pkg].extras, x)) {
        out.push_back({deps, pkgs[pkg].key, x});
      }
    }
    return out;
  };
  auto base_of = [&](size_t node) { return node > n ? extra_of[node - n - 1].first : node; };

  // Pass 1: the active extras (see above). Sets only grow, so a few rounds settle it.
  for (int round = 0; round < 8; ++round) {
    size_t before = act.extras.size();
    std::vector<bool> seen(total, false);
    std::deque<size_t> queue;
    auto visit = [&](size_t node) {
      if (!seen[node]) {
        seen[node] = true;
        queue.push_back(node);
      }
    };
    for (size_t r : roots) visit(r);
    while (!queue.empty()) {
      size_t node = queue.front();
      queue.pop_front();
      visit(base_of(node));
      for (const EdgeList& l : lists(node)) {
        for (const Dep& d : *l.deps) {
          MAT_ASSIGN_OR_RETURN(std::optional<std::string> m, edge_marker(d, l, act, path));
          if (!m) continue;
          for (size_t to : targets(d, pkgs, by_name)) {
            visit(to);
            for (const std::string& e : d.extras) {
              act.extras.insert({d.name, e});
              visit(extra_node.at({to, e}));
            }
          }
        }
      }
    }
    if (act.extras.size() == before) break;
  }

  // Pass 2: the markers.
  PackageMarkers g(total);
  std::vector<bool> direct(n, false);
  for (size_t node = 0; node < total; ++node) {
    // Edges from a root project, its selected extras and the manifest are direct requests.
    bool from_root =
        node == script_root || (node < n && project[node]) ||
        (node > n && project[base_of(node)] && wanted(want_extras, extra_of[node - n - 1].second));
    if (node > n) g.add_edge(node, base_of(node), -1);
    for (const EdgeList& l : lists(node)) {
      for (const Dep& d : *l.deps) {
        MAT_ASSIGN_OR_RETURN(std::optional<std::string> m, edge_marker(d, l, act, path));
        if (!m) continue;
        int c = g.clause(*m);
        for (size_t to : targets(d, pkgs, by_name)) {
          g.add_edge(node, to, c);
          for (const std::string& e : d.extras) g.add_edge(node, extra_node.at({to, e}), c);
          if (from_root) direct[to] = true;
        }
      }
    }
  }
  for (size_t r : roots) g.add_root(r);
  std::vector<int> gate(n, -1);
  for (size_t i = 0; i < n; ++i) {
    const auto& rm = pkgs[i].resolution_markers;
    if (rm.empty()) continue;
    if (rm.size() == all_forks.size() &&
        std::is_permutation(rm.begin(), rm.end(), all_forks.begin())) {
      continue;  // chosen in every fork: says nothing
    }
    std::optional<std::vector<std::string>> forks = live_forks(rm, act);
    if (!forks) continue;
    std::string any;
    for (const std::string& m : *forks) any += (any.empty() ? "" : " or ") + ("(" + m + ")");
    gate[i] = g.clause(forks->size() == 1 ? forks->front() : any);
    g.set_gate(i, gate[i]);
  }
  // A package's extras live in the package's forks.
  for (size_t node = n + 1; node < total; ++node) {
    if (gate[base_of(node)] >= 0) g.set_gate(node, gate[base_of(node)]);
  }
  g.solve();
  keep.assign(n, false);
  for (size_t i = 0; i < n; ++i) {
    std::optional<std::string> m = g.render(i);
    keep[i] = m.has_value();
    pkgs[i].ref.marker = m.value_or("");
    pkgs[i].ref.requested = root[i] || direct[i];
  }
  return Status::Ok();
}

}  // namespace

Result<LockFile> parse_uv_lock(const toml::table& root, const std::string& path,
                               const std::string& lock_dir, const LockSelection& sel) {
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
  Manifest manifest;
  MAT_RETURN_IF_ERROR(read_manifest(root, path, manifest));
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
  lock.entries = static_cast<int64_t>(pkgs.size());
  std::vector<bool> keep;
  MAT_RETURN_IF_ERROR(derive_markers(pkgs, manifest, forks, sel, path, keep));
  for (size_t i = 0; i < pkgs.size(); ++i) {
    if (keep[i]) lock.packages.push_back(std::move(pkgs[i].ref));
  }
  return lock;
}

}  // namespace mat::lock_internal
