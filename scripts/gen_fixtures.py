#!/usr/bin/python3
"""Generates the conda test channel, lock files, expected prefixes and bad inputs.

    /usr/bin/python3 scripts/gen_fixtures.py --out DIR [--bench N]

Output (deterministic: same bytes on every run for the same DIR):

    DIR/fixtures.json                   manifest: placeholder, packages, locks, bad cases
    DIR/channel/{linux-64,noarch}/      10 small packages, .conda and .tar.bz2
    DIR/locks/{conda-lock.yml,explicit.txt,pixi.lock}.in   URLs as @BASE_URL@/<subdir>/<file>
    DIR/locks/file/...                  the same, rendered for file://DIR/channel
    DIR/expected/<lock stem>.json       what the installed prefix must hold (recipes, see below)
    DIR/bad/channel/linux-64/           broken packages; DIR/bad/locks/*.in reference them
                                        (@BASE_URL@ = good channel, @BAD_BASE_URL@ = bad channel)
    DIR/bench/...                       with --bench N: N packages of varied size + conda-lock.yml

Expected-prefix recipe (`expected/*.json` "paths"): for every prefix-relative path one of
    {"type": "file", "mode": 0o644|0o755, "sha256": hex}                      no placeholder
    {"type": "file", "mode": ..., "data_b64": ..., "placeholder": ..., "file_mode": "text"|"binary"}
    {"type": "symlink", "target": ...}
    {"type": "dir"}                                                           explicit empty dir
    {"type": "entry_point", "module": ..., "func": ..., "python": "bin/python3.11"}
The test computes the bytes expected for its prefix with `expected_bytes()` below, an
independent implementation of conda's prefix-replacement rules (conda/core/portability.py).

Needs Debian's /usr/bin/python3 (python3-yaml is not needed here; python3-zstandard is).
"""

import argparse
import base64
import bz2
import hashlib
import io
import json
import os
import random
import re
import shutil
import sys
import tarfile
import zipfile

try:
    import zstandard
except ImportError:  # pragma: no cover
    sys.exit("gen_fixtures.py: needs python3-zstandard (run it with /usr/bin/python3)")

MTIME = 1577836800                      # 2020-01-01T00:00:00Z, every tar member
ZIP_DATE = (2020, 1, 1, 0, 0, 0)
TIMESTAMP_MS = MTIME * 1000             # index.json "timestamp"
ZSTD_LEVEL = 10
BZ2_LEVEL = 9
# conda-build style long placeholder (214 bytes): binary replacement needs prefix <= this.
PLACEHOLDER = "/opt/conda-bld/" + "_".join(["placehold"] * 20)
LEGACY_PLACEHOLDER = "/opt/anaconda1anaconda2anaconda3"  # has_prefix one-field lines
PYTHON_XY = "3.11"
MAX_SHEBANG_LENGTH = 127                # Linux
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

# ----------------------------------------------------------------------------------------
# The oracle: conda's prefix replacement (conda/core/portability.py), reimplemented.
# ----------------------------------------------------------------------------------------

SHEBANG_RE = re.compile(
    rb"^(#!"                      # whole shebang line
    rb"(?:[ ]*)"                  # optional spaces
    rb"(/(?:\\ |[^ \n\r\t])*)"    # executable; spaces only when escaped
    rb"(.*)"                      # options
    rb")$", re.MULTILINE)


class PaddingError(Exception):
    """Binary replacement with a prefix longer than the placeholder."""


def replace_prefix_text(data: bytes, placeholder: bytes, prefix: bytes) -> bytes:
    """Every occurrence replaced; "#!<placeholder>" on the first line gets spaces escaped."""
    nl = data.find(b"\n")
    if nl > -1:
        first, rest = data[:nl], data[nl:]
        shebang_placeholder = b"#!" + placeholder
        if shebang_placeholder in first:
            first = first.replace(shebang_placeholder, (b"#!" + prefix).replace(b" ", b"\\ "))
            data = first + rest
    return data.replace(placeholder, prefix)


def replace_prefix_binary(data: bytes, placeholder: bytes, prefix: bytes) -> bytes:
    """From each occurrence up to the next NUL (no '\\n' in between): replace every occurrence,
    pad with NULs after the terminator so the length is unchanged."""
    pat = re.compile(re.escape(placeholder) + rb"(?:(?!\x00).)*\x00")

    def repl(m):
        g = m.group()
        n = g.count(placeholder)
        pad = (len(placeholder) - len(prefix)) * n
        if pad < 0:
            raise PaddingError(f"prefix {prefix!r} longer than placeholder")
        return g.replace(placeholder, prefix) + b"\x00" * pad

    out = pat.sub(repl, data)
    assert len(out) == len(data)
    return out


