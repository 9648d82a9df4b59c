// fetch/retry.h: what one transfer attempt's outcome means, and how long to wait before the next.
// Private to fetch/. Pure functions: no curl handles, no clock reads, no randomness of their own
// (time and jitter are parameters), so fetch/retry_test.cc covers them without a network.
//
// Thread safety: stateless; callable from any thread.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "materializer/base/status.h"

namespace mat::fetch {

// The meaning of one attempt's outcome.
struct Verdict {
  Code code = Code::kOk;  // kOk: the attempt succeeded
  bool retry = false;     // transient: another attempt may succeed (code is then kRetryable)
  std::string what;       // the evidence, without the URL: "HTTP 503", "could not connect (...)"
  std::string hint;       // the user's next step; may be empty

  bool ok() const { return code == Code::kOk; }
};

// Classifies a completed HTTP response by its status code: 2xx ok; 404/410 kNotFound;
// 408/429/5xx retryable; 401/403 kInvalidInput (check credentials); other 4xx kInvalidInput;
// anything else (1xx, 3xx that was not followed) kIo.
Verdict classify_http(long http_status);

// Classifies a failed libcurl transfer. `curl_code` is a CURLcode other than CURLE_OK; `detail`
// is libcurl's error text for it (already scrubbed of credentials; may be empty). Connection,
// resolve, timeout, receive/send, partial-body and HTTP/2 stream errors are retryable; TLS
// certificate problems are kInvalidInput pointing at --ca-bundle / SSL_CERT_FILE; a missing
// file:// path is kNotFound.
Verdict classify_curl(int curl_code, std::string_view detail);

// The final status of a failed transfer. Retryable verdicts (given up after `attempts`) become
// kRetryable "<url>: <what> after <attempts> attempts; <hint>"; others keep their code:
// "<url>: <what>; <hint>". `redacted_url` must already be redacted.
Status final_status(const Verdict& v, std::string_view redacted_url, int attempts);

struct BackoffPolicy {
  double initial_s = 0.5;         // delay before the first retry, before jitter
  double max_s = 30;              // cap on the exponential delay
  double retry_after_max_s = 60;  // cap on a server's Retry-After
};

// Seconds to wait before retry number `retry` (1 = the first retry).
// Without `retry_after_s`: initial_s * 2^(retry-1), capped at max_s, then scaled by a jitter
// factor in [0.5, 1.0] taken from `jitter01` in [0, 1) ("equal jitter": spreads clients that
// failed together, yet never waits less than half the nominal delay).
// With `retry_after_s` (the server said when): that value clamped to [0, retry_after_max_s],
// without jitter.
double retry_delay_s(const BackoffPolicy& p, int retry, double jitter01,
                     std::optional<double> retry_after_s);

// True for the statuses whose Retry-After header we honour (429, 503).
bool honours_retry_after(long http_status);

// Parses a Retry-After header value: delay-seconds ("120") or an HTTP-date in any of the three
// RFC 9110 forms (IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT", RFC 850
// "Sunday, 06-Nov-94 08:49:37 GMT", asctime "Sun Nov  6 08:49:37 1994"). Returns seconds from
// `now` (a date in the past gives 0), or nullopt if the value is malformed.
std::optional<double> parse_retry_after(std::string_view value,
                                        std::chrono::system_clock::time_point now);

// Replaces every occurrence of the user name and password embedded in `url`
// ("scheme://user:password@host/...") in `text` with "***". Used on libcurl's error text before
// it goes into a message; a no-op when the URL carries no credentials.
std::string scrub_credentials(std::string_view text, std::string_view url);

}  // namespace mat::fetch
