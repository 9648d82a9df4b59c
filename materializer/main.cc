// materializer: lock file → ready-to-run conda environment.
//
//   materializer install LOCKFILE --prefix DIR [selection] [cache] [--jobs N] [--report F]
//   materializer prewarm LOCKFILE [selection] [cache]          # download + verify + extract only
//   materializer cache stats [--json] | verify [--repair] | clean [--all] [--cache-dir DIR]
//
// main() parses the command line, sets process-wide state once (libcurl init, locale for
// archive member names), and hands over to run_install()/run_cache_command(). Exit codes:
// 0 ok, 1 a package (or the cache) failed, 2 usage error or malformed lock.
#include <CLI/CLI.hpp>
#include <clocale>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <new>
#include <string>
#include <vector>

#include "fetch/fetcher.h"
#include "materializer/base/text.h"
#include "materializer/install.h"
#include "materializer/interrupt.h"

namespace {

std::string join_argv(int argc, char** argv) {
  std::string s;
  for (int i = 0; i < argc; ++i) {
    if (i) s += ' ';
    s += argv[i];
  }
  return s;
}

void add_fetch_options(CLI::App* cmd, mat::InstallOptions& o, bool& quiet, int& verbose,
                       std::vector<std::string>& extra_index) {
  cmd->add_option("LOCKFILE", o.lock_path,
                  "conda-lock.yml v1, @EXPLICIT, pixi.lock, pylock.toml, uv.lock, "
                  "requirements.txt (hashed) or poetry.lock")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--platform", o.selection.platform, "conda subdir to install (default: host)");
  cmd->add_option("--environment,-e", o.selection.environment, "pixi.lock environment")
      ->capture_default_str();
  cmd->add_option("--cache-dir", o.cache_dir,
                  "package cache (default: $MATERIALIZER_CACHE_DIR, else "
                  "${XDG_CACHE_HOME:-~/.cache}/materializer)");
  cmd->add_option("--jobs,-j", o.jobs, "worker threads for extract/link (default: all cores)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--max-downloads", o.max_downloads, "transfers in flight")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  // Extraction limits (cache::ExtractLimits; README, "Limits"): defaults far above any real
  // package, far below what a decompression bomb would write.
  cmd->add_option("--max-expanded-size", o.extract_limits.max_expanded_bytes,
                  "most bytes one archive may expand to, decompressed or written (default 32GiB; "
                  "suffixes K, M, G, T: powers of 1024)")
      ->transform(CLI::AsSizeValue(false))
      ->check(CLI::PositiveNumber)
      ->option_text("SIZE");
  cmd->add_option("--max-expansion-ratio", o.extract_limits.max_expansion_ratio,
                  "most bytes one archive may expand to per byte of archive, once past 16MiB "
                  "(default 200)")
      ->check(CLI::PositiveNumber)
      ->option_text("N");
  cmd->add_option("--max-files-per-package", o.extract_limits.max_members,
                  "most members (files, links, directories) one package may hold "
                  "(default 500000)")
      ->check(CLI::PositiveNumber)
      ->option_text("N");
  cmd->add_option("--max-connections-per-host", o.max_connections_per_host,
                  "connections open at once to one server (HTTP/1.1; HTTP/2 multiplexes over "
                  "one); 0: no limit")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--stall-timeout", o.stall_timeout_s,
                  "seconds without a byte after which a download is abandoned and retried "
                  "(resumed where the server allows); 0: never")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--offline", o.offline, "never touch the network: only the cache and file:// URLs");
  cmd->add_flag("--no-stream{false}", o.stream,
                "extract a .conda only once its download has ended (default: the largest one "
                "still downloading is extracted as its bytes arrive)");
  cmd->add_option("--report", o.report_path, "write a JSON report of the run to this file");
  cmd->add_option("--trace", o.trace_path,
                  "write a Chrome trace-event timeline (Perfetto, chrome://tracing) to this file");
  cmd->add_option("--ca-bundle", o.ca_bundle, "CA certificates (PEM) for TLS; else $SSL_CERT_FILE");
  cmd->add_option("--python", o.python_path,
                  "interpreter the wheels are for (X.Y, tags, shebang); default: the conda "
                  "python of the lock or prefix");
  cmd->add_option("--python-version", o.python_version,
                  "X.Y for noarch: python packages and wheels (default: the lock's python)");
  cmd->add_option("--index-url,-i", o.index.index_urls,
                  "package index (Simple API) for requirements.txt / poetry.lock pins; "
                  "overrides the lock's")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  cmd->add_option("--extra-index-url", extra_index, "additional package index (repeatable)");
  cmd->add_option("--find-links,-f", o.index.find_links,
                  "HTML page or directory with wheels (repeatable)");
  cmd->add_option("--extra", o.extras,
                  "pylock.toml / uv.lock extra to select (repeatable; uv.lock: the projects' "
                  "optional extras, default none)");
  cmd->add_option("--group", o.groups,
                  "pylock.toml / uv.lock dependency group to select (repeatable; default: "
                  "pylock's default-groups, uv's \"dev\")");
  cmd->add_option("--allow-file-urls", o.allow_file_urls,
                  "folder whose files file:// URLs and local paths may name (repeatable; "
                  "default: only the lock's own folder)");
  cmd->add_option("--max-lock-size", o.max_lock_bytes,
                  "refuse lock files larger than this (bytes, or with a unit: 64MiB)")
      ->transform(CLI::AsSizeValue(false))
      ->default_str("16MiB");
  cmd->add_flag("--dry-run", o.dry_run,
                "print what would be installed (wheels chosen, cache hits) and stop");
  cmd->add_flag("-q,--quiet", quiet, "no progress output");
  cmd->add_flag("-v,--verbose", verbose, "one line per package");
}

}  // namespace

