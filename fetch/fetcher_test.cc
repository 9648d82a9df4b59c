// End-to-end tests of the Fetcher against a scripted HTTP/1.1 server on 127.0.0.1 and against
// file:// URLs. Backoff is set to milliseconds so retries cost no wall time.
#include "fetch/fetcher.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "fetch/test_http_server.h"
#include "materializer/base/fs.h"
#include "materializer/base/hash.h"
#include "materializer/base/url.h"

namespace mat::fetch {
namespace {

using testserver::Reply;
using testserver::TestHttpServer;

// What a sink saw. Read by the test only after Fetcher::finish() (which orders it after the
// fetch thread's writes).
struct SinkLog {
  std::string data;
  int resets = 0;
  int resumes = 0;
  std::vector<int64_t> resume_offsets;
  int writes = 0;
  int finishes = 0;
  int aborts = 0;
};

class StringSink : public Sink {
 public:
  explicit StringSink(std::shared_ptr<SinkLog> log, Status fail_writes = Status::Ok(),
                      bool resumable = true)
      : log_(std::move(log)), fail_writes_(std::move(fail_writes)), resumable_(resumable) {}
  Status reset() override {
    ++log_->resets;
    log_->data.clear();
    return Status::Ok();
  }
  // Keeps the bytes it holds; the fetcher must ask for exactly that many.
  Status resume(int64_t offset) override {
    if (!resumable_) return Sink::resume(offset);
    ++log_->resumes;
    log_->resume_offsets.push_back(offset);
    if (offset != static_cast<int64_t>(log_->data.size())) {
      return Internal("resume at " + std::to_string(offset) + ", holding " +
                      std::to_string(log_->data.size()));
    }
    return Status::Ok();
  }
  Status write(const char* data, size_t len) override {
    ++log_->writes;
    if (!fail_writes_.ok()) return fail_writes_;
    log_->data.append(data, len);
    return Status::Ok();
  }
  Status finish() override {
    ++log_->finishes;
    return Status::Ok();
  }
  void abort() override { ++log_->aborts; }

 private:
  std::shared_ptr<SinkLog> log_;
  Status fail_writes_;
  bool resumable_;
};

// Gathers results by id and counts on_done calls per id.
struct Collector {
  std::mutex mu;
  std::map<uint64_t, FetchResult> results;  // GUARDED_BY(mu)
  std::map<uint64_t, int> calls;            // GUARDED_BY(mu)

  std::function<void(FetchResult&&)> callback() {
    return [this](FetchResult&& r) {
      std::lock_guard<std::mutex> lock(mu);
      ++calls[r.id];
      results[r.id] = std::move(r);
    };
  }
};

// Deterministic, non-repetitive bytes (so a misplaced chunk changes the digest).
std::string make_body(size_t n, uint32_t seed) {
  std::string s(n, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (char& c : s) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    c = static_cast<char>(x & 0xff);
  }
  return s;
}

Reply ok_reply(std::string body) { return Reply{200, std::move(body), {}, -1, 0}; }
Reply status_reply(int status) { return Reply{status, "error page\n", {}, -1, 0}; }

class FetcherTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { global_init(); }

  void SetUp() override { ASSERT_TRUE(server_.ok()); }

  static Options fast_options() {
    Options o;
    o.max_parallel = 8;
    o.max_retries = 3;
    o.backoff_initial_s = 0.001;
    o.backoff_max_s = 0.005;
    o.connect_timeout_s = 5;
    return o;
  }

  std::unique_ptr<Fetcher> make(Options o) {
    auto f = Fetcher::create(std::move(o), collector_.callback());
    EXPECT_TRUE(f.ok()) << f.status().to_string();
    return std::move(f).value();
  }

  static Request request(std::string url, std::shared_ptr<SinkLog> log, uint64_t id = 1) {
    Request r;
    r.url = std::move(url);
    r.sink = std::make_unique<StringSink>(std::move(log));
    r.id = id;
    return r;
  }

  // Fetches one URL to completion and returns its result.
  FetchResult fetch_one(Options o, Request r) {
    const uint64_t id = r.id;
    auto f = make(std::move(o));
    f->submit(std::move(r));
    f->finish();
    std::lock_guard<std::mutex> lock(collector_.mu);
    EXPECT_EQ(collector_.calls[id], 1);
    return collector_.results[id];
  }

  std::string temp_path(const std::string& name) {
    return absolute_path(::testing::TempDir()) + "/mat_fetch_" + std::to_string(::getpid()) + "_" +
           name;
  }

