#include "cache/growing_file.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <random>
#include <string>
#include <thread>

#include "cache/test_util.h"

namespace mat::cache {
namespace {

using testing::TempDir;
using testing::write_bytes;

// Writes `data` into `path` in uneven pieces, reporting each to `g`, with short pauses so the
// reader catches up and has to wait.
void write_slowly(const std::string& path, const std::string& data, GrowingFile& g) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  ASSERT_TRUE(fd.valid());
  std::mt19937 rng(7);
  size_t at = 0;
  while (at < data.size()) {
    size_t n = std::min<size_t>(data.size() - at, 1 + rng() % 50000);
    ASSERT_EQ(::write(fd.get(), data.data() + at, n), static_cast<ssize_t>(n));
    at += n;
    g.grew(static_cast<int64_t>(at));
    if (rng() % 8 == 0) std::this_thread::sleep_for(std::chrono::microseconds(300));
  }
}

// Reads `r` to its end. `progress` (if given) follows the bytes read so far, for another thread.
std::string read_all(GrowingFileReader& r, Status* error,
                     std::atomic<int64_t>* progress = nullptr) {
  std::string out;
  for (;;) {
    auto block = r.next();
    if (!block.ok()) {
      *error = block.status();
      return out;
    }
    if (block->empty()) return out;
    out.append(block->data(), block->size());
    if (progress) progress->store(static_cast<int64_t>(out.size()));
  }
}

TEST(GrowingFileTest, ReaderGetsEveryByteAndTheEndOnlyOnceComplete) {
  TempDir dir;
  const std::string path = dir.path() + "/f";
  std::string data(3'000'000, '\0');
  std::mt19937 rng(1);
  for (char& c : data) c = static_cast<char>(rng());
  auto g = std::make_shared<GrowingFile>();
  write_bytes(path, "");
  auto reader = GrowingFileReader::open(path, g, 64 << 10);
  ASSERT_TRUE(reader.ok()) << reader.status().to_string();
  Status error;
  std::string got;
  std::atomic<int64_t> progress{0};
  std::thread t([&] { got = read_all(**reader, &error, &progress); });
  write_slowly(path, data, *g);
  // Every byte is written, but the download is not verified yet: the reader reads all but the
  // last partial block (it waits for whole blocks while the file grows) and must then wait.
  // Polled with a generous deadline rather than one fixed sleep: on a loaded machine the reader
  // thread can take longer than any short pause to catch up.
  const int64_t all_but_last_block = static_cast<int64_t>(data.size()) - (64 << 10);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (progress.load() <= all_but_last_block && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_GT(progress.load(), all_but_last_block);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // time to return, were it wrong
  EXPECT_TRUE(error.ok());
  EXPECT_TRUE(got.empty());  // read_all has not returned
  g->complete();
  t.join();
  EXPECT_TRUE(error.ok()) << error.to_string();
  EXPECT_EQ(got, data);
}

TEST(GrowingFileTest, RestartOrFailureCancelsTheReader) {
  for (bool restart : {true, false}) {
    TempDir dir;
    const std::string path = dir.path() + "/f";
    write_bytes(path, "");
    auto g = std::make_shared<GrowingFile>();
    auto reader = GrowingFileReader::open(path, g);
    ASSERT_TRUE(reader.ok());
    Status error;
    std::string got;
    std::thread t([&] { got = read_all(**reader, &error); });
    write_slowly(path, std::string(100'000, 'x'), *g);
    if (restart) {
      g->restarted();
    } else {
      g->failed();
    }
    g->complete();  // too late: a failed file stays failed
    t.join();
    EXPECT_EQ(error.code(), Code::kCancelled) << error.to_string();
  }
}

TEST(GrowingFileTest, EmptyCompleteFileEndsAtOnce) {
  TempDir dir;
  const std::string path = dir.path() + "/f";
  write_bytes(path, "");
  auto g = std::make_shared<GrowingFile>();
  g->complete();
  auto reader = GrowingFileReader::open(path, g);
  ASSERT_TRUE(reader.ok());
  auto block = (*reader)->next();
  ASSERT_TRUE(block.ok());
  EXPECT_TRUE(block->empty());
}

TEST(GrowingFileTest, FileShorterThanReportedIsAnError) {
  TempDir dir;
  const std::string path = dir.path() + "/f";
  write_bytes(path, "abc");
  auto g = std::make_shared<GrowingFile>();
  g->grew(10);  // says more than the file holds
  g->complete();
  auto reader = GrowingFileReader::open(path, g);
  ASSERT_TRUE(reader.ok());
  auto first = (*reader)->next();
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(std::string(first->data(), first->size()), "abc");
  EXPECT_EQ((*reader)->next().status().code(), Code::kCancelled);
}

TEST(GrowingFileTest, MissingFileFailsToOpen) {
  auto g = std::make_shared<GrowingFile>();
  EXPECT_FALSE(GrowingFileReader::open("/nonexistent/f", g).ok());
}

}  // namespace
}  // namespace mat::cache
