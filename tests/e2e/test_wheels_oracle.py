#!/usr/bin/python3
"""pip is the oracle: the same wheels installed by Debian's pip 23 (upstream posix_prefix
scheme, see harness.pip) into P1 and by materializer from pylock.toml into P2 must give

  - the same set of files (prefix-relative: lib/python3.11/site-packages, bin, include, data),
  - the same bytes, except generated files: console/gui scripts and "#!python" scripts (their
    interpreter line), INSTALLER ("pip" vs "materializer" by design) and RECORD,
  - RECORDs listing the same set of paths, with the same hashes for non-generated files,
  - working scripts and imports, `pip list --path` naming every package, `pip check` clean.
"""

import filecmp
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import harness  # noqa: E402


class WheelOracleTest(harness.WheelTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.oracle_dir = tempfile.mkdtemp(prefix="mat-pip-oracle-")
        cls.p1 = os.path.join(cls.oracle_dir, "P1")
        # By name from the find-links directory: pip picks choose's wheel by its own tag
        # logic (one more oracle) and writes no direct_url.json (a local .whl path would).
        harness.pip_install_prefix(cls.p1, cls.wfx.pins(), find_links=cls.wfx.files_dir)

    @classmethod
    def tearDownClass(cls):
        if os.environ.get("MAT_KEEP_TMP") != "1":
            shutil.rmtree(cls.oracle_dir, True)

    def generated(self):
        """Prefix-relative paths whose bytes legitimately differ between installers."""
        out = set()
        for rel, spec in self.wfx.expected().items():
            if spec["type"] in ("script", "entry_point", "installer", "record"):
                out.add(rel)
        return out

    def install_p2(self, *extra, lock="pylock.toml"):
        p2, cache = self.path("P2"), self.path("cache")
        lockfile = self.wfx.render_lock(lock, self.wfx.file_url, self.tmp)
        cp = self.install(lockfile, p2, cache, *extra,
                          "--allow-file-urls", self.wfx.root)  # the wheels live outside the lock's folder
        self.assertExit(cp, 0)
        return p2

    def compare_with_pip(self, p2):
        p1 = self.p1
        f1, f2 = harness.installed_files(p1), harness.installed_files(p2)
        self.assertEqual(sorted(f1 - f2), [], "installed by pip only")
        self.assertEqual(sorted(f2 - f1), [], "installed by materializer only")
        gen = self.generated()
        differ = [rel for rel in sorted(f1 - gen)
                  if not filecmp.cmp(os.path.join(p1, rel), os.path.join(p2, rel),
                                     shallow=False)]
        self.assertEqual(differ, [], "bytes differ from pip's")
        for rel in sorted(f1):
            x1 = os.lstat(os.path.join(p1, rel)).st_mode & 0o100
            x2 = os.lstat(os.path.join(p2, rel)).st_mode & 0o100
            self.assertEqual(bool(x1), bool(x2), f"{rel}: executable bit differs from pip's")
        site = self.wfx.site
        for name, d in self.wfx.dists().items():
            rec = f"{site}/{d['dist_info']}/RECORD"
            r1 = harness.record_paths(p1, site, os.path.join(p1, rec))
            r2 = harness.record_paths(p2, site, os.path.join(p2, rec))
            self.assertEqual(sorted(r1), sorted(r2), f"{name}: RECORD paths differ from pip's")
            for rel in sorted(set(r1) - gen):
                self.assertEqual(r1[rel], r2[rel], f"{name}: RECORD row for {rel}")
            with open(os.path.join(p1, site, d["dist_info"], "INSTALLER"), "rb") as fh:
                self.assertEqual(fh.read(), b"pip\n")
            with open(os.path.join(p2, site, d["dist_info"], "INSTALLER"), "rb") as fh:
                self.assertEqual(fh.read(), b"materializer\n")

    def test_same_as_pip(self):
        p2 = self.install_p2("--python", harness.SYSTEM_PYTHON)
        self.compare_with_pip(p2)
        self.assertWheelPrefix(p2, harness.SYSTEM_PYTHON)
        self.assertImportsAndScripts(p2, direct=True)
        site = os.path.join(p2, self.wfx.site)
        self.assertEqual(harness.pip_list(site),
                         {n: d["version"] for n, d in self.wfx.dists().items()})
        cp = harness.pip_check(site, self.tmp)
        self.assertEqual(cp.returncode, 0, harness.describe(cp))
        self.assertIn("No broken requirements found", cp.stdout)
        cp = harness.run_python("import purepkg; print(purepkg.VERSION)", site, cwd=self.tmp)
        self.assertEqual(cp.stdout.strip(), "1.0.0", cp.stderr)

    def test_same_as_pip_with_python_version_flag(self):
        # No interpreter to probe: same layout and bytes; the scripts' interpreter line is not
        # judged (any python), but `python3 script` must still work.
        p2 = self.install_p2("--python-version", "3.11")
        self.compare_with_pip(p2)
        self.assertWheelPrefix(p2, None)
        self.assertImportsAndScripts(p2, direct=False)

    def test_scripts_are_fresh_files_not_cache_links(self):
        # Rewritten / generated files cannot be hard links into the cache (the cache tree
        # must stay byte-identical to the wheel).
        p2 = self.install_p2("--python", harness.SYSTEM_PYTHON)
        for rel in sorted(self.generated()):
            st = os.lstat(os.path.join(p2, rel))
            self.assertEqual(st.st_nlink, 1, f"{rel} has {st.st_nlink} links")
        cp = self.mat("cache", "verify", "--cache-dir", self.path("cache"))
        self.assertExit(cp, 0)


if __name__ == "__main__":
    harness.main()
