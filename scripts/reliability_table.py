#!/usr/bin/python3
"""The README's "Reliability and security" table, produced by running the suite that proves it.

    scripts/reliability_table.py                 # run the hostile/fault/kill/concurrency tests
    scripts/reliability_table.py --soak          # the soak: 400 kills (MAT_KILL_SOAK) and every
                                                 # fuzz target for 150 s (about 1.5 hours)
    scripts/reliability_table.py --ledger FILE   # only tabulate a ledger written earlier

It runs the CTest tests of tests/bad and the fault/kill/concurrency files of tests/e2e against a
release build with MAT_LEDGER set (tests/harness.py then appends one JSON line per test: outcome,
subtests, runs of the binary), runs the fuzz targets when the fuzz build exists, and watches the
file system: every regular file created or changed during the run outside the tests' temporary
directories and the build tree is listed (a write outside the targets would show there even if a
test forgot to look). Prints a Markdown table; exit status 1 when any test failed or anything was
written outside.
"""

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Test files -> the class of hostile input or fault they try, in table order. A file the map
# does not know still gets its own row, named after the file.
CLASSES = [
    ("bad.test_prefix_escape", "Hostile packages: writes outside the prefix (symlink chains, "
                               "script and record names, conda-meta members)"),
    ("bad.test_zip_consistency", "Archives read two ways giving two trees (hidden zip entries)"),
    ("bad.test_bad_extract", "Archive bombs, lying paths.json, expansion limits"),
    ("bad.test_cache_trust", "Caches others could change (owners, modes, planted links)"),
    ("bad.test_bad_locks", "Hostile locks (nesting, duplicates, bad UTF-8, file:// URLs, "
                           "nothing selected, sizes)"),
    ("bad.test_bad_inputs", "Malformed packages and locks (digests, escapes, missing fields)"),
    ("bad.test_bad_wheels", "Malformed and hostile wheels (RECORD, zip slip, names)"),
    ("bad.test_messages", "Huge echoed values, odd credentials, hints naming real commands"),
    ("e2e.test_network_faults", "Network faults (5xx/429, resets, short bodies, stalls, wrong "
                                "bytes, HTML pages, redirect loops, small backlog)"),
    ("bad.test_killed", "SIGKILL at seeded random moments of every phase"),
    ("bad.test_interrupted", "SIGINT/SIGTERM at every phase, stalled downloads, lock waits"),
    ("bad.test_disk_full", "Disk full and read-only targets (prefix and cache)"),
    ("e2e.test_concurrent", "Many processes, one cache (8 at once, lock-order deadlock)"),
    ("e2e.test_cache_repair", "Damaged cache entries repaired per entry (cache verify --repair)"),
    ("e2e.test_md5_index", "md5 and sha256 locks sharing entries; lying md5 claims"),
    ("e2e.test_noop_options", "Every result-changing option reinstalls (the no-op stamp)"),
]
FILE_PATTERN = (r"^(bad\..*|e2e\.test_network_faults|e2e\.test_concurrent|e2e\.test_cache_repair|"
                r"e2e\.test_md5_index|e2e\.test_noop_options)$")

# Where the suite may write: its temporary directories, the build, Python's byte code.
WATCH_ROOTS = ["/etc", "/usr", "/opt", "/root", "/home", "/var", "/srv", "/boot"]
WATCH_EXCLUDE = [r"/__pycache__/", r"^/var/tmp/", r"^/var/cache/", r"^/var/log/",
                 r"^/var/lib/(apt|dpkg|systemd|dhcp)/", r"^/root/\.cache/", r"^/root/\.npm/"]


def newer_files(since, excludes):
    """Regular files and symlinks under WATCH_ROOTS changed after `since` (seconds)."""
    found = []
    pats = [re.compile(p) for p in WATCH_EXCLUDE] + [re.compile("^" + re.escape(e))
                                                     for e in excludes]
    for top in WATCH_ROOTS:
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = [d for d in dirnames
                           if not os.path.ismount(os.path.join(dirpath, d))]
            for name in filenames:
                p = os.path.join(dirpath, name)
                try:
                    st = os.lstat(p)
                except OSError:
                    continue
                if max(st.st_mtime, st.st_ctime) >= since and not any(x.search(p) for x in pats):
                    found.append(p)
    return found


