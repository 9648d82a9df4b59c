// The one validator for values from a package, a lock or a server that become part of a path:
// package name, version and build (conda-meta/<name>-<version>-<build>.json), entry-point and
// script names (bin/<name>), *.dist-info and headers directory names, package member paths.
//
// A path component is acceptable when it is
//   - not empty, not "." and not "..",
//   - free of '/', NUL and control characters (U+0000-U+001F, U+007F),
//   - valid UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF),
//   - at most kMaxComponentBytes bytes (NAME_MAX on Linux file systems).
// A relative path is '/'-separated acceptable components (no leading '/', no empty component,
// so no "a//b" and no trailing '/'), at most kMaxRelativePathBytes bytes in all.
//
// The check is lexical: it says a value cannot name anything but one entry below the directory
// it is joined to. Symlinks already on disk are the business of beneath.h, which resolves
// every write at the moment it is made. Pure functions; thread-safe.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "materializer/base/status.h"

namespace mat {

inline constexpr size_t kMaxComponentBytes = 255;
inline constexpr size_t kMaxRelativePathBytes = 4095;

// True if `s` is well-formed UTF-8 (RFC 3629: shortest forms, no surrogates, <= U+10FFFF).
bool valid_utf8(std::string_view s);

// Why `s` cannot be one path component ("contains '/'", "is '..'", ...), or nullptr if it can.
const char* path_component_problem(std::string_view s);
// Why `s` cannot be a relative path of such components, or nullptr if it can.
const char* relative_path_problem(std::string_view s);

// `s` for a message: control characters and invalid bytes as \xNN, at most 80 bytes shown.
std::string shown_name(std::string_view s);

// Status forms, with `code` (kCorrupt for package metadata, kInvalidInput for a lock or the
// command line): "<what> '<shown>' is not a valid file name: <problem>" and
// "<what> '<shown>' is not a valid relative path: <problem>".
Status check_path_component(std::string_view s, std::string_view what, Code code = Code::kCorrupt);
Status check_relative_path(std::string_view s, std::string_view what, Code code = Code::kCorrupt);

}  // namespace mat
