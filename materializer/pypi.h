// pypi: the Python packaging rules the driver needs to pick and install wheels — the target
// interpreter and its compatible tags (PEP 425 / packaging.tags order), wheel file names
// (PEP 427), PEP 440 version specifiers (requires-python), PEP 508 environment markers and
// PEP 503 name normalisation. No dependency solving: locks already decided.
//
// Everything here is pure computation (no I/O) except probe_interpreter(), which runs the
// given interpreter once. Thread-safe.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "materializer/base/status.h"
#include "materializer/lock.h"

namespace mat::pypi {

// The interpreter wheels are installed for.
struct TargetPython {
  std::string version;          // "3.11" (X.Y)
  std::string full_version;     // "3.11.7" when known, else X.Y.0 for markers
  std::string implementation = "cpython";  // sys.implementation.name
  std::string abi;              // "cp311", "cp313t" (free-threaded)
  std::string platform;         // conda subdir: "linux-64", "linux-aarch64", "osx-arm64", ...
  std::string glibc;            // newest manylinux glibc the target supports ("2.17" minimum;
                                // host's gnu_get_libc_version() by default); "" = not glibc
  std::string executable;       // absolute interpreter path for shebangs
                                // (PREFIX/bin/pythonX.Y for a conda prefix)
  std::vector<std::string> tags;  // compatible "py-abi-plat" triples, most preferred first
  std::map<std::string, std::string> markers;  // PEP 508 environment: os_name, sys_platform,
                                               // platform_machine, platform_system,
                                               // python_version, python_full_version,
                                               // implementation_name, ...
};

// Builds the target from X.Y (+ optional full version) for a conda platform, computing tags in
// packaging.tags order (cpXY-cpXY-manylinux_2_N..2_5/manylinux2014/2010/1, cpXY-abi3-...,
// cpXY-none-..., py3X..py30-none-plat, cpXY-none-any, py3X-none-any ... py30-none-any).
Result<TargetPython> make_target(const std::string& version_xy, const std::string& full_version,
                                 const std::string& platform, const std::string& executable,
                                 const std::string& glibc = "");

// Runs `python_path` once to learn X.Y, full version, ABI flags, platform and glibc; the
// shebang executable is python_path itself. Errors: kNotFound, kInvalidInput (not a python).
Result<TargetPython> probe_interpreter(const std::string& python_path);

// PEP 503 normalisation: lowercase, runs of "-_." become "-".
std::string normalize_name(std::string_view name);

// PEP 427 wheel file name. `tags` is the expanded set of "py-abi-plat" triples (compressed tag
// sets like "py2.py3-none-any" expand to two).
struct WheelName {
  std::string name;     // as in the file name (escaped: '_' for '-')
  std::string version;
  std::string build;    // optional build tag
  std::vector<std::string> tags;
};
std::optional<WheelName> parse_wheel_name(std::string_view file_name);

// Index of the best matching tag in target.tags (lower = better), nullopt if incompatible.
std::optional<size_t> wheel_rank(const WheelName& wheel, const TargetPython& target);

// Chooses, among `candidates`, the compatible wheel with the best rank (ties: first listed).
// nullopt if none fits.
std::optional<WheelCandidate> pick_wheel(const std::vector<WheelCandidate>& candidates,
                                         const TargetPython& target);

// PEP 440: does `version` satisfy the specifier set (">=3.8,<4", "==3.11.*", "~=3.9", "!=3.10")?
// kInvalidInput for a malformed specifier.
Result<bool> version_satisfies(std::string_view version, std::string_view specifiers);

// PEP 508 environment marker against target.markers (`extra` compares against `extras`).
// kInvalidInput for a malformed marker.
Result<bool> evaluate_marker(std::string_view marker, const TargetPython& target,
                             const std::vector<std::string>& extras = {});

}  // namespace mat::pypi