  TestHttpServer server_;
  Collector collector_;
};

TEST_F(FetcherTest, ServesBytesWithCorrectDigests) {
  const std::string body = make_body(1 << 20, 1);
  server_.route("/pkg.conda", [&](int) { return ok_reply(body); });
  auto log = std::make_shared<SinkLog>();
  Request r = request(server_.url("/pkg.conda"), log);
  r.want_md5 = true;
  r.expected_size = static_cast<int64_t>(body.size());
  FetchResult res = fetch_one(fast_options(), std::move(r));

  ASSERT_TRUE(res.status.ok()) << res.status.to_string();
  EXPECT_EQ(res.sha256, sha256_hex(body));
  EXPECT_EQ(res.md5, md5_hex(body));
  EXPECT_EQ(res.bytes, static_cast<int64_t>(body.size()));
  EXPECT_EQ(res.http_status, 200);
  EXPECT_EQ(res.attempts, 1);
  EXPECT_EQ(res.http_version, "1.1");
  EXPECT_EQ(res.effective_url, server_.url("/pkg.conda"));
  EXPECT_GE(res.seconds, 0.0);
  EXPECT_EQ(log->data, body);
  EXPECT_EQ(log->resets, 1);
  EXPECT_EQ(log->finishes, 1);
  EXPECT_EQ(log->aborts, 0);
}

TEST_F(FetcherTest, OnlyRequestedDigestsAreComputed) {
  server_.route("/a", [](int) { return ok_reply("abc"); });
  auto log = std::make_shared<SinkLog>();
  Request r = request(server_.url("/a"), log);
  r.want_sha256 = false;
  r.want_md5 = true;
  FetchResult res = fetch_one(fast_options(), std::move(r));
  ASSERT_TRUE(res.status.ok()) << res.status.to_string();
  EXPECT_EQ(res.sha256, "");
  EXPECT_EQ(res.md5, md5_hex("abc"));
}

TEST_F(FetcherTest, NoAcceptEncodingIsSent) {
  server_.route("/raw", [](int) { return ok_reply("raw bytes"); });
  FetchResult res =
      fetch_one(fast_options(), request(server_.url("/raw"), std::make_shared<SinkLog>()));
  ASSERT_TRUE(res.status.ok()) << res.status.to_string();
  const std::string head = server_.last_request("/raw");
  EXPECT_EQ(head.find("Accept-Encoding"), std::string::npos) << head;
  EXPECT_NE(head.find("User-Agent: materializer/"), std::string::npos) << head;
}

TEST_F(FetcherTest, RequestHeadersAreSentAndContentTypeIsReported) {
  server_.route("/page", [](int) {
    return Reply{200, "{}", {"Content-Type: application/vnd.pypi.simple.v1+json"}, -1, 0};
  });
  Request r = request(server_.url("/page"), std::make_shared<SinkLog>());
  r.headers = {"Accept: application/vnd.pypi.simple.v1+json, text/html;q=0.01", "X-Extra: 1"};
  FetchResult res = fetch_one(fast_options(), std::move(r));
  ASSERT_TRUE(res.status.ok()) << res.status.to_string();
  EXPECT_EQ(res.content_type, "application/vnd.pypi.simple.v1+json");
  const std::string head = server_.last_request("/page");
  EXPECT_NE(head.find("Accept: application/vnd.pypi.simple.v1+json, text/html;q=0.01"),
            std::string::npos)
      << head;
  EXPECT_NE(head.find("X-Extra: 1"), std::string::npos) << head;
}

TEST_F(FetcherTest, NotFoundIsNotRetriedAndErrorBodyIsNotWritten) {
  auto log = std::make_shared<SinkLog>();
  FetchResult res = fetch_one(fast_options(), request(server_.url("/missing"), log));
  EXPECT_EQ(res.status.code(), Code::kNotFound) << res.status.to_string();
  EXPECT_NE(res.status.message().find("HTTP 404"), std::string::npos);
  EXPECT_EQ(res.http_status, 404);
  EXPECT_EQ(res.attempts, 1);
  EXPECT_EQ(server_.hits("/missing"), 1);
  EXPECT_EQ(log->data, "");
  EXPECT_EQ(log->aborts, 1);
  EXPECT_EQ(log->finishes, 0);
}

TEST_F(FetcherTest, ServerErrorThenSuccessIsRetried) {
  const std::string body = make_body(50000, 2);
  server_.route("/flaky", [&](int hit) { return hit == 1 ? status_reply(500) : ok_reply(body); });
  auto log = std::make_shared<SinkLog>();
  FetchResult res = fetch_one(fast_options(), request(server_.url("/flaky"), log));
  ASSERT_TRUE(res.status.ok()) << res.status.to_string();
  EXPECT_EQ(res.attempts, 2);
  EXPECT_EQ(server_.hits("/flaky"), 2);
  EXPECT_EQ(res.sha256, sha256_hex(body));
  EXPECT_EQ(log->data, body);
  EXPECT_EQ(log->resets, 2);
}

TEST_F(FetcherTest, TooManyRequestsHonoursRetryAfterZero) {
  server_.route("/limited", [](int hit) {
    if (hit == 1) return Reply{429, "slow down\n", {"Retry-After: 0"}, -1, 0};
    return ok_reply("finally");
  });
  Options o = fast_options();
  // Without Retry-After the retry would wait ~10 s; the header says "now".
  o.backoff_initial_s = 10;
  o.backoff_max_s = 10;
  const auto start = std::chrono::steady_clock::now();
  FetchResult res = fetch_one(o, request(server_.url("/limited"), std::make_shared<SinkLog>()));
  ASSERT_TRUE(res.status.ok()) << res.status.to_string();
  EXPECT_EQ(res.attempts, 2);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST_F(FetcherTest, LargeRetryAfterIsCapped) {
  server_.route("/busy", [](int hit) {
    if (hit == 1) return Reply{503, "busy\n", {"Retry-After: 3600"}, -1, 0};
    return ok_reply("ok");
  });
  Options o = fast_options();
  o.retry_after_max_s = 0.01;
  FetchResult res = fetch_one(o, request(server_.url("/busy"), std::make_shared<SinkLog>()));
  ASSERT_TRUE(res.status.ok()) << res.status.to_string();
  EXPECT_EQ(res.attempts, 2);
}

TEST_F(FetcherTest, AlwaysUnavailableGivesUpRetryable) {
  server_.route("/down", [](int) { return status_reply(503); });
  auto log = std::make_shared<SinkLog>();
  Options o = fast_options();
  o.max_retries = 3;
  FetchResult res = fetch_one(o, request(server_.url("/down"), log));
  EXPECT_EQ(res.status.code(), Code::kRetryable);
  EXPECT_EQ(res.attempts, 4);
  EXPECT_EQ(server_.hits("/down"), 4);
  EXPECT_EQ(res.status.message(),
            server_.url("/down") +
                ": HTTP 503 after 4 attempts; the server may be overloaded, retry later");
  EXPECT_EQ(log->resets, 4);
  EXPECT_EQ(log->aborts, 1);
}

TEST_F(FetcherTest, TruncatedBodyIsRetried) {
  const std::string body = make_body(100000, 3);
  server_.route("/cut", [&](int hit) {
    Reply r = ok_reply(body);
    if (hit == 1) r.send_bytes = 1000;
    return r;
  });
  auto log = std::make_shared<SinkLog>();
  FetchResult res = fetch_one(fast_options(), request(server_.url("/cut"), log));
  ASSERT_TRUE(res.status.ok()) << res.status.to_string();
  EXPECT_EQ(res.attempts, 2);
  EXPECT_EQ(res.sha256, sha256_hex(body));
  EXPECT_EQ(log->data, body);  // the partial first attempt was reset away
}

TEST_F(FetcherTest, AlwaysTruncatedBodyFailsRetryable) {
  server_.route("/cut", [](int) { return Reply{200, std::string(5000, 'x'), {}, 10, 0}; });
  Options o = fast_options();
  o.max_retries = 2;
  FetchResult res = fetch_one(o, request(server_.url("/cut"), std::make_shared<SinkLog>()));
  EXPECT_EQ(res.status.code(), Code::kRetryable) << res.status.to_string();
  EXPECT_EQ(res.attempts, 3);
  EXPECT_NE(res.status.message().find("after 3 attempts"), std::string::npos);
}

TEST_F(FetcherTest, ConnectionRefusedIsRetryable) {
  // A port that was just bound and released: nothing listens there.
  int port = 0;
  {
    TestHttpServer gone;
    port = gone.port();
  }
  Options o = fast_options();
  o.max_retries = 1;
  FetchResult res = fetch_one(
      o, request("http://127.0.0.1:" + std::to_string(port) + "/x", std::make_shared<SinkLog>()));
  EXPECT_EQ(res.status.code(), Code::kRetryable) << res.status.to_string();
  EXPECT_EQ(res.attempts, 2);
  EXPECT_NE(res.status.message().find("could not connect"), std::string::npos);
}

TEST_F(FetcherTest, RedirectIsFollowed) {
  server_.route("/old", [](int) { return Reply{302, "", {"Location: /new"}, -1, 0}; });
  server_.route("/new", [](int) { return ok_reply("moved"); });
  auto log = std::make_shared<SinkLog>();
  FetchResult res = fetch_one(fast_options(), request(server_.url("/old"), log));
  ASSERT_TRUE(res.status.ok()) << res.status.to_string();
  EXPECT_EQ(log->data, "moved");
  EXPECT_EQ(res.effective_url, server_.url("/new"));
}

// Submits 200 requests over 25 paths to a fetcher with `loops` event loops; every one must
// complete exactly once with the right bytes. Returns the number of distinct on_done threads.
size_t run_many_concurrent(TestHttpServer& server, int loops) {
  constexpr int kPaths = 25;
  constexpr int kRequests = 200;
  std::vector<std::string> bodies;
  for (int i = 0; i < kPaths; ++i) {
    bodies.push_back(make_body(1000 + 937 * i, 100 + i));
    server.route("/p" + std::to_string(i), [&bodies, i](int) { return ok_reply(bodies[i]); });
  }
  Collector collector;
  std::mutex mu;
  std::set<std::thread::id> threads;  // GUARDED_BY(mu)
  Options o;
  o.max_parallel = 8;
  o.max_retries = 3;
  o.backoff_initial_s = 0.001;
  o.loops = loops;
  auto made = Fetcher::create(o, [&](FetchResult&& r) {
    {
      std::lock_guard<std::mutex> lock(mu);
      threads.insert(std::this_thread::get_id());
    }
    collector.callback()(std::move(r));
  });
  EXPECT_TRUE(made.ok()) << made.status().to_string();
  if (!made.ok()) return 0;
  auto& f = *made;
  std::vector<std::shared_ptr<SinkLog>> logs;
  for (int i = 0; i < kRequests; ++i) {
    logs.push_back(std::make_shared<SinkLog>());
    Request r;
    r.url = server.url("/p" + std::to_string(i % kPaths));
    r.sink = std::make_unique<StringSink>(logs.back());
    r.id = static_cast<uint64_t>(i);
    r.expected_size = static_cast<int64_t>(bodies[i % kPaths].size());
    f->submit(std::move(r));
  }
  f->finish();
  std::lock_guard<std::mutex> lock(collector.mu);
  EXPECT_EQ(collector.results.size(), static_cast<size_t>(kRequests));
  for (int i = 0; i < kRequests; ++i) {
    const FetchResult& r = collector.results[static_cast<uint64_t>(i)];
    EXPECT_EQ(collector.calls[static_cast<uint64_t>(i)], 1);
    EXPECT_TRUE(r.status.ok()) << i << ": " << r.status.to_string();
    EXPECT_EQ(r.sha256, sha256_hex(bodies[i % kPaths])) << i;
    EXPECT_EQ(logs[i]->data, bodies[i % kPaths]) << i;
  }
  std::lock_guard<std::mutex> tl(mu);
  return threads.size();
}

TEST_F(FetcherTest, ManyConcurrentRequestsAllComplete) {
  EXPECT_EQ(run_many_concurrent(server_, 1), 1u);
  EXPECT_EQ(server_.total_hits(), 200);
}

TEST_F(FetcherTest, SeveralLoopsShareTheRequests) {
  EXPECT_EQ(run_many_concurrent(server_, 3), 3u);  // spread by expected size over all 3
  EXPECT_EQ(server_.total_hits(), 200);
}

TEST_F(FetcherTest, ZeroLoopsIsInvalid) {
  Options o = fast_options();
  o.loops = 0;
  auto f = Fetcher::create(o, collector_.callback());
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), Code::kInvalidInput);
}

