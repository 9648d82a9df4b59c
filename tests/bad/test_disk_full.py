#!/usr/bin/python3
"""Issue 11, "Faults it must survive": disk full (a small tmpfs mounted by the test) under the
prefix and, separately, under the cache; and read-only targets (the tmpfs remounted ro). Each:
  - exit 1, the error naming the cause (ENOSPC / EROFS) and the path that failed, and for a full
    disk the --report listing the packages that failed (status "no-space");
  - the cache stays valid (`materializer cache verify` passes, no temp file left in tmp/);
  - a prefix that was touched stays marked incomplete; an untouched one stays empty;
  - once there is room (the tmpfs remounted larger / read-write), the same command completes.
Needs root (mount); the mounts are undone in cleanup.
"""

import json
import os
import subprocess
import tempfile
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import harness  # noqa: E402

MARKER = os.path.join("conda-meta", ".materializer-incomplete")


class DiskFullTest(harness.MaterializerTestCase):

    def mount(self, size):
        point = self.path(f"mnt{len(os.listdir(self.tmp))}")
        os.makedirs(point)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", point],
                       check=True)
        self.addCleanup(subprocess.run, ["umount", "-l", point])
        return point

    def remount(self, point, opts):
        subprocess.run(["mount", "-o", f"remount,{opts}", point], check=True)

    def run_install(self, srv, prefix, cache, *extra):
        lock = self.fx.render_lock("conda-lock.yml", srv.url + "/channel", self.tmp)
        report = self.path("report.json")
        cp = self.install(lock, prefix, cache, "--report", report, *extra)
        with open(report, encoding="utf-8") as fh:
            return cp, json.load(fh), lock

    def assertCacheValid(self, cache):
        cp = self.mat("cache", "verify", "--cache-dir", cache)
        self.assertExit(cp, 0)
        self.assertEqual(harness.cache_tmp(cache), [])

    def test_disk_full_under_the_prefix(self):
        point = self.mount("96k")
        prefix, cache = os.path.join(point, "env"), self.path("cache")
        with harness.HttpServer(self.fx.root) as srv:
            cp, report, lock = self.run_install(srv, prefix, cache, "--link-mode", "copy")
            self.assertExit(cp, 1)
            self.assertIn("No space left on device (ENOSPC)", cp.stderr)
            self.assertIn(prefix + "/", cp.stderr)  # the path that failed
            failed = [p for p in report["packages"] if p["status"] != "ok"]
            self.assertTrue(failed, "the report lists no package error")
            for p in failed:
                self.assertEqual(p["status"], "no-space", p)
                self.assertIn(prefix, p["error"])  # "in PREFIX: write REL" or the full path
                self.assertIn("ENOSPC", p["error"])
            self.assertTrue(os.path.exists(os.path.join(prefix, MARKER)))
            self.assertCacheValid(cache)
            self.remount(point, "size=64m")
            self.assertExit(self.install(lock, prefix, cache), 0)
            self.assertPrefixMatches(prefix, "conda-lock.yml")

    def test_disk_full_under_the_cache(self):
        point = self.mount("64k")
        prefix, cache = self.path("env"), os.path.join(point, "cache")
        with harness.HttpServer(self.fx.root) as srv:
            cp, report, lock = self.run_install(srv, prefix, cache)
            self.assertExit(cp, 1)
            self.assertIn("No space left on device (ENOSPC)", cp.stderr)
            self.assertIn(cache + "/v1/tmp/", cp.stderr)
            failed = [p for p in report["packages"] if p["status"] != "ok"]
            self.assertTrue(failed)
            self.assertTrue(all(p["status"] == "no-space" for p in failed), failed)
            self.assertPrefixUntouched(prefix)
            self.assertCacheValid(cache)
            self.remount(point, "size=64m")
            self.assertExit(self.install(lock, prefix, cache), 0)
            self.assertPrefixMatches(prefix, "conda-lock.yml")
            self.assertCacheValid(cache)

    def test_read_only_prefix(self):
        point = self.mount("64m")
        prefix, cache = os.path.join(point, "env"), self.path("cache")
        self.remount(point, "ro")
        with harness.HttpServer(self.fx.root) as srv:
            cp, report, lock = self.run_install(srv, prefix, cache)
            self.assertExit(cp, 1)
            self.assertIn("Read-only file system (EROFS)", cp.stderr)
            self.assertIn(prefix, cp.stderr)
            self.assertFalse(report["ok"])
            self.assertCacheValid(cache)
            self.remount(point, "rw")
            self.assertPrefixUntouched(prefix)
            self.assertExit(self.install(lock, prefix, cache), 0)
            self.assertPrefixMatches(prefix, "conda-lock.yml")

    def test_read_only_prefix_after_a_partial_install(self):
        """A prefix that becomes read-only midway (here: between two runs, the second one
        --force) keeps its marker and says which path could not be written."""
        point = self.mount("64m")
        prefix, cache = os.path.join(point, "env"), self.path("cache")
        with harness.HttpServer(self.fx.root) as srv:
            cp, _, lock = self.run_install(srv, prefix, cache)
            self.assertExit(cp, 0)
            with open(os.path.join(prefix, MARKER), "w") as fh:
                fh.write("left by an earlier run\n")
            self.remount(point, "ro")
            cp = self.install(lock, prefix, cache, "--force")
            self.assertExit(cp, 1)
            self.assertIn("Read-only file system (EROFS)", cp.stderr)
            self.assertIn(prefix, cp.stderr)
            self.assertTrue(os.path.exists(os.path.join(prefix, MARKER)))
            self.assertCacheValid(cache)
            self.remount(point, "rw")
            self.assertExit(self.install(lock, prefix, cache), 0)
            self.assertPrefixMatches(prefix, "conda-lock.yml")

    def test_read_only_cache(self):
        point = self.mount("64m")
        prefix, cache = self.path("env"), os.path.join(point, "cache")
        with harness.HttpServer(self.fx.root) as srv:
            self.remount(point, "ro")
            cp, report, lock = self.run_install(srv, prefix, cache)
            self.assertExit(cp, 1)
            self.assertIn("Read-only file system (EROFS)", cp.stderr)
            self.assertIn(cache, cp.stderr)
            self.assertFalse(report["ok"])
            self.assertPrefixUntouched(prefix)
            self.remount(point, "rw")
            self.assertExit(self.install(lock, prefix, cache), 0)
            self.assertPrefixMatches(prefix, "conda-lock.yml")
            self.assertCacheValid(cache)


def can_mount_tmpfs():
    """Root in a container without CAP_SYS_ADMIN cannot mount: that is the machine, not a
    materializer failure (the mount itself is not what these tests test)."""
    point = tempfile.mkdtemp(prefix="mat-mount-probe-")
    try:
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", point],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
        if ok:
            subprocess.run(["umount", point], check=True)
        return ok
    finally:
        os.rmdir(point)


if __name__ == "__main__":
    if os.geteuid() != 0:
        harness.skip_process("mounting a tmpfs needs root")
    if not can_mount_tmpfs():
        harness.skip_process("mount -t tmpfs is not permitted here (a container without "
                             "CAP_SYS_ADMIN?)")
    harness.main()
