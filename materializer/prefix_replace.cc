// Prefix-replacement kernels: byte-for-byte ports of conda/core/portability.py (replace_prefix,
// binary_replace, replace_long_shebang) and generate_shebang_for_entry_point. They are hand-
// written scanners rather than std::regex: std::regex is slow on multi-megabyte binaries
// (libpython is ~30 MB) and its multiline semantics differ from Python's `re`.
#include <string.h>

#include <string>
#include <string_view>

#include "materializer/link.h"
#include "materializer/link_internal.h"

namespace mat {
namespace {

// Linux's BINPRM_BUF_SIZE - 1, conda's MAX_SHEBANG_LENGTH on Linux and macOS.
constexpr size_t kMaxShebangLength = 127;

// memmem wrapper: std::string_view::find is a naive loop in libstdc++; glibc's memmem uses
// two-way matching, which matters when scanning large binaries for a 255-byte placeholder.
size_t find_bytes(std::string_view hay, std::string_view needle, size_t from) {
  if (from > hay.size()) return std::string_view::npos;
  const void* p = memmem(hay.data() + from, hay.size() - from, needle.data(), needle.size());
  return p ? static_cast<size_t>(static_cast<const char*>(p) - hay.data()) : std::string_view::npos;
}

// Python's bytes.replace: every non-overlapping occurrence, left to right.
std::string replace_all(std::string_view data, std::string_view from, std::string_view to) {
  std::string out;
  if (from.empty()) return std::string(data);
  size_t pos = find_bytes(data, from, 0);
  if (pos == std::string_view::npos) return std::string(data);
  out.reserve(data.size() + (to.size() > from.size() ? 16 * (to.size() - from.size()) : 0));
  size_t start = 0;
  while (pos != std::string_view::npos) {
    out.append(data.substr(start, pos - start));
    out.append(to);
    start = pos + from.size();
    pos = find_bytes(data, from, start);
  }
  out.append(data.substr(start));
  return out;
}

// Python's bytes.count: non-overlapping occurrences.
int64_t count_all(std::string_view data, std::string_view needle) {
  int64_t n = 0;
  for (size_t pos = find_bytes(data, needle, 0); pos != std::string_view::npos;
       pos = find_bytes(data, needle, pos + needle.size())) {
    ++n;
  }
  return n;
}

std::string escape_spaces(std::string_view s) { return replace_all(s, " ", "\\ "); }

}  // namespace

std::string replace_prefix_text(std::string_view data, std::string_view placeholder,
                                std::string_view new_prefix) {
  std::string work;
  // conda only looks at the shebang when the data has a newline at all.
  size_t nl = data.find('\n');
  if (nl != std::string_view::npos && !placeholder.empty()) {
    std::string shebang_placeholder = "#!" + std::string(placeholder);
    std::string_view first_line = data.substr(0, nl);
    if (find_bytes(first_line, shebang_placeholder, 0) != std::string_view::npos) {
      std::string escaped = escape_spaces("#!" + std::string(new_prefix));
      work = replace_all(first_line, shebang_placeholder, escaped);
      work.append(data.substr(nl));
      return replace_all(work, placeholder, new_prefix);
    }
  }
  return replace_all(data, placeholder, new_prefix);
}

Result<std::string> replace_prefix_binary(std::string_view data, std::string_view placeholder,
                                          std::string_view new_prefix) {
  // conda's pattern: re.escape(placeholder) + b"(?:(?!(?:\0)).)*" + b"\0", applied with
  // re.sub. '.' excludes '\n' (no DOTALL), so an occurrence matches only if the first byte in
  // {'\0', '\n'} after it is a NUL; otherwise re.sub retries at the next byte.
  std::string out;
  if (placeholder.empty()) return std::string(data);
  size_t pos = find_bytes(data, placeholder, 0);
  if (pos == std::string_view::npos) return std::string(data);
  out.reserve(data.size());
  size_t copied = 0;  // data[0, copied) is already in `out`
  while (pos != std::string_view::npos) {
    size_t end = pos + placeholder.size();
    while (end < data.size() && data[end] != '\0' && data[end] != '\n') ++end;
    if (end >= data.size() || data[end] != '\0') {
      pos = find_bytes(data, placeholder, pos + 1);
      continue;
    }
    ++end;  // include the NUL
    std::string_view match = data.substr(pos, end - pos);
    int64_t occurrences = count_all(match, placeholder);
    int64_t padding =
        (static_cast<int64_t>(placeholder.size()) - static_cast<int64_t>(new_prefix.size())) *
        occurrences;
    if (padding < 0) {
      return InvalidInput(
          "prefix '" + std::string(new_prefix) + "' (" + std::to_string(new_prefix.size()) +
          " bytes) is longer than the placeholder (" + std::to_string(placeholder.size()) +
          " bytes) of this binary file; use a shorter --prefix");
    }
    out.append(data.substr(copied, pos - copied));
    out.append(replace_all(match, placeholder, new_prefix));
    out.append(static_cast<size_t>(padding), '\0');
    copied = end;
    pos = find_bytes(data, placeholder, end);
  }
  out.append(data.substr(copied));
  if (out.size() != data.size()) {
    return Internal("binary prefix replacement changed the length from " +
                    std::to_string(data.size()) + " to " + std::to_string(out.size()));
  }
  return out;
}

std::string replace_long_shebang(std::string_view data) {
  // SHEBANG_REGEX = ^(#!(?:[ ]*)(/(?:\\ |[^ \n\r\t])*)(.*))$ with re.MULTILINE, via re.match.
  // The greedy groups never need to backtrack, so a single left-to-right scan is exact.
  if (data.substr(0, 2) != "#!") return std::string(data);
  size_t i = 2;
  while (i < data.size() && data[i] == ' ') ++i;
  if (i >= data.size() || data[i] != '/') return std::string(data);
  size_t exe_begin = i++;
  while (i < data.size()) {
    char c = data[i];
    if (c == '\\' && i + 1 < data.size() && data[i + 1] == ' ') {
      i += 2;
    } else if (c != ' ' && c != '\n' && c != '\r' && c != '\t') {
      ++i;
    } else {
      break;
    }
  }
  size_t exe_end = i;
  size_t line_end = data.find('\n', exe_end);
  if (line_end == std::string_view::npos) line_end = data.size();
  std::string_view whole = data.substr(0, line_end);
  std::string_view executable = data.substr(exe_begin, exe_end - exe_begin);
  std::string_view options = data.substr(exe_end, line_end - exe_end);
  size_t slash = executable.rfind('/');
  std::string_view dir = executable.substr(0, slash);
  std::string_view name = executable.substr(slash + 1);
  if (whole.size() <= kMaxShebangLength && dir.find("\\ ") == std::string_view::npos) {
    return std::string(data);
  }
  std::string replacement = "#!/usr/bin/env " + std::string(name) + std::string(options);
  // conda uses data.replace(whole_shebang, ...), which also rewrites identical later lines.
  return replace_all(data, whole, replacement);
}

namespace link_internal {

std::string entry_point_shebang(const std::string& python) {
  std::string shebang = "#!" + python + "\n";
  if (shebang.size() > kMaxShebangLength || python.find(' ') != std::string::npos) {
    // Valid as both sh and Python: sh execs the interpreter on this file, Python sees a string.
    shebang = "#!/bin/sh\n'''exec' \"" + python + "\" \"$0\" \"$@\" #'''\n";
  }
  return shebang;
}

std::string entry_point_script(const std::string& python, const std::string& module,
                               const std::string& func) {
  std::string import_name = func.substr(0, func.find('.'));
  return entry_point_shebang(python) +
         "# -*- coding: utf-8 -*-\n"
         "import re\n"
         "import sys\n"
         "\n"
         "from " +
         module + " import " + import_name +
         "\n"
         "\n"
         "if __name__ == '__main__':\n"
         "    sys.argv[0] = re.sub(r'(-script\\.pyw?|\\.exe)?$', '', sys.argv[0])\n"
         "    sys.exit(" +
         func + "())\n";
}

}  // namespace link_internal
}  // namespace mat
