#!/usr/bin/python3
"""`cache verify --repair`: each kind of damage is found by `cache verify` and repaired per entry
(re-extracted from a good archive, fetched again from the recorded URL, or removed when neither
is possible); the entry is good afterwards and no other entry is touched (inode and mtime of
every file unchanged). Also: the repair takes the entry lock, damaged md5 index records are
dropped, and no credential is ever recorded as a source."""

import fcntl
import hashlib
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import harness  # noqa: E402

LOCK = "conda-lock.yml"


def snapshot(cache, skip_key):
    """(inode, mtime_ns, size) of every archive and tree file of every entry but `skip_key`."""
    out = {}
    v1 = os.path.join(cache, "v1")
    for sub in ("archives", "trees"):
        for root, dirs, files in os.walk(os.path.join(v1, sub)):
            for name in dirs + files:
                p = os.path.join(root, name)
                rel = os.path.relpath(p, v1)
                if skip_key in rel:
                    continue
                st = os.lstat(p)
                out[rel] = (st.st_ino, st.st_mtime_ns, st.st_size)
    return out


def flip_byte(path, offset=0):
    os.chmod(path, 0o644)
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ 0x20]))


class CacheRepairTest(harness.MaterializerTestCase):

    def setUp(self):
        super().setUp()
        self.cache = self.path("cache")
        self.exp = self.fx.expected(LOCK)

    def populate_http(self, srv):
        lock = self.fx.render_lock(LOCK, srv.url + "/channel", self.tmp)
        self.assertExit(self.mat("prewarm", lock, "--cache-dir", self.cache), 0)
        return lock

    def populate_file(self):
        lock = os.path.join(self.fx.root, "locks", "file", LOCK)
        cp = self.mat("prewarm", lock, "--cache-dir", self.cache, "--allow-file-urls",
                      self.fx.channel)
        self.assertExit(cp, 0)
        return lock

    def pkg(self, name):
        return next(p for p in self.exp["packages"] if p["name"] == name)

    def archive(self, key):
        d = os.path.join(self.cache, "v1", "archives")
        names = [n for n in os.listdir(d) if n.startswith(key)]
        self.assertEqual(len(names), 1, names)
        return os.path.join(d, names[0])

    def tree(self, key, *rel):
        return os.path.join(self.cache, "v1", "trees", key, *rel)

    def damaged_verify_says_repair(self, key):
        cp = self.mat("cache", "verify", "--cache-dir", self.cache)
        self.assertExit(cp, 1)
        self.assertIn(key, cp.stdout)
        self.assertIn("materializer cache verify --repair", cp.stderr)
        self.assertNotIn("clean --all", cp.stdout + cp.stderr)

    def repair(self, key, *expect):
        cp = self.mat("cache", "verify", "--repair", "--cache-dir", self.cache)
        self.assertExit(cp, 0)
        line = next((ln for ln in cp.stdout.splitlines() if key in ln and
                     ln.startswith(("repaired", "removed"))), None)
        self.assertIsNotNone(line, harness.describe(cp))
        for e in expect:
            self.assertIn(e, line, harness.describe(cp))
        self.assertIn("ok (", cp.stdout)
        self.assertExit(self.mat("cache", "verify", "--cache-dir", self.cache), 0)
        return cp

    def check_tree_damage_reextracted(self, damage):
        with harness.HttpServer(self.fx.root) as srv:
            self.populate_http(srv)
            p = self.pkg("mathelper")
            key = p["key"]
            readme = self.tree(key, "pkg", "share", "mathelper", "README")
            with open(readme, "rb") as fh:
                original = fh.read()
            mode = os.stat(readme).st_mode & 0o777
            before = snapshot(self.cache, key)
            damage(key, readme)
            self.damaged_verify_says_repair(key)
            n = srv.count("/" + p["url_path"])
            self.repair(key, "repaired", "extracted afresh from its archive")
            self.assertEqual(srv.count("/" + p["url_path"]), n, "the good archive was refetched")
        with open(readme, "rb") as fh:
            self.assertEqual(fh.read(), original)
        self.assertEqual(os.stat(readme).st_mode & 0o777, mode)
        self.assertEqual(snapshot(self.cache, key), before, "other entries were touched")

    def test_flipped_byte_in_tree_file_is_reextracted(self):
        self.check_tree_damage_reextracted(lambda key, f: flip_byte(f))

    def test_missing_tree_file_is_reextracted(self):
        self.check_tree_damage_reextracted(lambda key, f: os.unlink(f))

    def test_wrong_mode_is_reextracted(self):
        self.check_tree_damage_reextracted(lambda key, f: os.chmod(f, 0o600))

    def test_group_writable_tree_file_is_reextracted(self):
        def damage(key, f):
            st = os.stat(f)
            os.chown(f, st.st_uid, 12345)   # a group other than root's
            os.chmod(f, 0o664)
        self.check_tree_damage_reextracted(damage)

    def test_damaged_manifest_is_reextracted(self):
        def damage(key, f):
            m = self.tree(key, "manifest.json")
            os.chmod(m, 0o644)
            with open(m, "r+b") as fh:
                fh.truncate(os.path.getsize(m) // 2)
        self.check_tree_damage_reextracted(damage)

    def test_truncated_archive_is_fetched_again(self):
        with harness.HttpServer(self.fx.root) as srv:
            self.populate_http(srv)
            p = self.pkg("libmat")
            key = p["key"]
            archive = self.archive(key)
            tree_before = snapshot(self.cache, "no-such-key")
            with open(archive, "r+b") as fh:
                fh.truncate(100)
            self.damaged_verify_says_repair(key)
            n = srv.count("/" + p["url_path"])
            self.repair(key, "repaired", "archive fetched again from " + srv.url)
            self.assertEqual(srv.count("/" + p["url_path"]), n + 1)
        with open(archive, "rb") as fh:
            self.assertEqual(hashlib.sha256(fh.read()).hexdigest(), p["sha256"])
        # Everything but the archive, the good tree of the same entry included, is untouched.
        after = snapshot(self.cache, "no-such-key")
        rel = os.path.relpath(archive, os.path.join(self.cache, "v1"))
        tree_before.pop(rel)
        after.pop(rel)
        self.assertEqual(after, tree_before)

    def test_archive_and_tree_damaged_are_fetched_and_extracted(self):
        with harness.HttpServer(self.fx.root) as srv:
            self.populate_http(srv)
            p = self.pkg("mathelper")
            key = p["key"]
            before = snapshot(self.cache, key)
            flip_byte(self.archive(key), 200)
            os.unlink(self.tree(key, "pkg", "share", "mathelper", "README"))
            self.damaged_verify_says_repair(key)
            self.repair(key, "repaired", "fetched again from", "extracted afresh")
            self.assertEqual(srv.count("/" + p["url_path"]), 2)
        self.assertTrue(os.path.isfile(self.tree(key, "pkg", "share", "mathelper", "README")))
        self.assertEqual(snapshot(self.cache, key), before)

    def test_refetch_that_fails_removes_the_entry(self):
        with harness.HttpServer(self.fx.root) as srv:
            lock = self.populate_http(srv)
            p = self.pkg("mathelper")
            key = p["key"]
            before = snapshot(self.cache, key)
            flip_byte(self.archive(key), 200)
            flip_byte(self.tree(key, "pkg", "share", "mathelper", "README"))
            srv.hooks["/channel/" + p["url_path"]] = 404
            self.repair(key, "removed", "failed", "the next install that needs it downloads it")
            self.assertFalse(os.path.exists(self.tree(key)))
            self.assertEqual(snapshot(self.cache, key), before)
            del srv.hooks["/channel/" + p["url_path"]]
            cp = self.install(lock, self.path("env"), self.cache)
            self.assertExit(cp, 0)
        self.assertPrefixMatches(self.path("env"), LOCK)

    def test_refetch_of_other_bytes_is_refused(self):
        with harness.HttpServer(self.fx.root) as srv:
            self.populate_http(srv)
            p = self.pkg("libmat")
            key = p["key"]
            archive = self.archive(key)
            with open(archive, "r+b") as fh:
                fh.truncate(100)

            def other_bytes(handler):
                body = b"not the archive the key names" * 10
                handler.send_response(200)
                handler.send_header("Content-Length", str(len(body)))
                handler.end_headers()
                handler.wfile.write(body)
                return True
            srv.hooks["/channel/" + p["url_path"]] = other_bytes
            self.repair(key, "removed", "sha256 mismatch: expected " + p["sha256"],
                        "tree is intact")
        self.assertFalse(os.path.exists(archive))
        self.assertEqual(harness.cache_tmp(self.cache), [])

    def test_no_source_removes_the_damaged_entry_and_install_fetches_it(self):
        lock = self.populate_file()   # file:// URLs are never recorded as sources
        self.assertEqual([n for n in os.listdir(os.path.join(self.cache, "v1", "meta"))
                          if n.endswith(".source")], [])
        p = self.pkg("mathelper")
        key = p["key"]
        before = snapshot(self.cache, key)
        flip_byte(self.archive(key), 200)
        flip_byte(self.tree(key, "pkg", "share", "mathelper", "README"))
        self.repair(key, "removed", "no download URL is recorded",
                    "the next install that needs it downloads it again")
        self.assertFalse(os.path.exists(self.tree(key)))
        self.assertEqual(snapshot(self.cache, key), before)
        cp = self.install(lock, self.path("env"), self.cache, "--allow-file-urls", self.fx.channel)
        self.assertExit(cp, 0)
        self.assertPrefixMatches(self.path("env"), LOCK)
        self.assertTrue(os.path.isdir(self.tree(key)))

    def test_no_source_and_good_tree_keeps_the_tree(self):
        lock = self.populate_file()
        p = self.pkg("libmat")
        key = p["key"]
        archive = self.archive(key)
        with open(archive, "r+b") as fh:
            fh.truncate(10)
        tree_files = snapshot(self.cache, "no-such-key")
        self.repair(key, "removed", "tree is intact")
        self.assertFalse(os.path.exists(archive))
        rel = os.path.relpath(archive, os.path.join(self.cache, "v1"))
        tree_files.pop(rel)
        self.assertEqual(snapshot(self.cache, "no-such-key"), tree_files)
        cp = self.install(lock, self.path("env"), self.cache, "--offline", "--allow-file-urls",
                          self.fx.channel)
        self.assertExit(cp, 0)
        self.assertPrefixMatches(self.path("env"), LOCK)

    def test_repair_waits_for_the_entry_lock(self):
        with harness.HttpServer(self.fx.root) as srv:
            self.populate_http(srv)
            key = self.pkg("mathelper")["key"]
            readme = self.tree(key, "pkg", "share", "mathelper", "README")
            with open(readme, "rb") as fh:
                original = fh.read()
            flip_byte(readme)
            lockfile = os.path.join(self.cache, "v1", "locks", key + ".lock")
            fd = os.open(lockfile, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)   # an install producing the entry
                proc = harness.start_materializer(
                    self.binary, ["cache", "verify", "--repair", "--cache-dir", self.cache])
                time.sleep(1.0)
                self.assertIsNone(proc.poll(), "repair did not wait for the entry lock")
                with open(readme, "rb") as fh:
                    self.assertNotEqual(fh.read(), original, "repaired without the lock")
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
            out, err = proc.communicate(timeout=120)
            self.assertEqual(proc.returncode, 0, out + err)
            self.assertIn("repaired " + key, out)
        with open(readme, "rb") as fh:
            self.assertEqual(fh.read(), original)
        self.assertExit(self.mat("cache", "verify", "--cache-dir", self.cache), 0)

    def test_damaged_md5_index_record_is_removed(self):
        with harness.HttpServer(self.fx.root) as srv:
            lock = self.fx.render_lock("explicit.txt", srv.url + "/channel", self.tmp)
            self.assertExit(self.mat("prewarm", lock, "--cache-dir", self.cache), 0)
        meta = os.path.join(self.cache, "v1", "meta")
        links = sorted(n for n in os.listdir(meta) if n.endswith(".sha256"))
        n_md5 = sum(1 for p in self.fx.expected("explicit.txt")["packages"]
                    if p["locked_by"] == "md5")
        self.assertEqual(len(links), n_md5, links)
        victim = os.path.join(meta, links[0])
        with open(victim, "r+b") as fh:
            data = fh.read()
            fh.seek(10)
            fh.write(b"0" if data[10:11] != b"0" else b"1")
        cp = self.mat("cache", "verify", "--cache-dir", self.cache)
        self.assertExit(cp, 1)
        self.assertIn("damaged md5 index record", cp.stdout)
        cp = self.repair(links[0][:-len(".sha256")], "removed")
        self.assertFalse(os.path.exists(victim))

    def test_install_from_a_damaged_tree_names_the_repair_then_works(self):
        with harness.HttpServer(self.fx.root) as srv:
            lock = self.populate_http(srv)
            key = self.pkg("mathelper")["key"]
            shutil.rmtree(self.tree(key, "pkg", "share", "mathelper"))
            cp = self.install(lock, self.path("env"), self.cache)
            self.assertExit(cp, 1)
            self.assertIn("materializer cache verify --repair", cp.stderr)
            self.assertNotIn("clean --all", cp.stdout + cp.stderr)
            self.repair(key, "repaired", "extracted afresh from its archive")
            cp = self.install(lock, self.path("env"), self.cache)
            self.assertExit(cp, 0)
        self.assertPrefixMatches(self.path("env"), LOCK)

    def test_credentials_are_never_recorded(self):
        with harness.HttpServer(self.fx.root) as srv:
            base = srv.url.replace("http://", "http://someone:s3cret-pw@") + "/channel"
            lock = self.fx.render_lock(LOCK, base, self.tmp)
            self.assertExit(self.mat("prewarm", lock, "--cache-dir", self.cache), 0)
        meta = os.path.join(self.cache, "v1", "meta")
        self.assertEqual([n for n in os.listdir(meta) if n.endswith(".source")], [])
        for root, _, files in os.walk(self.cache):
            for f in files:
                with open(os.path.join(root, f), "rb") as fh:
                    self.assertNotIn(b"s3cret-pw", fh.read(), os.path.join(root, f))

    def test_sources_are_recorded_for_http_entries(self):
        with harness.HttpServer(self.fx.root) as srv:
            self.populate_http(srv)
            meta = os.path.join(self.cache, "v1", "meta")
            for p in self.exp["packages"]:
                with open(os.path.join(meta, p["key"] + ".source")) as fh:
                    self.assertEqual(fh.read(), srv.url + "/channel/" + p["url_path"] + "\n")
            # An entry that lost its record (made by an older version) learns it on a hit.
            os.unlink(os.path.join(meta, self.exp["packages"][0]["key"] + ".source"))
            lock = self.fx.render_lock(LOCK, srv.url + "/channel", self.tmp)
            self.assertExit(self.install(lock, self.path("env"), self.cache), 0)
            self.assertTrue(os.path.isfile(
                os.path.join(meta, self.exp["packages"][0]["key"] + ".source")))


if __name__ == "__main__":
    harness.main()
