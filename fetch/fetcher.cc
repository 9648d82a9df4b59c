// The Fetcher: one std::thread driving one curl-multi handle.
//
// Why one loop and not a thread per transfer: downloads are waiting, not computing. One
// curl_multi_poll() over every socket holds hundreds of transfers at no CPU cost, shares one
// connection cache (TLS sessions and keep-alive connections are reused across packages from the
// same channel) and lets HTTP/2 multiplex many packages over one connection (STYLE.md §5).
//
// Life of a request (all on the fetch thread, except submit()'s hand-over):
//   submit() -> incoming_ (mutex) -> queued_ (submit order) -> running_ (≤ max_parallel, in the
//   multi handle) -> attempt done (or abandoned by check_stalls()) -> success, final failure, or
//   backing_off_ (a timer: the loop's poll timeout, never a sleep) -> running_ again when due,
//   resuming at the bytes already held when it can (start_attempt()).
// Every request leaves through complete(), which calls on_done exactly once.
//
// What a response means is decided in the header callback, when its head is complete
// (end_of_head()): a redirect is checked (loop, downgrade, count) before libcurl follows it; a
// 2xx is checked against the Range that was asked for before any body byte reaches the sink.
// Callbacks (on_done, on_progress, Sink methods) must not throw: an exception escaping the fetch
// thread terminates the process (STYLE.md §4: no exceptions for expected failures).
#include "fetch/fetcher.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <optional>
#include <random>
#include <string_view>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <vector>

#include "fetch/curl_handle.h"
#include "fetch/retry.h"
#include "materializer/base/hash.h"
#include "materializer/base/url.h"

namespace mat::fetch {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kMaxRedirects = 10;
// on_progress at most ~10 times a second per transfer: enough for a smooth bar, and the callback
// (which may take a lock in the UI) stays off the write path.
constexpr auto kProgressInterval = std::chrono::milliseconds(100);
// Upper bound on one curl_multi_poll() wait. Submissions and cancel() wake the loop at once via
// curl_multi_wakeup(); this bound is only a safety net.
constexpr int kMaxPollMs = 1000;
// How often the loop looks for stalled transfers: a stall is noticed at most this late, and the
// check (a few loads per running transfer) stays off the per-packet path.
constexpr auto kStallCheckInterval = std::chrono::milliseconds(100);
// libcurl's default receive buffer is 16 KiB; 128 KiB cuts write-callback (sink write + hash)
// calls 8x on fast links for 6.4 MB of buffers at the default 50 transfers.
constexpr long kReceiveBufferBytes = 128 * 1024;
// URLs quoted in redirect messages are cut to this length (a server chooses them).
constexpr size_t kMaxQuotedUrl = 200;

// What one response's head said (reset when a new status line arrives: redirects, 1xx).
struct ResponseHead {
  long status = 0;
  bool done = false;  // end_of_head() has run for it
  std::optional<std::string> retry_after;
  std::string etag;
  std::string last_modified;
  std::string content_range;
  std::string location;
  std::string content_type;
  int64_t content_length = -1;
  bool accept_ranges_none = false;
};

// One request, from submit() to on_done. Owned by exactly one of the loop's containers.
struct Transfer {
  Request req;
  std::string redacted_url;
  bool is_file = false;
  bool is_https = false;
  // req.headers (+ If-Range on a resumed attempt) as libcurl's list for CURLOPT_HTTPHEADER.
  // libcurl keeps only the pointer, so the list must outlive every use of `easy`: declared
  // before it, it is destroyed after it; replaced only between attempts.
  CurlSlist headers;
  CurlEasy easy;                      // created when first started, reused for retries
  char errbuf[CURL_ERROR_SIZE] = {};  // libcurl's text for the last failure
  std::optional<Hasher> sha256;
  std::optional<Hasher> md5;
  const Options* opts = nullptr;

  // The file so far, kept across attempts while they resume (restart_file() clears it).
  int64_t bytes = 0;  // bytes of the file the sink holds, all hashed
  // Validators of the response that began the file: what If-Range sends. The ETag only when
  // strong (RFC 9110 §13.1.5: If-Range never carries a weak one).
  std::string validator_etag;
  std::string validator_last_modified;
  bool ranges_refused = false;  // "Accept-Ranges: none"
  bool resume_allowed = true;   // false once the server answered a Range request wrongly
  int64_t total = -1;           // the file's size as the server states it
  int resumes = 0;
  int64_t bytes_received = 0;  // body bytes handed to the sink over all attempts

  // Per attempt (reset in start_attempt()).
  int64_t resume_from = 0;           // the Range start this attempt asked for (0: none)
  ResponseHead head;                 // the latest response's head
  Status write_error;                // why a callback stopped the transfer (final)
  std::string range_error;           // why an answer to a Range request was refused
  bool stalled = false;              // abandoned by check_stalls()
  std::vector<std::string> visited;  // URLs of this attempt's redirect chain
  Clock::time_point last_progress;
  // Stall detection: `activity` counts callbacks with data; check_stalls() notes when it
  // last changed (or when the request had not been sent yet).
  uint64_t activity = 0;
  uint64_t activity_seen = 0;
  Clock::time_point quiet_since;

  int attempts = 0;
  Clock::time_point first_start;
  Clock::time_point retry_at;  // while backing off
};

// ---- header parsing ----

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) {
    s.remove_suffix(1);
  }
  return s;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

std::optional<int64_t> parse_int64(std::string_view s) {
  int64_t v = 0;
  if (s.empty() || s.size() > 18) return std::nullopt;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v < 0) return std::nullopt;
  return v;
}

