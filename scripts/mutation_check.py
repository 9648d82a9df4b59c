#!/usr/bin/python3
"""Mutation check of the critical checks: does the suite catch what it claims to?

    nice -n 10 /usr/bin/python3 scripts/mutation_check.py [--build-dir build/release]
        [--mutants tests/mutation/mutants.json] [--only ID ...] [--no-baseline] [--keep-going]

Each mutant in the list (tests/mutation/mutants.json) is one small realistic bug in a check that
matters (download digest, path escape, RECORD, publish, cache verify, trust, zip layout,
redaction, the no-op stamp, lock duplicates, the file:// policy, ...), written as a patch: the
file, the exact old text (which must occur once) and the new text. One at a time, the script
applies it, rebuilds only the mutant's targets (ninja, ccache), runs the mutant's tests (only the
binaries and test files that cover that check), and restores the file, whatever happens
(Ctrl-C included). A mutant is CAUGHT when one of its tests fails, SURVIVED when all pass,
STALE when its old text is not found exactly once (the code moved: update the entry; never
counted as caught), BUILD-ERROR when it does not compile (not counted). First, unless
--no-baseline, every test command runs once on the unmutated tree and must pass, so a test that
fails anyway cannot count as a catch.

Prints one line per mutant, then "caught C/T" and the survivors and stale entries by name.
Exit status: 0 when every mutant was caught, 1 otherwise, 2 on a usage or baseline error.
Not part of the default suite (a run rebuilds ~30 times: ~20-40 min on 2 busy cores).
"""

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(cmd, timeout, log):
    t0 = time.monotonic()
    try:
        cp = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            timeout=timeout)
        ok, out = cp.returncode == 0, cp.stdout
    except subprocess.TimeoutExpired as e:
        ok, out = False, (e.stdout or b"") + b"\n[timeout]\n"
    if log is not None:
        log.write(f"$ {' '.join(cmd)}  ({time.monotonic() - t0:.1f} s, "
                  f"{'ok' if ok else 'FAILED'})\n".encode())
        log.write(out[-20000:])
        log.flush()
    return ok


def test_command(spec, build_dir):
    """'gtest:<binary under build dir>:<filter>' or 'py:<file>[:<Class.test>]' -> argv."""
    kind, _, rest = spec.partition(":")
    if kind == "gtest":
        binary, _, filt = rest.partition(":")
        return [os.path.join(build_dir, binary), f"--gtest_filter={filt or '*'}",
                "--gtest_brief=1"]
    if kind == "py":
        path, _, name = rest.partition(":")
        argv = ["/usr/bin/python3", os.path.join(ROOT, path), "--binary",
                os.path.join(build_dir, "materializer", "materializer")]
        return argv + ([name] if name else [])
    raise ValueError(f"unknown test form {spec!r}")


def build(build_dir, targets, log):
    return run(["cmake", "--build", build_dir, "--target", *targets], 3600, log)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build", "release"))
    ap.add_argument("--mutants", default=os.path.join(ROOT, "tests", "mutation", "mutants.json"))
    ap.add_argument("--only", nargs="*", default=None, help="mutant ids to run")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--log", default=None, help="build and test output (default: BUILD/mutation.log)")
    ap.add_argument("--test-timeout", type=int, default=900)
    args = ap.parse_args(argv)
    build_dir = os.path.abspath(args.build_dir)
    os.environ.setdefault("MAT_SOURCE_DIR", ROOT)
    os.environ.setdefault("MAT_BINARY_DIR", build_dir)
    for var, val in (("CCACHE_BASEDIR", "/work"),):
        os.environ.setdefault(var, val)
    with open(args.mutants, encoding="utf-8") as fh:
        mutants = json.load(fh)["mutants"]
    if args.only:
        unknown = set(args.only) - {m["id"] for m in mutants}
        if unknown:
            print(f"unknown mutant ids: {sorted(unknown)}", file=sys.stderr)
            return 2
        mutants = [m for m in mutants if m["id"] in args.only]
    ids = [m["id"] for m in mutants]
    if len(set(ids)) != len(ids):
        print("duplicate mutant ids", file=sys.stderr)
        return 2
    log_path = args.log or os.path.join(build_dir, "mutation.log")
    log = open(log_path, "wb")
    print(f"{len(mutants)} mutants; build and test output in {log_path}", flush=True)

    all_targets = sorted({t for m in mutants for t in m["targets"]})
    if not build(build_dir, all_targets, log):
        print("error: the unmutated tree does not build", file=sys.stderr)
        return 2
    if not args.no_baseline:
        specs = sorted({t for m in mutants for t in m["tests"]})
        failing = [s for s in specs
                   if not run(test_command(s, build_dir), args.test_timeout, log)]
        if failing:
            print("error: these tests fail on the unmutated tree (fix them first):\n  "
                  + "\n  ".join(failing), file=sys.stderr)
            return 2
        print(f"baseline: {len(specs)} test commands pass unmutated", flush=True)

    results = {}
    t_all = time.monotonic()
    for m in mutants:
        path = os.path.join(ROOT, m["file"])
        with open(path, encoding="utf-8") as fh:
            original = fh.read()
        n = original.count(m["old"])
        if n != 1:
            results[m["id"]] = "STALE"
            print(f"  STALE        {m['id']}: old text found {n} times in {m['file']}", flush=True)
            continue
        t0 = time.monotonic()
        caught_by = None
        log.write(f"\n===== {m['id']} ({m['file']}) =====\n".encode())
        try:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(original.replace(m["old"], m["new"], 1))
            if not build(build_dir, m["targets"], log):
                verdict = "BUILD-ERROR"
            else:
                verdict = "SURVIVED"
                for spec in m["tests"]:
                    if not run(test_command(spec, build_dir), args.test_timeout, log):
                        verdict = "CAUGHT"
                        caught_by = spec
                        break
        finally:
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(original)
        results[m["id"]] = verdict
        by = f" by {caught_by}" if verdict == "CAUGHT" else ""
        print(f"  {verdict:<12} {m['id']}{by} ({time.monotonic() - t0:.0f} s)", flush=True)

    # Leave the build matching the restored sources.
    build(build_dir, all_targets, log)
    counted = [i for i, v in results.items() if v in ("CAUGHT", "SURVIVED")]
    caught = [i for i in counted if results[i] == "CAUGHT"]
    survivors = [i for i in counted if results[i] == "SURVIVED"]
    stale = [i for i, v in results.items() if v == "STALE"]
    broken = [i for i, v in results.items() if v == "BUILD-ERROR"]
    print(f"caught {len(caught)}/{len(counted)} ({time.monotonic() - t_all:.0f} s)")
    if survivors:
        print("survived: " + ", ".join(survivors))
    if stale:
        print("stale (old text not found once; update tests/mutation/mutants.json): "
              + ", ".join(stale))
    if broken:
        print("did not build (fix the entry): " + ", ".join(broken))
    return 0 if not survivors and not stale and not broken else 1


if __name__ == "__main__":
    sys.exit(main())
