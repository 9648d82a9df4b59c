#!/usr/bin/python3
"""Issue 11, "Faults it must survive": SIGKILL at any moment. A process killed (no cleanup code
runs) during download, extraction, commit, linking or record writing leaves no corrupt cache
entry and no prefix that looks complete; the next run finishes the job, the prefix then equals
an uninterrupted install (same files, bytes, modes, symlinks, conda-meta records) and no
temporary file is left anywhere in the prefix or in the cache's tmp/.

The soak: MAT_KILL_SOAK kills (default 40, a few tens of seconds; a longer soak is e.g.
`MAT_KILL_SOAK=400 MAT_KILL_SEED=7 /usr/bin/python3 tests/bad/test_killed.py --binary B`),
seeded by MAT_KILL_SEED (default 11), spread over the phases an uninterrupted run's --trace
shows, half of them with a cold cache and half with a warm one (linking only).
"""

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import harness  # noqa: E402

gf = harness.gen_fixtures

# Names materializer gives its temp files: "<name>.tmp-<pid>-<token>" (atomic writes in the
# prefix, cache tmp/), ".materializer-probe-<token>" (the link-mode probe, older versions).
TEMP_NAME = re.compile(r"\.tmp-\d+-[0-9a-f]+|^\.materializer-probe-")


def temp_files(root):
    """Every path under root whose name is one of materializer's temp names."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            if TEMP_NAME.search(name):
                out.append(os.path.relpath(os.path.join(dirpath, name), root))
    return sorted(out)


def snapshot(prefix):
    """{rel: (kind, mode, bytes or link target)} of the prefix. conda-meta/history is reduced
    to its set of '+'/'-' lines (entries carry dates, and a rerun appends one of its own)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(prefix):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, prefix)
            st = os.lstat(full)
            if os.path.islink(full):
                out[rel] = ("link", 0, os.readlink(full))
            elif os.path.isdir(full):
                out[rel] = ("dir", st.st_mode & 0o7777, None)
            elif rel == os.path.join("conda-meta", "history"):
                with open(full, encoding="utf-8") as fh:
                    lines = {ln.strip() for ln in fh if ln[:1] in "+-"}
                out[rel] = ("history", st.st_mode & 0o7777, sorted(lines))
            else:
                with open(full, "rb") as fh:
                    out[rel] = ("file", st.st_mode & 0o7777, fh.read())
    return out


def diff(got, want):
    lines = []
    for rel in sorted(set(got) | set(want)):
        if rel not in got:
            lines.append(f"missing {rel}")
        elif rel not in want:
            lines.append(f"extra {rel}")
        elif got[rel] != want[rel]:
            g, w = got[rel], want[rel]
            what = "kind" if g[0] != w[0] else "mode" if g[1] != w[1] else "content"
            lines.append(f"{rel}: {what} differs ({g[:2]} vs {w[:2]})")
    return lines


def workload(chan):
    """Writes a channel with enough work in every phase to be hit by a kill: a few large
    archives (download, extraction), many small files (linking), a package of 800 files (a
    large conda-meta record). Returns the lock's text with @BASE_URL@ for the channel."""
    pkgs = [p for p in gf.bench_packages(20) if len(p.entries[0].data) < (600 << 10)]
    many = [gf.f(f"share/many/f{j:04d}.txt", f"file {j}\n" * 3) for j in range(800)]
    pkgs.append(gf.Pkg("manyfiles", "1.0", "h0_0", "noarch", "conda", many, noarch="generic"))
    entries = []
    for pkg in pkgs:
        blob = gf.build_archive(pkg)
        gf.write(os.path.join(chan, pkg.subdir, pkg.file_name), blob)
        entries.append(gf.lock_entry(pkg, blob))
    return gf.conda_lock_text(entries)


def windows_from_trace(path, offset):
    """[(phase, start s, end s)] since process start, from an uninterrupted run's trace."""
    with open(path, encoding="utf-8") as fh:
        events = json.load(fh)["traceEvents"]
    spans = {}
    for e in events:
        if e.get("ph") != "X":
            continue
        cat, name = e.get("cat"), e.get("name", "")
        key = None
        if cat == "download":
            key = "download"
        elif cat == "extract":
            key = "extract"
        elif cat == "commit":
            key = "commit"
        elif cat == "stage" and name.startswith("link: "):
            key = name
        if key is None:
            continue
        s, d = e["ts"] / 1e6, e["dur"] / 1e6
        lo, hi = spans.get(key, (s, s + d))
        spans[key] = (min(lo, s), max(hi, s + d))
    return [(k, lo + offset, hi + offset) for k, (lo, hi) in sorted(spans.items())]