// "HTTP/1.1 206 Partial Content", "HTTP/2 200" -> the status code; 0 if malformed.
long parse_status_line(std::string_view line) {
  const size_t sp = line.find(' ');
  if (sp == std::string_view::npos || line.size() < sp + 4) return 0;
  auto code = parse_int64(line.substr(sp + 1, 3));
  return code ? static_cast<long>(*code) : 0;
}

struct ContentRange {
  int64_t first = 0;
  int64_t last = 0;
  int64_t total = -1;  // -1: "*" (unknown)
};

// "bytes 100-999/1000" or "bytes 100-999/*" (RFC 9110 §14.4).
std::optional<ContentRange> parse_content_range(std::string_view v) {
  constexpr std::string_view kUnit = "bytes ";
  if (v.size() <= kUnit.size()) return std::nullopt;
  for (size_t i = 0; i < kUnit.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(v[i])) != kUnit[i]) return std::nullopt;
  }
  v.remove_prefix(kUnit.size());
  const size_t dash = v.find('-');
  const size_t slash = v.find('/');
  if (dash == std::string_view::npos || slash == std::string_view::npos || dash > slash) {
    return std::nullopt;
  }
  auto first = parse_int64(trim(v.substr(0, dash)));
  auto last = parse_int64(trim(v.substr(dash + 1, slash - dash - 1)));
  if (!first || !last || *last < *first) return std::nullopt;
  ContentRange r{*first, *last, -1};
  std::string_view total = trim(v.substr(slash + 1));
  if (total != "*") {
    auto t = parse_int64(total);
    if (!t || *t <= *last) return std::nullopt;
    r.total = *t;
  }
  return r;
}

// The absolute form of `location` relative to `base`, normalised by libcurl's URL parser (the
// same one that follows the redirect), and its scheme. nullopt if either does not parse.
std::optional<std::string> resolve_url(const char* base, const std::string& location,
                                       std::string* scheme) {
  CurlUrl u(curl_url());
  if (!u || curl_url_set(u.get(), CURLUPART_URL, base, 0) != CURLUE_OK) return std::nullopt;
  if (!location.empty() && curl_url_set(u.get(), CURLUPART_URL, location.c_str(),
                                        CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK) {
    return std::nullopt;
  }
  char* out = nullptr;
  if (curl_url_get(u.get(), CURLUPART_URL, &out, 0) != CURLUE_OK || out == nullptr) {
    return std::nullopt;
  }
  std::string url(out);
  curl_free(out);
  char* sch = nullptr;
  if (scheme != nullptr && curl_url_get(u.get(), CURLUPART_SCHEME, &sch, 0) == CURLUE_OK) {
    *scheme = sch;
    curl_free(sch);
  }
  return url;
}

// A URL for a message: credentials removed, cut to kMaxQuotedUrl.
std::string quote_url(std::string_view url) {
  std::string r = shown_url(url);
  if (r.size() > kMaxQuotedUrl) {
    r.resize(kMaxQuotedUrl);
    r += "...";
  }
  return r;
}

std::string join_chain(const std::vector<std::string>& urls) {
  std::string s;
  for (const std::string& u : urls) {
    if (!s.empty()) s += " -> ";
    s += quote_url(u);
  }
  return s;
}

std::string seconds_text(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf,
                s == static_cast<double>(static_cast<int64_t>(s)) ? "%.0f s" : "%.1f s", s);
  return buf;
}

// ---- the file so far ----

// Drops the bytes held so far: the next body byte is byte 0 of the file.
Status restart_file(Transfer& t) {
  MAT_RETURN_IF_ERROR(t.req.sink->reset().with_context(t.redacted_url));
  if (t.sha256) t.sha256->reset();
  if (t.md5) t.md5->reset();
  t.bytes = 0;
  t.resume_from = 0;
  return Status::Ok();
}

bool can_resume(const Transfer& t) {
  return !t.is_file && t.resume_allowed && !t.ranges_refused && t.bytes > 0 &&
         (!t.validator_etag.empty() || !t.validator_last_modified.empty());
}

// A 2xx that carries the file from byte 0: remember what a later Range request can name.
void note_validators(Transfer& t) {
  const ResponseHead& h = t.head;
  const bool weak = h.etag.starts_with("W/") || h.etag.starts_with("w/");
  t.validator_etag = weak ? std::string() : h.etag;
  t.validator_last_modified = h.last_modified;
  t.ranges_refused = h.accept_ranges_none;
  t.total = h.content_length;
}

// The answer to `Range: bytes=<resume_from>-` is a 206: it must continue the same file exactly
// where the sink stopped. Returns why not, or "".
std::string check_partial(const Transfer& t) {
  const ResponseHead& h = t.head;
  auto cr = parse_content_range(h.content_range);
  if (!cr) {
    return "HTTP 206 with no valid Content-Range (\"" + h.content_range.substr(0, 80) + "\")";
  }
  if (cr->first != t.resume_from) {
    return "HTTP 206 starts at byte " + std::to_string(cr->first) + ", asked for byte " +
           std::to_string(t.resume_from);
  }
  const int64_t known = t.req.expected_size >= 0 ? t.req.expected_size : t.total;
  if (cr->total >= 0 && cr->last != cr->total - 1) {
    return "HTTP 206 ends at byte " + std::to_string(cr->last) + " of " +
           std::to_string(cr->total) + ", asked for the rest";
  }
  if (cr->total >= 0 && known >= 0 && cr->total != known) {
    return "HTTP 206 says the file has " + std::to_string(cr->total) + " bytes, it had " +
           std::to_string(known);
  }
  if (h.content_length >= 0 && h.content_length != cr->last - cr->first + 1) {
    return "HTTP 206 Content-Length " + std::to_string(h.content_length) +
           " disagrees with its Content-Range";
  }
  if (!h.etag.empty() && !t.validator_etag.empty() && h.etag != t.validator_etag) {
    return "HTTP 206 of another version (ETag " + h.etag.substr(0, 80) + ")";
  }
  return "";
}

