// requirements.txt in its locked form: every requirement pinned with `==` and carrying its
// allowed hashes, as `pip-compile --generate-hashes`, `pdm export` and `poetry export` write:
//
//   --index-url https://pypi.org/simple       # options: -i, --extra-index-url, -f, -r ...
//   certifi==2024.2.2 --hash=sha256:0569... --hash=sha256:dc38...   # usually one per line,
//                                                                    # joined by backslashes
//   urllib3==1.26.15 ; python_version >= "3.8" --hash sha256:8a38...
//   pkg @ https://host/pkg-1.0-py3-none-any.whl --hash=sha256:...
//
// Lines are read as pip reads them: a trailing backslash joins the next line, `#` after
// whitespace starts a comment, `-r` includes another file (relative to the including file).
// We never solve: an unpinned requirement, a pin without a hash and `-e` are errors naming the
// file and the line where the requirement starts. Pins come back with needs_index = true and
// allowed_sha256 set; direct URLs name their one file. Every requirement is `requested`: the
// user named them all. Relative paths in direct requirements and --find-links are resolved
// against the file's directory (pip uses the cwd; the file's directory is what a lock means).
#include <algorithm>
#include <cctype>

#include "materializer/base/fs.h"
#include "materializer/base/hash.h"
#include "materializer/base/text.h"
#include "materializer/base/url.h"
#include "materializer/local_files.h"
#include "materializer/lock_internal.h"