def run_fuzz(soak):
    """Executions per fuzz target from scripts/fuzz.sh (its summary lines: TARGET ok|FAIL N
    execs ...): the CI minute, or an hour in all with --soak."""
    script = os.path.join(ROOT, "scripts", "fuzz.sh")
    if not os.path.exists(script):
        return None
    cmd = [script] + (["--long", "150"] if soak else [])
    cp = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                        text=True, errors="replace")
    runs = {}
    for line in cp.stdout.splitlines():
        m = re.match(r"^(\S+)\s+(ok|FAIL)\s+(\d+) execs", line)
        if m:
            runs[m.group(1)] = int(m.group(3))
    return {"ok": cp.returncode == 0, "runs": runs, "tail": cp.stdout[-3000:]}


def tabulate(records, fuzz, outside):
    by_file = collections.OrderedDict()
    for r in records:
        by_file.setdefault(r["file"], []).append(r)
    names = dict(CLASSES)
    order = [f for f, _ in CLASSES if f in by_file] + sorted(f for f in by_file
                                                            if f not in names)
    lines = ["| Class | Cases (subtests) | Runs of the binary | Outcome |",
             "|---|---:|---:|---|"]
    total_cases = total_runs = failed = 0
    for f in order:
        rs = by_file[f]
        bad = [r for r in rs if r["outcome"] in ("fail", "error")]
        skipped = [r for r in rs if r["outcome"] == "skip"]
        cases = len(rs) - len(skipped)
        subtests = sum(r["subtests"] for r in rs)
        runs = sum(r["runs"] for r in rs)
        total_cases += cases
        total_runs += runs
        failed += len(bad)
        outcome = ("all passed" if not bad else
                   f"**{len(bad)} FAILED**: " + ", ".join(r["test"] for r in bad))
        if skipped:
            outcome += f" ({len(skipped)} skipped)"
        sub = f" ({subtests})" if subtests else ""
        lines.append(f"| {names.get(f, f)} (`{f.split('.', 1)[1]}.py`) | {cases}{sub} | "
                     f"{runs} | {outcome} |")
    if fuzz is not None:
        execs = sum(fuzz["runs"].values())
        outcome = "no crash" if fuzz["ok"] else "**crash or error** (see scripts/fuzz.sh)"
        lines.append(f"| Fuzzing: {len(fuzz['runs'])} libFuzzer targets (`scripts/fuzz.sh`) | "
                     f"{execs:,} executions | — | {outcome} |")
    lines.append("")
    lines.append(f"Totals: {total_cases} cases, {total_runs} runs of the binary, "
                 f"{failed} failed; files written outside the tests' own directories: "
                 f"{len(outside) if outside is not None else 'not watched'}.")
    return "\n".join(lines), failed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build", "release"))
    ap.add_argument("--ledger", help="tabulate this ledger without running anything")
    ap.add_argument("--soak", action="store_true", help="the soak: 400 kills, 150 s per fuzz target")
    ap.add_argument("--no-fuzz", action="store_true")
    ap.add_argument("-j", "--jobs", default="2")
    ap.add_argument("--only", default=FILE_PATTERN, help="CTest -R regex of the test files")
    args = ap.parse_args()

    outside = None
    fuzz = None
    if args.ledger:
        ledger = args.ledger
    else:
        ledger = tempfile.mktemp(prefix="mat-ledger-", suffix=".jsonl")
        env = dict(os.environ, MAT_LEDGER=ledger)
        if args.soak:
            env.setdefault("MAT_KILL_SOAK", "400")
        since = time.time() - 1
        subprocess.run(["ctest", "--test-dir", args.build, "-R", args.only, "-j", args.jobs,
                        "--output-on-failure"], env=env, check=False)
        if not args.no_fuzz:
            fuzz = run_fuzz(args.soak)
        outside = newer_files(since, [os.path.realpath(args.build), ROOT, ledger])
    records = []
    if os.path.exists(ledger):
        with open(ledger, encoding="utf-8") as f:
            records = [json.loads(line) for line in f if line.strip()]
    records = [r for r in records if re.match(args.only, r["file"])]
    table, failed = tabulate(records, fuzz, outside)
    print(table)
    if outside:
        print("\nWritten outside the tests' directories during the run:")
        for p in outside[:50]:
            print("  " + p)
    if fuzz is not None and not fuzz["ok"]:
        print("\nscripts/fuzz.sh:\n" + fuzz["tail"])
    sys.exit(1 if failed or outside or (fuzz is not None and not fuzz["ok"]) else 0)


if __name__ == "__main__":
    main()