// A redirect is about to be followed (libcurl follows after the head). Returns false (with
// write_error set) to refuse it: a loop, too many hops, or https -> http.
bool check_redirect(Transfer& t) {
  char* current = nullptr;
  if (curl_easy_getinfo(t.easy.get(), CURLINFO_EFFECTIVE_URL, &current) != CURLE_OK ||
      current == nullptr) {
    return true;
  }
  if (t.visited.empty()) {
    auto origin = resolve_url(current, "", nullptr);
    t.visited.push_back(origin ? *origin : std::string(current));
  }
  std::string scheme;
  auto target = resolve_url(current, t.head.location, &scheme);
  if (!target) return true;  // libcurl refuses it with its own error
  for (char& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (t.is_https && scheme != "https") {
    t.write_error = InvalidInput(
        "redirect from https to " + scheme + " refused (" + quote_url(current) + " -> " +
        quote_url(*target) +
        "): a transfer that began over https never continues unencrypted; fix the server's "
        "redirect, or write the " +
        scheme + ":// URL into the lock if that is intended");
    return false;
  }
  const bool loop = std::find(t.visited.begin(), t.visited.end(), *target) != t.visited.end();
  t.visited.push_back(*target);
  if (loop) {
    t.write_error = InvalidInput("redirect loop: " + join_chain(t.visited) +
                                 "; the server's redirects never reach the file: check the URL "
                                 "and the server's redirect rules");
    return false;
  }
  if (t.visited.size() > kMaxRedirects + 1) {
    t.write_error = InvalidInput("more than " + std::to_string(kMaxRedirects) +
                                 " redirects: " + join_chain(t.visited) +
                                 "; check the URL and the server's redirect rules");
    return false;
  }
  return true;
}

// The head of a response is complete. Returns false to stop the transfer (write_error or
// range_error says why).
bool end_of_head(Transfer& t) {
  ResponseHead& h = t.head;
  if (h.done) return true;
  h.done = true;
  if (h.status >= 100 && h.status < 200) return true;  // 100 Continue: the real head follows
  if (h.status >= 300 && h.status < 400 && !h.location.empty()) return check_redirect(t);
  if (h.status < 200 || h.status >= 300) return true;  // an error page: drained, classified later
  if (h.status == 206) {
    if (t.resume_from == 0) {
      t.write_error = IoError(
          "HTTP 206 (a part of the file) to a request for the whole file; "
          "the server or a proxy in between is broken");
      return false;
    }
    t.range_error = check_partial(t);
    if (!t.range_error.empty()) return false;
    if (auto cr = parse_content_range(h.content_range); cr && cr->total >= 0) t.total = cr->total;
    ++t.resumes;
    return true;
  }
  if (t.resume_from > 0) {
    // The whole file instead of the rest: the server ignores Range, or the file changed and
    // If-Range no longer matches. Start the file over; this attempt carries it.
    Status s = restart_file(t);
    if (!s.ok()) {
      t.write_error = std::move(s);
      return false;
    }
  }
  note_validators(t);
  return true;
}

// ---- libcurl callbacks (fetch thread) ----

size_t on_write(char* data, size_t size, size_t nmemb, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t len = size * nmemb;
  ++t->activity;
  if (!t->is_file) {
    // The body of an error response (404 page, 503 page) is drained, not stored: the sink only
    // ever sees the bytes of the file.
    if (t->head.status < 200 || t->head.status >= 300) return len;
    // libcurl ends every head with an empty line, so this has run already; it is idempotent.
    if (!end_of_head(*t)) return 0;
  }
  const int64_t expected = t->req.expected_size;
  if (expected >= 0 && t->bytes + static_cast<int64_t>(len) > expected) {
    // Stop now rather than download a file that is already known to be wrong.
    t->write_error =
        Corrupt("size mismatch: expected " + std::to_string(expected) + " bytes, got at least " +
                std::to_string(t->bytes + static_cast<int64_t>(len)) +
                unexpected_content_type_note(t->head.content_type));
    return 0;  // != len: libcurl ends the transfer with CURLE_WRITE_ERROR
  }
  Status s = t->req.sink->write(data, len);
  if (!s.ok()) {
    t->write_error = std::move(s);
    return 0;
  }
  if (t->sha256) t->sha256->update(data, len);
  if (t->md5) t->md5->update(data, len);
  t->bytes += static_cast<int64_t>(len);
  t->bytes_received += static_cast<int64_t>(len);
  return len;
}

// Called once per header line, for every response (redirects and error responses included),
// each head ending with an empty line.
size_t on_header(char* data, size_t size, size_t nmemb, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t len = size * nmemb;
  ++t->activity;
  if (t->is_file) return len;
  std::string_view line(data, len);
  ResponseHead& h = t->head;
  if (line.starts_with("HTTP/")) {
    h = ResponseHead{};  // a new response begins (after a redirect or a 1xx)
    h.status = parse_status_line(line);
    return len;
  }
  if (trim(line).empty()) return end_of_head(*t) ? len : 0;
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos || colon > 32) return len;
  std::string name(line.substr(0, colon));
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const std::string_view value = trim(line.substr(colon + 1));
  if (name == "retry-after") {
    h.retry_after = std::string(value);
  } else if (name == "etag") {
    h.etag = std::string(value);
  } else if (name == "last-modified") {
    h.last_modified = std::string(value);
  } else if (name == "content-range") {
    h.content_range = std::string(value);
  } else if (name == "content-length") {
    h.content_length = parse_int64(value).value_or(-1);
  } else if (name == "content-type") {
    h.content_type = std::string(value);
  } else if (name == "accept-ranges") {
    h.accept_ranges_none = iequals(value, "none");
  } else if (name == "location" && h.location.empty()) {
    h.location = std::string(value);  // libcurl follows the first one
  }
  return len;
}

