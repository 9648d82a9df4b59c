#!/usr/bin/python3
"""Writes the binary seed inputs of the archive fuzz targets (fuzz/*_fuzz.cc).

    /usr/bin/python3 scripts/fuzz_seeds.py --out DIR [--corpus CORPUS]

DIR/<target>/ gets small archives built here, deterministically (same bytes every run), for
extract_tar, extract_conda, extract_conda_stream, extract_wheel, zip_reader, zip_layout, bz2 and
zstd_readahead: well-formed packages in every compression the readers accept, uncompressed
variants (so that mutations reach the tar and zip parsers instead of dying in a decompressor),
a few hostile members (.., absolute names, escaping links, special files) and zip layouts
(a hidden local entry behind a decoy, a prefix, trailing bytes, duplicate names) that must be
refused. With --corpus (the shared corpus: conda/, wheels/), its small real packages and
wheels are copied in too. The text seeds, and every crash input the fuzzers found, are
committed in tests/fuzz_corpus/<target>/; these archives are not (BRIEF: generated archives are
never committed), scripts/fuzz.sh and the replay tests make them.

Needs Debian's /usr/bin/python3 with python3-zstandard (scripts/deps.sh).
"""

import argparse
import bz2
import gzip
import hashlib
import base64
import io
import json
import lzma
import os
import shutil
import struct
import sys
import tarfile
import warnings
import zipfile
import zlib

try:
    import zstandard
except ImportError:  # pragma: no cover
    sys.exit("fuzz_seeds.py: needs python3-zstandard (run it with /usr/bin/python3)")

MTIME = 1577836800
ZIP_DATE = (2020, 1, 1, 0, 0, 0)


# ---- tar ----------------------------------------------------------------------------------

def member(name, data=b"", mode=0o644, kind=tarfile.REGTYPE, link=""):
    return (name, data, mode, kind, link)


