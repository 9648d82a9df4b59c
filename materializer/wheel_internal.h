// Internals of wheel installation, shared by wheel_scripts.cc (text kernels: entry points,
// launchers, shebangs, metadata), wheel_plan.cc (what goes where) and wheel_install.cc (the
// driver). Not part of the public API; wheel_test.cc includes it to reach the pieces.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cache/wheel_record.h"
#include "materializer/base/status.h"
#include "materializer/wheel.h"

namespace mat::wheel_internal {

// ---- text kernels (wheel_scripts.cc) ----

// One console_scripts / gui_scripts entry: "name = module:attr [extras]".
struct EntryPoint {
  std::string name, module, attr;  // attr may be dotted ("Cls.method")
};
struct EntryPoints {
  std::vector<EntryPoint> console, gui;  // file order; a repeated name keeps its first
                                         // position and its last value (Python dict)
};

// entry_points.txt, read like configparser / importlib.metadata: "[section]" headers, then
// "key = value" (or "key: value") lines; whitespace around keys and values is stripped, case is
// kept, full-line comments start with '#' or ';', blank lines are skipped, indented lines
// continue the previous value. Only console_scripts and gui_scripts are kept. A value without
// ":attr" is kCorrupt (pip: "Invalid script entry point ... A callable suffix is required").
Result<EntryPoints> parse_entry_points(std::string_view text);

// pip's get_console_script_specs: "pip" becomes pip, pip3, pipX.Y (other pipN[.M] entries are
// dropped) and "easy_install" becomes easy_install, easy_install-X.Y, for `python_version` "X.Y".
// The ENSUREPIP_OPTIONS variants are not modelled (pip's default when it is unset).
std::vector<EntryPoint> console_script_specs(const std::vector<EntryPoint>& console,
                                             const std::string& python_version);

// distlib's ScriptMaker shebang (pip 23) for `executable`, newline included: "#!<exe>\n", or,
// when the executable (quoted if it contains spaces) makes the line longer than 127 bytes or
// has a space, the sh/Python polyglot
//   #!/bin/sh\n'''exec' <exe> "$0" "$@"\n' '''\n
std::string script_shebang(const std::string& executable);

// distlib's launcher: script_shebang + SCRIPT_TEMPLATE, byte for byte.
std::string launcher_script(const std::string& executable, const EntryPoint& ep);

// pip's fix_script for .data/scripts files: if the first line starts with "#!python" (which
// covers "#!pythonw" and "#!python3.8 -u"), the whole first line becomes script_shebang(exe);
// nullopt otherwise (the file is installed unchanged).
std::optional<std::string> fix_script(std::string_view data, const std::string& executable);

// PEP 503: lowercase, runs of "-_." become "-".
std::string normalize_name(std::string_view name);
// PEP 440 canonical form for comparison: lowercase, leading 'v' dropped, separators and
// spellings normalised (alpha->a, c/pre/preview->rc, rev/r->post, "-N"->".postN"), leading
// zeros dropped, trailing ".0" release components dropped, local "+a-b_c"->"+a.b.c". Strings
// that do not parse are returned lowercased with a leading 'v' dropped.
std::string normalize_version(std::string_view version);

// The first value of each RFC 822 header (case-insensitive names) in METADATA / WHEEL.
std::optional<std::string> metadata_field(std::string_view text, std::string_view field);

// "foo_bar-1.0-py3-none-any.whl" -> {"foo_bar", "1.0"}; nullopt if not "name-version-..."
struct WheelFileName {
  std::string name, version;
};
std::optional<WheelFileName> parse_wheel_file_name(std::string_view file_name);

// os.path.relpath for two '/'-separated paths relative to the same root (the prefix):
// ("bin/x", "lib/python3.11/site-packages") -> "../../../bin/x".
std::string relative_to(const std::string& path, const std::string& dir);

// ---- planning (wheel_plan.cc) ----

// pip's scheme for `--prefix PREFIX` (paths relative to the prefix).
struct Scheme {
  std::string purelib, platlib, headers, scripts, data;
};
Scheme prefix_scheme(const std::string& python_version, const std::string& dist_name);

struct FileAction {
  std::string target;      // prefix-relative
  std::string src;         // tree-relative; "" for content written from `data`
  std::string data;        // kWrite content
  mode_t mode = 0644;      // kWrite mode
  std::string record_src;  // the wheel RECORD path this installs ("" for generated files)
  bool changed = false;    // rewritten (a #!python script): RECORD gets the new hash
  bool write() const { return src.empty(); }
};

struct WheelPlan {
  std::string label;                     // file name for messages
  std::string dist_info;                 // "six-1.17.0.dist-info"
  std::string lib_dir;                   // site-packages, prefix-relative
  std::vector<cache::RecordRow> record;  // the wheel's own RECORD rows
  std::vector<FileAction> files;         // from the wheel, in tree order; then generated
  size_t generated_begin = 0;            // files[generated_begin..] are generated (pip's
                                         // "generated" list: scripts, INSTALLER, REQUESTED)
};

struct PlanOptions {
  std::string python_version;  // "3.11"
  std::string executable;      // for shebangs
};

// Reads the tree's *.dist-info (METADATA, WHEEL, RECORD, entry_points.txt), checks METADATA
// Name/Version against the file name, and lists every file to write with its prefix target.
// Errors: kCorrupt (bad metadata, mismatch, unknown .data scheme), kIo / kNotFound.
Result<WheelPlan> plan_wheel(const WheelInput& in, const PlanOptions& opts);

// Every regular file below `dir`, '/'-separated and sorted. Errors: kNotFound / kIo.
Result<std::vector<std::string>> list_tree_files(const std::string& dir);

// The installed RECORD rows (RECORD's own included, "…/RECORD,,"): pip's
// get_csv_rows_for_installed, then sorted() as pip writes them. Rows of the wheel's RECORD keep
// their hash and size (the cache verified them) with paths moved to where the file went
// (relative to lib_dir: "../../../bin/x"); rewritten scripts are rehashed; generated files
// (launchers, INSTALLER, REQUESTED) follow; `extra` (the .pyc files compileall wrote) is
// added before sorting.
std::vector<cache::RecordRow> installed_record_rows(const WheelPlan& plan,
                                                    const std::vector<cache::RecordRow>& extra);

}  // namespace mat::wheel_internal
