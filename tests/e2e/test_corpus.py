#!/usr/bin/python3
"""Installs every real linux-64/noarch conda package of the shared corpus and checks the prefix
path by path against each package's own metadata, with scripts/gen_fixtures.py's oracle of
conda's prefix replacement.

    /usr/bin/python3 tests/e2e/test_corpus.py --binary build/release/materializer/materializer

Corpus: $MAT_CORPUS_DIR, else $MAT_SOURCE_DIR/../shared/corpus; exit 77 (skip) when absent.

Package selection (computed from the archives, not hard-coded):
  * taken: every conda/* archive whose info/index.json says subdir linux-64 or noarch;
  * excluded, other platforms: osx-64, osx-arm64 and win-64 packages (conda_gc_test, fly,
    hotfix_depends_test, libexpat, libzlib h8359307_2, mock, zlib x2) - conda would refuse them
    in a linux-64 environment;
  * excluded, no subdir: archives without info/index.json or whose index.json has no subdir
    (dotslash-test, info-only, pkg_with_unicode, zip64-test: synthetic test archives for the
    extractor, not installable packages; conda could not record them);
  * excluded, negative cases: MANIFEST.tsv notes saying "negative case" (unicode-files);
  * excluded, duplicates: a second archive with the same package name (conda never installs two
    versions of one name into one environment; the first in file-name order is kept). With the
    current corpus the platform filter already leaves one libzlib and no zlib.
ca-certificates is kept although its .conda stores the info-/pkg- members under a directory
inside the zip (conda-package-streaming would not find them; the materializer does).
Noarch python packages are linked for --python-version 3.10 (bcj-cffi is a py310 build and the
corpus has no python package). The one clobbered path in the set is lib/terminfo (cph_test_data
and ncurses, both symlinks to ../share/terminfo); the later package in lock order wins.

Checks, for every package, path by path against info/paths.json (info/files + info/has_prefix
for legacy packages): the path exists where conda puts it (noarch python: site-packages/ ->
lib/python3.10/site-packages/, python-scripts/ -> bin/); symlinks carry the archive's target;
files without a placeholder are byte-identical to the archive member; files with one equal the
oracle's replacement for this prefix (text or binary as declared) and are not hard links; modes
match the archive's without other write, and without group write unless the files' group is root's
(& 0o775 as root, else & 0o755, | 0o400: README "Permission model"); declared directories exist;
link.json entry points are executable
scripts in bin/ for bin/python3.10; nothing else is in the prefix (except __pycache__).
conda-meta: one record per package holding every key all real records in
records/conda-meta share; record fields agree with index.json, the lock and the archive;
files/paths_data agree with paths.json (sha256, size_in_bytes, path_type, placeholder fields,
sha256_in_prefix equal to the installed file).
"""

import hashlib
import io
import json
import os
import shlex
import stat
import sys
import tarfile
import zipfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import harness  # noqa: E402

oracle = harness.gen_fixtures   # expected_bytes(): conda's text/binary/long-shebang rules

CORPUS = os.path.abspath(os.environ.get("MAT_CORPUS_DIR")
                         or os.path.join(harness.SOURCE_DIR, "..", "shared", "corpus"))
PLATFORM = "linux-64"
PYTHON_XY = "3.10"
SUBDIRS = ("linux-64", "noarch")
# Mode bits a package file keeps in the cache, hence in the prefix: never other write; group
# write only when the files' group is root's (the cache's tree dir is made by this process).
KEPT_MODE_BITS = 0o775 if os.getegid() == 0 else 0o755
LEGACY_PLACEHOLDER = oracle.LEGACY_PLACEHOLDER


# ---------------------------------------------------------------------------------------
# Reading the corpus
# ---------------------------------------------------------------------------------------

def _norm(name):
    while name.startswith("./"):
        name = name[2:]
    return name.rstrip("/")


