#!/usr/bin/python3
"""Issue 11, defects 1, 2, 3 and 5: every write into the prefix stays inside it, and nothing in
the prefix is written through into the cache. Each test builds its hostile packages itself (conda
packages with scripts/gen_fixtures.py's writer, wheels with scripts/gen_wheels.py's), installs
them from file:// URLs with the real binary, and checks the outcome:

  - exit status 1 with the hostile package named on stderr;
  - nothing outside the prefix and the cache changed: the prefix sits at TMP/s1/s2/env, with a
    canary directory beside it (TMP/s1/s2/canary); the whole of TMP except the prefix and the
    cache is compared before and after, and escapes aimed at / are checked by name;
  - the prefix stays marked incomplete (conda-meta/.materializer-incomplete), the hostile
    package gets no conda-meta record, and `materializer cache verify` passes.
"""

import bz2
import json
import os
import sys
import tarfile
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import harness  # noqa: E402

gf = harness.gen_fixtures
gw = harness.gen_wheels
MARKER = os.path.join("conda-meta", ".materializer-incomplete")


def snapshot(root, skip):
    """{relative path: (kind, bytes or link target)} of everything under root, minus `skip`."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in skip]
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            if os.path.islink(full):
                out[rel] = ("link", os.readlink(full))
            elif os.path.isdir(full):
                out[rel] = ("dir", None)
            else:
                with open(full, "rb") as fh:
                    out[rel] = ("file", fh.read())
    return out


class PrefixEscapeTest(harness.MaterializerTestCase):

    def setUp(self):
        super().setUp()
        self.prefix = self.path("s1", "s2", "env")
        self.canary = self.path("s1", "s2", "canary")
        self.cache = self.path("cache")
        self.chan = self.path("chan")
        os.makedirs(self.canary)
        with open(os.path.join(self.canary, "keep.txt"), "w") as fh:
            fh.write("canary\n")
        self.outside_names = []  # absolute paths an escape would create

    # --- building hostile inputs ---------------------------------------------------------

    def conda_pkg(self, pkg, index_overrides=None):
        """Writes pkg into the channel (index.json fields overridden if asked); returns its lock
        entry."""
        info, payload = gf.pkg_members(pkg)
        if index_overrides:
            info = [(n, k, self._patched_index(d, index_overrides) if n == "info/index.json"
                     else d, m, t) for n, k, d, m, t in info]
        if pkg.fmt == "tar.bz2":
            blob = bz2.compress(gf.tar_bytes(info + payload, tarfile.GNU_FORMAT))
        else:
            self.assertIsNone(index_overrides, "overrides are written for .tar.bz2 only")
            blob = gf.build_archive(pkg)
        path = os.path.join(self.chan, pkg.subdir, pkg.file_name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(blob)
        return gf.lock_entry(pkg, blob)

    @staticmethod
    def _patched_index(data, overrides):
        index = json.loads(data)
        index.update(overrides)
        return gf.jdump(index)

    def conda_lock(self, entries):
        text = gf.render(gf.conda_lock_text(entries), {"@BASE_URL@": "file://" + self.chan})
        path = self.path("conda-lock.yml")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        return path

    def wheel_lock(self, wheels):
        files = os.path.join(self.chan, "files")
        os.makedirs(files, exist_ok=True)
        packages = []
        for w in wheels:
            blob = w.build()
            with open(os.path.join(files, w.file_name), "wb") as fh:
                fh.write(blob)
            info = {"file_name": w.file_name, "sha256": gw.sha256(blob), "size": len(blob)}
            packages.append({"name": w.name, "version": w.version,
                             "wheels": [gw.file_entry(info)]})
        text = gf.render(gw.pylock_text(packages), {"@BASE_URL@": "file://" + self.chan})
        path = self.path("pylock.toml")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        return path

    def good_pkg(self, name="goodpkg"):
        return gf.Pkg(name, "1.0", "0", "linux-64", "tar.bz2",
                      [gf.f(f"share/{name}/readme.txt", "good\n"), gf.d(f"share/{name}/empty")])

    # --- running and checking ------------------------------------------------------------

    def run_install(self, lock, *extra):
        before = snapshot(self.tmp, {self.prefix, self.cache})
        for p in self.outside_names:
            self.assertFalse(os.path.lexists(p), f"{p} exists before the test")
        cp = self.install(lock, self.prefix, self.cache, *extra)
        after = snapshot(self.tmp, {self.prefix, self.cache})
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        self.assertEqual(changed, [], "written outside the prefix" + harness.describe(cp))
        for p in self.outside_names:
            self.assertFalse(os.path.lexists(p), f"written outside the prefix: {p}")
        self.assertEqual(os.listdir(self.canary), ["keep.txt"])
        return cp

    def assertRefused(self, cp, package, *needles):
        self.assertExit(cp, 1)
        self.assertIn(package, cp.stderr)
        for n in needles:
            self.assertIn(n, cp.stderr)
        self.assertTrue(os.path.exists(os.path.join(self.prefix, MARKER)),
                        "prefix not marked incomplete")
        self.assertExit(self.mat("cache", "verify", "--cache-dir", self.cache), 0)

    def assertNoRecord(self, name):
        meta = os.path.join(self.prefix, "conda-meta")
        records = os.listdir(meta) if os.path.isdir(meta) else []
        self.assertFalse([r for r in records if r.startswith(name + "-")], records)

    # --- defect 2: symlinks chained across the packages of one lock -----------------------

    def test_symlinks_chained_across_packages(self):
        a = gf.Pkg("chain-a", "1.0", "0", "linux-64", "tar.bz2", [gf.ln("a/b", "..")])
        b = gf.Pkg("chain-b", "1.0", "0", "linux-64", "tar.bz2", [gf.ln("a/b/c", "../..")])
        c = gf.Pkg("chain-c", "1.0", "0", "linux-64", "conda",
                   [gf.f("a/b/c/x/pwned.txt", "pwned\n")])
        lock = self.conda_lock([self.conda_pkg(p) for p in (a, b, c)])
        # Two levels above the prefix: TMP/s1/x/pwned.txt (caught by the snapshot too).
        self.outside_names.append(self.path("s1", "x"))
        cp = self.run_install(lock)
        self.assertRefused(cp, "chain-c", "resolves outside the prefix")
        self.assertNoRecord("chain-c")

    def test_symlink_parent_to_absolute_path_left_in_prefix(self):
        # A prefix holding an absolute link (made by another tool): nothing goes through it.
        os.makedirs(os.path.join(self.prefix, "share"))
        os.symlink(self.canary, os.path.join(self.prefix, "share", "out"))
        pkg = gf.Pkg("through-abs", "1.0", "0", "linux-64", "tar.bz2",
                     [gf.f("share/out/pwned.txt", "pwned\n")])
        cp = self.run_install(self.conda_lock([self.conda_pkg(pkg)]))
        self.assertRefused(cp, "through-abs", "resolves outside the prefix")

    # --- defect 1: wheel script names ------------------------------------------------------

    def test_wheel_script_names_that_are_not_file_names(self):
        absolute = f"/tmp/mat-issue11-{uuid.uuid4().hex}"
        names = {"dotdot": ("console_scripts", "../../x"),
                 "absolute": ("console_scripts", absolute),
                 "subdir": ("console_scripts", "a/b"),
                 "guidotdot": ("gui_scripts", "../../../gx")}
        wheels = []
        for dist, (group, script) in names.items():
            wheels.append(gw.Wheel(f"evil{dist}", "1.0", "py3-none-any",
                                   {f"evil{dist}/__init__.py": "def main(): pass\n"},
                                   entry_points={group: {script: f"evil{dist}:main"}}))
        self.outside_names += [absolute, self.path("s1", "s2", "x"), self.path("s1", "gx"),
                               os.path.join(self.prefix, "bin", "a")]
        cp = self.run_install(self.wheel_lock(wheels), "--python-version", "3.11")
        self.assertRefused(cp, "evildotdot", "is not a valid file name")
        for dist, (group, _) in names.items():
            self.assertIn(f"evil{dist}-1.0-py3-none-any.whl", cp.stderr)
        self.assertIn("console_scripts name '../../x'", cp.stderr)
        self.assertIn("gui_scripts name '../../../gx'", cp.stderr)

    def test_wheel_data_member_in_conda_meta(self):
        w = gw.Wheel("metadata-planter", "1.0", "py3-none-any",
                     {"planter/__init__.py": "",
                      "metadata_planter-1.0.data/data/conda-meta/history": "forged\n"})
        cp = self.run_install(self.wheel_lock([w]), "--python-version", "3.11")
        self.assertRefused(cp, "metadata_planter-1.0-py3-none-any.whl", "inside conda-meta/")
        hist = os.path.join(self.prefix, "conda-meta", "history")
        if os.path.exists(hist):
            with open(hist) as fh:
                self.assertNotIn("forged", fh.read())

    # --- defect 3: index.json fields that become the record's file name ---------------------

    def test_index_json_name_that_escapes(self):
        pkg = gf.Pkg("evilname", "1.0", "0", "linux-64", "tar.bz2",
                     [gf.f("share/evilname/a.txt", "a\n")])
        entry = self.conda_pkg(pkg, {"name": "../../x"})
        good = self.conda_pkg(self.good_pkg())
        # conda-meta/../../x-1.0-0.json would be TMP/s1/s2/x-1.0-0.json, beside the prefix.
        self.outside_names.append(self.path("s1", "s2", "x-1.0-0.json"))
        cp = self.run_install(self.conda_lock([good, entry]))
        self.assertRefused(cp, "evilname", "info/index.json: name '../../x'")
        self.assertFalse(os.path.exists(os.path.join(self.prefix, "share", "evilname")))
        self.assertTrue(os.path.exists(os.path.join(self.prefix, "conda-meta",
                                                    "goodpkg-1.0-0.json")))

    def test_index_json_version_and_build_that_escape(self):
        for field, value in (("version", "1/../../../y"), ("build", "0/../../z")):
            with self.subTest(field=field):
                pkg = gf.Pkg(f"evil{field}", "1.0", "0", "linux-64", "tar.bz2",
                             [gf.f(f"share/evil{field}/a.txt", "a\n")])
                cp = self.run_install(self.conda_lock([self.conda_pkg(pkg, {field: value})]))
                self.assertRefused(cp, f"evil{field}", f"info/index.json: {field}")

    # --- defect 5: conda-meta/ members, and history written through into the cache ----------

    def test_package_shipping_conda_meta_history_is_refused(self):
        evil = gf.Pkg("histpkg", "1.0", "0", "linux-64", "tar.bz2",
                      [gf.f("conda-meta/history", "==> forged <==\n"),
                       gf.f("conda-meta/numpy-9.9-0.json", "{}\n"),
                       gf.f("share/histpkg/a.txt", "a\n")])
        good = self.conda_pkg(self.good_pkg())
        lock = self.conda_lock([good, self.conda_pkg(evil)])
        cp = self.run_install(lock)
        self.assertRefused(cp, "histpkg", "conda-meta/, which only the installer writes")
        self.assertNoRecord("histpkg")
        meta = os.path.join(self.prefix, "conda-meta")
        self.assertFalse(os.path.exists(os.path.join(meta, "numpy-9.9-0.json")))
        with open(os.path.join(meta, "history")) as fh:
            self.assertNotIn("forged", fh.read())
        # Whatever else runs into this prefix now cannot write into the cache: a good install,
        # then a second run appending history.
        lock2 = self.conda_lock([good])
        self.assertExit(self.install(lock2, self.prefix, self.cache), 0)
        self.assertExit(self.install(lock2, self.prefix, self.cache, "--force"), 0)
        self.assertExit(self.mat("cache", "verify", "--cache-dir", self.cache), 0)
        with open(os.path.join(meta, "history")) as fh:
            self.assertEqual(fh.read().count("==> "), 3)

    def test_history_hard_linked_into_the_cache_is_not_written_through(self):
        # A prefix made by an older materializer may already hold conda-meta/history as a hard
        # link into a cache tree. Appending must replace it, not write into the cache.
        good = self.good_pkg()
        lock = self.conda_lock([self.conda_pkg(good)])
        self.assertExit(self.install(lock, self.prefix, self.cache), 0)
        trees = os.path.join(self.cache, "v1", "trees")
        tree_file = next(os.path.join(d, f) for d, _, fs in os.walk(trees) for f in fs
                         if f == "readme.txt")
        hist = os.path.join(self.prefix, "conda-meta", "history")
        os.remove(hist)
        os.link(tree_file, hist)
        self.assertExit(self.install(lock, self.prefix, self.cache, "--force"), 0)
        self.assertExit(self.install(lock, self.prefix, self.cache, "--force"), 0)
        with open(tree_file) as fh:
            self.assertEqual(fh.read(), "good\n")
        self.assertEqual(os.stat(hist).st_nlink, 1)
        self.assertExit(self.mat("cache", "verify", "--cache-dir", self.cache), 0)


if __name__ == "__main__":
    harness.main()
