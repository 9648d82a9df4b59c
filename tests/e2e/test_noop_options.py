#!/usr/bin/python3
"""The no-op stamp changes with every option that changes the result (issue 11, "The suite must
catch what it claims to": a rerun with another --python-version was a silent no-op exiting 0).

Each option of `materializer install` is decided here (README "No-op", materializer/stamp.h):
every option that changes what gets installed is varied between two runs and must reinstall
(report "noop": false, and the prefix shows the change where it can), the same options twice
must be a no-op, and the options that only change how the run goes must stay a no-op. Also:
a moved prefix (conda files carry the prefix path), a narrower --allow-file-urls (the policy
must refuse again, not no-op) and an edited requirements `-r` include (its bytes decided the
result, the lock's own bytes do not cover them)."""

import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import harness  # noqa: E402


class NoopOptionsTest(harness.MaterializerTestCase):

    def setUp(self):
        super().setUp()
        self.n = 0

    def run_install(self, lock, prefix, *extra, code=0):
        """Installs and returns (cp, report or None)."""
        self.n += 1
        report = self.path(f"r{self.n}.json")
        cp = self.install(lock, prefix, self.path("cache"), "--report", report, *extra)
        self.assertExit(cp, code)
        return cp, harness.read_json(report) if os.path.exists(report) else None

    def assertReinstalls(self, lock, prefix, *extra, code=0):
        cp, rep = self.run_install(lock, prefix, *extra, code=code)
        self.assertNotIn("nothing to do", cp.stderr, f"{extra}: a silent no-op")
        if rep is not None:
            self.assertFalse(rep["noop"], f"{extra}: no-op although the input changed")
        return cp

    def assertNoop(self, lock, prefix, *extra):
        cp, rep = self.run_install(lock, prefix, *extra)
        self.assertTrue(rep["noop"], f"{extra}: reinstalled although nothing changed"
                        + harness.describe(cp))
        if "-q" not in extra:
            self.assertIn("nothing to do", cp.stderr)

    # --- conda locks -------------------------------------------------------------------

    def test_conda_options(self):
        fx = self.fx
        with harness.HttpServer(fx.root) as srv:
            lock = fx.render_lock("conda-lock.yml", srv.url + "/channel", self.tmp)
            prefix = self.path("env")
            site311 = os.path.join(prefix, "lib/python3.11/site-packages")
            site312 = os.path.join(prefix, "lib/python3.12/site-packages")
            self.assertReinstalls(lock, prefix)
            self.assertNoop(lock, prefix)
            # Options that change how, not what: still a no-op.
            for extra in (["--jobs", "1"], ["--max-downloads", "2"], ["--no-stream"],
                          ["--max-connections-per-host", "1"], ["--stall-timeout", "3"],
                          ["--offline"], ["-v"], ["-q"], ["--max-lock-size", "1MiB"],
                          ["--trace", self.path("t.json")]):
                with self.subTest(same=extra):
                    self.assertNoop(lock, prefix, *extra)
            # Another cache holds the same bytes by hash: still a no-op.
            cp = self.mat("install", lock, "--prefix", prefix, "--cache-dir", self.path("c2"))
            self.assertExit(cp, 0)
            self.assertIn("nothing to do", cp.stderr)

            # --python-version: noarch python packages move to lib/pythonX.Y.
            self.assertTrue(os.path.isdir(os.path.join(site311, "mypkg")))
            self.assertReinstalls(lock, prefix, "--python-version", "3.12")
            self.assertTrue(os.path.isdir(os.path.join(site312, "mypkg")))
            self.assertNoop(lock, prefix, "--python-version", "3.12")
            # A patch version names the same X.Y, but is another option value: reinstalled, and
            # the launcher still says python3.11 (never python3.11.7).
            self.assertReinstalls(lock, prefix, "--python-version", "3.11.7")
            with open(os.path.join(prefix, "bin", "mypkg-cli"), "rb") as fh:
                self.assertEqual(fh.readline(),
                                 b"#!" + prefix.encode() + b"/bin/python3.11\n")
            self.assertNoop(lock, prefix, "--python-version", "3.11.7")
            self.assertReinstalls(lock, prefix)

            # --link-mode: copies instead of hard links.
            self.assertReinstalls(lock, prefix, "--link-mode", "copy")
            self.assertNoop(lock, prefix, "--link-mode", "copy")
            self.assertReinstalls(lock, prefix)

            # --platform / --environment: another selection is never the old prefix (this lock
            # has linux-64 only: the other selects nothing, exit 2, not "nothing to do").
            self.assertReinstalls(lock, prefix, "--platform", "linux-aarch64", code=2)
            self.assertReinstalls(lock, prefix, "--environment", "other")
            self.assertNoop(lock, prefix, "--environment", "other")
            self.assertReinstalls(lock, prefix)
            pixi = fx.render_lock("pixi.lock", srv.url + "/channel", self.tmp)
            self.assertReinstalls(pixi, prefix)
            self.assertNoop(pixi, prefix)
            self.assertReinstalls(pixi, prefix, "--environment", "nope", code=2)

            # --force reinstalls whatever the stamp says.
            self.assertReinstalls(pixi, prefix, "--force")

            # A moved prefix: the conda files carry the old path, so the new one is relinked.
            fresh, moved = self.path("fresh"), self.path("moved")
            self.assertReinstalls(pixi, fresh)
            os.rename(fresh, moved)
            self.assertReinstalls(pixi, moved)
            self.assertPrefixMatches(moved, "pixi.lock")
            self.assertNoop(pixi, moved)

    def test_narrower_allow_file_urls_is_refused_not_a_noop(self):
        fx = self.fx
        lock = self.path("lock", "conda-lock.yml")
        os.makedirs(os.path.dirname(lock))
        shutil.copy(os.path.join(fx.root, fx.manifest["locks"]["conda-lock.yml"]["file"]), lock)
        prefix = self.path("env")
        self.assertReinstalls(lock, prefix, "--allow-file-urls", fx.channel)
        self.assertNoop(lock, prefix, "--allow-file-urls", fx.channel)
        cp = self.assertReinstalls(lock, prefix, code=2)
        self.assertIn("--allow-file-urls", cp.stderr)

    # --- wheels ------------------------------------------------------------------------

    def test_wheel_options(self):
        wfx = harness.wheel_fixtures()
        with harness.HttpServer(wfx.root) as srv:
            lock = wfx.render_lock("pylock.toml", srv.url, self.tmp)
            prefix = self.path("env")
            self.assertReinstalls(lock, prefix, "--python-version", "3.11")
            self.assertNoop(lock, prefix, "--python-version", "3.11")
            # Another X.Y: the lock's cp311 wheel no longer fits (exit 2), never "nothing to do".
            self.assertReinstalls(lock, prefix, "--python-version", "3.12", code=2)
            for a, b in ((["--python-version", "3.11"], ["--python", "/usr/bin/python3"]),
                         (["--python-version", "3.11"], ["--python-version", "3.11", "--compile"]),
                         (["--python-version", "3.11"], ["--python-version", "3.11",
                                                         "--extra", "feature"]),
                         (["--python-version", "3.11"], ["--python-version", "3.11",
                                                         "--group", "dev"])):
                with self.subTest(a=a, b=b):
                    self.assertNoop(lock, prefix, *a)
                    self.assertReinstalls(lock, prefix, *b)
                    self.assertNoop(lock, prefix, *b)
                    self.assertReinstalls(lock, prefix, *a)
            # --python names a link: another interpreter behind the same path is another
            # target (an upgrade moving python3 -> python3.12), so the stamp follows the link.
            link = self.path("bin", "python3")
            os.makedirs(os.path.dirname(link))
            os.symlink(os.path.realpath(harness.SYSTEM_PYTHON), link)
            self.assertReinstalls(lock, prefix, "--python", link)
            self.assertNoop(lock, prefix, "--python", link)
            other = self.path("other", "python3")
            os.makedirs(os.path.dirname(other))
            shutil.copy2(os.path.realpath(harness.SYSTEM_PYTHON), other)
            os.unlink(link)
            os.symlink(other, link)
            self.assertReinstalls(lock, prefix, "--python", link)
            self.assertNoop(lock, prefix, "--python", link)
            self.assertReinstalls(lock, prefix, "--python-version", "3.11", "--compile")
            pyc = [f for _, _, fs in os.walk(prefix) for f in fs if f.endswith(".pyc")]
            self.assertTrue(pyc, "--compile wrote no .pyc")

    def test_index_options_and_requirements_includes(self):
        wfx = harness.wheel_fixtures()
        with harness.HttpServer(wfx.root) as srv:
            d = self.path("lock")
            os.makedirs(d)
            base = wfx.render_lock("requirements.txt", srv.url, d)
            os.rename(base, os.path.join(d, "base.txt"))
            lock = os.path.join(d, "requirements.txt")
            with open(lock, "w") as fh:
                fh.write("-r base.txt\n")
            prefix = self.path("env")
            py = ["--python-version", "3.11"]
            self.assertReinstalls(lock, prefix, *py)
            self.assertNoop(lock, prefix, *py)
            for b in (["--index-url", srv.url + "/simple-html"],
                      ["--extra-index-url", srv.url + "/simple-html"],
                      ["--find-links", srv.url + "/find-links.html"]):
                with self.subTest(b=b):
                    self.assertReinstalls(lock, prefix, *py, *b)
                    self.assertNoop(lock, prefix, *py, *b)
                    self.assertReinstalls(lock, prefix, *py)
            # The included file is edited (one comment): its bytes are part of the input.
            with open(os.path.join(d, "base.txt"), "a") as fh:
                fh.write("# edited\n")
            self.assertReinstalls(lock, prefix, *py)
            self.assertNoop(lock, prefix, *py)
            os.unlink(os.path.join(d, "base.txt"))
            cp = self.assertReinstalls(lock, prefix, *py, code=2)
            self.assertIn("base.txt", cp.stderr)


if __name__ == "__main__":
    harness.main()
