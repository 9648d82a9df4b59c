#include "materializer/base/url.h"

#include <array>
#include <cctype>
#include <string>

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

std::string redact_url(std::string_view url) {
  std::string out(url);
  // userinfo: scheme://user:pass@host -> scheme://***@host
  size_t scheme = out.find("://");
  if (scheme != std::string::npos) {
    size_t auth_start = scheme + 3;
    size_t auth_end = out.find_first_of("/?#", auth_start);
    if (auth_end == std::string::npos) auth_end = out.size();
    size_t at = out.rfind('@', auth_end);
    if (at != std::string::npos && at >= auth_start) {
      out.replace(auth_start, at - auth_start, "***");
    }
  }
  // conda tokens: /t/<token>/
  size_t t = out.find("/t/");
  if (t != std::string::npos) {
    size_t end = out.find('/', t + 3);
    if (end != std::string::npos && end > t + 3) out.replace(t + 3, end - (t + 3), "***");
  }
  // secret-looking query parameters
  static const std::array<std::string_view, 8> kSecret = {
      "token", "access_token", "password", "key", "signature", "sig", "x-amz-signature",
      "x-amz-credential"};
  size_t q = out.find('?');
  if (q != std::string::npos) {
    size_t frag = out.find('#', q);
    size_t end_all = frag == std::string::npos ? out.size() : frag;
    size_t i = q + 1;
    while (i < end_all) {
      size_t amp = out.find('&', i);
      if (amp == std::string::npos || amp > end_all) amp = end_all;
      size_t eq = out.find('=', i);
      if (eq != std::string::npos && eq < amp) {
        std::string_view name(out.data() + i, eq - i);
        bool secret = false;
        for (auto s : kSecret) secret = secret || iequals(name, s);
        if (secret && amp > eq + 1) {
          out.replace(eq + 1, amp - eq - 1, "***");
          size_t delta = (amp - eq - 1) - 3;
          amp -= delta;
          end_all -= delta;
        }
      }
      i = amp + 1;
    }
  }
  return out;
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
