// See interrupt.h. The handler does two async-signal-safe things (an atomic store, a write to
// a pipe); everything else runs on the watcher thread, where locks and allocation are fine.
#include "materializer/interrupt.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <thread>
#include <utility>

namespace mat {
namespace {

std::atomic<int> g_signal{0};
int g_pipe[2] = {-1, -1};

struct Hooks {
  std::mutex mu;  // guards everything below
  std::map<int, std::pair<std::function<void()>, std::function<void()>>> hooks;
  int next_id = 0;
  std::string note;
};

Hooks& hooks() {
  static Hooks* h = new Hooks;  // never destroyed: the watcher may use it while exit() runs
  return *h;
}

void on_signal(int sig) {
  int expected = 0;
  g_signal.compare_exchange_strong(expected, sig);
  int saved = errno;
  char b = static_cast<char>(sig);
  ssize_t n = ::write(g_pipe[1], &b, 1);  // a full pipe already holds a wake-up
  (void)n;
  errno = saved;
}

// Waits up to `ms` for another byte on the pipe (a second signal); true if one came.
bool second_signal_within(int ms) {
  pollfd p{g_pipe[0], POLLIN, 0};
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0) return false;
    int r = ::poll(&p, 1, static_cast<int>(left));
    if (r > 0) {
      char b;
      return ::read(g_pipe[0], &b, 1) == 1;
    }
    if (r < 0 && errno != EINTR) return false;
  }
}

void hard_stop() {
  Hooks& h = hooks();
  std::string note;
  {
    std::lock_guard<std::mutex> l(h.mu);
    for (auto& [id, hook] : h.hooks) {
      if (hook.second) hook.second();
    }
    note = h.note;
  }
  std::string msg = std::string("\ninterrupted (") + interrupt_name() +
                    "): stopping took longer than " + std::to_string(kHardStopMs) +
                    " ms, exiting now" + (note.empty() ? "" : "; " + note) + "\n";
  ssize_t n = ::write(STDERR_FILENO, msg.data(), msg.size());
  (void)n;
  ::_exit(interrupt_exit_code());
}

void watch() {
  char b;
  for (;;) {
    ssize_t n = ::read(g_pipe[0], &b, 1);
    if (n == 1) break;
    if (n < 0 && errno == EINTR) continue;
    return;  // the pipe is gone: nothing to watch
  }
  {
    Hooks& h = hooks();
    std::lock_guard<std::mutex> l(h.mu);
    for (auto& [id, hook] : h.hooks) {
      if (hook.first) hook.first();
    }
  }
  second_signal_within(kHardStopMs);  // either way: time is up
  hard_stop();
}

}  // namespace

void install_interrupt_handlers() {
  if (::pipe2(g_pipe, O_CLOEXEC | O_NONBLOCK) != 0) return;  // then signals keep their default
  // The read end blocks (the watcher sleeps on it); the write end never does (the handler).
  ::fcntl(g_pipe[0], F_SETFL, ::fcntl(g_pipe[0], F_GETFL) & ~O_NONBLOCK);
  std::thread(watch).detach();
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
}

int interrupt_signal() { return g_signal.load(std::memory_order_relaxed); }

int interrupt_exit_code() { return 128 + interrupt_signal(); }

const char* interrupt_name() {
  switch (interrupt_signal()) {
    case SIGINT:
      return "SIGINT";
    case SIGTERM:
      return "SIGTERM";
    default:
      return "a signal";
  }
}

Status interrupted_status(const std::string& what) {
  return Status(Code::kCancelled, what + ": interrupted (" + interrupt_name() + ")");
}

void set_interrupt_note(std::string note) {
  Hooks& h = hooks();
  std::lock_guard<std::mutex> l(h.mu);
  h.note = std::move(note);
}

InterruptHook::InterruptHook(std::function<void()> cancel, std::function<void()> cleanup) {
  Hooks& h = hooks();
  std::lock_guard<std::mutex> l(h.mu);
  id_ = h.next_id++;
  h.hooks.emplace(id_, std::make_pair(std::move(cancel), std::move(cleanup)));
  // Registered after the signal came: the watcher has run the cancel hooks already.
  if (interrupted() && h.hooks[id_].first) h.hooks[id_].first();
}

InterruptHook::~InterruptHook() {
  Hooks& h = hooks();
  std::lock_guard<std::mutex> l(h.mu);
  h.hooks.erase(id_);
}

Status InterruptibleFs::write_all(int fd, const void* data, size_t len, const std::string& what) {
  if (interrupted()) return interrupted_status(what);
  return base_.write_all(fd, data, len, what);
}

Status InterruptibleFs::fsync(int fd, const std::string& what) {
  if (interrupted()) return interrupted_status(what);
  return base_.fsync(fd, what);
}

Status InterruptibleFs::rename(const std::string& from, const std::string& to) {
  if (interrupted()) return interrupted_status(to);
  return base_.rename(from, to);
}

Status InterruptibleFs::rename_at(int from_dir, const std::string& from, int to_dir,
                                  const std::string& to, const std::string& what) {
  if (interrupted()) return interrupted_status(what);
  return base_.rename_at(from_dir, from, to_dir, to, what);
}

void set_interrupt_for_testing(int sig) { g_signal.store(sig); }

}  // namespace mat