int on_progress(void* user, curl_off_t dltotal, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  const auto now = Clock::now();
  if (now - t->last_progress < kProgressInterval) return 0;
  t->last_progress = now;
  int64_t total = t->req.expected_size >= 0 ? t->req.expected_size : t->total;
  if (total < 0) total = dltotal > 0 ? t->resume_from + static_cast<int64_t>(dltotal) : 0;
  t->opts->on_progress(t->req.id, t->bytes, total);
  return 0;
}

const char* http_version_name(long v) {
  switch (v) {
    case CURL_HTTP_VERSION_1_0:
      return "1.0";
    case CURL_HTTP_VERSION_1_1:
      return "1.1";
    case CURL_HTTP_VERSION_2_0:
      return "2";
    case CURL_HTTP_VERSION_3:
      return "3";
    default:
      return "";
  }
}

class FetcherImpl final : public Fetcher {
 public:
  FetcherImpl(Options opts, std::function<void(FetchResult&&)> on_done, CurlMulti multi,
              std::string ca_bundle)
      : opts_(std::move(opts)),
        on_done_(std::move(on_done)),
        ca_bundle_(std::move(ca_bundle)),
        multi_(std::move(multi)),
        rng_(std::random_device{}()) {}

  ~FetcherImpl() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      cancelled_ = true;
      exiting_ = true;
    }
    curl_multi_wakeup(multi_.get());
    if (thread_.joinable()) thread_.join();
  }

  FetcherImpl(const FetcherImpl&) = delete;
  FetcherImpl& operator=(const FetcherImpl&) = delete;

  // Throws std::system_error if the thread cannot start (create() converts it).
  void start() {
    thread_ = std::thread([this] { run(); });
  }

  void submit(Request req) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      incoming_.push_back(std::move(req));
      ++submitted_;
    }
    curl_multi_wakeup(multi_.get());
  }

  void cancel() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      cancelled_ = true;
    }
    curl_multi_wakeup(multi_.get());
  }

  // Must not be called from on_done/on_progress (they run on the fetch thread, which is the
  // one that would have to make progress): that deadlocks.
  void finish() override {
    std::unique_lock<std::mutex> lock(mu_);
    idle_cv_.wait(lock, [this] { return completed_ == submitted_; });
  }

 private:
  void run();
  void admit(Request req, bool cancelled);
  void start_due_transfers();
  void launch(std::unique_ptr<Transfer> t);
  Status configure(Transfer& t);
  Status start_attempt(Transfer& t);
  void reap();
  void check_stalls();
  void on_attempt_done(std::unique_ptr<Transfer> t, CURLcode rc);
  void schedule_retry(std::unique_ptr<Transfer> t, long http_status, bool at_once = false);
  void cancel_all();
  void complete(Transfer& t, Status status);
  bool idle() const { return queued_.empty() && backing_off_.empty() && running_.empty(); }
  int poll_timeout_ms() const;

  const Options opts_;
  const std::function<void(FetchResult&&)> on_done_;
  const std::string ca_bundle_;  // resolved once in create(): Options, then $SSL_CERT_FILE
  // Declared before the transfer containers so that it is destroyed after them; run() removes
  // every easy handle from it before returning.
  CurlMulti multi_;

  // Hand-over between callers and the fetch thread.
  std::mutex mu_;
  std::condition_variable idle_cv_;  // signalled when completed_ grows
  std::deque<Request> incoming_;     // GUARDED_BY(mu_): submitted, not yet seen by the loop
  bool cancelled_ = false;           // GUARDED_BY(mu_): sticky; everything ends kCancelled
  bool exiting_ = false;             // GUARDED_BY(mu_): destructor: leave run() when idle
  int64_t submitted_ = 0;            // GUARDED_BY(mu_)
  int64_t completed_ = 0;            // GUARDED_BY(mu_): on_done calls that have returned

  // Fetch thread only.
  std::deque<std::unique_ptr<Transfer>> queued_;        // waiting for a slot, submit order
  std::vector<std::unique_ptr<Transfer>> backing_off_;  // waiting for retry_at
  std::unordered_map<CURL*, std::unique_ptr<Transfer>> running_;  // in multi_
  std::mt19937_64 rng_;                                           // backoff jitter
  Clock::time_point next_stall_check_;
  Clock::time_point next_stall_deadline_ = Clock::time_point::max();  // earliest, as of the
                                                                      // last check_stalls()

  std::thread thread_;  // last: starts after every member above exists
};

void FetcherImpl::run() {
  for (;;) {
    std::deque<Request> fresh;
    bool cancelled = false;
    bool exiting = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      fresh.swap(incoming_);
      cancelled = cancelled_;
      exiting = exiting_;
    }
    for (Request& r : fresh) admit(std::move(r), cancelled);
    if (cancelled) cancel_all();
    if (exiting && idle()) return;

    start_due_transfers();
    int still_running = 0;
    curl_multi_perform(multi_.get(), &still_running);
    reap();
    check_stalls();
    // Sleeps until a socket is ready, a curl timer fires, a retry is due, or wakeup().
    curl_multi_poll(multi_.get(), nullptr, 0, poll_timeout_ms(), nullptr);
  }
}

