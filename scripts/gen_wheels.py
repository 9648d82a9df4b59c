#!/usr/bin/python3
"""Generates the wheel (PyPI) test fixtures: wheels, an sdist, a Simple API index, lock files in
every supported format, the expected install layout, bad inputs, and (--bench) a benchmark set.

    /usr/bin/python3 scripts/gen_wheels.py --out DIR [--bench]
    (importable: gen_wheels.generate(out, bench=False) -> manifest)

Deterministic: the same bytes on every run (fixed zip timestamps, fixed gzip mtime, seeded PRNG).

Output:
    DIR/wheels.json                     manifest (see `generate`), read by tests/harness.py
    DIR/files/*.whl, *.tar.gz           the good distributions (also a --find-links directory)
    DIR/find-links.html                 a find-links HTML page linking files/ (relative hrefs)
    DIR/channel/linux-64/python-...     the conda stand-in python from gen_fixtures (mixed locks)
    DIR/simple/                         PEP 503 HTML index.html + PEP 691 index.json per project
                                        (the test server content-negotiates on Accept)
    DIR/simple-html/                    the same index, HTML only (no JSON pages)
    DIR/locks/<name>.in                 lock files, URLs as @BASE_URL@/files/<file>,
                                        @BASE_URL@/channel/linux-64/<conda file>; requirements.txt
                                        has `--index-url @INDEX_URL@`
    DIR/bad/files/, DIR/bad/locks/      broken wheels and the locks naming them
    DIR/bench/files/, DIR/bench/locks/  with --bench: ~40 wheels, pylock.toml.in, requirements.txt.in

Layout every install must produce (the `expected` section, prefix-relative, X.Y = 3.11), the same
as `pip install --no-deps --no-index --prefix DIR` with the upstream posix_prefix scheme:
    <pkg files>, NAME.data/{purelib,platlib}/*  -> lib/python3.11/site-packages/
    NAME.data/scripts/*                         -> bin/ ("#!python" first line rewritten)
    NAME.data/headers/*                         -> include/python3.11/NAME/
    NAME.data/data/*                            -> ./
    console_scripts / gui_scripts               -> bin/ (generated)
    dist-info: + INSTALLER, REQUESTED, RECORD (regenerated)
"""

import argparse
import base64
import csv
import gzip
import hashlib
import html
import importlib.util
import io
import json
import os
import random
import shutil
import sys
import tarfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("gen_fixtures", os.path.join(HERE, "gen_fixtures.py"))
gen_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen_fixtures)

ZIP_DATE = (2020, 1, 1, 0, 0, 0)
MTIME = gen_fixtures.MTIME
PYTHON_XY = "3.11"
SITE = f"lib/python{PYTHON_XY}/site-packages"
INCLUDE = f"include/python{PYTHON_XY}"
MIME_JSON = "application/vnd.pypi.simple.v1+json"
GENERATOR = "gen_wheels 1.0 (materializer test fixtures)"


# ----------------------------------------------------------------------------------------
# Wheel model and writer
# ----------------------------------------------------------------------------------------

def sha256(b):
    return hashlib.sha256(b).hexdigest()


def record_hash(b):
    """RECORD form: sha256=<urlsafe base64, no padding>."""
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(b).digest()).rstrip(b"=").decode()


def normalize(name):
    """PEP 503."""
    import re
    return re.sub(r"[-_.]+", "-", name).lower()


def escape(name):
    """PEP 427 file-name / dist-info escaping."""
    import re
    return re.sub(r"[^\w\d.]+", "_", name, flags=re.UNICODE)