def replace_long_shebang(data: bytes) -> bytes:
    """First line "#!/dir/exe opts" longer than 127 bytes, or with escaped spaces in /dir:
    becomes "#!/usr/bin/env exe opts"."""
    m = SHEBANG_RE.match(data)
    if m:
        whole, exe, opts = m.groups()
        exe_dir, exe_name = exe.rsplit(b"/", 1)
        if len(whole) > MAX_SHEBANG_LENGTH or b"\\ " in exe_dir:
            data = data.replace(whole, b"#!/usr/bin/env " + exe_name + opts)
    return data


def expected_bytes(raw: bytes, placeholder: str, file_mode: str, prefix: str) -> bytes:
    """What conda writes into `prefix` for a file shipped with `placeholder` in `file_mode`."""
    ph, pf = placeholder.encode(), prefix.encode()
    if file_mode == "text":
        return replace_long_shebang(replace_prefix_text(raw, ph, pf))
    if file_mode == "binary":
        return replace_prefix_binary(raw, ph, pf)
    raise ValueError(f"bad file_mode {file_mode!r}")


def entry_point_shebang(python_path: str) -> bytes:
    """conda's generate_shebang_for_entry_point (without the /usr/bin/env variant)."""
    shebang = f"#!{python_path}\n"
    if len(shebang) > MAX_SHEBANG_LENGTH or " " in python_path:
        shebang = f"#!/bin/sh\n'''exec' \"{python_path}\" \"$0\" \"$@\" #'''\n"
    return shebang.encode()


# ----------------------------------------------------------------------------------------
# Package model
# ----------------------------------------------------------------------------------------

class E:
    """One path of a package: kind is "file", "symlink", "dir" or "hardlink" (bad fixtures)."""

    def __init__(self, path, kind="file", data=b"", mode=0o644, target=None, placeholder=None,
                 file_mode=None, no_link=False):
        self.path, self.kind, self.data, self.mode = path, kind, data, mode
        self.target, self.placeholder, self.file_mode, self.no_link = (
            target, placeholder, file_mode, no_link)


def f(path, data, mode=0o644, placeholder=None, file_mode=None, no_link=False):
    if isinstance(data, str):
        data = data.encode()
    return E(path, "file", data, mode, placeholder=placeholder, file_mode=file_mode,
             no_link=no_link)


def ln(path, target):
    return E(path, "symlink", target=target, mode=0o777)


def d(path):
    return E(path, "dir", mode=0o755)


class Pkg:
    def __init__(self, name, version, build, subdir, fmt, entries, noarch=None, depends=(),
                 entry_points=(), legacy=False, build_number=0, license="BSD-3-Clause"):
        self.name, self.version, self.build, self.subdir, self.fmt = (
            name, version, build, subdir, fmt)
        self.entries, self.noarch, self.depends = entries, noarch, list(depends)
        self.entry_points, self.legacy = list(entry_points), legacy
        self.build_number, self.license = build_number, license
        self.raw_members = None  # bad fixtures: exact tar members, see build_archive

    @property
    def stem(self):
        return f"{self.name}-{self.version}-{self.build}"

    @property
    def file_name(self):
        return self.stem + (".conda" if self.fmt == "conda" else ".tar.bz2")


def prng(seed, n):
    return random.Random(seed).randbytes(n)


def binlike(seed, n):
    """Deterministic bytes that compress roughly 3:1, like real binaries: fresh random runs
    interleaved with copies of earlier output."""
    rnd = random.Random(seed)
    out = bytearray(rnd.randbytes(min(n, 256)))
    while len(out) < n:
        k = rnd.randint(16, 400)
        if rnd.random() < 0.30:
            out += rnd.randbytes(k)
        else:
            start = rnd.randint(max(0, len(out) - 65536), len(out) - 1)
            out += out[start:start + k]
    return bytes(out[:n])


