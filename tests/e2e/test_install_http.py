#!/usr/bin/python3
"""install / prewarm from a loopback http.server: every lock format, offline reinstall from the
cache, prewarm, long prefixes, prefixes with spaces, thread counts, file:// locks."""

import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import harness  # noqa: E402


class InstallHttpTest(harness.MaterializerTestCase):

    def check_report(self, path, lock_name, cache_hit, ok=True):
        report = harness.read_json(path)
        exp = self.fx.expected(lock_name)
        diffs = harness.check_report(report, len(exp["packages"]), ok=ok)
        self.assertEqual(diffs, [], "\n".join(diffs))
        self.assertEqual(report["exit_code"], 0 if ok else 1)
        self.assertEqual(report["lock"]["platform"], "linux-64")
        self.assertTrue(report["lock"]["path"].endswith(lock_name), report["lock"]["path"])
        self.assertGreaterEqual(report["wall_seconds"], 0)
        by_name = {p["name"]: p for p in report["packages"]}
        self.assertEqual(set(by_name), {p["name"] for p in exp["packages"]})
        for pkg in exp["packages"]:
            got = by_name[pkg["name"]]
            self.assertEqual(got["version"], pkg["version"])
            self.assertEqual(got["build"], pkg["build"])
            self.assertEqual(got["key"], pkg["key"], pkg["name"])
            self.assertEqual(got["cache_hit"], cache_hit, pkg["name"])
            self.assertTrue(got["url"].endswith(pkg["file_name"]), got["url"])
            self.assertIn(got["error"], (None, ""), pkg["name"])
            if not cache_hit:
                self.assertEqual(got["bytes"], pkg["size"], pkg["name"])
        total = sum(p["size"] for p in exp["packages"])
        self.assertEqual(report["stages"]["download"]["bytes"], 0 if cache_hit else total)
        return report

    def full_cycle(self, lock_name):
        cache, p1, p2 = self.path("cache"), self.path("env1"), self.path("env2")
        srv = harness.HttpServer(self.fx.root).start()
        try:
            lock = self.fx.render_lock(lock_name, srv.url + "/channel", self.tmp)
            cp = self.install(lock, p1, cache, "--report", self.path("r1.json"))
            self.assertExit(cp, 0)
            for pkg in self.fx.expected(lock_name)["packages"]:
                n = srv.count("/" + pkg["url_path"])
                self.assertTrue(1 <= n <= 2, f"{pkg['file_name']} requested {n} times")
        finally:
            srv.stop()
        self.assertPrefixMatches(p1, lock_name)
        self.assertEntryPointsRun(p1)
        self.check_report(self.path("r1.json"), lock_name, cache_hit=False)
        self.assertEqual(harness.cache_tmp(cache), [])
        keys = {p["key"] for p in self.fx.expected(lock_name)["packages"]}
        self.assertEqual({re.sub(r"\.(conda|tar\.bz2)$", "", a)
                          for a in harness.cache_archives(cache)}, keys)
        self.assertEqual(set(harness.cache_trees(cache)), keys)
        # Placeholder files must be copies: linking must never have modified the cache.
        cp = self.mat("cache", "verify", "--cache-dir", cache)
        self.assertExit(cp, 0)

        # Server is gone: a second prefix comes from the cache alone.
        cp = self.install(lock, p2, cache, "--offline", "--report", self.path("r2.json"))
        self.assertExit(cp, 0)
        self.assertPrefixMatches(p2, lock_name)
        self.check_report(self.path("r2.json"), lock_name, cache_hit=True)
        # The first prefix still works (a hardlinked cache was not disturbed).
        self.assertEqual(harness.check_prefix(p1, self.fx.expected(lock_name)), [])

    def test_conda_lock_yml(self):
        self.full_cycle("conda-lock.yml")

    def test_explicit(self):
        self.full_cycle("explicit.txt")

    def test_pixi_lock(self):
        self.full_cycle("pixi.lock")

    def test_prewarm_then_install_offline(self):
        cache, prefix = self.path("cache"), self.path("env")
        with harness.HttpServer(self.fx.root) as srv:
            lock = self.fx.render_lock("conda-lock.yml", srv.url + "/channel", self.tmp)
            cp = self.mat("prewarm", lock, "--cache-dir", cache, "--report", self.path("r.json"))
            self.assertExit(cp, 0)
        self.assertFalse(os.path.exists(prefix))
        report = harness.read_json(self.path("r.json"))
        self.assertTrue(report["ok"], report)
        self.assertEqual(len(harness.cache_archives(cache)), len(self.fx.manifest["packages"]))
        cp = self.install(lock, prefix, cache, "--offline")
        self.assertExit(cp, 0)
        self.assertPrefixMatches(prefix, "conda-lock.yml")

    def test_offline_with_empty_cache_fails_without_network(self):
        cache, prefix = self.path("cache"), self.path("env")
        with harness.HttpServer(self.fx.root) as srv:
            lock = self.fx.render_lock("conda-lock.yml", srv.url + "/channel", self.tmp)
            cp = self.install(lock, prefix, cache, "--offline")
            self.assertExit(cp, 1)
            self.assertEqual(srv.count(), 0, "--offline made requests")
        self.assertPrefixUntouched(prefix)

    def test_long_prefix_uses_env_shebangs(self):
        # 2 + len(prefix) + len("/bin/python3.11") > 127, but prefix < placeholder (214).
        prefix = self.path("p" * 50, "q" * 50, "long-env")
        self.assertGreater(len(prefix), 115)
        self.assertLess(len(prefix), len(self.fx.placeholder))
        with harness.HttpServer(self.fx.root) as srv:
            lock = self.fx.render_lock("conda-lock.yml", srv.url + "/channel", self.tmp)
            cp = self.install(lock, prefix, self.path("cache"))
        self.assertExit(cp, 0)
        self.assertPrefixMatches(prefix, "conda-lock.yml")
        self.assertEntryPointsRun(prefix)

    def test_prefix_with_space(self):
        prefix = self.path("with space", "env")
        with harness.HttpServer(self.fx.root) as srv:
            lock = self.fx.render_lock("pixi.lock", srv.url + "/channel", self.tmp)
            cp = self.install(lock, prefix, self.path("cache"))
        self.assertExit(cp, 0)
        self.assertPrefixMatches(prefix, "pixi.lock")
        self.assertEntryPointsRun(prefix)

    def test_thread_counts(self):
        with harness.HttpServer(self.fx.root) as srv:
            lock = self.fx.render_lock("explicit.txt", srv.url + "/channel", self.tmp)
            # --jobs 13 runs three fetch loops (one per 6 jobs), each with its own connection
            for jobs, downloads in (("1", "1"), ("8", "16"), ("13", "5")):
                with self.subTest(jobs=jobs):
                    prefix = self.path(f"env-j{jobs}")
                    cp = self.install(lock, prefix, self.path(f"cache-j{jobs}"), "--jobs", jobs,
                                      "--max-downloads", downloads)
                    self.assertExit(cp, 0)
                    self.assertPrefixMatches(prefix, "explicit.txt")

    def test_file_urls_and_python_version_flag(self):
        lock = os.path.join(self.fx.root, "locks", "file", "conda-lock.yml")
        prefix = self.path("env")
        cp = self.install(lock, prefix, self.path("cache"), "--python-version", "3.11",
                          "--platform", "linux-64", "-q", "--allow-file-urls", self.fx.channel)
        self.assertExit(cp, 0)
        self.assertPrefixMatches(prefix, "conda-lock.yml")

    def test_pixi_environment_flag(self):
        with harness.HttpServer(self.fx.root) as srv:
            lock = self.fx.render_lock("pixi.lock", srv.url + "/channel", self.tmp)
            cp = self.install(lock, self.path("env"), self.path("cache"), "--environment",
                              "default")
            self.assertExit(cp, 0)
            cp = self.install(lock, self.path("env2"), self.path("cache"), "--environment",
                              "no-such-env")
            self.assertNotEqual(cp.returncode, 0, harness.describe(cp))
            self.assertIn("no-such-env", cp.stderr)
        self.assertPrefixMatches(self.path("env"), "pixi.lock")
        self.assertPrefixUntouched(self.path("env2"))


if __name__ == "__main__":
    harness.main()
