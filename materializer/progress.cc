#include "materializer/progress.h"

#include <chrono>
#include <cstdio>

#include "materializer/base/text.h"

namespace mat {

std::string human_bytes(int64_t n) {
  static const char* kUnits[] = {"B", "KB", "MB", "GB", "TB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1000 && u < 4) {
    v /= 1000;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, kUnits[u]);
  return buf;
}

Progress::Progress(int verbosity, bool tty) : verbosity_(verbosity), tty_(tty) {}

Progress::~Progress() { stop(); }

void Progress::set_totals(int64_t packages, int64_t download_packages, int64_t download_bytes) {
  packages_ = packages;
  dl_total_ = download_packages;
  dl_bytes_total_ = download_bytes;
}

std::string Progress::render() const {
  char buf[256];
  std::string bytes = human_bytes(dl_bytes_.load());
  if (dl_bytes_total_ > 0) bytes += "/" + human_bytes(dl_bytes_total_.load());
  std::snprintf(buf, sizeof buf, "download %lld/%lld (%s)  extract %lld/%lld  link %lld/%lld files",
                static_cast<long long>(dl_done_.load()), static_cast<long long>(dl_total_.load()),
                bytes.c_str(), static_cast<long long>(ex_done_.load()),
                static_cast<long long>(dl_total_.load()), static_cast<long long>(linked_.load()),
                static_cast<long long>(link_total_.load()));
  return buf;
}

void Progress::line(const std::string& text) {
  if (verbosity_ <= 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (tty_ && running_) std::fputs("\r\033[K", stderr);
  std::fprintf(stderr, "%s\n", clip_message(text).c_str());
}

void Progress::detail(const std::string& text) {
  if (verbosity_ >= 2) line(text);
}

void Progress::start() {
  if (verbosity_ <= 0 || !tty_ || running_) return;
  running_ = true;
  thread_ = std::thread([this] { loop(); });
}

void Progress::loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    std::fprintf(stderr, "\r\033[K%s", render().c_str());
    std::fflush(stderr);
    cv_.wait_for(lock, std::chrono::milliseconds(100));
  }
  std::fprintf(stderr, "\r\033[K");
  std::fflush(stderr);
}

void Progress::stop() {
  if (!running_) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
  running_ = false;
}

}  // namespace mat
