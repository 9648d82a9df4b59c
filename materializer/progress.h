// Live progress for the terminal, plain lines for pipes.
//
// Counters are atomics updated from any thread (fetch thread, TBB workers); a TTY gets one line
// redrawn ~10 times a second by a small render thread; a pipe gets one line per finished stage
// (and per package at -v). Only materializer/ prints; fetch/ and cache/ report through callbacks.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

namespace mat {

class Progress {
 public:
  // verbosity 0: silent; 1: normal; 2: per-package lines.
  Progress(int verbosity, bool tty);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void set_totals(int64_t packages, int64_t download_packages, int64_t download_bytes);
  void add_download_bytes(int64_t n) { dl_bytes_.fetch_add(n, std::memory_order_relaxed); }
  void download_done() { dl_done_.fetch_add(1, std::memory_order_relaxed); }
  void extract_done() { ex_done_.fetch_add(1, std::memory_order_relaxed); }
  void set_link_total(int64_t files) { link_total_.store(files); }
  void add_linked(int64_t files) { linked_.fetch_add(files, std::memory_order_relaxed); }

  // A line that must appear (warnings, stage summaries); clears the live line first.
  void line(const std::string& text);
  // A per-package line shown only at -v.
  void detail(const std::string& text);

  void start();
  void stop();  // final redraw and newline; idempotent

 private:
  std::string render() const;
  void loop();

  int verbosity_;
  bool tty_;
  std::atomic<int64_t> packages_{0}, dl_total_{0}, dl_bytes_total_{0};
  std::atomic<int64_t> dl_bytes_{0}, dl_done_{0}, ex_done_{0}, link_total_{0}, linked_{0};
  std::mutex mu_;  // guards stopping_, output to stderr
  std::condition_variable cv_;
  bool stopping_ = false;
  bool running_ = false;
  std::thread thread_;
};

std::string human_bytes(int64_t n);

}  // namespace mat