class Workload:
    """The soak's channel, served on 127.0.0.1, and two uninterrupted reference installs (cold
    and warm cache, traced): `want` is the prefix they give, the windows where each phase lies."""

    def __init__(self, test):
        self.test = test
        chan = test.path("chan")
        lock_in = test.path("lock.yml.in")
        with open(lock_in, "w", encoding="utf-8") as fh:
            fh.write(workload(chan))
        srv = harness.HttpServer(test.tmp)
        srv.httpd.handle_error = lambda *a: None  # a killed client resets its connections
        srv.start()
        test.addCleanup(srv.stop)
        self.lock = test.path("conda-lock.yml")
        harness.render_file(lock_in, self.lock, {"@BASE_URL@": srv.url + "/chan"})
        # One prefix path and one cache path for every run: both are written into files and
        # records, so the runs are comparable byte for byte.
        self.prefix, self.cache = test.path("env"), test.path("cache")
        self.args = ["install", self.lock, "--prefix", self.prefix, "--cache-dir", self.cache]
        trace = test.path("trace.json")
        self.wall = {False: self.run("--trace", trace)}
        with open(trace, encoding="utf-8") as fh:
            ends = [e["ts"] + e.get("dur", 0) for e in json.load(fh)["traceEvents"]
                    if e.get("ph") == "X"]
        offset = max(0.0, self.wall[False] - max(ends) / 1e6) * 0.5  # process start-up, roughly
        self.cold_windows = windows_from_trace(trace, offset)
        self.want = snapshot(self.prefix)
        test.assertEqual(temp_files(self.prefix), [])
        shutil.rmtree(self.prefix)
        self.wall[True] = self.run("--trace", trace)
        self.warm_windows = [w for w in windows_from_trace(trace, offset)
                             if w[0].startswith("link")]
        test.assertEqual(diff(snapshot(self.prefix), self.want), [])
        phases = sorted({w[0] for w in self.cold_windows})
        for needed in ("download", "extract", "commit", "link: files", "link: records"):
            test.assertIn(needed, phases)

    def run(self, *extra, where=""):
        t0 = time.monotonic()
        cp = self.test.mat(*self.args, *extra)
        self.test.assertEqual(cp.returncode, 0, where + harness.describe(cp))
        return time.monotonic() - t0


