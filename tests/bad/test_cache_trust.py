#!/usr/bin/python3
"""A cache that another user could change is never trusted (issue 11, defect 6; README
"Permission model"). A cache directory writable by others is refused (exit 2) before anything
is fetched; an entry that fails the check is passed over with a warning naming it and produced
afresh, so tampered bytes never reach the prefix; `cache verify` lists whatever fails the check.

Runs as any user; the cases that need another owner chown to uid 12345 and skip (saying so)
when not run as root."""

import json
import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import harness  # noqa: E402

OTHER_UID = 12345
EVIL = b"#!/bin/sh\necho pwned\n"


def chown_tree(path, uid):
    os.lchown(path, uid, -1)
    for d, dirs, files in os.walk(path):
        for n in dirs + files:
            os.lchown(os.path.join(d, n), uid, -1)


class CacheTrustTest(harness.MaterializerTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.srv = harness.HttpServer(cls.fx.root).start()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def setUp(self):
        super().setUp()
        self.lock = self.fx.render_lock("conda-lock.yml", self.srv.url + "/channel", self.tmp)
        self.cache = self.path("cache")
        self.exp = self.fx.expected("conda-lock.yml")
        self.key = next(p["key"] for p in self.exp["packages"] if p["name"] == "mathelper")
        self.tree = os.path.join(self.cache, "v1", "trees", self.key)
        # A plain file: hard-linked from the tree into every prefix.
        self.readme = os.path.join(self.tree, "pkg", "share", "mathelper", "README")

    def warm(self):
        cp = self.install(self.lock, self.path("env1"), self.cache)
        self.assertExit(cp, 0)
        self.assertPrefixMatches(self.path("env1"), "conda-lock.yml")
        self.assertTrue(os.path.isfile(self.readme), self.readme)

    def downloads(self, file_name):
        with self.srv.lock:
            return sum(1 for (m, p, _) in self.srv.requests if m == "GET" and
                       p.endswith("/" + file_name))

    def assertReplacedWithWarning(self, entry, why):
        """An install into a new prefix passes the entry over with a warning naming it, and the
        prefix gets the package's own bytes; the cache is healthy afterwards."""
        prefix = self.path("env2")
        cp = self.install(self.lock, prefix, self.cache)
        self.assertExit(cp, 0)
        with open(os.path.join(prefix, "share", "mathelper", "README"), "rb") as fh:
            self.assertNotEqual(fh.read(), EVIL, "the tampered file was installed")
        self.assertPrefixMatches(prefix, "conda-lock.yml")
        warnings = [ln for ln in cp.stderr.splitlines() if ln.startswith("warning:")]
        self.assertTrue([w for w in warnings if f"cache entry {entry}: {why}" in w
                         and "mathelper" in w],
                        "no warning names the untrusted entry" + harness.describe(cp))
        self.assertEqual(harness.cache_tmp(self.cache), [], "the replaced entry was left in tmp/")
        self.assertExit(self.mat("cache", "verify", "--cache-dir", self.cache), 0)
        # The next run trusts the fresh entry: no warning.
        cp = self.install(self.lock, self.path("env3"), self.cache)
        self.assertExit(cp, 0)
        self.assertNotIn("cache entry", cp.stderr)

    # --- entries ----------------------------------------------------------------------------

    def test_tree_whose_pkg_dir_others_can_write_is_passed_over(self):
        # What a shared cache allows: with pkg/ writable, anyone can swap a directory in it for
        # their own copy with one file changed.
        self.warm()
        pkg = os.path.join(self.tree, "pkg")
        os.chmod(pkg, 0o777)
        share = os.path.join(pkg, "share")
        os.rename(share, share + ".orig")
        shutil.copytree(share + ".orig", share, symlinks=True)
        shutil.rmtree(share + ".orig")
        os.unlink(self.readme)
        with open(self.readme, "wb") as fh:
            fh.write(EVIL)
        self.assertReplacedWithWarning(pkg, "writable by group and others (mode 0777)")

    def test_tree_owned_by_another_user_is_passed_over(self):
        if os.geteuid() != 0:
            self.skipTest(f"needs root to chown to uid {OTHER_UID}")
        self.warm()
        # As if that user had published it (or still could change it): every file is theirs.
        chown_tree(self.tree, OTHER_UID)
        os.chmod(self.readme, 0o644)
        with open(self.readme, "r+b") as fh:
            fh.write(EVIL)
        self.assertReplacedWithWarning(self.tree, f"owned by uid {OTHER_UID}, not by root")

    def test_world_writable_file_left_by_an_older_version_is_never_installed(self):
        # Before the fix, a package's 0666 member became a world-writable cache file that
        # anyone could rewrite. Such a tree has a version-1 manifest (keys sorted: "files"
        # first): it is extracted afresh, once, with a note.
        self.warm()
        manifest = os.path.join(self.tree, "manifest.json")
        with open(manifest, encoding="utf-8") as fh:
            doc = json.load(fh)
        doc["version"] = 1
        os.unlink(manifest)
        with open(manifest, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, sort_keys=True, separators=(",", ":"))
        os.chmod(self.readme, 0o666)
        with open(self.readme, "wb") as fh:   # what any user could do to it
            fh.write(EVIL)
        prefix = self.path("env2")
        cp = self.install(self.lock, prefix, self.cache)
        self.assertExit(cp, 0)
        with open(os.path.join(prefix, "share", "mathelper", "README"), "rb") as fh:
            self.assertNotEqual(fh.read(), EVIL, "the tampered file was installed")
        self.assertPrefixMatches(prefix, "conda-lock.yml")
        self.assertIn("note: 1 cache entries made by an older materializer were extracted "
                      "afresh", cp.stderr)
        self.assertEqual(os.stat(self.readme).st_mode & 0o777, 0o644)
        self.assertExit(self.mat("cache", "verify", "--cache-dir", self.cache), 0)

    def test_untrusted_archive_is_downloaded_again_not_extracted(self):
        # A valid archive of another package put in place of mathelper's, through its
        # world-writable mode, with the tree gone: extracting it would install that package's
        # files as mathelper's.
        self.warm()
        other = next(p for p in self.exp["packages"]
                     if p["name"] == "datapkg")
        archives = os.path.join(self.cache, "v1", "archives")
        archive = os.path.join(archives, self.key + ".tar.bz2")
        shutil.rmtree(self.tree)
        os.chmod(archive, 0o666)
        shutil.copyfile(os.path.join(archives, other["key"] + ".tar.bz2"), archive)
        before = self.downloads("mathelper-0.3.1-h5678abc_2.tar.bz2")
        prefix = self.path("env2")
        cp = self.install(self.lock, prefix, self.cache)
        self.assertExit(cp, 0)
        self.assertPrefixMatches(prefix, "conda-lock.yml")
        self.assertEqual(self.downloads("mathelper-0.3.1-h5678abc_2.tar.bz2"), before + 1)
        self.assertIn(f"cache entry {archive}: writable by group and others (mode 0666): "
                      "downloading it afresh", cp.stderr)
        self.assertEqual(os.stat(archive).st_mode & 0o777, 0o644)
        self.assertExit(self.mat("cache", "verify", "--cache-dir", self.cache), 0)

    # --- the cache's directories ----------------------------------------------------------------

    def test_cache_writable_by_others_is_refused_before_anything_is_fetched(self):
        os.makedirs(self.cache)
        os.chmod(self.cache, 0o777)
        prefix = self.path("env")
        with self.srv.lock:
            seen = len(self.srv.requests)
        cp = self.install(self.lock, prefix, self.cache)
        self.assertExit(cp, 2)
        self.assertIn(f"{self.cache}: writable by group and others (mode 0777): "
                      f"fix: `chmod go-w {self.cache}`", cp.stderr)
        with self.srv.lock:
            self.assertEqual(self.srv.requests[seen:], [], "fetched from a refused cache's run")
        self.assertPrefixUntouched(prefix)
        self.assertFalse(os.path.exists(os.path.join(self.cache, "v1")),
                         "created directories in a refused cache")
        # The other cache commands: stats and clean refuse too; verify lists the problem.
        for cmd in ("stats", "clean"):
            self.assertExit(self.mat("cache", cmd, "--cache-dir", self.cache), 2)
        cp = self.mat("cache", "verify", "--cache-dir", self.cache)
        self.assertExit(cp, 1)
        self.assertIn(f"{self.cache}: writable by group and others (mode 0777)", cp.stdout)
        # The fix the message gives works.
        os.chmod(self.cache, 0o755)
        self.assertExit(self.install(self.lock, prefix, self.cache), 0)
        self.assertPrefixMatches(prefix, "conda-lock.yml")

    def test_symlink_planted_at_a_lock_is_not_followed(self):
        self.warm()
        shutil.rmtree(self.tree)
        os.unlink(os.path.join(self.cache, "v1", "archives", self.key + ".tar.bz2"))
        lock_file = os.path.join(self.cache, "v1", "locks", self.key + ".lock")
        os.unlink(lock_file)
        victim = self.path("victim")
        os.symlink(victim, lock_file)
        cp = self.install(self.lock, self.path("env2"), self.cache)
        self.assertExit(cp, 1)
        self.assertIn(f"lock {lock_file}: is a symbolic link", cp.stderr)
        self.assertIn(f"`rm {lock_file}`", cp.stderr)
        self.assertFalse(os.path.lexists(victim), "created a file through the planted symlink")
        self.assertPrefixUntouched(self.path("env2"))

    # --- cache verify ---------------------------------------------------------------------------

    def test_verify_lists_what_others_could_change(self):
        # A change only the owner (or root) can make, e.g. `chmod -R g+w` on a prefix whose
        # files are hard links into the cache: the warm path does not stat every file, verify
        # does.
        self.warm()
        os.chmod(self.readme, 0o666)
        cp = self.mat("cache", "verify", "--cache-dir", self.cache)
        self.assertExit(cp, 1)
        self.assertIn(f"{self.key}: {self.readme}: writable by group and others (mode 0666)",
                      cp.stdout)


if __name__ == "__main__":
    harness.main()
