#!/usr/bin/python3
"""Startup benchmark: materializer against its peers and against hardware floors, one run.

    /usr/bin/python3 bench/startup.py --binary build/release/materializer/materializer \
        [--scale small|full] [--reps 3] [--out build/bench] [--regen] [--keep]

Workload (deterministic, generated once into OUT/workload/<scale>/ and reused while
WORKLOAD_VERSION is unchanged; --regen forces it):
  full   ~150 conda packages (~20% .tar.bz2, the rest .conda): python (stand-in interpreter,
         stdlib of .py files, libpython with a binary prefix placeholder), 4 of 50-150 MB
         (mkl/llvm-like libraries, scipy/pandas-like extension packages), ~25 of 2-30 MB, a long
         tail of small ones (noarch python packages with entry points, headers, tzdata-like data);
         ~2 GB and ~40k files installed, binaries compress ~3:1, .pc/-config/sysconfig text files
         with prefix placeholders, .so symlink chains.  Plus gen_wheels' 40 bench wheels.
  small  ~100 small conda packages + 10 wheels (seconds; the CI smoke size).
  Locks: conda-lock.yml (conda set), pylock.toml (wheels), mixed.conda-lock.yml (conda set +
  `manager: pip` entries; only when the binary accepts it).
Everything is served by nginx over HTTPS + HTTP/2 on 127.0.0.1 with a throwaway CA.

Measured, --reps times each (medians):
  conda set   materializer cold (empty cache, new prefix; also peak RSS via /usr/bin/time),
              no-op (same prefix, same lock, again), warm (cache filled, new prefix),
              cold --jobs 1; peers: `cph x` of every archive (nproc at a time) + `cp -al` of the
              extracted trees into a prefix, micromamba (only when on PATH);
              floors: tool floor (unzip|zstd|tar, lbzip2|tar on all cores into a directory),
              CPU floor (CPU seconds to decompress every archive to nowhere / cores),
              `cp -al` of the installed prefix (warm floor), `tar xzf` of the installed
              environment as one tar.gz (the "Docker image" baseline).
  wheels      materializer cold / warm / no-op; pip install --no-deps --no-index --prefix of the
              local files (pip's best case), `python3 -m installer` per wheel, uv (only when on
              PATH); tool floor (unzip), CPU floor.
  mixed       materializer cold / warm / no-op of the mixed lock; floors of both sets.

Writes OUT/startup.json, OUT/startup.csv, OUT/startup.png (bar chart) and prints a table plus the
issue's targets as PASS/FAIL lines. Scratch space is OUT/run/ (removed at the end unless --keep);
nothing outside OUT is written (temp files of every child go to OUT/run/tmp).
"""
import argparse
import concurrent.futures
import csv
import hashlib
import json
import multiprocessing
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "scripts"))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import gen_fixtures  # noqa: E402
import gen_wheels  # noqa: E402

WORKLOAD_VERSION = "startup-workload-4"   # bump when the generator below changes
SEED = 20261127
PY_XY = gen_fixtures.PYTHON_XY
SITE = f"lib/python{PY_XY}/site-packages"
EXT_SUFFIX = f".cpython-{PY_XY.replace('.', '')}-x86_64-linux-gnu.so"
P = gen_fixtures.PLACEHOLDER
NPROC = os.cpu_count() or 1

# ----------------------------------------------------------------------------------------
# Workload plan (deterministic)
# ----------------------------------------------------------------------------------------

MB = 1 << 20
KB = 1 << 10

# kind, name, binary bytes installed, text files: the 4 big ones of the full scale. Binaries
# compress ~3.1:1, so 400 MB of .so content is a ~130 MB .conda.
HUGE = [("lib", "mkl", 400 * MB, 120), ("pyext", "scipy", 290 * MB, 3800),
        ("lib", "libllvm15", 215 * MB, 900), ("pyext", "pandas", 165 * MB, 2600)]

MID_NAMES = ["numpy", "pyarrow", "libarrow", "numba", "llvmlite", "libopenblas", "openssl",
             "libcurl", "libprotobuf", "grpc-cpp", "libthrift", "orc", "libgoogle-cloud",
             "aws-sdk-cpp", "libxml2", "icu", "libsqlite", "zstd", "lz4-c", "snappy",
             "scikit-learn", "matplotlib-base", "pillow", "libgfortran5", "bokeh"]
TAIL_WORDS = ["dask", "distributed", "toolz", "cloudpickle", "fsspec", "partd", "locket",
              "zict", "tblib", "msgpack", "psutil", "tornado", "click", "jinja2", "markupsafe",
              "pyyaml", "yaml", "sortedcontainers", "lz4", "bzip2", "xz", "zlib", "libffi",
              "ncurses", "readline", "tk", "tzdata", "ca-certificates", "certifi", "packaging",
              "setuptools", "wheel", "pip", "six", "python-dateutil", "pytz", "numexpr",
              "bottleneck", "pyparsing", "cycler", "kiwisolver", "fonttools", "contourpy",
              "freetype", "libpng", "libjpeg-turbo", "libtiff", "lcms2", "openjpeg", "libwebp",
              "importlib-metadata", "zipp", "typing-extensions", "urllib3", "idna", "requests",
              "charset-normalizer", "attrs", "platformdirs", "filelock", "libgcc-ng",
              "libstdcxx-ng", "libgomp", "libzlib", "libuuid", "libnsl", "libsodium", "zeromq",
              "pyzmq", "blosc", "c-blosc2", "libaec", "hdf5", "h5py", "netcdf4", "xarray",
              "s3fs", "aiobotocore", "botocore", "jmespath", "aiohttp", "multidict", "yarl",
              "frozenlist", "aiosignal", "async-timeout", "gcsfs", "google-auth", "cachetools",
              "pyasn1", "rsa", "oauthlib", "requests-oauthlib", "decorator", "gflags", "glog",
              "re2", "libabseil", "libutf8proc", "libbrotlicommon", "brotli", "libevent",
              "krb5", "keyutils", "libssh2", "libnghttp2", "c-ares", "libev", "libedit",
              "tzcode", "lerc", "libdeflate", "giflib", "pyopenssl", "cryptography", "cffi",
              "pycparser", "wrapt", "jsonschema", "rpds-py", "referencing", "traitlets",
              "prometheus-client", "bleach", "webencodings", "defusedxml", "mistune"]


def _loguniform(rnd, lo, hi):
    import math
    return int(math.exp(rnd.uniform(math.log(lo), math.log(hi))))


def plan(scale):
    """[spec] in lock order (sorted by name); a spec is a dict of plain values."""
    rnd = random.Random(SEED)
    specs = []

    def add(kind, name, bin_bytes, nfiles, fmt="conda", **kw):
        specs.append(dict(kind=kind, name=name, bin_bytes=int(bin_bytes), nfiles=int(nfiles),
                          fmt=fmt, seed=rnd.getrandbits(32), **kw))

    full = scale == "full"
    add("python", "python", (30 if full else 3) * MB, 2200 if full else 300)
    if full:
        for kind, name, b, n in HUGE:
            add(kind, name, b, n)
        n_mid, n_tail = 25, 120
    else:
        n_mid, n_tail = 2, 97
    for i in range(n_mid):
        kind = "pyext" if rnd.random() < 0.5 else "lib"
        b = _loguniform(rnd, 6 * MB, 90 * MB) if full else _loguniform(rnd, 1 * MB, 3 * MB)
        n = (_loguniform(rnd, 300, 2500) if kind == "pyext" else _loguniform(rnd, 10, 300))
        if not full:
            n = min(n, 200)
        add(kind, MID_NAMES[i], b, n)
    used = set(s["name"] for s in specs)
    words = [w for w in TAIL_WORDS if w not in used]
    for i in range(n_tail):
        name = words[i] if i < len(words) else f"tailpkg{i:03d}"
        r = rnd.random()
        if name in ("tzdata", "tzcode"):
            kind = "data"
        elif r < 0.45:
            kind = "noarch"
        elif r < 0.75:
            kind = "lib"
        elif r < 0.95:
            kind = "pyext"
        else:
            kind = "data"
        hi = 6 * MB if full else 400 * KB
        b = _loguniform(rnd, 4 * KB, hi) if kind in ("lib", "pyext") else 0
        if kind == "data":
            n = _loguniform(rnd, 100, 1200) if full else _loguniform(rnd, 50, 300)
        elif kind == "noarch":
            n = _loguniform(rnd, 5, 400) if full else _loguniform(rnd, 5, 120)
        elif kind == "pyext":
            n = _loguniform(rnd, 10, 300) if full else _loguniform(rnd, 5, 80)
        else:
            n = _loguniform(rnd, 2, 40)
        add(kind, name, b, n)
    # ~20% .tar.bz2 by count, never the interpreter or the 50-150 MB ones (as on conda-forge,
    # where the old format survives in small and mid-sized packages)
    eligible = [s for s in specs if s["kind"] != "python" and s["name"] not in
                {h[1] for h in HUGE}]
    for s in rnd.sample(eligible, round(0.2 * len(specs))):
        s["fmt"] = "tar.bz2"
    # a few small binaries carry a binary placeholder (must be copied, not linked)
    for s in specs:
        s["binary_placeholder"] = (s["kind"] == "python"
                                   or (s["kind"] == "lib" and s["bin_bytes"] < 8 * MB
                                       and (s["seed"] % 10) == 0))
    return sorted(specs, key=lambda s: s["name"])


