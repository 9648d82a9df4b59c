// probe_interpreter(): run the interpreter once (posix_spawn, no shell, stdin from /dev/null)
// with a script that prints one JSON object, then build the target from what it reports.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "materializer/base/json.h"
#include "materializer/pypi.h"

extern char** environ;

namespace mat::pypi {
namespace {

// Works on every CPython 3 (no f-strings needed, none used). -I isolates it from PYTHON* variables
// and the user's site-packages, so a stray sitecustomize cannot print first; -S skips the site
// module, and only os, sys and json are imported: 6.7 ms of interpreter start-up against 16 ms
// with site, platform and sysconfig (hyperfine). Same answers: platform.python_version() is
// sys.version's first word, platform.machine() is uname's machine, and a free-threaded build
// (sysconfig's Py_GIL_DISABLED) has "t" in sys.abiflags.
constexpr const char* kProbeScript = R"PY(
import json, os, sys
try:
    libc = os.confstr('CS_GNU_LIBC_VERSION') or ''
except (AttributeError, ValueError, OSError):
    libc = ''
mac = ''
if sys.platform == 'darwin':
    import platform
    mac = platform.mac_ver()[0]
print(json.dumps({
    'version': list(sys.version_info[:3]),
    'full_version': sys.version.split()[0],
    'implementation': sys.implementation.name,
    'gil_disabled': 't' in getattr(sys, 'abiflags', ''),
    'libc': libc,
    'machine': os.uname().machine,
    'sys_platform': sys.platform,
    'mac_ver': mac,
}))
)PY";

// Output beyond this is not a probe answer; stop reading rather than buffer it.
constexpr size_t kMaxOutput = 64 * 1024;
// A python answers in well under a second; this bounds a wrong binary that waits forever.
constexpr int kTimeoutMs = 30'000;

struct Output {
  int exit_status = 0;  // waitpid() status
  std::string out, err;
  bool timed_out = false;
};

void close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

// Reads both pipes until EOF, the size cap or the deadline; then reaps the child (killing it
// first when it overstayed).
Output collect(pid_t pid, int out_fd, int err_fd) {
  Output o;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kTimeoutMs);
  int fds[2] = {out_fd, err_fd};
  std::string* bufs[2] = {&o.out, &o.err};
  while (fds[0] >= 0 || fds[1] >= 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      o.timed_out = true;
      break;
    }
    pollfd p[2] = {{fds[0], POLLIN, 0}, {fds[1], POLLIN, 0}};
    int n = ::poll(p, 2, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i] < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[4096];
      ssize_t got = ::read(fds[i], buf, sizeof buf);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0 || bufs[i]->size() > kMaxOutput) {
        close_fd(fds[i]);
        continue;
      }
      bufs[i]->append(buf, static_cast<size_t>(got));
    }
  }
  close_fd(fds[0]);
  close_fd(fds[1]);
  if (o.timed_out) ::kill(pid, SIGKILL);
  while (::waitpid(pid, &o.exit_status, 0) < 0 && errno == EINTR) {
  }
  return o;
}

Result<Output> run_probe(const std::string& path) {
  int out_pipe[2], err_pipe[2];
  // O_CLOEXEC: children spawned concurrently by other threads must not inherit our pipes.
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) return ErrnoStatus(path + ": pipe", errno);
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    int e = errno;
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    return ErrnoStatus(path + ": pipe", e);
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);
  std::string arg0 = path;
  std::string isolated = "-I", no_site = "-S", dash_c = "-c", script = kProbeScript;
  char* argv[] = {arg0.data(), isolated.data(), no_site.data(), dash_c.data(), script.data(),
                  nullptr};
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, path.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  if (rc != 0) {
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    // The file exists (checked by the caller), so ENOENT here means a script whose #! line
    // names a missing program: still "not a python" rather than "not found".
    return InvalidInput(path + ": cannot run it: " + std::strerror(rc));
  }
  return collect(pid, out_pipe[0], err_pipe[0]);
}