def read_members(path):
    """{member: (kind, data, mode, linkname)} of a .conda (info-/pkg- components found anywhere
    in the zip) or a .tar.bz2 (any tar compression); names without a leading ./"""
    out = {}

    def take(tf):
        for ti in tf.getmembers():
            name = _norm(ti.name)
            if not name:
                continue
            if ti.isreg():
                out[name] = ("file", tf.extractfile(ti).read(), ti.mode, None)
            elif ti.issym():
                out[name] = ("symlink", b"", ti.mode, ti.linkname)
            elif ti.isdir():
                out[name] = ("dir", b"", ti.mode, None)
            elif ti.islnk():
                out[name] = ("hardlink", b"", ti.mode, _norm(ti.linkname))

    if path.endswith(".conda"):
        import zstandard
        with zipfile.ZipFile(path) as zf:
            for name in zf.namelist():
                base = os.path.basename(name)
                if base.endswith(".tar.zst") and base.startswith(("info-", "pkg-")):
                    raw = zstandard.ZstdDecompressor().decompressobj().decompress(zf.read(name))
                    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tf:
                        take(tf)
    else:
        with tarfile.open(path, mode="r:*") as tf:
            take(tf)
    return out


def read_manifest():
    rows = {}
    with open(os.path.join(CORPUS, "MANIFEST.tsv"), encoding="utf-8") as fh:
        header = fh.readline().rstrip("\n").split("\t")
        for line in fh:
            row = dict(zip(header, line.rstrip("\n").split("\t")))
            rows[row["path"]] = row
    return rows


class Package:
    """One corpus package: its archive members and what conda would install from it."""

    def __init__(self, fn, members, manifest_row):
        self.fn = fn
        self.archive = os.path.join(CORPUS, "conda", fn)
        self.sha256 = manifest_row["sha256"]
        with open(self.archive, "rb") as fh:
            blob = fh.read()
        self.md5 = hashlib.md5(blob).hexdigest()
        self.size = len(blob)
        if hashlib.sha256(blob).hexdigest() != self.sha256:
            raise AssertionError(f"{fn}: sha256 differs from MANIFEST.tsv")
        self.members = members
        self.index = json.loads(members["info/index.json"][1])
        self.name, self.version, self.build = (self.index["name"], self.index["version"],
                                               self.index["build"])
        link = json.loads(members["info/link.json"][1]) if "info/link.json" in members else {}
        noarch = link.get("noarch") or {}
        self.noarch_python = (self.index.get("noarch") == "python"
                              or noarch.get("type") == "python")
        self.entry_points = list(noarch.get("entry_points") or []) if self.noarch_python else []
        self.legacy = "info/paths.json" not in members
        self.paths = self._paths()
        self.url = None   # set when a lock is written

    @property
    def record_name(self):
        return f"{self.name}-{self.version}-{self.build}.json"

    def _paths(self):
        """paths.json entries as dicts with _path, path_type and the optional fields."""
        if not self.legacy:
            return json.loads(self.members["info/paths.json"][1])["paths"]
        files = self.members["info/files"][1].decode("utf-8").splitlines()
        prefixed = {}
        if "info/has_prefix" in self.members:
            for line in self.members["info/has_prefix"][1].decode("utf-8").splitlines():
                if not line.strip():
                    continue
                parts = shlex.split(line, posix=True)
                if len(parts) == 1:
                    prefixed[parts[0]] = (LEGACY_PLACEHOLDER, "text")
                else:
                    prefixed[parts[2]] = (parts[0], parts[1])
        no_link = set()
        if "info/no_link" in self.members:
            no_link = set(self.members["info/no_link"][1].decode("utf-8").splitlines())
        out = []
        for p in (f.strip() for f in files):
            if not p:
                continue
            kind = self.members.get(p, ("file",))[0]
            e = {"_path": p, "path_type": "softlink" if kind == "symlink" else "hardlink"}
            if p in prefixed:
                e["prefix_placeholder"], e["file_mode"] = prefixed[p]
            if p in no_link:
                e["no_link"] = True
            out.append(e)
        return out

    def prefix_path(self, path):
        """Where conda puts a package path in the prefix."""
        if self.noarch_python:
            if path.startswith("site-packages/"):
                return f"lib/python{PYTHON_XY}/{path}"
            if path.startswith("python-scripts/"):
                return "bin/" + path[len("python-scripts/"):]
        return path

    def entry_point_specs(self):
        for ep in self.entry_points:
            cmd, _, target = (s.strip() for s in ep.partition("="))
            module, _, func = target.partition(":")
            yield f"bin/{cmd}", {"module": module, "func": func.strip(),
                                 "python": f"bin/python{PYTHON_XY}"}


