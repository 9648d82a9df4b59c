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
  int writes = 0;
  int finishes = 0;
  int aborts = 0;
};

class StringSink : public Sink {
 public:
  explicit StringSink(std::shared_ptr<SinkLog> log, Status fail_writes = Status::Ok())
      : log_(std::move(log)), fail_writes_(std::move(fail_writes)) {}
  Status reset() override {
    ++log_->resets;
    log_->data.clear();
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

}  // namespace
}  // namespace mat::fetch
