// wheel: install unpacked wheels (cache trees) into a prefix exactly as PEP 427/491 and pip do:
// the layout of `pip install --prefix DIR`.
//
//   - *.dist-info and top-level files → lib/pythonX.Y/site-packages/ (purelib and platlib alike)
//   - NAME.data/scripts → bin/ (a "#!python" / "#!pythonw" first line is rewritten to the
//     target interpreter, with conda's long-shebang rule → "#!/bin/sh" exec trampoline),
//     NAME.data/headers → include/pythonX.Y/NAME/, NAME.data/data → PREFIX/,
//     NAME.data/purelib and platlib → site-packages/
//   - console_scripts / gui_scripts from entry_points.txt → executable bin/ scripts in pip's form
//   - INSTALLER ("materializer"), REQUESTED (for requested packages), and a RECORD listing every
//     installed file with sha256 (urlsafe base64, no padding) and size; generated scripts and
//     INSTALLER/REQUESTED included, RECORD itself with empty hash
//   - METADATA Name/Version must match the wheel file name (normalised): else kCorrupt
// Files are hard-linked from the cache tree when their bytes are unchanged (same policy and
// link-mode probe as conda linking), copied otherwise. Stages are data-parallel with oneTBB;
// results are indexed by input position.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "materializer/base/fs.h"
#include "materializer/base/status.h"
#include "materializer/link.h"
#include "materializer/lock.h"
#include "materializer/pypi.h"

namespace mat {

struct WheelInstallOptions {
  std::string prefix;            // absolute
  std::string cache_root;        // for the link-mode probe
  LinkMode mode = LinkMode::kAuto;
  pypi::TargetPython target;
  bool compile = false;          // --compile: .pyc for the whole prefix (compileall, parallel)
  int jobs = 1;                  // worker processes for --compile
  Fs* fs = nullptr;              // nullptr = posix_fs()
};

struct WheelInput {
  const PackageRef* ref = nullptr;  // name, version, url, sha256, requested
  std::string tree;                 // cache tree: the wheel's members, extracted and verified
};

struct WheelResult {
  Status status;
  int64_t files = 0;
  double seconds = 0;
  std::vector<std::string> warnings;  // e.g. a file also installed by a conda package
};

struct WheelSummary {
  std::vector<WheelResult> results;  // results[i] for inputs[i]
  bool complete = false;
  double compile_seconds = 0;
  LinkMode mode_used = LinkMode::kAuto;  // hardlink, reflink or copy, as probed or forced
  std::vector<std::string> warnings;     // run-wide (e.g. compileall reported failures)
};

// Checks an extracted wheel tree against its file name before anything is installed: exactly
// one top-level *.dist-info, a supported Wheel-Version, METADATA Name/Version matching the file
// name. The driver runs it right after extraction, so a broken wheel fails the run before the
// prefix is touched. Errors: kCorrupt, kIo.
Status check_wheel_tree(const std::string& tree, const std::string& file_name);

// Installs all wheels; per-wheel failures land in results[i]. Run-wide failures (prefix not
// writable, --compile interpreter missing) return an error.
//
// Details (pip 23 `install --no-deps --prefix` is the reference; see wheel_install.cc):
//   - A path already in the prefix is replaced (unlink + link/create, never written through)
//     and reported in results[i].warnings, unless it is the very same cache file or listed in
//     the RECORD of an earlier install of the same *.dist-info. Two wheels of this run writing
//     one path: the later in input order wins, with a warning.
//   - RECORD rows are sorted by path (pip sorts them); lines end in "\r\n" (csv.writer).
//   - --compile runs `<exe> -m compileall -q -j <jobs> -d SP SP` once after every wheel is
//     linked (SP = lib/pythonX.Y/site-packages; <exe> = target.executable, or /usr/bin/python3
//     when that does not exist); each wheel's RECORD then lists the .pyc of its .py files with
//     sha256 and size. compileall failures (e.g. Python 2 syntax) are warnings, as in pip.
//   - A wheel that fails gets no RECORD (it does not look installed); files it already linked
//     stay.
// Thread safety: runs on the caller's TBB arena; concurrent calls need different prefixes.
Result<WheelSummary> install_wheels(const std::vector<WheelInput>& inputs,
                                    const WheelInstallOptions& opts);

}  // namespace mat
