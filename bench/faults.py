#!/usr/bin/python3
"""What network faults cost, measured through the real binary against tests/fault_server.py.

    /usr/bin/python3 bench/faults.py --binary build/release/materializer/materializer \
        [--old-binary OTHER] [--mb 50] [--out build/bench-faults]

For each binary given (e.g. the current one and one built from an older commit):
  reset90   a package of --mb MB whose first response is reset after 90% of its bytes:
            bytes the server sent in all, and how many of them were sent twice
  stall1    the same package stalling (connection open, silent) once, after 50% of its bytes,
            with the default --stall-timeout: seconds until it is in the cache
  stallN    every response stalling after 10% of the file (issue 11's "336 s" case: every
            attempt stalls): seconds until the run gives up
  backlog   40 small packages from a server with listen(1) and a 10 ms accept delay, with the
            default --max-connections-per-host and with 0 (no limit): seconds and the most
            connections open at once
Prints one table; writes OUT/faults.json. Loopback only; every run is bounded by --timeout.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
os.environ.setdefault("MAT_SOURCE_DIR", ROOT)
import harness  # noqa: E402

gf = harness.gen_fixtures


def big_package(out, mb):
    """One .conda holding `mb` MB of incompressible bytes; returns (lock path template, url
    path, size)."""
    pkg = gf.Pkg("bigfault", "1.0", "h0_0", "linux-64", "conda",
                 [gf.f("lib/libbigfault.so", os.urandom(mb << 20), 0o755)])
    blob = gf.build_archive(pkg)
    path = os.path.join(out, "channel", pkg.subdir, pkg.file_name)
    gf.write(path, blob)
    lock = os.path.join(out, "big.yml.in")
    gf.write(lock, gf.conda_lock_text([gf.lock_entry(pkg, blob)]))
    return lock, "/channel/" + pkg.subdir + "/" + pkg.file_name, len(blob)


def run(binary, lock_in, base, work, name, extra=(), timeout=900):
    lock = harness.render_file(lock_in, os.path.join(work, name, "lock.yml"),
                               {"@BASE_URL@": base})
    t0 = time.monotonic()
    try:
        cp = harness.run_materializer(binary, ["prewarm", lock, "--cache-dir",
                                               os.path.join(work, name, "cache"), *extra],
                                      timeout=timeout)
        rc = cp.returncode
    except subprocess.TimeoutExpired:
        rc = "timeout"
    return rc, time.monotonic() - t0


def measure(binary, label, args, work):
    res = {}
    root = os.path.join(args.out, "data")
    lock_in, path, size = args.big
    with harness.FaultServer(root) as srv:
        srv.set_rules({path: [{"reset_after": int(size * 0.9)}]})
        rc, secs = run(binary, lock_in, srv.url + "/channel", work, label + "-reset90")
        sent = sum(r["bytes"] for r in srv.requests(path))
        res["reset90"] = {"rc": rc, "seconds": round(secs, 2), "size": size, "sent": sent,
                          "sent_twice": sent - size, "requests": len(srv.requests(path))}
        for name, rules in (("stall1", [{"stall_after": size // 2}]),
                            ("stallN", [{"stall_after": size // 10, "repeat": True}])):
            srv.reset()
            srv.set_rules({path: rules})
            rc, secs = run(binary, lock_in, srv.url + "/channel", work, f"{label}-{name}",
                           timeout=args.timeout)
            res[name] = {"rc": rc, "seconds": round(secs, 2),
                         "requests": len(srv.requests(path)),
                         "sent": sum(r["bytes"] for r in srv.requests(path))}
    bench_in = os.path.join(args.bench_root, "bench", "locks", "conda-lock.yml.in")
    for cap in ("default", "0"):
        with harness.FaultServer(args.bench_root, backlog=1, accept_delay=0.01) as srv:
            extra = () if cap == "default" else ("--max-connections-per-host", "0")
            if cap == "0" and label == "old":
                extra = ()  # the old binary has no such flag and no cap
            rc, secs = run(binary, bench_in, srv.url + "/bench/channel", work,
                           f"{label}-backlog-{cap}", extra)
            res[f"backlog_cap_{cap}"] = {"rc": rc, "seconds": round(secs, 2),
                                         "max_connections": srv.max_connections}
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", required=True)
    ap.add_argument("--old-binary")
    ap.add_argument("--mb", type=int, default=50)
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "bench-faults"))
    ap.add_argument("--timeout", type=float, default=900, help="seconds per run at most")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    args.big = big_package(os.path.join(args.out, "data"), args.mb)
    args.bench_root = os.path.join(args.out, "bench40")
    if not os.path.isdir(os.path.join(args.bench_root, "bench")):
        gf.gen_bench(args.bench_root, 40)
    results = {}
    for label, binary in (("new", args.binary), ("old", args.old_binary)):
        if binary:
            work = os.path.join(args.out, "work")
            shutil.rmtree(work, ignore_errors=True)  # cold caches
            results[label] = measure(os.path.abspath(binary), label, args, work)
            print(label, json.dumps(results[label], indent=1), flush=True)
    with open(os.path.join(args.out, "faults.json"), "w") as fh:
        json.dump(results, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
