#!/usr/bin/python3
"""Wheel install benchmark: materializer against pip and python-installer on the same wheels.

    /usr/bin/python3 bench/wheels.py --binary build/release/materializer/materializer \
        [--reps 3] [--out build/bench] [--server nginx|http|file] [--skip-installer-cli]

Generates (deterministically) the --bench wheel set of scripts/gen_wheels.py (~40 wheels: three
of 6-18 MB with 500+ files, the rest 10-200 KB with 5-50 files), serves it from 127.0.0.1
(nginx over HTTPS + HTTP/2 by default, throwaway CA) and measures, --reps times each (medians):

  materializer cold     empty cache, new prefix (download + verify + unpack + install)
  materializer warm     cache filled, new prefix
  materializer warm --compile   the same, plus .pyc files (parallel compileall)
  pip                   pip install --no-deps --no-index --no-compile --prefix P *.whl
                        (Debian pip 23, upstream posix_prefix scheme, files already local:
                        pip's best case, no network)
  pip (compile)         the same with pip's default bytecode compilation
  installer (API)       python-installer's install() for every wheel in one process
  installer (CLI)       `python3 -m installer --no-compile-bytecode` once per wheel
                        (one process per wheel, as a build system would call it)

Only the two "compile" rows write bytecode. Prints a table (ratio = median / materializer cold) and writes
OUT/wheels.json; the work directory is OUT/wheels/ (OUT itself is left alone, so the conda
benchmark's OUT/startup.json survives).
"""
import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import gen_wheels  # noqa: E402
import harness  # noqa: E402

INSTALLER_API = r"""
import sys, sysconfig
from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.sources import WheelFile
prefix = sys.argv[1]
paths = sysconfig.get_paths("posix_prefix", vars={"base": prefix, "platbase": prefix,
                                                  "installed_base": prefix,
                                                  "installed_platbase": prefix})
scheme = {"purelib": paths["purelib"], "platlib": paths["platlib"],
          "headers": paths["include"], "scripts": paths["scripts"], "data": paths["data"]}
dest = SchemeDictionaryDestination(scheme, interpreter=sys.executable, script_kind="posix")
for whl in sys.argv[2:]:
    with WheelFile.open(whl) as source:
        install(source, dest, {"INSTALLER": b"installer-api\n"})
"""


def timed(cmd, env=None):
    t0 = time.perf_counter()
    cp = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t0
    if cp.returncode != 0:
        raise SystemExit(f"failed ({cp.returncode}): {' '.join(cmd[:6])} ...\n"
                         f"{cp.stdout[-2000:]}\n{cp.stderr[-3000:]}")
    return dt


def timed_many(cmds, env=None):
    t0 = time.perf_counter()
    for cmd in cmds:
        cp = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
        if cp.returncode != 0:
            raise SystemExit(f"failed: {' '.join(cmd)}\n{cp.stderr[-3000:]}")
    return time.perf_counter() - t0


