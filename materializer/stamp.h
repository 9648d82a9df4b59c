// stamp: the no-op fast path. A prefix materialized completely from a lock carries
// conda-meta/.materializer-stamp with the hash of everything that decided its content (the
// lock's bytes and the selection/interpreter/index/link options). A later install of the same
// input finds the stamp, checks the prefix cheaply (no incomplete marker, every recorded
// conda-meta file present) and stops: no lock parsing, no cache, no per-file work.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "materializer/base/beneath.h"
#include "materializer/base/status.h"
#include "materializer/install.h"

namespace mat {

// No ".json" ending: conda and micromamba read conda-meta/*.json as package records.
inline constexpr const char* kStampPath = "conda-meta/.materializer-stamp";

// sha256 over the lock's bytes and every option that changes what gets installed.
std::string install_input_hash(const std::string& lock_bytes, const InstallOptions& opts);

// True if `prefix` was completely materialized from the same input (cheap: a few stats).
bool stamp_matches(const std::string& prefix, const std::string& input_hash);

// Written last, after every package is linked and recorded. `records` are conda-meta file names
// ("zlib-1.3.1-h4ab18f5_1.json") and prefix-relative dist-info dirs to check on the next run.
Status write_stamp(const std::string& prefix, const std::string& input_hash,
                   const std::vector<std::string>& paths);

// Removed before a prefix is modified, so an interrupted run never looks like a no-op.
Status remove_stamp(const std::string& prefix);

// conda-meta/.materializer-lock: flock()ed by the run that is changing the prefix, from before
// the stamp is removed until the process exits (the kernel drops it however the process ends,
// SIGKILL included). Two installs into one prefix take turns instead of interleaving.
inline constexpr const char* kPrefixLockPath = "conda-meta/.materializer-lock";

// Takes the prefix lock (conda-meta/ must exist; the lock file is made 0600 beneath the prefix,
// never through a symlink), blocking while another run holds it: `on_wait` is called once
// first, to say so. Then, holding it, removes the temp files runs killed before left in
// conda-meta/ (records, history, markers, the link-mode probe: every temp file materializer
// makes in a prefix lives there), so none stays for ever; *swept gets their number. The lock
// lasts as long as the returned fd. Errors: kIo/kNoSpace naming the path.
Result<UniqueFd> lock_prefix(const Root& root, const std::function<void()>& on_wait, int* swept);

}  // namespace mat
