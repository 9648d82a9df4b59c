#!/usr/bin/python3
"""Self-test of the wheel fixtures (scripts/gen_wheels.py), the expected-layout recipe, the
RECORD checks and the pip oracle (no binary needed).

Debian's pip 23 installs the fixtures (with the upstream posix_prefix scheme, see harness):
check_wheel_prefix / check_wheel_records must find no difference, `pip check` of the site
must be clean, and pip must accept requirements.txt (--require-hashes) from the test index
over both PEP 691 JSON and PEP 503 HTML. That proves wheels, locks, index, recipe and checks
agree before the real binary is judged.
"""

import csv
import hashlib
import io
import json
import os
import sys
import tarfile
import tomllib
import unittest
import urllib.parse
import urllib.request
import zipfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import harness  # noqa: E402

gw = harness.gen_wheels


def tree_digest(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = os.path.join(dirpath, name)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def wheel_problems(path):
    """Structural problems of a wheel: RECORD vs members, WHEEL tags vs file name, METADATA."""
    problems = []
    fn = os.path.basename(path)
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        if len(names) != len(set(names)):
            problems.append("duplicate member names")
        if zf.testzip() is not None:
            problems.append("CRC error")
        for n in names:
            if n.startswith("/") or ".." in n.split("/"):
                problems.append(f"unsafe member {n}")
        dist_info = [n.split("/")[0] for n in names if n.endswith(".dist-info/RECORD")]
        if len(dist_info) != 1:
            return problems + [f"{len(dist_info)} dist-info dirs"]
        di = dist_info[0]
        rows = list(csv.reader(io.StringIO(zf.read(f"{di}/RECORD").decode())))
        recorded = {r[0]: (r[1], r[2]) for r in rows if r}
        for n in set(names):
            if n.endswith("/"):
                continue
            if n not in recorded:
                problems.append(f"{n} not in RECORD")
                continue
            if n == f"{di}/RECORD":
                if recorded[n] != ("", ""):
                    problems.append("RECORD lists a hash for itself")
                continue
            data = zf.read(n)
            if recorded[n] != (gw.record_hash(data), str(len(data))):
                problems.append(f"RECORD mismatch for {n}")
        for n in recorded:
            if n not in names:
                problems.append(f"RECORD names missing member {n}")
        name, version = di[:-len(".dist-info")].rsplit("-", 1)
        stem = fn[:-len(".whl")].split("-")
        if stem[0] != name or stem[1] != version:
            problems.append(f"file name {fn} vs dist-info {di}")
        tag = "-".join(stem[-3:])
        wheel = zf.read(f"{di}/WHEEL").decode()
        tags = [line.split(": ", 1)[1] for line in wheel.splitlines() if line.startswith("Tag: ")]
        if sorted(tags) != sorted(gw.expand_tags(tag)):
            problems.append(f"WHEEL tags {tags} vs file name tag {tag}")
        meta = zf.read(f"{di}/METADATA").decode()
        mname = next(line.split(": ", 1)[1] for line in meta.splitlines()
                     if line.startswith("Name: "))
        if gw.escape(mname) != name:
            problems.append(f"METADATA Name {mname} vs {name}")
    return problems


class WheelFixturesTest(harness.TempDirTestCase):

    @classmethod
    def setUpClass(cls):
        cls.wfx = harness.wheel_fixtures()
        cls.m = cls.wfx.manifest

    # --- generator ----------------------------------------------------------------------

    def test_deterministic(self):
        a, b = self.path("a"), self.path("b")
        gw.generate(a)
        gw.generate(b)
        da, db = tree_digest(a), tree_digest(b)
        self.assertEqual(da, db)
        self.assertEqual(da, tree_digest(self.wfx.root))
        gw.generate(a)  # regenerating in place replaces, never accumulates
        self.assertEqual(tree_digest(a), db)

    def test_good_wheels_are_valid(self):
        for fn, info in self.m["files"].items():
            path = os.path.join(self.wfx.files_dir, fn)
            with open(path, "rb") as fh:
                blob = fh.read()
            self.assertEqual(hashlib.sha256(blob).hexdigest(), info["sha256"], fn)
            self.assertEqual(len(blob), info["size"], fn)
            if info["kind"] == "wheel":
                self.assertEqual(wheel_problems(path), [], fn)
            else:
                with tarfile.open(path) as tf:
                    self.assertIn(fn[:-len(".tar.gz")] + "/PKG-INFO", tf.getnames())

    def test_bad_wheels_are_bad_in_one_way(self):
        want = {"record-mismatch": ["RECORD mismatch for recordbad/__init__.py"],
                "zip-slip": ["unsafe member ../../evil.py"],
                "duplicate-names": ["duplicate member names",
                                    "RECORD mismatch for dupnames/__init__.py"],
                "metadata-name-mismatch": ["METADATA Name somethingelse vs misnamed"]}
        for case, problems in want.items():
            c = self.m["bad"][case]
            path = os.path.join(self.wfx.root, "bad", "files", c["file_name"])
            self.assertEqual(sorted(wheel_problems(path)), sorted(problems), case)
            with open(path, "rb") as fh:
                self.assertEqual(hashlib.sha256(fh.read()).hexdigest(), c["sha256"])

    def test_locks_parse_and_match_files(self):
        base = "http://127.0.0.1:9"
        files = {i["file_name"]: i for i in self.m["files"].values()}
        for name in self.m["locks"]:
            with self.subTest(lock=name):
                path = self.wfx.render_lock(name, base, self.tmp)
                text = harness.read_text(path)
                self.assertNotIn("@", text.replace("@generated", ""))
                if name.endswith((".toml", ".lock")) and name != "pixi.lock":
                    doc = tomllib.loads(text)
                elif name.endswith((".yml", "pixi.lock")):
                    doc = harness.load_yaml(path)
                # every sha256 in the lock is the sha256 of a real file
                import re
                for h in re.findall(r"sha256[=:\"' ]+([0-9a-f]{64})", text):
                    self.assertTrue(any(i["sha256"] == h for i in files.values())
                                    or h == self.m["conda"]["python"]["sha256"], h)
                if name == "pylock.toml":
                    win = [p for p in doc["packages"] if p["name"] == "winonly"]
                    self.assertEqual(win[0]["marker"], "sys_platform == 'win32'")
                if name == "uv.lock":
                    choose = next(p for p in doc["package"] if p["name"] == "choose")
                    self.assertEqual(len(choose["wheels"]), 4)
                    self.assertIn("sdist", choose)
        bad = tomllib.loads(harness.read_text(self.wfx.render_lock(
            self.m["bad"]["hash-mismatch"]["lock"], base, self.tmp, bad=True)))
        self.assertEqual(len(bad["packages"]), 2)
        with self.assertRaises(tomllib.TOMLDecodeError) as cm:
            tomllib.loads(harness.read_text(self.wfx.render_lock(
                self.m["bad"]["malformed"]["lock"], base, self.tmp, bad=True)))
        self.assertIn(f"line {self.m['bad']['malformed']['line']}", str(cm.exception))

    # --- the pip oracle agrees with the recipe -------------------------------------------

    def pip_prefix(self, compile=False):
        prefix = self.path("pip")
        harness.pip_install_prefix(prefix, self.wfx.pins(), find_links=self.wfx.files_dir,
                                   compile=compile)
        return prefix

    def test_pip_install_matches_recipe(self):
        prefix = self.pip_prefix()
        exp = self.wfx.expected()
        diffs = harness.check_wheel_prefix(prefix, exp, harness.SYSTEM_PYTHON,
                                           installer=b"pip\n")
        self.assertEqual(diffs, [])
        diffs = harness.check_wheel_records(prefix, exp, self.wfx.dists(), self.wfx.site)
        self.assertEqual(diffs, [])
        site = os.path.join(prefix, self.wfx.site)
        self.assertEqual(harness.pip_list(site),
                         {n: d["version"] for n, d in self.wfx.dists().items()})
        cp = harness.pip_check(site, self.tmp)
        self.assertEqual(cp.returncode, 0, harness.describe(cp))
        self.assertIn("No broken requirements found", cp.stdout)
        # The checks are not vacuous: break the prefix, they notice.
        purepkg = self.wfx.dists()["purepkg"]
        os.rename(os.path.join(site, purepkg["dist_info"]), self.path("moved"))
        cp = harness.pip_check(site, self.tmp)
        self.assertEqual(cp.returncode, 1)
        self.assertIn("platpkg 2.1 requires purepkg", cp.stdout)
        diffs = harness.check_wheel_prefix(prefix, exp, harness.SYSTEM_PYTHON,
                                           installer=b"pip\n")
        self.assertIn(f"missing: {self.wfx.site}/{purepkg['dist_info']}/RECORD", diffs)
        with open(os.path.join(site, "choose", "__init__.py"), "a") as fh:
            fh.write("# tampered\n")
        diffs = harness.check_wheel_records(prefix, exp, self.wfx.dists(), self.wfx.site)
        self.assertTrue([d for d in diffs if "choose/__init__.py" in d], diffs)

    def test_pip_scripts_and_imports(self):
        prefix = self.pip_prefix()
        case = harness.WheelTestCase("run")
        case.wfx, case.tmp = self.wfx, self.tmp
        case.assertImportsAndScripts(prefix, direct=True)

    def test_pip_compile_matches_record_check(self):
        prefix = self.pip_prefix(compile=True)
        diffs = harness.check_wheel_records(prefix, self.wfx.expected(), self.wfx.dists(),
                                            self.wfx.site, compile=True)
        self.assertEqual(diffs, [])

    # --- index and server ----------------------------------------------------------------

    def fetch(self, url, accept=None):
        req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.headers.get("Content-Type"), r.read()

    def test_index_content_negotiation(self):
        with harness.HttpServer(self.wfx.root) as srv:
            page = srv.url + "/simple/purepkg/"
            ctype, body = self.fetch(page, harness.SIMPLE_JSON_MIME)
            self.assertEqual(ctype, harness.SIMPLE_JSON_MIME)
            doc = json.loads(body)
            self.assertEqual(doc["name"], "purepkg")
            self.assertEqual(len(doc["files"]), 2)
            for f in doc["files"]:
                _, blob = self.fetch(urllib.parse.urljoin(page, f["url"]))
                self.assertEqual(hashlib.sha256(blob).hexdigest(), f["hashes"]["sha256"])
            ctype, body = self.fetch(page, "text/html")
            self.assertTrue(ctype.startswith("text/html"), ctype)
            self.assertIn(b'data-requires-python="&gt;=3.8"', body)
            ctype, _ = self.fetch(srv.url + "/simple-html/purepkg/", harness.SIMPLE_JSON_MIME)
            self.assertTrue(ctype.startswith("text/html"), ctype)
            ctype, _ = self.fetch(page, harness.SIMPLE_JSON_MIME + ";q=0, text/html")
            self.assertTrue(ctype.startswith("text/html"), ctype)
            ctype, body = self.fetch(srv.url + "/simple/", harness.SIMPLE_JSON_MIME)
            self.assertEqual({p["name"] for p in json.loads(body)["projects"]},
                             set(self.m["projects"]))
            self.assertEqual(srv.json_served, ["/simple/purepkg/", "/simple/"])

    def test_pip_installs_requirements_from_both_indexes(self):
        """pip 23 speaks PEP 691 (asks for JSON first): the requirements.txt lock, with
        --require-hashes, installs the expected set from /simple (JSON) and /simple-html."""
        with harness.HttpServer(self.wfx.root) as srv:
            for root, json_pages in (("/simple", True), ("/simple-html", False)):
                with self.subTest(index=root):
                    d = self.path(root.strip("/"))
                    os.makedirs(d)
                    req = self.wfx.render_lock("requirements.txt", srv.url, d,
                                               index_url=srv.url + root)
                    del srv.json_served[:]
                    prefix = os.path.join(d, "prefix")
                    harness.pip(["install", "--no-deps", "--require-hashes", "--no-compile",
                                 "--prefix", prefix, "--no-warn-script-location", "-r", req])
                    self.assertEqual(bool(srv.json_served), json_pages, srv.json_served)
                    diffs = harness.check_wheel_prefix(prefix, self.wfx.expected(),
                                                       harness.SYSTEM_PYTHON,
                                                       installer=b"pip\n")
                    self.assertEqual(diffs, [])  # winonly excluded by its marker

    def test_mixed_locks_name_the_conda_python(self):
        py = self.m["conda"]["python"]
        for name in ("conda-lock.yml", "pixi.lock"):
            text = harness.read_text(self.wfx.render_lock(name, "http://h", self.tmp))
            self.assertIn(py["sha256"], text)
            self.assertIn("http://h/channel/linux-64/python-3.11.7-h_mat_0.conda", text)
            for d in self.wfx.dists().values():
                self.assertIn(f"http://h/files/{d['file_name']}", text)
        with open(os.path.join(self.wfx.root, "channel", "linux-64",
                               "python-3.11.7-h_mat_0.conda"), "rb") as fh:
            self.assertEqual(hashlib.sha256(fh.read()).hexdigest(), py["sha256"])


class BenchWheelsTest(harness.TempDirTestCase):

    def test_bench_set(self):
        out = self.path("b")
        m = gw.generate(out, bench=True)["bench"]
        self.assertGreaterEqual(m["wheels"], 40)
        sizes = {}
        for fn in m["file_names"]:
            p = os.path.join(out, "bench", "files", fn)
            sizes[fn] = os.path.getsize(p)
            with zipfile.ZipFile(p) as zf:
                n = len(zf.namelist())
            if sizes[fn] > 5 << 20:
                self.assertGreaterEqual(n, 500, fn)
            else:
                self.assertTrue(5 <= n <= 60, (fn, n))
                self.assertTrue(10 << 10 <= sizes[fn] <= 200 << 10, (fn, sizes[fn]))
        big = [s for s in sizes.values() if s > 5 << 20]
        self.assertTrue(2 <= len(big) <= 5 and max(big) <= 20 << 20, big)
        for fn in (m["file_names"][0], max(sizes, key=sizes.get)):
            self.assertEqual(wheel_problems(os.path.join(out, "bench", "files", fn)), [])
        tomllib.loads(harness.read_text(os.path.join(out, m["locks"]["pylock.toml"])))
        again = self.path("again")
        gw.generate(again, bench=True)
        self.assertEqual(tree_digest(os.path.join(out, "bench")),
                         tree_digest(os.path.join(again, "bench")))


if __name__ == "__main__":
    harness.main()
