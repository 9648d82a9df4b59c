#include "materializer/base/url.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <string>

#include "materializer/base/text.h"

namespace mat {

static bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

static bool is_secret_parameter(std::string_view name) {
  // S3, GCS and Azure signed URLs, API keys, plain tokens.
  static const std::array<std::string_view, 14> kSecret = {
      "token",           "access_token",         "password",         "key",
      "signature",       "sig",                  "x-amz-signature",  "x-amz-credential",
      "x-amz-security-token", "x-goog-signature", "x-goog-credential", "api_key",
      "apikey",          "secret"};
  for (std::string_view s : kSecret) {
    if (iequals(name, s)) return true;
  }
  return false;
}

std::string shown_url(std::string_view url, size_t max_len) {
  return printable(redact_url(url), max_len);
}

std::string redact_url(std::string_view url) {
  std::string out(url);
  constexpr size_t npos = std::string::npos;
  // The authority runs from "scheme://" to the first '/', '?' or '#'; its userinfo ends at the
  // LAST '@' in it: a password may hold a raw '@' (curl would not parse that URL, yet it must
  // not be printed half-hidden).
  size_t path_start = 0;
  if (const size_t scheme = out.find("://"); scheme != npos) {
    const size_t auth_start = scheme + 3;
    size_t auth_end = out.find_first_of("/?#", auth_start);
    if (auth_end == npos) auth_end = out.size();
    const size_t at = out.rfind('@', auth_end);
    if (at != npos && at >= auth_start) {
      out.replace(auth_start, at - auth_start, "***");
      auth_end = auth_end - (at - auth_start) + 3;
    }
    path_start = auth_end;
  }
  // A conda token: the path segment after "/t/".
  const size_t path_end = std::min(out.find_first_of("?#", path_start), out.size());
  if (const size_t t = out.find("/t/", path_start); t != npos && t < path_end) {
    const size_t end = std::min(out.find('/', t + 3), path_end);
    if (end > t + 3) out.replace(t + 3, end - (t + 3), "***");
  }
  // Secret-looking query parameters: their values.
  const size_t q = out.find_first_of("?#", path_start);
  if (q == npos || out[q] == '#') return out;
  const size_t frag = out.find('#', q);
  const std::string_view query =
      std::string_view(out).substr(q + 1, (frag == npos ? out.size() : frag) - q - 1);
  std::string redacted = out.substr(0, q + 1);
  for (size_t i = 0;;) {
    const size_t amp = query.find('&', i);
    const std::string_view param = query.substr(i, amp == npos ? npos : amp - i);
    const size_t eq = param.find('=');
    if (eq != npos && eq + 1 < param.size() && is_secret_parameter(param.substr(0, eq))) {
      redacted += param.substr(0, eq + 1);
      redacted += "***";
    } else {
      redacted += param;
    }
    if (amp == npos) break;
    redacted += '&';
    i = amp + 1;
  }
  if (frag != npos) redacted += out.substr(frag);
  return redacted;
}

std::string url_strip_fragment(std::string_view url) {
  size_t h = url.find('#');
  return std::string(h == std::string_view::npos ? url : url.substr(0, h));
}

std::string url_file_name(std::string_view url) {
  std::string u = url_strip_fragment(url);
  size_t q = u.find('?');
  if (q != std::string::npos) u.resize(q);
  size_t s = u.rfind('/');
  return s == std::string::npos ? u : u.substr(s + 1);
}

bool is_file_url(std::string_view url) { return url.substr(0, 7) == "file://"; }

bool url_scheme_is_file(std::string_view url) {
  if (url.size() < 5 || url[4] != ':') return false;
  for (size_t i = 0; i < 4; ++i) {
    if (std::tolower(static_cast<unsigned char>(url[i])) != "file"[i]) return false;
  }
  return true;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string file_url_to_path(std::string_view url) {
  if (!is_file_url(url)) return "";
  std::string_view rest = url.substr(7);
  if (rest.substr(0, 9) == "localhost") rest.remove_prefix(9);
  if (rest.empty() || rest[0] != '/') return "";
  std::string out;
  for (size_t i = 0; i < rest.size(); ++i) {
    if (rest[i] == '#' || rest[i] == '?') break;
    if (rest[i] == '%' && i + 2 < rest.size() && hexval(rest[i + 1]) >= 0 &&
        hexval(rest[i + 2]) >= 0) {
      out += static_cast<char>(hexval(rest[i + 1]) * 16 + hexval(rest[i + 2]));
      i += 2;
    } else {
      out += rest[i];
    }
  }
  return out;
}

std::string path_to_file_url(std::string_view abs_path) {
  static const char kDigits[] = "0123456789ABCDEF";
  std::string out = "file://";
  for (unsigned char c : abs_path) {
    if (std::isalnum(c) || c == '/' || c == '-' || c == '_' || c == '.' || c == '~' ||
        c == '+' || c == '@' || c == ':' || c == '=' || c == ',') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kDigits[c >> 4];
      out += kDigits[c & 15];
    }
  }
  return out;
}

}  // namespace mat
