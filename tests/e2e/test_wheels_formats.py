#!/usr/bin/python3
"""Wheels from every lock format over HTTP (127.0.0.1 http.server):

  pylock.toml       url + sha256 + size per wheel; `winonly` (marker sys_platform == 'win32')
                    is not installed; choose's cp311 manylinux wheel is picked of four
  uv.lock           all four `choose` wheels + an sdist listed: the cp311 manylinux wheel wins;
                    the virtual root project is not installed
  requirements.txt  pins + --hash, resolved on the Simple API: PEP 691 JSON (/simple, content
                    negotiated) and PEP 503 HTML (/simple-html), --index-url overriding the
                    lock's, --extra-index-url, --find-links (directory and HTML page)
  poetry.lock       file names + hashes only, resolved on --index-url
  conda-lock.yml,   conda python + pip entries in one run: shebangs name PREFIX/bin/python3.11,
  pixi.lock         the scripts run directly; then offline from the cache with the server gone
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import harness  # noqa: E402


class WheelFormatsTest(harness.WheelTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.srv = harness.HttpServer(cls.wfx.root).start()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def setUp(self):
        super().setUp()
        self.srv.reset_counts()
        del self.srv.json_served[:]

    # --- helpers ------------------------------------------------------------------------

    def lock(self, name, index_url=None, base=None):
        return self.wfx.render_lock(name, base or self.srv.url, self.tmp, index_url=index_url)

    def run_ok(self, lock, *extra, prefix="env", cache="cache"):
        prefix, cache = self.path(prefix), self.path(cache)
        cp = self.install(lock, prefix, cache, *extra)
        self.assertExit(cp, 0)
        return prefix, cache, cp

    def assertInstalled(self, prefix, python_exe=harness.SYSTEM_PYTHON, mixed=False,
                        direct=True):
        self.assertWheelPrefix(prefix, python_exe, mixed=mixed)
        self.assertImportsAndScripts(prefix, direct=direct)
        site = os.path.join(prefix, self.wfx.site)
        self.assertFalse(os.path.exists(os.path.join(site, "winonly")))
        cp = harness.pip_check(site, self.tmp)
        self.assertEqual(cp.returncode, 0, harness.describe(cp))

    def assertOnlyChosenWheelsFetched(self):
        """Of the files/ directory only the install set was downloaded, each at most twice
        (a retry), and no sdist or foreign-platform wheel."""
        wanted = {d["file_name"] for d in self.wfx.dists().values()}
        for fn in self.wfx.manifest["files"]:
            n = self.srv.count("/files/" + fn)
            if fn in wanted:
                self.assertTrue(1 <= n <= 2, f"{fn} requested {n} times")
            else:
                self.assertEqual(n, 0, f"{fn} should not have been downloaded")

    # --- URL-bearing locks --------------------------------------------------------------

    def test_pylock(self):
        lock = self.lock("pylock.toml")
        prefix, cache, _ = self.run_ok(lock, "--python", harness.SYSTEM_PYTHON,
                                       "--report", self.path("r.json"))
        self.assertOnlyChosenWheelsFetched()
        self.assertInstalled(prefix)
        self.assertWheelCache(cache, [d["file_name"] for d in self.wfx.dists().values()])
        report = harness.read_json(self.path("r.json"))
        self.assertTrue(report["ok"], report)
        self.assertEqual(report["exit_code"], 0)
        names = {harness.gen_wheels.normalize(p["name"]) for p in report["packages"]}
        self.assertTrue(set(self.wfx.dists()) <= names, names)
        self.assertNotIn("winonly", names)

        # Second prefix, server unreachable, --offline: everything from the cache.
        self.srv.reset_counts()
        dead = self.wfx.render_lock("pylock.toml", "http://127.0.0.1:9", self.path("dead"))
        prefix2, _, _ = self.run_ok(dead, "--python", harness.SYSTEM_PYTHON, "--offline",
                                    prefix="env2")
        self.assertEqual(self.srv.count(), 0)
        self.assertInstalled(prefix2)

    def test_pylock_file_urls(self):
        lock = self.wfx.render_lock("pylock.toml", self.wfx.file_url, self.tmp)
        prefix, _, _ = self.run_ok(lock, "--python", harness.SYSTEM_PYTHON, "--offline",
                                   "--allow-file-urls", self.wfx.root)  # the wheels live outside the lock's folder
        self.assertInstalled(prefix)

    def test_uv_lock_picks_cp311_manylinux(self):
        prefix, cache, _ = self.run_ok(self.lock("uv.lock"), "--python", harness.SYSTEM_PYTHON)
        self.assertOnlyChosenWheelsFetched()
        self.assertInstalled(prefix)
        site = os.path.join(prefix, self.wfx.site)
        self.assertFalse([e for e in os.listdir(site) if "wheel_fixture_project" in e
                          or "wheel-fixture-project" in e])
        self.assertWheelCache(cache, [d["file_name"] for d in self.wfx.dists().values()])

    # --- index-resolved locks -----------------------------------------------------------

    def test_requirements_json_index(self):
        prefix, _, _ = self.run_ok(self.lock("requirements.txt",
                                             index_url=self.srv.url + "/simple"),
                                   "--python", harness.SYSTEM_PYTHON)
        self.assertTrue(self.srv.json_served, "no PEP 691 JSON page was asked for")
        self.assertEqual(self.srv.count("/simple-html/"), 0)
        self.assertOnlyChosenWheelsFetched()
        self.assertInstalled(prefix)

    def test_requirements_html_only_index(self):
        prefix, _, _ = self.run_ok(self.lock("requirements.txt",
                                             index_url=self.srv.url + "/simple-html"),
                                   "--python", harness.SYSTEM_PYTHON)
        self.assertEqual(self.srv.json_served, [])
        self.assertGreater(self.srv.count("/simple-html/purepkg/"), 0)
        self.assertOnlyChosenWheelsFetched()
        self.assertInstalled(prefix)

    def test_index_url_flag_overrides_lock(self):
        lock = self.lock("requirements.txt", index_url=self.srv.url + "/no-such-index")
        prefix, _, _ = self.run_ok(lock, "--python", harness.SYSTEM_PYTHON,
                                   "--index-url", self.srv.url + "/simple-html")
        self.assertEqual(self.srv.count("/no-such-index/purepkg/"), 0)
        self.assertInstalled(prefix)

    def test_poetry_lock(self):
        prefix, _, _ = self.run_ok(self.lock("poetry.lock"), "--python", harness.SYSTEM_PYTHON,
                                   "--index-url", self.srv.url + "/simple")
        self.assertOnlyChosenWheelsFetched()
        self.assertInstalled(prefix)

    def test_poetry_extra_index_url(self):
        # The primary index knows nothing (404 per project); the extra one has everything.
        prefix, _, _ = self.run_ok(self.lock("poetry.lock"), "--python", harness.SYSTEM_PYTHON,
                                   "--index-url", self.srv.url + "/empty-index",
                                   "--extra-index-url", self.srv.url + "/simple-html")
        self.assertInstalled(prefix)

    def test_find_links_directory(self):
        lock = self.lock("requirements.txt", index_url=self.srv.url + "/empty-index")
        prefix, _, _ = self.run_ok(lock, "--python", harness.SYSTEM_PYTHON,
                                   "--find-links", "file://" + self.wfx.files_dir,
                                   "--allow-file-urls", self.wfx.files_dir)
        self.assertEqual(self.srv.count("/files/"), 0, "downloaded over HTTP despite "
                                                       "find-links")
        self.assertInstalled(prefix)

    def test_find_links_html_page(self):
        lock = self.lock("poetry.lock")
        prefix, _, _ = self.run_ok(lock, "--python", harness.SYSTEM_PYTHON,
                                   "--index-url", self.srv.url + "/empty-index",
                                   "--find-links", self.srv.url + "/find-links.html")
        self.assertGreater(self.srv.count("/find-links.html"), 0)
        self.assertOnlyChosenWheelsFetched()
        self.assertInstalled(prefix)

    # --- mixed conda + pip --------------------------------------------------------------

    def mixed_cycle(self, lock_name):
        lock = self.lock(lock_name)
        prefix, cache, _ = self.run_ok(lock, "--report", self.path("r.json"))
        python = os.path.join(prefix, self.wfx.manifest["conda"]["python_exe"])
        self.assertInstalled(prefix, python_exe=python, mixed=True, direct=True)
        self.assertTrue([f for f in os.listdir(os.path.join(prefix, "conda-meta"))
                         if f.startswith("python-3.11.7-")], "conda python record missing")
        self.assertOnlyChosenWheelsFetched()
        self.assertWheelCache(cache, [d["file_name"] for d in self.wfx.dists().values()])
        report = harness.read_json(self.path("r.json"))
        self.assertTrue(report["ok"], report)

        # The server goes away: a second prefix from the cache alone.
        self.srv.reset_counts()
        dead = self.wfx.render_lock(lock_name, "http://127.0.0.1:9", self.path("dead"))
        prefix2, _, _ = self.run_ok(dead, "--offline", prefix="env2")
        self.assertEqual(self.srv.count(), 0)
        python2 = os.path.join(prefix2, self.wfx.manifest["conda"]["python_exe"])
        self.assertInstalled(prefix2, python_exe=python2, mixed=True, direct=True)
        # the first prefix is intact (hard links into the cache were not disturbed)
        self.assertEqual(harness.check_wheel_prefix(prefix, self.wfx.expected(), python,
                                                    conda_paths=self.wfx.manifest["conda"]
                                                    ["expected_paths"]), [])

    def test_conda_lock_mixed(self):
        self.mixed_cycle("conda-lock.yml")

    def test_pixi_lock_mixed(self):
        self.mixed_cycle("pixi.lock")

    def test_mixed_with_space_in_prefix(self):
        # A prefix with a space: scripts must still run (conda's /bin/sh trampoline or
        # equivalent), both via `python3 script` and directly.
        lock = self.lock("pixi.lock")
        prefix, _, _ = self.run_ok(lock, prefix="with space/env")
        python = os.path.join(prefix, self.wfx.manifest["conda"]["python_exe"])
        self.assertInstalled(prefix, python_exe=python, mixed=True, direct=True)


class WheelCompileTest(harness.WheelTestCase):
    """--compile: a .pyc for every site-packages .py the wheels installed, listed in RECORD;
    the same set of .pyc as `pip install --compile` writes."""

    def test_compile(self):
        lock = self.wfx.render_lock("pylock.toml", self.wfx.file_url, self.tmp)
        prefix = self.path("env")
        cp = self.install(lock, prefix, self.path("cache"), "--python", harness.SYSTEM_PYTHON,
                          "--compile", "--allow-file-urls", self.wfx.root)  # the wheels live outside the lock's folder
        self.assertExit(cp, 0)
        self.assertWheelPrefix(prefix, harness.SYSTEM_PYTHON, compile=True)
        pip_prefix = self.path("pip")
        harness.pip_install_prefix(pip_prefix, self.wfx.pins(), find_links=self.wfx.files_dir,
                                   compile=True)
        pyc = {p for p in harness.installed_files(prefix, pycache=True)
               if p.endswith(".pyc")}
        pip_pyc = {p for p in harness.installed_files(pip_prefix, pycache=True)
                   if p.endswith(".pyc")}
        self.assertTrue(pip_pyc, "pip wrote no bytecode?")
        self.assertEqual(sorted(pip_pyc - pyc), [], "pip compiles these, materializer not")
        site = os.path.join(prefix, self.wfx.site)
        cp = harness.pip_check(site, self.tmp)
        self.assertEqual(cp.returncode, 0, harness.describe(cp))
        # The bytecode is valid and used: importing with bytecode writes disabled works.
        cp = harness.run_python("import purepkg, datafiles_extra; print(purepkg.__cached__)",
                                site, cwd=self.tmp)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertIn("__pycache__", cp.stdout)


if __name__ == "__main__":
    harness.main()
