// The target interpreter and its compatible wheel tags, in exactly the order of
// packaging.tags.sys_tags() (packaging 24.x) for CPython: cpython_tags() then
// compatible_tags(interpreter="cpXY"), each over the platform list of _linux_platforms(),
// mac_platforms() or the single Windows platform.
#include <charconv>
#include <cstdio>

#include "materializer/pypi.h"

#if defined(__GLIBC__)
#include <gnu/libc-version.h>
#endif

namespace mat::pypi {
namespace {

enum class Os { kLinux, kMac, kWindows };

struct Platform {
  Os os;
  std::string arch;     // wheel-tag spelling: "x86_64", "aarch64", "arm64", "amd64"
  std::string machine;  // platform.machine(): "x86_64", "aarch64", "arm64", "AMD64"
};

std::optional<Platform> platform_of(const std::string& subdir) {
  if (subdir == "linux-64") return Platform{Os::kLinux, "x86_64", "x86_64"};
  if (subdir == "linux-aarch64") return Platform{Os::kLinux, "aarch64", "aarch64"};
  if (subdir == "linux-ppc64le") return Platform{Os::kLinux, "ppc64le", "ppc64le"};
  if (subdir == "linux-s390x") return Platform{Os::kLinux, "s390x", "s390x"};
  if (subdir == "osx-64") return Platform{Os::kMac, "x86_64", "x86_64"};
  if (subdir == "osx-arm64") return Platform{Os::kMac, "arm64", "arm64"};
  if (subdir == "win-64") return Platform{Os::kWindows, "amd64", "AMD64"};
  if (subdir == "win-arm64") return Platform{Os::kWindows, "arm64", "ARM64"};
  return std::nullopt;
}

bool parse_int(std::string_view s, int* out) {
  if (s.empty() || s.size() > 6) return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && end == s.data() + s.size() && *out >= 0;
}

// "A.B" (or "A.B.C", the rest ignored) into two ints.
bool parse_major_minor(std::string_view s, int* major, int* minor) {
  size_t dot = s.find('.');
  if (dot == std::string_view::npos) return false;
  std::string_view rest = s.substr(dot + 1);
  size_t dot2 = rest.find('.');
  if (dot2 != std::string_view::npos) rest = rest.substr(0, dot2);
  return parse_int(s.substr(0, dot), major) && parse_int(rest, minor);
}

std::string host_glibc() {
#if defined(__GLIBC__)
  return gnu_get_libc_version();
#else
  return "";
#endif
}

// packaging._manylinux.platform_tags() for one glibc 2.x: manylinux_2_N from the target's
// minor down to the architecture's floor (2.5 on x86, 2.17 elsewhere), each legacy alias right
// after the version it names; then _linux_platforms() adds linux_<arch>.
std::vector<std::string> linux_platforms(const std::string& arch, int glibc_minor) {
  std::vector<std::string> out;
  int floor = (arch == "x86_64" || arch == "i686") ? 5 : 17;
  for (int minor = glibc_minor; minor >= floor; --minor) {
    out.push_back("manylinux_2_" + std::to_string(minor) + "_" + arch);
    if (minor == 17) out.push_back("manylinux2014_" + arch);
    if (minor == 12) out.push_back("manylinux2010_" + arch);
    if (minor == 5) out.push_back("manylinux1_" + arch);
  }
  out.push_back("linux_" + arch);
  return out;
}

// packaging.tags._mac_binary_formats.
std::vector<std::string> mac_binary_formats(int major, int minor, const std::string& arch) {
  std::vector<std::string> formats = {arch};
  if (arch == "x86_64") {
    if (major == 10 && minor < 4) return {};
    formats.insert(formats.end(), {"intel", "fat64", "fat32"});
  }
  formats.push_back("universal2");
  if (arch == "x86_64") formats.push_back("universal");
  return formats;
}

// packaging.tags.mac_platforms(version, arch).
std::vector<std::string> mac_platforms(int major, int minor, const std::string& arch) {
  std::vector<std::string> out;
  auto add = [&](int maj, int min, const std::vector<std::string>& formats) {
    for (const std::string& f : formats) {
      out.push_back("macosx_" + std::to_string(maj) + "_" + std::to_string(min) + "_" + f);
    }
  };
  if (major == 10) {
    for (int m = minor; m >= 0; --m) add(10, m, mac_binary_formats(10, m, arch));
  } else {
    for (int maj = major; maj > 10; --maj) add(maj, 0, mac_binary_formats(maj, 0, arch));
    // macOS 11+ runs 10.x x86_64 binaries; arm64 only exists in universal2 builds for 10.x.
    for (int m = 16; m > 3; --m) {
      add(10, m,
          arch == "x86_64" ? mac_binary_formats(10, m, arch)
                           : std::vector<std::string>{"universal2"});
    }
  }
  return out;
}

// packaging.tags.cpython_tags() followed by compatible_tags(interpreter="cpXY").
std::vector<std::string> python_tags(int minor, const std::string& abi, bool free_threaded,
                                     const std::vector<std::string>& platforms) {
  std::vector<std::string> tags;
  const std::string interp = "cp3" + std::to_string(minor);
  auto over_platforms = [&](const std::string& py, const std::string& abi_tag) {
    for (const std::string& p : platforms) tags.push_back(py + "-" + abi_tag + "-" + p);
  };
  bool abi3 = minor >= 2 && !free_threaded;  // packaging._abi3_applies
  over_platforms(interp, abi);
  if (abi3) over_platforms(interp, "abi3");
  over_platforms(interp, "none");
  if (abi3) {
    for (int m = minor - 1; m >= 2; --m) over_platforms("cp3" + std::to_string(m), "abi3");
  }
  // _py_interpreter_range: py3Y, py3, py3(Y-1) ... py30.
  std::vector<std::string> py_range = {"py3" + std::to_string(minor), "py3"};
  for (int m = minor - 1; m >= 0; --m) py_range.push_back("py3" + std::to_string(m));
  for (const std::string& py : py_range) over_platforms(py, "none");
  tags.push_back(interp + "-none-any");
  for (const std::string& py : py_range) tags.push_back(py + "-none-any");
  return tags;
}

void set_markers(TargetPython& t, const Platform& p) {
  static const char* const kSysPlatform[] = {"linux", "darwin", "win32"};
  static const char* const kSystem[] = {"Linux", "Darwin", "Windows"};
  int os = static_cast<int>(p.os);
  t.markers = {
      {"os_name", p.os == Os::kWindows ? "nt" : "posix"},
      {"sys_platform", kSysPlatform[os]},
      {"platform_machine", p.machine},
      {"platform_system", kSystem[os]},
      {"platform_release", ""},
      {"platform_version", ""},
      {"python_version", t.version},
      {"python_full_version", t.full_version},
      {"implementation_name", t.implementation},
      {"implementation_version", t.full_version},
      {"platform_python_implementation", "CPython"},
  };
}

}  // namespace

Result<TargetPython> make_target(const std::string& version_xy, const std::string& full_version,
                                 const std::string& platform, const std::string& executable,
                                 const std::string& glibc) {
  auto bad = [&](const std::string& why) {
    return InvalidInput("python " + version_xy + " on " + platform + ": " + why);
  };
  std::string xy = version_xy;
  bool free_threaded = !xy.empty() && xy.back() == 't';
  if (free_threaded) xy.pop_back();
  int major = 0, minor = 0;
  if (xy.find('.') != xy.rfind('.') || !parse_major_minor(xy, &major, &minor)) {
    return bad("expected a version like 3.11 (or 3.13t for free-threaded)");
  }
  if (major != 3) return bad("only CPython 3 is supported");
  if (free_threaded && minor < 13) return bad("free-threaded builds start at 3.13");
  std::optional<Platform> plat = platform_of(platform);
  if (!plat) {
    return bad(
        "unsupported platform (linux-64, linux-aarch64, linux-ppc64le, linux-s390x, "
        "osx-64, osx-arm64, win-64, win-arm64)");
  }

  TargetPython t;
  t.version = xy;
  t.full_version = full_version.empty() ? xy + ".0" : full_version;
  int fmaj = 0, fmin = 0;
  if (!parse_major_minor(t.full_version, &fmaj, &fmin) || fmaj != major || fmin != minor) {
    return bad("full version '" + full_version + "' does not start with " + xy);
  }
  t.platform = platform;
  t.executable = executable;
  // CPython before 3.8 always carried the pymalloc 'm' ABI flag (packaging._cpython_abis).
  t.abi = "cp3" + std::to_string(minor) + (free_threaded ? "t" : (minor < 8 ? "m" : ""));

  std::vector<std::string> platforms;
  if (plat->os == Os::kLinux) {
    t.glibc = glibc.empty() ? host_glibc() : (glibc == "none" ? "" : glibc);
    int gmaj = 0, gmin = 0;
    if (!t.glibc.empty() && (!parse_major_minor(t.glibc, &gmaj, &gmin) || gmaj != 2)) {
      return bad("glibc '" + t.glibc + "' is not a 2.x version");
    }
    if (!t.glibc.empty()) {
      t.glibc = "2." + std::to_string(gmin);
      platforms = linux_platforms(plat->arch, gmin);
    } else {
      platforms = {"linux_" + plat->arch};
    }
  } else if (plat->os == Os::kMac) {
    t.macos = glibc.empty() ? "11.0" : glibc;
    int mmaj = 0, mmin = 0;
    if (!parse_major_minor(t.macos, &mmaj, &mmin) || mmaj < 10) {
      return bad("macOS version '" + t.macos + "' is not like 11.0 or 10.15");
    }
    t.macos = std::to_string(mmaj) + "." + std::to_string(mmin);
    platforms = mac_platforms(mmaj, mmin, plat->arch);
  } else {
    platforms = {"win_" + plat->arch};
  }
  t.tags = python_tags(minor, t.abi, free_threaded, platforms);
  set_markers(t, *plat);
  return t;
}

}  // namespace mat::pypi
