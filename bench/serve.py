#!/usr/bin/python3
"""Serves a startup-benchmark workload with nginx (HTTPS + HTTP/2, throwaway CA) until
interrupted, and writes its rendered locks, so one install can be profiled by hand:

    /usr/bin/python3 bench/serve.py [--out build/bench] [--scale full] [--limit-rate 20m] &
    perf record -g -- build/release/materializer/materializer install \
        build/bench/serve/locks/conda-lock.yml --prefix /tmp/p --cache-dir /tmp/c \
        --ca-bundle build/bench/serve/ca.pem

The workload must exist (run bench/startup.py once at that scale, or pass --regen).
"""
import argparse
import os
import shutil
import signal
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

import harness  # noqa: E402
import startup  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="build/bench")
    ap.add_argument("--scale", choices=("small", "full"), default="full")
    ap.add_argument("--regen", action="store_true")
    ap.add_argument("--limit-rate", metavar="RATE",
                    help="cap each response at RATE bytes/s (nginx syntax: 20m), to stand in for "
                         "a remote server: the install becomes bandwidth-bound")
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    wl_root, _ = startup.ensure_workload(out, args.scale, args.regen)
    dest = os.path.join(out, "serve")
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(os.path.join(dest, "locks"))
    tempfile.tempdir = dest
    server = harness.Nginx(os.path.join(wl_root, "serve"), limit_rate=args.limit_rate)
    try:
        server.start()
        shutil.copy(server.ca_file, os.path.join(dest, "ca.pem"))
        for name in ("conda-lock.yml", "pylock.toml", "mixed.conda-lock.yml"):
            with open(os.path.join(wl_root, "locks", name + ".in"), encoding="utf-8") as fh:
                text = fh.read().replace("@BASE_URL@", server.url)
            with open(os.path.join(dest, "locks", name), "w", encoding="utf-8") as fh:
                fh.write(text)
        print(f"serving {wl_root} at {server.url}; locks in {dest}/locks, CA {dest}/ca.pem",
              flush=True)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        server.cleanup()


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    main()
