#!/usr/bin/python3
"""Self-test of the fixtures, the prefix-replacement oracle and the servers (no binary needed).

A reference installer written here in Python installs every lock's packages straight from the
archives; check_prefix must find no difference. That proves the archives, paths.json, the
expected recipes and check_prefix agree with each other before the real binary is judged.
"""

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import harness  # noqa: E402

gf = harness.gen_fixtures


def tree_digest(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = os.path.join(dirpath, name)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def reference_install(fx, lock_name, prefix):
    """Installs the lock's packages like conda would, from the fixture channel."""
    exp = fx.expected(lock_name)
    for pkg in exp["packages"]:
        members = harness.read_archive(os.path.join(fx.channel, pkg["url_path"]))
        index = json.loads(members["info/index.json"][1])
        noarch_py = index.get("noarch") == "python"
        if "info/paths.json" in members:
            paths = json.loads(members["info/paths.json"][1])["paths"]
        else:  # legacy: info/files + info/has_prefix
            hp = {}
            for line in members["info/has_prefix"][1].decode().splitlines():
                parts = line.split()
                if len(parts) == 1:
                    hp[parts[0]] = (gf.LEGACY_PLACEHOLDER, "text")
                else:
                    hp[parts[2]] = (parts[0], parts[1])
            paths = []
            for p in members["info/files"][1].decode().splitlines():
                rec = {"_path": p, "path_type": "softlink" if members[p][0] == "symlink"
                       else "hardlink"}
                if p in hp:
                    rec["prefix_placeholder"], rec["file_mode"] = hp[p]
                paths.append(rec)
        for rec in paths:
            src = rec["_path"]
            dst = gf.map_noarch_python(src) if noarch_py else src
            full = os.path.join(prefix, dst)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            if os.path.lexists(full) and rec["path_type"] != "directory":
                os.unlink(full)  # clobber: later package wins
            kind, data, mode, linkname = members[src]
            if rec["path_type"] == "directory":
                os.makedirs(full, exist_ok=True)
            elif rec["path_type"] == "softlink":
                os.symlink(linkname, full)
            else:
                if rec.get("prefix_placeholder"):
                    data = gf.expected_bytes(data, rec["prefix_placeholder"], rec["file_mode"],
                                             prefix)
                with open(full, "wb") as fh:
                    fh.write(data)
                os.chmod(full, mode & 0o777)
        if "info/link.json" in members:
            link = json.loads(members["info/link.json"][1])
            for ep in link["noarch"].get("entry_points", []):
                cmd, _, target = (s.strip() for s in ep.partition("="))
                module, _, func = target.partition(":")
                full = os.path.join(prefix, "bin", cmd)
                shebang = gf.entry_point_shebang(os.path.join(prefix, f"bin/python{gf.PYTHON_XY}"))
                body = (f"# -*- coding: utf-8 -*-\nimport re\nimport sys\n\n"
                        f"from {module} import {func}\n\nif __name__ == '__main__':\n"
                        f"    sys.argv[0] = re.sub(r'(-script\\.pyw?|\\.exe)?$', '', sys.argv[0])\n"
                        f"    sys.exit({func}())\n")
                with open(full, "wb") as fh:
                    fh.write(shebang + body.encode())
                os.chmod(full, 0o755)


class OracleTest(unittest.TestCase):
    PH = b"/opt/placeholder_placeholder_placeholder"

    def test_text_replaces_every_occurrence(self):
        data = b"a=" + self.PH + b"/x\nb=" + self.PH + b"/y " + self.PH + b"\n"
        self.assertEqual(gf.replace_prefix_text(data, self.PH, b"/p"), b"a=/p/x\nb=/p/y /p\n")

    def test_text_shebang_spaces_are_escaped_then_env(self):
        data = b"#!" + self.PH + b"/bin/python -E\nprint(1) # " + self.PH + b"\n"
        out = gf.expected_bytes(data, self.PH.decode(), "text", "/my env")
        self.assertEqual(out, b"#!/usr/bin/env python -E\nprint(1) # /my env\n")

    def test_long_shebang_uses_env(self):
        prefix = "/" + "d" * 130
        data = b"#!" + self.PH + b"/bin/python3.11 -u\nx\n"
        self.assertEqual(gf.expected_bytes(data, self.PH.decode(), "text", prefix),
                         b"#!/usr/bin/env python3.11 -u\nx\n")
        # 127 bytes exactly stays.
        prefix = "/" + "d" * (127 - 2 - len("/bin/python3.11 -u") - 1)
        out = gf.expected_bytes(data, self.PH.decode(), "text", prefix)
        self.assertEqual(len(out.split(b"\n")[0]), 127)
        self.assertTrue(out.startswith(b"#!" + prefix.encode()))

    def test_shebang_not_on_first_line_is_plain(self):
        data = b"x\n#!" + self.PH + b"/bin/python\n"
        self.assertEqual(gf.expected_bytes(data, self.PH.decode(), "text", "/a b"),
                         b"x\n#!/a b/bin/python\n")

    def test_binary_pads_each_c_string(self):
        data = b"\x01A" + self.PH + b"/x:" + self.PH + b"/y\x00B" + self.PH + b"\x00tail"
        out = gf.replace_prefix_binary(data, self.PH, b"/p")
        pad = len(self.PH) - 2
        self.assertEqual(out, b"\x01A/p/x:/p/y\x00" + b"\x00" * (2 * pad) + b"B/p\x00"
                         + b"\x00" * pad + b"tail")
        self.assertEqual(len(out), len(data))

    def test_binary_skips_strings_with_newline_or_without_nul(self):
        data = b"\x00" + self.PH + b"/a\nb\x00" + self.PH + b"/no-nul"
        self.assertEqual(gf.replace_prefix_binary(data, self.PH, b"/p"), data)

    def test_binary_prefix_too_long(self):
        with self.assertRaises(gf.PaddingError):
            gf.replace_prefix_binary(self.PH + b"\x00", self.PH, b"/" + b"x" * 100)

    def test_entry_point_shebang(self):
        self.assertEqual(gf.entry_point_shebang("/p/bin/python3.11"), b"#!/p/bin/python3.11\n")
        long_py = "/" + "x" * 130 + "/bin/python3.11"
        self.assertTrue(gf.entry_point_shebang(long_py).startswith(b"#!/bin/sh\n'''exec' \""))
        self.assertTrue(gf.entry_point_shebang("/a b/python").startswith(b"#!/bin/sh\n"))


class FixtureTest(harness.TempDirTestCase):
    def test_generation_is_deterministic(self):
        a, b = self.path("a"), self.path("b")
        gf.generate(a)
        first = tree_digest(a)
        gf.generate(a)
        self.assertEqual(first, tree_digest(a))
        gf.generate(b)
        second = tree_digest(b)
        strip = lambda d: {k: v for k, v in d.items() if "/file/" not in "/" + k}  # noqa: E731
        self.assertEqual(strip(first), strip(second))
        self.assertGreaterEqual(len(first), 30)

    def test_cli_writes_the_same_bytes(self):
        out = self.path("cli")
        subprocess.run([sys.executable, os.path.join(harness.SOURCE_DIR, "scripts",
                                                     "gen_fixtures.py"), "--out", out],
                       check=True, stdout=subprocess.DEVNULL)
        gf.generate(self.path("lib"))
        strip = lambda d: {k: v for k, v in d.items() if "/file/" not in "/" + k}  # noqa: E731
        self.assertEqual(strip(tree_digest(out)), strip(tree_digest(self.path("lib"))))

    def test_archives_match_their_metadata(self):
        fx = harness.fixtures()
        seen_formats = set()
        for pkg in fx.manifest["packages"]:
            path = os.path.join(fx.channel, pkg["subdir"], pkg["url"].rsplit("/", 1)[1])
            with open(path, "rb") as fh:
                blob = fh.read()
            self.assertEqual(hashlib.sha256(blob).hexdigest(), pkg["sha256"])
            self.assertEqual(hashlib.md5(blob).hexdigest(), pkg["md5"])
            self.assertEqual(len(blob), pkg["size"])
            if path.endswith(".conda"):
                import zipfile
                with zipfile.ZipFile(path) as zf:
                    names = zf.namelist()
                    stem = os.path.basename(path)[:-len(".conda")]
                    self.assertEqual(names, ["metadata.json", f"pkg-{stem}.tar.zst",
                                             f"info-{stem}.tar.zst"])
                    self.assertEqual(json.loads(zf.read("metadata.json")),
                                     {"conda_pkg_format_version": 2})
                    self.assertTrue(all(i.compress_type == zipfile.ZIP_STORED
                                        for i in zf.infolist()))
                seen_formats.add("conda")
            else:
                seen_formats.add("tar.bz2")
            m = harness.read_archive(path)
            index = json.loads(m["info/index.json"][1])
            for k in ("name", "version", "build", "build_number", "depends", "license",
                      "subdir", "timestamp"):
                self.assertIn(k, index)
            self.assertEqual(index["name"], pkg["name"])
            if "info/paths.json" in m:
                pj = json.loads(m["info/paths.json"][1])
                self.assertEqual(pj["paths_version"], 1)
                for rec in pj["paths"]:
                    kind, data, mode, linkname = m[rec["_path"]]
                    want = {"hardlink": "file", "softlink": "symlink", "directory": "dir"}
                    self.assertEqual(kind, want[rec["path_type"]], rec["_path"])
                    if kind == "file":
                        self.assertEqual(hashlib.sha256(data).hexdigest(), rec["sha256"])
                        self.assertEqual(len(data), rec["size_in_bytes"])
                        if "prefix_placeholder" in rec:
                            self.assertIn(rec["prefix_placeholder"].encode(), data)
                            self.assertIn(rec["file_mode"], ("text", "binary"))
                payload = {n for n in m if not n.startswith("info/")}
                self.assertEqual(payload, {r["_path"] for r in pj["paths"]})
            else:
                self.assertEqual(pkg["name"], "legacy")
                self.assertIn("info/has_prefix", m)
                self.assertIn("info/files", m)
            if index.get("noarch") == "python":
                link = json.loads(m["info/link.json"][1])
                self.assertEqual(link["noarch"]["type"], "python")
                self.assertEqual(link["package_metadata_version"], 1)
        self.assertEqual(seen_formats, {"conda", "tar.bz2"})
        self.assertGreaterEqual(len(gf.PLACEHOLDER), 200)

    def test_locks_render_and_parse(self):
        fx = harness.fixtures()
        base = "http://127.0.0.1:1/channel"
        n = len(fx.manifest["packages"])
        cl = harness.load_yaml(fx.render_lock("conda-lock.yml", base, self.tmp))
        self.assertEqual(cl["version"], 1)
        self.assertEqual(cl["metadata"]["platforms"], ["linux-64"])
        self.assertEqual(len(cl["package"]), n)
        for p in cl["package"]:
            self.assertEqual(p["manager"], "conda")
            self.assertTrue(p["url"].startswith(base + "/"))
            self.assertEqual(set(p["hash"]), {"md5", "sha256"})
        px = harness.load_yaml(fx.render_lock("pixi.lock", base, self.tmp))
        self.assertEqual(px["version"], 6)
        self.assertEqual(len(px["environments"]["default"]["packages"]["linux-64"]), n)
        self.assertEqual(len(px["packages"]), n)
        ex = harness.read_text(fx.render_lock("explicit.txt", base, self.tmp)).splitlines()
        self.assertIn("@EXPLICIT", ex)
        self.assertIn("# platform: linux-64", ex)
        urls = [line for line in ex if line.startswith("http")]
        self.assertEqual(len(urls), n)
        self.assertTrue(any("#sha256:" in u for u in urls))
        self.assertTrue(any("#sha256:" not in u for u in urls))
        # file:// locks point at files that exist.
        fl = harness.load_yaml(os.path.join(fx.root, "locks", "file", "conda-lock.yml"))
        for p in fl["package"]:
            self.assertTrue(os.path.isfile(p["url"][len("file://"):]), p["url"])
        # expected keys: every entry cached by sha256, md5-only lines included
        exp = fx.expected("explicit.txt")
        self.assertTrue(any(p["locked_by"] == "md5" for p in exp["packages"]))
        self.assertTrue(all(p["key"] == "sha256-" + p["sha256"] for p in exp["packages"]))

    def test_bad_locks(self):
        import yaml
        fx = harness.fixtures()
        case = fx.bad_case("malformed")
        path = fx.render_lock(case["lock"], "http://127.0.0.1:1/channel", self.tmp, bad=True)
        with self.assertRaises(yaml.YAMLError) as cm:
            harness.load_yaml(path)
        self.assertEqual(cm.exception.problem_mark.line + 1, case["line"])
        for name, case in fx.manifest["bad"].items():
            if name == "malformed":
                continue
            p = fx.render_lock(case["lock"], "http://127.0.0.1:1/channel", self.tmp, bad=True)
            text = harness.read_text(p)
            self.assertNotIn("@", text.replace("@EXPLICIT", ""), name)
        # truncated really is truncated; dotdot really has ../evil
        t = fx.bad_case("truncated")
        with self.assertRaises(Exception):
            harness.read_archive(os.path.join(fx.bad_channel, "linux-64", t["file_name"]))
        import tarfile
        with tarfile.open(os.path.join(fx.bad_channel, "linux-64",
                                       fx.bad_case("dotdot")["file_name"])) as tf:
            self.assertIn("../evil", tf.getnames())
        m = harness.read_archive(os.path.join(fx.bad_channel, "linux-64",
                                              fx.bad_case("symlink-abs")["file_name"]))
        self.assertEqual(m["lib"][3], "/etc")

    def test_bench_channel(self):
        m = gf.generate(self.path("bench"), bench=12)
        self.assertEqual(m["bench"]["packages"], 12)
        lock = harness.load_yaml(self.path("bench", "bench", "locks", "file",
                                             "conda-lock.yml"))
        self.assertEqual(len(lock["package"]), 12)
        fmts = {p["url"].rsplit(".", 1)[1] for p in lock["package"]}
        self.assertTrue(fmts <= {"conda", "bz2"})


class ReferenceInstallTest(harness.TempDirTestCase):
    """The expected recipes agree with the archives, as installed by a Python reference."""

    def _install_and_check(self, lock_name, prefix):
        fx = harness.fixtures()
        reference_install(fx, lock_name, prefix)
        self.assertEqual(harness.check_prefix(prefix, fx.expected(lock_name)), [])
        return fx

    def test_every_lock_short_prefix(self):
        for lock in harness.fixtures().lock_names():
            with self.subTest(lock=lock):
                self._install_and_check(lock, self.path(lock.replace(".", "_")))

    def test_long_prefix_and_entry_point_runs(self):
        prefix = self.path("long", "x" * 60, "y" * 60, "env")
        self.assertGreater(len(prefix), 127 - len("#!/bin/python3.11"))
        self._install_and_check("conda-lock.yml", prefix)
        with open(os.path.join(prefix, "bin", "mat-config"), "rb") as fh:
            self.assertTrue(fh.read().startswith(b"#!/usr/bin/env python3.11\n"))
        with open(os.path.join(prefix, "bin", "mypkg-cli"), "rb") as fh:
            self.assertTrue(fh.read().startswith(b"#!/bin/sh\n"))
        for cmd, want in (("mypkg-cli", "hello from mypkg"), ("otherpy-run", "hello from otherpy")):
            out = subprocess.run(
                ["/usr/bin/python3", os.path.join(prefix, "bin", cmd)],
                env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1",
                     "PYTHONPATH": os.path.join(prefix, "lib/python3.11/site-packages")},
                stdout=subprocess.PIPE, text=True, check=True).stdout
            self.assertEqual(out.strip(), want)

    def test_prefix_with_space(self):
        self._install_and_check("pixi.lock", self.path("with space", "env"))

    def test_check_prefix_reports_differences(self):
        prefix = self.path("env")
        fx = self._install_and_check("conda-lock.yml", prefix)
        with open(os.path.join(prefix, "lib/pkgconfig/libmat.pc"), "ab") as fh:
            fh.write(b"x")
        os.chmod(os.path.join(prefix, "bin/matrun"), 0o644)
        os.unlink(os.path.join(prefix, "lib/libmat.so"))
        os.symlink("wrong", os.path.join(prefix, "lib/libmat.so"))
        os.remove(os.path.join(prefix, "include/mat.h"))
        open(os.path.join(prefix, "stray.txt"), "w").close()
        os.makedirs(os.path.join(prefix, "lib/python3.11/site-packages/mypkg/__pycache__"))
        os.makedirs(os.path.join(prefix, "conda-meta"))
        diffs = harness.check_prefix(prefix, fx.expected("conda-lock.yml"))
        joined = "\n".join(diffs)
        for s in ("lib/pkgconfig/libmat.pc: content", "bin/matrun: mode", "lib/libmat.so: symlink",
                  "missing: include/mat.h", "extra: stray.txt"):
            self.assertIn(s, joined)
        self.assertEqual(len(diffs), 5, joined)
        # Unreplaced binary placeholder is caught.
        with open(os.path.join(prefix, "lib/libmat.so.1.2"), "wb") as fh:
            fh.write(base64.b64decode(fx.expected("conda-lock.yml")["paths"]
                                      ["lib/libmat.so.1.2"]["data_b64"]))
        self.assertIn("lib/libmat.so.1.2: content",
                      "\n".join(harness.check_prefix(prefix, fx.expected("conda-lock.yml"))))