def load_corpus():
    """(selected packages in lock order, [(file name, reason)] excluded)."""
    manifest = read_manifest()
    selected, excluded, seen = [], [], {}
    for fn in sorted(os.listdir(os.path.join(CORPUS, "conda"))):
        if not fn.endswith((".conda", ".tar.bz2")):
            continue
        row = manifest.get(f"conda/{fn}")
        if row is None:
            excluded.append((fn, "not in MANIFEST.tsv"))
            continue
        if "negative case" in row.get("note", ""):
            excluded.append((fn, "negative case"))
            continue
        try:
            members = read_members(os.path.join(CORPUS, "conda", fn))
        except Exception as e:  # noqa: BLE001 - a corpus archive we cannot read is skipped
            excluded.append((fn, f"unreadable: {e}"))
            continue
        try:
            index = json.loads(members["info/index.json"][1])
        except (KeyError, ValueError):
            excluded.append((fn, "no info/index.json"))
            continue
        subdir = index.get("subdir")
        if subdir not in SUBDIRS:
            excluded.append((fn, f"subdir {subdir}"))
            continue
        if index.get("name") in seen:
            excluded.append((fn, f"second package named {index['name']} "
                                 f"(kept {seen[index['name']]})"))
            continue
        seen[index["name"]] = fn
        selected.append(Package(fn, members, row))
    return selected, excluded


def expected_prefix(pkgs):
    """{prefix path: spec} where spec["pkg"] is the package that owns it (later wins)."""
    out = {}
    for pkg in pkgs:
        for e in pkg.paths:
            rel = pkg.prefix_path(e["_path"])
            kind = e["path_type"]
            if kind == "directory":
                spec = {"type": "dir"}
            else:
                member = pkg.members.get(e["_path"])
                if member is None:
                    raise AssertionError(f"{pkg.fn}: {e['_path']} listed but not in archive")
                mkind, data, mode, linkname = member
                if mkind == "symlink":
                    spec = {"type": "symlink", "target": linkname}
                elif mkind == "file":
                    spec = {"type": "file", "data": data, "mode": (mode & KEPT_MODE_BITS) | 0o400,
                            "placeholder": e.get("prefix_placeholder"),
                            "file_mode": e.get("file_mode", "text"),
                            "no_link": bool(e.get("no_link"))}
                else:
                    raise AssertionError(f"{pkg.fn}: {e['_path']} is a tar {mkind}")
            spec["pkg"] = pkg
            spec["src"] = e["_path"]
            if rel in out:   # clobber: this (later) package wins
                spec["losers"] = out[rel].get("losers", []) + [out[rel]["pkg"]]
            out[rel] = spec
        for rel, ep in pkg.entry_point_specs():
            out[rel] = dict(ep, type="entry_point", pkg=pkg, src=None)
    return out


def expected_file_bytes(spec, prefix):
    if not spec["placeholder"]:
        return spec["data"]
    return oracle.expected_bytes(spec["data"], spec["placeholder"], spec["file_mode"], prefix)