def good_packages():
    P = PLACEHOLDER
    pyx = PYTHON_XY
    elf = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8

    python = Pkg("python", "3.11.7", "h_mat_0", "linux-64", "conda", [
        f(f"bin/python{pyx}", '#!/bin/sh\nexec /usr/bin/python3 "$@"\n', 0o755),
        ln("bin/python", f"python{pyx}"),
        ln("bin/python3", f"python{pyx}"),
        d(f"lib/python{pyx}/site-packages"),
        f(f"lib/python{pyx}/os.py", "# stand-in for the standard library\n"),
    ])

    libmat_so = (elf + prng(1, 300) + b"\x00"
                 + b"MAT_PREFIX=" + P.encode() + b"\x00"             # text before placeholder
                 + prng(2, 200) + b"\x00"
                 + P.encode() + b"/lib:" + P.encode() + b"/lib64\x00"  # two in one C string
                 + prng(3, 100) + b"\x00"
                 + P.encode() + b"/share/not-replaced\n(newline before NUL)\x00"
                 + prng(4, 300) + b"\x00" + P.encode() + b"/etc/libmat.conf\x00"
                 + prng(5, 64))
    libmat_pc = (f"prefix={P}\nexec_prefix=${{prefix}}\nlibdir={P}/lib\n"
                 f"includedir=${{prefix}}/include\n\nName: libmat\nDescription: test library\n"
                 f"Version: 1.2.0\nLibs: -L{P}/lib -lmat\nCflags: -I{P}/include\n")
    libmat = Pkg("libmat", "1.2.0", "h1a2b3c4_0", "linux-64", "conda", [
        f("lib/libmat.so.1.2", libmat_so, 0o755, P, "binary"),
        ln("lib/libmat.so.1", "libmat.so.1.2"),
        ln("lib/libmat.so", "libmat.so.1"),
        f("lib/pkgconfig/libmat.pc", libmat_pc, 0o644, P, "text"),
        f("include/mat.h", "#pragma once\nint mat_answer(void);\n"),
        d("share/libmat/empty"),
        f("bin/mat-config", f"#!{P}/bin/python{pyx}\nimport sys\nprint('{P}')\n", 0o755, P,
          "text"),
        f("bin/matrun", "#!/bin/sh\necho matrun\n", 0o755),
        f("share/ünïcödé/☃.txt", "snowman ☃\n"),
    ])

    mathelper_so = (elf + prng(11, 500) + b"\x00" + P.encode() + b"/lib/mathelper-0.3\x00"
                    + prng(12, 500))
    mathelper_conf = (f"# mathelper configuration, installed into {P}\n"
                      f"plugins={P}/lib/mathelper-0.3 {P}/lib/mathelper-current\n"
                      f"data = {P}/share/mathelper\n")
    mathelper = Pkg("mathelper", "0.3.1", "h5678abc_2", "linux-64", "tar.bz2", [
        f("lib/mathelper-0.3/plugin.so", mathelper_so, 0o755, P, "binary"),
        ln("lib/mathelper-current", "mathelper-0.3"),
        f("etc/mathelper/mathelper.conf", mathelper_conf, 0o644, P, "text"),
        f("bin/mathelper", f"#!/bin/sh\nexec {P}/lib/mathelper-0.3/plugin.so \"$@\"\n", 0o755,
          P, "text"),
        f("share/mathelper/README", "mathelper: no placeholder here\n"),
    ], depends=["libmat >=1.2"], build_number=2)

    mypkg = Pkg("mypkg", "1.0.0", "pyh_mat_0", "noarch", "conda", [
        f("site-packages/mypkg/__init__.py",
          'def main():\n    print("hello from mypkg")\n    return 0\n'),
        f("site-packages/mypkg/data.txt", "mypkg data\n"),
        f("site-packages/mypkg-1.0.0.dist-info/METADATA",
          "Metadata-Version: 2.1\nName: mypkg\nVersion: 1.0.0\n"),
        f("site-packages/mypkg-1.0.0.dist-info/INSTALLER", "conda\n"),
        f("python-scripts/mytool",
          f"#!{P}/bin/python -s\nimport mypkg\nmypkg.main()\n", 0o755, P, "text"),
    ], noarch="python", depends=["python >=3.8"], entry_points=["mypkg-cli = mypkg:main"])

    otherpy = Pkg("otherpy", "2.0", "pyh_mat_1", "noarch", "tar.bz2", [
        f("site-packages/otherpy/__init__.py",
          'def run():\n    print("hello from otherpy")\n    return 0\n'),
        f("site-packages/otherpy-2.0.dist-info/METADATA",
          "Metadata-Version: 2.1\nName: otherpy\nVersion: 2.0\n"),
    ], noarch="python", depends=["python >=3.8", "mypkg"],
        entry_points=["otherpy-run = otherpy:run"], build_number=1)

    clobber_a = Pkg("clobber-a", "1.0", "0", "noarch", "tar.bz2", [
        f("share/clobber/common.txt", "from clobber-a\n"),
        f("share/clobber/a-only.txt", "a\n"),
    ], noarch="generic")
    clobber_b = Pkg("clobber-b", "1.0", "0", "noarch", "conda", [
        f("share/clobber/common.txt", "from clobber-b (this one wins)\n"),
        f("share/clobber/b-only.txt", "b\n"),
    ], noarch="generic")

    datapkg = Pkg("datapkg", "2024.1", "0", "noarch", "tar.bz2", [
        f("share/datapkg/blob.bin", binlike(21, 192 * 1024)),
        f("share/datapkg/README", "Données de test — ünïcödé contents\n"),
        f("share/datapkg/a/b/c/d/e/f/deep.txt", "deep\n"),
        f("share/datapkg/empty.txt", b""),
    ], noarch="generic")

    legacy = Pkg("legacy", "0.1", "0", "linux-64", "tar.bz2", [
        f("bin/legacy-tool", f"#!{LEGACY_PLACEHOLDER}/bin/python{pyx}\nprint('legacy')\n",
          0o755, LEGACY_PLACEHOLDER, "text"),
        f("etc/legacy.cfg", f"root={P}\nlib={P}/lib\n", 0o644, P, "text"),
        f("lib/legacy.dat", "legacy data, listed in info/no_link\n", no_link=True),
        ln("lib/legacy-link.dat", "legacy.dat"),
    ], legacy=True)

    nolink = Pkg("nolink", "1.0", "0", "linux-64", "conda", [
        f("share/nolink/data.bin", prng(31, 4096), no_link=True),
        f("share/nolink/normal.txt", "hardlinkable\n"),
    ])
    # Lock order (alphabetical, as conda-lock writes it): clobber-b after clobber-a wins;
    # python comes last, so X.Y must come from the whole lock, not from what is linked first.
    return [clobber_a, clobber_b, datapkg, legacy, libmat, mathelper, mypkg, nolink, otherpy,
            python]


