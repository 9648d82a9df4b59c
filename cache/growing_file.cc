#include "cache/growing_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace mat::cache {

void GrowingFile::grew(int64_t size) {
  std::lock_guard<std::mutex> l(mu_);
  size_ = size;
  if (wake_at_ >= 0 && size_ >= wake_at_) cv_.notify_all();
}

void GrowingFile::restarted() {
  std::lock_guard<std::mutex> l(mu_);
  state_ = State::kFailed;  // bytes a reader consumed may not come again: it cannot go on
  cv_.notify_all();
}

void GrowingFile::complete() {
  std::lock_guard<std::mutex> l(mu_);
  if (state_ == State::kGrowing) state_ = State::kComplete;
  cv_.notify_all();
}

void GrowingFile::failed() {
  std::lock_guard<std::mutex> l(mu_);
  state_ = State::kFailed;
  cv_.notify_all();
}

void GrowingFile::expect(int64_t total) {
  std::lock_guard<std::mutex> l(mu_);
  expected_ = total;
}

int64_t GrowingFile::expected() const {
  std::lock_guard<std::mutex> l(mu_);
  return expected_;
}

int64_t GrowingFile::size() const {
  std::lock_guard<std::mutex> l(mu_);
  return size_;
}

Result<int64_t> GrowingFile::wait_beyond(int64_t pos, int64_t want) {
  std::unique_lock<std::mutex> l(mu_);
  if (pos > size_) return Internal("read position past the end of a growing file");
  const int64_t target = pos + std::max<int64_t>(1, want);
  for (;;) {
    if (state_ == State::kFailed) {
      return Cancelled("the download restarted or failed while its archive was being read");
    }
    if (state_ == State::kComplete || size_ >= target) return size_;
    wake_at_ = target;
    cv_.wait(l);
    wake_at_ = -1;
  }
}

Result<std::unique_ptr<GrowingFileReader>> GrowingFileReader::open(
    const std::string& path, std::shared_ptr<GrowingFile> file, size_t block) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus("open " + path, errno);
  return std::unique_ptr<GrowingFileReader>(
      new GrowingFileReader(path, std::move(file), std::move(fd), std::max<size_t>(block, 1)));
}

Result<std::span<const char>> GrowingFileReader::next() {
  MAT_ASSIGN_OR_RETURN(int64_t size, file_->wait_beyond(pos_, static_cast<int64_t>(buf_.size())));
  if (size == pos_) return std::span<const char>();  // complete, all read
  size_t want = static_cast<size_t>(std::min<int64_t>(size - pos_, buf_.size()));
  for (;;) {
    ssize_t n = ::pread(fd_.get(), buf_.data(), want, pos_);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus("read " + path_, errno);
    // The writer said these bytes exist: a short file means it was truncated under us.
    if (n == 0) return Cancelled("read " + path_ + ": the file shrank while being read");
    pos_ += n;
    return std::span<const char>(buf_.data(), static_cast<size_t>(n));
  }
}

}  // namespace mat::cache
