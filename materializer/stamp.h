// stamp: the no-op fast path. A prefix materialized completely from a lock carries
// conda-meta/.materializer-stamp with the hash of everything that decided its content (the
// lock's bytes, the files it included, the prefix's own path and every option that changes
// what gets installed or whether the run may proceed). A later install of the same input
// finds the stamp, checks the prefix cheaply (no incomplete marker, every recorded conda-meta
// file present, every included file unchanged) and stops: no lock parsing, no cache, no
// per-file work.
//
// The options, one by one (main.cc): in the hash: --platform, --environment, --python-version,
// --python (the path, and the real path and identity of the interpreter it names: a
// python3 -> python3.11 link moved to 3.12 is another target), --index-url,
// --extra-index-url, --find-links, --extra, --group, --link-mode, --compile,
// --allow-file-urls (a narrower policy must refuse again, not no-op) and the absolute prefix
// (conda packages carry it in their text and binary files: a moved prefix must be relinked).
// Not in it, as they change how but not what: --cache-dir (same bytes by hash), --jobs,
// --max-downloads, --max-connections-per-host, --stall-timeout, --offline, --no-stream,
// --ca-bundle, --report, --trace, --max-lock-size (applied before the stamp is read), -q/-v,
// --dry-run (never stamps, never no-ops) and --force (skips the stamp).
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

// sha256 over the lock's bytes and every option that changes what gets installed (above).
// `opts.prefix` must already be absolute.
std::string install_input_hash(const std::string& lock_bytes, const InstallOptions& opts);

// True if `prefix` was completely materialized from the same input (cheap: a few stats, and
// one read per included file).
bool stamp_matches(const std::string& prefix, const std::string& input_hash);

// Written last, after every package is linked and recorded. `records` are conda-meta file names
// ("zlib-1.3.1-h4ab18f5_1.json") and prefix-relative dist-info dirs to check on the next run;
// `inputs` the files besides the lock that were read (requirements includes), with the hash of
// the bytes that were parsed.
Status write_stamp(const std::string& prefix, const std::string& input_hash,
                   const std::vector<std::string>& paths,
                   const std::vector<InputFile>& inputs = {});

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