std::string platform_subdir(const std::string& sys_platform, const std::string& machine) {
  if (sys_platform.rfind("linux", 0) == 0) {
    if (machine == "x86_64") return "linux-64";
    if (machine == "aarch64" || machine == "arm64") return "linux-aarch64";
    if (machine == "ppc64le" || machine == "s390x") return "linux-" + machine;
  } else if (sys_platform == "darwin") {
    if (machine == "x86_64") return "osx-64";
    if (machine == "arm64") return "osx-arm64";
  } else if (sys_platform == "win32") {
    if (machine == "AMD64") return "win-64";
    if (machine == "ARM64") return "win-arm64";
  }
  return "";
}

std::string first_line(const std::string& s) {
  std::string line = s.substr(0, s.find('\n'));
  return line.size() > 200 ? line.substr(0, 200) + "..." : line;
}

std::string str_field(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace

Result<TargetPython> probe_interpreter(const std::string& python_path) {
  std::error_code ec;
  std::string path = std::filesystem::absolute(python_path, ec).string();
  if (ec || python_path.empty()) return NotFound("'" + python_path + "': no such interpreter");
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    int e = errno;
    if (e == ENOENT || e == ENOTDIR) return NotFound(path + ": no such interpreter");
    return ErrnoStatus(path, e);
  }
  if (!S_ISREG(st.st_mode)) return InvalidInput(path + ": not a regular file");
  MAT_ASSIGN_OR_RETURN(Output o, run_probe(path));
  auto not_python = [&](const std::string& why) {
    return InvalidInput(path + ": not a usable CPython 3 interpreter: " + why);
  };
  if (o.timed_out) return not_python("no answer within 30 s");
  if (!WIFEXITED(o.exit_status) || WEXITSTATUS(o.exit_status) != 0) {
    std::string why = WIFEXITED(o.exit_status)
                          ? "exit status " + std::to_string(WEXITSTATUS(o.exit_status))
                          : "killed by signal " + std::to_string(WTERMSIG(o.exit_status));
    if (!o.err.empty()) why += " (" + first_line(o.err) + ")";
    return not_python(why);
  }
  // The probe prints ~300 bytes; 1 MiB bounds what a broken or hostile "python" can make us
  // hold.
  Result<nlohmann::json> parsed =
      parse_json(o.out, "probe output", DocLimits{int64_t{1} << 20}, Code::kInvalidInput);
  const nlohmann::json j = parsed.ok() ? std::move(parsed).value() : nlohmann::json();
  auto ver = j.is_object() ? j.find("version") : j.end();
  if (!j.is_object() || ver == j.end() || !ver->is_array() || ver->size() != 3 ||
      !(*ver)[0].is_number_unsigned() || !(*ver)[1].is_number_unsigned()) {
    return not_python("unexpected probe output '" + first_line(o.out) + "'");
  }
  std::string xy =
      std::to_string((*ver)[0].get<uint64_t>()) + "." + std::to_string((*ver)[1].get<uint64_t>());
  std::string impl = str_field(j, "implementation");
  if (impl != "cpython") return not_python("implementation '" + impl + "' (CPython only)");
  auto gil = j.find("gil_disabled");
  bool free_threaded = gil != j.end() && gil->is_boolean() && gil->get<bool>();
  std::string machine = str_field(j, "machine"), sys_platform = str_field(j, "sys_platform");
  std::string subdir = platform_subdir(sys_platform, machine);
  if (subdir.empty()) {
    return not_python("unsupported platform " + sys_platform + "/" + machine);
  }
  // "glibc 2.36" -> "2.36"; musl and others report nothing: linux_<arch> tags only.
  std::string os_version = "none";
  std::string libc = str_field(j, "libc");
  if (libc.rfind("glibc ", 0) == 0) os_version = libc.substr(6);
  if (sys_platform == "darwin") os_version = str_field(j, "mac_ver");
  if (sys_platform == "win32") os_version = "";
  return make_target(xy + (free_threaded ? "t" : ""), str_field(j, "full_version"), subdir, path,
                     os_version);
}

}  // namespace mat::pypi