TEST_F(FetcherTest, FileUrlIsFetched) {
  const std::string path = temp_path("file_ok.bin");
  const std::string body = make_body(70000, 4);
  {
    FILE* f = std::fopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(std::fwrite(body.data(), 1, body.size(), f), body.size());
    std::fclose(f);
  }
  auto log = std::make_shared<SinkLog>();
  Request r = request(path_to_file_url(path), log);
  r.expected_size = static_cast<int64_t>(body.size());
  FetchResult res = fetch_one(fast_options(), std::move(r));
  std::remove(path.c_str());
  ASSERT_TRUE(res.status.ok()) << res.status.to_string();
  EXPECT_EQ(res.sha256, sha256_hex(body));
  EXPECT_EQ(res.http_version, "file");
  EXPECT_EQ(log->data, body);
}

TEST_F(FetcherTest, MissingFileUrlIsNotFound) {
  auto log = std::make_shared<SinkLog>();
  FetchResult res =
      fetch_one(fast_options(), request(path_to_file_url(temp_path("nope.bin")), log));
  EXPECT_EQ(res.status.code(), Code::kNotFound) << res.status.to_string();
  EXPECT_EQ(res.attempts, 1);
  EXPECT_EQ(log->aborts, 1);
}

TEST_F(FetcherTest, ShortBodyIsSizeMismatch) {
  server_.route("/sized", [](int) { return ok_reply(std::string(100, 'a')); });
  Request r = request(server_.url("/sized"), std::make_shared<SinkLog>());
  r.expected_size = 101;
  FetchResult res = fetch_one(fast_options(), std::move(r));
  EXPECT_EQ(res.status.code(), Code::kCorrupt);
  EXPECT_NE(res.status.message().find("size mismatch: expected 101 bytes, got 100"),
            std::string::npos)
      << res.status.message();
  EXPECT_EQ(res.attempts, 1);
  EXPECT_EQ(server_.hits("/sized"), 1);
}

TEST_F(FetcherTest, LongBodyIsSizeMismatchWithoutRetry) {
  server_.route("/sized", [](int) { return ok_reply(std::string(100000, 'a')); });
  auto log = std::make_shared<SinkLog>();
  Request r = request(server_.url("/sized"), log);
  r.expected_size = 10;
  FetchResult res = fetch_one(fast_options(), std::move(r));
  EXPECT_EQ(res.status.code(), Code::kCorrupt) << res.status.to_string();
  EXPECT_NE(res.status.message().find("size mismatch: expected 10 bytes"), std::string::npos);
  EXPECT_EQ(res.attempts, 1);
  EXPECT_EQ(log->aborts, 1);
}

TEST_F(FetcherTest, SinkNoSpaceIsPropagatedAndNotRetried) {
  server_.route("/big", [](int) { return ok_reply(std::string(10000, 'z')); });
  auto log = std::make_shared<SinkLog>();
  Request r = request(server_.url("/big"), log);
  r.sink = std::make_unique<StringSink>(log, NoSpace("/cache/tmp/x: No space left on device"));
  FetchResult res = fetch_one(fast_options(), std::move(r));
  EXPECT_EQ(res.status.code(), Code::kNoSpace) << res.status.to_string();
  EXPECT_NE(res.status.message().find("No space left"), std::string::npos);
  EXPECT_EQ(res.attempts, 1);
  EXPECT_EQ(server_.hits("/big"), 1);
  EXPECT_EQ(log->writes, 1);
  EXPECT_EQ(log->aborts, 1);
  EXPECT_EQ(log->finishes, 0);
}