namespace mat::lock_internal {
namespace {

constexpr int kMaxIncludeDepth = 16;
constexpr const char* kPypiSimple = "https://pypi.org/simple";

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

bool is_space(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }

// pip's COMMENT_RE, `(^|\s+)#.*$`, removed.
std::string_view strip_comment(std::string_view line) {
  for (size_t i = 0; i < line.size(); ++i) {
    if (line[i] == '#' && (i == 0 || is_space(line[i - 1]))) return line.substr(0, i);
  }
  return line;
}

bool is_comment_line(std::string_view line) { return trim(line).starts_with("#"); }

struct Logical {
  int line;  // where it starts
  std::string text;
};

// pip's join_lines + ignore_comments: backslash continuations joined, comments removed, blank
// lines dropped. A comment line ends a continuation.
std::vector<Logical> logical_lines(std::string_view content) {
  std::vector<Logical> out;
  std::string pending;
  int primary = 0;
  bool continued = false;
  auto emit = [&](int line, std::string text) {
    std::string_view t = trim(strip_comment(text));
    if (!t.empty()) out.push_back({line, std::string(t)});
  };
  int number = 0;
  size_t i = 0;
  while (i < content.size()) {
    size_t nl = content.find('\n', i);
    if (nl == std::string_view::npos) nl = content.size();
    std::string_view line = content.substr(i, nl - i);
    i = nl + 1;
    ++number;
    if (line.ends_with('\r')) line.remove_suffix(1);
    bool comment = is_comment_line(line);
    if (!line.ends_with('\\') || comment) {
      if (continued) {
        pending += comment ? " " + std::string(line) : std::string(line);
        emit(primary, std::move(pending));
        pending.clear();
        continued = false;
      } else {
        emit(number, std::string(line));
      }
      continue;
    }
    if (!continued) primary = number;
    continued = true;
    while (line.ends_with('\\')) line.remove_suffix(1);
    pending += line;
  }
  if (continued) emit(primary, std::move(pending));
  return out;
}

std::vector<std::string> split_ws(std::string_view s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && is_space(s[i])) ++i;
    size_t j = i;
    while (j < s.size() && !is_space(s[j])) ++j;
    if (j > i) out.emplace_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

bool is_name_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
}

bool is_archive_name(std::string_view f) {
  for (const char* ext : {".whl", ".tar.gz", ".zip", ".tgz", ".tar.bz2", ".tar.xz", ".tar"}) {
    if (f.ends_with(ext)) return true;
  }
  return false;
}

bool is_vcs(std::string_view url) {
  return url.starts_with("git+") || url.starts_with("hg+") || url.starts_with("svn+") ||
         url.starts_with("bzr+");
}

// A location rather than a name: a URL, or a path (pip treats anything with a slash or that
// starts with '.' as one).
bool is_location(std::string_view s) {
  return has_url_scheme(s) || s.starts_with('.') || s.starts_with('/');
}

// ---- options

enum class Opt {
  kInclude,
  kConstraint,
  kIndexUrl,
  kExtraIndexUrl,
  kFindLinks,
  kNoIndex,
  kEditable,
  kHash,
  kIgnoredWithValue,
  kIgnored,
};

struct OptionSpec {
  const char* short_name;  // "" if none
  const char* long_name;
  Opt opt;
};

constexpr OptionSpec kOptions[] = {
    {"-r", "--requirement", Opt::kInclude},
    {"-c", "--constraint", Opt::kConstraint},
    {"-i", "--index-url", Opt::kIndexUrl},
    {"", "--extra-index-url", Opt::kExtraIndexUrl},
    {"-f", "--find-links", Opt::kFindLinks},
    {"", "--no-index", Opt::kNoIndex},
    {"-e", "--editable", Opt::kEditable},
    {"", "--hash", Opt::kHash},
    {"", "--no-binary", Opt::kIgnoredWithValue},
    {"", "--only-binary", Opt::kIgnoredWithValue},
    {"", "--trusted-host", Opt::kIgnoredWithValue},
    {"", "--use-feature", Opt::kIgnoredWithValue},
    {"-C", "--config-settings", Opt::kIgnoredWithValue},
    {"", "--global-option", Opt::kIgnoredWithValue},
    {"", "--install-option", Opt::kIgnoredWithValue},
    {"", "--require-hashes", Opt::kIgnored},
    {"", "--pre", Opt::kIgnored},
    {"", "--prefer-binary", Opt::kIgnored},
};

bool takes_value(Opt o) { return o != Opt::kNoIndex && o != Opt::kIgnored; }

// Matches tokens[i] against the options; sets opt and value, advancing i past what it used.
// Returns false for an unknown option; an option missing its value gets value "".
bool next_option(const std::vector<std::string>& tokens, size_t& i, Opt& opt, std::string& name,
                 std::string& value) {
  const std::string& tok = tokens[i++];
  for (const OptionSpec& spec : kOptions) {
    std::string_view l(spec.long_name), s(spec.short_name);
    std::string_view t(tok);
    std::optional<std::string> inline_value;
    if (t == l || (!s.empty() && t == s)) {
      // value, if any, is the next token
    } else if (t.starts_with(l) && t.size() > l.size() && t[l.size()] == '=') {
      inline_value = std::string(t.substr(l.size() + 1));
    } else if (!s.empty() && t.starts_with(s) && t.size() > s.size() && takes_value(spec.opt) &&
               !t.starts_with("--")) {
      inline_value = std::string(t.substr(s.size()));  // "-rfile", "-ihttps://..."
    } else {
      continue;
    }
    opt = spec.opt;
    name = spec.long_name;
    if (!takes_value(opt)) return !inline_value;
    if (inline_value) {
      value = *inline_value;
    } else {
      value = i < tokens.size() ? tokens[i++] : "";
    }
    return true;
  }
  name = tok;
  return false;
}

// ---- the reader

struct Reader {
  std::vector<PackageRef> packages;
  std::string primary_index;
  std::vector<std::string> extra_indexes;
  std::vector<std::string> find_links;
  bool no_index = false;
  std::vector<std::string> open_files;  // absolute paths being read, for cycles
  std::vector<InputFile> included;      // every `-r` file read, with the sha256 of its bytes
  const LocalFiles* local_files = nullptr;  // where includes may be read from; null: anywhere

