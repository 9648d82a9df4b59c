#include "materializer/base/text.h"

#include <cstdint>

namespace mat {
namespace {

// Length of the well-formed UTF-8 sequence at s[i], or 0.
size_t utf8_len(std::string_view s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  size_t n;
  uint32_t cp;
  if (c < 0x80) return 1;
  if ((c & 0xe0) == 0xc0) {
    n = 1, cp = c & 0x1f;
  } else if ((c & 0xf0) == 0xe0) {
    n = 2, cp = c & 0x0f;
  } else if ((c & 0xf8) == 0xf0) {
    n = 3, cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + n >= s.size()) return 0;
  for (size_t k = 1; k <= n; ++k) {
    const auto cc = static_cast<unsigned char>(s[i + k]);
    if ((cc & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (cc & 0x3f);
  }
  static constexpr uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
  if (cp < kMin[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return n + 1;
}

bool is_control(unsigned char c) { return c < 0x20 || c == 0x7f; }

}  // namespace

bool is_valid_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const size_t n = utf8_len(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

const char* single_line_problem(std::string_view s, size_t max_len) {
  if (s.size() > max_len) return "is too long";
  if (!is_valid_utf8(s)) return "is not valid UTF-8";
  for (char c : s) {
    if (is_control(static_cast<unsigned char>(c))) return "contains a control character";
  }
  return nullptr;
}

namespace {

// The largest i <= pos that does not fall inside a UTF-8 sequence (continuation bytes are
// 10xxxxxx); at most 3 steps back for well-formed text, and never below 0.
size_t utf8_floor(std::string_view s, size_t pos) {
  size_t i = pos;
  while (i > 0 && i < s.size() && pos - i < 3 &&
         (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) {
    --i;
  }
  return i;
}

}  // namespace

std::string clip_message(std::string_view msg, size_t max_bytes) {
  if (msg.size() <= max_bytes) return std::string(msg);
  const size_t head = utf8_floor(msg, max_bytes / 4 * 3);
  const size_t tail = utf8_floor(msg, msg.size() - max_bytes / 4);
  std::string out(msg.substr(0, head));
  out += " [... " + std::to_string(tail - head) + " bytes cut ...] ";
  out.append(msg.substr(tail));
  return out;
}

std::string printable(std::string_view s, size_t max_len) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  const size_t shown = s.size() > max_len ? max_len : s.size();
  for (size_t i = 0; i < shown;) {
    const size_t n = utf8_len(s, i);
    const auto c = static_cast<unsigned char>(s[i]);
    if (n == 0 || (n == 1 && is_control(c))) {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
      ++i;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  if (shown < s.size()) out += "... (" + std::to_string(s.size()) + " bytes)";
  return out;
}

}  // namespace mat