class Wheel:
    """A wheel to build. files: {archive path: bytes | (bytes, mode)} (without dist-info).
    Options for bad fixtures: record_override {path: (hash, size)}, extra_members [(name, data)]
    written after everything, metadata_name (METADATA Name differing from the file name)."""

    def __init__(self, name, version, tag, files, entry_points=None, requires_dist=(),
                 requires_python=">=3.8", purelib=True, summary=None):
        self.name, self.version, self.tag = name, version, tag
        self.files = {}
        for path, v in files.items():
            data, mode = v if isinstance(v, tuple) else (v, 0o644)
            self.files[path] = (data.encode() if isinstance(data, str) else data, mode)
        self.entry_points = entry_points or {}
        self.requires_dist = list(requires_dist)
        self.requires_python = requires_python
        self.purelib = purelib
        self.summary = summary or f"{name}: materializer wheel fixture"
        self.record_override = {}
        self.extra_members = []
        self.metadata_name = None
        self.record_extra_rows = []

    @property
    def dist_info(self):
        return f"{escape(self.name)}-{self.version}.dist-info"

    @property
    def data_dir(self):
        return f"{escape(self.name)}-{self.version}.data"

    @property
    def file_name(self):
        return f"{escape(self.name)}-{self.version}-{self.tag}.whl"

    def metadata(self):
        lines = ["Metadata-Version: 2.1", f"Name: {self.metadata_name or self.name}",
                 f"Version: {self.version}", f"Summary: {self.summary}",
                 "License: MIT"]
        if self.requires_python:
            lines.append(f"Requires-Python: {self.requires_python}")
        lines += [f"Requires-Dist: {r}" for r in self.requires_dist]
        return ("\n".join(lines) + "\n\n" + f"{self.name} long description.\n").encode()

    def wheel_file(self):
        lines = ["Wheel-Version: 1.0", f"Generator: {GENERATOR}",
                 f"Root-Is-Purelib: {'true' if self.purelib else 'false'}"]
        for t in expand_tags(self.tag):
            lines.append(f"Tag: {t}")
        return ("\n".join(lines) + "\n").encode()

    def entry_points_txt(self):
        if not self.entry_points:
            return None
        out = []
        for group in sorted(self.entry_points):
            out.append(f"[{group}]")
            out += [f"{k} = {v}" for k, v in sorted(self.entry_points[group].items())]
            out.append("")
        return "\n".join(out).encode()

    def members(self):
        """[(name, data, mode)] in archive order, RECORD last."""
        di = self.dist_info
        items = [(p, d, m) for p, (d, m) in sorted(self.files.items())]
        meta = {f"{di}/METADATA": self.metadata(), f"{di}/WHEEL": self.wheel_file()}
        ep = self.entry_points_txt()
        if ep is not None:
            meta[f"{di}/entry_points.txt"] = ep
        tops = sorted({p.split("/")[0].removesuffix(".py") for p in self.files
                       if not p.startswith(self.data_dir + "/")})
        if tops:
            meta[f"{di}/top_level.txt"] = "".join(t + "\n" for t in tops).encode()
        items += [(p, d, 0o644) for p, d in sorted(meta.items())]
        rows = []
        for p, d, _ in items:
            h, n = self.record_override.get(p, (record_hash(d), str(len(d))))
            rows.append((p, h, n))
        rows += self.record_extra_rows
        rows.append((f"{di}/RECORD", "", ""))
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(rows)
        items.append((f"{di}/RECORD", buf.getvalue().encode(), 0o644))
        items += [(n, d, 0o644) for n, d in self.extra_members]
        return items

    def build(self):
        return write_zip(self.members())


def expand_tags(tag):
    py, abi, plat = tag.split("-")
    return [f"{a}-{b}-{c}" for a in py.split(".") for b in abi.split(".") for c in plat.split(".")]