int FetcherImpl::poll_timeout_ms() const {
  if (!queued_.empty() && static_cast<int>(running_.size()) < opts_.max_parallel) return 0;
  int timeout = kMaxPollMs;
  const auto now = Clock::now();
  for (const auto& t : backing_off_) {
    const auto wait = std::chrono::ceil<std::chrono::milliseconds>(t->retry_at - now).count();
    timeout = std::min<int>(timeout, static_cast<int>(std::max<int64_t>(0, wait)));
  }
  if (next_stall_deadline_ != Clock::time_point::max()) {
    const auto wait =
        std::chrono::ceil<std::chrono::milliseconds>(next_stall_deadline_ - now).count();
    timeout = std::min<int>(timeout, static_cast<int>(std::clamp<int64_t>(
                                         wait, kStallCheckInterval.count(), kMaxPollMs)));
  }
  return timeout;
}

void FetcherImpl::admit(Request req, bool cancelled) {
  auto t = std::make_unique<Transfer>();
  t->req = std::move(req);
  t->redacted_url = shown_url(t->req.url);
  t->is_file = is_file_url(t->req.url);
  t->is_https =
      t->req.url.size() >= 8 && iequals(std::string_view(t->req.url).substr(0, 8), "https://");
  t->opts = &opts_;
  if (cancelled) {
    complete(*t, Cancelled(t->redacted_url + ": cancelled"));
  } else if (t->req.sink == nullptr) {
    complete(*t, Internal(t->redacted_url + ": request has no sink"));
  } else if (opts_.offline && !t->is_file) {
    complete(*t, InvalidInput("offline: " + t->redacted_url +
                              " not in cache; run again without --offline"));
  } else {
    queued_.push_back(std::move(t));
  }
}

void FetcherImpl::start_due_transfers() {
  const auto has_slot = [this] { return static_cast<int>(running_.size()) < opts_.max_parallel; };
  // Retries first: they were submitted before anything still queued.
  const auto now = Clock::now();
  for (size_t i = 0; i < backing_off_.size() && has_slot();) {
    if (backing_off_[i]->retry_at <= now) {
      std::unique_ptr<Transfer> t = std::move(backing_off_[i]);
      backing_off_.erase(backing_off_.begin() + static_cast<std::ptrdiff_t>(i));
      launch(std::move(t));
    } else {
      ++i;
    }
  }
  while (!queued_.empty() && has_slot()) {
    std::unique_ptr<Transfer> t = std::move(queued_.front());
    queued_.pop_front();
    launch(std::move(t));
  }
}

void FetcherImpl::launch(std::unique_ptr<Transfer> t) {
  Status s = start_attempt(*t);
  if (!s.ok()) {
    complete(*t, std::move(s));
    return;
  }
  CURL* easy = t->easy.get();
  running_.emplace(easy, std::move(t));
}

Status FetcherImpl::configure(Transfer& t) {
  t.easy.reset(curl_easy_init());
  if (!t.easy) return Internal(t.redacted_url + ": curl_easy_init failed");
  CURL* e = t.easy.get();
  CURLcode rc = CURLE_OK;
  const auto set = [&rc](CURLcode r) {
    if (rc == CURLE_OK) rc = r;
  };
  set(curl_easy_setopt(e, CURLOPT_URL, t.req.url.c_str()));
  set(curl_easy_setopt(e, CURLOPT_PRIVATE, &t));
  set(curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t.errbuf));
  set(curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L));  // no SIGALRM: we are not the main thread
  // http(s) and file only; a redirect may never lead to file:// (a server must not make us read
  // local files), nor from https to http: check_redirect() refuses that with a clear message
  // first, this is the backstop.
  set(curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https,file"));
  set(curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, t.is_https ? "https" : "http,https"));
  set(curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L));
  // check_redirect() counts the hops and names them; libcurl's own limit is the backstop.
  set(curl_easy_setopt(e, CURLOPT_MAXREDIRS, static_cast<long>(kMaxRedirects)));
  // Credentials from the URL or an Authorization header go to the origin's host, port and
  // scheme only, never to where a redirect points (libcurl's default, stated here because it
  // is a promise: fetcher.h). ~/.netrc is never read (CURLOPT_NETRC stays off).
  set(curl_easy_setopt(e, CURLOPT_UNRESTRICTED_AUTH, 0L));
  set(curl_easy_setopt(e, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2TLS)));
  // https: wait for an existing connection's ALPN answer and multiplex on it if it says h2,
  // rather than open one TLS connection per transfer at once. Not for plain http (always
  // HTTP/1.1 here): libcurl 7.88 parks such waiting transfers until some other transfer
  // *finishes*, so one slow download serialised all the others (cancel test: 1 s vs 20 ms).
  if (t.is_https) set(curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L));
  // CURLOPT_ACCEPT_ENCODING is deliberately not set: packages are already compressed, and the
  // digest in the lock is of the bytes on the server, so we want them raw.
  set(curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L));
  set(curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L));
  if (!ca_bundle_.empty()) set(curl_easy_setopt(e, CURLOPT_CAINFO, ca_bundle_.c_str()));
  // Proxies: CURLOPT_PROXY is deliberately not set, so libcurl reads http_proxy, https_proxy,
  // all_proxy and no_proxy from the environment itself. Setting CURLOPT_PROXY (even to "")
  // would override that.
  set(curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, opts_.connect_timeout_s));
  // No CURLOPT_LOW_SPEED_*: check_stalls() abandons a transfer after --stall-timeout without a
  // byte. libcurl's check averages the speed over the last ~5 s, so it fires seconds late,
  // and it also ends slow transfers that are still moving.
  set(curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L));
  set(curl_easy_setopt(e, CURLOPT_BUFFERSIZE, kReceiveBufferBytes));
  set(curl_easy_setopt(e, CURLOPT_USERAGENT, opts_.user_agent.c_str()));
  set(curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write));
  set(curl_easy_setopt(e, CURLOPT_WRITEDATA, &t));
  set(curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header));
  set(curl_easy_setopt(e, CURLOPT_HEADERDATA, &t));
  if (opts_.on_progress) {
    set(curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L));
    set(curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress));
    set(curl_easy_setopt(e, CURLOPT_XFERINFODATA, &t));
  }
  if (rc != CURLE_OK) {
    return Internal(t.redacted_url +
                    ": configuring the transfer failed: " + curl_easy_strerror(rc));
  }
  if (t.req.want_sha256) t.sha256.emplace(HashKind::kSha256);
  if (t.req.want_md5) t.md5.emplace(HashKind::kMd5);
  return Status::Ok();
}