def check_prefix(prefix, expected):
    """Differences between the installed prefix and the corpus packages."""
    prefix = os.path.abspath(prefix)
    actual = harness.walk(prefix)
    implied = set()
    for rel in expected:
        parts = rel.split("/")
        implied.update("/".join(parts[:i]) for i in range(1, len(parts)))
    diffs = []
    for rel, spec in sorted(expected.items()):
        who = spec["pkg"].fn
        full = os.path.join(prefix, rel)
        st = actual.get(rel)
        if st is None:
            diffs.append(f"{who}: missing {rel}")
            continue
        kind = spec["type"]
        if kind == "dir":
            if not stat.S_ISDIR(st.st_mode):
                diffs.append(f"{who}: {rel}: expected a directory, mode {oct(st.st_mode)}")
        elif kind == "symlink":
            if not stat.S_ISLNK(st.st_mode):
                diffs.append(f"{who}: {rel}: expected symlink -> {spec['target']}, "
                             f"mode {oct(st.st_mode)}")
            elif os.readlink(full) != spec["target"]:
                diffs.append(f"{who}: {rel}: symlink target {os.readlink(full)!r}, "
                             f"expected {spec['target']!r}")
        elif kind == "entry_point":
            if not stat.S_ISREG(st.st_mode):
                diffs.append(f"{who}: {rel}: entry point is not a regular file")
                continue
            if st.st_mode & 0o111 != 0o111:
                diffs.append(f"{who}: {rel}: entry point mode {oct(st.st_mode & 0o777)}")
            with open(full, "rb") as fh:
                diffs += [f"{who}: {d}" for d in
                          harness.check_entry_point(prefix, rel, spec, fh.read())]
        else:
            if not stat.S_ISREG(st.st_mode):
                diffs.append(f"{who}: {rel}: expected a regular file, mode {oct(st.st_mode)}")
                continue
            if st.st_mode & 0o777 != spec["mode"]:
                diffs.append(f"{who}: {rel}: mode {oct(st.st_mode & 0o777)}, archive has "
                             f"{oct(spec['mode'])}")
            with open(full, "rb") as fh:
                data = fh.read()
            try:
                want = expected_file_bytes(spec, prefix)
            except oracle.PaddingError as e:
                diffs.append(f"{who}: {rel}: oracle: {e}")
                continue
            if data != want:
                what = (f"after {spec['file_mode']} replacement of {spec['placeholder'][:40]}..."
                        if spec["placeholder"] else "(no placeholder: must equal the archive)")
                diffs.append(f"{who}: {rel}: content differs {what}: sha256 "
                             f"{hashlib.sha256(data).hexdigest()}, expected "
                             f"{hashlib.sha256(want).hexdigest()}; "
                             f"{harness._first_difference(data, want)}")
            if (spec["placeholder"] or spec["no_link"]) and st.st_nlink != 1:
                diffs.append(f"{who}: {rel}: has a placeholder/no_link but {st.st_nlink} "
                             "hard links (the cache copy would be shared)")
    for rel, st in sorted(actual.items()):
        if rel in expected or harness._is_pycache(rel):
            continue
        if rel in implied and stat.S_ISDIR(st.st_mode):
            continue
        diffs.append(f"extra: {rel}")
    return diffs


# ---------------------------------------------------------------------------------------
# conda-meta
# ---------------------------------------------------------------------------------------

def real_record_keys():
    """(keys every parseable real conda-meta record has, number of records)."""
    d = os.path.join(CORPUS, "records", "conda-meta")
    common, n = None, 0
    for fn in sorted(os.listdir(d)):
        if not fn.endswith(".json"):
            continue
        try:
            with open(os.path.join(d, fn), encoding="utf-8") as fh:
                rec = json.load(fh)
        except (ValueError, UnicodeDecodeError):
            continue   # corrupt-json / corrupt-unicode: negative cases
        if not isinstance(rec, dict):
            continue
        n += 1
        common = set(rec) if common is None else common & set(rec)
    return common or set(), n


def _is_pyc(rel):
    return harness._is_pycache(rel) or rel.endswith(".pyc")


