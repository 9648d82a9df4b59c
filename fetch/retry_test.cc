// Unit tests of the pure retry logic: classification, messages, backoff, Retry-After parsing.
#include "fetch/retry.h"

#include <curl/curl.h>
#include <gtest/gtest.h>

namespace mat::fetch {
namespace {

using std::chrono::system_clock;

// 2024-03-01 12:00:00 UTC.
system_clock::time_point fixed_now() {
  using namespace std::chrono;
  return sys_days{year{2024} / March / 1} + hours{12};
}

TEST(ClassifyHttp, SuccessStatusesAreOk) {
  EXPECT_TRUE(classify_http(200).ok());
  EXPECT_TRUE(classify_http(206).ok());
}

TEST(ClassifyHttp, NotFoundAndGoneAreNotFound) {
  for (long s : {404L, 410L}) {
    Verdict v = classify_http(s);
    EXPECT_EQ(v.code, Code::kNotFound) << s;
    EXPECT_FALSE(v.retry) << s;
  }
}

TEST(ClassifyHttp, TransientStatusesAreRetryable) {
  for (long s : {408L, 429L, 500L, 502L, 503L, 504L}) {
    Verdict v = classify_http(s);
    EXPECT_EQ(v.code, Code::kRetryable) << s;
    EXPECT_TRUE(v.retry) << s;
  }
}

TEST(ClassifyHttp, AuthFailuresAskToCheckCredentials) {
  for (long s : {401L, 403L}) {
    Verdict v = classify_http(s);
    EXPECT_EQ(v.code, Code::kInvalidInput) << s;
    EXPECT_FALSE(v.retry);
    EXPECT_NE(v.hint.find("credentials"), std::string::npos);
  }
}

TEST(ClassifyHttp, OtherClientErrorsAreInvalidInput) {
  EXPECT_EQ(classify_http(400).code, Code::kInvalidInput);
  EXPECT_EQ(classify_http(418).code, Code::kInvalidInput);
  EXPECT_FALSE(classify_http(400).retry);
}

TEST(ClassifyHttp, UnexpectedStatusIsIo) {
  EXPECT_EQ(classify_http(304).code, Code::kIo);
  EXPECT_FALSE(classify_http(304).retry);
}

TEST(ClassifyCurl, NetworkErrorsAreRetryable) {
  for (CURLcode c : {CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST, CURLE_OPERATION_TIMEDOUT,
                     CURLE_PARTIAL_FILE, CURLE_RECV_ERROR, CURLE_SEND_ERROR, CURLE_GOT_NOTHING,
                     CURLE_HTTP2, CURLE_HTTP2_STREAM}) {
    Verdict v = classify_curl(c, "detail");
    EXPECT_TRUE(v.retry) << c;
    EXPECT_EQ(v.code, Code::kRetryable) << c;
    EXPECT_NE(v.what.find("(detail)"), std::string::npos) << v.what;
  }
}

TEST(ClassifyCurl, CertificateProblemsPointAtCaBundle) {
  for (CURLcode c : {CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CACERT_BADFILE}) {
    Verdict v = classify_curl(c, "");
    EXPECT_EQ(v.code, Code::kInvalidInput) << c;
    EXPECT_FALSE(v.retry);
    EXPECT_NE(v.hint.find("--ca-bundle"), std::string::npos);
    EXPECT_NE(v.hint.find("SSL_CERT_FILE"), std::string::npos);
  }
}

TEST(ClassifyCurl, MissingFileIsNotFound) {
  EXPECT_EQ(classify_curl(CURLE_FILE_COULDNT_READ_FILE, "").code, Code::kNotFound);
}

TEST(ClassifyCurl, BadUrlIsInvalidInput) {
  EXPECT_EQ(classify_curl(CURLE_URL_MALFORMAT, "").code, Code::kInvalidInput);
  EXPECT_EQ(classify_curl(CURLE_UNSUPPORTED_PROTOCOL, "").code, Code::kInvalidInput);
  EXPECT_EQ(classify_curl(CURLE_TOO_MANY_REDIRECTS, "").code, Code::kInvalidInput);
}

TEST(ClassifyCurl, UnknownErrorIsIoWithCurlText) {
  Verdict v = classify_curl(CURLE_BAD_FUNCTION_ARGUMENT, "");
  EXPECT_EQ(v.code, Code::kIo);
  EXPECT_FALSE(v.retry);
  EXPECT_NE(v.what.find("curl error"), std::string::npos);
}

TEST(FinalStatus, GivingUpIsRetryableWithAttemptsAndHint) {
  Status s = final_status(classify_http(503), "https://***@repo.example/x.conda", 5);
  EXPECT_EQ(s.code(), Code::kRetryable);
  EXPECT_EQ(s.message(),
            "https://***@repo.example/x.conda: HTTP 503 after 5 attempts; the server may be "
            "overloaded, retry later");
}

TEST(FinalStatus, SingleAttemptIsSingular) {
  Status s = final_status(classify_http(500), "u", 1);
  EXPECT_NE(s.message().find("after 1 attempt;"), std::string::npos) << s.message();
}

TEST(FinalStatus, PermanentFailureKeepsItsCode) {
  Status s = final_status(classify_http(404), "https://h/x", 1);
  EXPECT_EQ(s.code(), Code::kNotFound);
  EXPECT_EQ(s.message().rfind("https://h/x: HTTP 404", 0), 0u) << s.message();
  EXPECT_EQ(s.message().find("attempt"), std::string::npos);
}

TEST(RetryDelay, DoublesFromInitialAndIsCapped) {
  const BackoffPolicy p{0.5, 4, 60};
  // jitter01 = 1 gives the nominal delay.
  EXPECT_DOUBLE_EQ(retry_delay_s(p, 1, 1.0, std::nullopt), 0.5);
  EXPECT_DOUBLE_EQ(retry_delay_s(p, 2, 1.0, std::nullopt), 1.0);
  EXPECT_DOUBLE_EQ(retry_delay_s(p, 3, 1.0, std::nullopt), 2.0);
  EXPECT_DOUBLE_EQ(retry_delay_s(p, 4, 1.0, std::nullopt), 4.0);
  EXPECT_DOUBLE_EQ(retry_delay_s(p, 5, 1.0, std::nullopt), 4.0);
  EXPECT_DOUBLE_EQ(retry_delay_s(p, 1000, 1.0, std::nullopt), 4.0);
}

TEST(RetryDelay, JitterStaysWithinHalfToFullNominal) {
  const BackoffPolicy p{1, 30, 60};
  EXPECT_DOUBLE_EQ(retry_delay_s(p, 3, 0.0, std::nullopt), 2.0);
  for (double j : {0.1, 0.5, 0.9}) {
    const double d = retry_delay_s(p, 3, j, std::nullopt);
    EXPECT_GE(d, 2.0);
    EXPECT_LE(d, 4.0);
  }
}

TEST(RetryDelay, RetryAfterOverridesBackoffAndIsCapped) {
  const BackoffPolicy p{10, 30, 60};
  EXPECT_DOUBLE_EQ(retry_delay_s(p, 1, 0.3, 0.0), 0.0);
  EXPECT_DOUBLE_EQ(retry_delay_s(p, 1, 0.3, 7.0), 7.0);
  EXPECT_DOUBLE_EQ(retry_delay_s(p, 1, 0.3, 3600.0), 60.0);
  EXPECT_DOUBLE_EQ(retry_delay_s(p, 1, 0.3, -5.0), 0.0);
}

TEST(RetryAfter, HonouredFor429And503Only) {
  EXPECT_TRUE(honours_retry_after(429));
  EXPECT_TRUE(honours_retry_after(503));
  EXPECT_FALSE(honours_retry_after(500));
  EXPECT_FALSE(honours_retry_after(200));
}

TEST(ParseRetryAfter, DelaySeconds) {
  EXPECT_EQ(parse_retry_after("0", fixed_now()), 0.0);
  EXPECT_EQ(parse_retry_after(" 120\r\n", fixed_now()), 120.0);
  EXPECT_GE(*parse_retry_after("99999999999999", fixed_now()), 1e6);
}

TEST(ParseRetryAfter, MalformedIsNullopt) {
  for (const char* v : {"", "  ", "-1", "1.5", "soon", "Fri, 01 Mar 2024 12:00 GMT",
                        "Fri, 31 Feb 2024 12:00:00 GMT", "Fri, 01 Foo 2024 12:00:00 GMT",
                        "Fri, 01 Mar 2024 25:00:00 GMT", "Fri, 01 Mar 2024 12:00:00 PST"}) {
    EXPECT_FALSE(parse_retry_after(v, fixed_now()).has_value()) << v;
  }
}

TEST(ParseRetryAfter, ImfFixdate) {
  EXPECT_EQ(parse_retry_after("Fri, 01 Mar 2024 12:00:30 GMT", fixed_now()), 30.0);
  EXPECT_EQ(parse_retry_after("Sat, 02 Mar 2024 12:00:00 GMT", fixed_now()), 86400.0);
}

TEST(ParseRetryAfter, Rfc850Date) {
  EXPECT_EQ(parse_retry_after("Friday, 01-Mar-24 12:01:00 GMT", fixed_now()), 60.0);
}

TEST(ParseRetryAfter, AsctimeDate) {
  EXPECT_EQ(parse_retry_after("Fri Mar  1 12:00:05 2024", fixed_now()), 5.0);
}

TEST(ParseRetryAfter, PastDateIsZero) {
  EXPECT_EQ(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", fixed_now()), 0.0);
}

TEST(ScrubCredentials, RemovesUserAndPassword) {
  EXPECT_EQ(scrub_credentials("auth as alice with hunter2 failed", "https://alice:hunter2@host/x"),
            "auth as *** with *** failed");
  EXPECT_EQ(scrub_credentials("token tk123 rejected", "https://tk123@host/x"),
            "token *** rejected");
}

TEST(ScrubCredentials, PasswordsWithSeparatorsAndShortOnes) {
  // The userinfo ends at the last '@': a password holding '@' is scrubbed whole.
  EXPECT_EQ(scrub_credentials("denied: alice p@ss", "https://alice:p@ss@host/x"),
            "denied: *** ***");
  EXPECT_EQ(scrub_credentials("pw a:b:c", "https://u1:a:b:c@host/x"), "pw ***");
  EXPECT_EQ(scrub_credentials("[q] [Z]", "https://q:Z@h/x"), "[***] [***]");
}

TEST(ScrubCredentials, NoCredentialsNoChange) {
  EXPECT_EQ(scrub_credentials("Failed to connect", "https://host/a@b"), "Failed to connect");
  EXPECT_EQ(scrub_credentials("x", "not a url"), "x");
}

}  // namespace
}  // namespace mat::fetch
