#!/usr/bin/python3
"""Bad wheels and bad PyPI locks fail with their specific exit code and message, leave no
cache entry (archive or tree) for the bad wheel, no temp files, and no touched prefix (the
conda policy: any download/verify/extract failure means the prefix is not touched at all).

Each bad pylock also names the good `purepkg` wheel, so "prefix untouched" is meaningful.

Expected behaviours assumed here (the contract leaves some open):
  - RECORD disagreeing with a member, a zip-slip member, duplicate member names, METADATA Name
    not matching the file name: the wheel is corrupt -> exit 1, the package named.
  - sdist-only entries (pylock `sdist` only; an index offering only an sdist): exit 2 naming
    package and file, before the prefix is touched.
  - every package excluded by its marker: exit 0, nothing installed (no dist-info, no files
    outside conda-meta/); the output mentions the skipped package or that nothing is to do.
  - no target interpreter at all (no conda python, no --python, no --python-version): exit 2.
"""

import glob
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import harness  # noqa: E402


class BadWheelsTest(harness.WheelTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.srv = harness.HttpServer(cls.wfx.root).start()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def setUp(self):
        # A neutral temp dir name: the test method names contain words ("duplicate", "sdist",
        # "missing") that the messages are checked for, and the lock path is in the messages.
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="mat-w-")
        if os.environ.get("MAT_KEEP_TMP") != "1":
            self.addCleanup(shutil.rmtree, self.tmp, True)

    def lock(self, case_name):
        case = self.wfx.bad_case(case_name)
        return case, self.wfx.render_lock(case["lock"], self.srv.url, self.tmp, bad=True)

    def assertNoCacheEntry(self, cache, key):
        for entries in (harness.cache_archives(cache), harness.cache_trees(cache)):
            self.assertFalse([e for e in entries if e.startswith(key)],
                             f"cache entry left for {key}: {entries}")

    def run_bad(self, case_name, code=1, *extra):
        case, lock = self.lock(case_name)
        prefix, cache, report = self.path("env"), self.path("cache"), self.path("r.json")
        cp = self.install(lock, prefix, cache, "--python-version", "3.11", "--report", report,
                          *extra)
        self.assertExit(cp, code)
        self.assertPrefixUntouched(prefix)
        self.assertEqual(harness.cache_tmp(cache), [], "tmp/ not cleaned")
        if "key" in case:
            self.assertNoCacheEntry(cache, case["key"])
        if "package" in case:
            self.assertIn(case["package"], cp.stderr)
        if code == 1:
            rep = harness.read_json(report)
            self.assertFalse(rep["ok"])
            self.assertEqual(rep["exit_code"], 1)
            self.assertIn(case["package"], harness.read_text(report))
            self.assertExit(self.mat("cache", "verify", "--cache-dir", cache), 0)
        return case, cp

    # --- download / verify --------------------------------------------------------------

    def test_hash_mismatch(self):
        case, cp = self.run_bad("hash-mismatch")
        self.assertIn("sha256 mismatch", cp.stderr)
        self.assertIn(case["expected_sha256"][:8], cp.stderr)
        self.assertIn(case["actual_sha256"][:8], cp.stderr)
        self.assertNoCacheEntry(self.path("cache"), case["actual_key"])

    def test_missing_404(self):
        case, cp = self.run_bad("missing-404")
        self.assertRegex(cp.stderr.lower(), r"404|not found")
        self.assertIn(case["file_name"], cp.stderr)

    # --- corrupt wheels -----------------------------------------------------------------

    def test_record_mismatch(self):
        case, cp = self.run_bad("record-mismatch")
        self.assertIn("RECORD", cp.stderr)
        self.assertIn(case["member"], cp.stderr)

    def test_zip_slip(self):
        for p in self.escape_targets():
            self.assertFalse(os.path.exists(p), f"{p} exists before the test")
        case, cp = self.run_bad("zip-slip")
        self.assertIn(case["member"], cp.stderr)
        for p in self.escape_targets():
            self.assertFalse(os.path.exists(p), f"extraction escaped to {p}")

    def escape_targets(self):
        """Where ../../evil.py lands relative to any directory materializer could extract
        into (cache tree, cache tmp, prefix, site-packages)."""
        cache = self.path("cache")
        dirs = [cache, os.path.join(cache, "v1"), os.path.join(cache, "v1", "trees"),
                os.path.join(cache, "v1", "tmp"), self.tmp, os.path.dirname(self.tmp)]
        return sorted({os.path.normpath(os.path.join(d, "evil.py")) for d in dirs}
                      | set(glob.glob(os.path.join(self.tmp, "**", "evil.py"),
                                      recursive=True)))

    def test_duplicate_member_names(self):
        case, cp = self.run_bad("duplicate-names")
        self.assertTrue("duplicate" in cp.stderr.lower() or case["member"] in cp.stderr,
                        harness.describe(cp))

    def test_metadata_name_mismatch(self):
        self.run_bad("metadata-name-mismatch")

    # --- refused entries and locks ------------------------------------------------------

    def test_sdist_only_pylock(self):
        case, cp = self.run_bad("sdist-only", code=2)
        self.assertIn(case["file_name"], cp.stderr)
        self.assertIn("sdist", cp.stderr.lower())
        self.assertEqual(harness.cache_archives(self.path("cache")), [])

    def test_sdist_only_on_index(self):
        case = self.wfx.bad_case("sdist-only-index")
        lock = self.wfx.render_lock(case["lock"], self.srv.url, self.tmp, bad=True)
        cp = self.install(lock, self.path("env"), self.path("cache"), "--python-version",
                          "3.11")
        self.assertExit(cp, 2)
        self.assertIn(case["package"], cp.stderr)
        self.assertIn(case["file_name"], cp.stderr)
        self.assertPrefixUntouched(self.path("env"))

    def test_malformed_pylock_names_file_and_line(self):
        case, lock = self.lock("malformed")
        cp = self.install(lock, self.path("env"), self.path("cache"), "--python-version",
                          "3.11")
        self.assertExit(cp, 2)
        self.assertIn(f"{case['lock']}:{case['line']}", cp.stderr)
        self.assertPrefixUntouched(self.path("env"))
        self.assertEqual(harness.cache_archives(self.path("cache")), [])

    def test_every_package_excluded_by_marker(self):
        case, lock = self.lock("all-excluded")
        self.srv.reset_counts()
        prefix = self.path("env")
        cp = self.install(lock, prefix, self.path("cache"), "--python-version", "3.11")
        # Nothing to install is never "environment ready" (issue 11, defect 12): exit 2, the
        # prefix untouched, the skipped packages named.
        self.assertExit(cp, 2)
        self.assertEqual(self.srv.count("/files/"), 0)
        self.assertPrefixUntouched(prefix)
        self.assertIn("nothing to install", cp.stderr)
        self.assertRegex((cp.stdout + cp.stderr).lower(), r"winonly")

    def test_no_target_interpreter(self):
        # pylock only, no conda python in the prefix, no --python / --python-version.
        lock = self.wfx.render_lock("pylock.toml", self.srv.url, self.tmp)
        self.srv.reset_counts()
        cp = self.install(lock, self.path("env"), self.path("cache"))
        self.assertExit(cp, 2)
        self.assertIn("python", cp.stderr.lower())
        self.assertPrefixUntouched(self.path("env"))

    def test_all_failures_reported(self):
        # Every wheel URL 404s: each package is named, exit 1.
        lock = self.wfx.render_lock("pylock.toml", self.srv.url + "/gone", self.tmp)
        cp = self.install(lock, self.path("env"), self.path("cache"), "--python-version",
                          "3.11")
        self.assertExit(cp, 1)
        for name in self.wfx.dists():
            self.assertTrue(name in cp.stderr or name.replace("-", "_") in cp.stderr,
                            f"{name} not named" + harness.describe(cp))
        self.assertPrefixUntouched(self.path("env"))


if __name__ == "__main__":
    harness.main()
