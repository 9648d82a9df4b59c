#!/usr/bin/python3
"""One archive, one tree (issue 11, defect 4): a zip whose central directory points at a hidden
local entry, with a decoy in front of it, gave one tree when extracted while downloading (local
headers, in order) and another when extracted from the file (central directory), for the same
sha256; the cache kept whichever came first. Such archives are refused on every path: the run
fails for that package (exit 1, the package named), nothing of it is cached (no archive, no
tree, nothing left in tmp/), with and without --no-stream. The wheel path (pip reads the central
directory) refuses the same disagreement.

The archives are written byte by byte here; the .conda is served slowly so the streaming thread
takes it while it downloads (-v shows that it did, and that it refused it)."""

import hashlib
import io
import os
import struct
import sys
import tarfile
import time
import unittest
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import harness  # noqa: E402


# --- zips written by hand ------------------------------------------------------------------

def local_entry(name, data, descriptor=False):
    """A stored member's local header + data (+ data descriptor, sizes then only there)."""
    name = name.encode()
    crc = zlib.crc32(data)
    flags = 0x0008 if descriptor else 0
    crc_l, size_l = (0, 0) if descriptor else (crc, len(data))
    out = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, flags, 0, 0, 0x21, crc_l, size_l, size_l,
                      len(name), 0) + name + data
    if descriptor:
        out += struct.pack("<IIII", 0x08074B50, crc, len(data), len(data))
    return out


def central_entry(name, data, offset):
    name = name.encode()
    crc = zlib.crc32(data)
    return struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0x0314, 20, 0, 0, 0, 0x21, crc,
                       len(data), len(data), len(name), 0, 0, 0, 0, 0o100644 << 16,
                       offset) + name


def end_record(count, cd_size, cd_offset):
    return struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, cd_size, cd_offset, 0)


def hidden_behind_decoy(members, hidden_name, decoy_data, hidden_data, skippable):
    """A zip of `members` [(name, data)] where member `hidden_name` is, for a reader going by the
    local headers, a decoy (`decoy_data`, sizes only in its data descriptor) whose data also
    carries a complete local entry of the same name holding `hidden_data`; the central directory
    points at that hidden entry. `skippable(entry bytes)` wraps it so that the decoy's data stays
    valid for its format."""
    out, listed = b"", []
    for name, data in members:
        if name == hidden_name:
            hidden = local_entry(name, hidden_data)
            wrapped = skippable(hidden)
            decoy = local_entry(name, decoy_data + wrapped, descriptor=True)
            hidden_at = len(out) + 30 + len(name.encode()) + len(decoy_data) + (
                len(wrapped) - len(hidden))
            out += decoy
            listed.append((name, hidden_data, hidden_at))
        else:
            listed.append((name, data, len(out)))
            out += local_entry(name, data)
    cd = b"".join(central_entry(n, d, at) for n, d, at in listed)
    return out + cd + end_record(len(listed), len(cd), len(out))


def plain_zip(members):
    out, cd = b"", b""
    for name, data in members:
        cd += central_entry(name, data, len(out))
        out += local_entry(name, data)
    return out + cd + end_record(len(members), len(cd), len(out))


def zstd_skippable(payload):
    return struct.pack("<II", 0x184D2A50, len(payload)) + payload


# --- packages -----------------------------------------------------------------------------

def tar_zst(files):
    import zstandard
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data, mode in files:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), mode, 1700000000
            tf.addfile(ti, io.BytesIO(data))
    return zstandard.ZstdCompressor(level=3).compress(bio.getvalue())