# ----------------------------------------------------------------------------------------
# Archive writers
# ----------------------------------------------------------------------------------------

def sha256(b):
    return hashlib.sha256(b).hexdigest()


def md5(b):
    return hashlib.md5(b).hexdigest()


def jdump(obj):
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def info_files(pkg):
    """info/* members of a package (name -> bytes)."""
    index = {
        "arch": None if pkg.subdir == "noarch" else "x86_64",
        "build": pkg.build, "build_number": pkg.build_number, "depends": pkg.depends,
        "license": pkg.license, "name": pkg.name,
        "platform": None if pkg.subdir == "noarch" else "linux",
        "subdir": pkg.subdir, "timestamp": TIMESTAMP_MS, "version": pkg.version,
    }
    if pkg.noarch:
        index["noarch"] = pkg.noarch
    out = {"info/index.json": jdump(index),
           "info/about.json": jdump({"summary": f"{pkg.name}: materializer test fixture"})}
    payload = sorted((e for e in pkg.entries if e.kind != "dir"), key=lambda e: e.path)
    out["info/files"] = "".join(e.path + "\n" for e in payload).encode()
    if pkg.legacy:
        lines = []
        for e in payload:
            if e.placeholder == LEGACY_PLACEHOLDER and e.file_mode == "text":
                lines.append(e.path)                       # one-field form: default placeholder
            elif e.placeholder:
                lines.append(f"{e.placeholder} {e.file_mode} {e.path}")
        out["info/has_prefix"] = "".join(line + "\n" for line in lines).encode()
        out["info/no_link"] = "".join(e.path + "\n" for e in payload if e.no_link).encode()
    else:
        by_path = {e.path: e for e in pkg.entries}
        paths = []
        for e in sorted(pkg.entries, key=lambda e: e.path):
            if e.kind == "dir":
                paths.append({"_path": e.path, "path_type": "directory"})
                continue
            if e.kind == "symlink":
                tgt = by_path.get(os.path.normpath(os.path.join(os.path.dirname(e.path),
                                                                e.target)))
                while tgt is not None and tgt.kind == "symlink":
                    tgt = by_path.get(os.path.normpath(os.path.join(os.path.dirname(tgt.path),
                                                                    tgt.target)))
                rec = {"_path": e.path, "path_type": "softlink",
                       "sha256": sha256(tgt.data) if tgt is not None and tgt.kind == "file"
                       else EMPTY_SHA256,
                       "size_in_bytes": len(e.target.encode())}
            else:
                rec = {"_path": e.path, "path_type": "hardlink", "sha256": sha256(e.data),
                       "size_in_bytes": len(e.data)}
                if e.placeholder:
                    rec["prefix_placeholder"] = e.placeholder
                    rec["file_mode"] = e.file_mode
                if e.no_link:
                    rec["no_link"] = True
            paths.append(rec)
        out["info/paths.json"] = jdump({"paths": paths, "paths_version": 1})
    if pkg.noarch == "python":
        out["info/link.json"] = jdump({"noarch": {"type": "python",
                                                  "entry_points": pkg.entry_points},
                                       "package_metadata_version": 1})
    return out


def tar_bytes(members, fmt):
    """members: (name, kind, data, mode, linkname) tuples, written in the given order."""
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w", format=fmt, encoding="utf-8") as tf:
        for name, kind, data, mode, linkname in members:
            ti = tarfile.TarInfo(name)
            ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = MTIME, 0, 0, "root", "root"
            ti.mode = mode
            if kind == "file":
                ti.type, ti.size = tarfile.REGTYPE, len(data)
                tf.addfile(ti, io.BytesIO(data))
            else:
                ti.type = {"symlink": tarfile.SYMTYPE, "dir": tarfile.DIRTYPE,
                           "hardlink": tarfile.LNKTYPE}[kind]
                ti.linkname = linkname or ""
                tf.addfile(ti)
    return bio.getvalue()


def pkg_members(pkg):
    info = [(n, "file", b, 0o644, None) for n, b in sorted(info_files(pkg).items())]
    if pkg.raw_members is not None:
        payload = list(pkg.raw_members)
    else:
        payload = [(e.path, e.kind, e.data, e.mode, e.target)
                   for e in sorted(pkg.entries, key=lambda e: e.path)]
    return info, payload


