#include "materializer/base/status.h"

#include <cerrno>
#include <cstring>

namespace mat {

const char* code_name(Code c) {
  switch (c) {
    case Code::kOk: return "ok";
    case Code::kRetryable: return "retryable";
    case Code::kNotFound: return "not-found";
    case Code::kHashMismatch: return "hash-mismatch";
    case Code::kCorrupt: return "corrupt";
    case Code::kInvalidInput: return "invalid-input";
    case Code::kNoSpace: return "no-space";
    case Code::kIo: return "io";
    case Code::kCancelled: return "cancelled";
    case Code::kInternal: return "internal";
  }
  return "unknown";
}

std::string Status::to_string() const {
  if (ok()) return "ok";
  return std::string(code_name(code_)) + ": " + message_;
}

Status ErrnoStatus(const std::string& what, int err) {
  std::string msg = what + ": " + std::strerror(err);
  // The conditions a user fixes outside materializer get their errno name too, as the
  // documentation and the search engines spell them.
  if (err == ENOSPC || err == EDQUOT || err == EROFS) msg += std::string(" (") + strerrorname_np(err) + ")";
  if (err == ENOSPC || err == EDQUOT) {
    return Status(Code::kNoSpace, msg + "; free some disk space and retry");
  }
  if (err == ENOENT) return Status(Code::kNotFound, msg);
  return Status(Code::kIo, msg);
}

}  // namespace mat
