#!/usr/bin/env python3
"""End-to-end startup benchmark: cold and warm installs of a generated channel.

    /usr/bin/python3 bench/startup.py --binary build/release/materializer/materializer \
        [--packages 100] [--reps 3] [--server nginx|http|file] [--out build/bench]

Generates (deterministically) a channel of N conda packages (~20% .tar.bz2) with
scripts/gen_fixtures.py, serves it from 127.0.0.1 (nginx over HTTPS/HTTP2 by default, with a
throwaway CA), and measures, in one run, several repetitions each:
  cold   empty cache, new prefix
  warm   cache filled, new prefix
  --jobs 1 cold, to show the scaling of the CPU stages
plus, for reference on the same data, `cp -al` of an installed prefix (the least a warm install
can cost) and extracting every archive with the command-line tools. Prints a table of medians and
writes OUT/startup.json.
"""
import argparse
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

import gen_fixtures  # noqa: E402
import harness  # noqa: E402


def timed(cmd, env=None):
    t0 = time.perf_counter()
    cp = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t0
    if cp.returncode != 0:
        raise SystemExit(f"failed ({cp.returncode}): {' '.join(cmd)}\n{cp.stderr[-3000:]}")
    return dt


def peak_rss_kb(cmd, env=None):
    cp = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], env=env, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True)
    try:
        return int(cp.stderr.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", required=True)
    ap.add_argument("--packages", type=int, default=100)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--server", choices=("nginx", "http", "file"), default="nginx")
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "bench"))
    args = ap.parse_args()
    binary = os.path.abspath(args.binary)
    out = os.path.abspath(args.out)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)

    t0 = time.perf_counter()
    manifest = gen_fixtures.generate(os.path.join(out, "fixtures"), bench=args.packages)
    bench = os.path.join(out, "fixtures", "bench")
    channel = os.path.join(bench, "channel")
    print(f"generated {args.packages} packages ({manifest['bench']['bytes'] / 1e6:.1f} MB) "
          f"in {time.perf_counter() - t0:.1f} s")

    server = None
    extra = []
    if args.server == "nginx":
        server = harness.Nginx(channel)
        server.start()
        base = server.url
        extra = ["--ca-bundle", server.ca_file]
    elif args.server == "http":
        server = harness.HttpServer(channel)
        server.start()
        base = server.url
    else:
        base = "file://" + channel
    lock = os.path.join(out, "conda-lock.yml")
    harness.render_file(os.path.join(bench, "locks", "conda-lock.yml.in"), lock,
                        {"@BASE_URL@": base})
    env = harness.clean_env()

    def install(cache, prefix, jobs=None, report=None):
        cmd = [binary, "install", lock, "--prefix", prefix, "--cache-dir", cache, "-q", *extra]
        if jobs:
            cmd += ["--jobs", str(jobs)]
        if report:
            cmd += ["--report", report]
        return cmd

    results = {}

    def record(name, seconds):
        results.setdefault(name, []).append(seconds)

    try:
        for rep in range(args.reps):
            cache = os.path.join(out, f"cache-{rep}")
            for d in (cache, os.path.join(out, "cold"), os.path.join(out, "warm")):
                shutil.rmtree(d, ignore_errors=True)
            record("cold", timed(install(cache, os.path.join(out, "cold"),
                                         report=os.path.join(out, f"cold-{rep}.json")), env))
            record("warm", timed(install(cache, os.path.join(out, "warm")), env))
            shutil.rmtree(os.path.join(out, "cp-al"), ignore_errors=True)
            record("cp -al (warm floor)",
                   timed(["cp", "-al", os.path.join(out, "cold"), os.path.join(out, "cp-al")]))
            shutil.rmtree(cache, ignore_errors=True)
            shutil.rmtree(os.path.join(out, "j1"), ignore_errors=True)
            record("cold --jobs 1", timed(install(cache, os.path.join(out, "j1"), jobs=1), env))
            shutil.rmtree(cache, ignore_errors=True)
        cache = os.path.join(out, "cache-rss")
        shutil.rmtree(os.path.join(out, "rss"), ignore_errors=True)
        rss = peak_rss_kb(install(cache, os.path.join(out, "rss")), env)
    finally:
        if server:
            server.stop()

    base_cold = statistics.median(results["cold"])
    rows = []
    for name, vals in results.items():
        med = statistics.median(vals)
        rows.append({"scenario": name, "median_s": med, "runs": vals,
                     "ratio_to_cold": med / base_cold})
    print(f"\n{'scenario':<24}{'median':>10}{'ratio/cold':>12}   runs")
    for r in rows:
        runs = " ".join(f"{v:.3f}" for v in r["runs"])
        print(f"{r['scenario']:<24}{r['median_s']:>9.3f}s{r['ratio_to_cold']:>12.2f}   {runs}")
    if rss:
        print(f"peak RSS (cold install): {rss / 1024:.1f} MB")
    summary = {"packages": args.packages, "bytes": manifest["bench"]["bytes"],
               "server": args.server, "reps": args.reps, "rows": rows,
               "peak_rss_kb": rss, "nproc": os.cpu_count()}
    with open(os.path.join(out, "startup.json"), "w") as fh:
        json.dump(summary, fh, indent=2)
    print(f"\nwrote {os.path.join(out, 'startup.json')}")


if __name__ == "__main__":
    main()