def count_files(prefix):
    return sum(len(files) for _, _, files in os.walk(prefix))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", required=True)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--server", choices=("nginx", "http", "file"), default="nginx")
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "bench"))
    ap.add_argument("--skip-installer-cli", action="store_true",
                    help="skip the one-process-per-wheel python-installer run")
    ap.add_argument("--no-materializer", action="store_true",
                    help="only the reference installers (to try the script without a binary "
                         "that installs wheels)")
    args = ap.parse_args()
    binary = os.path.abspath(args.binary)
    out = os.path.abspath(args.out)
    work = os.path.join(out, "wheels")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)

    t0 = time.perf_counter()
    manifest = gen_wheels.generate(os.path.join(work, "fixtures"), bench=True)
    bench = manifest["bench"]
    root = os.path.join(work, "fixtures", "bench")
    wheels = sorted(glob.glob(os.path.join(root, "files", "*.whl")))
    print(f"generated {bench['wheels']} wheels ({bench['bytes'] / 1e6:.1f} MB, "
          f"{bench['files']} files) in {time.perf_counter() - t0:.1f} s")

    server, extra = None, []
    if args.server == "nginx":
        server = harness.Nginx(root)
        server.start()
        base = server.url
        extra = ["--ca-bundle", server.ca_file]
    elif args.server == "http":
        server = harness.HttpServer(root)
        server.start()
        base = server.url
    else:
        base = "file://" + root
    lock = os.path.join(work, "pylock.toml")
    harness.render_file(os.path.join(root, "locks", "pylock.toml.in"), lock,
                        {"@BASE_URL@": base})
    env = harness.clean_env()
    pip_env = harness.pip_env()

    def mat(cache, prefix, report=None):
        cmd = [binary, "install", lock, "--prefix", prefix, "--cache-dir", cache, "-q",
               "--python", harness.SYSTEM_PYTHON, *extra]
        return cmd + (["--report", report] if report else [])

    results, files_installed = {}, {}

    def record(name, seconds, prefix=None):
        results.setdefault(name, []).append(seconds)
        if prefix:
            files_installed[name] = count_files(prefix)

    def fresh(*names):
        for n in names:
            shutil.rmtree(os.path.join(work, n), ignore_errors=True)
        return [os.path.join(work, n) for n in names]

    try:
        for rep in range(args.reps):
            if not args.no_materializer:
                cache, cold, warm = fresh("cache", "cold", "warm")
                record("materializer cold", timed(mat(cache, cold, os.path.join(
                    work, f"cold-{rep}.json")), env), cold)
                record("materializer warm", timed(mat(cache, warm), env), warm)
                (warmc,) = fresh("warm-compile")
                record("materializer warm --compile",
                       timed(mat(cache, warmc) + ["--compile"], env), warmc)
            (pp,) = fresh("pip")
            record("pip (local files)", timed(
                [harness.SYSTEM_PYTHON, "-c", harness._PIP_BOOT, "install", "--no-deps",
                 "--no-index", "--no-compile", "--prefix", pp, "--no-warn-script-location",
                 *wheels], pip_env), pp)
            (pc,) = fresh("pip-compile")
            record("pip (local files, compile)", timed(
                [harness.SYSTEM_PYTHON, "-c", harness._PIP_BOOT, "install", "--no-deps",
                 "--no-index", "--prefix", pc, "--no-warn-script-location", *wheels], pip_env),
                pc)
            (ia,) = fresh("installer-api")
            record("installer (API, 1 process)", timed(
                [harness.SYSTEM_PYTHON, "-c", INSTALLER_API, ia, *wheels], pip_env), ia)
            if not args.skip_installer_cli:
                (ic,) = fresh("installer-cli")
                record("installer (CLI, per wheel)", timed_many(
                    [[harness.SYSTEM_PYTHON, "-m", "installer", "--no-compile-bytecode",
                      "--destdir", ic, "--prefix", "/p", w] for w in wheels], pip_env), ic)
    finally:
        if server:
            server.stop()
            if hasattr(server, "cleanup"):
                server.cleanup()

    base_name = "materializer cold" if "materializer cold" in results else "pip (local files)"
    base_med = statistics.median(results[base_name])
    rows = []
    for name, vals in results.items():
        med = statistics.median(vals)
        rows.append({"scenario": name, "median_s": med, "runs": vals,
                     "ratio_to_" + base_name.replace(" ", "_"): med / base_med,
                     "files_installed": files_installed.get(name)})
    print(f"\n{'scenario':<30}{'median':>10}{'x ' + base_name:>22}{'files':>8}   runs")
    for r in rows:
        runs = " ".join(f"{v:.3f}" for v in r["runs"])
        ratio = r["ratio_to_" + base_name.replace(" ", "_")]
        print(f"{r['scenario']:<30}{r['median_s']:>9.3f}s{ratio:>22.2f}"
              f"{r['files_installed'] or 0:>8}   {runs}")
    summary = {"wheels": bench["wheels"], "bytes": bench["bytes"], "files": bench["files"],
               "server": args.server, "reps": args.reps, "baseline": base_name, "rows": rows,
               "nproc": os.cpu_count(), "python": harness.SYSTEM_PYTHON}
    path = os.path.join(out, "wheels.json")
    with open(path, "w") as fh:
        json.dump(summary, fh, indent=2)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
