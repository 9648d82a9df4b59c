// Text kernels of wheel installation: entry_points.txt, distlib's launcher and shebang, pip's
// fix_script, METADATA headers and PEP 440 / PEP 503 normalisation. Each mirrors a named
// function of pip 23.0.1 (pip/_internal/operations/install/wheel.py) or its vendored distlib
// (pip/_vendor/distlib/scripts.py, util.py) byte for byte; comments name the original.
#include <algorithm>
#include <cctype>
#include <map>
#include <string>
#include <string_view>

#include "materializer/wheel_internal.h"

namespace mat::wheel_internal {
namespace {

// Linux's shebang limit as distlib sees it (BINPRM_BUF_SIZE - 1).
constexpr size_t kMaxShebangLength = 127;

std::string_view strip(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool is_word_char(char c) {
  // Python's \w on str also matches non-ASCII letters: accept any byte >= 0x80.
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' ||
         static_cast<unsigned char>(c) >= 0x80;
}

// distlib's ENTRY_RE callable part, "\w+([:.]\w+)*", with exactly one ':' (get_export_entry
// plus pip's MissingCallableSuffix check). Extras "[...]" after it are ignored.
Result<EntryPoint> parse_value(const std::string& name, std::string_view value) {
  std::string_view v = strip(value);
  if (size_t bracket = v.find('['); bracket != std::string_view::npos) {
    if (v.back() != ']') {
      return Corrupt("invalid entry point '" + name + " = " + std::string(value) + "'");
    }
    v = strip(v.substr(0, bracket));
  }
  size_t colon = v.find(':');
  bool ok = !v.empty() && colon != std::string_view::npos && v.find(':', colon + 1) == v.npos;
  char prev = '.';
  for (char c : v) {
    bool sep = c == '.' || c == ':';
    if (sep && (prev == '.' || prev == ':')) ok = false;
    if (!sep && !is_word_char(c)) ok = false;
    prev = c;
  }
  if (prev == '.' || prev == ':') ok = false;
  if (!ok) {
    return Corrupt("invalid script entry point '" + name + " = " + std::string(value) +
                   "': a 'module:callable' value is required");
  }
  return EntryPoint{name, std::string(v.substr(0, colon)), std::string(v.substr(colon + 1))};
}

// Python dict semantics: a repeated key keeps its position and takes the new value.
void put(std::vector<EntryPoint>* list, EntryPoint ep) {
  for (EntryPoint& e : *list) {
    if (e.name == ep.name) {
      e = std::move(ep);
      return;
    }
  }
  list->push_back(std::move(ep));
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// re.match(r"pip(\d+(\.\d+)?)?$", k)
bool is_versioned_pip(std::string_view k) {
  if (!k.starts_with("pip")) return false;
  k.remove_prefix(3);
  if (k.empty()) return true;
  size_t dot = k.find('.');
  if (dot == std::string_view::npos) return all_digits(k);
  return all_digits(k.substr(0, dot)) && all_digits(k.substr(dot + 1));
}

// re.match(r"easy_install(-\d+\.\d+)?$", k)
bool is_versioned_easy_install(std::string_view k) {
  if (!k.starts_with("easy_install")) return false;
  k.remove_prefix(12);
  if (k.empty()) return true;
  if (!k.starts_with('-')) return false;
  k.remove_prefix(1);
  size_t dot = k.find('.');
  return dot != std::string_view::npos && all_digits(k.substr(0, dot)) &&
         all_digits(k.substr(dot + 1));
}

// distlib's enquote_executable.
std::string enquote_executable(const std::string& exe) {
  if (exe.find(' ') == std::string::npos) return exe;
  if (exe.starts_with("/usr/bin/env ")) {
    std::string rest = exe.substr(13);
    if (rest.find(' ') != std::string::npos && !rest.starts_with('"')) {
      return "/usr/bin/env \"" + rest + "\"";
    }
    return exe;
  }
  if (exe.starts_with('"')) return exe;
  return "\"" + exe + "\"";
}

std::string strip_leading_zeros(std::string_view digits) {
  size_t i = 0;
  while (i + 1 < digits.size() && digits[i] == '0') ++i;
  return std::string(digits.substr(i));
}

// A tiny cursor over a lowercase version string.
struct Cursor {
  std::string_view s;
  size_t i = 0;
  bool done() const { return i >= s.size(); }
  bool sep() {  // [-_.]?
    if (!done() && (s[i] == '-' || s[i] == '_' || s[i] == '.')) {
      ++i;
      return true;
    }
    return false;
  }
  std::string digits() {
    size_t b = i;
    while (!done() && s[i] >= '0' && s[i] <= '9') ++i;
    return std::string(s.substr(b, i - b));
  }
  bool word(std::string_view w) {
    if (s.substr(i).starts_with(w)) {
      i += w.size();
      return true;
    }
    return false;
  }
};

// packaging's VERSION_PATTERN, hand-rolled; nullopt if `v` does not match it.
std::optional<std::string> canonical_version(std::string_view v) {
  Cursor c{v};
  std::string out;
  std::string first = c.digits();
  if (first.empty()) return std::nullopt;
  if (!c.done() && c.s[c.i] == '!') {  // epoch
    ++c.i;
    out = strip_leading_zeros(first) + "!";
    first = c.digits();
    if (first.empty()) return std::nullopt;
  }
  std::vector<std::string> release{strip_leading_zeros(first)};
  while (c.i + 1 < v.size() && v[c.i] == '.' && v[c.i + 1] >= '0' && v[c.i + 1] <= '9') {
    ++c.i;
    release.push_back(strip_leading_zeros(c.digits()));
  }
  while (release.size() > 1 && release.back() == "0") release.pop_back();
  for (size_t k = 0; k < release.size(); ++k) out += (k ? "." : "") + release[k];
  // pre-release
  {
    Cursor save = c;
    c.sep();
    static const std::pair<const char*, const char*> kPre[] = {
        {"alpha", "a"}, {"beta", "b"}, {"preview", "rc"}, {"pre", "rc"},
        {"rc", "rc"},   {"a", "a"},    {"b", "b"},        {"c", "rc"}};
    bool found = false;
    for (auto [spelling, canon] : kPre) {
      if (c.word(spelling)) {
        c.sep();
        std::string n = c.digits();
        out += std::string(canon) + (n.empty() ? "0" : strip_leading_zeros(n));
        found = true;
        break;
      }
    }
    if (!found) c = save;
  }
  // post-release: "-N" or [-_.]?(post|rev|r)[-_.]?N?
  {
    Cursor save = c;
    if (!c.done() && c.s[c.i] == '-' && c.i + 1 < v.size() && v[c.i + 1] >= '0' &&
        v[c.i + 1] <= '9') {
      ++c.i;
      out += ".post" + strip_leading_zeros(c.digits());
    } else {
      c.sep();
      if (c.word("post") || c.word("rev") || c.word("r")) {
        c.sep();
        std::string n = c.digits();
        out += ".post" + (n.empty() ? "0" : strip_leading_zeros(n));
      } else {
        c = save;
      }
    }
  }
  // dev-release
  {
    Cursor save = c;
    c.sep();
    if (c.word("dev")) {
      c.sep();
      std::string n = c.digits();
      out += ".dev" + (n.empty() ? "0" : strip_leading_zeros(n));
    } else {
      c = save;
    }
  }
  if (!c.done() && v[c.i] == '+') {  // local: separators become '.'
    std::string local(v.substr(c.i + 1));
    if (local.empty()) return std::nullopt;
    for (char& ch : local) {
      if (ch == '-' || ch == '_') ch = '.';
      if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '.') return std::nullopt;
    }
    out += "+" + local;
    c.i = v.size();
  }
  if (!c.done()) return std::nullopt;
  return out;
}

}  // namespace

Result<EntryPoints> parse_entry_points(std::string_view text) {
  EntryPoints out;
  std::string section;
  std::vector<EntryPoint>* list = nullptr;
  std::string key, value;
  bool have_key = false;
  auto flush = [&]() -> Status {
    if (have_key && list != nullptr) {
      MAT_ASSIGN_OR_RETURN(EntryPoint ep, parse_value(key, value));
      put(list, std::move(ep));
    }
    have_key = false;
    return Status::Ok();
  };
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view raw = text.substr(pos, nl - pos);
    pos = nl + 1;
    if (!raw.empty() && raw.back() == '\r') raw.remove_suffix(1);
    std::string_view line = strip(raw);
    if (line.empty() || line.front() == '#' || line.front() == ';') continue;
    bool indented = std::isspace(static_cast<unsigned char>(raw.front()));
    if (indented && have_key) {  // configparser continuation line
      value += "\n" + std::string(line);
      continue;
    }
    MAT_RETURN_IF_ERROR(flush());
    if (line.front() == '[' && line.back() == ']') {
      section = std::string(strip(line.substr(1, line.size() - 2)));
      list = section == "console_scripts" ? &out.console
             : section == "gui_scripts"   ? &out.gui
                                          : nullptr;
      continue;
    }
    size_t eq = line.find_first_of("=:");
    // ':' is configparser's other delimiter, but "mod:func" values contain it: '=' wins when
    // present anywhere on the line.
    if (size_t e = line.find('='); e != std::string_view::npos) eq = e;
    if (eq == std::string_view::npos || section.empty()) {
      if (list == nullptr) continue;  // other groups are not ours to judge
      return Corrupt("entry_points.txt: cannot parse line '" + std::string(line) + "'");
    }
    key = std::string(strip(line.substr(0, eq)));
    value = std::string(strip(line.substr(eq + 1)));
    have_key = true;
  }
  MAT_RETURN_IF_ERROR(flush());
  return out;
}

std::vector<EntryPoint> console_script_specs(const std::vector<EntryPoint>& console,
                                             const std::string& python_version) {
  std::vector<EntryPoint> rest = console;
  std::vector<EntryPoint> out;
  std::string major = python_version.substr(0, python_version.find('.'));
  auto take = [&](const std::string& name) -> std::optional<EntryPoint> {
    for (auto it = rest.begin(); it != rest.end(); ++it) {
      if (it->name == name) {
        EntryPoint ep = *it;
        rest.erase(it);
        return ep;
      }
    }
    return std::nullopt;
  };
  auto renamed = [](EntryPoint ep, std::string name) {
    ep.name = std::move(name);
    return ep;
  };
  if (auto pip = take("pip")) {
    out.push_back(renamed(*pip, "pip"));
    out.push_back(renamed(*pip, "pip" + major));
    out.push_back(renamed(*pip, "pip" + python_version));
    std::erase_if(rest, [](const EntryPoint& e) { return is_versioned_pip(e.name); });
  }
  if (auto ei = take("easy_install")) {
    out.push_back(renamed(*ei, "easy_install"));
    out.push_back(renamed(*ei, "easy_install-" + python_version));
    std::erase_if(rest, [](const EntryPoint& e) { return is_versioned_easy_install(e.name); });
  }
  out.insert(out.end(), rest.begin(), rest.end());
  return out;
}

std::string script_shebang(const std::string& executable) {
  std::string exe = enquote_executable(executable);
  // distlib _build_shebang: len(executable) + len(post_interp) + 3 for "#!" and "\n".
  bool simple = exe.find(' ') == std::string::npos && exe.size() + 3 <= kMaxShebangLength;
  if (simple) return "#!" + exe + "\n";
  // Valid sh and valid Python: sh runs the exec line, Python sees two string literals.
  return "#!/bin/sh\n'''exec' " + exe + " \"$0\" \"$@\"\n' '''\n";
}

std::string launcher_script(const std::string& executable, const EntryPoint& ep) {
  std::string import_name = ep.attr.substr(0, ep.attr.find('.'));
  return script_shebang(executable) +
         "# -*- coding: utf-8 -*-\n"
         "import re\n"
         "import sys\n"
         "from " +
         ep.module + " import " + import_name +
         "\n"
         "if __name__ == '__main__':\n"
         "    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n"
         "    sys.exit(" +
         ep.attr + "())\n";
}

std::optional<std::string> fix_script(std::string_view data, const std::string& executable) {
  if (!data.starts_with("#!python")) return std::nullopt;
  size_t nl = data.find('\n');
  std::string_view rest = nl == std::string_view::npos ? std::string_view() : data.substr(nl + 1);
  return script_shebang(executable) + std::string(rest);
}

std::string normalize_name(std::string_view name) {
  std::string out;
  bool in_sep = false;
  for (char c : name) {
    if (c == '-' || c == '_' || c == '.') {
      in_sep = true;
      continue;
    }
    if (in_sep && !out.empty()) out.push_back('-');
    in_sep = false;
    out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  }
  return out;
}

std::string normalize_version(std::string_view version) {
  std::string v = lower(strip(version));
  if (v.starts_with('v')) v.erase(0, 1);
  std::optional<std::string> canon = canonical_version(v);
  return canon ? *canon : v;
}

std::optional<std::string> metadata_field(std::string_view text, std::string_view field) {
  std::string want = lower(field);
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = text.substr(pos, nl - pos);
    pos = nl + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) break;  // end of the headers; the body (description) follows
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || std::isspace(static_cast<unsigned char>(line[0]))) {
      continue;
    }
    if (lower(strip(line.substr(0, colon))) == want) {
      return std::string(strip(line.substr(colon + 1)));
    }
  }
  return std::nullopt;
}

