// Status and Result<T>: errors as values, shaped like absl::Status / absl::StatusOr.
//
// Codes are chosen by what the caller does next (see STYLE.md §4):
//   kRetryable        the same call may succeed later (timeout, reset, 5xx, 429)
//   kNotFound         the thing named does not exist (404, missing file)
//   kHashMismatch     bytes arrived but are not the ones the lock promised
//   kCorrupt          an archive/record is damaged or malicious
//   kInvalidInput     the user's input (lock, flags) is wrong; fix it and rerun
//   kNoSpace          the disk is full
//   kIo               any other OS-level failure
//   kCancelled        the run was interrupted
//   kInternal         a bug
//
// Messages name the subject, what failed, the evidence and the next step.
// Thread safety: values; no shared state.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace mat {

enum class Code {
  kOk = 0,
  kRetryable,
  kNotFound,
  kHashMismatch,
  kCorrupt,
  kInvalidInput,
  kNoSpace,
  kIo,
  kCancelled,
  kInternal,
};

// Short stable name for a code ("hash-mismatch"), used in JSON reports.
const char* code_name(Code c);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }

  // "hash-mismatch: <message>"
  std::string to_string() const;

  // Returns a copy whose message is "<prefix>: <message>".
  Status with_context(const std::string& prefix) const {
    if (ok()) return *this;
    return Status(code_, prefix + ": " + message_);
  }

  void ignore() const {}

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

inline Status Retryable(std::string m) { return Status(Code::kRetryable, std::move(m)); }
inline Status NotFound(std::string m) { return Status(Code::kNotFound, std::move(m)); }
inline Status HashMismatch(std::string m) { return Status(Code::kHashMismatch, std::move(m)); }
inline Status Corrupt(std::string m) { return Status(Code::kCorrupt, std::move(m)); }
inline Status InvalidInput(std::string m) { return Status(Code::kInvalidInput, std::move(m)); }
inline Status NoSpace(std::string m) { return Status(Code::kNoSpace, std::move(m)); }
inline Status IoError(std::string m) { return Status(Code::kIo, std::move(m)); }
inline Status Cancelled(std::string m) { return Status(Code::kCancelled, std::move(m)); }
inline Status Internal(std::string m) { return Status(Code::kInternal, std::move(m)); }

// Builds an I/O status from errno: "<what>: <strerror>"; ENOSPC/EDQUOT map to kNoSpace.
Status ErrnoStatus(const std::string& what, int err);

// Value or error. Access value() only when ok().
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}           // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {     // NOLINT: implicit by design
    assert(!std::get<Status>(v_).ok());
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOkStatus;
    return ok() ? kOkStatus : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace mat

#define MAT_CONCAT_INNER(a, b) a##b
#define MAT_CONCAT(a, b) MAT_CONCAT_INNER(a, b)

// Returns from the current function if `expr` (a Status) is not ok.
#define MAT_RETURN_IF_ERROR(expr)               \
  do {                                          \
    ::mat::Status mat_status_ = (expr);         \
    if (!mat_status_.ok()) return mat_status_;  \
  } while (0)

// `MAT_ASSIGN_OR_RETURN(auto x, f());` unwraps a Result or returns its Status.
#define MAT_ASSIGN_OR_RETURN(lhs, expr) \
  MAT_ASSIGN_OR_RETURN_IMPL(MAT_CONCAT(mat_result_, __LINE__), lhs, expr)
#define MAT_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                              \
  if (!tmp.ok()) return tmp.status();             \
  lhs = std::move(tmp).value()
