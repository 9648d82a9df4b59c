// fetch: concurrent transfers on one libcurl-multi loop.
//
// A Fetcher owns one background thread that drives every transfer (http, https, file://) with
// curl-multi: up to Options::max_parallel in flight, at most Options::max_host_connections
// connections per host (queued transfers wait for a free one), connections reused, HTTP/2
// multiplexed when the server offers it, proxies from http_proxy/https_proxy/no_proxy, TLS
// always verified. Bytes go to a caller-supplied Sink; SHA-256 and/or MD5 are computed in the
// write callback so the caller never reads the file a second time. Transient failures
// (connection errors, resets, short bodies, stalls, HTTP 5xx, 408, 429 with Retry-After) are
// retried with exponential backoff.
//
// Resume: an http(s) attempt that ends early after some bytes continues where it stopped with
// `Range: bytes=N-` and `If-Range: <validator>` (the first response's strong ETag, else its
// Last-Modified), when the server gave a validator and did not say `Accept-Ranges: none`, and
// the sink agrees (Sink::resume). The digests cover the whole file: the hash state of bytes
// [0, N) is kept. A 206 must start exactly at N and agree with the file's total size, else the
// transfer starts over from byte 0 without Range; a 200 answer (Range ignored, or the If-Range
// validator no longer matches) is the whole file: the sink is reset and the hashes restart.
// file:// transfers are never resumed.
//
// Redirects: at most 10 hops; a hop back to a URL already visited is a redirect loop;
// an https transfer never follows a redirect to http. Credentials (userinfo in the URL, an
// Authorization header in Request::headers) are sent only to the origin's host, port and scheme,
// never after a redirect elsewhere (libcurl's rule with CURLOPT_UNRESTRICTED_AUTH off); ~/.netrc
// is never read. All three end the transfer with kInvalidInput, not retried.
//
// fetch/ never prints and never includes a cache/ header.
//
// Thread safety: submit(), cancel() and finish() may be called from any thread. Callbacks run on
// the fetch thread; they must be quick (hand real work to TBB).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "materializer/base/status.h"

namespace mat::fetch {

// Where the bytes of one transfer go. Called only on the fetch thread, in this order: before
// every attempt either reset() (start from byte 0) or resume(n) (continue at byte n); then
// write()*; finally finish() once on success or abort() once on final failure. During an attempt
// that began with resume(n), reset() may be called once more before any write() of that attempt:
// the server sent the whole file instead of the rest.
class Sink {
 public:
  virtual ~Sink() = default;
  // Discard anything written by a previous attempt: the next write() is byte 0 of the file.
  virtual Status reset() = 0;
  // The next write() is byte `offset` of the file. `offset` is the number of bytes this sink
  // was given by write() since its last reset(); keep them. An error (or this default) makes
  // the fetcher call reset() and start from byte 0 instead: a sink that cannot keep its bytes,
  // or one whose readers cannot survive a resume, simply does not override this.
  virtual Status resume(int64_t offset) {
    return Internal("this sink cannot resume at byte " + std::to_string(offset));
  }
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
  int64_t bytes = 0;   // size of the file (the body bytes the sink holds)
  std::string sha256;  // lowercase hex, if requested and ok
  std::string md5;
  long http_status = 0;
  int attempts = 0;
  int resumes = 0;             // attempts that continued a partial file (HTTP 206)
  int64_t bytes_received = 0;  // body bytes received over all attempts (resent ones included)
  double seconds = 0;         // wall time from first attempt start to completion
  std::string effective_url;  // redacted
  std::string http_version;   // "1.1", "2", "file"
  std::string content_type;   // Content-Type of the final response as sent ("text/html;
                              // charset=utf-8"); "" for file:// and when the server sent none
};

struct Options {
  int max_parallel = 50;  // transfers in flight (--max-downloads)
  // Connections open at once to one host (--max-connections-per-host), over all loops; 0 =
  // libcurl's default (no limit). Transfers beyond it wait for a free connection. HTTP/2
  // multiplexes every transfer to a host over one connection, so this binds HTTP/1.1 only.
  int max_host_connections = kDefaultMaxHostConnections;
  static constexpr int kDefaultMaxHostConnections = 6;
  int max_retries = 4;  // retries after the first attempt
  long connect_timeout_s = 30;
  // An http(s) transfer that has sent its request and then receives no byte (headers or body)
  // for this long is abandoned and retried (resumed where it can be): --stall-timeout. A slow
  // transfer that still moves is left alone. 0 disables the check.
  double stall_timeout_s = 15;
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
  // Never more loops than max_host_connections (each loop needs a connection of its own).
  int loops = 1;
  // Progress: called on the fetch thread, at most ~10 times a second per transfer. `now` is the
  // bytes of the file held so far (a resumed transfer starts at its offset), `total` the file's
  // size when known (expected_size, else the server's), else 0.
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

// For messages about a body that is not the expected file: "; the server sent text/html, not a
// package: an error or login page?" when `content_type` (a Content-Type as sent) is a page type
// (text/*, HTML, JSON, XML); "" otherwise.
std::string unexpected_content_type_note(std::string_view content_type);

// Process-wide libcurl init; call once from main() before any thread starts (and from tests).
void global_init();

}  // namespace mat::fetch