class FetcherCancelTest : public FetcherTest, public ::testing::WithParamInterface<int> {};

TEST_P(FetcherCancelTest, CancelCompletesEverythingWithCancelled) {
  // ~10 s per body if nobody cancels.
  server_.route("/slow", [](int) { return Reply{200, std::string(1 << 20, 's'), {}, -1, 10}; });
  Options o = fast_options();
  o.max_parallel = 3;
  o.loops = GetParam();
  auto f = make(o);
  constexpr int kRequests = 12;
  std::vector<std::shared_ptr<SinkLog>> logs;
  for (int i = 0; i < kRequests; ++i) {
    logs.push_back(std::make_shared<SinkLog>());
    f->submit(request(server_.url("/slow"), logs.back(), static_cast<uint64_t>(i)));
  }
  // Wait (briefly) until some transfers are in flight, so cancel() meets running, queued alike.
  for (int i = 0; i < 200 && server_.hits("/slow") < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  f->cancel();
  f->finish();
  f->submit(request(server_.url("/slow"), std::make_shared<SinkLog>(), 999));  // after cancel
  f->finish();
  std::lock_guard<std::mutex> lock(collector_.mu);
  ASSERT_EQ(collector_.results.size(), static_cast<size_t>(kRequests + 1));
  for (const auto& [id, r] : collector_.results) {
    EXPECT_EQ(collector_.calls[id], 1) << id;
    EXPECT_EQ(r.status.code(), Code::kCancelled) << id << ": " << r.status.to_string();
  }
  for (const auto& log : logs) {
    EXPECT_EQ(log->aborts, 1);
    EXPECT_EQ(log->finishes, 0);
  }
}

INSTANTIATE_TEST_SUITE_P(Loops, FetcherCancelTest, ::testing::Values(1, 2));

TEST_F(FetcherTest, BackoffWaitsOnATimerAndIsCancellable) {
  server_.route("/down", [](int) { return status_reply(503); });
  server_.route("/ok", [](int) { return ok_reply("fine"); });
  Options o = fast_options();
  o.max_parallel = 1;  // one slot: a sleeping loop would starve /ok
  o.backoff_initial_s = 30;
  o.backoff_max_s = 30;
  auto f = make(o);
  f->submit(request(server_.url("/down"), std::make_shared<SinkLog>(), 1));
  f->submit(request(server_.url("/ok"), std::make_shared<SinkLog>(), 2));
  bool ok_done = false;
  for (int i = 0; i < 400 && !ok_done; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    std::lock_guard<std::mutex> lock(collector_.mu);
    ok_done = collector_.results.count(2) == 1;
  }
  EXPECT_TRUE(ok_done) << "/ok did not complete while /down was backing off";
  f->cancel();
  f->finish();
  std::lock_guard<std::mutex> lock(collector_.mu);
  EXPECT_TRUE(collector_.results[2].status.ok()) << collector_.results[2].status.to_string();
  EXPECT_EQ(collector_.results[1].status.code(), Code::kCancelled);
  EXPECT_EQ(collector_.results[1].attempts, 1);
  EXPECT_EQ(server_.hits("/down"), 1);
}

TEST_F(FetcherTest, DestructorCancelsOutstanding) {
  server_.route("/slow", [](int) { return Reply{200, std::string(1 << 20, 's'), {}, -1, 10}; });
  {
    auto f = make(fast_options());
    for (int i = 0; i < 4; ++i) {
      f->submit(
          request(server_.url("/slow"), std::make_shared<SinkLog>(), static_cast<uint64_t>(i)));
    }
  }
  std::lock_guard<std::mutex> lock(collector_.mu);
  ASSERT_EQ(collector_.results.size(), 4u);
  for (const auto& [id, r] : collector_.results) {
    EXPECT_EQ(collector_.calls[id], 1);
    EXPECT_EQ(r.status.code(), Code::kCancelled);
  }
}

TEST_F(FetcherTest, OfflineRejectsNetworkUrlsButReadsFiles) {
  Options o = fast_options();
  o.offline = true;
  auto f = make(o);
  f->submit(request(server_.url_with_auth("u:secret", "/x"), std::make_shared<SinkLog>(), 1));
  const std::string path = temp_path("offline.bin");
  {
    FILE* file = std::fopen(path.c_str(), "wb");
    ASSERT_NE(file, nullptr);
    std::fputs("local", file);
    std::fclose(file);
  }
  f->submit(request(path_to_file_url(path), std::make_shared<SinkLog>(), 2));
  f->finish();
  std::remove(path.c_str());
  std::lock_guard<std::mutex> lock(collector_.mu);
  const Status& s = collector_.results[1].status;
  EXPECT_EQ(s.code(), Code::kInvalidInput);
  EXPECT_NE(s.message().find("offline: "), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("not in cache"), std::string::npos) << s.message();
  EXPECT_EQ(s.message().find("secret"), std::string::npos) << s.message();
  EXPECT_TRUE(collector_.results[2].status.ok()) << collector_.results[2].status.to_string();
  EXPECT_EQ(server_.total_hits(), 0);
}

TEST_F(FetcherTest, CredentialsNeverAppearInMessages) {
  server_.route("/private", [](int) { return status_reply(401); });
  server_.route("/down", [](int) { return status_reply(503); });
  int dead_port = 0;
  {
    TestHttpServer gone;
    dead_port = gone.port();
  }
  Options o = fast_options();
  o.max_retries = 1;
  auto f = make(o);
  f->submit(request(server_.url_with_auth("user:secret", "/404"), std::make_shared<SinkLog>(), 1));
  f->submit(
      request(server_.url_with_auth("user:secret", "/private"), std::make_shared<SinkLog>(), 2));
  f->submit(request(server_.url_with_auth("user:secret", "/down"), std::make_shared<SinkLog>(), 3));
  f->submit(request("http://user:secret@127.0.0.1:" + std::to_string(dead_port) + "/x",
                    std::make_shared<SinkLog>(), 4));
  f->finish();
  std::lock_guard<std::mutex> lock(collector_.mu);
  ASSERT_EQ(collector_.results.size(), 4u);
  EXPECT_EQ(collector_.results[1].status.code(), Code::kNotFound);
  EXPECT_EQ(collector_.results[2].status.code(), Code::kInvalidInput);
  EXPECT_NE(collector_.results[2].status.message().find("credentials"), std::string::npos);
  EXPECT_EQ(collector_.results[3].status.code(), Code::kRetryable);
  EXPECT_EQ(collector_.results[4].status.code(), Code::kRetryable);
  for (const auto& [id, r] : collector_.results) {
    EXPECT_FALSE(r.status.ok());
    EXPECT_EQ(r.status.message().find("secret"), std::string::npos) << r.status.message();
    EXPECT_EQ(r.effective_url.find("secret"), std::string::npos) << r.effective_url;
  }
  // The credentials were still sent (basic auth), just never shown.
  EXPECT_NE(server_.last_request("/private").find("Authorization: Basic"), std::string::npos);
}

TEST_F(FetcherTest, ProgressIsReported) {
  server_.route("/prog", [](int) { return ok_reply(make_body(300000, 5)); });
  std::atomic<int> calls{0};
  std::atomic<uint64_t> seen_id{0};
  Options o = fast_options();
  o.on_progress = [&](uint64_t id, int64_t, int64_t) {
    ++calls;
    seen_id = id;
  };
  FetchResult res = fetch_one(o, request(server_.url("/prog"), std::make_shared<SinkLog>(), 42));
  ASSERT_TRUE(res.status.ok()) << res.status.to_string();
  EXPECT_GE(calls.load(), 1);
  EXPECT_EQ(seen_id.load(), 42u);
}

TEST_F(FetcherTest, MalformedUrlIsInvalidInput) {
  FetchResult res =
      fetch_one(fast_options(), request("gopher://127.0.0.1/x", std::make_shared<SinkLog>()));
  EXPECT_EQ(res.status.code(), Code::kInvalidInput) << res.status.to_string();
  EXPECT_EQ(res.attempts, 1);
}

TEST_F(FetcherTest, CreateRejectsBadOptions) {
  Options o;
  o.max_parallel = 0;
  auto f = Fetcher::create(o, [](FetchResult&&) {});
  EXPECT_EQ(f.status().code(), Code::kInvalidInput);
}

// ---- resume (Range / If-Range) ----

using testserver::header_of;
using testserver::range_reply;

constexpr const char* kEtag = "\"v1-abc\"";
constexpr const char* kLastModified = "Tue, 04 Mar 2025 10:00:00 GMT";

// The first request is cut after `cut` bytes; later ones are answered by `later`.
void route_cut_then(TestHttpServer& server, const std::string& path, const std::string& body,
                    int64_t cut, std::function<Reply(int hit, const std::string& head)> later) {
  server.route_head(path, [=](int hit, const std::string& head) {
    if (hit > 1) return later(hit, head);
    Reply r = range_reply(body, head, kEtag, kLastModified);
    r.send_bytes = cut;
    return r;
  });
}

TEST_F(FetcherTest, CutTransferResumesWithRangeAndIfRange) {
  const std::string body = make_body(300000, 11);
  route_cut_then(server_, "/r", body, 120000, [&](int, const std::string& head) {
    return range_reply(body, head, kEtag, kLastModified);
  });
  auto log = std::make_shared<SinkLog>();
  Request r = request(server_.url("/r"), log);
  r.want_md5 = true;
  r.expected_size = static_cast<int64_t>(body.size());
  FetchResult res = fetch_one(fast_options(), std::move(r));
  ASSERT_TRUE(res.status.ok()) << res.status.to_string();
  EXPECT_EQ(res.attempts, 2);
  EXPECT_EQ(res.resumes, 1);
  // The digests cover the whole file although its bytes came in two responses.
  EXPECT_EQ(res.sha256, sha256_hex(body));
  EXPECT_EQ(res.md5, md5_hex(body));
  EXPECT_EQ(res.bytes, static_cast<int64_t>(body.size()));
  EXPECT_EQ(res.bytes_received, static_cast<int64_t>(body.size()));  // nothing sent twice
  EXPECT_EQ(log->data, body);
  EXPECT_EQ(log->resets, 1);
  EXPECT_EQ(log->resume_offsets, std::vector<int64_t>{120000});
  const std::vector<std::string> heads = server_.requests("/r");
  ASSERT_EQ(heads.size(), 2u);
  EXPECT_EQ(header_of(heads[0], "Range"), "");
  EXPECT_EQ(header_of(heads[1], "Range"), "bytes=120000-");
  EXPECT_EQ(header_of(heads[1], "If-Range"), kEtag);  // the strong ETag, not the date
}

TEST_F(FetcherTest, ResumeSurvivesSeveralCuts) {
  const std::string body = make_body(200000, 12);
  server_.route_head("/r", [&](int hit, const std::string& head) {
    Reply r = range_reply(body, head, kEtag);
    if (hit < 4) r.send_bytes = 30000;  // each of the first three answers breaks off
    return r;
  });
  auto log = std::make_shared<SinkLog>();
  FetchResult res = fetch_one(fast_options(), request(server_.url("/r"), log));
  ASSERT_TRUE(res.status.ok()) << res.status.to_string();
  EXPECT_EQ(res.attempts, 4);
  EXPECT_EQ(res.resumes, 3);
  EXPECT_EQ(res.sha256, sha256_hex(body));
  EXPECT_EQ(log->resume_offsets, (std::vector<int64_t>{30000, 60000, 90000}));
  EXPECT_EQ(log->data, body);
}

TEST_F(FetcherTest, LastModifiedIsTheValidatorWithoutAStrongEtag) {
  const std::string body = make_body(100000, 13);
  uint64_t id = 0;
  for (const char* path : {"/none", "/weak"}) {
    const std::string etag = std::string(path) == "/weak" ? "W/\"weak\"" : "";
    server_.route_head(path, [=](int hit, const std::string& head) {
      Reply r = range_reply(body, head, etag, kLastModified);
      if (hit == 1) r.send_bytes = 50000;
      return r;
    });
    auto log = std::make_shared<SinkLog>();
    FetchResult res = fetch_one(fast_options(), request(server_.url(path), log, ++id));
    ASSERT_TRUE(res.status.ok()) << path << ": " << res.status.to_string();
    EXPECT_EQ(res.resumes, 1) << path;
    EXPECT_EQ(log->data, body) << path;
    EXPECT_EQ(header_of(server_.last_request(path), "If-Range"), kLastModified) << path;
  }
}

TEST_F(FetcherTest, NoValidatorOrNoRangesMeansStartingOver) {
  const std::string body = make_body(100000, 14);
  // No ETag, no Last-Modified: a Range alone could splice two versions of the file.
  server_.route("/plain", [&](int hit) {
    Reply r = ok_reply(body);
    if (hit == 1) r.send_bytes = 50000;
    return r;
  });
  // "Accept-Ranges: none": the server said it will not.
  server_.route_head("/noranges", [&](int hit, const std::string& head) {
    Reply r = range_reply(body, head, kEtag);
    r.headers[0] = "Accept-Ranges: none";
    if (hit == 1) r.send_bytes = 50000;
    return r;
  });
  uint64_t id = 0;
  for (const char* path : {"/plain", "/noranges"}) {
    auto log = std::make_shared<SinkLog>();
    FetchResult res = fetch_one(fast_options(), request(server_.url(path), log, ++id));
    ASSERT_TRUE(res.status.ok()) << path << ": " << res.status.to_string();
    EXPECT_EQ(res.attempts, 2) << path;
    EXPECT_EQ(res.resumes, 0) << path;
    EXPECT_EQ(log->resumes, 0) << path;
    EXPECT_EQ(log->resets, 2) << path;
    EXPECT_EQ(log->data, body) << path;
    EXPECT_EQ(res.sha256, sha256_hex(body)) << path;
    EXPECT_EQ(header_of(server_.last_request(path), "Range"), "") << path;
  }
}

TEST_F(FetcherTest, SinkThatCannotResumeStartsOver) {
  const std::string body = make_body(100000, 15);
  route_cut_then(server_, "/r", body, 40000,
                 [&](int, const std::string& head) { return range_reply(body, head, kEtag); });
  auto log = std::make_shared<SinkLog>();
  Request r = request(server_.url("/r"), log);
  r.sink = std::make_unique<StringSink>(log, Status::Ok(), /*resumable=*/false);
  FetchResult res = fetch_one(fast_options(), std::move(r));
  ASSERT_TRUE(res.status.ok()) << res.status.to_string();
  EXPECT_EQ(res.resumes, 0);
  EXPECT_EQ(log->resets, 2);
  EXPECT_EQ(log->data, body);
  EXPECT_EQ(header_of(server_.last_request("/r"), "Range"), "");
}

// A 200 to a Range request is the whole file: the sink and the hashes start over within the
// same attempt.
TEST_F(FetcherTest, RangeIgnoredOrChangedFileRestartsFromZero) {
  const std::string body = make_body(150000, 16);
  const std::string v2 = make_body(150000, 17);
  // Ignores Range: always 200 with the whole body.
  route_cut_then(server_, "/ignore", body, 70000, [&](int, const std::string&) {
    Reply r = ok_reply(body);
    r.headers = {std::string("ETag: ") + kEtag};
    return r;
  });
  // The file changed: the If-Range ETag no longer matches, so the server sends all of v2.
  route_cut_then(server_, "/changed", body, 70000,
                 [&](int, const std::string& head) { return range_reply(v2, head, "\"v2\""); });
  struct Case {
    const char* path;
    const std::string& want;
  };
  uint64_t id = 0;
  for (const Case& c : {Case{"/ignore", body}, Case{"/changed", v2}}) {
    auto log = std::make_shared<SinkLog>();
    Request r = request(server_.url(c.path), log, ++id);
    r.want_md5 = true;
    FetchResult res = fetch_one(fast_options(), std::move(r));
    ASSERT_TRUE(res.status.ok()) << c.path << ": " << res.status.to_string();
    EXPECT_EQ(res.attempts, 2) << c.path;
    EXPECT_EQ(res.resumes, 0) << c.path;
    EXPECT_EQ(log->resume_offsets, std::vector<int64_t>{70000}) << c.path;
    EXPECT_EQ(log->resets, 2) << c.path;  // before attempt 1, and when the 200 came
    EXPECT_EQ(log->data, c.want) << c.path;
    EXPECT_EQ(res.sha256, sha256_hex(c.want)) << c.path;
    EXPECT_EQ(res.md5, md5_hex(c.want)) << c.path;
    EXPECT_EQ(res.bytes_received, 70000 + static_cast<int64_t>(c.want.size())) << c.path;
    EXPECT_EQ(header_of(server_.last_request(c.path), "Range"), "bytes=70000-") << c.path;
  }
}

// A 206 that does not continue the file exactly where the sink stopped is refused, and the file
// starts over without Range.
TEST_F(FetcherTest, InconsistentPartialAnswersStartOver) {
  const std::string body = make_body(100000, 18);
  struct Case {
    const char* path;
    std::string content_range;  // of the 206 that answers "Range: bytes=40000-"
  };
  const std::vector<Case> cases = {
      {"/early", "bytes 39000-99999/100000"},   // starts before the bytes held end
      {"/late", "bytes 41000-99999/100000"},    // leaves a gap
      {"/grown", "bytes 40000-100099/100100"},  // the file's total changed
      {"/short", "bytes 40000-89999/100000"},   // not to the end
      {"/garbage", "bytes=40000-"},             // no valid Content-Range
  };
  uint64_t id = 0;
  for (const Case& c : cases) {
    server_.route_head(c.path, [&, c](int hit, const std::string& head) {
      Reply r = range_reply(body, head, kEtag);
      if (hit == 1) r.send_bytes = 40000;
      if (hit == 2) {
        r.status = 206;
        r.headers = {"Accept-Ranges: bytes", std::string("ETag: ") + kEtag,
                     "Content-Range: " + c.content_range};
        r.body = body.substr(40000);
      }
      return r;
    });
    auto log = std::make_shared<SinkLog>();
    FetchResult res = fetch_one(fast_options(), request(server_.url(c.path), log, ++id));
    ASSERT_TRUE(res.status.ok()) << c.path << ": " << res.status.to_string();
    EXPECT_EQ(res.attempts, 3) << c.path;
    EXPECT_EQ(log->data, body) << c.path;
    EXPECT_EQ(res.sha256, sha256_hex(body)) << c.path;
    const std::vector<std::string> heads = server_.requests(c.path);
    ASSERT_EQ(heads.size(), 3u) << c.path;
    EXPECT_EQ(header_of(heads[1], "Range"), "bytes=40000-") << c.path;
    EXPECT_EQ(header_of(heads[2], "Range"), "") << c.path;  // never again for this file
  }
}

TEST_F(FetcherTest, RangeNotSatisfiableStartsOver) {
  const std::string body = make_body(60000, 19);
  route_cut_then(server_, "/r", body, 30000, [&](int hit, const std::string& head) {
    if (hit == 2) return Reply{416, "", {}, -1, 0, false};
    return range_reply(body, head, kEtag);
  });
  auto log = std::make_shared<SinkLog>();
  FetchResult res = fetch_one(fast_options(), request(server_.url("/r"), log));
  ASSERT_TRUE(res.status.ok()) << res.status.to_string();
  EXPECT_EQ(res.attempts, 3);
  EXPECT_EQ(log->data, body);
  EXPECT_EQ(header_of(server_.last_request("/r"), "Range"), "");
}

TEST_F(FetcherTest, PartialAnswerToAWholeFileRequestIsRefused) {
  server_.route(
      "/odd", [](int) { return Reply{206, "abc", {"Content-Range: bytes 0-2/10"}, -1, 0, false}; });
  auto log = std::make_shared<SinkLog>();
  FetchResult res = fetch_one(fast_options(), request(server_.url("/odd"), log));
  EXPECT_EQ(res.status.code(), Code::kIo) << res.status.to_string();
  EXPECT_NE(res.status.message().find("HTTP 206"), std::string::npos) << res.status.message();
  EXPECT_EQ(log->data, "");
}

TEST_F(FetcherTest, ProgressOfAResumedTransferCountsTheWholeFile) {
  const std::string body = make_body(400000, 20);
  route_cut_then(server_, "/r", body, 200000, [&](int, const std::string& head) {
    Reply r = range_reply(body, head, kEtag);
    r.chunk_delay_ms = 1;
    return r;
  });
  std::mutex mu;
  std::vector<std::pair<int64_t, int64_t>> seen;  // GUARDED_BY(mu)
  Options o = fast_options();
  o.on_progress = [&](uint64_t, int64_t now, int64_t total) {
    std::lock_guard<std::mutex> lock(mu);
    seen.emplace_back(now, total);
  };
  FetchResult res = fetch_one(o, request(server_.url("/r"), std::make_shared<SinkLog>()));
  ASSERT_TRUE(res.status.ok()) << res.status.to_string();
  EXPECT_EQ(res.resumes, 1);
  std::lock_guard<std::mutex> lock(mu);
  bool after_resume = false;
  for (auto [now, total] : seen) {
    if (now > 200000) {
      after_resume = true;
      EXPECT_EQ(total, 400000);  // not the 200000 left
    }
  }
  EXPECT_TRUE(after_resume);
}

// ---- stalls ----

TEST_F(FetcherTest, StalledTransferIsAbandonedAndResumed) {
  const std::string body = make_body(200000, 21);
  server_.route_head("/stall", [&](int hit, const std::string& head) {
    Reply r = range_reply(body, head, kEtag);
    if (hit == 1) {
      r.send_bytes = 64000;  // then silence with the connection open
      r.hold_open = true;
    }
    return r;
  });
  Options o = fast_options();
  o.stall_timeout_s = 0.5;
  auto log = std::make_shared<SinkLog>();
  FetchResult res = fetch_one(o, request(server_.url("/stall"), log));
  ASSERT_TRUE(res.status.ok()) << res.status.to_string();
  EXPECT_EQ(res.attempts, 2);
  EXPECT_EQ(res.resumes, 1);
  EXPECT_EQ(log->resume_offsets, std::vector<int64_t>{64000});
  EXPECT_EQ(log->data, body);
  EXPECT_EQ(header_of(server_.last_request("/stall"), "Range"), "bytes=64000-");
}

TEST_F(FetcherTest, ServerThatNeverAnswersIsAStallToo) {
  server_.route("/mute", [](int) {
    Reply r = ok_reply("never");
    r.send_bytes = 0;
    r.hold_open = true;
    return r;
  });
  Options o = fast_options();
  o.stall_timeout_s = 0.2;
  o.max_retries = 1;
  auto log = std::make_shared<SinkLog>();
  FetchResult res = fetch_one(o, request(server_.url("/mute"), log));
  EXPECT_EQ(res.status.code(), Code::kRetryable) << res.status.to_string();
  EXPECT_EQ(res.attempts, 2);
  EXPECT_NE(res.status.message().find("stalled: no data for 0.2 s"), std::string::npos)
      << res.status.message();
  EXPECT_NE(res.status.message().find("--stall-timeout"), std::string::npos);
  EXPECT_EQ(log->aborts, 1);
}

// A pause longer than the timeout abandons the attempt; with the check off (0) it does not.
TEST_F(FetcherTest, StallTimeoutZeroTurnsTheCheckOff) {
  const std::string body = make_body(2048, 22);
  server_.route("/pause", [&](int) { return Reply{200, body, {}, -1, 600, false}; });
  uint64_t id = 0;
  for (double timeout : {0.0, 0.2}) {
    Options o = fast_options();
    o.stall_timeout_s = timeout;
    auto log = std::make_shared<SinkLog>();
    FetchResult res = fetch_one(o, request(server_.url("/pause"), log, ++id));
    if (timeout == 0) {
      ASSERT_TRUE(res.status.ok()) << res.status.to_string();
      EXPECT_EQ(res.attempts, 1);
      EXPECT_EQ(log->data, body);
    } else {
      // Every attempt pauses after its first KiB (no validator: each starts from 0).
      EXPECT_EQ(res.status.code(), Code::kRetryable) << res.status.to_string();
      EXPECT_EQ(res.attempts, 4);
      EXPECT_NE(res.status.message().find("stalled"), std::string::npos);
    }
  }
}

// A slow transfer that keeps moving is no stall, and neither is waiting for a free connection.
TEST_F(FetcherTest, SlowTransfersAndQueuedOnesAreNotStalls) {
  // 100 ms between 1 KiB chunks, 16 chunks: each body takes ~1.6 s, longer than the timeout,
  // which is 10 gaps long (a loaded machine may delay a chunk a little, not that much).
  server_.route("/slow", [](int) { return Reply{200, std::string(16 * 1024, 's'), {}, -1, 100}; });
  Options o = fast_options();
  o.stall_timeout_s = 1.0;
  o.max_host_connections = 1;  // the second transfer waits ~1.6 s for the connection
  o.max_retries = 0;
  auto f = make(o);
  f->submit(request(server_.url("/slow"), std::make_shared<SinkLog>(), 1));
  f->submit(request(server_.url("/slow"), std::make_shared<SinkLog>(), 2));
  f->finish();
  std::lock_guard<std::mutex> lock(collector_.mu);
  for (uint64_t id : {1, 2}) {
    EXPECT_TRUE(collector_.results[id].status.ok()) << collector_.results[id].status.to_string();
    EXPECT_EQ(collector_.results[id].attempts, 1);
  }
  EXPECT_EQ(server_.max_open_connections(), 1);
}

// ---- connections per host ----

TEST_F(FetcherTest, ConnectionsPerHostAreCappedOverAllLoops) {
  server_.route("/p", [](int) { return Reply{200, std::string(8 * 1024, 'p'), {}, -1, 5}; });
  for (int loops : {1, 2}) {
    TestHttpServer server;
    ASSERT_TRUE(server.ok());
    server.route("/p", [](int) { return Reply{200, std::string(8 * 1024, 'p'), {}, -1, 5}; });
    Options o = fast_options();
    o.max_parallel = 20;
    o.max_host_connections = 3;
    o.loops = loops;
    Collector collector;
    auto made = Fetcher::create(o, collector.callback());
    ASSERT_TRUE(made.ok());
    for (int i = 0; i < 20; ++i) {
      (*made)->submit(
          request(server.url("/p"), std::make_shared<SinkLog>(), static_cast<uint64_t>(i)));
    }
    (*made)->finish();
    std::lock_guard<std::mutex> lock(collector.mu);
    ASSERT_EQ(collector.results.size(), 20u);
    for (const auto& [id, r] : collector.results) {
      EXPECT_TRUE(r.status.ok()) << id << ": " << r.status.to_string();
    }
    EXPECT_EQ(server.total_hits(), 20);
    EXPECT_LE(server.max_open_connections(), 3) << loops << " loops";
    EXPECT_GE(server.max_open_connections(), 2) << loops << " loops";  // still parallel
  }
}

TEST_F(FetcherTest, NegativeLimitsAreInvalid) {
  Options o = fast_options();
  o.max_host_connections = -1;
  EXPECT_EQ(Fetcher::create(o, collector_.callback()).status().code(), Code::kInvalidInput);
  o = fast_options();
  o.stall_timeout_s = -1;
  EXPECT_EQ(Fetcher::create(o, collector_.callback()).status().code(), Code::kInvalidInput);
}

// ---- redirects ----

TEST_F(FetcherTest, RedirectLoopIsNamed) {
  server_.route("/a", [](int) { return Reply{302, "", {"Location: /b"}, -1, 0, false}; });
  server_.route("/b", [](int) { return Reply{301, "", {"Location: /a"}, -1, 0, false}; });
  auto log = std::make_shared<SinkLog>();
  FetchResult res = fetch_one(fast_options(), request(server_.url_with_auth("u:pw", "/a"), log));
  EXPECT_EQ(res.status.code(), Code::kInvalidInput) << res.status.to_string();
  EXPECT_EQ(res.attempts, 1);
  const std::string& m = res.status.message();
  EXPECT_NE(
      m.find("redirect loop: " + server_.url_with_auth("***", "/a") + " -> " +
             server_.url_with_auth("***", "/b") + " -> " + server_.url_with_auth("***", "/a")),
      std::string::npos)
      << m;
  EXPECT_EQ(m.find("pw"), std::string::npos) << m;
  EXPECT_EQ(server_.hits("/a"), 1);
  EXPECT_EQ(server_.hits("/b"), 1);
}

TEST_F(FetcherTest, TenRedirectsAreFollowedElevenAreNot) {
  // /hop/<k> redirects to /hop/<k-1>; /hop/0 is the file.
  for (int k = 0; k <= 11; ++k) {
    server_.route("/hop/" + std::to_string(k), [k](int) {
      if (k == 0) return ok_reply("arrived");
      return Reply{307, "", {"Location: /hop/" + std::to_string(k - 1)}, -1, 0, false};
    });
  }
  auto log = std::make_shared<SinkLog>();
  FetchResult ok = fetch_one(fast_options(), request(server_.url("/hop/10"), log, 1));
  ASSERT_TRUE(ok.status.ok()) << ok.status.to_string();
  EXPECT_EQ(log->data, "arrived");
  FetchResult too_far =
      fetch_one(fast_options(), request(server_.url("/hop/11"), std::make_shared<SinkLog>(), 2));
  EXPECT_EQ(too_far.status.code(), Code::kInvalidInput) << too_far.status.to_string();
  EXPECT_NE(too_far.status.message().find("more than 10 redirects: " + server_.url("/hop/11")),
            std::string::npos)
      << too_far.status.message();
  EXPECT_EQ(too_far.attempts, 1);
}

// Credentials (in the URL or an Authorization header) reach the origin, never another host
// a redirect points at: 127.0.0.1 -> localhost is another host on the same server.
TEST_F(FetcherTest, CredentialsAreNotSentToAnotherHostAfterARedirect) {
  const std::string elsewhere = "http://localhost:" + std::to_string(server_.port()) + "/there";
  server_.route("/here",
                [&](int) { return Reply{302, "", {"Location: " + elsewhere}, -1, 0, false}; });
  server_.route("/same", [](int) { return Reply{302, "", {"Location: /there"}, -1, 0, false}; });
  server_.route("/there", [](int) { return ok_reply("file"); });

  auto log = std::make_shared<SinkLog>();
  FetchResult res =
      fetch_one(fast_options(), request(server_.url_with_auth("user:secret", "/here"), log, 1));
  ASSERT_TRUE(res.status.ok()) << res.status.to_string();
  EXPECT_EQ(log->data, "file");
  EXPECT_NE(header_of(server_.last_request("/here"), "Authorization"), "");
  EXPECT_EQ(header_of(server_.last_request("/there"), "Authorization"), "");

  Request r = request(server_.url("/here"), std::make_shared<SinkLog>(), 2);
  r.headers = {"Authorization: Bearer tok-123"};
  res = fetch_one(fast_options(), std::move(r));
  ASSERT_TRUE(res.status.ok()) << res.status.to_string();
  EXPECT_EQ(header_of(server_.last_request("/here"), "Authorization"), "Bearer tok-123");
  EXPECT_EQ(header_of(server_.last_request("/there"), "Authorization"), "");

  // The same host keeps them.
  res = fetch_one(fast_options(), request(server_.url_with_auth("user:secret", "/same"),
                                          std::make_shared<SinkLog>(), 3));
  ASSERT_TRUE(res.status.ok()) << res.status.to_string();
  EXPECT_NE(header_of(server_.last_request("/there"), "Authorization"), "");
}

// ---- what a wrong body looks like ----

TEST_F(FetcherTest, SizeMismatchNamesAnHtmlContentType) {
  server_.route("/login", [](int) {
    return Reply{200,
                 "<html><body>Please log in</body></html>",
                 {"Content-Type: text/html; charset=utf-8"},
                 -1,
                 0,
                 false};
  });
  Request r = request(server_.url("/login"), std::make_shared<SinkLog>());
  r.expected_size = 5000;
  FetchResult res = fetch_one(fast_options(), std::move(r));
  EXPECT_EQ(res.status.code(), Code::kCorrupt) << res.status.to_string();
  EXPECT_NE(res.status.message().find("the server sent text/html, not a package"),
            std::string::npos)
      << res.status.message();
  EXPECT_EQ(res.content_type, "text/html; charset=utf-8");
}

TEST(UnexpectedContentType, OnlyPageTypesAreNamed) {
  EXPECT_EQ(unexpected_content_type_note("text/html; charset=UTF-8"),
            "; the server sent text/html, not a package: an error or login page?");
  EXPECT_NE(unexpected_content_type_note("application/json"), "");
  EXPECT_NE(unexpected_content_type_note("application/xhtml+xml"), "");
  EXPECT_EQ(unexpected_content_type_note("application/octet-stream"), "");
  EXPECT_EQ(unexpected_content_type_note("application/x-bzip2"), "");
  EXPECT_EQ(unexpected_content_type_note(""), "");
}

}  // namespace
}  // namespace mat::fetch