  Status read(std::string_view content, const std::string& path, const std::string& dir);
  Status option_line(const Logical& l, const std::string& path, const std::string& dir);
  Status requirement_line(const Logical& l, const std::string& path, const std::string& dir);
  Status include(const std::string& target, const Logical& l, const std::string& path,
                 const std::string& dir);
};

Status Reader::read(std::string_view content, const std::string& path, const std::string& dir) {
  for (const Logical& l : logical_lines(content)) {
    if (l.text.starts_with('-')) {
      MAT_RETURN_IF_ERROR(option_line(l, path, dir));
    } else {
      MAT_RETURN_IF_ERROR(requirement_line(l, path, dir));
    }
  }
  return Status::Ok();
}

Status Reader::include(const std::string& target, const Logical& l, const std::string& path,
                       const std::string& dir) {
  if (has_url_scheme(target) && !is_file_url(target)) {
    return input_error(
        path, l.line,
        "-r " + shown_url(target, 200) + ": remote requirement files are not supported");
  }
  std::string file = file_url_to_path(resolve_location(target, dir));
  if (local_files != nullptr) {
    // An include is a local file named by the lock: the same policy as file:// URLs, checked
    // before anything is read (a hostile include's first line would be echoed in an error).
    Result<std::string> allowed = local_files->check_path(file);
    if (!allowed.ok()) {
      return input_error(path, l.line, "-r " + printable(target) + ": " + allowed.status().message());
    }
    file = *allowed;
  }
  if (std::find(open_files.begin(), open_files.end(), file) != open_files.end()) {
    return input_error(
        path, l.line,
        "-r " + printable(target) + ": includes itself (cycle through " + printable(file) + ")");
  }
  if (open_files.size() >= static_cast<size_t>(kMaxIncludeDepth)) {
    return input_error(path, l.line, "-r " + printable(target) + ": includes nested too deeply");
  }
  Result<std::string> content = read_file(file);
  if (!content.ok()) {
    const Status& s = content.status();
    return Status(s.code(), path + ":" + std::to_string(l.line) +
                                ": cannot read included requirements file: " + s.message());
  }
  open_files.push_back(file);
  included.push_back(InputFile{file, sha256_hex(*content)});
  Status st = read(*content, file, dir_name(file));
  open_files.pop_back();
  return st;
}

Status Reader::option_line(const Logical& l, const std::string& path, const std::string& dir) {
  std::vector<std::string> tokens = split_ws(l.text);
  size_t i = 0;
  while (i < tokens.size()) {
    Opt opt = Opt::kIgnored;
    std::string name, value;
    if (!next_option(tokens, i, opt, name, value)) {
      return input_error(path, l.line,
                         "unknown option '" + name +
                             "' (requirements files accept -r, -c, -i/--index-url, "
                             "--extra-index-url, -f/--find-links, --no-index, --no-binary, "
                             "--only-binary, --trusted-host, --require-hashes, --pre)");
    }
    if (takes_value(opt) && value.empty()) {
      return input_error(path, l.line, "option '" + name + "' needs a value");
    }
    switch (opt) {
      case Opt::kInclude:
        MAT_RETURN_IF_ERROR(include(value, l, path, dir));
        break;
      case Opt::kIndexUrl:
        primary_index = value;
        break;
      case Opt::kExtraIndexUrl:
        extra_indexes.push_back(value);
        break;
      case Opt::kFindLinks:
        find_links.push_back(has_url_scheme(value) ? value : resolve_location(value, dir));
        break;
      case Opt::kNoIndex:
        no_index = true;
        break;
      case Opt::kEditable:
        return input_error(path, l.line,
                           "editable requirement '-e " + printable(value) +
                               "': editable installs are out of scope; install the project "
                               "separately");
      case Opt::kHash:
        return input_error(path, l.line,
                           "'--hash' without a requirement before it (a missing `\\` at the end "
                           "of the previous line?)");
      case Opt::kConstraint:        // constraints pin nothing by themselves: nothing to install
      case Opt::kIgnoredWithValue:  // build and host options: no effect on locked wheels
      case Opt::kIgnored:
        break;
    }
  }
  return Status::Ok();
}

// "name-version-..." of a wheel, or "name-version.tar.gz" of an sdist.
void name_version_from_file(const std::string& file, PackageRef& ref) {
  std::string stem = file;
  for (const char* ext : {".whl", ".tar.gz", ".zip", ".tgz", ".tar.bz2", ".tar.xz", ".tar"}) {
    if (stem.ends_with(ext)) {
      stem.resize(stem.size() - std::string_view(ext).size());
      break;
    }
  }
  size_t dash = file.ends_with(".whl") ? stem.find('-') : stem.rfind('-');
  if (dash == std::string::npos) return;
  if (ref.name.empty()) ref.name = stem.substr(0, dash);
  if (ref.version.empty()) {
    size_t end = stem.find('-', dash + 1);
    ref.version = stem.substr(dash + 1, end == std::string::npos ? end : end - dash - 1);
  }
}

// Hashes from `--hash=...` options after the requirement (and a URL's #sha256= fragment).
Status collect_hashes(const std::vector<std::string>& tokens, const Logical& l,
                      const std::string& path, const std::string& subject,
                      std::vector<std::string>& sha256, std::vector<std::string>& other) {
  size_t i = 0;
  while (i < tokens.size()) {
    Opt opt = Opt::kIgnored;
    std::string name, value;
    bool known = next_option(tokens, i, opt, name, value);
    bool per_requirement = opt == Opt::kHash || opt == Opt::kIgnoredWithValue;
    if (!known || !per_requirement) {
      return input_error(path, l.line,
                         subject + ": option '" + name + "' is not allowed after a requirement");
    }
    if (opt != Opt::kHash) continue;
    size_t colon = value.find(':');
    std::string algo = value.substr(0, colon == std::string::npos ? 0 : colon);
    if (algo != "sha256") {
      if (colon == std::string::npos || algo.empty()) {
        return input_error(
            path, l.line,
            subject + ": --hash '" + printable(value, 80) + "' is not <algorithm>:<hex>");
      }
      other.push_back(algo);
      continue;
    }
    std::optional<std::string> hex = lower_hex(std::string_view(value).substr(colon + 1), 64);
    if (!hex) {
      return input_error(
          path, l.line,
          subject + ": --hash '" + printable(value, 80) + "' is not sha256:<64 hex digits>");
    }
    if (std::find(sha256.begin(), sha256.end(), *hex) == sha256.end()) sha256.push_back(*hex);
  }
  return Status::Ok();
}

// Splits "requirement [; marker] --options" into its parts; pip's break_args_options: the
// options start at the first whitespace-separated token beginning with '-'.
void split_options(const std::string& text, std::string& req, std::string& opts) {
  size_t at = std::string::npos;
  for (size_t i = 1; i < text.size(); ++i) {
    if (text[i] == '-' && is_space(text[i - 1])) {
      at = i;
      break;
    }
  }
  req = std::string(trim(std::string_view(text).substr(0, at)));
  opts = at == std::string::npos ? "" : text.substr(at);
}

Status direct_url(const std::string& location, const std::vector<std::string>& sha256,
                  const Logical& l, const std::string& path, const std::string& dir,
                  PackageRef& ref) {
  std::string subject = ref.name.empty() ? printable(location) : "'" + printable(ref.name) + "'";
  if (is_vcs(location)) {
    ref.url = location;
    ref.source_kind = location.starts_with("git+") ? "git" : "vcs";
  } else {
    ref.url = has_url_scheme(location) ? location : resolve_location(location, dir);
  }
  std::string fragment;
  if (size_t hash = ref.url.find('#'); hash != std::string::npos) fragment = ref.url.substr(hash);
  if (ref.name.empty()) {
    if (size_t egg = fragment.find("egg="); egg != std::string::npos) {
      ref.name = fragment.substr(egg + 4, fragment.find('&', egg) - egg - 4);
    }
  }
  if (!ref.source_kind.empty()) {
    ref.file_name = url_file_name(url_strip_fragment(ref.url));
    if (ref.name.empty()) ref.name = ref.file_name;
    return Status::Ok();
  }
  std::vector<std::string> hashes = sha256;
  if (size_t f = fragment.find("sha256="); f != std::string::npos) {
    if (auto hex = lower_hex(std::string_view(fragment).substr(f + 7, 64), 64)) {
      if (std::find(hashes.begin(), hashes.end(), *hex) == hashes.end()) hashes.push_back(*hex);
    }
  }
  ref.url = url_strip_fragment(ref.url);
  ref.file_name = url_file_name(ref.url);
  if (!is_archive_name(ref.file_name)) {
    if (!is_file_url(ref.url)) {
      return input_error(
          path, l.line,
          subject + ": " + shown_url(ref.url, 200) + " is neither a wheel nor a source archive");
    }
    ref.source_kind = "directory";  // a local project directory
    if (ref.name.empty()) ref.name = ref.file_name;
    return Status::Ok();
  }
  if (hashes.empty()) {
    return input_error(path, l.line,
                       subject + ": direct URL has no --hash=sha256:...; add the file's hash");
  }
  name_version_from_file(ref.file_name, ref);
  ref.sha256 = hashes.front();
  ref.allowed_sha256 = hashes;
  WheelCandidate c{ref.url, ref.file_name, ref.sha256, -1};
  (ref.file_name.ends_with(".whl") ? ref.wheels : ref.sdists).push_back(std::move(c));
  return Status::Ok();
}

Status Reader::requirement_line(const Logical& l, const std::string& path, const std::string& dir) {
  std::string req, opts;
  split_options(l.text, req, opts);
  PackageRef ref;
  ref.kind = PackageKind::kPypi;
  ref.line = l.line;
  std::string location;  // direct URL or path, if any
  std::string spec;
  if (is_location(req)) {
    // pip: a URL's marker must follow "; " (a ';' inside a URL is not one).
    size_t semi = req.find("; ");
    location = std::string(trim(req.substr(0, semi)));
    if (semi != std::string::npos) ref.marker = std::string(trim(req.substr(semi + 2)));
  } else {
    size_t n = 0;
    while (n < req.size() && is_name_char(req[n])) ++n;
    ref.name = req.substr(0, n);
    std::string_view rest = trim(std::string_view(req).substr(n));
    if (rest.starts_with('[')) {  // extras: only change dependencies, which are pinned too
      size_t close = rest.find(']');
      if (close == std::string_view::npos) {
        return input_error(path, l.line,
                           "requirement '" + printable(req) + "': unclosed '[' of extras");
      }
      rest = trim(rest.substr(close + 1));
    }
    if (rest.starts_with('@')) {
      rest = trim(rest.substr(1));
      size_t end = 0;
      while (end < rest.size() && !is_space(rest[end])) ++end;
      location = std::string(rest.substr(0, end));
      rest = trim(rest.substr(end));
      if (rest.starts_with(';')) ref.marker = std::string(trim(rest.substr(1)));
    } else {
      size_t semi = rest.find(';');
      if (semi != std::string_view::npos) ref.marker = std::string(trim(rest.substr(semi + 1)));
      for (char c : rest.substr(0, semi)) {
        if (!is_space(c)) spec += c;
      }
    }
    if (ref.name.empty()) {
      return input_error(path, l.line, "cannot read requirement '" + printable(req) + "'");
    }
  }
  std::vector<std::string> sha256, other;
  std::string subject =
      ref.name.empty() ? "'" + printable(location) + "'" : "'" + printable(ref.name) + "'";
  MAT_RETURN_IF_ERROR(collect_hashes(split_ws(opts), l, path, subject, sha256, other));
  if (!location.empty()) {
    MAT_RETURN_IF_ERROR(direct_url(location, sha256, l, path, dir, ref));
    packages.push_back(std::move(ref));
    return Status::Ok();
  }
  // A pin: exactly one `==` (or `===`) with a full version.
  std::string version;
  if (spec.starts_with("===")) {
    version = spec.substr(3);
  } else if (spec.starts_with("==")) {
    version = spec.substr(2);
  }
  if (version.empty() || version.find_first_of("*,<>=!~()") != std::string::npos) {
    return input_error(path, l.line,
                       "requirement '" + printable(req) +
                           "' is not pinned with ==<version>: materializer "
                           "installs locked requirements only (generate them with pip-compile "
                           "--generate-hashes)");
  }
  ref.version = version;
  if (sha256.empty()) {
    std::string why = other.empty() ? "pin has no --hash"
                                    : "pin has no sha256 --hash (only " + other.front() + ")";
    return input_error(
        path, l.line,
        subject + " " + version + ": " + why + "; generate with pip-compile --generate-hashes");
  }
  ref.allowed_sha256 = std::move(sha256);
  ref.needs_index = true;
  packages.push_back(std::move(ref));
  return Status::Ok();
}

// A known option at the start of a line (for detection).
bool starts_with_option(std::string_view line) {
  std::vector<std::string> tokens = split_ws(line);
  size_t i = 0;
  Opt opt = Opt::kIgnored;
  std::string name, value;
  return !tokens.empty() && next_option(tokens, i, opt, name, value);
}

// A requirement at the start of a line (for detection): a name followed by a version
// operator, extras, '@', ';', an option or nothing; a wheel/sdist/VCS URL; or a local path
// (not a conda archive: those belong to @EXPLICIT files).
bool starts_with_requirement(std::string_view line) {
  if (is_location(line)) {
    std::string_view loc = line.substr(0, line.find_first_of(" \t"));
    std::string_view file = loc.substr(0, loc.find('#'));
    if (is_vcs(loc) || loc.find("#egg=") != std::string_view::npos) return true;
    if (file.ends_with(".conda") || file.ends_with(".tar.bz2")) return false;
    return is_archive_name(file) || !has_url_scheme(loc);
  }
  size_t n = 0;
  while (n < line.size() && is_name_char(line[n])) ++n;
  if (n == 0 || !std::isalnum(static_cast<unsigned char>(line[0]))) return false;
  std::string_view rest = trim(line.substr(n));
  if (rest.empty()) return true;
  if (rest.starts_with("--")) return true;
  if (rest.starts_with("=") && !rest.starts_with("==")) return false;  // TOML `key = value`
  return std::string_view("[=<>!~@;(").find(rest[0]) != std::string_view::npos;
}

// "-x..." or "--xyz...": shaped like a pip option (YAML list items are "- ...").
bool option_shaped(std::string_view line) {
  std::string_view rest = line.substr(line.starts_with("--") ? 2 : 1);
  return !rest.empty() && std::isalpha(static_cast<unsigned char>(rest[0]));
}

}  // namespace

