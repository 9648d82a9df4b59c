#!/usr/bin/python3
"""Bad inputs fail with their specific exit code and message, leave no cache entry for the bad
package, no temp files, and no half-built prefix (policy: any download/verify/extract failure
means the prefix is not touched at all)."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import harness  # noqa: E402


class BadInputsTest(harness.MaterializerTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.srv = harness.HttpServer(cls.fx.root).start()
        cls.base = cls.srv.url + "/channel"

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def lock(self, case_name, base=None):
        case = self.fx.bad_case(case_name)
        return case, self.fx.render_lock(case["lock"], base or self.base, self.tmp, bad=True)

    def run_bad(self, case_name, code=1):
        case, lock = self.lock(case_name)
        prefix, cache, report = self.path("env"), self.path("cache"), self.path("r.json")
        cp = self.install(lock, prefix, cache, "--report", report)
        self.assertExit(cp, code)
        self.assertPrefixUntouched(prefix)
        self.assertEqual(harness.cache_tmp(cache), [], "tmp/ not cleaned")
        if "key" in case:
            for entries in (harness.cache_archives(cache), harness.cache_trees(cache)):
                self.assertFalse([e for e in entries if e.startswith(case["key"])],
                                 f"cache entry left for {case['key']}: {entries}")
        if code == 1:
            rep = harness.read_json(report)
            self.assertFalse(rep["ok"])
            self.assertEqual(rep["exit_code"], 1)
            failed = [p for p in rep["packages"] if p.get("error")]
            self.assertTrue(failed, "report lists no failed package")
            if "package" in case:
                self.assertIn(case["package"], [p["name"] for p in failed])
            # The verify of what remains must be clean.
            self.assertExit(self.mat("cache", "verify", "--cache-dir", cache), 0)
        return case, cp

    # --- download / verify --------------------------------------------------------------

    def test_wrong_sha256(self):
        case, cp = self.run_bad("wrong-sha256")
        err = cp.stderr
        self.assertIn("sha256 mismatch", err)
        self.assertIn("mathelper", err)
        # expected (from the lock) and got (actual), possibly abbreviated
        self.assertIn(case["expected_sha256"][:8], err)
        self.assertIn(case["actual_sha256"][:8], err)
        cache = self.path("cache")
        for entries in (harness.cache_archives(cache), harness.cache_trees(cache)):
            self.assertFalse([e for e in entries if e.startswith(case["actual_key"])])

    def _mutated_lock(self, lock_name, pattern, repl):
        """lock_name rendered, with the first match of `pattern` replaced."""
        import re
        path = self.fx.render_lock(lock_name, self.base, self.tmp)
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        new, n = re.subn(pattern, repl, text, count=1, flags=re.M)
        self.assertEqual(n, 1, f"{pattern!r} not in {lock_name}")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(new)
        return path

    def test_wrong_md5_of_an_md5_only_lock_line(self):
        # @EXPLICIT lines with an md5 fragment: MD5 is the only hash, so it is checked.
        wrong = "0" * 32
        lock = self._mutated_lock("explicit.txt", r"#[0-9a-f]{32}$", "#" + wrong)
        prefix, cache = self.path("env"), self.path("cache")
        cp = self.install(lock, prefix, cache)
        self.assertExit(cp, 1)
        self.assertIn("md5 mismatch: expected " + wrong, cp.stderr)
        self.assertPrefixUntouched(prefix)
        self.assertEqual(harness.cache_tmp(cache), [])
        self.assertFalse([e for e in harness.cache_archives(cache) if wrong in e])

    def test_sha256_is_preferred_over_md5(self):
        # Both hashes given: the SHA-256 (stronger) decides, as in micromamba and rattler; a
        # wrong MD5 next to a right SHA-256 does not fail the install.
        lock = self._mutated_lock("conda-lock.yml", r"^(\s+md5: )[0-9a-f]{32}$",
                                  r"\g<1>" + "0" * 32)
        cp = self.install(lock, self.path("env"), self.path("cache"))
        self.assertExit(cp, 0)

    def test_404(self):
        _, cp = self.run_bad("missing-404")
        self.assertRegex(cp.stderr.lower(), r"404|not found")
        self.assertIn("missing-1.0-0.conda", cp.stderr)

    def test_server_error_is_reported(self):
        # Every request for one package answers 500 (retries included): exit 1, no entry.
        pkg = self.fx.package("libmat")
        path = "/channel/" + pkg["subdir"] + "/" + pkg["url"].rsplit("/", 1)[1]
        self.srv.hooks[path] = 500
        try:
            lock = self.fx.render_lock("conda-lock.yml", self.base, self.tmp)
            cp = self.install(lock, self.path("env"), self.path("cache"))
        finally:
            del self.srv.hooks[path]
        self.assertExit(cp, 1)
        self.assertIn("500", cp.stderr)
        self.assertIn("libmat", cp.stderr)
        self.assertPrefixUntouched(self.path("env"))
        self.assertFalse([a for a in harness.cache_archives(self.path("cache"))
                          if pkg["sha256"] in a])

    # --- extraction ---------------------------------------------------------------------

    def test_truncated_conda(self):
        _, cp = self.run_bad("truncated")
        self.assertRegex(cp.stderr.lower(),
                         r"corrupt|truncated|damaged|unexpected end|premature end")
        self.assertIn("truncated-1.0-0", cp.stderr)

    def test_dotdot_member(self):
        case, cp = self.run_bad("dotdot")
        self.assertIn(case["member"], cp.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.path("cache"), "v1", "evil")))
        self.assertFalse(os.path.exists(os.path.join(self.path("cache"), "v1", "trees", "evil")))

    def _canary_case(self, name):
        case = self.fx.bad_case(name)
        canary = case["canary"]
        if os.path.lexists(canary):
            os.remove(canary)
        try:
            _, cp = self.run_bad(name)
            self.assertFalse(os.path.lexists(canary), f"extraction escaped to {canary}")
        finally:
            if os.path.lexists(canary):
                os.remove(canary)
        return cp

    def test_symlink_escape_absolute(self):
        cp = self._canary_case("symlink-abs")
        self.assertIn("symlink-abs", cp.stderr)

    def test_symlink_escape_relative(self):
        cp = self._canary_case("symlink-rel")
        self.assertIn("symlink-rel", cp.stderr)

    def test_hardlink_escape(self):
        _, cp = self.run_bad("hardlink-escape")
        self.assertIn("hardlink-escape", cp.stderr)

    # --- lock files ---------------------------------------------------------------------

    def test_malformed_yaml_names_file_and_line(self):
        case, lock = self.lock("malformed")
        cp = self.install(lock, self.path("env"), self.path("cache"))
        self.assertExit(cp, 2)
        self.assertIn(f"{case['lock']}:{case['line']}", cp.stderr)
        self.assertPrefixUntouched(self.path("env"))
        self.assertEqual(harness.cache_archives(self.path("cache")), [])

    def test_missing_url_field(self):
        case, lock = self.lock("missing-url")
        cp = self.install(lock, self.path("env"), self.path("cache"))
        self.assertExit(cp, 2)
        self.assertIn(case["lock"], cp.stderr)
        self.assertIn("url", cp.stderr)
        self.assertPrefixUntouched(self.path("env"))

    def test_entry_without_hash(self):
        case, lock = self.lock("nohash")
        self.srv.reset_counts()
        cp = self.install(lock, self.path("env"), self.path("cache"))
        self.assertExit(cp, 2)
        self.assertIn(case["lock"], cp.stderr)
        self.assertPrefixUntouched(self.path("env"))
        self.assertEqual(self.srv.count(), 0, "fetched packages of an invalid lock")

    def test_missing_lock_file(self):
        cp = self.install(self.path("no-such.lock"), self.path("env"), self.path("cache"))
        self.assertExit(cp, 2)
        self.assertIn("no-such.lock", cp.stderr)

    def test_usage_errors(self):
        lock = os.path.join(self.fx.root, "locks", "file", "conda-lock.yml")
        for args in (["install", lock],                         # no --prefix
                     ["install", lock, "--prefix", self.path("e"), "--no-such-flag"],
                     ["frobnicate"],
                     ["install", lock, "--prefix", self.path("e"), "--jobs", "many"]):
            with self.subTest(args=args):
                self.assertExit(self.mat(*args), 2)
        self.assertPrefixUntouched(self.path("e"))

    def test_pip_entries_are_refused(self):
        case, lock = self.lock("with-pip")
        cp = self.install(lock, self.path("env"), self.path("cache"))
        self.assertNotEqual(cp.returncode, 0, harness.describe(cp))
        for name in case["pip_packages"]:
            self.assertIn(name, cp.stderr)
        self.assertPrefixUntouched(self.path("env"))

    def test_unknown_platform(self):
        lock = self.fx.render_lock("conda-lock.yml", self.base, self.tmp)
        cp = self.install(lock, self.path("env"), self.path("cache"), "--platform", "win-64")
        self.assertNotEqual(cp.returncode, 0, harness.describe(cp))
        self.assertIn("win-64", cp.stderr)
        self.assertPrefixUntouched(self.path("env"))

    # --- secrets ------------------------------------------------------------------------

    def test_credentials_never_printed(self):
        host = self.srv.url[len("http://"):]
        for lock_name in ("conda-lock.yml", "explicit.txt", "pixi.lock"):
            with self.subTest(lock=lock_name):
                for i, base in enumerate((f"http://user:hunter2@{host}/nowhere",
                                          f"http://{host}/t/tk-hunter2-token/nowhere")):
                    d = self.path(f"{lock_name}-{i}")  # the secret must not be in our paths
                    os.makedirs(d)
                    lock = self.fx.render_lock(lock_name, base, d)
                    report = os.path.join(d, "r.json")
                    cp = self.install(lock, os.path.join(d, "env"), os.path.join(d, "cache"),
                                      "--report", report, "-v")
                    self.assertExit(cp, 1)
                    self.assertRegex(cp.stderr.lower(), r"404|not found")
                    self.assertNotInOutput(cp, "hunter2", report)
                    self.assertPrefixUntouched(os.path.join(d, "env"))

    def test_all_failures_reported_not_just_first(self):
        # Two bad packages in one lock: both are named (mold-style checkpoint).
        lock = self.fx.render_lock("conda-lock.yml", self.base + "/gone", self.tmp)
        cp = self.install(lock, self.path("env"), self.path("cache"))
        self.assertExit(cp, 1)
        for pkg in self.fx.manifest["packages"]:
            self.assertIn(pkg["name"], cp.stderr)


if __name__ == "__main__":
    harness.main()