std::optional<WheelFileName> parse_wheel_file_name(std::string_view file_name) {
  if (!file_name.ends_with(".whl")) return std::nullopt;
  file_name.remove_suffix(4);
  size_t d1 = file_name.find('-');
  if (d1 == std::string_view::npos || d1 == 0) return std::nullopt;
  size_t d2 = file_name.find('-', d1 + 1);
  if (d2 == std::string_view::npos || d2 == d1 + 1) return std::nullopt;
  return WheelFileName{std::string(file_name.substr(0, d1)),
                       std::string(file_name.substr(d1 + 1, d2 - d1 - 1))};
}

std::string relative_to(const std::string& path, const std::string& dir) {
  auto split = [](const std::string& p) {
    std::vector<std::string> parts;
    size_t pos = 0;
    while (pos <= p.size()) {
      size_t s = p.find('/', pos);
      if (s == std::string::npos) s = p.size();
      if (s > pos) parts.push_back(p.substr(pos, s - pos));
      pos = s + 1;
    }
    return parts;
  };
  std::vector<std::string> a = split(path), b = split(dir);
  size_t common = 0;
  while (common < a.size() && common < b.size() && a[common] == b[common]) ++common;
  std::string out;
  for (size_t k = common; k < b.size(); ++k) out += out.empty() ? ".." : "/..";
  for (size_t k = common; k < a.size(); ++k) out += (out.empty() ? "" : "/") + a[k];
  return out.empty() ? "." : out;
}

}  // namespace mat::wheel_internal
