#!/usr/bin/python3
"""Peak RSS of materializer on the two memory cases of issue 11, defect 13, per binary:

  many   a cold install (empty cache, new prefix) of one synthetic .conda holding N tiny files
         (default 200,000), listed in its info/paths.json as conda-build writes it
  lock   `install --dry-run` of a conda-lock.yml and of an @EXPLICIT lock of about SIZE MB each
         (default 63; their entries are distinct packages, none fetched) with --max-lock-size
         raised to let them in (the default, 16 MiB, refuses them before they are parsed)

Each run is measured with /usr/bin/time -v ("Maximum resident set size"). Inputs are generated
into a temp dir (python3-zstandard needed); nothing is written into the source tree.

    /usr/bin/python3 bench/memory.py --binary build/release/materializer/materializer [--binary B2]
        [--files 200000] [--lock-mb 63] [--only many|lock]
"""

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile

import zstandard


def tar_of(members):
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for path, data in members:
            ti = tarfile.TarInfo(path)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 1700000000
            tf.addfile(ti, io.BytesIO(data))
    return bio.getvalue()


def many_files_conda(dest, n):
    """many-1.0-0.conda: n files of a few bytes in 1000-file directories; returns (path, sha256)."""
    files = [(f"share/many/d{i // 1000:04d}/file-{i:07d}.txt", b"%d\n" % i) for i in range(n)]
    paths = [{"_path": p, "path_type": "hardlink", "sha256": hashlib.sha256(d).hexdigest(),
              "size_in_bytes": len(d)} for p, d in files]
    index = {"name": "many", "version": "1.0", "build": "0", "build_number": 0,
             "subdir": "linux-64", "depends": [], "license": "MIT"}
    info = tar_of([("info/index.json", json.dumps(index).encode()),
                   ("info/paths.json",
                    json.dumps({"paths_version": 1, "paths": paths}, indent=2).encode())])
    zc = zstandard.ZstdCompressor(level=3)
    path = os.path.join(dest, "linux-64", "many-1.0-0.conda")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("metadata.json", json.dumps({"conda_pkg_format_version": 2}))
        z.writestr("pkg-many-1.0-0.tar.zst", zc.compress(tar_of(files)))
        z.writestr("info-many-1.0-0.tar.zst", zc.compress(info))
    with open(path, "rb") as fh:
        return path, hashlib.sha256(fh.read()).hexdigest()


def big_conda_lock(dest, megabytes):
    """A conda-lock.yml (version 1) of distinct linux-64 packages, about `megabytes` MB."""
    path = os.path.join(dest, "conda-lock.yml")
    target = megabytes * 1_000_000
    with open(path, "w", encoding="utf-8") as out:
        out.write("version: 1\nmetadata:\n  platforms: [linux-64]\n  sources: [environment.yml]\n"
                  "  channels:\n  - url: conda-forge\n    used_env_vars: []\n"
                  "  content_hash: {linux-64: x}\npackage:\n")
        i = 0
        while out.tell() < target:
            name = f"pkg{i:07d}"
            sha = hashlib.sha256(name.encode()).hexdigest()
            out.write(f"- name: {name}\n  version: 1.0.{i}\n  manager: conda\n  platform: linux-64\n"
                      f"  dependencies:\n    python: '>=3.8'\n    libzlib: '>=1.2.13,<2.0a0'\n"
                      f"  url: https://conda.example.invalid/conda-forge/linux-64/"
                      f"{name}-1.0.{i}-h0_0.conda\n"
                      f"  hash:\n    md5: {sha[:32]}\n    sha256: {sha}\n"
                      f"  category: main\n  optional: false\n")
            i += 1
    return path, i


def big_explicit_lock(dest, megabytes):
    """An @EXPLICIT lock of distinct linux-64 packages (URL#sha256 lines), about `megabytes` MB."""
    path = os.path.join(dest, "explicit-big.txt")
    target = megabytes * 1_000_000
    with open(path, "w", encoding="utf-8") as out:
        out.write("# platform: linux-64\n@EXPLICIT\n")
        i = 0
        while out.tell() < target:
            name = f"pkg{i:07d}"
            sha = hashlib.sha256(name.encode()).hexdigest()
            out.write(f"https://conda.example.invalid/conda-forge/linux-64/{name}-1.0.{i}-h0_0.conda"
                      f"#sha256:{sha}\n")
            i += 1
    return path, i


def peak_rss_mb(argv):
    cp = subprocess.run(["/usr/bin/time", "-v"] + argv, capture_output=True, text=True,
                        errors="replace")
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", cp.stderr)
    wall = re.search(r"Elapsed \(wall clock\) time.*: (\S+)", cp.stderr)
    cpu = sum(float(x) for x in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", cp.stderr))
    times = f"wall {wall.group(1) if wall else '?'}, CPU {cpu:.1f} s"
    return cp.returncode, int(m.group(1)) / 1024 if m else -1, times, cp


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", action="append", required=True)
    ap.add_argument("--files", type=int, default=200_000)
    ap.add_argument("--lock-mb", type=int, default=63)
    ap.add_argument("--only", choices=["many", "lock"])
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="mat-memory-")
    try:
        if args.only in (None, "many"):
            t0 = time.monotonic()
            path, sha = many_files_conda(work, args.files)
            lock = os.path.join(work, "explicit.txt")
            with open(lock, "w") as fh:
                fh.write(f"# platform: linux-64\n@EXPLICIT\nfile://{path}#sha256:{sha}\n")
            print(f"many: {args.files} files, {os.path.getsize(path) / 1e6:.1f} MB .conda "
                  f"(generated in {time.monotonic() - t0:.0f} s)", flush=True)
            for b in args.binary:
                run = os.path.join(work, "run")
                shutil.rmtree(run, True)
                rc, mb, wall, cp = peak_rss_mb(
                    [b, "install", lock, "--prefix", os.path.join(run, "env"), "--cache-dir",
                     os.path.join(run, "cache"), "-q"])
                print(f"  {b}: exit {rc}, peak RSS {mb:.0f} MB, {wall}", flush=True)
                if rc != 0:
                    print(cp.stderr[-2000:])
            shutil.rmtree(os.path.join(work, "run"), True)
        for make, kind in ((big_conda_lock, "conda-lock.yml"), (big_explicit_lock, "@EXPLICIT")):
            if args.only not in (None, "lock"):
                break
            lock, n = make(work, args.lock_mb)
            print(f"lock: {kind} of {os.path.getsize(lock) / 1e6:.1f} MB, {n} packages",
                  flush=True)
            for b in args.binary:
                run = os.path.join(work, "run")
                shutil.rmtree(run, True)
                rc, mb, wall, cp = peak_rss_mb(
                    [b, "install", lock, "--prefix", os.path.join(run, "env"), "--cache-dir",
                     os.path.join(run, "cache"), "--dry-run", "-q", "--max-lock-size", "1GiB"])
                print(f"  {b}: exit {rc}, peak RSS {mb:.0f} MB, {wall}", flush=True)
                if rc != 0:
                    print(cp.stderr[-2000:])
    finally:
        shutil.rmtree(work, True)


if __name__ == "__main__":
    sys.exit(main())
