// fetch: concurrent transfers on one libcurl-multi loop.
//
// A Fetcher owns one background thread that drives every transfer (http, https, file://) with
// curl-multi: up to Options::max_parallel in flight, connections reused, HTTP/2 multiplexed when
// the server offers it, proxies from http_proxy/https_proxy/no_proxy, TLS always verified.
// Bytes go to a caller-supplied Sink; SHA-256 and/or MD5 are computed in the write callback so
// the caller never reads the file a second time. Transient failures (connection errors,
// timeouts, HTTP 5xx, 408, 429 with Retry-After) are retried with exponential backoff after
// Sink::reset(). fetch/ never prints and never includes a cache/ header.
//
// Thread safety: submit(), cancel() and finish() may be called from any thread. Callbacks run on
// the fetch thread; they must be quick (hand real work to TBB).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "materializer/base/status.h"

namespace mat::fetch {

// Where the bytes of one transfer go. Called only on the fetch thread, in this order:
// reset() before the first byte of every attempt, write()* , then finish() once on success
// or abort() once on final failure.
class Sink {
 public:
  virtual ~Sink() = default;
  virtual Status reset() = 0;  // discard anything written by a previous attempt
  virtual Status write(const char* data, size_t len) = 0;
  virtual Status finish() = 0;  // all bytes written (not yet verified)
  virtual void abort() = 0;
};

struct Request {
  std::string url;  // http(s):// or file://; may carry credentials (never logged)
  std::unique_ptr<Sink> sink;
  bool want_sha256 = true;
  bool want_md5 = false;
  int64_t expected_size = -1;  // if >= 0 and the body length differs: kCorrupt, not retried
  uint64_t id = 0;             // caller's tag, returned in FetchResult
  // Extra request header lines ("Accept: application/json"), sent on every attempt and every
  // redirect hop of an http(s) transfer; ignored for file://. May carry secrets (Authorization):
  // never logged.
  std::vector<std::string> headers;
};

struct FetchResult {
  uint64_t id = 0;
  Status status;       // kNotFound (404/410, missing file://), kRetryable (gave up
                       // after retries), kCorrupt (size mismatch), kIo, kNoSpace
                       // (from the sink), kCancelled, kInvalidInput (bad URL, 4xx)
  int64_t bytes = 0;   // body bytes of the successful attempt
  std::string sha256;  // lowercase hex, if requested and ok
  std::string md5;
  long http_status = 0;
  int attempts = 0;
  double seconds = 0;         // wall time from first attempt start to completion
  std::string effective_url;  // redacted
  std::string http_version;   // "1.1", "2", "file"
  std::string content_type;   // Content-Type of the final response as sent ("text/html;
                              // charset=utf-8"); "" for file:// and when the server sent none
};

struct Options {
  int max_parallel = 50;         // transfers in flight (--max-downloads)
  int max_host_connections = 0;  // 0 = curl's default
  int max_retries = 4;           // retries after the first attempt
  long connect_timeout_s = 30;
  long low_speed_limit = 1;        // bytes/s below which ...
  long low_speed_time_s = 60;      // ... for this long, the transfer is timed out (retryable)
  double backoff_initial_s = 0.5;  // doubled each retry, capped by backoff_max_s, jittered
  double backoff_max_s = 30;
  double retry_after_max_s = 60;  // a larger Retry-After is capped
  std::string ca_bundle;          // --ca-bundle; else $SSL_CERT_FILE; else curl's default
  std::string user_agent = "materializer/0.1";
  bool offline = false;  // every non-file:// request fails at once with kNotFound-like
                         // kInvalidInput "offline"
  // Event loops (threads), each with its own curl-multi handle and connections. One loop
  // decrypts, hashes and writes ~250 MB/s on a 2020s x86 core (TLS + SHA-256 + write(2)):
  // plenty for a few cores, the serial stage of a cold install on many. Requests are spread by
  // expected size; on_done and on_progress are then called from several threads at once.
  int loops = 1;
  // Progress: called on the fetch thread, at most ~10 times a second per transfer.
  std::function<void(uint64_t id, int64_t now, int64_t total)> on_progress;
};

class Fetcher {
 public:
  // Starts the fetch thread(s). `on_done` is called on a fetch thread once per submitted
  // request (with Options::loops > 1, from several threads concurrently).
  static Result<std::unique_ptr<Fetcher>> create(Options opts,
                                                 std::function<void(FetchResult&&)> on_done);
  virtual ~Fetcher() = default;  // cancels outstanding transfers and joins the thread

  virtual void submit(Request req) = 0;
  // Outstanding and future transfers complete with kCancelled.
  virtual void cancel() = 0;
  // No more submissions; blocks until every submitted request has had its on_done called.
  virtual void finish() = 0;
};

// Process-wide libcurl init; call once from main() before any thread starts (and from tests).
void global_init();

}  // namespace mat::fetch
