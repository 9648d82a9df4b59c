#!/usr/bin/python3
"""Issue 11, defects 7 and 13, through the real binary: a decompression bomb (1 GiB of zeros in
a ~40 KB .conda) and a package whose info/paths.json lies about a file fail with exit 1, the
package and the option to raise (or the path and both sizes) named, no cache entry for them,
nothing left in the cache's tmp/, and the prefix untouched although a good package is in the
same lock. The archives are built here, served over HTTP on 127.0.0.1."""

import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
import time
import zipfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import harness  # noqa: E402

try:
    import zstandard
except ImportError:  # scripts/deps.sh installs python3-zstandard
    harness.skip_process("python3-zstandard is not installed")

GIB = 1 << 30


def tar_of(members):
    """An uncompressed tar of (path, bytes) regular files."""
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for path, data in members:
            ti = tarfile.TarInfo(path)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 1700000000
            tf.addfile(ti, io.BytesIO(data))
    return bio.getvalue()


def zstd(data):
    return zstandard.ZstdCompressor(level=3).compress(data)


def zeros_tar_zst(path, size):
    """A zstd-compressed tar holding `path`, `size` zero bytes, compressed as it is produced."""
    header = tarfile.TarInfo(path)
    header.size, header.mode, header.mtime = size, 0o644, 1700000000
    out = io.BytesIO()
    cobj = zstandard.ZstdCompressor(level=3).compressobj()
    out.write(cobj.compress(header.tobuf(format=tarfile.PAX_FORMAT)))
    chunk = bytes(4 << 20)
    # The data, its padding to 512 and the two end blocks are all zeros.
    total = size + (-size % 512) + 1024
    while total > 0:
        n = min(total, len(chunk))
        out.write(cobj.compress(chunk[:n]))
        total -= n
    out.write(cobj.flush())
    return out.getvalue()


def index_json(name):
    return json.dumps({"name": name, "version": "1.0", "build": "0", "build_number": 0,
                       "subdir": "linux-64", "depends": [], "license": "MIT"}).encode()


def paths_json(entries):
    return json.dumps({"paths_version": 1, "paths": entries}).encode()


def hardlink(path, data, size=None):
    return {"_path": path, "path_type": "hardlink", "sha256": hashlib.sha256(data).hexdigest(),
            "size_in_bytes": len(data) if size is None else size}


def write_conda(dest, name, pkg_tar_zst, info_members):
    path = os.path.join(dest, f"{name}-1.0-0.conda")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("metadata.json", json.dumps({"conda_pkg_format_version": 2}))
        z.writestr(f"pkg-{name}-1.0-0.tar.zst", pkg_tar_zst)
        z.writestr(f"info-{name}-1.0-0.tar.zst", zstd(tar_of(info_members)))
    with open(path, "rb") as fh:
        return path, hashlib.sha256(fh.read()).hexdigest()