# ----------------------------------------------------------------------------------------
# Package builder (runs in worker processes)
# ----------------------------------------------------------------------------------------

PY_WORDS = ("import", "def", "return", "self", "value", "data", "result", "None", "True",
            "for", "in", "if", "else", "class", "lambda", "yield", "with", "as", "try",
            "except", "raise", "array", "index", "frame", "dtype", "shape", "axis", "np",
            "kwargs", "args", "len", "isinstance", "dict", "list", "tuple", "key", "obj")


def text_pool(rnd, n=1200):
    out = []
    for _ in range(n):
        ind = "    " * rnd.randint(0, 3)
        words = [rnd.choice(PY_WORDS) for _ in range(rnd.randint(2, 10))]
        if rnd.random() < 0.5:
            words.append(f"_{rnd.getrandbits(24):x}")
        out.append(ind + " ".join(words))
    return out


class Gen:
    def __init__(self, spec):
        self.spec = spec
        self.rnd = random.Random(spec["seed"])
        self.pool = text_pool(self.rnd)
        self.entries = []
        self.paths = set()

    def text(self, n):
        k = max(1, n // 40)
        return ("\n".join(self.rnd.choices(self.pool, k=k)) + "\n").encode()

    def add(self, e):
        if e.path not in self.paths:
            self.paths.add(e.path)
            self.entries.append(e)

    def file(self, path, data, mode=0o644, **kw):
        self.add(gen_fixtures.f(path, data, mode, **kw))

    def link(self, path, target):
        self.add(gen_fixtures.ln(path, target))

    def text_size(self):
        return _loguniform(self.rnd, 150, 30 * KB)

    def binary(self, n, placeholder=False):
        data = gen_fixtures.binlike(self.rnd.getrandbits(32), max(n, 64))
        if placeholder:
            at = min(len(data) // 3, 4096)
            ins = (b"\x00" + P.encode() + b"/lib:" + P.encode() + b"/lib64\x00"
                   + P.encode() + b"/share/terminfo\x00")
            data = data[:at] + ins + data[at + len(ins):]
        return data

    def split(self, total, k):
        """k positive parts of total, uneven."""
        w = [self.rnd.random() + 0.2 for _ in range(k)]
        s = sum(w)
        return [max(64, int(total * x / s)) for x in w]

    def py_tree(self, base, n, depth=3):
        """n .py/.pyi/data files under base/ in nested subpackages (with tests/)."""
        rnd = self.rnd
        dirs = [base]
        made = 0
        while made < n:
            if rnd.random() < 0.08 or len(dirs) == 1:
                parent = rnd.choice(dirs)
                if parent.count("/") - base.count("/") < depth:
                    sub = f"{parent}/{rnd.choice(['core', 'io', 'util', 'tests', 'api', 'ops', 'internal', 'compat', 'plotting', 'linalg', 'sparse', 'stats'])}{rnd.randint(0, 9)}"
                    if sub not in dirs:
                        dirs.append(sub)
                        self.file(f"{sub}/__init__.py", self.text(rnd.randint(0, 400)))
                        made += 1
                        continue
            d = rnd.choice(dirs)
            r = rnd.random()
            if r < 0.85:
                self.file(f"{d}/m{made:05d}.py", self.text(self.text_size()))
            elif r < 0.93:
                self.file(f"{d}/m{made:05d}.pyi", self.text(self.text_size() // 3))
            else:
                self.file(f"{d}/data{made:05d}.json",
                          ('{"k": "' + "%x" % rnd.getrandbits(64) + '"}\n') * rnd.randint(1, 60))
            made += 1
        if base + "/__init__.py" not in self.paths:
            self.file(base + "/__init__.py", self.text(300))

    def dist_info(self, root, name, version):
        di = f"{root}/{name.replace('-', '_')}-{version}.dist-info"
        self.file(f"{di}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        self.file(f"{di}/INSTALLER", "conda\n")
        self.file(f"{di}/LICENSE", self.text(1200))
        self.file(f"{di}/top_level.txt", name.replace("-", "_") + "\n")


def build_spec(spec):
    """-> gen_fixtures.Pkg for a plan spec."""
    g = Gen(spec)
    rnd = g.rnd
    kind, name = spec["kind"], spec["name"]
    ident = name.replace("-", "_")
    version = f"{1 + spec['seed'] % 5}.{spec['seed'] % 17}.{spec['seed'] % 7}"
    build = f"h{spec['seed']:08x}_0"
    subdir, noarch, depends, entry_points = "linux-64", None, [], []
    nfiles = spec["nfiles"]

    if kind == "python":
        version, build = "3.11.7", "h_mat_bench_0"
        g.file(f"bin/python{PY_XY}", '#!/bin/sh\nexec /usr/bin/python3 "$@"\n', 0o755)
        g.link("bin/python", f"python{PY_XY}")
        g.link("bin/python3", f"python{PY_XY}")
        g.add(gen_fixtures.d(f"{SITE}"))
        so = f"lib/libpython{PY_XY}.so.1.0"
        parts = g.split(spec["bin_bytes"], 4)
        g.file(so, g.binary(parts[0], placeholder=True), 0o755, placeholder=P,
               file_mode="binary")
        g.link(f"lib/libpython{PY_XY}.so", f"libpython{PY_XY}.so.1.0")
        g.link("lib/libpython3.so", f"libpython{PY_XY}.so.1.0")
        dyn = f"lib/python{PY_XY}/lib-dynload"
        for j, n in enumerate(g.split(sum(parts[1:]), 60)):
            g.file(f"{dyn}/_mod{j:02d}{EXT_SUFFIX}", g.binary(n), 0o755)
        g.file(f"lib/python{PY_XY}/_sysconfigdata__linux_x86_64-linux-gnu.py",
               "".join(f"    '{k}': '{P}/{k.lower()}',\n" for k in
                       ("BINDIR", "LIBDIR", "INCLUDEDIR", "CONFINCLUDEDIR", "prefix", "exec_prefix",
                        "LIBPL", "LIBDEST", "BINLIBDEST", "DESTSHARED", "INCLUDEPY", "srcdir")),
               0o644, placeholder=P, file_mode="text")
        g.file(f"lib/python{PY_XY}/config-{PY_XY}-x86_64-linux-gnu/Makefile",
               f"prefix=\t\t{P}\nexec_prefix=\t{P}\nLIBDIR=\t\t{P}/lib\n".encode()
               + g.text(20000), 0o644, placeholder=P, file_mode="text")
        g.file(f"lib/pkgconfig/python-{PY_XY}.pc",
               f"prefix={P}\nlibdir=${{prefix}}/lib\nName: Python\nVersion: {PY_XY}\n",
               0o644, placeholder=P, file_mode="text")
        for j in range(min(120, nfiles // 10)):
            g.file(f"include/python{PY_XY}/h{j:03d}.h", g.text(g.text_size()))
        g.py_tree(f"lib/python{PY_XY}/stdlib", max(1, nfiles - len(g.entries)), depth=2)
    elif kind == "lib":
        major = 1 + spec["seed"] % 3
        k = 1 if spec["bin_bytes"] < 2 * MB else rnd.randint(2, 6)
        for j, n in enumerate(g.split(spec["bin_bytes"], k)):
            lib = f"lib{ident}{'' if j == 0 else '_' + str(j)}"
            real = f"lib/{lib}.so.{major}.{spec['seed'] % 10}.0"
            ph = spec["binary_placeholder"] and j == 0
            g.file(real, g.binary(n, placeholder=ph), 0o755,
                   **({"placeholder": P, "file_mode": "binary"} if ph else {}))
            g.link(f"lib/{lib}.so.{major}", os.path.basename(real))
            g.link(f"lib/{lib}.so", f"{lib}.so.{major}")
        g.file(f"lib/pkgconfig/{name}.pc",
               f"prefix={P}\nlibdir=${{prefix}}/lib\nincludedir=${{prefix}}/include\n"
               f"Name: {name}\nVersion: {version}\nLibs: -L{P}/lib -l{ident}\n",
               0o644, placeholder=P, file_mode="text")
        if spec["seed"] % 4 == 0:
            g.file(f"bin/{name}-config", f"#!/bin/sh\nprefix={P}\necho $prefix\n", 0o755,
                   placeholder=P, file_mode="text")
        if spec["seed"] % 3 == 0:
            g.file(f"lib/cmake/{name}/{name}Config.cmake",
                   f'set({ident}_ROOT "{P}")\n'.encode() + g.text(3000), 0o644,
                   placeholder=P, file_mode="text")
        for j in range(max(0, nfiles - len(g.entries))):
            g.file(f"include/{ident}/h{j:04d}.h", g.text(g.text_size()))
    elif kind == "pyext":
        depends = [f"python >={PY_XY},<3.12.0a0"]
        g.py_tree(f"{SITE}/{ident}", max(1, nfiles - 8), depth=3)
        k = 1 if spec["bin_bytes"] < 1 * MB else rnd.randint(2, 8)
        for j, n in enumerate(g.split(spec["bin_bytes"], k)):
            g.file(f"{SITE}/{ident}/_ext{j}{EXT_SUFFIX}", g.binary(n), 0o755)
        g.dist_info(SITE, name, version)
    elif kind == "noarch":
        subdir, noarch = "noarch", "python"
        depends = ["python >=3.8"]
        g.py_tree(f"site-packages/{ident}", max(1, nfiles - 5), depth=2)
        g.dist_info("site-packages", name, version)
        if spec["seed"] % 4 == 0:
            entry_points = [f"{name}-run = {ident}:main"]
            g.file(f"site-packages/{ident}/__init__.py",
                   "def main():\n    print('hello')\n    return 0\n")
        if spec["seed"] % 9 == 0:
            g.file(f"python-scripts/{name}-tool", f"#!{P}/bin/python\nimport {ident}\n",
                   0o755, placeholder=P, file_mode="text")
    elif kind == "data":
        subdir, noarch = "noarch", "generic"
        areas = ["Africa", "America", "Asia", "Europe", "Pacific", "Etc", "Indian", "Atlantic"]
        for j in range(nfiles):
            g.file(f"share/{name}/{areas[j % len(areas)]}/z{j:04d}",
                   g.binary(_loguniform(rnd, 100, 4000)))
        g.link(f"share/{name}/UTC", "Etc/z0005")
    else:
        raise ValueError(kind)
    return gen_fixtures.Pkg(name, version, build, subdir, spec["fmt"], g.entries,
                            noarch=noarch, depends=depends, entry_points=entry_points)


def archive_bytes(pkg, level):
    """gen_fixtures.build_archive with a chosen zstd level."""
    info, payload = gen_fixtures.pkg_members(pkg)
    if pkg.fmt == "conda":
        cctx = gen_fixtures.zstandard.ZstdCompressor(level=level, write_checksum=True)
        import tarfile
        info_tar = cctx.compress(gen_fixtures.tar_bytes(info, tarfile.PAX_FORMAT))
        pkg_tar = cctx.compress(gen_fixtures.tar_bytes(payload, tarfile.PAX_FORMAT))
        return gen_fixtures.write_zip([("metadata.json", b'{"conda_pkg_format_version": 2}'),
                                       (f"pkg-{pkg.stem}.tar.zst", pkg_tar),
                                       (f"info-{pkg.stem}.tar.zst", info_tar)])
    return gen_fixtures.build_archive(pkg)  # bz2 level 9, as conda-build


def build_package(args):
    spec, serve = args
    pkg = build_spec(spec)
    installed = sum(len(e.data) for e in pkg.entries if e.kind == "file")
    level = 3 if installed > 64 * MB else (6 if installed > 8 * MB else 10)
    blob = archive_bytes(pkg, level)
    rel = f"channel/{pkg.subdir}/{pkg.file_name}"
    gen_fixtures.write(os.path.join(serve, rel), blob)
    entry = gen_fixtures.lock_entry(pkg, blob)
    entry["url"] = "@BASE_URL@/" + rel
    counts = {k: sum(1 for e in pkg.entries if e.kind == k) for k in ("file", "symlink", "dir")}
    return {"entry": entry, "rel": rel, "fmt": pkg.fmt, "stem": pkg.stem, "kind": spec["kind"],
            "installed_bytes": installed, "files": counts["file"],
            "symlinks": counts["symlink"], "entry_points": len(pkg.entry_points),
            "placeholders": sum(1 for e in pkg.entries if e.placeholder)}


def build_wheels(args):
    n, serve = args
    out = []
    for w in gen_wheels.bench_wheels()[:n]:
        blob = w.build()
        rel = f"wheels/{w.file_name}"
        gen_fixtures.write(os.path.join(serve, rel), blob)
        out.append({"name": w.name, "version": w.version, "file_name": w.file_name, "rel": rel,
                    "sha256": hashlib.sha256(blob).hexdigest(), "size": len(blob),
                    "files": len(w.files), "installed_bytes": sum(len(d) for d, _ in
                                                                  w.files.values())})
    return out


SCALES = {"small": {"wheels": 10}, "full": {"wheels": 40}}


def ensure_workload(out, scale, regen):
    """OUT/workload/<scale>/{serve/,locks/,workload.json}; regenerated when the stamp differs."""
    root = os.path.join(out, "workload", scale)
    stamp = f"{WORKLOAD_VERSION} {scale}"
    meta_path = os.path.join(root, "workload.json")
    if not regen and os.path.isfile(meta_path):
        with open(meta_path, encoding="utf-8") as fh:
            meta = json.load(fh)
        if meta.get("stamp") == stamp:
            print(f"workload: reusing {root} ({stamp})")
            return root, meta
    if os.path.isdir(root):
        shutil.rmtree(root)
    serve = os.path.join(root, "serve")
    os.makedirs(serve)
    t0 = time.perf_counter()
    specs = plan(scale)
    order = sorted(range(len(specs)), key=lambda i: -specs[i]["bin_bytes"])
    results = [None] * len(specs)
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(NPROC) as pool:
        wheels_job = pool.apply_async(build_wheels, ((SCALES[scale]["wheels"], serve),))
        it = pool.imap(build_package, [(specs[i], serve) for i in order], chunksize=1)
        for i, res in zip(order, it):
            results[i] = res
        wheels = wheels_job.get()
    entries = [r["entry"] for r in results]
    pips = [{"name": gen_wheels.normalize(w["name"]), "version": w["version"],
             "url": "@BASE_URL@/" + w["rel"], "sha256": w["sha256"]} for w in wheels]
    pylock_pkgs = [{"name": w["name"], "version": w["version"],
                    "wheels": [{"name": w["file_name"], "url": "@BASE_URL@/" + w["rel"],
                                "sha256": w["sha256"], "size": w["size"]}]} for w in wheels]
    locks = os.path.join(root, "locks")
    gen_fixtures.write(os.path.join(locks, "conda-lock.yml.in"),
                       gen_fixtures.conda_lock_text(entries))
    gen_fixtures.write(os.path.join(locks, "pylock.toml.in"), gen_wheels.pylock_text(pylock_pkgs))
    gen_fixtures.write(os.path.join(locks, "mixed.conda-lock.yml.in"),
                       gen_fixtures.conda_lock_text(entries, pips))
    conda = [{k: r[k] for k in ("rel", "fmt", "stem", "kind", "installed_bytes", "files",
                                "symlinks", "entry_points", "placeholders")}
             | {"name": r["entry"]["name"], "size": r["entry"]["size"]} for r in results]
    meta = {"stamp": stamp, "scale": scale, "generated_seconds": time.perf_counter() - t0,
            "conda": conda, "wheels": wheels}
    meta["stats"] = workload_stats(meta)
    with open(meta_path, "w", encoding="utf-8") as fh:
        json.dump(meta, fh, indent=1)
    print(f"workload: generated {root} in {meta['generated_seconds']:.1f} s")
    return root, meta


def workload_stats(meta):
    c, w = meta["conda"], meta["wheels"]
    return {
        "conda_packages": len(c),
        "conda_tar_bz2": sum(1 for p in c if p["fmt"] == "tar.bz2"),
        "conda_archive_bytes": sum(p["size"] for p in c),
        "conda_tar_bz2_archive_bytes": sum(p["size"] for p in c if p["fmt"] == "tar.bz2"),
        "conda_installed_bytes": sum(p["installed_bytes"] for p in c),
        "conda_files": sum(p["files"] for p in c),
        "conda_symlinks": sum(p["symlinks"] for p in c),
        "conda_placeholder_files": sum(p["placeholders"] for p in c),
        "conda_entry_points": sum(p["entry_points"] for p in c),
        "largest_archives_mb": sorted((round(p["size"] / MB, 1) for p in c), reverse=True)[:6],
        "wheels": len(w),
        "wheel_bytes": sum(x["size"] for x in w),
        "wheel_installed_bytes": sum(x["installed_bytes"] for x in w),
        "wheel_files": sum(x["files"] for x in w),
    }


# ----------------------------------------------------------------------------------------
# Running things
# ----------------------------------------------------------------------------------------

class BenchError(SystemExit):
    pass


def need_tool(name, hint):
    path = shutil.which(name)
    if not path:
        raise BenchError(f"startup.py: `{name}` not found on PATH ({hint})")
    return path


def describe_failure(cmd, cp):
    shown = " ".join(cmd) if len(cmd) < 12 else " ".join(cmd[:10]) + f" ... ({len(cmd)} args)"
    return (f"command failed (exit {cp.returncode}): {shown}\n"
            f"--- stdout (tail):\n{(cp.stdout or '')[-2000:]}\n"
            f"--- stderr (tail):\n{(cp.stderr or '')[-3000:]}")


def run(cmd, env=None, cwd=None):
    cp = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        text=True, errors="replace")
    if cp.returncode != 0:
        raise BenchError(describe_failure(cmd, cp))
    return cp


def cpu_children():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


class Measure:
    """Times a callable; wall seconds and CPU seconds (user+sys) of all children it waited for."""

    def __init__(self):
        self.wall = self.cpu = None

    def __call__(self, fn):
        os.sync()  # start from a clean writeback state (untimed)
        c0, t0 = cpu_children(), time.perf_counter()
        fn()
        self.wall = time.perf_counter() - t0
        self.cpu = cpu_children() - c0
        return self


def run_pool(cmds, env):
    """Runs shell pipelines, NPROC at a time (like xargs -P NPROC), every one checked."""
    def one(cmd):
        cp = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            errors="replace")
        if cp.returncode != 0:
            raise BenchError(describe_failure(["bash", "-c", cmd], cp))

    with concurrent.futures.ThreadPoolExecutor(NPROC) as ex:
        for fut in [ex.submit(one, c) for c in cmds]:
            fut.result()


def q(s):
    import shlex
    return shlex.quote(s)


CPU_FLOOR_SCRIPT = r"""
import bz2, sys, zipfile, zstandard
CH = 1 << 20
for path in sys.argv[1:]:
    if path.endswith(".conda"):
        with zipfile.ZipFile(path) as zf:
            for name in zf.namelist():
                if name.endswith(".tar.zst"):
                    with zf.open(name) as raw, zstandard.ZstdDecompressor().stream_reader(raw) as r:
                        while r.read(CH):
                            pass
    elif path.endswith(".tar.bz2"):
        with bz2.open(path, "rb") as r:
            while r.read(CH):
                pass
    elif path.endswith(".whl"):
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                with zf.open(info) as r:
                    while r.read(CH):
                        pass
    else:
        raise SystemExit("unknown archive " + path)
"""


# ----------------------------------------------------------------------------------------
# The benchmark
# ----------------------------------------------------------------------------------------

class Bench:
    def __init__(self, args):
        self.args = args
        self.binary = os.path.abspath(args.binary)
        self.out = os.path.abspath(args.out)
        self.work = os.path.join(self.out, "run")
        self.tmp = os.path.join(self.work, "tmp")
        self.results = {}      # (group, scenario) -> {"wall": [...], "cpu": [...], "kind": ...}
        self.reports = {}      # (group, scenario) -> [report dicts]
        self.rss_kb = {}       # group -> [kb]
        self.cold_cpu = {}     # group -> [(user s, sys s)] of the cold runs
        self.notes = []
        self.peers = {}
        self.t_last = time.perf_counter()

    # --- bookkeeping ------------------------------------------------------------------
    def record(self, group, scenario, kind, m, wall=None, cpu=None):
        r = self.results.setdefault((group, scenario), {"kind": kind, "wall": [], "cpu": []})
        r["wall"].append(m.wall if wall is None else wall)
        r["cpu"].append(m.cpu if cpu is None else cpu)
        if self.args.verbose:
            print(f"  {group:<7}{scenario:<44}{r['wall'][-1]:9.3f} s  cpu {r['cpu'][-1]:7.2f} s"
                  f"  (+{time.perf_counter() - self.t_last:.1f} s)", flush=True)
        self.t_last = time.perf_counter()

    def median(self, group, scenario, what="wall"):
        r = self.results.get((group, scenario))
        return statistics.median(r[what]) if r and r[what] else None

    def path(self, *parts):
        return os.path.join(self.work, *parts)

    # --- setup ----------------------------------------------------------------------------
    def check_tools(self):
        if not os.access(self.binary, os.X_OK):
            raise BenchError(f"startup.py: binary not found or not executable: {self.binary} "
                             "(build it: cmake --build --preset release -j2)")
        for tool, hint in (("nginx", "apt-get install nginx-light"),
                           ("openssl", "apt-get install openssl"),
                           ("zstd", "apt-get install zstd"), ("unzip", "apt-get install unzip"),
                           ("bzip2", "apt-get install bzip2"), ("tar", "apt-get install tar"),
                           ("gzip", "apt-get install gzip"), ("cp", "coreutils")):
            need_tool(tool, hint)
        if not os.access("/usr/bin/time", os.X_OK):
            raise BenchError("startup.py: /usr/bin/time not found (apt-get install time)")
        self.bunzip = (["lbzip2", "-n", "1", "-dc"] if shutil.which("lbzip2")
                       else ["bzip2", "-dc"])
        self.gzip_c = (["pigz", "-p", str(NPROC), "-6"] if shutil.which("pigz")
                       else ["gzip", "-6"])
        for name, probe in (("cph", ["cph", "--version"]),
                            ("pip", [sys.executable, "-m", "pip", "--version"]),
                            ("installer", [sys.executable, "-c", "import installer"])):
            ok = (shutil.which(probe[0]) is not None
                  and subprocess.run(probe, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL).returncode == 0)
            self.peers[name] = ok
        for name in ("micromamba", "pixi", "uv"):
            self.peers[name] = shutil.which(name) is not None
        for name, hint in (("cph", "apt-get install conda-package-handling"),
                           ("pip", "apt-get install python3-pip"),
                           ("installer", "apt-get install python3-installer")):
            if not self.peers[name]:
                print(f"peer {name}: not present ({hint}); its rows are skipped")
        for name in ("micromamba", "pixi", "uv"):
            print(f"peer {name}: {'present' if self.peers[name] else 'not present'}")

    def render_locks(self, base):
        self.locks = {}
        for name in ("conda-lock.yml", "pylock.toml", "mixed.conda-lock.yml"):
            dest = self.path("locks", name)
            with open(os.path.join(self.wl_root, "locks", name + ".in"), encoding="utf-8") as fh:
                text = fh.read().replace("@BASE_URL@", base)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "w", encoding="utf-8") as fh:
                fh.write(text)
            self.locks[name] = dest

    def mat_cmd(self, lock, prefix, cache, report=None, jobs=None, extra=()):
        cmd = [self.binary, "install", lock, "--prefix", prefix, "--cache-dir", cache, "-q",
               "--ca-bundle", self.ca, *extra]
        if jobs:
            cmd += ["--jobs", str(jobs)]
        if report:
            cmd += ["--report", report]
        return cmd

    def probe_mixed(self):
        cp = subprocess.run(self.mat_cmd(self.locks["mixed.conda-lock.yml"], self.path("probe"),
                                         self.path("probe-cache")) + ["--dry-run"],
                            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, errors="replace")
        self.discard(self.path("probe"))
        self.discard(self.path("probe-cache"))
        ok = cp.returncode == 0 and "pypi" in cp.stdout
        if not ok:
            print(f"mixed conda + pip lock: not supported by this binary (exit {cp.returncode}: "
                  f"{(cp.stderr or cp.stdout).strip().splitlines()[-1:] }); skipped")
        return ok

    # --- materializer scenarios -------------------------------------------------------------
    def mat_run(self, group, scenario, cmd, rss=False, report=None):
        full = (["/usr/bin/time", "-f", "@@MATBENCH %e %U %S %M", *cmd] if rss else cmd)
        holder = {}

        def go():
            holder["cp"] = run(full, env=self.env)

        m = Measure()(go)
        self.record(group, scenario, "materializer", m)
        if rss:
            line = [ln for ln in holder["cp"].stderr.splitlines() if ln.startswith("@@MATBENCH")]
            if line:
                f = line[-1].split()
                self.rss_kb.setdefault(group, []).append(int(f[4]))
                self.cold_cpu.setdefault(group, []).append((float(f[2]), float(f[3])))
        if report:
            with open(report, encoding="utf-8") as fh:
                rep = json.load(fh)
            if not rep.get("ok", False):
                raise BenchError(f"{scenario}: report says not ok: {report}")
            self.reports.setdefault((group, scenario), []).append(rep)
        return m

    def materializer_group(self, group, lock, rep, extra=(), jobs1=False, keep_cold=False):
        cache, cold, warm = (self.path(f"{group}-cache"), self.path(f"{group}-cold"),
                             self.path(f"{group}-warm"))
        for d in (cache, cold, warm):
            self.discard(d)
        rdir = self.path("reports")
        os.makedirs(rdir, exist_ok=True)
        rp = lambda s: os.path.join(rdir, f"{group}-{s}-{rep}.json")  # noqa: E731
        self.mat_run(group, "materializer cold", self.mat_cmd(lock, cold, cache, rp("cold"),
                                                              extra=extra),
                     rss=True, report=rp("cold"))
        self.mat_run(group, "materializer no-op", self.mat_cmd(lock, cold, cache, rp("noop"),
                                                               extra=extra), report=rp("noop"))
        self.mat_run(group, "materializer warm", self.mat_cmd(lock, warm, cache, rp("warm"),
                                                              extra=extra), report=rp("warm"))
        if group == "conda":
            dst = self.path("cp-al")
            self.discard(dst)
            self.record(group, "cp -al of prefix (warm floor)", "floor",
                        Measure()(lambda: run(["cp", "-al", cold, dst])))
            self.discard(dst)
        self.discard(warm)
        if jobs1:
            self.discard(cache)
            j1 = self.path(f"{group}-j1")
            self.discard(j1)
            self.mat_run(group, "materializer cold --jobs 1",
                         self.mat_cmd(lock, j1, cache, rp("cold-j1"), jobs=1, extra=extra),
                         report=rp("cold-j1"))
            self.discard(j1)
        self.discard(cache)
        return cold

    # --- peers ------------------------------------------------------------------------------
    def cph_conda(self):
        ext, prefix = self.path("cph-pkgs"), self.path("cph-prefix")
        self.discard(ext)
        self.discard(prefix)
        os.makedirs(ext)
        archives = self.archives("conda")

        def go():
            run_pool([f"cph x {q(a)} --dest {q(os.path.join(ext, self.stem(a)))}"
                      for a in archives], self.env)
            os.makedirs(os.path.join(prefix, SITE))
            os.makedirs(os.path.join(prefix, "bin"), exist_ok=True)
            for a in archives:  # conda links package by package
                d = os.path.join(ext, self.stem(a))
                tops = [t for t in sorted(os.listdir(d)) if t != "info"]
                plain = [os.path.join(d, t) for t in tops
                         if t not in ("site-packages", "python-scripts")]
                if plain:
                    run(["cp", "-al", *plain, prefix + "/"])
                if "site-packages" in tops:
                    run(["cp", "-al", os.path.join(d, "site-packages") + "/.",
                         os.path.join(prefix, SITE) + "/"])
                if "python-scripts" in tops:
                    run(["cp", "-al", os.path.join(d, "python-scripts") + "/.",
                         os.path.join(prefix, "bin") + "/"])

        self.record("conda", "cph x (nproc at a time) + cp -al", "peer", Measure()(go))
        self.discard(ext)
        self.discard(prefix)

    def micromamba_conda(self, rep):
        root, prefix = self.path("mamba-root"), self.path("mamba-prefix")
        self.discard(root)
        self.discard(prefix)
        explicit = self.path("locks", "explicit.txt")
        with open(explicit, "w", encoding="utf-8") as fh:
            fh.write("@EXPLICIT\n" + "".join(
                f"{self.base}/{p['rel']}\n" for p in self.meta["conda"]))
        env = dict(self.env, MAMBA_ROOT_PREFIX=root, SSL_CERT_FILE=self.ca,
                   REQUESTS_CA_BUNDLE=self.ca)
        try:
            self.record("conda", "micromamba create (explicit)", "peer", Measure()(
                lambda: run(["micromamba", "create", "-y", "-q", "-p", prefix, "--file",
                             explicit], env=env)))
        except BenchError as e:
            self.note(f"micromamba failed, row skipped: {str(e)[:300]}")
        self.discard(root)
        self.discard(prefix)

    def pip_wheels(self):
        prefix = self.path("pip-prefix")
        self.discard(prefix)
        import harness
        boot = harness._PIP_BOOT  # Debian pip with the upstream posix_prefix scheme
        env = harness.pip_env({"TMPDIR": self.tmp})
        self.record("wheels", "pip install --no-index (local files)", "peer", Measure()(
            lambda: run([sys.executable, "-c", boot, "install", "--no-deps", "--no-index",
                         "--no-compile", "--prefix", prefix, "--no-warn-script-location",
                         *self.archives("wheels")], env=env)))
        n = count_files(prefix)
        self.discard(prefix)
        return n

    def installer_wheels(self):
        dest = self.path("installer-prefix")
        self.discard(dest)
        import harness
        env = harness.pip_env({"TMPDIR": self.tmp})

        def go():
            for w in self.archives("wheels"):
                run([sys.executable, "-m", "installer", "--no-compile-bytecode", "--destdir",
                     dest, "--prefix", "/p", w], env=env)

        self.record("wheels", "python3 -m installer (per wheel)", "peer", Measure()(go))
        self.discard(dest)

    def uv_wheels(self):
        prefix, cache = self.path("uv-prefix"), self.path("uv-cache")
        self.discard(prefix)
        self.discard(cache)
        try:
            self.record("wheels", "uv pip install --no-index (local files)", "peer", Measure()(
                lambda: run(["uv", "pip", "install", "--no-deps", "--no-index", "--python",
                             sys.executable, "--prefix", prefix, "--cache-dir", cache,
                             "--break-system-packages", *self.archives("wheels")],
                            env=self.env)))
        except BenchError as e:
            self.note(f"uv failed, row skipped: {str(e)[:300]}")
        self.discard(prefix)
        self.discard(cache)

    # --- floors -----------------------------------------------------------------------------
    def archives(self, which):
        serve = os.path.join(self.wl_root, "serve")
        if which == "conda":
            items = sorted(self.meta["conda"], key=lambda p: -p["size"])
        elif which == "wheels":
            items = sorted(self.meta["wheels"], key=lambda w: -w["size"])
        else:
            items = sorted(self.meta["conda"] + self.meta["wheels"], key=lambda p: -p["size"])
        return [os.path.join(serve, p["rel"]) for p in items]

    @staticmethod
    def stem(path):
        b = os.path.basename(path)
        for ext in (".conda", ".tar.bz2", ".whl"):
            if b.endswith(ext):
                return b[:-len(ext)]
        return b

    def tool_cmd(self, a, dest):
        d = os.path.join(dest, self.stem(a))
        if a.endswith(".conda"):
            s = self.stem(a)
            return (f"mkdir -p {q(d)} && unzip -p {q(a)} {q('pkg-' + s + '.tar.zst')} | "
                    f"zstd -dcq | tar -xf - -C {q(d)} && unzip -p {q(a)} "
                    f"{q('info-' + s + '.tar.zst')} | zstd -dcq | tar -xf - -C {q(d)}")
        if a.endswith(".tar.bz2"):
            return f"mkdir -p {q(d)} && {' '.join(self.bunzip)} {q(a)} | tar -xf - -C {q(d)}"
        return f"unzip -qo {q(a)} -d {q(d)}"

    def tool_floor(self, group, which):
        dest = self.path("tool-floor")
        self.discard(dest)
        os.makedirs(dest)
        cmds = [self.tool_cmd(a, dest) for a in self.archives(which)]
        self.record(group, "tool floor (CLI decompress, all cores)", "floor",
                    Measure()(lambda: run_pool(cmds, self.env)))
        self.discard(dest)

    def cpu_floor(self, group, which):
        m = Measure()(lambda: run([sys.executable, "-c", CPU_FLOOR_SCRIPT,
                                   *self.archives(which)], env=self.env))
        # the floor is the CPU time spread over every core; its own wall time is sequential
        self.record(group, "CPU floor (decompress CPU s / cores)", "floor", m,
                    wall=m.cpu / NPROC)

    def tar_gz_baseline(self, rep):
        dest = self.path("tar-x")
        self.discard(dest)
        os.makedirs(dest)
        self.record("conda", "tar xzf of the env (Docker layer)", "baseline", Measure()(
            lambda: run(["tar", "-xzf", self.env_tgz, "-C", dest])))
        self.discard(dest)

    def make_env_tgz(self, prefix):
        self.env_tgz = self.path("env.tar.gz")
        run(["bash", "-o", "pipefail", "-c",
             f"tar -C {q(prefix)} -cf - . | {' '.join(self.gzip_c)} > {q(self.env_tgz)}"])

    def discard(self, path):
        """Moves a scratch tree into OUT/run/trash instead of deleting it. On this kind of
        machine (ext4 without a journal) inodes freed recently are skipped by the inode
        allocator one buffer-cache lookup at a time (ext4 recently_deleted()): for 60 s, and for
        300 s once a new inode lands in the same inode-table block and dirties it, which every
        run that creates 35k files does. Right after an `rm -rf` of a rep's ~20 GB that made a
        cold install's sys time grow by ~1.5 s (find_get_block_common + recently_deleted were
        12% of its samples; 2.8% 65 s after the delete, 1.2% after 305 s): deleting between
        runs would measure the benchmark's own churn. The trash is emptied at rep boundaries
        (full scale, to bound the disk use) followed by --settle seconds."""
        if not os.path.lexists(path):
            return
        self.trash_n += 1
        os.rename(path, os.path.join(self.trash, f"{self.trash_n:05d}"))

    def empty_trash(self, settle):
        t0 = time.perf_counter()
        shutil.rmtree(self.trash)
        os.makedirs(self.trash)
        os.sync()
        if settle > 0:
            print(f"emptied the scratch trash in {time.perf_counter() - t0:.1f} s; settling "
                  f"{settle:.0f} s (see Bench.discard)", flush=True)
            time.sleep(settle)
        self.t_last = time.perf_counter()

    def note(self, text):
        print("note:", text)
        self.notes.append(text)

    # --- the whole run ------------------------------------------------------------------------
    def execute(self):
        import harness
        self.check_tools()
        old = os.path.isdir(self.work)
        if old:  # left by --keep or an interrupted run
            shutil.rmtree(self.work)
        os.makedirs(self.tmp)
        self.old_work_deleted = old
        self.trash, self.trash_n = os.path.join(self.work, "trash"), 0
        os.makedirs(self.trash)
        tempfile.tempdir = self.tmp           # harness.Nginx's mkdtemp lands under OUT
        self.env = harness.clean_env({"TMPDIR": self.tmp})
        self.wl_root, self.meta = ensure_workload(self.out, self.args.scale, self.args.regen)
        st = self.meta["stats"]
        print(f"workload ({self.args.scale}): {st['conda_packages']} conda packages "
              f"({st['conda_tar_bz2']} .tar.bz2), {st['conda_archive_bytes'] / MB:.0f} MB "
              f"archives, {st['conda_installed_bytes'] / MB:.0f} MB / {st['conda_files']} files "
              f"+ {st['conda_symlinks']} symlinks installed; {st['wheels']} wheels "
              f"({st['wheel_bytes'] / MB:.1f} MB, {st['wheel_files']} files)")
        self.server = harness.Nginx(os.path.join(self.wl_root, "serve"))
        try:
            self.server.start()
            self.base, self.ca = self.server.url, self.server.ca_file
            self.render_locks(self.base)
            self.mixed = self.probe_mixed()
            self.reps()
        finally:
            self.server.cleanup()
        self.expected_files = st["conda_files"] + st["conda_symlinks"]

    def warmup(self):
        """One untimed cold install of each lock: page cache, nginx, allocator and the VM's
        memory are warm before the first measured run."""
        for name, extra in (("conda-lock.yml", ()), ("pylock.toml", ("--python", sys.executable)),
                            ("mixed.conda-lock.yml", ())):
            if name.startswith("mixed") and not self.mixed:
                continue
            cache, prefix = self.path("warmup-cache"), self.path("warmup-prefix")
            run(self.mat_cmd(self.locks[name], prefix, cache, extra=extra), env=self.env)
            self.discard(cache)
            self.discard(prefix)

    def reps(self):
        a = self.args
        wheel_extra = ["--python", sys.executable]
        t0 = time.perf_counter()
        for _ in range(a.warmup):
            self.warmup()
        if a.warmup:
            print(f"warm-up done in {time.perf_counter() - t0:.1f} s", flush=True)
        # full scale writes ~20 GB per rep: empty the trash between reps (then settle)
        big = self.meta["stats"]["conda_installed_bytes"] > 500 * MB
        if big or a.settle_always or self.old_work_deleted:
            self.empty_trash(a.settle)
        for rep in range(a.reps):
            t0 = time.perf_counter()
            # conda set
            cold = self.materializer_group("conda", self.locks["conda-lock.yml"], rep,
                                           jobs1=True)
            if rep == 0:
                self.installed_files = count_files(cold)
                self.make_env_tgz(cold)
            self.discard(cold)
            if self.peers["cph"]:
                self.cph_conda()
            if self.peers["micromamba"]:
                self.micromamba_conda(rep)
            self.tool_floor("conda", "conda")
            self.cpu_floor("conda", "conda")
            self.tar_gz_baseline(rep)
            # wheels
            cold = self.materializer_group("wheels", self.locks["pylock.toml"], rep,
                                           extra=wheel_extra)
            if rep == 0:
                self.installed_wheel_files = count_files(cold)
            self.discard(cold)
            if self.peers["pip"]:
                self.pip_files = self.pip_wheels()
            if self.peers["installer"]:
                self.installer_wheels()
            if self.peers["uv"]:
                self.uv_wheels()
            self.tool_floor("wheels", "wheels")
            self.cpu_floor("wheels", "wheels")
            # mixed
            if self.mixed:
                cold = self.materializer_group("mixed", self.locks["mixed.conda-lock.yml"], rep)
                self.discard(cold)
                self.tool_floor("mixed", "all")
                self.cpu_floor("mixed", "all")
            print(f"rep {rep + 1}/{a.reps} done in {time.perf_counter() - t0:.1f} s", flush=True)
            if (big or a.settle_always) and rep + 1 < a.reps:
                self.empty_trash(a.settle)


def count_files(prefix):
    return sum(len(files) for _, _, files in os.walk(prefix))


# ----------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------

GROUP_TITLES = {"conda": "conda env (conda-lock.yml)", "wheels": "wheels (pylock.toml)",
                "mixed": "mixed conda + pip (conda-lock.yml)"}
FLOOR_TOOL = "tool floor (CLI decompress, all cores)"
FLOOR_CPU = "CPU floor (decompress CPU s / cores)"
CPAL = "cp -al of prefix (warm floor)"


def summarize(b):
    rows = []
    for (group, scen), r in b.results.items():
        med = statistics.median(r["wall"])
        ref = b.median(group, "materializer cold")
        tool, cpuf = b.median(group, FLOOR_TOOL), b.median(group, FLOOR_CPU)
        row = {"group": group, "scenario": scen, "kind": r["kind"], "median_s": med,
               "runs_s": r["wall"], "cpu_s": statistics.median(r["cpu"]),
               "x_materializer_cold": med / ref if ref else None,
               "x_tool_floor": med / tool if tool else None,
               "x_cpu_floor": med / cpuf if cpuf else None}
        cpal = b.median(group, CPAL)
        row["x_cp_al"] = (med / cpal if cpal and scen in ("materializer warm", CPAL)
                          else None)
        rows.append(row)
    return rows


def stage_table(b):
    out = {}
    for (group, scen), reps in b.reports.items():
        def med(f):
            vals = [f(r) for r in reps]
            vals = [v for v in vals if v is not None]
            return statistics.median(vals) if vals else None
        st = lambda r, s, k="seconds": (r.get("stages", {}).get(s) or {}).get(k)  # noqa: E731
        out[f"{group}/{scen}"] = {
            "wall_seconds": med(lambda r: r.get("wall_seconds")),
            "download_s": med(lambda r: st(r, "download")),
            "download_sum_s": med(lambda r: st(r, "download", "sum_seconds")),
            "fetch_extract_s": med(lambda r: st(r, "fetch_extract")),
            "extract_s": med(lambda r: st(r, "extract")),
            "extract_sum_s": med(lambda r: st(r, "extract", "sum_seconds")),
            "link_s": med(lambda r: st(r, "link")),
            "link_sum_s": med(lambda r: st(r, "link", "sum_seconds")),
            "link_mode": (reps[-1].get("stages", {}).get("link") or {}).get("mode"),
            "downloaded_mb": med(lambda r: (r.get("totals", {}).get("downloaded_bytes") or 0)
                                 / MB),
            "noop": reps[-1].get("noop"),
        }
        if scen == "materializer cold":
            pk = reps[-1].get("packages", [])
            slow = sorted(pk, key=lambda p: -(p.get("extract_seconds") or 0))[:5]
            out[f"{group}/{scen}"]["slowest_extract"] = [
                (p.get("name"), round(p.get("extract_seconds") or 0, 3),
                 round((p.get("bytes") or 0) / MB, 1)) for p in slow]
    return out


def fmt(v, spec=".2f", suffix=""):
    return "" if v is None else f"{v:{spec}}{suffix}"


def print_table(rows):
    print(f"\n{'scenario':<44}{'median':>10}{'cpu':>9}{'x mat':>8}{'x tool':>8}"
          f"{'x CPU':>8}{'x cp-al':>9}   runs (s)")
    print(f"{'':<44}{'s':>10}{'s':>9}{'cold':>8}{'floor':>8}{'floor':>8}")
    for group in ("conda", "wheels", "mixed"):
        g = [r for r in rows if r["group"] == group]
        if not g:
            continue
        print(f"-- {GROUP_TITLES[group]}")
        for r in g:
            runs = " ".join(f"{v:.3f}" for v in r["runs_s"])
            print(f"  {r['scenario']:<42}{r['median_s']:>9.3f}s{r['cpu_s']:>8.2f}s"
                  f"{fmt(r['x_materializer_cold']):>8}{fmt(r['x_tool_floor']):>8}"
                  f"{fmt(r['x_cpu_floor']):>8}{fmt(r.get('x_cp_al')):>9}   {runs}")


def targets(b):
    out = []

    def t(name, value, ok, detail):
        out.append({"target": name, "value": value, "pass": ok, "detail": detail})

    cold = b.median("conda", "materializer cold")
    tool, cpuf = b.median("conda", FLOOR_TOOL), b.median("conda", FLOOR_CPU)
    warm, cpal = b.median("conda", "materializer warm"), b.median("conda", CPAL)
    noop = b.median("conda", "materializer no-op")
    t("cold <= 0.5x tool floor", cold / tool, cold <= 0.5 * tool,
      f"cold {cold:.3f} s, tool floor {tool:.3f} s -> {cold / tool:.2f}x")
    t("cold <= 2x CPU floor", cold / cpuf, cold <= 2 * cpuf,
      f"cold {cold:.3f} s, CPU floor {cpuf:.3f} s -> {cold / cpuf:.2f}x")
    t("warm <= 1.5x cp -al", warm / cpal, warm <= 1.5 * cpal,
      f"warm {warm:.3f} s, cp -al {cpal:.3f} s -> {warm / cpal:.2f}x")
    noops = [b.median(g, "materializer no-op") for g in ("conda", "wheels", "mixed")]
    worst = max(v for v in noops if v is not None)
    t("no-op <= 50 ms", worst, worst <= 0.050,
      f"conda {noop * 1000:.1f} ms" + "".join(
          f", {g} {v * 1000:.1f} ms" for g, v in zip(("wheels", "mixed"), noops[1:])
          if v is not None))
    rss = max(kb for kbs in b.rss_kb.values() for kb in kbs) / 1024 if b.rss_kb else None
    if rss is not None:
        t("peak RSS <= 300 MB", rss, rss <= 300, "max over cold runs: " + ", ".join(
            f"{g} {max(v) / 1024:.0f} MB" for g, v in b.rss_kb.items()))
    pip = b.median("wheels", "pip install --no-index (local files)")
    mw = b.median("wheels", "materializer cold")
    if pip is not None and mw:
        t("pip >= 3x slower on the wheels", pip / mw, pip >= 3 * mw,
          f"pip {pip:.3f} s, materializer cold {mw:.3f} s -> {pip / mw:.2f}x")
    j1 = b.median("conda", "materializer cold --jobs 1")
    if j1:
        out.append({"target": f"jobs scaling (cold --jobs 1 / --jobs {NPROC})", "value": j1 / cold,
                    "pass": None, "detail": f"{j1:.3f} s / {cold:.3f} s = {j1 / cold:.2f}x "
                                            f"(ideal {NPROC:.1f}x on {NPROC} cores)"})
    return out


def write_csv(path, rows):
    cols = ["group", "scenario", "kind", "median_s", "cpu_s", "x_materializer_cold",
            "x_tool_floor", "x_cpu_floor", "x_cp_al", "runs_s"]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for r in rows:
            w.writerow([" ".join(f"{v:.4f}" for v in r[c]) if c == "runs_s"
                        else (f"{r[c]:.4f}" if isinstance(r.get(c), float) else r.get(c, ""))
                        for c in cols])


def plot(path, rows, title):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("startup.py: matplotlib missing (apt-get install python3-matplotlib): "
              "no chart written")
        return False
    groups = [g for g in ("conda", "wheels", "mixed") if any(r["group"] == g for r in rows)]
    colors = {"materializer": "#1f77b4", "peer": "#ff7f0e", "floor": "#7f7f7f",
              "baseline": "#2ca02c"}
    heights = [sum(1 for r in rows if r["group"] == g) for g in groups]
    fig, axes = plt.subplots(len(groups), 1, figsize=(11, 1.2 + 0.42 * sum(heights)
                                                      + 0.6 * len(groups)),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    lo = min(r["median_s"] for r in rows)
    hi = max(r["median_s"] for r in rows)
    for ax, g in zip(axes[:, 0], groups):
        gr = [r for r in rows if r["group"] == g]
        y = list(range(len(gr)))[::-1]
        ax.barh(y, [r["median_s"] for r in gr], color=[colors[r["kind"]] for r in gr])
        ax.set_yticks(y)
        ax.set_yticklabels([r["scenario"] for r in gr], fontsize=9)
        ax.set_xscale("log")
        ax.set_xlim(lo / 2, hi * 6)
        for yy, r in zip(y, gr):
            label = f"{r['median_s']:.3f} s" if r["median_s"] < 10 else f"{r['median_s']:.1f} s"
            if r["x_materializer_cold"] and r["scenario"] != "materializer cold":
                label += f"  ({r['x_materializer_cold']:.2f}x mat cold)"
            ax.text(r["median_s"] * 1.08, yy, label, va="center", fontsize=8)
        ax.set_title(GROUP_TITLES[g], fontsize=10, loc="left")
        ax.grid(axis="x", which="both", alpha=0.3)
    axes[-1, 0].set_xlabel("median wall seconds (log scale)")
    from matplotlib.patches import Patch
    fig.legend(handles=[Patch(color=c, label=k) for k, c in colors.items()],
               loc="upper right", fontsize=8, ncol=4)
    fig.suptitle(title, fontsize=10, x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", required=True)
    ap.add_argument("--scale", choices=("small", "full"), default="small")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "bench"))
    ap.add_argument("--warmup", type=int, default=1,
                    help="untimed cold installs of every lock before measuring (default 1)")
    ap.add_argument("--settle", type=float, default=None,
                    help="seconds to wait after emptying the scratch trash (ext4 without a "
                         "journal skips inodes freed in the last 60 s, 300 s once their "
                         "inode-table block is dirty again; default 305 at full scale, where "
                         "a rep deletes ~20 GB, else 65)")
    ap.add_argument("--settle-always", action="store_true",
                    help="empty the trash and settle before every rep, at any scale")
    ap.add_argument("--regen", action="store_true", help="regenerate the workload")
    ap.add_argument("--keep", action="store_true", help="keep OUT/run (scratch) afterwards")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every measurement")
    args = ap.parse_args()
    if args.settle is None:
        args.settle = 305 if args.scale == "full" else 65
    if args.reps < 1:
        ap.error("--reps must be >= 1")
    out = os.path.abspath(args.out)
    if out in ("/", os.path.expanduser("~"), ROOT) or len(out) > 120:
        ap.error(f"refusing --out {out} (use a dedicated directory, at most 120 characters: "
                 "binary prefix placeholders limit the prefix length)")
    os.makedirs(out, exist_ok=True)
    # SIGTERM -> SystemExit, so the finally blocks (nginx stop) run
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))

    t_start = time.perf_counter()
    b = Bench(args)
    try:
        b.execute()
    finally:
        if not args.keep and os.path.isdir(b.work):
            shutil.rmtree(b.work, ignore_errors=True)
    st = b.meta["stats"]
    rows = summarize(b)
    print_table(rows)
    stages = stage_table(b)
    print("\nmaterializer --report stages (medians, s): wall | download | fetch+extract | "
          "extract (sum over threads) | link (sum) | mode")
    for k, s in stages.items():
        print(f"  {k:<40}{fmt(s['wall_seconds'], '.3f'):>7} | {fmt(s['download_s'], '.3f'):>6}"
              f" | {fmt(s['fetch_extract_s'], '.3f'):>6} | {fmt(s['extract_s'], '.3f'):>6} "
              f"({fmt(s['extract_sum_s'], '.2f')}) | {fmt(s['link_s'], '.3f'):>6} "
              f"({fmt(s['link_sum_s'], '.2f')}) | {s['link_mode']}")
        if s.get("slowest_extract"):
            print("    slowest extracts (name, s, MB): " + ", ".join(
                f"{n} {t} {mb}" for n, t, mb in s["slowest_extract"]))
    for g, v in b.cold_cpu.items():
        u, sy = statistics.median(x[0] for x in v), statistics.median(x[1] for x in v)
        cf = b.median(g, FLOOR_CPU, "cpu")
        print(f"  {g} cold CPU: user {u:.2f} s + sys {sy:.2f} s = {u + sy:.2f} s"
              + (f" ({(u + sy) / cf:.2f}x the decompression CPU {cf:.2f} s)" if cf else ""))
    print(f"\ninstalled files (conda cold prefix, conda-meta included): {b.installed_files} "
          f"(payload {b.expected_files})")
    if b.installed_files < b.expected_files:
        raise BenchError("materializer installed fewer files than the workload holds")
    tg = targets(b)
    print("\ntargets (issue):")
    for t in tg:
        verdict = "INFO" if t["pass"] is None else ("PASS" if t["pass"] else "FAIL")
        print(f"  {verdict}  {t['target']:<42} {t['detail']}")
    for name in ("micromamba", "pixi", "uv"):
        if not b.peers.get(name):
            print(f"  peer {name}: not present")
        elif name == "pixi":
            print("  peer pixi: present but not benchmarked (needs a pixi project)")
    summary = {"scale": args.scale, "reps": args.reps, "nproc": NPROC,
               "binary": b.binary, "workload": st, "workload_version": WORKLOAD_VERSION,
               "server": "nginx https http/2 127.0.0.1", "mixed_supported": b.mixed,
               "peers": b.peers, "rows": rows, "stages": stages, "targets": tg,
               "peak_rss_kb": b.rss_kb, "cold_user_sys_s": b.cold_cpu, "installed_files": b.installed_files,
               "notes": b.notes, "bench_seconds": time.perf_counter() - t_start}
    with open(os.path.join(out, "startup.json"), "w", encoding="utf-8") as fh:
        json.dump(summary, fh, indent=2)
    write_csv(os.path.join(out, "startup.csv"), rows)
    title = (f"materializer startup benchmark ({args.scale}: {st['conda_packages']} conda pkgs, "
             f"{st['conda_archive_bytes'] / MB:.0f} MB -> {st['conda_installed_bytes'] / MB:.0f}"
             f" MB, {st['conda_files']} files; {st['wheels']} wheels), {NPROC} cores, "
             f"median of {args.reps}")
    png = os.path.join(out, "startup.png")
    wrote = plot(png, rows, title)
    print(f"\nwrote {os.path.join(out, 'startup.json')}, {os.path.join(out, 'startup.csv')}"
          + (f", {png}" if wrote else "") + f" ({time.perf_counter() - t_start:.0f} s)")


if __name__ == "__main__":
    main()
