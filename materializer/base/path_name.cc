#include "materializer/base/path_name.h"

#include <cstdint>

namespace mat {

bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t n;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      n = 1, cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      n = 2, cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      n = 3, cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) return false;
    for (size_t k = 1; k <= n; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    static constexpr uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
    i += n + 1;
  }
  return true;
}

const char* path_component_problem(std::string_view s) {
  if (s.empty()) return "it is empty";
  if (s == ".") return "it is '.'";
  if (s == "..") return "it is '..'";
  if (s.size() > kMaxComponentBytes) return "it is longer than 255 bytes";
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c == '/') return "it contains '/'";
    if (c == 0) return "it contains a NUL byte";
    if (c < 0x20 || c == 0x7f) return "it contains a control character";
  }
  if (!valid_utf8(s)) return "it is not valid UTF-8";
  return nullptr;
}

const char* relative_path_problem(std::string_view s) {
  if (s.empty()) return "it is empty";
  if (s.front() == '/') return "it is absolute";
  if (s.size() > kMaxRelativePathBytes) return "it is longer than 4095 bytes";
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t end = s.find('/', pos);
    if (end == std::string_view::npos) end = s.size();
    std::string_view comp = s.substr(pos, end - pos);
    if (comp.empty()) return "it has an empty component ('//' or a trailing '/')";
    if (comp == "..") return "it has a '..' component";
    if (comp == ".") return "it has a '.' component";
    if (const char* why = path_component_problem(comp)) return why;
    pos = end + 1;
  }
  return nullptr;
}

std::string shown_name(std::string_view s) {
  constexpr size_t kMaxShown = 80;
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  size_t i = 0;
  while (i < s.size() && out.size() < kMaxShown) {
    auto c = static_cast<unsigned char>(s[i]);
    // A valid multi-byte sequence is kept whole; anything else unprintable becomes \xNN.
    size_t n = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : 4;
    if (c >= 0x80 && i + n <= s.size() && valid_utf8(s.substr(i, n))) {
      out.append(s.substr(i, n));
      i += n;
      continue;
    }
    if (c < 0x20 || c >= 0x7f) {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
    ++i;
  }
  if (i < s.size()) out += "...";
  return out;
}

Status check_path_component(std::string_view s, std::string_view what, Code code) {
  const char* why = path_component_problem(s);
  if (why == nullptr) return Status::Ok();
  return Status(code,
                std::string(what) + " '" + shown_name(s) + "' is not a valid file name: " + why);
}

Status check_relative_path(std::string_view s, std::string_view what, Code code) {
  const char* why = relative_path_problem(s);
  if (why == nullptr) return Status::Ok();
  return Status(
      code, std::string(what) + " '" + shown_name(s) + "' is not a valid relative path: " + why);
}

}  // namespace mat
