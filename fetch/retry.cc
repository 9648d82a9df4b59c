#include "fetch/retry.h"

#include <curl/curl.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cmath>
#include <vector>

namespace mat::fetch {
namespace {

constexpr const char* kRetryLater = "retry later";
constexpr const char* kCheckNetwork = "check the network and proxy settings, retry later";
constexpr const char* kCheckCa =
    "TLS certificate problem; pass --ca-bundle or set SSL_CERT_FILE to the CA bundle that signs "
    "this server's certificate";
constexpr const char* kCheckCredentials =
    "check the credentials for this channel (user:password or token in the URL)";

Verdict ok_verdict() { return Verdict{}; }

Verdict retry_verdict(std::string what, std::string hint) {
  return Verdict{Code::kRetryable, true, std::move(what), std::move(hint)};
}

Verdict fail_verdict(Code code, std::string what, std::string hint) {
  return Verdict{code, false, std::move(what), std::move(hint)};
}

// "could not connect (Failed to connect to ...)" or just "could not connect" when curl gave no
// text of its own.
std::string with_detail(std::string_view what, std::string_view detail) {
  std::string s(what);
  if (!detail.empty()) {
    s += " (";
    s += detail;
    s += ")";
  }
  return s;
}

std::string http_what(long status, const char* reason) {
  std::string s = "HTTP " + std::to_string(status);
  if (reason != nullptr) {
    s += " (";
    s += reason;
    s += ")";
  }
  return s;
}

// ---- HTTP-date parsing (RFC 9110 §5.6.7) ----

std::optional<int> parse_int(std::string_view s) {
  int v = 0;
  if (s.empty() || s.size() > 9) return std::nullopt;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

std::optional<unsigned> parse_month(std::string_view s) {
  static constexpr std::array<std::string_view, 12> kMonths = {
      "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"};
  if (s.size() != 3) return std::nullopt;
  std::string lower(s);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (size_t i = 0; i < kMonths.size(); ++i) {
    if (kMonths[i] == lower) return static_cast<unsigned>(i + 1);
  }
  return std::nullopt;
}

// "08:49:37" -> seconds since midnight.
std::optional<int> parse_clock(std::string_view s) {
  if (s.size() != 8 || s[2] != ':' || s[5] != ':') return std::nullopt;
  auto h = parse_int(s.substr(0, 2));
  auto m = parse_int(s.substr(3, 2));
  auto sec = parse_int(s.substr(6, 2));
  if (!h || !m || !sec || *h > 23 || *m > 59 || *sec > 60) return std::nullopt;
  return *h * 3600 + *m * 60 + *sec;
}

bool is_alpha_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalpha(static_cast<unsigned char>(c)) != 0;
  });
}

// All three date forms carry the same fields in different orders, with ',' '-' ' ' between
// them: a weekday, a day number, a month name, a year number and a clock. In each form the day
// number comes before the year number, so after tokenising we take the numbers in order.
std::optional<std::chrono::system_clock::time_point> parse_http_date(std::string_view v) {
  std::vector<std::string_view> tokens;
  size_t i = 0;
  while (i < v.size()) {
    while (i < v.size() && (v[i] == ' ' || v[i] == ',' || v[i] == '-' || v[i] == '\t')) ++i;
    size_t start = i;
    while (i < v.size() && v[i] != ' ' && v[i] != ',' && v[i] != '-' && v[i] != '\t') ++i;
    if (i > start) tokens.push_back(v.substr(start, i - start));
  }
  if (tokens.size() < 5 || tokens.size() > 6 || !is_alpha_token(tokens[0])) return std::nullopt;
  if (tokens.size() == 6 && tokens[5] != "GMT" && tokens[5] != "UTC") return std::nullopt;

  std::optional<unsigned> month;
  std::optional<int> clock;
  std::vector<int> numbers;
  for (size_t k = 1; k < std::min<size_t>(tokens.size(), 5); ++k) {
    std::string_view t = tokens[k];
    if (t.find(':') != std::string_view::npos) {
      clock = parse_clock(t);
      if (!clock) return std::nullopt;
    } else if (is_alpha_token(t)) {
      month = parse_month(t);
      if (!month) return std::nullopt;
    } else {
      auto n = parse_int(t);
      if (!n) return std::nullopt;
      numbers.push_back(*n);
    }
  }
  if (!month || !clock || numbers.size() != 2) return std::nullopt;
  int day = numbers[0];
  int year = numbers[1];
  if (year < 100) year += year < 70 ? 2000 : 1900;  // RFC 850's two-digit years

  using namespace std::chrono;
  year_month_day ymd{std::chrono::year{year}, std::chrono::month{*month},
                     std::chrono::day{static_cast<unsigned>(day)}};
  if (day < 1 || !ymd.ok()) return std::nullopt;
  return time_point_cast<system_clock::duration>(sys_days{ymd} + seconds{*clock});
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) {
    s.remove_suffix(1);
  }
  return s;
}

void replace_all(std::string& text, std::string_view needle) {
  if (needle.empty()) return;
  size_t pos = 0;
  while ((pos = text.find(needle, pos)) != std::string::npos) {
    text.replace(pos, needle.size(), "***");
    pos += 3;
  }
}

}  // namespace