int main(int argc, char** argv) {
  // UTF-8 member names in archives are converted with the C locale's charset by libarchive.
  std::setlocale(LC_ALL, "C.UTF-8");
  // SIGINT/SIGTERM: stop within a second, say so, exit 130/143 (interrupt.h). First thing, so
  // that the window in which a signal still kills the process silently is only exec's.
  mat::install_interrupt_handlers();
  // libzip converts each zip member's DOS time with mktime(), and with TZ unset glibc stats
  // /etc/localtime on every call (~1.6 stats per wheel member: 5.7k for the bench's wheels).
  // Naming the same file in TZ lets glibc load it once; local time stays the system's.
  if (!std::getenv("TZ")) ::setenv("TZ", ":/etc/localtime", 0);
  try {
    mat::fetch::global_init();
    CLI::App app{"materializer: turn a lock file into a ready-to-run conda environment, fast"};
    app.require_subcommand(1);
    app.set_version_flag("--version", "materializer 0.1.0");

    mat::InstallOptions opts;
    opts.selection.platform = mat::host_platform();
    opts.command_line = join_argv(argc, argv);
    bool quiet = false;
    int verbose = 0;
    std::vector<std::string> extra_index;
    std::string link_mode = "auto";

    CLI::App* install = app.add_subcommand("install", "materialize a lock file into a prefix");
    add_fetch_options(install, opts, quiet, verbose, extra_index);
    install->add_option("--prefix,-p", opts.prefix, "target environment directory")->required();
    install->add_flag("--force", opts.force,
                      "reinstall even if the prefix is already materialized from this lock");
    install->add_flag("--compile", opts.compile,
                      "write .pyc files for the installed wheels (parallel compileall)");
    install->add_option("--link-mode", link_mode, "auto, hardlink, reflink or copy")
        ->check(CLI::IsMember({"auto", "hardlink", "reflink", "copy"}))
        ->capture_default_str();

    CLI::App* prewarm =
        app.add_subcommand("prewarm", "download, verify and extract into the cache; no prefix");
    add_fetch_options(prewarm, opts, quiet, verbose, extra_index);

    CLI::App* cache = app.add_subcommand("cache", "inspect or maintain the package cache");
    cache->require_subcommand(1);
    std::string cache_dir;
    bool all = false, json = false, repair = false;
    for (const char* name : {"stats", "verify", "clean"}) {
      CLI::App* sub = cache->add_subcommand(name, std::string(name) + " the cache");
      sub->add_option("--cache-dir", cache_dir, "package cache directory");
      if (std::string(name) == "clean") {
        sub->add_flag("--all", all, "remove every entry, not only temporary files");
      }
      if (std::string(name) == "stats") sub->add_flag("--json", json, "machine-readable output");
      if (std::string(name) == "verify") {
        sub->add_flag("--repair", repair,
                      "repair each damaged entry: extract it afresh from its archive, fetch it "
                      "again from its recorded URL, or remove it");
      }
    }

    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      int rc = app.exit(e);
      return rc == 0 ? 0 : 2;
    }

    opts.selection.extras = opts.extras;  // uv.lock picks its packages by them
    opts.selection.groups = opts.groups;
    opts.verbosity = quiet ? 0 : 1 + (verbose > 0 ? 1 : 0);
    opts.extra_index_urls = extra_index;
    if (link_mode == "hardlink") opts.link_mode = mat::LinkMode::kHardlink;
    if (link_mode == "reflink") opts.link_mode = mat::LinkMode::kReflink;
    if (link_mode == "copy") opts.link_mode = mat::LinkMode::kCopy;

    if (*install || *prewarm) {
      if (*prewarm) opts.prefix.clear();
      return mat::run_install(opts);
    }
    for (CLI::App* sub : cache->get_subcommands()) {
      return mat::run_cache_command(sub->get_name(), cache_dir, all, json, repair);
    }
    return 2;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", mat::clip_message(e.what()).c_str());
    return 1;
  }
}
