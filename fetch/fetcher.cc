// The Fetcher: one std::thread driving one curl-multi handle.
//
// Why one loop and not a thread per transfer: downloads are waiting, not computing. One
// curl_multi_poll() over every socket holds hundreds of transfers at no CPU cost, shares one
// connection cache (TLS sessions and keep-alive connections are reused across packages from the
// same channel) and lets HTTP/2 multiplex many packages over one connection (STYLE.md §5).
//
// Life of a request (all on the fetch thread, except submit()'s hand-over):
//   submit() -> incoming_ (mutex) -> queued_ (submit order) -> running_ (≤ max_parallel, in the
//   multi handle) -> attempt done -> success, final failure, or backing_off_ (a timer: the loop's
//   poll timeout, never a sleep) -> running_ again when due.
// Every request leaves through complete(), which calls on_done exactly once.
// Callbacks (on_done, on_progress, Sink methods) must not throw: an exception escaping the fetch
// thread terminates the process (STYLE.md §4: no exceptions for expected failures).
#include "fetch/fetcher.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <optional>
#include <random>
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

constexpr long kMaxRedirects = 10;
// on_progress at most ~10 times a second per transfer: enough for a smooth bar, and the callback
// (which may take a lock in the UI) stays off the write path.
constexpr auto kProgressInterval = std::chrono::milliseconds(100);
// Upper bound on one curl_multi_poll() wait. Submissions and cancel() wake the loop at once via
// curl_multi_wakeup(); this bound is only a safety net.
constexpr int kMaxPollMs = 1000;
// libcurl's default receive buffer is 16 KiB; 128 KiB cuts write-callback (sink write + hash)
// calls 8x on fast links for 6.4 MB of buffers at the default 50 transfers.
constexpr long kReceiveBufferBytes = 128 * 1024;

// One request, from submit() to on_done. Owned by exactly one of the loop's containers.
struct Transfer {
  Request req;
  std::string redacted_url;
  bool is_file = false;
  // req.headers as libcurl's list for CURLOPT_HTTPHEADER. libcurl keeps only the pointer, so
  // the list must outlive every use of `easy`: declared before it, it is destroyed after it.
  CurlSlist headers;
  CurlEasy easy;                      // created when first started, reused for retries
  char errbuf[CURL_ERROR_SIZE] = {};  // libcurl's text for the last failure
  std::optional<Hasher> sha256;
  std::optional<Hasher> md5;
  const Options* opts = nullptr;

  // Per attempt (reset in start_attempt()).
  int64_t bytes = 0;                       // body bytes handed to the sink
  Status write_error;                      // why the write callback stopped the transfer
  std::optional<std::string> retry_after;  // raw Retry-After of the latest response
  Clock::time_point last_progress;

  int attempts = 0;
  Clock::time_point first_start;
  Clock::time_point retry_at;  // while backing off
};

// ---- libcurl callbacks (fetch thread) ----

size_t on_write(char* data, size_t size, size_t nmemb, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t len = size * nmemb;
  if (!t->is_file) {
    // The body of an error response (404 page, 503 page) is drained, not stored: the sink only
    // ever sees the bytes of the file.
    long status = 0;
    curl_easy_getinfo(t->easy.get(), CURLINFO_RESPONSE_CODE, &status);
    if (status < 200 || status >= 300) return len;
  }
  const int64_t expected = t->req.expected_size;
  if (expected >= 0 && t->bytes + static_cast<int64_t>(len) > expected) {
    // Stop now rather than download a file that is already known to be wrong.
    t->write_error =
        Corrupt("size mismatch: expected " + std::to_string(expected) + " bytes, got at least " +
                std::to_string(t->bytes + static_cast<int64_t>(len)));
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
  return len;
}

// Called once per header line, for every response (redirects and error responses included).
size_t on_header(char* data, size_t size, size_t nmemb, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t len = size * nmemb;
  std::string_view line(data, len);
  if (line.starts_with("HTTP/")) {
    t->retry_after.reset();  // a new response begins (after a redirect)
    return len;
  }
  constexpr std::string_view kName = "retry-after:";
  if (line.size() > kName.size()) {
    bool match = true;
    for (size_t i = 0; i < kName.size() && match; ++i) {
      match = std::tolower(static_cast<unsigned char>(line[i])) == kName[i];
    }
    if (match) t->retry_after = std::string(line.substr(kName.size()));
  }
  return len;
}

int on_progress(void* user, curl_off_t dltotal, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  const auto now = Clock::now();
  if (now - t->last_progress < kProgressInterval) return 0;
  t->last_progress = now;
  const int64_t total =
      t->req.expected_size >= 0 ? t->req.expected_size : static_cast<int64_t>(dltotal);
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
  void on_attempt_done(std::unique_ptr<Transfer> t, CURLcode rc);
  void schedule_retry(std::unique_ptr<Transfer> t, long http_status);
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
  return timeout;
}

void FetcherImpl::admit(Request req, bool cancelled) {
  auto t = std::make_unique<Transfer>();
  t->req = std::move(req);
  t->redacted_url = redact_url(t->req.url);
  t->is_file = is_file_url(t->req.url);
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
  // local files).
  set(curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https,file"));
  set(curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https"));
  set(curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L));
  set(curl_easy_setopt(e, CURLOPT_MAXREDIRS, kMaxRedirects));
  set(curl_easy_setopt(e, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2TLS)));
  // https: wait for an existing connection's ALPN answer and multiplex on it if it says h2,
  // rather than open one TLS connection per transfer at once. Not for plain http (always
  // HTTP/1.1 here): libcurl 7.88 parks such waiting transfers until some other transfer
  // *finishes*, so one slow download serialised all the others (cancel test: 1 s vs 20 ms).
  if (t.req.url.starts_with("https:") || t.req.url.starts_with("HTTPS:")) {
    set(curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L));
  }
  // CURLOPT_ACCEPT_ENCODING is deliberately not set: packages are already compressed, and the
  // digest in the lock is of the bytes on the server, so we want them raw.
  set(curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L));
  set(curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L));
  if (!ca_bundle_.empty()) set(curl_easy_setopt(e, CURLOPT_CAINFO, ca_bundle_.c_str()));
  // Proxies: CURLOPT_PROXY is deliberately not set, so libcurl reads http_proxy, https_proxy,
  // all_proxy and no_proxy from the environment itself. Setting CURLOPT_PROXY (even to "")
  // would override that.
  set(curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, opts_.connect_timeout_s));
  set(curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, opts_.low_speed_limit));
  set(curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, opts_.low_speed_time_s));
  set(curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L));
  set(curl_easy_setopt(e, CURLOPT_BUFFERSIZE, kReceiveBufferBytes));
  set(curl_easy_setopt(e, CURLOPT_USERAGENT, opts_.user_agent.c_str()));
  set(curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write));
  set(curl_easy_setopt(e, CURLOPT_WRITEDATA, &t));
  set(curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header));
  set(curl_easy_setopt(e, CURLOPT_HEADERDATA, &t));
  if (!t.req.headers.empty() && !t.is_file) {
    for (const std::string& h : t.req.headers) {
      // Appending to a non-empty list returns its unchanged head; only the first call changes
      // what `t.headers` must own.
      curl_slist* head = curl_slist_append(t.headers.get(), h.c_str());
      if (head == nullptr) return Internal(t.redacted_url + ": curl_slist_append failed");
      if (t.headers == nullptr) t.headers.reset(head);
    }
    set(curl_easy_setopt(e, CURLOPT_HTTPHEADER, t.headers.get()));
  }
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

