// Text checks for values from outside (lock fields, URLs) and their safe echo in messages.
// Thread safety: pure functions.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace mat {

// Well-formed UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF).
bool is_valid_utf8(std::string_view s);

// Why `s` is not acceptable as a single-line field of at most `max_len` bytes (not UTF-8; a
// control character, named by its code; too long), or nullptr when it is.
const char* single_line_problem(std::string_view s, size_t max_len);

// `s` for a message: bytes that are not printable UTF-8 become \xNN, and more than `max_len`
// bytes are cut with "... (N bytes)" appended, so a hostile value can neither garble a
// terminal nor flood it.
std::string printable(std::string_view s, size_t max_len = 200);

// Default bound of one printed message (clip_message): every field in it is already bounded
// by printable(); this is the net for a value some message forgot to pass through it.
inline constexpr size_t kMaxMessageBytes = 4096;

// A whole message for the terminal or a report, at most about `max_bytes`: a longer one keeps
// its first three quarters and its last quarter (the subject and the hint that ends every
// message) around " [... N bytes cut ...] ". Cuts fall on UTF-8 character boundaries. Bytes
// are not escaped: use printable() on each echoed value for that.
std::string clip_message(std::string_view msg, size_t max_bytes = kMaxMessageBytes);

}  // namespace mat
