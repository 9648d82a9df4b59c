#!/usr/bin/python3
"""cache stats | verify | clean, and MATERIALIZER_CACHE_DIR."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import harness  # noqa: E402


class CacheCommandsTest(harness.MaterializerTestCase):

    def populate(self, cache):
        lock = os.path.join(self.fx.root, "locks", "file", "conda-lock.yml")
        # locks/file/ names the sibling channel/: allowed explicitly (the lock's own folder is
        # the only default).
        cp = self.mat("prewarm", lock, "--cache-dir", cache, "--allow-file-urls", self.fx.channel)
        self.assertExit(cp, 0)
        return self.fx.expected("conda-lock.yml")

    def test_stats_on_empty_and_full_cache(self):
        cache = self.path("cache")
        cp = self.mat("cache", "stats", "--cache-dir", cache)
        self.assertExit(cp, 0)
        exp = self.populate(cache)
        cp = self.mat("cache", "stats", "--cache-dir", cache)
        self.assertExit(cp, 0)
        out = cp.stdout + cp.stderr
        self.assertTrue(out.strip(), "cache stats printed nothing")
        self.assertIn(str(len(exp["packages"])), out, "stats does not show the archive count")

    def test_verify_healthy_cache(self):
        cache = self.path("cache")
        self.populate(cache)
        self.assertExit(self.mat("cache", "verify", "--cache-dir", cache), 0)

    def test_verify_names_a_corrupted_tree_file(self):
        cache = self.path("cache")
        exp = self.populate(cache)
        key = next(p["key"] for p in exp["packages"] if p["name"] == "mathelper")
        victim = os.path.join(cache, "v1", "trees", key, "pkg", "share", "mathelper", "README")
        self.assertTrue(os.path.isfile(victim), victim)
        os.chmod(victim, 0o644)
        with open(victim, "r+b") as fh:   # in place, same size: only a hash can notice
            data = fh.read()
            fh.seek(0)
            fh.write(bytes([data[0] ^ 0x20]) + data[1:])
        cp = self.mat("cache", "verify", "--cache-dir", cache)
        self.assertNotEqual(cp.returncode, 0, harness.describe(cp))
        out = cp.stdout + cp.stderr
        self.assertTrue(key in out or "share/mathelper/README" in out, harness.describe(cp))
        self.assertIn("README", out)

    def test_verify_names_a_corrupted_archive(self):
        cache = self.path("cache")
        exp = self.populate(cache)
        key = next(p["key"] for p in exp["packages"] if p["name"] == "libmat")
        archive = os.path.join(cache, "v1", "archives", key + ".conda")
        self.assertTrue(os.path.isfile(archive), harness.cache_archives(cache))
        os.chmod(archive, 0o644)
        with open(archive, "r+b") as fh:
            fh.seek(100)
            b = fh.read(1)
            fh.seek(100)
            fh.write(bytes([b[0] ^ 0xFF]))
        cp = self.mat("cache", "verify", "--cache-dir", cache)
        self.assertNotEqual(cp.returncode, 0, harness.describe(cp))
        self.assertIn(key, cp.stdout + cp.stderr)

    def test_clean_removes_tmp_leftovers(self):
        cache = self.path("cache")
        self.populate(cache)
        tmp = os.path.join(cache, "v1", "tmp")
        os.makedirs(os.path.join(tmp, ".tmp-999999-deadbeef", "pkg"), exist_ok=True)
        with open(os.path.join(tmp, ".tmp-999999-cafe"), "wb") as fh:
            fh.write(b"partial download")
        cp = self.mat("cache", "clean", "--cache-dir", cache)
        self.assertExit(cp, 0)
        self.assertEqual(harness.cache_tmp(cache), [])
        self.assertExit(self.mat("cache", "verify", "--cache-dir", cache), 0)

    def test_cache_dir_from_environment(self):
        cache = self.path("envcache")
        lock = os.path.join(self.fx.root, "locks", "file", "explicit.txt")
        cp = self.mat("install", lock, "--prefix", self.path("env"), "--allow-file-urls",
                      self.fx.channel, env={"MATERIALIZER_CACHE_DIR": cache})
        self.assertExit(cp, 0)
        self.assertEqual(len(harness.cache_archives(cache)), len(self.fx.manifest["packages"]))
        cp = self.mat("cache", "verify", env={"MATERIALIZER_CACHE_DIR": cache})
        self.assertExit(cp, 0)
        self.assertPrefixMatches(self.path("env"), "explicit.txt")

    def test_install_after_cache_clean_refetches(self):
        cache = self.path("cache")
        self.populate(cache)
        lock = os.path.join(self.fx.root, "locks", "file", "conda-lock.yml")
        cp = self.mat("cache", "clean", "--cache-dir", cache)
        self.assertExit(cp, 0)
        cp = self.install(lock, self.path("env"), cache, "--allow-file-urls", self.fx.channel)
        self.assertExit(cp, 0)
        self.assertPrefixMatches(self.path("env"), "conda-lock.yml")


if __name__ == "__main__":
    harness.main()