def conda_members(name, payload):
    """metadata.json, pkg-*.tar.zst holding `payload` [(path, bytes, mode)], info-*.tar.zst."""
    stem = f"{name}-1.0-0"
    paths = [{"_path": p, "path_type": "hardlink", "size_in_bytes": len(d),
              "sha256": hashlib.sha256(d).hexdigest()} for p, d, _ in payload]
    index = {"name": name, "version": "1.0", "build": "0", "build_number": 0,
             "subdir": "noarch", "depends": []}
    import json
    info = [("info/index.json", json.dumps(index).encode(), 0o644),
            ("info/paths.json", json.dumps({"paths": paths, "paths_version": 1}).encode(),
             0o644)]
    return stem, [("metadata.json", b'{"conda_pkg_format_version": 2}', None),
                  (f"pkg-{stem}.tar.zst", tar_zst(payload), payload),
                  (f"info-{stem}.tar.zst", tar_zst(info), None)]


def noise(n, seed):
    out, x = bytearray(), seed
    while len(out) < n:
        x = (x * 6364136223846793005 + 1442695040888963407) % 2**64
        out += x.to_bytes(8, "little")
    return bytes(out[:n])


class ZipConsistencyTest(harness.TempDirTestCase):

    @classmethod
    def setUpClass(cls):
        cls.binary = harness.require_binary()

    def setUp(self):
        super().setUp()
        self.root = self.path("srv")
        os.makedirs(os.path.join(self.root, "channel", "noarch"))
        os.makedirs(os.path.join(self.root, "files"))
        self.srv = harness.HttpServer(self.root).start()
        self.addCleanup(self.srv.stop)

    def publish(self, rel, data):
        with open(os.path.join(self.root, rel), "wb") as fh:
            fh.write(data)
        return self.srv.url + "/" + rel, hashlib.sha256(data).hexdigest()

    def serve_slowly(self, rel):
        """Serves `rel` in 512-byte pieces 10 ms apart, so it is still downloading when the
        streaming thread takes it."""
        with open(os.path.join(self.root, rel), "rb") as fh:
            data = fh.read()

        def hook(handler):
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            for at in range(0, len(data), 512):
                handler.wfile.write(data[at:at + 512])
                handler.wfile.flush()
                time.sleep(0.01)
            handler.close_connection = True
            return True

        self.srv.hooks["/" + rel] = hook

    def run_install(self, lock, *extra):
        prefix, cache = self.path("env"), self.path("cache")
        for d in (prefix, cache):
            if os.path.exists(d):
                import shutil
                shutil.rmtree(d)
        report = self.path("r.json")
        cp = harness.run_materializer(
            self.binary, ["install", lock, "--prefix", prefix, "--cache-dir", cache,
                          "--report", report, "-v", *extra])
        return cp, prefix, cache, report

    def assertRefused(self, cp, prefix, cache, report, package, sha256):
        self.assertEqual(cp.returncode, 1, harness.describe(cp))
        self.assertIn(package, cp.stderr)
        self.assertIn("no central directory entry owns", cp.stderr)
        self.assertTrue(harness.dir_is_empty_or_absent(prefix), f"prefix {prefix} touched")
        key = "sha256-" + sha256
        for entries in (harness.cache_archives(cache), harness.cache_trees(cache)):
            self.assertFalse([e for e in entries if e.startswith(key)],
                             f"cache entry left for {key}: {entries}")
        self.assertEqual(harness.cache_tmp(cache), [], "tmp/ not cleaned")
        rep = harness.read_json(report)
        failed = [p["name"] for p in rep["packages"] if p.get("error")]
        self.assertEqual(failed, [package.split("-")[0]])
        cp = harness.run_materializer(self.binary, ["cache", "verify", "--cache-dir", cache])
        self.assertEqual(cp.returncode, 0, harness.describe(cp))

    def test_conda_with_a_hidden_entry_is_refused_streamed_or_not(self):
        # The decoy installs lib/data.txt = "decoy"; the hidden entry installs "hidden" and a
        # script. The decoy's tar.zst is followed by a skippable frame carrying the hidden
        # entry, so it decodes cleanly when read in order.
        stem, members = conda_members("hostile", [("lib/data.txt", b"decoy\n" + noise(20000, 1),
                                                   0o644)])
        _, evil = conda_members("hostile", [("lib/data.txt", b"hidden\n", 0o644),
                                            ("bin/pwned", b"#!/bin/sh\necho pwned\n", 0o755)])
        pkg_name = f"pkg-{stem}.tar.zst"
        hostile = hidden_behind_decoy([(n, d) for n, d, _ in members], pkg_name,
                                      dict((n, d) for n, d, _ in members)[pkg_name],
                                      dict((n, d) for n, d, _ in evil)[pkg_name], zstd_skippable)
        url, sha = self.publish(f"channel/noarch/{stem}.conda", hostile)
        self.serve_slowly(f"channel/noarch/{stem}.conda")
        good_stem, good = conda_members("goodpkg", [("lib/good.txt", b"good\n", 0o644)])
        good_url, good_sha = self.publish(f"channel/noarch/{good_stem}.conda",
                                          plain_zip([(n, d) for n, d, _ in good]))
        lock = self.path("explicit.txt")
        with open(lock, "w") as fh:
            fh.write(f"# platform: linux-64\n@EXPLICIT\n{good_url}#{good_sha}\n{url}#{sha}\n")

        cp, prefix, cache, report = self.run_install(lock)
        self.assertRefused(cp, prefix, cache, report, "hostile-1.0-0", sha)
        # The streaming thread took it and refused it; the file path then refused it too.
        self.assertIn("hostile-1.0-0", cp.stderr)
        self.assertIn("extracting while downloading failed", cp.stderr, harness.describe(cp))
        # The good package of the same run was extracted and cached as usual.
        self.assertIn("sha256-" + good_sha, harness.cache_trees(cache))

        cp, prefix, cache, report = self.run_install(lock, "--no-stream")
        self.assertRefused(cp, prefix, cache, report, "hostile-1.0-0", sha)
        self.assertNotIn("extracting while downloading", cp.stderr)

    def test_wheel_with_a_hidden_member_is_refused(self):
        # Read by the local headers: hostile/__init__.py prints "decoy"; by the central
        # directory (pip, libzip): "hidden". Both RECORDs are valid for what they list.
        def wheel_members(init):
            files = [("hostile/__init__.py", init),
                     ("hostile-1.0.dist-info/METADATA",
                      b"Metadata-Version: 2.1\nName: hostile\nVersion: 1.0\n"),
                     ("hostile-1.0.dist-info/WHEEL",
                      b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                      b"Tag: py3-none-any\n")]
            rows = [f"{n},sha256="
                    + __import__("base64").urlsafe_b64encode(hashlib.sha256(d).digest())
                    .decode().rstrip("=") + f",{len(d)}" for n, d in files]
            rows.append("hostile-1.0.dist-info/RECORD,,")
            return files + [("hostile-1.0.dist-info/RECORD", ("\n".join(rows) + "\n").encode())]

        decoy, hidden = wheel_members(b"print('decoy')\n"), wheel_members(b"print('hidden')\n")
        out, listed = b"", []
        out += local_entry(decoy[0][0], decoy[0][1])  # the decoy, listed nowhere
        for name, data in hidden:
            listed.append((name, data, len(out)))
            out += local_entry(name, data)
        cd = b"".join(central_entry(n, d, at) for n, d, at in listed)
        wheel = out + cd + end_record(len(listed), len(cd), len(out))
        fname = "hostile-1.0-py3-none-any.whl"
        url, sha = self.publish(f"files/{fname}", wheel)
        lock = self.path("pylock.toml")
        with open(lock, "w") as fh:
            fh.write('lock-version = "1.0"\nrequires-python = ">=3.8"\ncreated-by = "test"\n\n'
                     '[[packages]]\nname = "hostile"\nversion = "1.0"\nwheels = [\n'
                     f'    {{ name = "{fname}", url = "{url}", size = {len(wheel)}, '
                     f'hashes = {{ sha256 = "{sha}" }} }},\n]\n')
        cp, prefix, cache, report = self.run_install(lock, "--python-version", "3.11")
        self.assertRefused(cp, prefix, cache, report, "hostile", sha)
        self.assertIn(fname, cp.stderr)


if __name__ == "__main__":
    harness.main()