// Request headers for one attempt: the caller's, plus If-Range when resuming.
Status set_request_headers(Transfer& t, const std::string& if_range) {
  CurlSlist list;
  std::vector<std::string> lines = t.is_file ? std::vector<std::string>() : t.req.headers;
  if (!if_range.empty()) lines.push_back("If-Range: " + if_range);
  for (const std::string& h : lines) {
    // Appending to a non-empty list returns its unchanged head; only the first call changes
    // what `list` must own.
    curl_slist* head = curl_slist_append(list.get(), h.c_str());
    if (head == nullptr) return Internal(t.redacted_url + ": curl_slist_append failed");
    if (list == nullptr) list.reset(head);
  }
  // The easy handle is not in the multi handle here, so the old list is no longer in use.
  if (curl_easy_setopt(t.easy.get(), CURLOPT_HTTPHEADER, list.get()) != CURLE_OK) {
    return Internal(t.redacted_url + ": setting request headers failed");
  }
  t.headers = std::move(list);
  return Status::Ok();
}

Status FetcherImpl::start_attempt(Transfer& t) {
  if (!t.easy) MAT_RETURN_IF_ERROR(configure(t));
  if (t.attempts == 0) t.first_start = Clock::now();
  ++t.attempts;
  t.head = ResponseHead{};
  t.write_error = Status::Ok();
  t.range_error.clear();
  t.stalled = false;
  t.visited.clear();
  t.errbuf[0] = '\0';
  t.last_progress = Clock::time_point{};
  t.quiet_since = Clock::now();
  t.activity_seen = t.activity;
  // Continue the file where the last attempt stopped, or start it over.
  t.resume_from = 0;
  if (can_resume(t) && t.req.sink->resume(t.bytes).ok()) {
    t.resume_from = t.bytes;
  } else {
    MAT_RETURN_IF_ERROR(restart_file(t));
  }
  std::string range;
  std::string if_range;
  if (t.resume_from > 0) {
    range = std::to_string(t.resume_from) + "-";
    // A strong ETag names the exact bytes; Last-Modified is the weaker fallback (RFC 9110
    // §13.1.5). Without a validator can_resume() is false: a Range alone could splice two
    // versions of a file.
    if_range = !t.validator_etag.empty() ? t.validator_etag : t.validator_last_modified;
  }
  if (curl_easy_setopt(t.easy.get(), CURLOPT_RANGE, range.empty() ? nullptr : range.c_str()) !=
      CURLE_OK) {
    return Internal(t.redacted_url + ": setting the Range failed");
  }
  MAT_RETURN_IF_ERROR(set_request_headers(t, if_range));
  const CURLMcode mc = curl_multi_add_handle(multi_.get(), t.easy.get());
  if (mc != CURLM_OK) {
    return Internal(t.redacted_url + ": curl_multi_add_handle: " + curl_multi_strerror(mc));
  }
  return Status::Ok();
}

void FetcherImpl::reap() {
  int left = 0;
  while (CURLMsg* msg = curl_multi_info_read(multi_.get(), &left)) {
    if (msg->msg != CURLMSG_DONE) continue;
    // Copy out before remove_handle: msg points into the easy handle.
    CURL* easy = msg->easy_handle;
    const CURLcode rc = msg->data.result;
    auto it = running_.find(easy);
    if (it == running_.end()) continue;  // cannot happen: every handle in multi_ is in running_
    std::unique_ptr<Transfer> t = std::move(it->second);
    running_.erase(it);
    curl_multi_remove_handle(multi_.get(), easy);
    on_attempt_done(std::move(t), rc);
  }
}

// Abandons transfers that have sent their request and then received nothing for
// --stall-timeout: each becomes a failed, retryable attempt (resumed where it can be). Until the
// request is sent (resolving, connecting, TLS, waiting for a free connection to the host) the
// clock does not run: connecting has CURLOPT_CONNECTTIMEOUT, and waiting in line is no stall.
void FetcherImpl::check_stalls() {
  if (opts_.stall_timeout_s <= 0 || running_.empty()) {
    next_stall_deadline_ = Clock::time_point::max();
    return;
  }
  const auto now = Clock::now();
  if (now < next_stall_check_) return;
  next_stall_check_ = now + kStallCheckInterval;
  const auto limit = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(opts_.stall_timeout_s));
  next_stall_deadline_ = Clock::time_point::max();
  std::vector<CURL*> stalled;
  for (auto& [easy, t] : running_) {
    if (t->is_file) continue;
    curl_off_t sent_at = 0;  // microseconds from the attempt's start to its request; 0: not yet
    curl_easy_getinfo(easy, CURLINFO_PRETRANSFER_TIME_T, &sent_at);
    if (sent_at == 0 || t->activity != t->activity_seen) {
      t->activity_seen = t->activity;
      t->quiet_since = now;
    }
    if (sent_at != 0 && now - t->quiet_since >= limit) {
      stalled.push_back(easy);
    } else {
      next_stall_deadline_ = std::min(next_stall_deadline_, t->quiet_since + limit);
    }
  }
  for (CURL* easy : stalled) {
    auto node = running_.extract(easy);
    curl_multi_remove_handle(multi_.get(), easy);  // closes its connection (or h2 stream)
    node.mapped()->stalled = true;
    on_attempt_done(std::move(node.mapped()), CURLE_OPERATION_TIMEDOUT);
  }
}