def write_zip(items):
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in items:
            zi = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            zi.compress_type = zipfile.ZIP_STORED
            zi.create_system = 3
            zi.external_attr = 0o100644 << 16
            zf.writestr(zi, data)
    return bio.getvalue()


def build_archive(pkg):
    info, payload = pkg_members(pkg)
    if pkg.fmt == "conda":
        cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True)
        info_tar = cctx.compress(tar_bytes(info, tarfile.PAX_FORMAT))
        pkg_tar = cctx.compress(tar_bytes(payload, tarfile.PAX_FORMAT))
        return write_zip([("metadata.json", b'{"conda_pkg_format_version": 2}'),
                          (f"pkg-{pkg.stem}.tar.zst", pkg_tar),
                          (f"info-{pkg.stem}.tar.zst", info_tar)])
    return bz2.compress(tar_bytes(info + payload, tarfile.GNU_FORMAT), BZ2_LEVEL)


# ----------------------------------------------------------------------------------------
# Lock files
# ----------------------------------------------------------------------------------------

def yaml_str(s):
    return json.dumps(s, ensure_ascii=False)  # a JSON string is a valid YAML flow scalar


def dep_map(depends):
    out = {}
    for dep in depends:
        name, _, spec = dep.partition(" ")
        out[name] = spec or "*"
    return out


def conda_lock_text(entries, pip=()):
    """entries: dicts with name, version, url, md5, sha256, depends. pip: extra pip dicts."""
    lines = ["version: 1", "metadata:", "  content_hash:",
             "    linux-64: " + "0" * 64, "  channels:", "  - url: '@BASE_URL@'",
             "    used_env_vars: []", "  platforms:", "  - linux-64", "  sources:",
             "  - environment.yml", "package:"]
    for e in entries:
        lines += [f"- name: {e['name']}", f"  version: {yaml_str(e['version'])}",
                  "  manager: conda", "  platform: linux-64"]
        deps = dep_map(e.get("depends", []))
        if deps:
            lines.append("  dependencies:")
            lines += [f"    {k}: {yaml_str(v)}" for k, v in deps.items()]
        else:
            lines.append("  dependencies: {}")
        lines += [f"  url: {e['url']}", "  hash:"]
        if e.get("md5"):
            lines.append(f"    md5: {e['md5']}")
        if e.get("sha256"):
            lines.append(f"    sha256: {e['sha256']}")
        lines += ["  category: main", "  optional: false"]
    for p in pip:
        lines += [f"- name: {p['name']}", f"  version: {yaml_str(p['version'])}",
                  "  manager: pip", "  platform: linux-64", "  dependencies: {}",
                  f"  url: {p['url']}", "  hash:", f"    sha256: {p['sha256']}",
                  "  category: main", "  optional: false"]
    return "\n".join(lines) + "\n"


def explicit_text(entries):
    lines = ["# This file may be used to create an environment using:",
             "# $ conda create --name <env> --file <this file>", "# platform: linux-64",
             "@EXPLICIT"]
    for i, e in enumerate(entries):
        # Alternate: sha256:<hex> fragments and md5 fragments (md5-keyed cache entries).
        lines.append(f"{e['url']}#sha256:{e['sha256']}" if i % 2 == 0
                     else f"{e['url']}#{e['md5']}")
    return "\n".join(lines) + "\n"


def pixi_text(entries):
    lines = ["version: 6", "environments:", "  default:", "    channels:",
             "    - url: '@BASE_URL@/'", "    packages:", "      linux-64:"]
    lines += [f"      - conda: {e['url']}" for e in entries]
    lines.append("packages:")
    for e in entries:
        lines += [f"- conda: {e['url']}", f"  name: {e['name']}",
                  f"  version: {yaml_str(e['version'])}", f"  build: {yaml_str(e['build'])}",
                  f"  build_number: {e['build_number']}", f"  subdir: {e['subdir']}"]
        if e.get("noarch"):
            lines.append(f"  noarch: {e['noarch']}")
        lines += [f"  sha256: {e['sha256']}", f"  md5: {e['md5']}"]
        if e["depends"]:
            lines.append("  depends:")
            lines += [f"  - {yaml_str(dep)}" for dep in e["depends"]]
        lines += [f"  license: {e['license']}", f"  size: {e['size']}",
                  f"  timestamp: {TIMESTAMP_MS}"]
    return "\n".join(lines) + "\n"


LOCKS = {  # file name -> (stem for expected/, format name, writer)
    "conda-lock.yml": ("conda-lock", "conda-lock-v1", conda_lock_text),
    "explicit.txt": ("explicit", "explicit", explicit_text),
    "pixi.lock": ("pixi", "pixi-v6", pixi_text),
}


def render(text, mapping):
    for k, v in mapping.items():
        text = text.replace(k, v)
    return text