class KilledProcessTest(harness.MaterializerTestCase):

    def test_sigkill_during_download_then_rerun(self):
        release = threading.Event()
        started = threading.Event()
        srv = harness.HttpServer(self.fx.root)

        # The largest package trickles: half its bytes, then the server stalls until released.
        big = max(self.fx.manifest["packages"], key=lambda p: p["size"])
        file_name = big["url"].rsplit("/", 1)[1]
        path = "/channel/" + big["subdir"] + "/" + file_name
        with open(os.path.join(self.fx.channel, big["subdir"], file_name), "rb") as fh:
            blob = fh.read()

        def stall(handler):
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(blob)))
            handler.end_headers()
            handler.wfile.write(blob[: len(blob) // 2])
            handler.wfile.flush()
            started.set()
            release.wait(30)
            return True

        srv.hooks[path] = stall
        srv.start()
        try:
            lock = self.fx.render_lock("conda-lock.yml", srv.url + "/channel", self.tmp)
            prefix, cache = self.path("env"), self.path("cache")
            proc = harness.start_materializer(
                self.binary, ["install", lock, "--prefix", prefix, "--cache-dir", cache])
            self.assertTrue(started.wait(30), "the stalled download never started")
            time.sleep(0.3)  # let the other packages finish and extract
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            release.set()

            # Nothing half-written is visible: every published entry verifies.
            cp = self.mat("cache", "verify", "--cache-dir", cache)
            self.assertExit(cp, 0)
            self.assertFalse([e for e in harness.cache_archives(cache)
                              if e.startswith("sha256-" + big["sha256"])],
                             "a partial archive was published")
            # The prefix, if the run got that far, is not complete: no record for every package.
            meta = os.path.join(prefix, "conda-meta")
            records = [f for f in os.listdir(meta) if f.endswith(".json")] \
                if os.path.isdir(meta) else []
            self.assertLess(len(records), len(self.fx.manifest["packages"]))

            # The rerun completes the environment, and leaves no temp files behind.
            del srv.hooks[path]
            cp = self.install(lock, prefix, cache)
            self.assertExit(cp, 0)
            self.assertPrefixMatches(prefix, "conda-lock.yml")
            self.assertFalse(os.path.exists(os.path.join(meta, ".materializer-incomplete")))
            self.assertEqual(harness.cache_tmp(cache), [], "stale temp files were not cleaned")
        finally:
            release.set()
            srv.stop()


class KillSoakTest(harness.MaterializerTestCase):
    """SIGKILL at seeded random moments of every phase; after each kill the next run must
    complete and leave exactly what an uninterrupted install leaves."""

    def test_sigkill_at_random_moments(self):
        kills = int(os.environ.get("MAT_KILL_SOAK", "40"))
        seed = int(os.environ.get("MAT_KILL_SEED", "11"))
        rnd = random.Random(seed)
        w = Workload(self)
        args, prefix, cache, want, wall = w.args, w.prefix, w.cache, w.want, w.wall
        cold_windows, warm_windows = w.cold_windows, w.warm_windows

        def run(cache, *extra, where=""):
            return w.run(*extra, where=where)

        # The machine's speed changes (other jobs): the windows are scaled by how long the last
        # warm rerun took against the reference.
        scale = 1.0
        stats = {"kills": 0, "finished_first": 0, "left_in_prefix": 0, "left_in_cache": 0,
                 "by_phase": {}}
        # Even kills start cold (no cache), odd ones warm: the cache the rerun before completed.
        for k in range(kills):
            use_warm = k % 2 == 1
            windows = warm_windows if use_warm else cold_windows
            phase, lo, hi = windows[(k // 2) % len(windows)]
            lo, hi = lo * scale, hi * scale
            at = rnd.uniform(lo, hi)
            shutil.rmtree(prefix, ignore_errors=True)
            if not use_warm:
                shutil.rmtree(cache, ignore_errors=True)
            where = f"kill {k} ({phase} at {at * 1000:.1f} ms, {'warm' if use_warm else 'cold'})"

            # A run the machine made faster than the reference finishes first: earlier, again.
            for _ in range(3):
                finished = self.kill_at(args, at)
                if not finished:
                    break
                at *= 0.6
                shutil.rmtree(prefix, ignore_errors=True)
                if not use_warm:
                    shutil.rmtree(cache, ignore_errors=True)
            stats["kills"] += 1
            stats["finished_first"] += finished
            stats["by_phase"][phase] = stats["by_phase"].get(phase, 0) + 1
            left = temp_files(prefix) if os.path.isdir(prefix) else []
            stats["left_in_prefix"] += bool(left)
            stats["left_in_cache"] += bool(harness.cache_tmp(cache))
            # Whatever the moment: every published cache entry is whole, and a prefix that is
            # not whole says so (the marker), unless the run got past its last link step.
            cp = self.mat("cache", "verify", "--cache-dir", cache)
            self.assertEqual(cp.returncode, 0, where + harness.describe(cp))
            if not finished:
                self.assertLooksIncompleteOrWhole(prefix, want, where)
            # One rerun in four is killed as well (a kill while cleaning up after a kill).
            if k % 4 == 3:
                self.kill_at(args, rnd.uniform(0, hi))
            took = run(cache, where=where)
            if use_warm and k % 4 != 3:
                scale = min(4.0, max(0.25, took / wall[True]))
            self.assertEqual(diff(snapshot(prefix), want), [], where)
            self.assertEqual(temp_files(prefix), [], where + ": temp files left in the prefix")
            self.assertEqual(harness.cache_tmp(cache), [], where + ": temp files left in tmp/")
        cp = self.mat("cache", "verify", "--cache-dir", cache)
        self.assertExit(cp, 0)
        print(f"\nkill soak (seed {seed}): {json.dumps(stats, sort_keys=True)}", flush=True)
        # The soak must really kill runs midway, not only after they finished.
        self.assertLess(stats["finished_first"], kills // 4, stats)

    def kill_at(self, args, at):
        """Starts materializer, SIGKILLs it `at` seconds later; True if it had exited first."""
        proc = subprocess.Popen([self.binary, *args], env=harness.clean_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t0 = time.monotonic()
        while time.monotonic() - t0 < at and proc.poll() is None:
            time.sleep(min(0.002, max(0.0, at - (time.monotonic() - t0))))
        finished = proc.poll() is not None
        if not finished:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        return finished and proc.returncode == 0

    def assertLooksIncompleteOrWhole(self, prefix, want, where):
        meta = os.path.join(prefix, "conda-meta")
        if not os.path.isdir(meta):
            return
        records = sorted(f for f in os.listdir(meta) if f.endswith(".json"))
        want_records = sorted(os.path.basename(r) for r in want
                              if r.startswith("conda-meta" + os.sep) and r.endswith(".json"))
        if os.path.exists(os.path.join(meta, ".materializer-incomplete")):
            return
        # Killed before its marker: nothing but conda-meta/ and the lock (and temp files) may
        # be there yet; a kill between creating conda-meta/ and the lock leaves conda-meta/ alone.
        if {r for r in snapshot(prefix) if not TEMP_NAME.search(r)} <= {
                "conda-meta", os.path.join("conda-meta", ".materializer-lock")}:
            return
        self.assertEqual(records, want_records,
                         where + ": the prefix is not marked incomplete but lacks records; it "
                         "holds " + repr(sorted(snapshot(prefix))[:20]))
        left = [d for d in diff(snapshot(prefix), want)
                if ".materializer-stamp" not in d and not TEMP_NAME.search(d)]
        self.assertEqual(left, [], where + ": an unmarked prefix differs from a complete one")


if __name__ == "__main__":
    harness.main()