def write_zip(members):
    import warnings
    bio = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names in a bad fixture
        with zipfile.ZipFile(bio, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, data, mode in members:
                zi = zipfile.ZipInfo(name, date_time=ZIP_DATE)
                zi.compress_type = zipfile.ZIP_DEFLATED
                zi.create_system = 3
                zi.external_attr = (0o100000 | mode) << 16
                zf.writestr(zi, data, compresslevel=6)
    return bio.getvalue()


def write_sdist(name, version, files):
    """A deterministic .tar.gz sdist (PKG-INFO + pyproject.toml + given files)."""
    base = f"{escape(name)}-{version}"
    members = {"PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
               "pyproject.toml": '[build-system]\nrequires = ["setuptools"]\n'
                                 'build-backend = "setuptools.build_meta"\n\n'
                                 f'[project]\nname = "{name}"\nversion = "{version}"\n'}
    members.update(files)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for p in sorted(members):
            data = members[p].encode() if isinstance(members[p], str) else members[p]
            ti = tarfile.TarInfo(f"{base}/{p}")
            ti.mtime, ti.mode, ti.uid, ti.gid, ti.uname, ti.gname = MTIME, 0o644, 0, 0, "", ""
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", fileobj=out, mode="wb", mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


# ----------------------------------------------------------------------------------------
# The good wheels
# ----------------------------------------------------------------------------------------

CHOOSE_TAGS = [  # (tag, variant) in the order locks list them; the cp311 manylinux one must win
    ("py3-none-any", "py3-none-any"),
    ("cp39-cp39-win_amd64", "cp39-win_amd64"),
    ("cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64", "cp311-manylinux_2_17_x86_64"),
    ("cp311-cp311-musllinux_1_1_x86_64", "cp311-musllinux_1_1_x86_64"),
]
CHOOSE_BEST = "cp311-manylinux_2_17_x86_64"

FAKE_SO = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 8 + random.Random(7).randbytes(3000)

ENTRY_POINTS = {  # script -> (module, func, stdout of `python script`)
    "purepkg-cli": ("purepkg", "main", "hello from purepkg"),
    "purepkg-gui": ("purepkg", "gui_main", "hello from purepkg gui"),
}


def good_wheels():
    """{key: Wheel}; keys name the roles the tests refer to."""
    w = {}
    w["purepkg"] = Wheel("purepkg", "1.0.0", "py3-none-any", {
        "purepkg/__init__.py": 'VERSION = "1.0.0"\n\n\ndef main():\n'
                               '    print("hello from purepkg")\n    return 0\n\n\n'
                               'def gui_main():\n    print("hello from purepkg gui")\n'
                               '    return 0\n',
        "purepkg/__main__.py": "import sys\nfrom purepkg import main\n\nsys.exit(main())\n",
        "purepkg/sub/__init__.py": "",
        "purepkg/sub/helpers.py": "def double(x):\n    return 2 * x\n",
        "purepkg/data/config.json": '{"answer": 42}\n',
        "purepkg/data/ünïcödé.txt": "snowman ☃\n",
    }, entry_points={"console_scripts": {"purepkg-cli": "purepkg:main"},
                     "gui_scripts": {"purepkg-gui": "purepkg:gui_main"}})
    # An older version, on the index only: the pin must pick 1.0.0.
    w["purepkg-old"] = Wheel("purepkg", "0.9.0", "py3-none-any", {
        "purepkg/__init__.py": 'VERSION = "0.9.0"\n'})
    w["platpkg"] = Wheel("platpkg", "2.1", "cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64",
                         {"platpkg/__init__.py": 'NATIVE = "_native.cpython-311-x86_64-linux-gnu.so"\n',
                          "platpkg/_native.cpython-311-x86_64-linux-gnu.so": (FAKE_SO, 0o755),
                          "platpkg/py.typed": ""},
                         requires_dist=["purepkg>=1.0"], requires_python=">=3.11", purelib=False)
    dd = "datafiles-0.5.data"
    w["datafiles"] = Wheel("datafiles", "0.5", "py3-none-any", {
        "datafiles/__init__.py": 'NAME = "datafiles"\n',
        f"{dd}/scripts/tool": ("#!python\nimport datafiles\nprint('tool from', datafiles.NAME)\n",
                               0o755),
        f"{dd}/scripts/plain.sh": ("#!/bin/sh\necho plain\n", 0o755),
        f"{dd}/data/share/x/readme.txt": "datafiles shared data\n",
        f"{dd}/headers/h.h": "#pragma once\nint datafiles_answer(void);\n",
        f"{dd}/purelib/datafiles_extra.py": "EXTRA = True\n",
    })
    w["ns-alpha"] = Wheel("ns-alpha", "1.0", "py3-none-any", {
        "nsroot/alpha/__init__.py": 'WHO = "alpha"\n'})
    w["ns-beta"] = Wheel("ns-beta", "1.0", "py3-none-any", {
        "nsroot/beta/__init__.py": 'WHO = "beta"\n'}, requires_dist=["ns-alpha"])
    for tag, variant in CHOOSE_TAGS:
        w[f"choose:{variant}"] = Wheel("choose", "1.0", tag, {
            "choose/__init__.py": f'VARIANT = "{variant}"\n'},
            purelib=tag.startswith("py3"))
    w["winonly"] = Wheel("winonly", "1.0", "py3-none-any", {"winonly/__init__.py": ""})
    return w


INSTALL_SET = ["purepkg", "platpkg", "datafiles", "ns-alpha", "ns-beta", f"choose:{CHOOSE_BEST}"]


def expected_install(wheel, python_exe=None):
    """{prefix-relative path: spec} that installing `wheel` must produce (RECORD, INSTALLER,
    REQUESTED included). Specs:
      {"type": "file", "sha256", "exec": bool, "dist": name}        bytes from the wheel
      {"type": "script", "body_sha256", "exec": True, "dist"}        #!python rewritten
      {"type": "entry_point", "module", "func", "gui": bool, "exec": True, "dist"}
      {"type": "installer" | "requested" | "record", "dist"}"""
    out = {}
    name = normalize(wheel.name)
    for path, (data, mode) in wheel.files.items():
        spec = {"type": "file", "sha256": sha256(data), "exec": bool(mode & 0o100),
                "dist": name}
        if path.startswith(wheel.data_dir + "/"):
            _, kind, rest = path.split("/", 2)
            if kind in ("purelib", "platlib"):
                dest = f"{SITE}/{rest}"
            elif kind == "scripts":
                dest = f"bin/{rest}"
                spec["exec"] = True
                if data.startswith(b"#!python"):
                    body = data.split(b"\n", 1)[1]
                    spec = {"type": "script", "body_sha256": sha256(body), "exec": True,
                            "dist": name}
            elif kind == "headers":
                dest = f"{INCLUDE}/{wheel.name}/{rest}"
            elif kind == "data":
                dest = rest
            else:
                raise ValueError(path)
        else:
            dest = f"{SITE}/{path}"
        out[dest] = spec
    for p, data, _ in wheel.members():
        if p.startswith(wheel.dist_info + "/") and not p.endswith("/RECORD"):
            out[f"{SITE}/{p}"] = {"type": "file", "sha256": sha256(data), "exec": False,
                                  "dist": name}
    di = f"{SITE}/{wheel.dist_info}"
    out[f"{di}/RECORD"] = {"type": "record", "dist": name}
    out[f"{di}/INSTALLER"] = {"type": "installer", "dist": name}
    out[f"{di}/REQUESTED"] = {"type": "requested", "dist": name}
    for group, eps in wheel.entry_points.items():
        for cmd, target in eps.items():
            module, func = target.split(":")
            out[f"bin/{cmd}"] = {"type": "entry_point", "module": module, "func": func,
                                 "gui": group == "gui_scripts", "exec": True, "dist": name}
    return out


# ----------------------------------------------------------------------------------------
# Lock files
# ----------------------------------------------------------------------------------------

def toml_str(s):
    return json.dumps(s, ensure_ascii=False)


def file_entry(info, base="@BASE_URL@/files"):
    return {"name": info["file_name"], "url": f"{base}/{info['file_name']}",
            "sha256": info["sha256"], "size": info["size"]}


def pylock_text(packages):
    """packages: [{"name", "version", "wheels": [file dicts], "sdist": file dict|None,
    "marker": str|None, "requires_python": str|None}] (PEP 751)."""
    lines = ['lock-version = "1.0"', 'requires-python = ">=3.8"',
             'environments = ["sys_platform == \'linux\'", "sys_platform == \'win32\'"]',
             f"created-by = {toml_str('gen_wheels')}", ""]
    for p in packages:
        lines += ["[[packages]]", f"name = {toml_str(p['name'])}",
                  f"version = {toml_str(p['version'])}"]
        if p.get("marker"):
            lines.append(f"marker = {toml_str(p['marker'])}")
        if p.get("requires_python"):
            lines.append(f"requires-python = {toml_str(p['requires_python'])}")
        lines.append('index = "@BASE_URL@/simple"')
        if p.get("sdist"):
            s = p["sdist"]
            lines.append(f"sdist = {{ name = {toml_str(s['name'])}, url = {toml_str(s['url'])}, "
                         f"size = {s['size']}, hashes = {{ sha256 = {toml_str(s['sha256'])} }} }}")
        if p.get("wheels"):
            lines.append("wheels = [")
            for wf in p["wheels"]:
                lines.append(f"    {{ name = {toml_str(wf['name'])}, url = {toml_str(wf['url'])}, "
                             f"size = {wf['size']}, "
                             f"hashes = {{ sha256 = {toml_str(wf['sha256'])} }} }},")
            lines.append("]")
        lines.append("")
    lines += ["[tool.gen-wheels]", 'note = "materializer test fixture"', ""]
    return "\n".join(lines)


def uv_lock_text(packages, root_deps):
    lines = ["version = 1", "revision = 2", 'requires-python = ">=3.8"', ""]
    for p in sorted(packages, key=lambda p: normalize(p["name"])):
        lines += ["[[package]]", f"name = {toml_str(normalize(p['name']))}",
                  f"version = {toml_str(p['version'])}",
                  'source = { registry = "@BASE_URL@/simple" }']
        if p.get("deps"):
            lines.append("dependencies = [")
            lines += [f"    {{ name = {toml_str(d)} }}," for d in p["deps"]]
            lines.append("]")
        if p.get("sdist"):
            s = p["sdist"]
            lines.append(f"sdist = {{ url = {toml_str(s['url'])}, hash = "
                         f"{toml_str('sha256:' + s['sha256'])}, size = {s['size']} }}")
        lines.append("wheels = [")
        for wf in p["wheels"]:
            lines.append(f"    {{ url = {toml_str(wf['url'])}, hash = "
                         f"{toml_str('sha256:' + wf['sha256'])}, size = {wf['size']} }},")
        lines += ["]", ""]
    # The project itself: a virtual root (uv never installs it), depending on everything.
    lines += ["[[package]]", 'name = "wheel-fixture-project"', 'version = "0.1.0"',
              'source = { virtual = "." }', "dependencies = ["]
    lines += [f"    {{ name = {toml_str(normalize(d))} }}," for d in root_deps]
    lines += ["]", "", "[package.metadata]", "requires-dist = ["]
    lines += [f"    {{ name = {toml_str(normalize(d))} }}," for d in root_deps]
    lines += ["]", ""]
    return "\n".join(lines)


def requirements_text(packages):
    lines = ["#", "# This file is autogenerated by pip-compile with Python 3.11 (gen_wheels)",
             "#", "--index-url @INDEX_URL@", ""]
    for p in packages:
        req = f"{normalize(p['name'])}=={p['version']}"
        if p.get("marker"):
            req += f" ; {p['marker']}"
        hashes = sorted(h["sha256"] for h in p["files"])
        lines.append(req + " \\")
        for i, h in enumerate(hashes):
            lines.append(f"    --hash=sha256:{h}" + (" \\" if i < len(hashes) - 1 else ""))
        lines.append(f"    # via -r requirements.in")
    return "\n".join(lines) + "\n"


def poetry_lock_text(packages):
    lines = ["# This file is automatically @generated by Poetry 1.8.3 and should not be "
             "changed by hand.", ""]
    for p in packages:
        lines += ["[[package]]", f"name = {toml_str(normalize(p['name']))}",
                  f"version = {toml_str(p['version'])}",
                  f"description = {toml_str(p['name'] + ' fixture')}", "optional = false",
                  f"python-versions = {toml_str(p.get('requires_python') or '*')}", "files = ["]
        for f_ in sorted(p["files"], key=lambda f_: f_["name"]):
            lines.append(f"    {{file = {toml_str(f_['name'])}, "
                         f"hash = {toml_str('sha256:' + f_['sha256'])}}},")
        lines.append("]")
        if p.get("deps"):
            lines += ["", "[package.dependencies]"]
            lines += [f"{d} = \"*\"" for d in p["deps"]]
        lines.append("")
    lines += ["[metadata]", 'lock-version = "2.0"', 'python-versions = "^3.8"',
              'content-hash = "' + "0" * 64 + '"', ""]
    return "\n".join(lines)


def conda_lock_with_pip(python_entry, pips):
    return gen_fixtures.conda_lock_text([python_entry], pips)


def pixi_with_pypi(python_entry, pips):
    text = gen_fixtures.pixi_text([python_entry]).rstrip("\n").split("\n")
    # environment list: add `- pypi:` lines after the conda one
    i = text.index(f"      - conda: {python_entry['url']}") + 1
    text[i:i] = [f"      - pypi: {p['url']}" for p in pips]
    # indexes for the environment (pixi v6 writes them after channels)
    j = text.index("    packages:")
    text[j:j] = ["    indexes:", "    - @BASE_URL@/simple"]
    for p in pips:
        text += [f"- pypi: {p['url']}", f"  name: {p['name']}",
                 f"  version: {gen_fixtures.yaml_str(p['version'])}",
                 f"  sha256: {p['sha256']}"]
        if p.get("requires_dist"):
            text.append("  requires_dist:")
            text += [f"  - {gen_fixtures.yaml_str(r)}" for r in p["requires_dist"]]
        text.append(f"  requires_python: {gen_fixtures.yaml_str(p.get('requires_python') or '>=3.8')}")
    return "\n".join(text) + "\n"


# ----------------------------------------------------------------------------------------
# Simple API index
# ----------------------------------------------------------------------------------------

def index_pages(projects, files_info):
    """projects: {normalized: [file names]} -> {relpath: bytes} for simple/ (HTML + JSON)."""
    pages = {}
    names = sorted(projects)
    pages["index.html"] = ("<!DOCTYPE html>\n<html><head>"
                           '<meta name="pypi:repository-version" content="1.1">'
                           "<title>Simple index</title></head><body>\n"
                           + "".join(f'<a href="{n}/">{n}</a>\n' for n in names)
                           + "</body></html>\n").encode()
    pages["index.json"] = (json.dumps({"meta": {"api-version": "1.1"},
                                       "projects": [{"name": n} for n in names]},
                                      indent=1, sort_keys=True) + "\n").encode()
    for n in names:
        links, files, versions = [], [], set()
        for fn in sorted(projects[n]):
            info = files_info[fn]
            href = f"../../files/{fn}"
            rp = info.get("requires_python")
            attr = f' data-requires-python="{html.escape(rp)}"' if rp else ""
            links.append(f'<a href="{href}#sha256={info["sha256"]}"{attr}>{fn}</a><br>')
            entry = {"filename": fn, "url": href, "hashes": {"sha256": info["sha256"]},
                     "size": info["size"], "upload-time": "2020-01-01T00:00:00.000000Z"}
            if rp:
                entry["requires-python"] = rp
            files.append(entry)
            versions.add(info["version"])
        pages[f"{n}/index.html"] = ("<!DOCTYPE html>\n<html><head>"
                                    '<meta name="pypi:repository-version" content="1.1">'
                                    f"<title>Links for {n}</title></head><body>\n"
                                    f"<h1>Links for {n}</h1>\n" + "\n".join(links)
                                    + "\n</body></html>\n").encode()
        pages[f"{n}/index.json"] = (json.dumps({"meta": {"api-version": "1.1"}, "name": n,
                                                "files": files, "versions": sorted(versions)},
                                               indent=1, sort_keys=True) + "\n").encode()
    return pages


# ----------------------------------------------------------------------------------------
# Bad fixtures
# ----------------------------------------------------------------------------------------

def bad_wheels():
    """{case: Wheel} (each builds a structurally broken wheel)."""
    out = {}
    rec = Wheel("recordbad", "1.0", "py3-none-any", {"recordbad/__init__.py": "X = 1\n",
                                                      "recordbad/ok.py": "Y = 2\n"})
    rec.record_override["recordbad/__init__.py"] = (record_hash(b"X = 2\n"), "6")
    out["record-mismatch"] = rec
    slip = Wheel("zipslip", "1.0", "py3-none-any", {"zipslip/__init__.py": ""})
    slip.extra_members = [("../../evil.py", b"print('escaped')\n")]
    slip.record_extra_rows = [("../../evil.py", record_hash(b"print('escaped')\n"), "17")]
    out["zip-slip"] = slip
    dup = Wheel("dupnames", "1.0", "py3-none-any", {"dupnames/__init__.py": "A = 1\n"})
    dup.extra_members = [("dupnames/__init__.py", b"A = 2  # second member, same name\n")]
    out["duplicate-names"] = dup
    mis = Wheel("misnamed", "1.0", "py3-none-any", {"misnamed/__init__.py": ""})
    mis.metadata_name = "somethingelse"
    out["metadata-name-mismatch"] = mis
    return out


MALFORMED_PYLOCK = """\
lock-version = "1.0"
created-by = "gen_wheels"

[[packages]]
name = "purepkg"
version = "1.0.0
"""
MALFORMED_PYLOCK_LINE = 6


# ----------------------------------------------------------------------------------------
# Benchmark set
# ----------------------------------------------------------------------------------------

WORDS = ("import", "def", "return", "self", "value", "data", "result", "None", "True", "for",
         "in", "if", "else", "class", "lambda", "yield", "with", "as", "try", "except")


def py_source(rnd, n):
    out, size = [], 0
    while size < n:
        line = "    " * rnd.randint(0, 2) + " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(3, 12)))
        out.append(line)
        size += len(line) + 1
    return ("\n".join(out) + "\n").encode()


def bench_wheels():
    """~40 wheels: 3 large (5-20 MB, 500+ files), the rest small (10-200 KB, 5-50 files)."""
    rnd = random.Random(5150)
    wheels = []
    large = {3: 5, 17: 10, 31: 16}  # index -> MB of .so content (the wheel ends up ~1.2x)
    for i in range(40):
        name = f"benchwheel{i:02d}"
        files = {}
        if i in large:
            target = large[i] << 20
            nfiles = rnd.randint(520, 900)
            n_so = 6
            for j in range(nfiles - n_so):
                files[f"{name}/m{j // 50:02d}/mod{j:04d}.py"] = py_source(rnd, rnd.randint(300, 6000))
            per_so = int(target * 2.2) // n_so
            for j in range(n_so):
                files[f"{name}/_lib{j}.cpython-311-x86_64-linux-gnu.so"] = (
                    gen_fixtures.binlike(9000 + i * 10 + j, per_so), 0o755)
            tag = "cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64"
        else:
            nfiles = rnd.randint(5, 50)
            budget = rnd.randint(10 << 10, 200 << 10)
            for j in range(nfiles):
                if j == 0:
                    files[f"{name}/__init__.py"] = f'NAME = "{name}"\n'
                elif j % 7 == 3:
                    files[f"{name}/data/blob{j}.bin"] = gen_fixtures.binlike(
                        7000 + i * 100 + j, max(256, budget // nfiles * 2))
                else:
                    files[f"{name}/sub{j % 4}/mod{j}.py"] = py_source(
                        rnd, max(100, budget // nfiles * 2))
            tag = "py3-none-any"
        eps = {"console_scripts": {f"{name}-cli": f"{name}:main"}} if i % 5 == 0 else None
        if eps:
            files[f"{name}/__init__.py"] = (f'NAME = "{name}"\n\n\ndef main():\n'
                                            f'    print(NAME)\n    return 0\n')
        wheels.append(Wheel(name, f"1.{i}.0", tag, files, entry_points=eps,
                            purelib=tag.startswith("py3")))
    return wheels


def gen_bench(out):
    root = os.path.join(out, "bench")
    pkgs, reqs, total, nfiles = [], [], 0, 0
    for w in bench_wheels():
        blob = w.build()
        write(os.path.join(root, "files", w.file_name), blob)
        info = {"name": w.file_name, "url": f"@BASE_URL@/files/{w.file_name}",
                "sha256": sha256(blob), "size": len(blob)}
        pkgs.append({"name": w.name, "version": w.version, "wheels": [info]})
        reqs.append({"name": w.name, "version": w.version, "files": [info]})
        total += len(blob)
        nfiles += len(w.files)
    write(os.path.join(root, "locks", "pylock.toml.in"), pylock_text(pkgs))
    write(os.path.join(root, "locks", "requirements.txt.in"), requirements_text(reqs))
    return {"wheels": len(pkgs), "bytes": total, "files": nfiles,
            "names": [p["name"] for p in pkgs],
            "file_names": [p["wheels"][0]["name"] for p in pkgs],
            "locks": {"pylock.toml": "bench/locks/pylock.toml.in",
                      "requirements.txt": "bench/locks/requirements.txt.in"}}


# ----------------------------------------------------------------------------------------

def write(path, data):
    gen_fixtures.write(path, data)


def jdump(obj):
    return gen_fixtures.jdump(obj)


def generate(out, bench=False):
    """Writes every wheel fixture under `out`; returns the manifest (also out/wheels.json)."""
    out = os.path.abspath(out)
    os.makedirs(out, exist_ok=True)
    for sub in ("files", "channel", "simple", "simple-html", "locks", "bad", "bench",
                "wheels.json", "find-links.html"):
        p = os.path.join(out, sub)
        if os.path.isdir(p):
            shutil.rmtree(p)
        elif os.path.exists(p):
            os.remove(p)

    # conda stand-in python, for the mixed conda + pip locks
    python = next(p for p in gen_fixtures.good_packages() if p.name == "python")
    pyblob = gen_fixtures.build_archive(python)
    write(os.path.join(out, "channel", python.subdir, python.file_name), pyblob)
    python_entry = gen_fixtures.lock_entry(python, pyblob, "@BASE_URL@/channel")
    conda_expected = gen_fixtures.expected_for([python])

    wheels = good_wheels()
    files_info, projects = {}, {}
    for key, w in wheels.items():
        blob = w.build()
        write(os.path.join(out, "files", w.file_name), blob)
        files_info[w.file_name] = {"key": key, "name": normalize(w.name), "version": w.version,
                                   "file_name": w.file_name, "sha256": sha256(blob),
                                   "size": len(blob), "kind": "wheel", "tag": w.tag,
                                   "dist_info": w.dist_info,
                                   "requires_python": w.requires_python}
        projects.setdefault(normalize(w.name), []).append(w.file_name)
    sdists = {"sdistonly": write_sdist("sdistonly", "1.0", {"sdistonly/__init__.py": ""}),
              "choose": write_sdist("choose", "1.0", {"choose/__init__.py": 'VARIANT = "sdist"\n'})}
    for name, blob in sdists.items():
        fn = f"{name}-1.0.tar.gz"
        write(os.path.join(out, "files", fn), blob)
        files_info[fn] = {"key": f"sdist:{name}", "name": name, "version": "1.0",
                          "file_name": fn, "sha256": sha256(blob), "size": len(blob),
                          "kind": "sdist", "requires_python": ">=3.8"}
        projects.setdefault(name, []).append(fn)

    for rel, data in index_pages(projects, files_info).items():
        write(os.path.join(out, "simple", rel), data)
        if not rel.endswith(".json"):
            write(os.path.join(out, "simple-html", rel), data)
    write(os.path.join(out, "find-links.html"),
          "<!DOCTYPE html>\n<html><body>\n" + "".join(
              f'<a href="files/{fn}#sha256={files_info[fn]["sha256"]}">{fn}</a><br>\n'
              for fn in sorted(files_info)) + "</body></html>\n")

    by_key = {i["key"]: i for i in files_info.values()}

    def fe(key):
        return file_entry(by_key[key])

    choose_all = [fe(f"choose:{v}") for _, v in CHOOSE_TAGS]
    choose_sdist = fe("sdist:choose")

    # --- per-package lock data ---------------------------------------------------------
    base_pkgs = []
    for key in INSTALL_SET:
        w = wheels[key]
        p = {"name": w.name, "version": w.version, "requires_python": w.requires_python,
             "deps": [normalize(r.split(">")[0].split("=")[0].split(";")[0].strip())
                      for r in w.requires_dist]}
        if w.name == "choose":
            p.update(wheels=choose_all, sdist=choose_sdist, files=choose_all + [choose_sdist])
        else:
            p.update(wheels=[fe(key)], files=[fe(key)])
        base_pkgs.append(p)
    winonly = {"name": "winonly", "version": "1.0", "marker": "sys_platform == 'win32'",
               "wheels": [fe("winonly")], "files": [fe("winonly")]}
    winonly_req = dict(winonly, marker='sys_platform == "win32"')
    pips = []  # single-file entries (conda-lock, pixi): the wheel fit for cp311 linux
    for key in INSTALL_SET:
        w, info = wheels[key], by_key[key]
        pips.append({"name": normalize(w.name), "version": w.version,
                     "url": f"@BASE_URL@/files/{info['file_name']}", "sha256": info["sha256"],
                     "requires_dist": w.requires_dist, "requires_python": w.requires_python})

    locks = {
        "pylock.toml": (pylock_text(base_pkgs + [winonly]), "pylock", False),
        "uv.lock": (uv_lock_text(base_pkgs, [p["name"] for p in base_pkgs]), "uv", False),
        "requirements.txt": (requirements_text(base_pkgs + [winonly_req]), "requirements",
                             False),
        "poetry.lock": (poetry_lock_text(base_pkgs), "poetry", False),
        "conda-lock.yml": (conda_lock_with_pip(python_entry, pips), "conda-lock-v1", True),
        "pixi.lock": (pixi_with_pypi(python_entry, pips), "pixi-v6", True),
    }
    lock_manifest = {}
    for name, (text, fmt, mixed) in locks.items():
        write(os.path.join(out, "locks", name + ".in"), text)
        lock_manifest[name] = {"in": f"locks/{name}.in", "format": fmt, "mixed": mixed,
                               "needs_index": name in ("requirements.txt", "poetry.lock"),
                               "wheels": [by_key[k]["file_name"] for k in INSTALL_SET],
                               "excluded": ["winonly"] if name in ("pylock.toml",
                                                                   "requirements.txt") else []}

    expected = {}
    for key in INSTALL_SET:
        expected.update(expected_install(wheels[key]))
    dists = {normalize(wheels[k].name): {"version": wheels[k].version,
                                         "dist_info": wheels[k].dist_info,
                                         "file_name": by_key[k]["file_name"],
                                         "sha256": by_key[k]["sha256"],
                                         "size": by_key[k]["size"]} for k in INSTALL_SET}

    manifest = {
        "python_version": PYTHON_XY, "site": SITE, "include": INCLUDE,
        "files": files_info, "projects": {k: sorted(v) for k, v in projects.items()},
        "install_set": [normalize(wheels[k].name) for k in INSTALL_SET],
        "dists": dists, "expected": dict(sorted(expected.items())),
        "entry_points": {k: list(v) for k, v in ENTRY_POINTS.items()},
        "choose": {"best": CHOOSE_BEST, "best_file": by_key[f"choose:{CHOOSE_BEST}"]["file_name"],
                   "variants": {by_key[f"choose:{v}"]["file_name"]: v for _, v in CHOOSE_TAGS}},
        "conda": {"python": python_entry, "expected_paths": conda_expected["paths"],
                  "python_exe": f"bin/python{PYTHON_XY}"},
        "locks": lock_manifest,
        "placeholders": {"@BASE_URL@": "server root (files/, simple/, channel/ below it)",
                         "@INDEX_URL@": "requirements.txt --index-url"},
    }
    manifest["bad"] = gen_bad(out, fe, by_key)
    if bench:
        manifest["bench"] = gen_bench(out)
    write(os.path.join(out, "wheels.json"), jdump(manifest))
    return manifest


def gen_bad(out, fe, by_key):
    cases = {}
    good = {"name": "purepkg", "version": "1.0.0", "wheels": [fe("purepkg")]}

    def bad_lock(case, pkgs, **info):
        lock = f"pylock.{case}.toml"
        write(os.path.join(out, "bad", "locks", lock + ".in"), pylock_text(pkgs))
        cases[case] = dict(info, lock=lock)

    for case, w in bad_wheels().items():
        blob = w.build()
        write(os.path.join(out, "bad", "files", w.file_name), blob)
        info = {"name": w.file_name, "url": f"@BASE_URL@/bad/files/{w.file_name}",
                "sha256": sha256(blob), "size": len(blob)}
        bad_lock(case, [good, {"name": w.name, "version": w.version, "wheels": [info]}],
                 package=w.name, file_name=w.file_name, sha256=info["sha256"],
                 key="sha256-" + info["sha256"], exit_code=1)
    cases["zip-slip"]["member"] = "../../evil.py"
    cases["record-mismatch"]["member"] = "recordbad/__init__.py"
    cases["duplicate-names"]["member"] = "dupnames/__init__.py"

    # hash mismatch: the lock's sha256 for a good wheel is wrong
    real = fe("platpkg")
    wrong = dict(real, sha256=sha256(b"not the real wheel"))
    bad_lock("hash-mismatch", [good, {"name": "platpkg", "version": "2.1", "wheels": [wrong]}],
             package="platpkg", file_name=real["name"], expected_sha256=wrong["sha256"],
             actual_sha256=real["sha256"], key="sha256-" + wrong["sha256"],
             actual_key="sha256-" + real["sha256"], exit_code=1)

    # 404
    missing = {"name": "missing-1.0-py3-none-any.whl",
               "url": "@BASE_URL@/files/missing-1.0-py3-none-any.whl",
               "sha256": sha256(b"missing"), "size": 7}
    bad_lock("missing-404", [good, {"name": "missing", "version": "1.0", "wheels": [missing]}],
             package="missing", file_name=missing["name"], key="sha256-" + missing["sha256"],
             exit_code=1)

    # sdist only (pylock): refused before anything is fetched
    sd = fe("sdist:sdistonly")
    bad_lock("sdist-only", [good, {"name": "sdistonly", "version": "1.0", "sdist": sd}],
             package="sdistonly", file_name=sd["name"], exit_code=2)
    # sdist only (requirements.txt: the index has only the sdist)
    write(os.path.join(out, "bad", "locks", "requirements.sdist-only.txt.in"),
          requirements_text([{"name": "purepkg", "version": "1.0.0", "files": [fe("purepkg")]},
                             {"name": "sdistonly", "version": "1.0", "files": [sd]}]))
    cases["sdist-only-index"] = {"lock": "requirements.sdist-only.txt", "package": "sdistonly",
                                 "file_name": sd["name"], "exit_code": 2}

    # every package excluded by its marker: nothing to install
    bad_lock("all-excluded", [{"name": "winonly", "version": "1.0",
                               "marker": "sys_platform == 'win32'", "wheels": [fe("winonly")]}],
             package="winonly", exit_code=0)

    write(os.path.join(out, "bad", "locks", "pylock.malformed.toml.in"), MALFORMED_PYLOCK)
    cases["malformed"] = {"lock": "pylock.malformed.toml", "line": MALFORMED_PYLOCK_LINE,
                          "exit_code": 2}
    return cases


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output directory (our subdirs are replaced)")
    ap.add_argument("--bench", action="store_true", help="also write the benchmark wheels")
    args = ap.parse_args(argv)
    m = generate(args.out, args.bench)
    print(f"gen_wheels: {len(m['files'])} distributions, {len(m['locks'])} locks, "
          f"{len(m['bad'])} bad cases"
          + (f", bench {m['bench']['wheels']} wheels ({m['bench']['bytes'] / 1e6:.1f} MB, "
             f"{m['bench']['files']} files)" if "bench" in m else "") + f" in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