Status FetcherImpl::start_attempt(Transfer& t) {
  if (!t.easy) MAT_RETURN_IF_ERROR(configure(t));
  if (t.attempts == 0) t.first_start = Clock::now();
  ++t.attempts;
  t.bytes = 0;
  t.write_error = Status::Ok();
  t.retry_after.reset();
  t.errbuf[0] = '\0';
  t.last_progress = Clock::time_point{};
  if (t.sha256) t.sha256->reset();
  if (t.md5) t.md5->reset();
  MAT_RETURN_IF_ERROR(t.req.sink->reset().with_context(t.redacted_url));
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

void FetcherImpl::on_attempt_done(std::unique_ptr<Transfer> t, CURLcode rc) {
  long http_status = 0;
  curl_easy_getinfo(t->easy.get(), CURLINFO_RESPONSE_CODE, &http_status);
  if (!t->write_error.ok()) {
    // The sink failed (kNoSpace stays kNoSpace) or the size overran: never retried, since the
    // same bytes would fail the same way.
    complete(*t, t->write_error.with_context(t->redacted_url));
    return;
  }
  Verdict v;
  if (rc != CURLE_OK) {
    v = classify_curl(rc, scrub_credentials(t->errbuf, t->req.url));
  } else if (!t->is_file) {
    v = classify_http(http_status);
  }
  if (v.ok()) {
    const int64_t expected = t->req.expected_size;
    if (expected >= 0 && t->bytes != expected) {
      complete(*t, Corrupt(t->redacted_url + ": size mismatch: expected " +
                           std::to_string(expected) + " bytes, got " + std::to_string(t->bytes)));
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

void FetcherImpl::schedule_retry(std::unique_ptr<Transfer> t, long http_status) {
  std::optional<double> retry_after;
  if (t->retry_after && honours_retry_after(http_status)) {
    retry_after = parse_retry_after(*t->retry_after, std::chrono::system_clock::now());
  }
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
  r.effective_url = t.redacted_url;
  if (t.attempts > 0) {
    r.seconds = std::chrono::duration<double>(Clock::now() - t.first_start).count();
  }
  if (t.easy) {
    CURL* e = t.easy.get();
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r.http_status);
    char* eff = nullptr;
    if (curl_easy_getinfo(e, CURLINFO_EFFECTIVE_URL, &eff) == CURLE_OK && eff != nullptr) {
      r.effective_url = redact_url(eff);
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
  if (opts.loops > 1) {
    int n = std::min(opts.loops, opts.max_parallel);
    std::vector<std::unique_ptr<Fetcher>> loops;
    for (int k = 0; k < n; ++k) {
      Options one = opts;
      one.loops = 1;
      // --max-downloads stays the total: split it, the first loops taking the remainder.
      one.max_parallel = opts.max_parallel / n + (k < opts.max_parallel % n ? 1 : 0);
      MAT_ASSIGN_OR_RETURN(std::unique_ptr<Fetcher> loop, create(std::move(one), on_done));
      loops.push_back(std::move(loop));
    }
    if (n == 1) return std::move(loops.front());
    return std::unique_ptr<Fetcher>(std::make_unique<ShardedFetcher>(std::move(loops)));
  }

  std::string ca_bundle = opts.ca_bundle;
  if (ca_bundle.empty()) {
    // Read once here, not per transfer: getenv races with setenv from other threads.
    if (const char* env = std::getenv("SSL_CERT_FILE"); env != nullptr) ca_bundle = env;
  }

  CurlMulti multi(curl_multi_init());
  if (!multi) return Internal("curl_multi_init failed");
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