// Reads logical lines as the parser does; unknown options are let through (the parser names
// them), known ones and requirements count.
bool looks_like_requirements(std::string_view content) {
  int known = 0;
  for (const Logical& l : logical_lines(content)) {
    std::string_view line = l.text;
    if (line.starts_with('-')) {
      if (!option_shaped(line)) return false;
      known += starts_with_option(line);
      continue;
    }
    if (!starts_with_requirement(line)) return false;
    ++known;
  }
  return known > 0;
}

Result<LockFile> parse_requirements(std::string_view content, const std::string& path,
                                    const std::string& lock_dir, const LocalFiles* local_files) {
  Reader r;
  r.local_files = local_files;
  r.open_files.push_back(file_url_to_path(resolve_location(absolute_path(path), lock_dir)));
  MAT_RETURN_IF_ERROR(r.read(content, path, lock_dir));
  LockFile lock;
  lock.format = LockFormat::kRequirements;
  lock.path = path;
  lock.packages = std::move(r.packages);
  // pip: --index-url replaces the default (PyPI), --extra-index-url adds to it.
  if (!r.primary_index.empty() || !r.extra_indexes.empty()) {
    lock.index.index_urls.push_back(r.primary_index.empty() ? kPypiSimple : r.primary_index);
    for (std::string& u : r.extra_indexes) lock.index.index_urls.push_back(std::move(u));
  }
  lock.index.find_links = std::move(r.find_links);
  lock.index.no_index = r.no_index;
  lock.input_files = std::move(r.included);
  return lock;
}

}  // namespace mat::lock_internal
