// SIGINT / SIGTERM: stop within a second, say what state the prefix is in, leave no temp file.
//
// install_interrupt_handlers() (main(), before any thread starts) routes both signals to a
// watcher thread through a self-pipe: the handler only stores the signal number (a lock-free
// atomic) and writes one byte, which is all a handler may safely do. On the first signal the
// watcher runs the registered cancel hooks (the downloads in flight end at once, kCancelled),
// and interrupted() turns true, which the stages check: extraction and every prefix write fail
// with kCancelled through InterruptibleFs, linking stops between two files, and the driver
// prints the state and returns interrupt_exit_code() (130 for SIGINT, 143 for SIGTERM). The
// destructors then remove this process's temp files (PendingArchive, PendingTree, the atomic
// writes' temps), as on any failure.
//
// If the process still runs kHardStop after the signal (a step that cannot be cancelled: an
// index lookup, a blocking fsync, --compile's python), or at a second signal, the watcher runs
// the cleanup hooks (this process's temp files in the cache's tmp/ and the prefix's
// conda-meta/), prints the note set by set_interrupt_note() and _exit()s with the same code.
// A worker that creates a temp file after that sweep leaves it to the next run's sweep.
//
// Process-wide by nature (so are signals), like mold's signal-unix.cc. Thread-safe.
#pragma once

#include <functional>
#include <string>

#include "materializer/base/fs.h"
#include "materializer/base/status.h"

namespace mat {

// How long the stages get to stop on their own after the first signal.
inline constexpr int kHardStopMs = 700;

// Installs the handlers and starts the watcher. Call once, before any other thread starts.
void install_interrupt_handlers();

// SIGINT or SIGTERM once one arrived, else 0. Cheap (one relaxed atomic load): checked per file.
int interrupt_signal();
inline bool interrupted() { return interrupt_signal() != 0; }
// 128 + the signal (130 SIGINT, 143 SIGTERM), the shells' convention.
int interrupt_exit_code();
// "SIGINT" / "SIGTERM".
const char* interrupt_name();
// kCancelled "interrupted (SIGINT)" for the item `what`.
Status interrupted_status(const std::string& what);

// The sentence the hard stop prints about the prefix ("the prefix P was not touched", ...).
void set_interrupt_note(std::string note);

// Registers `cancel` (run by the watcher at the first signal; it must only ask work to stop,
// e.g. Fetcher::cancel) and `cleanup` (run before a hard stop: remove this process's temp
// files) for the hook's lifetime. Either may be empty. Move-only.
class InterruptHook {
 public:
  InterruptHook(std::function<void()> cancel, std::function<void()> cleanup);
  ~InterruptHook();
  InterruptHook(const InterruptHook&) = delete;
  InterruptHook& operator=(const InterruptHook&) = delete;

 private:
  int id_;
};

// An Fs whose writes, fsyncs and renames fail with kCancelled once interrupted() (so a long
// extraction or a prefix write stops at its next block), and otherwise forward to `base`.
class InterruptibleFs : public Fs {
 public:
  explicit InterruptibleFs(Fs& base) : base_(base) {}
  Status write_all(int fd, const void* data, size_t len, const std::string& what) override;
  Status fsync(int fd, const std::string& what) override;
  Status rename(const std::string& from, const std::string& to) override;
  Status rename_at(int from_dir, const std::string& from, int to_dir, const std::string& to,
                   const std::string& what) override;

 private:
  Fs& base_;
};

// Tests only: act as if `sig` arrived (0 clears it), without the watcher or the hooks.
void set_interrupt_for_testing(int sig);

}  // namespace mat
