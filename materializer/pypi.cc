// Names and wheels: PEP 503 normalisation, PEP 427 file names, and choosing the wheel whose
// best tag ranks highest in the target's sys_tags() order.
#include "materializer/pypi.h"

#include <cctype>
#include <unordered_map>

#include "materializer/pypi_internal.h"

namespace mat::pypi {
namespace {

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (size_t i = 0; i <= s.size(); ++i) {
    if (i == s.size() || s[i] == sep) {
      out.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  }
  return out;
}

// packaging's `^[\w\d._]*$` (non-ASCII bytes stand in for Unicode word characters), non-empty,
// and no "__" (an escaped name never has two separators in a row).
bool valid_wheel_project(std::string_view name) {
  if (name.empty() || name.find("__") != std::string_view::npos) return false;
  for (char c : name) {
    unsigned char u = static_cast<unsigned char>(c);
    if (!std::isalnum(u) && c != '_' && c != '.' && u < 0x80) return false;
  }
  return true;
}

// One dot-separated part of a tag: "cp311", "manylinux_2_17_x86_64".
bool valid_tag_part(std::string_view part) {
  if (part.empty()) return false;
  for (char c : part) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  }
  return true;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

using TagIndex = std::unordered_map<std::string_view, size_t>;

TagIndex index_tags(const TargetPython& target) {
  TagIndex index;
  index.reserve(target.tags.size());
  for (size_t i = 0; i < target.tags.size(); ++i) index.emplace(target.tags[i], i);
  return index;
}

std::optional<size_t> rank_in(const WheelName& wheel, const TagIndex& index) {
  std::optional<size_t> best;
  for (const std::string& tag : wheel.tags) {
    auto it = index.find(tag);
    if (it != index.end() && (!best || it->second < *best)) best = it->second;
  }
  return best;
}

}  // namespace

std::string normalize_name(std::string_view name) {
  std::string out;
  out.reserve(name.size());
  bool in_sep = false;
  for (char c : name) {
    if (c == '-' || c == '_' || c == '.') {
      if (!in_sep) out += '-';
      in_sep = true;
    } else {
      out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      in_sep = false;
    }
  }
  return out;
}

std::optional<WheelName> parse_wheel_name(std::string_view file_name) {
  constexpr std::string_view kExt = ".whl";
  if (file_name.size() <= kExt.size() || file_name.substr(file_name.size() - kExt.size()) != kExt) {
    return std::nullopt;
  }
  std::vector<std::string_view> parts = split(file_name.substr(0, file_name.size() - 4), '-');
  if (parts.size() != 5 && parts.size() != 6) return std::nullopt;
  WheelName w;
  if (!valid_wheel_project(parts[0])) return std::nullopt;
  if (!internal::parse_version(parts[1]) || parts[1].empty() ||
      std::isspace(static_cast<unsigned char>(parts[1].front())) ||
      std::isspace(static_cast<unsigned char>(parts[1].back()))) {
    return std::nullopt;
  }
  w.name = std::string(parts[0]);
  w.version = std::string(parts[1]);
  if (parts.size() == 6) {
    // Build tag: starts with a digit (packaging's `(\d+)(.*)`); used only to break ties.
    if (parts[2].empty() || !std::isdigit(static_cast<unsigned char>(parts[2][0]))) {
      return std::nullopt;
    }
    for (char c : parts[2]) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '.') {
        return std::nullopt;
      }
    }
    w.build = std::string(parts[2]);
  }
  size_t n = parts.size();
  std::vector<std::string_view> pys = split(parts[n - 3], '.');
  std::vector<std::string_view> abis = split(parts[n - 2], '.');
  std::vector<std::string_view> plats = split(parts[n - 1], '.');
  for (const auto* set : {&pys, &abis, &plats}) {
    for (std::string_view p : *set) {
      if (!valid_tag_part(p)) return std::nullopt;
    }
  }
  // Expansion order follows packaging.tags.parse_tag: interpreters x abis x platforms.
  for (std::string_view py : pys) {
    for (std::string_view abi : abis) {
      for (std::string_view plat : plats) {
        w.tags.push_back(lower(py) + "-" + lower(abi) + "-" + lower(plat));
      }
    }
  }
  return w;
}

std::optional<size_t> wheel_rank(const WheelName& wheel, const TargetPython& target) {
  std::optional<size_t> best;
  for (const std::string& tag : wheel.tags) {
    for (size_t i = 0; i < target.tags.size() && (!best || i < *best); ++i) {
      if (target.tags[i] == tag) best = i;
    }
  }
  return best;
}

std::optional<WheelCandidate> pick_wheel(const std::vector<WheelCandidate>& candidates,
                                         const TargetPython& target) {
  // One hash index for all candidates: a lock can list dozens of wheels per package against
  // ~900 target tags.
  TagIndex index = index_tags(target);
  std::optional<size_t> best_rank;
  const WheelCandidate* best = nullptr;
  for (const WheelCandidate& c : candidates) {
    std::optional<WheelName> w = parse_wheel_name(c.file_name);
    if (!w) continue;  // sdists and anything else that is not a wheel
    std::optional<size_t> r = rank_in(*w, index);
    if (r && (!best_rank || *r < *best_rank)) {
      best_rank = r;
      best = &c;
    }
  }
  if (!best) return std::nullopt;
  return *best;
}

}  // namespace mat::pypi
