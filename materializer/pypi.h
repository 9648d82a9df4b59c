// pypi: the Python packaging rules the driver needs to pick and install wheels — the target
// interpreter and its compatible tags (PEP 425 / packaging.tags order), wheel file names
// (PEP 427), PEP 440 version specifiers (requires-python), PEP 508 environment markers and
// PEP 503 name normalisation. No dependency solving: locks already decided.
//
// Everything here is pure computation (no I/O) except probe_interpreter(), which runs the
// given interpreter once. Thread-safe.
#pragma once

#include <functional>
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
  std::string macos;            // osx targets: macOS version the tags assume ("11.0"); else ""
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
//
// `version_xy` "3.13t" asks for the free-threaded ABI (abi "cp313t", no abi3 tags); before 3.8
// the ABI is "cp3Ym". `full_version` "" means X.Y.0. Platforms: linux-64, linux-aarch64,
// linux-ppc64le, linux-s390x (manylinux down to 2.5 on x86_64, 2.17 elsewhere, then
// linux_<arch>), osx-64, osx-arm64 (macosx_* as packaging.tags.mac_platforms), win-64,
// win-arm64. The last argument is the OS version the tags assume: glibc for linux ("" = the
// host's glibc, "none" = not a glibc system: linux_<arch> only), the macOS version for osx
// ("" = "11.0"); ignored on Windows. Errors: kInvalidInput for a malformed version, an
// unsupported platform or a malformed OS version.
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
//
// As pip does, the marker is evaluated once per extra (once with extra == "" when `extras` is
// empty) and holds if any evaluation does; extra names are PEP 503-normalised on both sides.
// Version variables (python_version, python_full_version, implementation_version,
// platform_release) compare as PEP 440 versions when both sides parse, else as text; other
// variables compare as text. PEP 751's set variables work as "'x' in extras" (the given
// extras) and "'g' in dependency_groups" (the given groups). An empty (all-blank) marker is
// true. A missing key in target.markers reads as "".
Result<bool> evaluate_marker(std::string_view marker, const TargetPython& target,
                             const std::vector<std::string>& extras = {},
                             const std::vector<std::string>& groups = {});

// One comparison of a marker, as partially_evaluate_marker() offers it to its caller:
// `variable op 'value'` with the variable's canonical name ("os_name" for "os.name").
struct MarkerComparison {
  std::string variable;
  std::string op;     // "==", "!=", "<", ..., "in", "not in"
  std::string value;  // the quoted literal's contents
};

// Decides some comparisons of a PEP 508 marker and simplifies what is left: `decide` returns
// true/false for a comparison it can settle, nullopt to keep it. Decided comparisons become
// constants that `and` / `or` absorb. Returns the residual marker text, "" when the marker is
// always true, nullopt when it is always false. kInvalidInput for a malformed marker.
//
// `decide` sees comparisons written `variable op 'literal'`, and `'literal' op variable` when
// op is symmetric (==, !=, ===): those come as `variable op 'literal'`. Other reversed forms
// ("'x' in extras", "'3.8' < python_version") are kept as written. If nothing is decided the
// marker comes back verbatim; otherwise the residue is rebuilt from the parse (canonical
// variable names, single quotes unless the literal holds one, nested groups parenthesised).
// An empty (all-blank) marker is true.
Result<std::optional<std::string>> partially_evaluate_marker(
    std::string_view marker,
    const std::function<std::optional<bool>(const MarkerComparison&)>& decide);

}  // namespace mat::pypi