# ----------------------------------------------------------------------------------------
# Expected prefix
# ----------------------------------------------------------------------------------------

def map_noarch_python(path):
    if path.startswith("site-packages/"):
        return f"lib/python{PYTHON_XY}/" + path
    if path.startswith("python-scripts/"):
        return "bin/" + path[len("python-scripts/"):]
    return path


def expected_for(pkgs):
    paths, records = {}, []
    for pkg in pkgs:
        files = []
        for e in sorted(pkg.entries, key=lambda e: e.path):
            p = map_noarch_python(e.path) if pkg.noarch == "python" else e.path
            files.append(p)
            if e.kind == "dir":
                paths[p] = {"type": "dir"}
            elif e.kind == "symlink":
                paths[p] = {"type": "symlink", "target": e.target}
            elif e.placeholder:
                paths[p] = {"type": "file", "mode": e.mode, "placeholder": e.placeholder,
                            "file_mode": e.file_mode,
                            "data_b64": base64.b64encode(e.data).decode()}
            else:
                paths[p] = {"type": "file", "mode": e.mode, "sha256": sha256(e.data)}
            if e.no_link:
                paths[p]["no_link"] = True
            paths[p]["package"] = pkg.name   # the later package wins a clobbered path
        for ep in pkg.entry_points:
            cmd, _, target = (s.strip() for s in ep.partition("="))
            module, _, func = target.partition(":")
            p = f"bin/{cmd}"
            files.append(p)
            paths[p] = {"type": "entry_point", "module": module, "func": func,
                        "python": f"bin/python{PYTHON_XY}", "package": pkg.name}
        records.append({"name": pkg.name, "version": pkg.version, "build": pkg.build,
                        "file_name": pkg.file_name, "subdir": pkg.subdir,
                        "files": sorted(files)})
    # Paths another package overwrote are optional in the loser's record.
    for rec in records:
        rec["files_optional"] = sorted(p for p in rec["files"]
                                       if paths[p]["package"] != rec["name"])
    return {"prefix_token": "@PREFIX@", "python_version": PYTHON_XY,
            "paths": dict(sorted(paths.items())), "packages": records}


# ----------------------------------------------------------------------------------------
# Bad fixtures
# ----------------------------------------------------------------------------------------

