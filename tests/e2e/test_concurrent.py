#!/usr/bin/python3
"""Processes sharing one empty cache, started together: all succeed, each archive is fetched
exactly once (the per-entry lock: the others wait for the one producing it), nothing deadlocks,
and the cache stays consistent. Eight installs and prewarms over overlapping locks, the server
holding every archive back a while, show that the losers really waited on the lock."""

import fcntl
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import harness  # noqa: E402


class ConcurrentInstallTest(harness.MaterializerTestCase):

    def run_pair(self, lock_name, slow=False):
        cache = self.path("cache")
        with harness.HttpServer(self.fx.root) as srv:
            if slow:
                # Hold every response a little so the two runs really overlap.
                def slow_hook(handler):
                    time.sleep(0.3)
                    return False
                for pkg in self.fx.expected(lock_name)["packages"]:
                    srv.hooks["/channel/" + pkg["url_path"]] = slow_hook
            lock = self.fx.render_lock(lock_name, srv.url + "/channel", self.tmp)
            procs = [harness.start_materializer(
                self.binary, ["install", lock, "--prefix", self.path(f"env{i}"),
                              "--cache-dir", cache, "--report", self.path(f"r{i}.json"), "-v"])
                for i in (1, 2)]
            outs = [p.communicate(timeout=300) for p in procs]
            for p, (out, err) in zip(procs, outs):
                self.assertEqual(p.returncode, 0, f"stdout:\n{out}\nstderr:\n{err}")
            for pkg in self.fx.expected(lock_name)["packages"]:
                n = srv.count("/" + pkg["url_path"])
                self.assertEqual(n, 1, f"{pkg['file_name']} fetched {n} times")
            if slow:
                # Every response takes 0.3 s, so the second run finds entries the first is
                # still producing: it must wait for them (and then find them cached).
                err = "".join(e for _, e in outs)
                self.assertIn("waiting for another process to cache it", err)
        for i in (1, 2):
            self.assertPrefixMatches(self.path(f"env{i}"), lock_name)
        cp = self.mat("cache", "verify", "--cache-dir", cache)
        self.assertExit(cp, 0)
        self.assertEqual(harness.cache_tmp(cache), [])
        n = len(self.fx.manifest["packages"])
        self.assertEqual(len(harness.cache_archives(cache)), n)
        self.assertEqual(len(harness.cache_trees(cache)), n)

    def test_two_installs_same_cache(self):
        self.run_pair("conda-lock.yml")

    def test_two_installs_same_cache_slow_server(self):
        self.run_pair("explicit.txt", slow=True)

    def test_eight_processes_overlapping_locks(self):
        """4 installs of the whole @EXPLICIT lock (sha256 and md5 lines) and 4 prewarms of
        overlapping two-thirds of it. The body of one archive (python's, an md5 line) is held
        until 4 s after the last process started, so every other process finds its entry lock
        taken and must block on it until the one download ends."""
        cache = self.path("cache")
        exp = self.fx.expected("explicit.txt")["packages"]
        held_pkg = next(p for p in exp if p["name"] == "python")
        self.assertEqual(held_pkg["locked_by"], "md5")
        gate = threading.Event()
        with harness.HttpServer(self.fx.root) as srv:
            def held(handler):
                gate.wait(30)
                return False
            srv.hooks["/channel/" + held_pkg["url_path"]] = held
            full = self.fx.render_lock("explicit.txt", srv.url + "/channel", self.tmp)
            with open(full) as fh:
                lines = fh.read().splitlines()
            head = [ln for ln in lines if not ln.startswith("http")]
            urls = [ln for ln in lines if ln.startswith("http")]
            self.assertEqual(len(urls), len(exp))
            runs = []
            for k in range(8):
                report = self.path(f"r{k}.json")
                if k % 2 == 0:
                    args = ["install", full, "--prefix", self.path(f"env{k}")]
                else:
                    sub = self.path(f"sub{k}", "explicit.txt")
                    os.makedirs(os.path.dirname(sub))
                    with open(sub, "w") as fh:
                        fh.write("\n".join(head + [u for i, u in enumerate(urls)
                                                   if (i + k) % 3 != 0]) + "\n")
                    args = ["prewarm", sub]
                runs.append((report, harness.start_materializer(
                    self.binary, args + ["--cache-dir", cache, "--report", report])))
            timer = threading.Timer(4.0, gate.set)
            timer.start()
            try:
                for report, p in runs:
                    out, err = p.communicate(timeout=180)   # no deadlock
                    self.assertEqual(p.returncode, 0, f"stdout:\n{out}\nstderr:\n{err}")
            finally:
                timer.cancel()
                gate.set()
            for pkg in exp:
                n = srv.count("/" + pkg["url_path"])
                self.assertEqual(n, 1, f"{pkg['file_name']} fetched {n} times")
        reports = [harness.read_json(r) for r, _ in runs]
        for pkg in exp:
            mine = [p for r in reports for p in r["packages"]
                    if p["url"].endswith(pkg["file_name"])]
            self.assertEqual(sum(1 for p in mine if p["downloaded"]), 1, pkg["name"])
            for p in mine:
                self.assertEqual(p["key"], pkg["key"])
                self.assertTrue(p["downloaded"] or p["cache_hit"], p)
            if pkg is held_pkg:
                # The losers found the entry lock taken and blocked on it (lock_wait_seconds is
                # reported only then) instead of downloading. Under ASan on a loaded machine a
                # process may start only after the held download ended (a plain cache hit), and
                # how long one blocked depends on its own other entries: so at least one
                # blocked, and no duration is asserted.
                losers = [p for p in mine if not p["downloaded"]]
                self.assertGreaterEqual(len(losers), 6)
                waited = [p for p in losers if p.get("lock_wait_seconds", 0) > 0]
                self.assertTrue(waited, f"no process blocked on the entry lock: {losers}")
        for k in range(0, 8, 2):
            self.assertPrefixMatches(self.path(f"env{k}"), "explicit.txt")
        self.assertExit(self.mat("cache", "verify", "--cache-dir", cache), 0)
        self.assertEqual(harness.cache_tmp(cache), [])
        self.assertEqual(len(harness.cache_archives(cache)), len(exp))
        self.assertEqual(len(harness.cache_trees(cache)), len(exp))

    def test_takeover_after_a_failed_producer_does_not_deadlock(self):
        """A third process holds the locks of entries A and B, then goes away without producing
        them; one waiter lists A before B, the other B before A. Waiting in lock-file order,
        each took its first entry and waited for the other's for ever."""
        cache = self.path("cache")
        self.assertExit(self.mat("cache", "stats", "--cache-dir", cache), 0)
        exp = self.fx.expected("explicit.txt")["packages"]
        a, b = [p for p in exp if p["locked_by"] == "sha256"][:2]
        fds = []
        for p in (a, b):
            fd = os.open(os.path.join(cache, "v1", "locks", p["key"] + ".lock"),
                         os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
            fds.append(fd)
        procs = []
        try:
            with harness.HttpServer(self.fx.root) as srv:
                full = self.fx.render_lock("explicit.txt", srv.url + "/channel", self.tmp)
                with open(full) as fh:
                    lines = fh.read().splitlines()
                head = [ln for ln in lines if not ln.startswith("http")]
                line = {p["name"]: next(ln for ln in lines if p["file_name"] in ln)
                        for p in (a, b)}
                for k, order in enumerate(((a, b), (b, a))):
                    lock = self.path(f"l{k}", "explicit.txt")
                    os.makedirs(os.path.dirname(lock))
                    with open(lock, "w") as fh:
                        fh.write("\n".join(head + [line[p["name"]] for p in order]) + "\n")
                    procs.append(harness.start_materializer(
                        self.binary, ["prewarm", lock, "--cache-dir", cache]))
                time.sleep(1.5)   # both are waiting for their first entry
                for fd in fds:
                    os.close(fd)   # the producer is gone, nothing produced
                fds = []
                for p in procs:
                    try:
                        out, err = p.communicate(timeout=60)
                    except subprocess.TimeoutExpired:
                        self.fail("deadlock: two processes wait on each other's entry lock")
                    self.assertEqual(p.returncode, 0, f"stdout:\n{out}\nstderr:\n{err}")
                for p in (a, b):
                    self.assertEqual(srv.count("/" + p["url_path"]), 1, p["name"])
        finally:
            for fd in fds:
                os.close(fd)
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.communicate()
        self.assertExit(self.mat("cache", "verify", "--cache-dir", cache), 0)

    def test_install_and_prewarm_same_cache(self):
        cache = self.path("cache")
        with harness.HttpServer(self.fx.root) as srv:
            lock = self.fx.render_lock("pixi.lock", srv.url + "/channel", self.tmp)
            a = harness.start_materializer(self.binary, ["prewarm", lock, "--cache-dir", cache])
            b = harness.start_materializer(self.binary, ["install", lock, "--prefix",
                                                         self.path("env"), "--cache-dir", cache])
            for p in (a, b):
                out, err = p.communicate(timeout=300)
                self.assertEqual(p.returncode, 0, f"stdout:\n{out}\nstderr:\n{err}")
        self.assertPrefixMatches(self.path("env"), "pixi.lock")
        self.assertExit(self.mat("cache", "verify", "--cache-dir", cache), 0)


if __name__ == "__main__":
    harness.main()