class ServerTest(harness.TempDirTestCase):
    def test_http_server_serves_counts_and_hooks(self):
        fx = harness.fixtures()
        pkg = fx.manifest["packages"][0]
        rel = "/channel/" + pkg["subdir"] + "/" + pkg["url"].rsplit("/", 1)[1]
        with harness.HttpServer(fx.root) as srv:
            data = urllib.request.urlopen(srv.url + rel).read()
            self.assertEqual(hashlib.sha256(data).hexdigest(), pkg["sha256"])
            self.assertEqual(srv.count(rel), 1)
            srv.hooks[rel] = 500
            with self.assertRaises(urllib.error.HTTPError) as cm:
                urllib.request.urlopen(srv.url + rel)
            self.assertEqual(cm.exception.code, 500)
            with self.assertRaises(urllib.error.HTTPError) as cm:
                urllib.request.urlopen(srv.url + "/channel/linux-64/nope.conda")
            self.assertEqual(cm.exception.code, 404)
            self.assertEqual(srv.count(), 3)

    def test_nginx_https_http2(self):
        if not shutil.which("curl"):
            self.skipTest("curl not installed")
        fx = harness.fixtures()
        pkg = fx.manifest["packages"][0]
        rel = "/channel/" + pkg["subdir"] + "/" + pkg["url"].rsplit("/", 1)[1]
        with harness.Nginx(fx.root) as ng:
            out = self.path("dl")
            cp = subprocess.run(["curl", "--cacert", ng.ca_file, "--http2", "-sv", "-o", out,
                                 ng.url + rel], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=harness.clean_env())
            self.assertEqual(cp.returncode, 0, cp.stderr)
            self.assertIn("HTTP/2 200", cp.stderr)
            with open(out, "rb") as fh:
                self.assertEqual(hashlib.sha256(fh.read()).hexdigest(), pkg["sha256"])
            # localhost name works too (SAN DNS:localhost)
            cp = subprocess.run(["curl", "--cacert", ng.ca_file, "-sf", "-o", "/dev/null",
                                 f"https://localhost:{ng.port}{rel}"], env=harness.clean_env())
            self.assertEqual(cp.returncode, 0)
            # Without the CA: certificate problem (curl exit 60).
            cp = subprocess.run(["curl", "-s", "-o", "/dev/null", ng.url + rel],
                                env=harness.clean_env())
            self.assertEqual(cp.returncode, 60)
            lines = ng.log_lines()
            self.assertTrue(any(rel in line and line.endswith("200 HTTP/2.0") for line in lines),
                            lines)


if __name__ == "__main__":
    harness.main()