def tar_bytes(members, fmt=tarfile.USTAR_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for name, data, mode, kind, link in members:
            info = tarfile.TarInfo(name)
            info.mtime = MTIME
            info.mode = mode
            info.type = kind
            info.linkname = link
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if kind == tarfile.REGTYPE:
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
            else:
                t.addfile(info)
    return buf.getvalue()


def paths_json(files):
    paths = []
    for name, data, mode, kind, link in files:
        if kind == tarfile.REGTYPE and not name.startswith("info/"):
            paths.append({"_path": name, "path_type": "hardlink",
                          "sha256": hashlib.sha256(data).hexdigest(), "size_in_bytes": len(data)})
        elif kind == tarfile.SYMTYPE:
            paths.append({"_path": name, "path_type": "softlink"})
    return json.dumps({"paths": paths, "paths_version": 1}, indent=1).encode()


def package_members(name="pkg"):
    index = json.dumps({"name": name, "version": "1.0", "build": "0", "build_number": 0,
                        "subdir": "linux-64", "depends": []}).encode()
    payload = [
        member("bin/tool", b"#!/bin/sh\necho /opt/placeholder\n", 0o755),
        member("lib/libx.so.1", b"\x7fELF" + bytes(range(48))),
        member("lib/libx.so", kind=tarfile.SYMTYPE, link="libx.so.1"),
        member("lib/hard", kind=tarfile.LNKTYPE, link="lib/libx.so.1"),
        member("share/empty", mode=0o755, kind=tarfile.DIRTYPE),
        member("share/doc/readme.txt", b"read me\n"),
    ]
    info = [member("info/index.json", index), member("info/paths.json", paths_json(payload)),
            member("info/has_prefix", b"/opt/placeholder text bin/tool\n")]
    return info, payload


HOSTILE_TARS = {
    "dotdot": [member("../escape.txt", b"x")],
    "absolute": [member("/tmp/escape.txt", b"x")],
    "symlink-escape": [member("a", kind=tarfile.SYMTYPE, link="../.."),
                       member("a/b.txt", b"through the link")],
    "symlink-chain": [member("d", mode=0o755, kind=tarfile.DIRTYPE),
                      member("d/up", kind=tarfile.SYMTYPE, link=".."),
                      member("d/up2", kind=tarfile.SYMTYPE, link="up/..")],
    "hardlink-missing": [member("h", kind=tarfile.LNKTYPE, link="nothing")],
    "hardlink-outside": [member("h", kind=tarfile.LNKTYPE, link="../../etc/passwd")],
    "fifo": [member("p", kind=tarfile.FIFOTYPE)],
    "file-then-dir": [member("x", b"file"), member("x/y", b"under a file")],
    "dir-then-file": [member("x", mode=0o755, kind=tarfile.DIRTYPE), member("x", b"over a dir")],
    "duplicate": [member("x", b"first"), member("x", b"second, wins")],
    "dot-components": [member("./a/./b/c.txt", b"c"), member("a//d.txt", b"d")],
    "bad-utf8": [member("caf\udce9.txt", b"latin-1 name")],
}


def tar_seeds(out):
    info, payload = package_members()
    plain = tar_bytes(info + payload)
    seeds = {
        "pkg.tar": plain,
        "pkg.tar.bz2": bz2.compress(plain, 9),
        "pkg.tar.gz": gzip.compress(plain, mtime=MTIME),
        "pkg.tar.xz": lzma.compress(plain),
        "pkg.tar.zst": zstandard.ZstdCompressor(level=3).compress(plain),
        "pax.tar": tar_bytes(info + payload + [member("share/" + "long-" * 30 + "name.txt", b"l"),
                                               member("share/ünïcödé.txt", b"u")],
                             tarfile.PAX_FORMAT),
        "gnu.tar": tar_bytes(info + [member("share/" + "gnu-" * 40 + "name.txt", b"g")],
                             tarfile.GNU_FORMAT),
        # Two bzip2 streams back to back: the reader decodes them as one tar.
        "two-streams.tar.bz2": bz2.compress(plain[:5120], 1) + bz2.compress(plain[5120:], 1),
        "truncated.tar.bz2": bz2.compress(plain, 9)[:-20],
        "trailing-garbage.tar.bz2": bz2.compress(plain, 9) + b"garbage after the stream",
    }
    for name, members in HOSTILE_TARS.items():
        fmt = tarfile.PAX_FORMAT if name == "bad-utf8" else tarfile.GNU_FORMAT
        seeds[name + ".tar"] = tar_bytes(members, fmt)
    write_all(out, "extract_tar", seeds)


# ---- zip: .conda and wheels ------------------------------------------------------------------

def zip_bytes(items, compression=zipfile.ZIP_STORED):
    """items: (name, data) or (name, data, external_attr_mode)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for item in items:
            name, data = item[0], item[1]
            info = zipfile.ZipInfo(name, ZIP_DATE)
            info.compress_type = compression
            info.create_system = 3
            info.external_attr = (item[2] if len(item) > 2 else 0o100644) << 16
            z.writestr(info, data)
    return buf.getvalue()


def conda_bytes(compress=True, compression=zipfile.ZIP_STORED, prefix="", info_only=False):
    info, payload = package_members()
    pack = (lambda b: zstandard.ZstdCompressor(level=3).compress(b)) if compress else (lambda b: b)
    items = [(prefix + "metadata.json", b'{"conda_pkg_format_version": 2}'),
             (prefix + "info-pkg-1.0-0.tar.zst", pack(tar_bytes(info)))]
    if not info_only:
        items.append((prefix + "pkg-pkg-1.0-0.tar.zst", pack(tar_bytes(payload))))
    return zip_bytes(items, compression)


def conda_seeds(out):
    seeds = {
        "pkg.conda": conda_bytes(),
        "raw-inner.conda": conda_bytes(compress=False),
        "deflated-raw-inner.conda": conda_bytes(compress=False, compression=zipfile.ZIP_DEFLATED),
        "nested.conda": conda_bytes(prefix="pkg-1.0-0/"),
        "info-only.conda": conda_bytes(info_only=True),
        "hostile-inner.conda": zip_bytes([
            ("metadata.json", b"{}"),
            ("pkg-x.tar.zst", tar_bytes(HOSTILE_TARS["symlink-escape"]))]),
    }
    write_all(out, "extract_conda", seeds)
    write_all(out, "extract_conda_stream", seeds)
    return seeds


def record_hash(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def wheel_bytes(compression=zipfile.ZIP_DEFLATED, extra=(), record_extra=b"", tamper=False):
    files = [
        ("pkg/__init__.py", b"VERSION = '1.0'\n"),
        ("pkg/mod.py", b"def main():\n    return 0\n"),
        ("pkg-1.0.data/scripts/tool", b"#!python\nimport pkg\n", 0o100755),
        ("pkg-1.0.data/headers/pkg.h", b"#define PKG 1\n"),
        ("pkg-1.0.dist-info/METADATA", b"Metadata-Version: 2.1\nName: pkg\nVersion: 1.0\n"),
        ("pkg-1.0.dist-info/WHEEL", b"Wheel-Version: 1.0\nGenerator: fuzz_seeds\n"
                                    b"Root-Is-Purelib: true\nTag: py3-none-any\n"),
        ("pkg-1.0.dist-info/entry_points.txt", b"[console_scripts]\npkg = pkg.mod:main\n"),
    ] + list(extra)
    rows = []
    for f in files:
        data = f[1] + (b"!" if tamper and f[0] == "pkg/mod.py" else b"")
        rows.append(f'{f[0]},{record_hash(f[1])},{len(f[1])}\n'.encode())
    record = b"".join(rows) + record_extra + b"pkg-1.0.dist-info/RECORD,,\n"
    items = [(f[0], f[1] + (b"!" if tamper and f[0] == "pkg/mod.py" else b""), *f[2:])
             for f in files]
    items.append(("pkg-1.0.dist-info/RECORD", record))
    return zip_bytes(items, compression)


def wheel_seeds(out):
    seeds = {
        "pkg-deflated.whl": wheel_bytes(),
        "pkg-stored.whl": wheel_bytes(zipfile.ZIP_STORED),
        "pkg-sha512-row.whl": wheel_bytes(extra=[("pkg/data.bin", b"\0" * 64)],
                                          record_extra=b"pkg/other.py,sha512=abc,3\n"),
        "pkg-record-mismatch.whl": wheel_bytes(tamper=True),
        "pkg-symlink.whl": wheel_bytes(extra=[("pkg/link", b"mod.py", 0o120777)]),
        "pkg-dotdot.whl": wheel_bytes(extra=[("../escape.py", b"x")]),
    }
    write_all(out, "extract_wheel", seeds)
    return seeds


def zip_seeds(out, conda, wheels):
    seeds = {"empty.zip": zip_bytes([])}
    seeds.update({"conda-" + k + ".zip": v for k, v in conda.items() if k in ("pkg.conda",)})
    seeds.update({"wheel-" + k + ".zip": v for k, v in wheels.items()
                  if k in ("pkg-deflated.whl", "pkg-stored.whl")})
    for name, method in (("bzip2", zipfile.ZIP_BZIP2), ("lzma", zipfile.ZIP_LZMA)):
        seeds[name + ".zip"] = zip_bytes([("a.txt", b"hello " * 50), ("b/", b"", 0o40755)], method)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        info = zipfile.ZipInfo("big.txt", ZIP_DATE)
        info.compress_type = zipfile.ZIP_DEFLATED
        with z.open(info, "w", force_zip64=True) as f:
            f.write(b"zip64 " * 100)
    seeds["zip64.zip"] = buf.getvalue()
    write_all(out, "zip_reader", seeds)
    seeds.update(layout_seeds())
    write_all(out, "zip_layout", seeds)


class _Unseekable(io.RawIOBase):
    """A sink zipfile cannot seek back in: it then writes data descriptors."""

    def __init__(self):
        self.buf = bytearray()

    def writable(self):
        return True

    def write(self, b):
        self.buf += b
        return len(b)


def _local(name, data, descriptor=False):
    name = name.encode()
    crc = zlib.crc32(data)
    crc_l, size_l = (0, 0) if descriptor else (crc, len(data))
    out = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 8 if descriptor else 0, 0, 0, 0x21,
                      crc_l, size_l, size_l, len(name), 0) + name + data
    if descriptor:
        out += struct.pack("<IIII", 0x08074B50, crc, len(data), len(data))
    return out


def _central(name, data, offset):
    name = name.encode()
    return struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0x0314, 20, 0, 0, 0, 0x21,
                       zlib.crc32(data), len(data), len(data), len(name), 0, 0, 0, 0,
                       0o100644 << 16, offset) + name


def _end(count, cd_size, cd_offset, comment=b""):
    return struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, cd_size, cd_offset,
                       len(comment)) + comment


def layout_seeds():
    """Zips whose layout the check must accept or refuse (cache/zip_layout.h)."""
    sink = _Unseekable()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(zipfile.ZipInfo("a.txt", ZIP_DATE), b"streamed " * 20)
        z.writestr(zipfile.ZipInfo("b.txt", ZIP_DATE), b"")
    plain = zip_bytes([("a.txt", b"hello"), ("b.txt", b"world")])
    # The central directory lists the hidden entry inside the decoy's data.
    decoy_data, hidden_data = b"decoy ", b"hidden"
    hidden = _local("a.txt", hidden_data)
    decoy = _local("a.txt", decoy_data + hidden, descriptor=True)
    cd = _central("a.txt", hidden_data, 30 + 5 + len(decoy_data))
    with warnings.catch_warnings():  # zipfile warns about the duplicate name
        warnings.simplefilter("ignore")
        dup = zip_bytes([("a.txt", b"first"), ("a.txt", b"second")])
    return {
        "data-descriptor.zip": bytes(sink.buf),
        "hidden-behind-decoy.zip": decoy + cd + _end(1, len(cd), len(decoy)),
        "prefix-stub.zip": b"#!/bin/sh\n" + plain,
        "trailing-bytes.zip": plain + b"after the end record",
        "comment.zip": plain[:-2] + struct.pack("<H", 7) + b"comment",
        "duplicate-names.zip": dup,
    }


# ---- bare compressors ------------------------------------------------------------------------

def text(n):
    return b"".join(b"line %d of the fuzz seed: %d\n" % (i, i * 7919 % 1000) for i in range(n))


def bz2_seeds(out):
    small = text(40)
    write_all(out, "bz2", {
        "one-stream.bz2": bz2.compress(small, 9),
        "four-streams.bz2": b"".join(bz2.compress(small[i::4], 1) for i in range(4)),
        # Over 100 kB of input at level 1: two blocks in one stream.
        "two-blocks.bz2": bz2.compress(text(4000), 1),
        "empty-stream.bz2": bz2.compress(b"", 9),
        "truncated.bz2": bz2.compress(small, 9)[:-7],
        "trailing.bz2": bz2.compress(small, 9) + b"BZh9 not a stream",
    })


def zstd_seeds(out):
    data = text(200)
    c = zstandard.ZstdCompressor(level=3)
    chk = zstandard.ZstdCompressor(level=3, write_checksum=True)
    streaming = io.BytesIO()
    with zstandard.ZstdCompressor(level=1).stream_writer(streaming, closefd=False) as w:
        w.write(data[:3000])
        w.flush(zstandard.FLUSH_BLOCK)
        w.write(data[3000:])
    skippable = (0x184D2A50).to_bytes(4, "little") + (5).to_bytes(4, "little") + b"skip!"
    write_all(out, "zstd_readahead", {
        "frame.zst": c.compress(data),
        "checksum.zst": chk.compress(data),
        "two-frames.zst": c.compress(data[:100]) + c.compress(data[100:]),
        "no-content-size.zst": streaming.getvalue(),
        "skippable-then-frame.zst": c.compress(data[:64]) + skippable + c.compress(data[64:128]),
        "truncated.zst": c.compress(data)[:-9],
        "raw.tar": tar_bytes(package_members()[0]),
    })


# ---- output ----------------------------------------------------------------------------------

def write_all(out, target, seeds):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


def copy_corpus(out, corpus, max_bytes=16 << 10):
    """Small real packages and wheels from the shared corpus."""
    picks = {"conda": [], "wheels": []}
    for sub in picks:
        d = os.path.join(corpus, sub)
        if os.path.isdir(d):
            picks[sub] = sorted(f for f in os.listdir(d)
                                if os.path.getsize(os.path.join(d, f)) <= max_bytes)
    for f in picks["conda"]:
        src = os.path.join(corpus, "conda", f)
        targets = (["extract_conda", "extract_conda_stream", "zip_reader", "zip_layout"]
                   if f.endswith(".conda") else ["extract_tar", "bz2"])
        for t in targets:
            os.makedirs(os.path.join(out, t), exist_ok=True)
            shutil.copyfile(src, os.path.join(out, t, "corpus-" + f))
    for f in picks["wheels"]:
        for t in ("extract_wheel", "zip_reader", "zip_layout"):
            os.makedirs(os.path.join(out, t), exist_ok=True)
            shutil.copyfile(os.path.join(corpus, "wheels", f), os.path.join(out, t, "corpus-" + f))
    return sum(len(v) for v in picks.values())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output directory (DIR/<target>/ is written)")
    ap.add_argument("--corpus", help="the shared corpus, to copy its small archives in")
    args = ap.parse_args(argv)
    tar_seeds(args.out)
    conda = conda_seeds(args.out)
    wheels = wheel_seeds(args.out)
    zip_seeds(args.out, conda, wheels)
    bz2_seeds(args.out)
    zstd_seeds(args.out)
    copied = copy_corpus(args.out, args.corpus) if args.corpus else 0
    print(f"fuzz_seeds: archive seeds in {args.out}"
          + (f" ({copied} small archives from {args.corpus})" if copied else ""))


if __name__ == "__main__":
    main()