class BadExtractTest(harness.TempDirTestCase):

    @classmethod
    def setUpClass(cls):
        cls.binary = harness.require_binary()
        cls.root = tempfile.mkdtemp(prefix="mat-bad-extract-")
        sub = os.path.join(cls.root, "linux-64")
        os.makedirs(sub)
        cls.pkgs = {}

        good = [("share/good/a.txt", b"good\n"), ("bin/good", b"#!/bin/sh\necho good\n")]
        cls.pkgs["good"] = write_conda(
            sub, "good", zstd(tar_of(good)),
            [("info/index.json", index_json("good")),
             ("info/paths.json", paths_json([hardlink(p, d) for p, d in good]))])

        # 1 GiB of zeros: the file paths.json declares honestly, so only the limits stop it.
        bomb_entry = {"_path": "share/zeros.bin", "path_type": "hardlink", "size_in_bytes": GIB}
        cls.pkgs["bomb"] = write_conda(
            sub, "bomb", zeros_tar_zst("share/zeros.bin", GIB),
            [("info/index.json", index_json("bomb")), ("info/paths.json", paths_json([bomb_entry]))])

        # paths.json declares 1 byte for a 1 MiB file (the "1 GiB declared as 1 byte").
        big = bytes(range(256)) * 4096
        cls.pkgs["liar"] = write_conda(
            sub, "liar", zstd(tar_of([("lib/big.bin", big)])),
            [("info/index.json", index_json("liar")),
             ("info/paths.json", paths_json([hardlink("lib/big.bin", big, size=1)]))])

        many = [(f"share/many/f{i:05d}.txt", b"%d\n" % i) for i in range(3000)]
        cls.pkgs["many"] = write_conda(
            sub, "many", zstd(tar_of(many)),
            [("info/index.json", index_json("many")),
             ("info/paths.json", paths_json([hardlink(p, d) for p, d in many]))])

        cls.srv = harness.HttpServer(cls.root).start()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        shutil.rmtree(cls.root, True)

    def lock(self, *names):
        lines = ["# platform: linux-64", "@EXPLICIT"]
        for n in names:
            path, sha = self.pkgs[n]
            lines.append(f"{self.srv.url}/linux-64/{os.path.basename(path)}#sha256:{sha}")
        lock = self.path("explicit.txt")
        with open(lock, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
        return lock

    def mat(self, *args):
        return harness.run_materializer(self.binary, [str(a) for a in args])

    def assertNothingCachedFor(self, cache, name):
        key = "sha256-" + self.pkgs[name][1]
        for entries in (harness.cache_archives(cache), harness.cache_trees(cache)):
            self.assertFalse([e for e in entries if e.startswith(key)],
                             f"cache entry left for {name}: {entries}")
        self.assertEqual(harness.cache_tmp(cache), [], "tmp/ not cleaned")

    def run_bad(self, bad, *extra, command="install"):
        """Installs good + bad; asserts the failure and what it must leave behind."""
        prefix, cache, report = self.path("env"), self.path("cache"), self.path("r.json")
        args = [command, self.lock("good", bad), "--cache-dir", cache, "--report", report]
        if command == "install":
            args += ["--prefix", prefix]
        t0 = time.monotonic()
        cp = self.mat(*args, *extra)
        elapsed = time.monotonic() - t0
        self.assertEqual(cp.returncode, 1, "expected exit 1" + harness.describe(cp))
        self.assertTrue(harness.dir_is_empty_or_absent(prefix), f"prefix touched: {prefix}")
        self.assertNothingCachedFor(cache, bad)
        self.assertIn(f"{bad}-1.0-0", cp.stderr)
        # The message's subject is the package's file, not the cache's temp name for it.
        self.assertIn(f"{bad}-1.0-0.conda: ", cp.stderr)
        self.assertNotIn(".tmp-", cp.stderr)
        rep = harness.read_json(report)
        failed = [p["name"] for p in rep["packages"] if p.get("error")]
        self.assertEqual(failed, [bad])
        self.assertEqual(self.mat("cache", "verify", "--cache-dir", cache).returncode, 0)
        return cp, elapsed

    def test_bomb_stops_at_the_ratio_limit(self):
        cp, elapsed = self.run_bad("bomb")
        self.assertIn("--max-expansion-ratio", cp.stderr)
        self.assertIn("expands to more than 200 times", cp.stderr)
        # Stopped after ~16 MiB, not 1 GiB written (and twice: streamed, then from the file).
        self.assertLess(elapsed, 60)

    def test_bomb_with_the_ratio_raised_stops_at_the_size_limit(self):
        cp, _ = self.run_bad("bomb", "--max-expansion-ratio", "100000000",
                             "--max-expanded-size", "8M")
        self.assertIn("--max-expanded-size", cp.stderr)
        self.assertIn("expands to more than 8 MiB", cp.stderr)

    def test_bomb_in_prewarm(self):
        cp, _ = self.run_bad("bomb", command="prewarm")
        self.assertIn("--max-expansion-ratio", cp.stderr)

    def test_lying_paths_json(self):
        cp, _ = self.run_bad("liar")
        self.assertIn("liar-1.0-0.conda: lib/big.bin: ", cp.stderr)
        self.assertIn("size mismatch with info/paths.json", cp.stderr)
        self.assertIn("paths.json says 1 bytes", cp.stderr)
        self.assertIn(f"has {256 * 4096}", cp.stderr)

    def test_files_limit_names_its_flag_and_the_flag_raises_it(self):
        cp, _ = self.run_bad("many", "--max-files-per-package", "1000")
        self.assertIn("more than 1000 members", cp.stderr)
        self.assertIn("--max-files-per-package", cp.stderr)
        # Under the default limits the same package installs.
        prefix, cache = self.path("env2"), self.path("cache2")
        cp = self.mat("install", self.lock("good", "many"), "--prefix", prefix, "--cache-dir",
                      cache)
        self.assertEqual(cp.returncode, 0, harness.describe(cp))
        self.assertTrue(os.path.isfile(os.path.join(prefix, "share/many/f02999.txt")))

    def test_limit_flags_are_checked(self):
        lock = self.lock("good")
        for flag, value in (("--max-expansion-ratio", "0"), ("--max-expanded-size", "lots"),
                            ("--max-files-per-package", "-1")):
            cp = self.mat("install", lock, "--prefix", self.path("env"), "--cache-dir",
                          self.path("cache"), flag, value)
            self.assertEqual(cp.returncode, 2, f"{flag} {value}" + harness.describe(cp))
            self.assertIn(flag, cp.stderr)
            self.assertTrue(harness.dir_is_empty_or_absent(self.path("env")))


if __name__ == "__main__":
    harness.main()