def check_records(prefix, pkgs, expected, common_keys):
    prefix = os.path.abspath(prefix)
    meta = os.path.join(prefix, "conda-meta")
    diffs = []
    if os.path.exists(os.path.join(meta, ".materializer-incomplete")):
        diffs.append("conda-meta/.materializer-incomplete after a successful install")
    if not os.path.isfile(os.path.join(meta, "history")):
        diffs.append("conda-meta/history missing")
    have = {f for f in os.listdir(meta) if f.endswith(".json")} if os.path.isdir(meta) else set()
    want = {p.record_name for p in pkgs}
    if have - want:
        diffs.append(f"unexpected records {sorted(have - want)}")
    for pkg in pkgs:
        w = f"conda-meta/{pkg.record_name}"
        path = os.path.join(meta, pkg.record_name)
        if not os.path.isfile(path):
            diffs.append(f"{w}: missing")
            continue
        try:
            rec = harness.read_json(path)
        except ValueError as e:
            diffs.append(f"{w}: not JSON: {e}")
            continue
        lacking = common_keys - set(rec)
        if lacking:
            diffs.append(f"{w}: lacks keys every real conda-meta record has: {sorted(lacking)}")
        for k in ("name", "version", "build", "build_number", "subdir", "depends",
                  "timestamp", "license", "constrains"):
            if k in pkg.index and k in rec and rec[k] != pkg.index[k]:
                diffs.append(f"{w}: {k} {rec[k]!r}, index.json has {pkg.index[k]!r}")
        for k, v in (("url", pkg.url), ("fn", pkg.fn), ("sha256", pkg.sha256),
                     ("md5", pkg.md5), ("size", pkg.size)):
            if rec.get(k) != v:
                diffs.append(f"{w}: {k} {rec.get(k)!r}, expected {v!r}")
        if pkg.noarch_python and rec.get("noarch") != "python":
            diffs.append(f"{w}: noarch {rec.get('noarch')!r}, expected 'python'")

        # files: every path of the package (mapped), entry points included.
        mine = {pkg.prefix_path(e["_path"]) for e in pkg.paths}
        eps = {rel for rel, _ in pkg.entry_point_specs()}
        full = mine | eps
        lost = {rel for rel in full if expected[rel]["pkg"] is not pkg}   # clobbered by later
        files = rec.get("files")
        if not isinstance(files, list):
            diffs.append(f"{w}: files is not a list")
            continue
        # .pyc files conda compiles for noarch python may be listed too; shipped ones must be.
        got = {p for p in files if p in full or not _is_pyc(p)}
        if full - got - lost:
            diffs.append(f"{w}: files lacks {sorted(full - got - lost)[:10]}")
        if got - full:
            diffs.append(f"{w}: files has paths not in the package {sorted(got - full)[:10]}")
        if len(files) != len(set(files)):
            diffs.append(f"{w}: files has duplicates")

        pd = rec.get("paths_data")
        if not isinstance(pd, dict) or not isinstance(pd.get("paths"), list):
            diffs.append(f"{w}: paths_data.paths missing")
            continue
        if pd.get("paths_version") != 1:
            diffs.append(f"{w}: paths_data.paths_version {pd.get('paths_version')!r}")
        entries = {}
        for e in pd["paths"]:
            if not isinstance(e, dict) or not isinstance(e.get("_path"), str):
                diffs.append(f"{w}: paths_data entry without _path: {e!r}")
                continue
            entries[e["_path"]] = e
        pd_paths = {p for p in entries if p in full or not _is_pyc(p)}
        if pd_paths - full:
            diffs.append(f"{w}: paths_data has paths not in the package "
                         f"{sorted(pd_paths - full)[:10]}")
        if mine - pd_paths:
            diffs.append(f"{w}: paths_data lacks {sorted(mine - pd_paths)[:10]}")
        if (pd_paths & full) != (got & full):
            diffs.append(f"{w}: paths_data paths != files: only in paths_data "
                         f"{sorted((pd_paths - got) & full)[:5]}, only in files "
                         f"{sorted((got - pd_paths) & full)[:5]}")
        for src in pkg.paths:
            rel = pkg.prefix_path(src["_path"])
            e = entries.get(rel)
            if e is None:
                continue
            where = f"{w}: paths_data[{rel}]"
            kind = src["path_type"]
            if e.get("path_type") != kind:
                diffs.append(f"{where}: path_type {e.get('path_type')!r}, paths.json has "
                             f"{kind!r}")
            if kind == "directory":
                continue
            for k in ("sha256", "size_in_bytes"):
                if k not in e:
                    diffs.append(f"{where}: no {k}")
                elif k in src and e[k] != src[k]:
                    diffs.append(f"{where}: {k} {e[k]!r}, paths.json has {src[k]!r}")
            if src.get("prefix_placeholder"):
                for k in ("prefix_placeholder", "file_mode"):
                    if e.get(k) != src.get(k):
                        diffs.append(f"{where}: {k} {e.get(k)!r}, paths.json has "
                                     f"{src.get(k)!r}")
                if "sha256_in_prefix" not in e:
                    diffs.append(f"{where}: placeholder replaced but no sha256_in_prefix")
                elif expected[rel]["pkg"] is pkg:
                    with open(os.path.join(prefix, rel), "rb") as fh:
                        real = hashlib.sha256(fh.read()).hexdigest()
                    if e["sha256_in_prefix"] != real:
                        diffs.append(f"{where}: sha256_in_prefix {e['sha256_in_prefix']}, "
                                     f"installed file has {real}")
        for rel in eps:
            e = entries.get(rel)
            if e is not None and e.get("path_type") not in ("unix_python_entry_point",
                                                            "hardlink"):
                diffs.append(f"{w}: paths_data[{rel}]: path_type {e.get('path_type')!r} "
                             "for an entry point")
    return diffs