def bad_packages():
    """(case name, Pkg, post-processing of the archive bytes or None)."""
    trunc = Pkg("truncated", "1.0", "0", "linux-64", "conda", [
        f("share/truncated/blob.bin", binlike(41, 96 * 1024)),
        f("share/truncated/a.txt", "a\n")])

    dotdot = Pkg("dotdot", "1.0", "0", "linux-64", "tar.bz2", [f("share/ok.txt", "ok\n")])
    dotdot.raw_members = [("share/ok.txt", "file", b"ok\n", 0o644, None),
                          ("../evil", "file", b"evil\n", 0o644, None)]

    sym_abs = Pkg("symlink-abs", "1.0", "0", "linux-64", "conda", [
        ln("lib", "/etc"), f("lib/materializer-escape-canary", "escaped!\n")])
    sym_abs.raw_members = [("lib", "symlink", b"", 0o777, "/etc"),
                           ("lib/materializer-escape-canary", "file", b"escaped!\n", 0o644,
                            None)]

    up = "../" * 12 + "tmp"
    sym_rel = Pkg("symlink-rel", "1.0", "0", "linux-64", "tar.bz2", [
        ln("share/up", up), f("share/up/materializer-escape-canary-rel", "escaped!\n")])
    sym_rel.raw_members = [("share/up", "symlink", b"", 0o777, up),
                           ("share/up/materializer-escape-canary-rel", "file", b"escaped!\n",
                            0o644, None)]

    hard = Pkg("hardlink-escape", "1.0", "0", "linux-64", "tar.bz2", [f("lib/passwd", "")])
    hard.raw_members = [("lib/passwd", "hardlink", b"", 0o644, "../" * 12 + "etc/passwd")]

    return [("truncated", trunc, lambda b: b[:len(b) // 2]),
            ("dotdot", dotdot, None),
            ("symlink-abs", sym_abs, None),
            ("symlink-rel", sym_rel, None),
            ("hardlink-escape", hard, None)]


MALFORMED_YAML = """\
version: 1
metadata:
  platforms:
  - linux-64
package:
- name: python
  version: 3.11.7: this is not valid
  manager: conda
"""
MALFORMED_LINE = 7  # "mapping values are not allowed here"

MISSING_URL = """\
version: 1
metadata:
  platforms:
  - linux-64
package:
- name: zlib
  version: 1.3.1
  manager: conda
  platform: linux-64
  dependencies: {}
  hash:
    sha256: 0000000000000000000000000000000000000000000000000000000000000000
  category: main
  optional: false
"""


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data if isinstance(data, bytes) else data.encode())


def lock_entry(pkg, blob, base="@BASE_URL@"):
    return {"name": pkg.name, "version": pkg.version, "build": pkg.build,
            "build_number": pkg.build_number, "subdir": pkg.subdir, "noarch": pkg.noarch,
            "depends": pkg.depends, "license": pkg.license,
            "url": f"{base}/{pkg.subdir}/{pkg.file_name}",
            "sha256": sha256(blob), "md5": md5(blob), "size": len(blob)}


def gen_bad(out, good_entries):
    """Writes DIR/bad/{channel,locks}; returns the manifest's "bad" section."""
    cases = {}
    python_entry = [e for e in good_entries if e["name"] == "python"]
    for case, pkg, post in bad_packages():
        blob = build_archive(pkg)
        if post:
            blob = post(blob)
        write(os.path.join(out, "bad", "channel", pkg.subdir, pkg.file_name), blob)
        entry = lock_entry(pkg, blob, "@BAD_BASE_URL@")
        lock = f"{case}.yml"
        write(os.path.join(out, "bad", "locks", lock + ".in"),
              conda_lock_text(python_entry + [entry]))
        cases[case] = {"lock": lock, "package": pkg.name, "file_name": pkg.file_name,
                       "key": "sha256-" + entry["sha256"], "sha256": entry["sha256"],
                       "exit_code": 1}
    cases["dotdot"]["member"] = "../evil"
    cases["symlink-abs"]["canary"] = "/etc/materializer-escape-canary"
    cases["symlink-rel"]["canary"] = "/tmp/materializer-escape-canary-rel"

    # Wrong sha256 for a good package (md5 right, so sha256 must be preferred).
    entries = [dict(e) for e in good_entries]
    victim = next(e for e in entries if e["name"] == "mathelper")
    actual = victim["sha256"]
    wrong = sha256(b"not the real archive")
    victim["sha256"] = wrong
    write(os.path.join(out, "bad", "locks", "wrong-sha256.yml.in"), conda_lock_text(entries))
    cases["wrong-sha256"] = {"lock": "wrong-sha256.yml", "package": "mathelper",
                             "expected_sha256": wrong, "actual_sha256": actual,
                             "key": "sha256-" + wrong, "actual_key": "sha256-" + actual,
                             "exit_code": 1}

    # A URL that 404s (next to good packages).
    missing = {"name": "missing", "version": "1.0", "build": "0", "depends": [],
               "url": "@BASE_URL@/linux-64/missing-1.0-0.conda",
               "sha256": sha256(b"missing"), "md5": md5(b"missing")}
    write(os.path.join(out, "bad", "locks", "missing-404.yml.in"),
          conda_lock_text(good_entries[:3] + [missing]))
    cases["missing-404"] = {"lock": "missing-404.yml", "package": "missing",
                            "key": "sha256-" + missing["sha256"], "exit_code": 1}

    write(os.path.join(out, "bad", "locks", "malformed.yml.in"), MALFORMED_YAML)
    cases["malformed"] = {"lock": "malformed.yml", "line": MALFORMED_LINE, "exit_code": 2}

    write(os.path.join(out, "bad", "locks", "missing-url.yml.in"), MISSING_URL)
    cases["missing-url"] = {"lock": "missing-url.yml", "line": 6, "field": "url",
                            "exit_code": 2}

    nohash = explicit_text(good_entries[:2]).splitlines()
    nohash[-1] = nohash[-1].split("#")[0]
    write(os.path.join(out, "bad", "locks", "nohash.txt.in"), "\n".join(nohash) + "\n")
    cases["nohash"] = {"lock": "nohash.txt", "line": len(nohash), "exit_code": 2}

    pip = [{"name": "requests", "version": "2.31.0",
            "url": "@BASE_URL@/pypi/requests-2.31.0-py3-none-any.whl",
            "sha256": sha256(b"requests")},
           {"name": "idna", "version": "3.6",
            "url": "@BASE_URL@/pypi/idna-3.6-py3-none-any.whl", "sha256": sha256(b"idna")}]
    write(os.path.join(out, "bad", "locks", "with-pip.yml.in"),
          conda_lock_text(good_entries, pip))
    cases["with-pip"] = {"lock": "with-pip.yml", "pip_packages": ["requests", "idna"]}
    return cases


# ----------------------------------------------------------------------------------------
# Benchmark channel
# ----------------------------------------------------------------------------------------

def bench_packages(n):
    rnd = random.Random(4242)
    pkgs = []
    for i in range(n):
        r = rnd.random()
        if r < 0.05:
            size = rnd.randint(2 << 20, 6 << 20)       # a few large ones
        elif r < 0.25:
            size = rnd.randint(100 << 10, 1 << 20)
        else:
            size = rnd.randint(1 << 10, 60 << 10)     # mostly small
        fmt = "tar.bz2" if rnd.random() < 0.2 else "conda"
        noarch = rnd.random() < 0.3
        name = f"bench{i:04d}"
        entries = [f(f"lib/lib{name}.so.1", binlike(1000 + i, size), 0o755),
                   ln(f"lib/lib{name}.so", f"lib{name}.so.1")]
        for j in range(rnd.randint(2, 40)):
            text = f"{name} file {j}\n" * rnd.randint(1, 50)
            if j == 0 and rnd.random() < 0.3:
                entries.append(f(f"share/{name}/conf{j}.txt", f"prefix={PLACEHOLDER}\n" + text,
                                 0o644, PLACEHOLDER, "text"))
            else:
                entries.append(f(f"share/{name}/doc{j}.txt", text))
        pkgs.append(Pkg(name, f"1.{i}.0", f"h{i:08x}_0", "noarch" if noarch else "linux-64",
                        fmt, entries, noarch="generic" if noarch else None))
    return pkgs


def gen_bench(out, n):
    root = os.path.join(out, "bench")
    entries = []
    for pkg in bench_packages(n):
        blob = build_archive(pkg)
        write(os.path.join(root, "channel", pkg.subdir, pkg.file_name), blob)
        entries.append(lock_entry(pkg, blob))
    text = conda_lock_text(entries)
    write(os.path.join(root, "locks", "conda-lock.yml.in"), text)
    chan = "file://" + os.path.join(os.path.abspath(root), "channel")
    write(os.path.join(root, "locks", "file", "conda-lock.yml"),
          render(text, {"@BASE_URL@": chan}))
    return {"packages": n, "bytes": sum(e["size"] for e in entries),
            "lock": "bench/locks/conda-lock.yml.in"}


# ----------------------------------------------------------------------------------------

def generate(out, bench=0):
    """Writes every fixture under `out`; returns the manifest (also in out/fixtures.json)."""
    out = os.path.abspath(out)
    os.makedirs(out, exist_ok=True)
    for sub in ("channel", "locks", "expected", "bad", "bench", "fixtures.json"):
        p = os.path.join(out, sub)
        if os.path.isdir(p):
            shutil.rmtree(p)
        elif os.path.exists(p):
            os.remove(p)

    pkgs = good_packages()
    entries = []
    for pkg in pkgs:
        blob = build_archive(pkg)
        write(os.path.join(out, "channel", pkg.subdir, pkg.file_name), blob)
        entries.append(lock_entry(pkg, blob))

    expected = expected_for(pkgs)
    by_name = {e["name"]: e for e in entries}
    for rec in expected["packages"]:
        e = by_name[rec["name"]]
        rec.update({"sha256": e["sha256"], "md5": e["md5"], "size": e["size"],
                    "url_path": f"{e['subdir']}/{rec['file_name']}"})

    chan_url = "file://" + os.path.join(out, "channel")
    manifest = {"placeholder": PLACEHOLDER, "legacy_placeholder": LEGACY_PLACEHOLDER,
                "python_version": PYTHON_XY, "locks": {}, "packages": entries}
    for lock_name, (stem, fmt, writer) in LOCKS.items():
        text = writer(entries)
        write(os.path.join(out, "locks", lock_name + ".in"), text)
        write(os.path.join(out, "locks", "file", lock_name),
              render(text, {"@BASE_URL@": chan_url}))
        exp = dict(expected)
        exp["lock"] = lock_name
        # The cache stores every entry by sha256, md5-only (@EXPLICIT #md5) lines included;
        # `locked_by` says which digest the lock gave.
        if fmt == "explicit":
            by = {e["name"]: ("sha256" if i % 2 == 0 else "md5") for i, e in enumerate(entries)}
        else:
            by = {e["name"]: "sha256" for e in entries}
        exp["packages"] = [dict(r, key="sha256-" + r["sha256"], locked_by=by[r["name"]])
                           for r in expected["packages"]]
        write(os.path.join(out, "expected", stem + ".json"), jdump(exp))
        manifest["locks"][lock_name] = {"in": f"locks/{lock_name}.in",
                                        "file": f"locks/file/{lock_name}",
                                        "expected": f"expected/{stem}.json", "format": fmt}

    manifest["bad"] = gen_bad(out, entries)
    if bench:
        manifest["bench"] = gen_bench(out, bench)
    write(os.path.join(out, "fixtures.json"), jdump(manifest))
    return manifest


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output directory (created; our subdirs "
                                                 "are replaced)")
    ap.add_argument("--bench", type=int, nargs="?", const=100, default=0, metavar="N",
                    help="also write a benchmark channel of N packages (default 100)")
    args = ap.parse_args(argv)
    m = generate(args.out, args.bench)
    print(f"gen_fixtures: {len(m['packages'])} packages, {len(m['locks'])} locks, "
          f"{len(m['bad'])} bad cases" + (f", bench {m['bench']['packages']} packages "
                                          f"({m['bench']['bytes'] / 1e6:.1f} MB)"
                                          if "bench" in m else "") + f" in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
