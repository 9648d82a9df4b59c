// PEP 440 versions and specifiers, following packaging.version / packaging.specifiers (24.x)
// with prereleases=True. Cross-checked by hand against pip's vendored packaging 24.1.
#include <algorithm>
#include <cctype>
#include <regex>

#include "materializer/pypi.h"
#include "materializer/pypi_internal.h"

namespace mat::pypi {
namespace internal {
namespace {

// std::regex recurses per character; versions are short, so anything longer than this is
// rejected up front rather than risking deep recursion on hostile input.
constexpr size_t kMaxVersionLength = 256;

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

Num make_num(std::string_view digits) {
  size_t i = 0;
  while (i + 1 < digits.size() && digits[i] == '0') ++i;
  Num n;
  if (!digits.empty()) n.digits = std::string(digits.substr(i));
  return n;
}

bool is_zero(const Num& n) { return n.digits == "0"; }

// Release without trailing zeros, as packaging's _cmpkey compares it.
std::vector<Num> stripped_release(const std::vector<Num>& r) {
  size_t n = r.size();
  while (n > 0 && is_zero(r[n - 1])) --n;
  return std::vector<Num>(r.begin(), r.begin() + static_cast<std::ptrdiff_t>(n));
}

int compare_release(const std::vector<Num>& a, const std::vector<Num>& b) {
  std::vector<Num> x = stripped_release(a), y = stripped_release(b);
  for (size_t i = 0; i < std::min(x.size(), y.size()); ++i) {
    if (int c = compare(x[i], y[i])) return c;
  }
  return x.size() < y.size() ? -1 : (x.size() > y.size() ? 1 : 0);
}

// Optional numbers where "absent" sorts before (kLow) or after (kHigh) any present value.
enum class Missing { kLow, kHigh };
int compare_opt(const std::optional<Num>& a, const std::optional<Num>& b, Missing m) {
  if (a && b) return compare(*a, *b);
  if (!a && !b) return 0;
  int absent_first = (m == Missing::kLow) ? -1 : 1;
  return a ? -absent_first : absent_first;
}

// Pre-release key: a dev-only release (1.0.dev1) sorts before every pre-release of 1.0; a
// final release after all of them.
int pre_rank(const Version& v) {
  if (v.pre_kind < 0 && !v.post && v.dev) return -1;
  if (v.pre_kind < 0) return 3;
  return v.pre_kind;
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Local segments: numeric ones compare as numbers and sort after alphanumeric ones.
int compare_local(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  if (a.empty() || b.empty()) return a.empty() == b.empty() ? 0 : (a.empty() ? -1 : 1);
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    bool na = all_digits(a[i]), nb = all_digits(b[i]);
    int c = 0;
    if (na && nb) {
      c = compare(make_num(a[i]), make_num(b[i]));
    } else if (na != nb) {
      c = na ? 1 : -1;
    } else {
      c = a[i].compare(b[i]);
    }
    if (c) return c < 0 ? -1 : 1;
  }
  return a.size() < b.size() ? -1 : (a.size() > b.size() ? 1 : 0);
}

Version public_of(const Version& v) {
  Version p = v;
  p.local.clear();
  return p;
}

bool same_base(const Version& a, const Version& b) {
  return compare(a.epoch, b.epoch) == 0 && compare_release(a.release, b.release) == 0;
}

// Prefix match of "==X.Y.*": epoch equal and v's release, zero-padded, starts with `prefix`.
bool prefix_match(const Version& v, const Num& epoch, const std::vector<Num>& prefix) {
  if (compare(v.epoch, epoch) != 0) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    Num component = i < v.release.size() ? v.release[i] : Num{};
    if (compare(component, prefix[i]) != 0) return false;
  }
  return true;
}

bool equal_to(const Specifier& s, const Version& v) {
  if (s.wildcard) return prefix_match(v, s.version.epoch, s.version.release);
  if (!s.version.local.empty()) return compare(v, s.version) == 0;
  return compare(public_of(v), s.version) == 0;
}

const char* const kOps[] = {"===", "~=", "==", "!=", "<=", ">=", "<", ">"};

}  // namespace

int compare(const Num& a, const Num& b) {
  if (a.digits.size() != b.digits.size()) return a.digits.size() < b.digits.size() ? -1 : 1;
  int c = a.digits.compare(b.digits);
  return c < 0 ? -1 : (c > 0 ? 1 : 0);
}

std::optional<Version> parse_version(std::string_view text) {
  if (text.size() > kMaxVersionLength) return std::nullopt;
  // packaging.version.VERSION_PATTERN, verbatim apart from named groups (ECMAScript has none):
  // 1 epoch, 2 release, 3 pre letter, 4 pre number, 5 implicit post ("-1"), 6 post letter,
  // 7 post number, 8 dev, 9 dev number, 10 local.
  static const std::regex kPattern(
      R"(^\s*v?(?:([0-9]+)!)?([0-9]+(?:\.[0-9]+)*))"
      R"((?:[-_.]?(alpha|a|beta|b|preview|pre|c|rc)[-_.]?([0-9]+)?)?)"
      R"((?:(?:-([0-9]+))|(?:[-_.]?(post|rev|r)[-_.]?([0-9]+)?))?)"
      R"((?:[-_.]?(dev)[-_.]?([0-9]+)?)?)"
      R"((?:\+([a-z0-9]+(?:[-_.][a-z0-9]+)*))?\s*$)",
      std::regex::ECMAScript | std::regex::icase | std::regex::optimize);
  std::match_results<std::string_view::const_iterator> m;
  if (!std::regex_match(text.begin(), text.end(), m, kPattern)) return std::nullopt;
  auto group = [&](int i) -> std::string_view {
    if (!m[i].matched) return {};
    return std::string_view(&*m[i].first, static_cast<size_t>(m[i].length()));
  };
  Version v;
  if (m[1].matched) v.epoch = make_num(group(1));
  std::string_view rel = group(2);
  for (size_t start = 0;;) {
    size_t dot = rel.find('.', start);
    v.release.push_back(make_num(rel.substr(start, dot - start)));
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  if (m[3].matched) {
    std::string l = lower(group(3));
    v.pre_kind = (l == "a" || l == "alpha") ? 0 : (l == "b" || l == "beta") ? 1 : 2;
    v.pre = make_num(group(4));
  }
  if (m[5].matched) {
    v.post = make_num(group(5));
  } else if (m[6].matched) {
    v.post = make_num(group(7));
  }
  if (m[8].matched) v.dev = make_num(group(9));
  if (m[10].matched) {
    std::string local = lower(group(10));
    size_t start = 0;
    for (size_t i = 0; i <= local.size(); ++i) {
      if (i == local.size() || local[i] == '-' || local[i] == '_' || local[i] == '.') {
        v.local.push_back(local.substr(start, i - start));
        start = i + 1;
      }
    }
  }
  return v;
}

int compare(const Version& a, const Version& b) {
  if (int c = compare(a.epoch, b.epoch)) return c;
  if (int c = compare_release(a.release, b.release)) return c;
  int pa = pre_rank(a), pb = pre_rank(b);
  if (pa != pb) return pa < pb ? -1 : 1;
  if (pa >= 0 && pa <= 2) {
    if (int c = compare(a.pre, b.pre)) return c;
  }
  if (int c = compare_opt(a.post, b.post, Missing::kLow)) return c;
  if (int c = compare_opt(a.dev, b.dev, Missing::kHigh)) return c;
  return compare_local(a.local, b.local);
}

std::string to_string(const Version& v) {
  std::string out;
  if (!is_zero(v.epoch)) out += v.epoch.digits + "!";
  for (size_t i = 0; i < v.release.size(); ++i) {
    if (i) out += '.';
    out += v.release[i].digits;
  }
  if (v.pre_kind >= 0) {
    static const char* const kKinds[] = {"a", "b", "rc"};
    out += kKinds[v.pre_kind] + v.pre.digits;
  }
  if (v.post) out += ".post" + v.post->digits;
  if (v.dev) out += ".dev" + v.dev->digits;
  for (size_t i = 0; i < v.local.size(); ++i) out += (i ? "." : "+") + v.local[i];
  return out;
}

Result<Specifier> parse_specifier(std::string_view clause) {
  std::string_view c = trim(clause);
  auto bad = [&](const std::string& why) {
    return InvalidInput("invalid version specifier '" + std::string(c) + "': " + why);
  };
  Specifier s;
  for (const char* op : kOps) {
    if (c.substr(0, std::char_traits<char>::length(op)) == op) {
      s.op = op;
      break;
    }
  }
  if (s.op.empty()) return bad("expected an operator (==, !=, <=, >=, <, >, ~=, ===)");
  std::string_view text = trim(c.substr(s.op.size()));
  if (text.empty()) return bad("missing version after '" + s.op + "'");
  for (char ch : text) {
    if (std::isspace(static_cast<unsigned char>(ch))) return bad("whitespace inside the version");
  }
  s.text = std::string(text);
  if (s.op == "===") return s;  // arbitrary equality: any string, compared as text

  if ((s.op == "==" || s.op == "!=") && text.size() >= 2 && text.substr(text.size() - 2) == ".*") {
    s.wildcard = true;
    text.remove_suffix(2);
  }
  std::optional<Version> v = parse_version(text);
  if (!v) return bad("'" + std::string(text) + "' is not a PEP 440 version");
  s.version = std::move(*v);
  const Version& sv = s.version;
  if (s.wildcard && (sv.pre_kind >= 0 || sv.post || sv.dev || !sv.local.empty())) {
    return bad("'.*' only follows a release number (==1.2.*)");
  }
  if (s.op != "==" && s.op != "!=" && !sv.local.empty()) {
    return bad("a local version (+...) is only allowed with == and !=");
  }
  if (s.op == "~=" && sv.release.size() < 2) {
    return bad("'~=' needs at least two release components (~=1.4)");
  }
  return s;
}

bool specifier_contains(const Specifier& s, const Version& v) {
  const Version& sv = s.version;
  if (s.op == "===") return lower(to_string(v)) == lower(s.text);
  if (s.op == "==") return equal_to(s, v);
  if (s.op == "!=") return !equal_to(s, v);
  if (s.op == "<=") return compare(public_of(v), sv) <= 0;
  if (s.op == ">=") return compare(public_of(v), sv) >= 0;
  if (s.op == "<") {
    // "<3.0" excludes 3.0's own pre-releases unless the bound is itself a pre-release.
    if (compare(v, sv) >= 0) return false;
    return sv.is_prerelease() || !v.is_prerelease() || !same_base(v, sv);
  }
  if (s.op == ">") {
    // ">3.0" excludes 3.0's post and local releases unless the bound is a post-release.
    if (compare(v, sv) <= 0) return false;
    if (!sv.is_postrelease() && v.is_postrelease() && same_base(v, sv)) return false;
    return v.local.empty() || !same_base(v, sv);
  }
  if (s.op == "~=") {
    // ~=X.Y.Z means >=X.Y.Z, ==X.Y.*
    std::vector<Num> prefix(sv.release.begin(), sv.release.end() - 1);
    return compare(public_of(v), sv) >= 0 && prefix_match(v, sv.epoch, prefix);
  }
  return false;
}

}  // namespace internal

Result<bool> version_satisfies(std::string_view version, std::string_view specifiers) {
  std::optional<internal::Version> v = internal::parse_version(version);
  if (!v) {
    return InvalidInput("'" + std::string(version) + "' is not a PEP 440 version");
  }
  bool ok = true;
  size_t start = 0;
  while (start <= specifiers.size()) {
    size_t comma = specifiers.find(',', start);
    if (comma == std::string_view::npos) comma = specifiers.size();
    std::string_view clause = internal::trim(specifiers.substr(start, comma - start));
    start = comma + 1;
    if (clause.empty()) continue;  // packaging ignores empty clauses (">=3.8,")
    Result<internal::Specifier> spec = internal::parse_specifier(clause);
    if (!spec.ok()) {
      return spec.status().with_context("specifier set '" + std::string(specifiers) + "'");
    }
    // Every clause is parsed even after a miss, so a malformed set is always reported.
    if (!internal::specifier_contains(*spec, *v)) ok = false;
  }
  return ok;
}

}  // namespace mat::pypi