def snapshot(prefix):
    """Prefix content with the prefix path replaced by a token (prefixes of equal length)."""
    prefix = os.path.abspath(prefix)
    token = b"@" * len(prefix.encode())
    out = {}
    for rel, st in harness.walk(prefix, exclude_top=()).items():
        full = os.path.join(prefix, rel)
        if rel == "conda-meta/history":
            continue
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ("symlink", os.readlink(full))
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = ("dir",)
        else:
            with open(full, "rb") as fh:
                data = fh.read()
            if rel.startswith("conda-meta/") and rel.endswith(".json"):
                # sha256_in_prefix and entry points' sha256 hash prefix-dependent bytes (the
                # files themselves are compared above, with the prefix tokenised).
                rec = json.loads(data)
                for e in (rec.get("paths_data") or {}).get("paths", []):
                    e.pop("sha256_in_prefix", None)
                    if e.get("path_type") == "unix_python_entry_point":
                        e.pop("sha256", None)
                data = json.dumps(rec, sort_keys=True).encode()
            data = data.replace(prefix.encode(), token)
            out[rel] = ("file", st.st_mode & 0o777, hashlib.sha256(data).hexdigest())
    return out


# ---------------------------------------------------------------------------------------

_CORPUS = None


def corpus():
    global _CORPUS
    if _CORPUS is None:
        _CORPUS = load_corpus()
    return _CORPUS