void FetcherImpl::on_attempt_done(std::unique_ptr<Transfer> t, CURLcode rc) {
  long http_status = 0;
  curl_easy_getinfo(t->easy.get(), CURLINFO_RESPONSE_CODE, &http_status);
  if (!t->write_error.ok()) {
    // The sink failed (kNoSpace stays kNoSpace), the size overran, or a redirect was refused:
    // never retried, since the same bytes would fail the same way.
    complete(*t, t->write_error.with_context(t->redacted_url));
    return;
  }
  Verdict v;
  if (t->stalled) {
    v = Verdict{Code::kRetryable, true,
                "stalled: no data for " + seconds_text(opts_.stall_timeout_s) + " (" +
                    std::to_string(t->bytes) + " bytes of the file held)",
                "the server or the network stopped sending; rerun later, or raise "
                "--stall-timeout"};
  } else if (!t->range_error.empty() ||
             (t->resume_from > 0 && rc == CURLE_OK && http_status == 416)) {
    // The server cannot continue this file correctly: start it over, without Range, at once
    // (nothing suggests the server is overloaded).
    t->resume_allowed = false;
    v = Verdict{Code::kRetryable, true,
                "resuming at byte " + std::to_string(t->resume_from) + " failed: " +
                    (t->range_error.empty() ? std::string("HTTP 416") : t->range_error),
                "the server does not resume downloads correctly; rerun later"};
    if (t->attempts <= opts_.max_retries) {
      schedule_retry(std::move(t), http_status, /*at_once=*/true);
      return;
    }
  } else if (rc != CURLE_OK) {
    v = classify_curl(rc, scrub_credentials(t->errbuf, t->req.url));
  } else if (!t->is_file) {
    v = classify_http(http_status);
  }
  if (v.ok()) {
    if (!t->is_file && !t->head.done) {
      // A body-less 2xx: its head still decides whether the bytes held are the file.
      if (!end_of_head(*t)) {
        complete(*t, t->write_error.ok() ? Retryable(t->redacted_url + ": " + t->range_error)
                                         : t->write_error.with_context(t->redacted_url));
        return;
      }
    }
    const int64_t expected = t->req.expected_size;
    if (expected >= 0 && t->bytes != expected) {
      complete(*t, Corrupt(t->redacted_url + ": size mismatch: expected " +
                           std::to_string(expected) + " bytes, got " + std::to_string(t->bytes) +
                           unexpected_content_type_note(t->head.content_type)));
      return;
    }
    complete(*t, Status::Ok());
    return;
  }
  if (v.retry && t->attempts <= opts_.max_retries) {
    schedule_retry(std::move(t), http_status);
    return;
  }
  complete(*t, final_status(v, t->redacted_url, t->attempts));
}

void FetcherImpl::schedule_retry(std::unique_ptr<Transfer> t, long http_status, bool at_once) {
  std::optional<double> retry_after;
  if (t->head.retry_after && honours_retry_after(http_status)) {
    retry_after = parse_retry_after(*t->head.retry_after, std::chrono::system_clock::now());
  }
  if (at_once) retry_after = 0.0;
  const BackoffPolicy policy{opts_.backoff_initial_s, opts_.backoff_max_s, opts_.retry_after_max_s};
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  const double delay = retry_delay_s(policy, t->attempts, unit(rng_), retry_after);
  t->retry_at = Clock::now() +
                std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(delay));
  backing_off_.push_back(std::move(t));
}

void FetcherImpl::cancel_all() {
  // Move everything out first: on_done may submit(), which only touches incoming_, but keeping
  // the loop's containers consistent while callbacks run costs nothing.
  std::vector<std::unique_ptr<Transfer>> victims;
  for (auto& [easy, t] : running_) {
    curl_multi_remove_handle(multi_.get(), easy);
    victims.push_back(std::move(t));
  }
  running_.clear();
  for (auto& t : backing_off_) victims.push_back(std::move(t));
  backing_off_.clear();
  for (auto& t : queued_) victims.push_back(std::move(t));
  queued_.clear();
  for (auto& t : victims) complete(*t, Cancelled(t->redacted_url + ": cancelled"));
}

// The only exit: fills the result, settles the sink, calls on_done once, counts it.
// REQUIRES: t.easy (if any) is not in multi_.
void FetcherImpl::complete(Transfer& t, Status status) {
  FetchResult r;
  r.id = t.req.id;
  r.attempts = t.attempts;
  r.resumes = t.resumes;
  r.bytes_received = t.bytes_received;
  r.effective_url = t.redacted_url;
  if (t.attempts > 0) {
    r.seconds = std::chrono::duration<double>(Clock::now() - t.first_start).count();
  }
  if (t.easy) {
    CURL* e = t.easy.get();
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r.http_status);
    char* eff = nullptr;
    if (curl_easy_getinfo(e, CURLINFO_EFFECTIVE_URL, &eff) == CURLE_OK && eff != nullptr) {
      r.effective_url = shown_url(eff);
    }
    long version = 0;
    curl_easy_getinfo(e, CURLINFO_HTTP_VERSION, &version);
    r.http_version = http_version_name(version);
    char* content_type = nullptr;
    if (curl_easy_getinfo(e, CURLINFO_CONTENT_TYPE, &content_type) == CURLE_OK &&
        content_type != nullptr) {
      r.content_type = content_type;
    }
  }
  if (t.is_file) r.http_version = "file";

  if (status.ok()) {
    // finish() is the sink's last call on this path; if it fails we do not also abort().
    status = t.req.sink->finish().with_context(t.redacted_url);
  } else if (t.req.sink != nullptr) {
    t.req.sink->abort();
  }
  if (status.ok()) {
    r.bytes = t.bytes;
    if (t.sha256) r.sha256 = t.sha256->hex();
    if (t.md5) r.md5 = t.md5->hex();
  }
  r.status = std::move(status);
  on_done_(std::move(r));
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++completed_;
  }
  idle_cv_.notify_all();
}

}  // namespace

