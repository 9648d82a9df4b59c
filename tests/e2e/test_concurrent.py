#!/usr/bin/python3
"""Two installs sharing one empty cache, started together: both succeed, each archive is fetched
exactly once (the per-entry cache lock: whoever holds it produces the entry, the other waits for
it and finds it cached; with a slow server the runs overlap and the loser is seen waiting), and
the cache stays consistent."""

import os
import sys
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