class CorpusInstallTest(harness.TempDirTestCase):

    @classmethod
    def setUpClass(cls):
        cls.binary = harness.require_binary()
        cls.pkgs, cls.excluded = corpus()
        cls.expected = expected_prefix(cls.pkgs)
        cls.common_keys, cls.n_real = real_record_keys()

    def write_lock(self, base_url):
        lines = ["# Generated by tests/e2e/test_corpus.py from the shared corpus.",
                 f"# platform: {PLATFORM}"]
        lines += [f"# excluded: {fn}: {why}" for fn, why in self.excluded]
        lines.append("@EXPLICIT")
        for pkg in self.pkgs:
            pkg.url = f"{base_url}/{pkg.fn}"
            lines.append(f"{pkg.url}#sha256:{pkg.sha256}")
        path = self.path("corpus-explicit.txt")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")
        return path

    def install(self, lock, prefix, cache, *extra):
        cp = harness.run_materializer(
            self.binary, ["install", lock, "--prefix", prefix, "--cache-dir", cache,
                          "--platform", PLATFORM, "--python-version", PYTHON_XY, *extra])
        self.assertEqual(cp.returncode, 0, "install failed" + harness.describe(cp))
        return cp

    def assertInstalled(self, prefix):
        """Prefix and conda-meta checks as two subtests (a record gap does not hide the
        prefix result, nor the checks that follow)."""
        with self.subTest(check="prefix", prefix=os.path.basename(prefix)):
            diffs = check_prefix(prefix, self.expected)
            if diffs:
                self.fail(f"{len(diffs)} prefix differences:\n  " + "\n  ".join(diffs[:80]))
        with self.subTest(check="conda-meta", prefix=os.path.basename(prefix)):
            diffs = check_records(prefix, self.pkgs, self.expected, self.common_keys)
            if diffs:
                self.fail(f"{len(diffs)} conda-meta differences:\n  "
                          + "\n  ".join(diffs[:80]))

    def test_selection(self):
        names = [p.name for p in self.pkgs]
        self.assertEqual(len(names), len(set(names)), "two packages with one name")
        self.assertGreaterEqual(len(self.pkgs), 30, [p.fn for p in self.pkgs])
        self.assertGreater(self.n_real, 5, "too few parseable real conda-meta records")
        # The oddities the corpus is for are all in the set.
        fns = {p.fn for p in self.pkgs}
        for fn in ("ncurses-6.5-h59595ed_0.conda", "xz-5.2.6-h166bdaf_0.tar.bz2",
                   "cph_test_data-0.0.1-0.tar.bz2", "wheel-0.45.1-pyhd8ed1ab_1.conda",
                   "setuptools-80.9.0-pyhff2d567_0.conda"):
            self.assertIn(fn, fns)
        modes = {(s["placeholder"] is not None, s.get("file_mode"))
                 for s in self.expected.values() if s["type"] == "file"}
        self.assertIn((True, "binary"), modes)
        self.assertIn((True, "text"), modes)
        clobbered = {rel: [p.name for p in s["losers"]] + [s["pkg"].name]
                     for rel, s in self.expected.items() if s.get("losers")}
        self.assertTrue(clobbered, "the corpus selection no longer has a clobbered path")
        print(f"\ncorpus: {len(self.pkgs)} packages, {len(self.expected)} prefix paths; "
              f"clobbered (later wins): {clobbered}; excluded: "
              + ", ".join(f"{fn} ({why})" for fn, why in self.excluded),
              file=sys.stderr)

    def test_file_urls(self):
        lock = self.write_lock("file://" + os.path.join(CORPUS, "conda"))
        prefix, cache = self.path("env"), self.path("cache")
        # The corpus lives outside the test's lock folder: allowed explicitly.
        cp = self.install(lock, prefix, cache, "--allow-file-urls", os.path.join(CORPUS, "conda"))
        self.assertInstalled(prefix)
        for rel, spec in self.expected.items():   # README: clobbers resolved "with a warning"
            if spec.get("losers"):
                self.assertIn(rel, cp.stderr, "clobbered path not warned about"
                              + harness.describe(cp))
        cp = harness.run_materializer(self.binary, ["cache", "verify", "--cache-dir", cache])
        self.assertEqual(cp.returncode, 0, "cache verify after linking" + harness.describe(cp))

    def test_http_then_offline(self):
        cache = self.path("cache")
        p1, p2 = self.path("env-1"), self.path("env-2")   # same length: comparable bytes
        srv = harness.HttpServer(os.path.join(CORPUS, "conda")).start()
        try:
            lock = self.write_lock(srv.url)
            self.install(lock, p1, cache)
            for pkg in self.pkgs:
                n = srv.count("/" + pkg.fn)
                self.assertTrue(1 <= n <= 2, f"{pkg.fn} requested {n} times")
        finally:
            srv.stop()
        self.assertInstalled(p1)
        report = self.path("offline.json")
        # Server stopped: the second prefix must come from the cache alone.
        self.install(lock, p2, cache, "--offline", "--report", report)
        self.assertInstalled(p2)
        rep = harness.read_json(report)
        self.assertEqual(rep["stages"]["download"]["bytes"], 0)
        self.assertEqual([p["name"] for p in rep["packages"] if not p["cache_hit"]], [])
        s1, s2 = snapshot(p1), snapshot(p2)
        # The no-op stamp hashes the prefix's own path (a moved prefix must be relinked), so it
        # differs between the two prefixes by design.
        for s in (s1, s2):
            s.pop("conda-meta/.materializer-stamp", None)
        only1, only2 = sorted(set(s1) - set(s2)), sorted(set(s2) - set(s1))
        changed = sorted(k for k in set(s1) & set(s2) if s1[k] != s2[k])
        if only1 or only2 or changed:
            self.fail(f"offline reinstall differs from the first prefix: only in the first "
                      f"{only1[:10]}, only in the second {only2[:10]}, different "
                      f"{[(k, s1[k], s2[k]) for k in changed[:10]]}")

    def test_long_prefix_with_space(self):
        # 128..255 bytes: longer than a shebang may be (entry points get the /bin/sh
        # trampoline), still short enough for the 255-byte binary placeholders of
        # ncurses/openssl/tk/xz; the space exercises the escaped-space rules.
        prefix = self.path("with space", "p" * 60, "q" * 60, "env")
        plen = len(prefix.encode())
        if not 128 < plen <= 255:
            self.skipTest(f"temp dir gives a {plen}-byte prefix")
        lock = self.write_lock("file://" + os.path.join(CORPUS, "conda"))
        self.install(lock, prefix, self.path("cache"), "--allow-file-urls",
                     os.path.join(CORPUS, "conda"))
        self.assertInstalled(prefix)


if __name__ == "__main__":
    if not os.path.isfile(os.path.join(CORPUS, "MANIFEST.tsv")) or \
            not os.path.isdir(os.path.join(CORPUS, "conda")):
        harness.skip_process(f"shared corpus not found at {CORPUS} (set MAT_CORPUS_DIR)")
    harness.main()
