#include "cache/extract_checks.h"

#include <fcntl.h>
#include <simdjson.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <limits>

#include "materializer/base/fs.h"
#include "materializer/base/hash.h"

namespace mat::cache {

// --- expansion limits -------------------------------------------------------------------------

ExpansionBudget::ExpansionBudget(const ExtractLimits& limits, std::string shown,
                                 int64_t archive_bytes)
    : limits_(limits), shown_(std::move(shown)), archive_bytes_(archive_bytes) {}

int64_t ExpansionBudget::byte_limit() const {
  int64_t archive = archive_bytes_.load(std::memory_order_relaxed);
  int64_t ratio = std::max<int64_t>(limits_.max_expansion_ratio, 0);
  // Saturating: a huge --max-expansion-ratio must not wrap around.
  int64_t by_ratio = archive > 0 && ratio > std::numeric_limits<int64_t>::max() / archive
                         ? std::numeric_limits<int64_t>::max()
                         : archive * ratio;
  return std::min(limits_.max_expanded_bytes, std::max(limits_.ratio_grace_bytes, by_ratio));
}

Status ExpansionBudget::charge(std::atomic<int64_t>& counter, int64_t n, const char* what) {
  int64_t total = counter.fetch_add(n, std::memory_order_relaxed) + n;
  if (total <= byte_limit()) return Status::Ok();
  return limit_error(what);
}

Status ExpansionBudget::decoded_total(int64_t total) {
  int64_t seen = decoded_.load(std::memory_order_relaxed);
  while (total > seen && !decoded_.compare_exchange_weak(seen, total)) {
  }
  if (total <= byte_limit()) return Status::Ok();
  return limit_error("decompressed");
}

Status ExpansionBudget::limit_error(const char* what) const {
  if (limits_.max_expanded_bytes <= byte_limit()) {
    return InvalidInput(shown_ + ": expands to more than " +
                        format_bytes(limits_.max_expanded_bytes) + " (" + what +
                        "), the limit per archive: extraction stopped; if the package is genuine, "
                        "rerun with a larger --max-expanded-size");
  }
  return InvalidInput(shown_ + ": expands to more than " +
                      std::to_string(limits_.max_expansion_ratio) + " times its " +
                      format_bytes(archive_bytes_.load(std::memory_order_relaxed)) + " (over " +
                      format_bytes(byte_limit()) + " " + what +
                      "): extraction stopped; if the package is genuine, rerun with a larger "
                      "--max-expansion-ratio");
}

Status ExpansionBudget::member() {
  return expect_members(members_.fetch_add(1, std::memory_order_relaxed) + 1);
}

Status ExpansionBudget::expect_members(int64_t n) const {
  if (n <= limits_.max_members) return Status::Ok();
  return InvalidInput(shown_ + ": has more than " + std::to_string(limits_.max_members) +
                      " members (files, links and directories): extraction stopped; if the "
                      "package is genuine, rerun with a larger --max-files-per-package");
}

std::string format_bytes(int64_t n) {
  static const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (n < 1024) return std::to_string(n) + (n == 1 ? " byte" : " bytes");
  double v = static_cast<double>(n);
  int unit = -1;
  while (v >= 1024 && unit < 5) {
    v /= 1024;
    ++unit;
  }
  char buf[32];
  if (v == static_cast<double>(static_cast<int64_t>(v))) {
    std::snprintf(buf, sizeof buf, "%lld %s", static_cast<long long>(v), kUnits[unit]);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f %s", v, kUnits[unit]);
  }
  return buf;
}

// --- conda metadata ---------------------------------------------------------------------------

namespace {

using Type = ManifestEntry::Type;

constexpr const char* kPathsJson = "info/paths.json";
constexpr const char* kLegacyFiles = "info/files";

// The link stage's rule (materializer/link_plan.cc, is_safe_relative): relative, no empty, "."
// or ".." component.
bool is_plain_relative(std::string_view p) {
  if (p.empty() || p.front() == '/') return false;
  size_t start = 0;
  while (start <= p.size()) {
    size_t slash = p.find('/', start);
    if (slash == std::string_view::npos) slash = p.size();
    std::string_view comp = p.substr(start, slash - start);
    if (comp.empty() || comp == "." || comp == "..") return false;
    start = slash + 1;
  }
  return true;
}

// Reads `rel` (a regular file of the tree, listed in `m`) into a buffer simdjson can parse.
Result<simdjson::padded_string> read_metadata(int root_fd, const Manifest& m, const char* rel,
                                              const std::string& where) {
  const ManifestEntry& e = m.at(rel);
  if (e.type != Type::kFile) {
    return Corrupt(where + ": " + rel + " is a " + type_name(e.type) + ", not a regular file");
  }
  if (e.size > kMaxCondaMetadataBytes) {
    return Corrupt(where + ": " + rel + " has " + format_bytes(e.size) + ", more than the " +
                   format_bytes(kMaxCondaMetadataBytes) + " any package needs");
  }
  // Its parents are directories this extraction made (parent_fd() never follows a symlink),
  // and the file itself is opened without following one.
  UniqueFd fd(::openat(root_fd, rel, O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus(where + ": open " + rel, errno);
  simdjson::padded_string text(static_cast<size_t>(e.size));
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::pread(fd.get(), text.data() + done, text.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(where + ": read " + rel, errno);
    if (n == 0) return Corrupt(where + ": " + rel + " shrank while being read");
    done += static_cast<size_t>(n);
  }
  return text;
}

struct PathsEntry {
  std::string_view path;
  std::string_view type = "hardlink";
  std::string_view sha256;  // "" if not given
  int64_t size = -1;        // -1 if not given
};

// One element of "paths"; an error message fragment when malformed.
std::string parse_paths_entry(simdjson::ondemand::value item, PathsEntry* out) {
  simdjson::ondemand::object obj;
  if (item.get_object().get(obj) != simdjson::SUCCESS) {
    return "an entry of 'paths' is not an object";
  }
  // Keys are compared unescaped, as the link stage's parser reads them, and a key may appear
  // once: with "size_in_bytes" twice, this check and the conda-meta record could each take a
  // different one.
  constexpr unsigned kPath = 1, kType = 2, kSha = 4, kSize = 8;
  unsigned seen = 0;
  auto once = [&](unsigned bit) {
    bool first = (seen & bit) == 0;
    seen |= bit;
    return first;
  };
  for (auto field : obj) {
    std::string_view key;
    simdjson::ondemand::value v;
    if (field.unescaped_key().get(key) != simdjson::SUCCESS ||
        field.value().get(v) != simdjson::SUCCESS) {
      return "not valid JSON";
    }
    const unsigned bit = key == "_path"           ? kPath
                         : key == "path_type"     ? kType
                         : key == "sha256"        ? kSha
                         : key == "size_in_bytes" ? kSize
                                                  : 0;
    if (bit == 0) continue;
    if (!once(bit)) return "an entry of 'paths' repeats the key '" + std::string(key) + "'";
    bool null = false;
    if (v.is_null().get(null) != simdjson::SUCCESS) return "not valid JSON";
    if (bit == kPath) {
      if (v.get_string().get(out->path) != simdjson::SUCCESS) return "'_path' is not a string";
    } else if (null) {
      continue;  // as if absent
    } else if (bit == kType) {
      if (v.get_string().get(out->type) != simdjson::SUCCESS) return "'path_type' is not a string";
    } else if (bit == kSha) {
      if (v.get_string().get(out->sha256) != simdjson::SUCCESS) return "'sha256' is not a string";
    } else if (v.get_int64().get(out->size) != simdjson::SUCCESS || out->size < 0) {
      return "'size_in_bytes' is not a size";
    }
  }
  if ((seen & kPath) == 0) return "an entry of 'paths' has no '_path'";
  return "";
}

// Checks one paths.json entry against the extracted tree.
Status check_paths_entry(const PathsEntry& p, const Manifest& m, const std::string& where) {
  const std::string path(p.path);
  auto subject = [&] { return where + ": " + path + ": "; };
  if (!is_plain_relative(path)) {
    return Corrupt(where + ": info/paths.json lists '" + path +
                   "', which is not a plain relative path");
  }
  Type want;
  if (p.type == "hardlink") {
    want = Type::kFile;
  } else if (p.type == "softlink") {
    want = Type::kSymlink;
  } else if (p.type == "directory") {
    want = Type::kDir;
  } else {
    return Corrupt(subject() + "unknown path_type '" + std::string(p.type) +
                   "' in info/paths.json");
  }
  auto it = m.find(path);
  if (it == m.end()) {
    return Corrupt(subject() + "listed in info/paths.json (" + std::string(p.type) +
                   ") but not in the archive");
  }
  const ManifestEntry& e = it->second;
  if (e.type != want) {
    return Corrupt(subject() + "info/paths.json says " + std::string(p.type) +
                   ", the archive has a " + type_name(e.type));
  }
  if (want != Type::kFile) return Status::Ok();  // a softlink's sha256/size are its target's
  if (p.size >= 0 && p.size != e.size) {
    return Corrupt(subject() + "size mismatch with info/paths.json (paths.json says " +
                   std::to_string(p.size) + " bytes, the archive's file has " +
                   std::to_string(e.size) + ")");
  }
  if (!p.sha256.empty()) {
    if (!is_hex(p.sha256, 64)) {
      return Corrupt(subject() + "info/paths.json gives '" + std::string(p.sha256) +
                     "' as sha256, which is not 64 hex digits");
    }
    std::string have = e.digest_hex();
    std::string want_hex(p.sha256);
    std::transform(want_hex.begin(), want_hex.end(), want_hex.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (want_hex != have) {
      return Corrupt(subject() + "sha256 mismatch with info/paths.json (paths.json says " +
                     want_hex + ", the archive's file has " + have + ")");
    }
  }
  return Status::Ok();
}

Status check_paths_json(int root_fd, const Manifest& m, const std::string& where) {
  MAT_ASSIGN_OR_RETURN(simdjson::padded_string text, read_metadata(root_fd, m, kPathsJson, where));
  auto malformed = [&](const std::string& why) {
    return Corrupt(where + ": info/paths.json is malformed: " + why);
  };
  // On-demand: no document tree (for 200k entries a DOM costs several times the text).
  simdjson::ondemand::parser parser;
  simdjson::ondemand::document doc;
  simdjson::ondemand::object top;
  simdjson::ondemand::array paths;
  if (parser.iterate(text).get(doc) != simdjson::SUCCESS ||
      doc.get_object().get(top) != simdjson::SUCCESS) {
    return malformed("not a JSON object");
  }
  if (top.find_field_unordered("paths").get_array().get(paths) != simdjson::SUCCESS) {
    return malformed("'paths' is not a list");
  }
  for (auto item : paths) {
    simdjson::ondemand::value v;
    if (item.get(v) != simdjson::SUCCESS) return malformed("not valid JSON");
    PathsEntry p;
    if (std::string why = parse_paths_entry(v, &p); !why.empty()) return malformed(why);
    MAT_RETURN_IF_ERROR(check_paths_entry(p, m, where));
  }
  return Status::Ok();
}

// conda's yield_lines: stripped lines, skipping blanks and '#' comments.
Status check_legacy_files(int root_fd, const Manifest& m, const std::string& where) {
  MAT_ASSIGN_OR_RETURN(simdjson::padded_string text,
                       read_metadata(root_fd, m, kLegacyFiles, where));
  std::string_view all(text.data(), text.size());
  size_t pos = 0;
  while (pos < all.size()) {
    size_t end = all.find('\n', pos);
    if (end == std::string_view::npos) end = all.size();
    std::string_view line = all.substr(pos, end - pos);
    pos = end + 1;
    const char* kSpace = " \t\r\n\f\v";
    size_t b = line.find_first_not_of(kSpace);
    if (b == std::string_view::npos) continue;
    line = line.substr(b, line.find_last_not_of(kSpace) - b + 1);
    if (line.front() == '#') continue;
    const std::string path(line);
    if (!is_plain_relative(path)) {
      return Corrupt(where + ": info/files lists '" + path +
                     "', which is not a plain relative path");
    }
    if (!m.count(path)) {
      return Corrupt(where + ": " + path + ": listed in info/files but not in the archive");
    }
  }
  return Status::Ok();
}

}  // namespace

Status check_conda_metadata(int root_fd, const Manifest& m, const std::string& where) {
  if (m.count(kPathsJson)) return check_paths_json(root_fd, m, where);
  if (m.count(kLegacyFiles)) return check_legacy_files(root_fd, m, where);
  return Status::Ok();
}

}  // namespace mat::cache