Verdict classify_http(long s) {
  if (s >= 200 && s < 300) return ok_verdict();
  if (s == 404 || s == 410) {
    return fail_verdict(Code::kNotFound, http_what(s, s == 404 ? "not found" : "gone"),
                        "the server does not have this file; check the URL or re-lock");
  }
  if (s == 408) return retry_verdict(http_what(s, "request timeout"), kRetryLater);
  if (s == 429) {
    return retry_verdict(http_what(s, "too many requests"),
                         "the server is rate limiting; retry later or lower --max-downloads");
  }
  if (s >= 500 && s < 600) {
    return retry_verdict(http_what(s, nullptr), "the server may be overloaded, retry later");
  }
  if (s == 401 || s == 403) {
    return fail_verdict(Code::kInvalidInput, http_what(s, s == 401 ? "unauthorized" : "forbidden"),
                        kCheckCredentials);
  }
  if (s >= 400 && s < 500) {
    return fail_verdict(Code::kInvalidInput, http_what(s, nullptr),
                        "the server rejected the request; check the URL");
  }
  return fail_verdict(Code::kIo, "unexpected " + http_what(s, nullptr), "");
}

Verdict classify_curl(int curl_code, std::string_view detail) {
  const auto code = static_cast<CURLcode>(curl_code);
  switch (code) {
    case CURLE_OK:
      return ok_verdict();
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
      return retry_verdict(with_detail("could not resolve host", detail), kCheckNetwork);
    case CURLE_COULDNT_CONNECT:
      return retry_verdict(with_detail("could not connect", detail), kCheckNetwork);
    case CURLE_OPERATION_TIMEDOUT:
      return retry_verdict(with_detail("timed out", detail), kCheckNetwork);
    case CURLE_PARTIAL_FILE:
      return retry_verdict(with_detail("connection closed before the whole body arrived", detail),
                           kRetryLater);
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_SSL_CONNECT_ERROR:  // handshake cut short: usually the network, not the cert
      return retry_verdict(with_detail("network error", detail), kCheckNetwork);
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_HTTP3:
    case CURLE_QUIC_CONNECT_ERROR:
      return retry_verdict(with_detail("HTTP/2 or HTTP/3 stream error", detail), kRetryLater);
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
      return fail_verdict(Code::kInvalidInput, with_detail("TLS verification failed", detail),
                          kCheckCa);
    case CURLE_FILE_COULDNT_READ_FILE:
    case CURLE_REMOTE_FILE_NOT_FOUND:
      return fail_verdict(Code::kNotFound, with_detail("no such file", detail),
                          "check the path or re-lock");
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
      return fail_verdict(Code::kInvalidInput, with_detail("malformed or unsupported URL", detail),
                          "only http://, https:// and file:// URLs are supported");
    case CURLE_TOO_MANY_REDIRECTS:
      return fail_verdict(Code::kInvalidInput, with_detail("too many redirects", detail),
                          "check the URL and the server's redirect configuration");
    case CURLE_LOGIN_DENIED:
    case CURLE_REMOTE_ACCESS_DENIED:
      return fail_verdict(Code::kInvalidInput, with_detail("access denied", detail),
                          kCheckCredentials);
    case CURLE_ABORTED_BY_CALLBACK:
      return fail_verdict(Code::kCancelled, "cancelled", "");
    case CURLE_OUT_OF_MEMORY:
      return fail_verdict(Code::kInternal, "out of memory", "");
    default:
      break;
  }
  std::string what =
      "transfer failed: curl error " + std::to_string(curl_code) + ": " + curl_easy_strerror(code);
  return fail_verdict(Code::kIo, with_detail(what, detail), "");
}

Status final_status(const Verdict& v, std::string_view redacted_url, int attempts) {
  std::string msg(redacted_url);
  msg += ": ";
  msg += v.what;
  if (v.retry) {
    msg += " after " + std::to_string(attempts) + (attempts == 1 ? " attempt" : " attempts");
  }
  if (!v.hint.empty()) {
    msg += "; ";
    msg += v.hint;
  }
  return Status(v.retry ? Code::kRetryable : v.code, std::move(msg));
}

double retry_delay_s(const BackoffPolicy& p, int retry, double jitter01,
                     std::optional<double> retry_after_s) {
  if (retry_after_s) return std::clamp(*retry_after_s, 0.0, std::max(0.0, p.retry_after_max_s));
  // 2^(retry-1) overflows nothing: the exponent is clamped long before doubles care.
  const int exponent = std::clamp(retry - 1, 0, 62);
  double nominal = std::min(p.initial_s * std::ldexp(1.0, exponent), p.max_s);
  nominal = std::max(0.0, nominal);
  const double j = std::clamp(jitter01, 0.0, 1.0);
  return nominal * (0.5 + 0.5 * j);
}

bool honours_retry_after(long http_status) { return http_status == 429 || http_status == 503; }

std::optional<double> parse_retry_after(std::string_view value,
                                        std::chrono::system_clock::time_point now) {
  value = trim(value);
  if (value.empty()) return std::nullopt;
  if (std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    // delay-seconds; anything too long for an int is far beyond any cap anyway.
    if (value.size() > 9) return 1e9;
    return static_cast<double>(*parse_int(value));
  }
  auto when = parse_http_date(value);
  if (!when) return std::nullopt;
  const double s = std::chrono::duration<double>(*when - now).count();
  return std::max(0.0, s);
}

std::string scrub_credentials(std::string_view text, std::string_view url) {
  std::string out(text);
  const size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return out;
  std::string_view rest = url.substr(scheme_end + 3);
  rest = rest.substr(0, rest.find_first_of("/?#"));
  const size_t at = rest.rfind('@');
  if (at == std::string_view::npos) return out;
  std::string_view userinfo = rest.substr(0, at);
  const size_t colon = userinfo.find(':');
  if (colon != std::string_view::npos) {
    replace_all(out, userinfo.substr(colon + 1));  // the password first: it may contain the user
    replace_all(out, userinfo.substr(0, colon));
  } else {
    replace_all(out, userinfo);  // a lone token in the user position
  }
  return out;
}

}  // namespace mat::fetch
