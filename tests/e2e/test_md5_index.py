#!/usr/bin/python3
"""The md5 → sha256 index: an `@EXPLICIT` lock with `#md5` lines reuses the entries a sha256 lock
stored (no download, no new entry), and the reverse; a lock whose md5 names another package's
archive never makes that package be used."""

import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import harness  # noqa: E402


def entries(cache):
    v1 = os.path.join(cache, "v1")
    return (sorted(os.listdir(os.path.join(v1, "archives"))),
            sorted(os.listdir(os.path.join(v1, "trees"))))


class Md5IndexTest(harness.MaterializerTestCase):

    def run_pair(self, first, second, first_lock_text=None):
        cache = self.path("cache")
        with harness.HttpServer(self.fx.root) as srv:
            lock1 = self.fx.render_lock(first, srv.url + "/channel", self.path("l1"))
            if first_lock_text:
                with open(lock1) as fh:
                    text = first_lock_text(fh.read())
                with open(lock1, "w") as fh:
                    fh.write(text)
            self.assertExit(self.install(lock1, self.path("env1"), cache), 0)
            before = entries(cache)
            self.assertEqual(len(before[1]), len(self.fx.manifest["packages"]))
            srv.reset_counts()
            lock2 = self.fx.render_lock(second, srv.url + "/channel", self.path("l2"))
            cp = self.install(lock2, self.path("env2"), cache, "--report", self.path("r2.json"))
            self.assertExit(cp, 0)
            fetched = {p["url_path"]: srv.count("/" + p["url_path"])
                       for p in self.fx.expected(second)["packages"]}
        self.assertPrefixMatches(self.path("env2"), second)
        self.assertExit(self.mat("cache", "verify", "--cache-dir", cache), 0)
        return before, entries(cache), fetched, harness.read_json(self.path("r2.json"))

    def assert_reused(self, first, second):
        before, after, fetched, report = self.run_pair(first, second)
        self.assertEqual({k: v for k, v in fetched.items() if v}, {}, "downloaded again")
        self.assertEqual(after, before, "a second copy was cached")
        self.assertFalse([n for n in after[1] if n.startswith("md5-")])
        self.assertTrue(all(p["cache_hit"] for p in report["packages"]), report["packages"])

    def test_md5_lock_reuses_entries_stored_by_sha256(self):
        self.assert_reused("conda-lock.yml", "explicit.txt")

    def test_sha256_lock_reuses_entries_stored_for_md5_lines(self):
        self.assert_reused("explicit.txt", "conda-lock.yml")

    def test_md5_lock_twice_is_all_hits(self):
        self.assert_reused("explicit.txt", "explicit.txt")

    def test_wrong_md5_claim_never_selects_another_package(self):
        # The first lock (conda-lock: sha256 and md5 per package) gives mathelper's md5 to
        # nolink and nolink's to mathelper. Its sha256s are right, so it installs, but its md5
        # claims are wrong; the explicit lock's md5 lines must still get the right archives.
        pk = {p["name"]: p for p in self.fx.manifest["packages"]}
        a, b = pk["mathelper"]["md5"], pk["nolink"]["md5"]

        def swap(text):
            self.assertIn(a, text)
            self.assertIn(b, text)
            return text.replace(a, "@A@").replace(b, a).replace("@A@", b)
        before, after, fetched, report = self.run_pair("conda-lock.yml", "explicit.txt", swap)
        self.assertEqual(after, before, "a second copy was cached")
        by_name = {p["name"]: p for p in report["packages"]}
        exp = {p["name"]: p for p in self.fx.expected("explicit.txt")["packages"]}
        for name in ("mathelper", "nolink"):
            self.assertEqual(by_name[name]["key"], exp[name]["key"], name)
            # The claim was refused, so the package was downloaded (once) to learn its sha256.
            self.assertEqual(fetched[exp[name]["url_path"]], 1, name)
        # Packages whose claims were right came from the cache.
        self.assertEqual(fetched[exp["python"]["url_path"]], 0)

    def test_md5_only_download_is_stored_by_sha256(self):
        cache = self.path("cache")
        with harness.HttpServer(self.fx.root) as srv:
            lock = self.fx.render_lock("explicit.txt", srv.url + "/channel", self.tmp)
            self.assertExit(self.mat("prewarm", lock, "--cache-dir", cache), 0)
        archives, trees = entries(cache)
        keys = {p["key"] for p in self.fx.expected("explicit.txt")["packages"]}
        self.assertEqual(set(trees), keys)
        self.assertEqual({re.sub(r"\.(conda|tar\.bz2)$", "", a) for a in archives}, keys)


if __name__ == "__main__":
    harness.main()