std::string unexpected_content_type_note(std::string_view content_type) {
  std::string_view type = trim(content_type.substr(0, content_type.find(';')));
  std::string lower(type.substr(0, 100));
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const bool page = lower.starts_with("text/") || lower.find("html") != std::string::npos ||
                    lower.find("json") != std::string::npos ||
                    lower.find("xml") != std::string::npos;
  if (!page) return "";
  return "; the server sent " + lower + ", not a package: an error or login page?";
}

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

namespace {

// Several loops, each a FetcherImpl with its own thread, multi handle and connections. A request
// goes to the loop with the fewest bytes handed to it so far, so big downloads spread out.
class ShardedFetcher final : public Fetcher {
 public:
  explicit ShardedFetcher(std::vector<std::unique_ptr<Fetcher>> loops)
      : loops_(std::move(loops)), bytes_(loops_.size(), 0) {}

  void submit(Request req) override {
    size_t pick = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      pick = std::min_element(bytes_.begin(), bytes_.end()) - bytes_.begin();
      // Unknown sizes count as 1 MiB: enough to spread a list of them round-robin.
      bytes_[pick] += req.expected_size > 0 ? req.expected_size : (1 << 20);
    }
    loops_[pick]->submit(std::move(req));
  }
  void cancel() override {
    for (auto& l : loops_) l->cancel();
  }
  void finish() override {
    for (auto& l : loops_) l->finish();
  }

 private:
  std::vector<std::unique_ptr<Fetcher>> loops_;
  std::mutex mu_;
  std::vector<int64_t> bytes_;  // GUARDED_BY(mu_): expected bytes submitted per loop
};

}  // namespace

Result<std::unique_ptr<Fetcher>> Fetcher::create(Options opts,
                                                 std::function<void(FetchResult&&)> on_done) {
  if (opts.max_parallel < 1) return InvalidInput("--max-downloads must be at least 1");
  if (opts.max_retries < 0) return InvalidInput("max_retries must not be negative");
  if (opts.loops < 1) return InvalidInput("fetch loops must be at least 1");
  if (!on_done) return InvalidInput("Fetcher::create: on_done is empty");
  global_init();
  if (opts.max_host_connections < 0) {
    return InvalidInput("--max-connections-per-host must not be negative");
  }
  if (opts.stall_timeout_s < 0) return InvalidInput("--stall-timeout must not be negative");
  // Each loop has connections of its own, so the per-host cap is split between them, and there
  // are never more loops than connections allowed.
  int n = std::min(opts.loops, opts.max_parallel);
  if (opts.max_host_connections > 0) n = std::min(n, opts.max_host_connections);
  if (n > 1) {
    std::vector<std::unique_ptr<Fetcher>> loops;
    for (int k = 0; k < n; ++k) {
      Options one = opts;
      one.loops = 1;
      // --max-downloads and --max-connections-per-host stay totals: split them, the first
      // loops taking the remainders.
      one.max_parallel = opts.max_parallel / n + (k < opts.max_parallel % n ? 1 : 0);
      if (opts.max_host_connections > 0) {
        one.max_host_connections =
            opts.max_host_connections / n + (k < opts.max_host_connections % n ? 1 : 0);
      }
      MAT_ASSIGN_OR_RETURN(std::unique_ptr<Fetcher> loop, create(std::move(one), on_done));
      loops.push_back(std::move(loop));
    }
    return std::unique_ptr<Fetcher>(std::make_unique<ShardedFetcher>(std::move(loops)));
  }
  opts.loops = 1;

  std::string ca_bundle = opts.ca_bundle;
  if (ca_bundle.empty()) {
    // Read once here, not per transfer: getenv races with setenv from other threads.
    if (const char* env = std::getenv("SSL_CERT_FILE"); env != nullptr) ca_bundle = env;
  }

  CurlMulti multi(curl_multi_init());
  if (!multi) return Internal("curl_multi_init failed");
  // HTTP/2: every transfer to a host multiplexed over one connection (up to the server's
  // stream limit). HTTP/1.1 has no pipelining here, so each transfer needs a connection: the
  // per-host cap makes the rest wait in libcurl's queue for a free (kept-alive) one instead of
  // opening more. 41 connections at once against an HTTP/1.1 server with a small listen
  // backlog made SYNs drop and transfers sit 1-10 s in retransmission backoff (issue 11);
  // browsers settled on 6 per host for the same reason. No total cap: --max-downloads bounds
  // the transfers, and connections to different hosts do not compete.
  curl_multi_setopt(multi.get(), CURLMOPT_PIPELINING, static_cast<long>(CURLPIPE_MULTIPLEX));
  if (opts.max_host_connections > 0) {
    curl_multi_setopt(multi.get(), CURLMOPT_MAX_HOST_CONNECTIONS,
                      static_cast<long>(opts.max_host_connections));
  }

  auto impl = std::make_unique<FetcherImpl>(std::move(opts), std::move(on_done), std::move(multi),
                                            std::move(ca_bundle));
  try {
    impl->start();
  } catch (const std::system_error& e) {
    return Internal(std::string("cannot start the fetch thread: ") + e.what());
  }
  return std::unique_ptr<Fetcher>(std::move(impl));
}

}  // namespace mat::fetch
