// pypi_index parsing: Simple API pages (PEP 691 JSON via nlohmann_json, PEP 503 HTML via
// libxml2), RFC 3986 reference resolution and the PEP 440 equality the resolver needs. Pure
// functions; see pypi_index_internal.h for the contracts.
#include <libxml/HTMLparser.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <memory>
#include <limits>
#include <nlohmann/json.hpp>
#include <string_view>

#include "materializer/base/hash.h"
#include "materializer/base/json.h"
#include "materializer/base/url.h"
#include "materializer/pypi.h"
#include "materializer/pypi_index_internal.h"

namespace mat::pypi {

namespace internal {

std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

namespace {

std::string lower(std::string_view s) { return ascii_lower(s); }

bool is_scheme_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '-' || c == '.';
}

// Length of "scheme:" at the front of `s`, or 0 if `s` has no scheme.
size_t scheme_length(std::string_view s) {
  if (s.empty() || !std::isalpha(static_cast<unsigned char>(s[0]))) return 0;
  size_t i = 1;
  while (i < s.size() && is_scheme_char(s[i])) ++i;
  return i < s.size() && s[i] == ':' ? i + 1 : 0;
}

// RFC 3986 §5.2.4, on a path without query or fragment.
std::string remove_dot_segments(std::string_view path) {
  const bool absolute = path.starts_with('/');
  if (absolute) path.remove_prefix(1);
  std::vector<std::string_view> out;
  size_t start = 0;
  for (;;) {
    const size_t slash = path.find('/', start);
    const bool last = slash == std::string_view::npos;
    const std::string_view seg = path.substr(start, last ? std::string_view::npos : slash - start);
    if (seg == "..") {
      if (!out.empty()) out.pop_back();
      if (last) out.emplace_back();  // "a/.." is the directory "/", not "a"
    } else if (seg == ".") {
      if (last) out.emplace_back();
    } else {
      out.push_back(seg);
    }
    if (last) break;
    start = slash + 1;
  }
  std::string result = absolute ? "/" : "";
  for (size_t i = 0; i < out.size(); ++i) {
    if (i > 0) result += '/';
    result += out[i];
  }
  return result;
}

struct UrlParts {
  std::string_view scheme;     // "https:" (with the colon)
  std::string_view authority;  // "//user:pw@host:port" (with the slashes) or ""
  std::string_view path;
  std::string_view query;  // "?a=b" or ""
};

UrlParts split_url(std::string_view url) {
  UrlParts p;
  url = url.substr(0, url.find('#'));
  const size_t s = scheme_length(url);
  p.scheme = url.substr(0, s);
  url.remove_prefix(s);
  if (url.starts_with("//")) {
    const size_t end = url.find_first_of("/?", 2);
    p.authority = url.substr(0, end);
    url.remove_prefix(p.authority.size());
  }
  const size_t q = url.find('?');
  p.path = url.substr(0, q);
  if (q != std::string_view::npos) p.query = url.substr(q);
  return p;
}

// Splits off "?query#fragment" from a relative reference's path.
std::string_view ref_path(std::string_view ref) { return ref.substr(0, ref.find_first_of("?#")); }

}  // namespace

std::string resolve_url(std::string_view base, std::string_view ref) {
  if (scheme_length(ref) > 0) {
    const UrlParts r = split_url(ref);
    return std::string(ref.substr(0, r.scheme.size() + r.authority.size())) +
           remove_dot_segments(r.path) +
           std::string(ref.substr(r.scheme.size() + r.authority.size() + r.path.size()));
  }
  const UrlParts b = split_url(base);
  const std::string prefix = std::string(b.scheme);
  if (ref.starts_with("//")) return prefix + std::string(ref);
  const std::string origin = prefix + std::string(b.authority);
  if (ref.empty()) return origin + std::string(b.path) + std::string(b.query);
  if (ref.starts_with('#'))
    return origin + std::string(b.path) + std::string(b.query) + std::string(ref);
  if (ref.starts_with('?')) return origin + std::string(b.path) + std::string(ref);
  const std::string_view path = ref_path(ref);
  const std::string_view rest = ref.substr(path.size());
  if (ref.starts_with('/')) return origin + remove_dot_segments(path) + std::string(rest);
  std::string merged;
  if (!b.authority.empty() && b.path.empty()) {
    merged = "/" + std::string(path);
  } else {
    const size_t slash = b.path.rfind('/');
    merged = std::string(b.path.substr(0, slash == std::string_view::npos ? 0 : slash + 1)) +
             std::string(path);
  }
  return origin + remove_dot_segments(merged) + std::string(rest);
}

std::string percent_decode(std::string_view s) {
  const auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
      out += static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

namespace {

// Fills file_name/url/sha256 from an absolute URL with an optional "#sha256=" fragment.
void set_from_url(IndexFile& f, const std::string& absolute) {
  f.url = url_strip_fragment(absolute);
  f.file_name = percent_decode(url_file_name(f.url));
  const size_t hash = absolute.find('#');
  if (hash == std::string::npos) return;
  // Fragments are "sha256=<hex>" (PEP 503); other algorithms are ignored, and so is anything
  // after an '&' (some servers add "egg=").
  std::string_view frag = std::string_view(absolute).substr(hash + 1);
  frag = frag.substr(0, frag.find('&'));
  constexpr std::string_view kKey = "sha256=";
  if (frag.starts_with(kKey) && is_hex(frag.substr(kKey.size()), 64)) {
    f.sha256 = lower(frag.substr(kKey.size()));
  }
}

Result<std::vector<IndexFile>> parse_json_files(const nlohmann::json& doc,
                                                std::string_view page_url) {
  if (!doc.is_object()) return Corrupt("not a PEP 691 page: top level is not an object");
  if (auto meta = doc.find("meta"); meta != doc.end() && meta->is_object()) {
    auto v = meta->find("api-version");
    if (v != meta->end() && v->is_string()) {
      const std::string version = v->get<std::string>();
      if (version.substr(0, version.find('.')) != "1") {
        return InvalidInput("unsupported Simple API version " + version + " (need 1.x)");
      }
    }
  }
  auto files = doc.find("files");
  if (files == doc.end() || !files->is_array()) {
    return Corrupt("not a PEP 691 page: no \"files\" list");
  }
  std::vector<IndexFile> out;
  out.reserve(files->size());
  for (const nlohmann::json& j : *files) {
    if (!j.is_object()) continue;
    auto url = j.find("url");
    if (url == j.end() || !url->is_string()) continue;
    IndexFile f;
    set_from_url(f, resolve_url(page_url, url->get<std::string>()));
    if (auto name = j.find("filename"); name != j.end() && name->is_string()) {
      f.file_name = name->get<std::string>();
    }
    if (auto hashes = j.find("hashes"); hashes != j.end() && hashes->is_object()) {
      auto sha = hashes->find("sha256");
      if (sha != hashes->end() && sha->is_string() && is_hex(sha->get<std::string>(), 64)) {
        f.sha256 = lower(sha->get<std::string>());
      }
    }
    if (auto rp = j.find("requires-python"); rp != j.end() && rp->is_string()) {
      f.requires_python = rp->get<std::string>();
    }
    if (auto y = j.find("yanked"); y != j.end()) {
      // true, or a string giving the reason (PEP 691); false when not yanked.
      f.yanked = y->is_string() || (y->is_boolean() && y->get<bool>());
    }
    if (auto size = j.find("size"); size != j.end() && size->is_number_integer()) {
      f.size = size->get<int64_t>();
    }
    if (!f.file_name.empty()) out.push_back(std::move(f));
  }
  return out;
}

}  // namespace

Result<std::vector<IndexFile>> parse_simple_json(std::string_view body, std::string_view page_url) {
  // The size was bounded when the page was fetched (kMaxPageBytes); the depth is checked here.
  Result<nlohmann::json> parsed =
      parse_json(body, "not a PEP 691 page", DocLimits{std::numeric_limits<int64_t>::max()},
                 Code::kCorrupt);
  if (!parsed.ok()) return parsed.status();
  const nlohmann::json& doc = *parsed;
  try {
    return parse_json_files(doc, page_url);
  } catch (const nlohmann::json::exception& e) {  // type checks above make this unreachable
    return Corrupt(std::string("not a PEP 691 page: ") + e.what());
  }
}

namespace {

struct XmlDocDeleter {
  void operator()(xmlDoc* d) const { xmlFreeDoc(d); }
};
using XmlDoc = std::unique_ptr<xmlDoc, XmlDocDeleter>;

// An attribute's value (entities decoded by the parser), or nullopt if absent.
std::optional<std::string> attribute(xmlNode* n, const char* name) {
  xmlChar* v = xmlGetProp(n, reinterpret_cast<const xmlChar*>(name));
  if (v == nullptr) return std::nullopt;
  std::string s(reinterpret_cast<const char*>(v));
  xmlFree(v);
  return s;
}

bool is_element(const xmlNode* n, const char* name) {
  return n->type == XML_ELEMENT_NODE &&
         xmlStrcasecmp(n->name, reinterpret_cast<const xmlChar*>(name)) == 0;
}

std::string trim(std::string_view s) {
  const size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return "";
  const size_t e = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(b, e - b + 1));
}

}  // namespace

void init_html_parser() { xmlInitParser(); }

Result<std::vector<IndexFile>> parse_simple_html(std::string_view body, std::string_view page_url) {
  xmlInitParser();  // idempotent; cheap after the first call
  if (body.size() > static_cast<size_t>(INT32_MAX)) return Corrupt("page larger than 2 GiB");
  XmlDoc doc(htmlReadMemory(
      body.data(), static_cast<int>(body.size()), nullptr, "UTF-8",
      HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING | HTML_PARSE_NONET | HTML_PARSE_RECOVER));
  std::vector<IndexFile> out;
  if (!doc) {
    // libxml2 builds no document for an empty body; an empty page lists no files.
    if (trim(body).empty()) return out;
    return Corrupt("not an HTML page");
  }
  xmlNode* root = xmlDocGetRootElement(doc.get());
  std::string base(page_url);
  bool base_seen = false;
  // Iterative pre-order walk: no recursion depth to worry about on hostile pages.
  for (xmlNode* n = root; n != nullptr;) {
    if (is_element(n, "base") && !base_seen) {
      if (auto href = attribute(n, "href")) {
        base = resolve_url(page_url, trim(*href));
        base_seen = true;
      }
    } else if (is_element(n, "a")) {
      if (auto href = attribute(n, "href")) {
        IndexFile f;
        set_from_url(f, resolve_url(base, trim(*href)));
        if (auto rp = attribute(n, "data-requires-python")) f.requires_python = trim(*rp);
        f.yanked = xmlHasProp(n, reinterpret_cast<const xmlChar*>("data-yanked")) != nullptr;
        if (!f.file_name.empty()) out.push_back(std::move(f));
      }
    }
    if (n->type == XML_ELEMENT_NODE && n->children != nullptr) {
      n = n->children;
      continue;
    }
    while (n != nullptr && n != root && n->next == nullptr) n = n->parent;
    n = (n == nullptr || n == root) ? nullptr : n->next;
  }
  return out;
}

Result<std::vector<IndexFile>> parse_simple_page(std::string_view body,
                                                 std::string_view content_type,
                                                 std::string_view page_url) {
  const std::string type = lower(content_type.substr(0, content_type.find(';')));
  bool json = type.find("json") != std::string::npos;
  if (type.empty()) {
    const std::string head = trim(body.substr(0, 64));
    json = head.starts_with('{');
  }
  return json ? parse_simple_json(body, page_url) : parse_simple_html(body, page_url);
}

// ---- PEP 440 ----

namespace {

// A tiny cursor over a lowercased version string.
struct Cursor {
  std::string_view s;
  size_t i = 0;
  bool done() const { return i >= s.size(); }
  bool eat(std::string_view word) {
    if (s.substr(i).starts_with(word)) {
      i += word.size();
      return true;
    }
    return false;
  }
  bool eat_sep() {
    if (!done() && (s[i] == '.' || s[i] == '-' || s[i] == '_')) {
      ++i;
      return true;
    }
    return false;
  }
  // Digits without leading zeros ("007" -> "7"); nullopt if no digit here.
  std::optional<std::string> number() {
    const size_t start = i;
    while (!done() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
    if (i == start) return std::nullopt;
    std::string_view d = s.substr(start, i - start);
    while (d.size() > 1 && d[0] == '0') d.remove_prefix(1);
    return std::string(d);
  }
};

}  // namespace

std::optional<std::string> canonical_version(std::string_view v) {
  const std::string text = lower(trim(v));
  Cursor c{text};
  c.eat("v");
  std::string out;
  // Epoch and release.
  std::optional<std::string> first = c.number();
  if (!first) return std::nullopt;
  if (c.eat("!")) {
    if (*first != "0") out = *first + "!";
    first = c.number();
    if (!first) return std::nullopt;
  }
  std::vector<std::string> release{*first};
  while (c.i + 1 < text.size() && text[c.i] == '.' &&
         std::isdigit(static_cast<unsigned char>(text[c.i + 1]))) {
    ++c.i;
    release.push_back(*c.number());
  }
  while (release.size() > 1 && release.back() == "0") release.pop_back();
  for (size_t k = 0; k < release.size(); ++k) out += (k ? "." : "") + release[k];
  // Pre-release: a, b, rc and their spellings.
  {
    const size_t save = c.i;
    c.eat_sep();
    static constexpr std::pair<std::string_view, std::string_view> kPre[] = {
        {"alpha", "a"}, {"beta", "b"}, {"preview", "rc"}, {"pre", "rc"},
        {"rc", "rc"},   {"a", "a"},    {"b", "b"},        {"c", "rc"}};
    bool found = false;
    for (const auto& [word, norm] : kPre) {
      if (c.eat(word)) {
        c.eat_sep();
        out += std::string(norm) + c.number().value_or("0");
        found = true;
        break;
      }
    }
    if (!found) c.i = save;
  }
  // Post-release: "-N", or post/rev/r with an optional number.
  {
    const size_t save = c.i;
    if (c.eat("-") && !c.done() && std::isdigit(static_cast<unsigned char>(text[c.i]))) {
      out += ".post" + *c.number();
    } else {
      c.i = save;
      c.eat_sep();
      if (c.eat("post") || c.eat("rev") || c.eat("r")) {
        c.eat_sep();
        out += ".post" + c.number().value_or("0");
      } else {
        c.i = save;
      }
    }
  }
  // Development release.
  {
    const size_t save = c.i;
    c.eat_sep();
    if (c.eat("dev")) {
      c.eat_sep();
      out += ".dev" + c.number().value_or("0");
    } else {
      c.i = save;
    }
  }
  // Local label: segments of [a-z0-9] separated by . - _; numeric ones compare as numbers.
  if (c.eat("+")) {
    std::string local;
    for (;;) {
      const size_t start = c.i;
      while (!c.done() && std::isalnum(static_cast<unsigned char>(text[c.i]))) ++c.i;
      if (c.i == start) return std::nullopt;  // empty segment: "1+", "1+a..b", "1+a."
      std::string_view seg = std::string_view(text).substr(start, c.i - start);
      const bool numeric = std::all_of(seg.begin(), seg.end(), [](char ch) {
        return std::isdigit(static_cast<unsigned char>(ch)) != 0;
      });
      while (numeric && seg.size() > 1 && seg[0] == '0') seg.remove_prefix(1);
      local += (local.empty() ? "" : ".") + std::string(seg);
      if (c.done()) break;
      if (!c.eat_sep()) return std::nullopt;
    }
    if (local.empty()) return std::nullopt;
    out += "+" + local;
  }
  if (!c.done()) return std::nullopt;
  return out;
}

bool same_version(std::string_view a, std::string_view b) {
  const std::optional<std::string> ca = canonical_version(a);
  const std::optional<std::string> cb = canonical_version(b);
  if (ca && cb) return *ca == *cb;
  return lower(trim(a)) == lower(trim(b));
}

bool is_sdist_of(std::string_view file_name, std::string_view normalized_name,
                 std::string_view version) {
  static constexpr std::string_view kExts[] = {".tar.gz", ".zip", ".tar.bz2",
                                               ".tar.xz", ".tgz", ".tar"};
  const std::string name = lower(file_name);
  std::string_view stem;
  for (std::string_view ext : kExts) {
    if (name.size() > ext.size() && name.ends_with(ext)) {
      stem = std::string_view(file_name).substr(0, name.size() - ext.size());
      break;
    }
  }
  if (stem.empty()) return false;
  // Try every '-' as the name/version split: project names may contain '-' themselves.
  for (size_t dash = stem.find('-'); dash != std::string_view::npos;
       dash = stem.find('-', dash + 1)) {
    if (normalize_name(stem.substr(0, dash)) == normalized_name &&
        same_version(stem.substr(dash + 1), version)) {
      return true;
    }
  }
  return false;
}

}  // namespace internal
}  // namespace mat::pypi
