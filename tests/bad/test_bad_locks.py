#!/usr/bin/python3
"""Hostile locks and documents (issue 11, defects 8-12): each is refused with its exit code and
a message naming the file, line or limit, before anything is read, requested or written."""

import hashlib
import io
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import harness  # noqa: E402

gf = harness.gen_fixtures
DEEP = 100000


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb" if isinstance(data, bytes) else "w") as fh:
        fh.write(data)
    return path


def conda_with_index(stem, index_json):
    """A .conda whose info/index.json is `index_json` (bytes), with one payload file."""
    info = [("info/index.json", "file", index_json, 0o644, None),
            ("info/paths.json", "file",
             gf.jdump({"paths": [{"_path": "share/x.txt", "path_type": "hardlink",
                                  "sha256": sha256(b"x\n"), "size_in_bytes": 2}],
                       "paths_version": 1}), 0o644, None)]
    payload = [("share/x.txt", "file", b"x\n", 0o644, None)]
    cctx = gf.zstandard.ZstdCompressor(level=3, write_checksum=True)
    return gf.write_zip([
        ("metadata.json", b'{"conda_pkg_format_version": 2}'),
        (f"pkg-{stem}.tar.zst", cctx.compress(gf.tar_bytes(payload, gf.tarfile.PAX_FORMAT))),
        (f"info-{stem}.tar.zst", cctx.compress(gf.tar_bytes(info, gf.tarfile.PAX_FORMAT)))])


class BadLocksTest(harness.MaterializerTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.srv = harness.HttpServer(cls.fx.root).start()
        cls.base = cls.srv.url + "/channel"

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def setUp(self):
        super().setUp()
        self.srv.reset_counts()

    def good_lock(self, name="conda-lock.yml"):
        return self.fx.render_lock(name, self.base, self.tmp)

    def assertRefusedBeforeAnything(self, cp, code=2):
        self.assertExit(cp, code)
        self.assertPrefixUntouched(self.path("env"))
        self.assertEqual(self.srv.count(), 0, f"requests made: {self.srv.requests}")
        self.assertEqual(harness.cache_archives(self.path("cache")), [])

    # --- 8: nesting and size of parsed documents ---------------------------------------

    def test_index_json_nested_100k_deep_fails_quickly_and_clearly(self):
        stem = "deep-1.0-0"
        blob = conda_with_index(stem, b'{"name": ' + b"[" * DEEP + b"]" * DEEP + b"}")
        pkg = write(self.path("pkgs", "linux-64", stem + ".conda"), blob)
        lock = write(self.path("explicit.txt"),
                     f"# platform: linux-64\n@EXPLICIT\nfile://{pkg}#sha256:{sha256(blob)}\n")
        t0 = time.monotonic()
        cp = self.install(lock, self.path("env"), self.path("cache"))
        self.assertLess(time.monotonic() - t0, 60)
        self.assertExit(cp, 1)
        self.assertIn("info/index.json: JSON nested deeper than 64 levels (the limit)", cp.stderr)
        self.assertIn("deep-1.0", cp.stderr)
        self.assertFalse(os.path.exists(self.path("env", "conda-meta", "deep-1.0-0.json")))
        self.assertTrue(os.path.exists(self.path("env", "conda-meta",
                                                 ".materializer-incomplete")))

    def test_lock_nested_100k_deep_is_refused(self):
        cases = {
            "conda-lock.yml": "version: 1\npackage:\n- name: " + "[" * DEEP + "]" * DEEP + "\n",
            "pixi.lock": "version: 6\nenvironments:\n" + "".join(
                " " * i + f"k{i}:\n" for i in range(1, 200)),
            "pylock.toml": 'lock-version = "1.0"\n[packages' + ".x" * DEEP + "]\nname = 'a'\n",
            "uv.lock": "version = 1\nrequires-python = '>=3.8'\nx = " + "[" * DEEP + "]" * DEEP
                       + "\n",
        }
        for name, text in cases.items():
            with self.subTest(lock=name):
                lock = write(self.path(name), text)
                t0 = time.monotonic()
                cp = self.install(lock, self.path("env"), self.path("cache"))
                self.assertLess(time.monotonic() - t0, 30)
                self.assertRefusedBeforeAnything(cp)
                self.assertIn(name, cp.stderr)
                self.assertIn("nested deeper than 64 levels (the limit)", cp.stderr)

    def test_lock_larger_than_max_lock_size_is_refused(self):
        lock = self.good_lock()
        size = os.path.getsize(lock)
        cp = self.install(lock, self.path("env"), self.path("cache"), "--max-lock-size", "1KiB")
        self.assertRefusedBeforeAnything(cp)
        self.assertIn(f"lock file of {size} bytes is larger than the limit of 1024 bytes",
                      cp.stderr)
        self.assertIn("--max-lock-size", cp.stderr)
        # From a pipe, the size is unknown up front: reading stops at the limit.
        fifo = self.path("lock.fifo")
        os.mkfifo(fifo)
        import threading
        def feed():
            try:
                write(fifo, "#" * (1 << 20))
            except BrokenPipeError:
                pass  # the reader stopped at the limit, as it should
        writer = threading.Thread(target=feed, daemon=True)
        writer.start()
        cp = self.install(fifo, self.path("env"), self.path("cache"), "--max-lock-size", "1KiB")
        self.assertRefusedBeforeAnything(cp)
        self.assertIn("lock.fifo: lock file is larger than the limit of 1024 bytes", cp.stderr)
        cp = self.install(lock, self.path("env"), self.path("cache"), "--max-lock-size",
                          str(size))
        self.assertExit(cp, 0)

    # --- 9: one package, two files ------------------------------------------------------

    def _lock_lines(self, name):
        with open(self.good_lock(name), encoding="utf-8") as fh:
            return fh.read()

    def test_same_package_twice_with_different_hashes_names_both_lines(self):
        text = self._lock_lines("explicit.txt")
        lines = text.splitlines()
        i = next(k for k, l in enumerate(lines) if "/libmat-" in l)
        url = lines[i].split("#")[0]
        lines.append(url + "#sha256:" + "0" * 64)  # the same file name, another hash
        lock = write(self.path("explicit.txt"), "\n".join(lines) + "\n")
        cp = self.install(lock, self.path("env"), self.path("cache"))
        self.assertRefusedBeforeAnything(cp)
        self.assertIn(f"explicit.txt:{len(lines)}: package 'libmat' is selected twice",
                      cp.stderr)
        self.assertIn(f"line {i + 1} (", cp.stderr)
        self.assertIn(f"line {len(lines)} (", cp.stderr)

    def test_same_package_twice_as_other_versions_in_conda_lock(self):
        text = self._lock_lines("conda-lock.yml")
        start = text.index("- name: libmat\n")
        end = text.index("- name: ", start + 1)
        entry = text[start:end].replace("1.2.0-h1a2b3c4_0", "1.1.0-h0_0").replace(
            'version: "1.2.0"', 'version: "1.1.0"')
        lock = write(self.path("conda-lock.yml"), text + entry)
        cp = self.install(lock, self.path("env"), self.path("cache"))
        self.assertRefusedBeforeAnything(cp)
        line_a = text[:start].count("\n") + 1
        line_b = text.count("\n") + 1
        self.assertIn(f"conda-lock.yml:{line_b}: package 'libmat' is selected twice", cp.stderr)
        self.assertIn(f"line {line_a} (", cp.stderr)

    def test_identical_repeat_is_harmless(self):
        text = self._lock_lines("explicit.txt")
        last = text.rstrip("\n").splitlines()[-1]
        lock = write(self.path("explicit.txt"), text + last + "\n")
        cp = self.install(lock, self.path("env"), self.path("cache"))
        self.assertExit(cp, 0)
        self.assertPrefixMatches(self.path("env"), "explicit.txt")

    # --- 10: names validated at parse time; nothing written can throw ------------------

    def test_invalid_utf8_name_is_refused_at_parse_time(self):
        text = self._lock_lines("conda-lock.yml").encode()
        i = text.index(b"- name: libmat\n")
        line = text[:i].count(b"\n") + 1
        lock = write(self.path("conda-lock.yml"),
                     text.replace(b"- name: libmat\n", b"- name: libmat\xff\n", 1))
        report = self.path("r.json")
        cp = self.install(lock, self.path("env"), self.path("cache"), "--report", report)
        self.assertRefusedBeforeAnything(cp)
        self.assertIn(f"conda-lock.yml:{line}: package 'libmat\\xff': field 'name' is not valid "
                      "UTF-8", cp.stderr)
        self.assertFalse(harness.read_json(report)["ok"])

    def test_control_characters_in_a_url_are_refused(self):
        text = self._lock_lines("explicit.txt")
        lock = write(self.path("explicit.txt"), text.replace("/libmat-", "/lib\x1b[2Jmat-", 1))
        cp = self.install(lock, self.path("env"), self.path("cache"))
        self.assertRefusedBeforeAnything(cp)
        self.assertIn("explicit.txt:", cp.stderr)
        self.assertIn("contains a control character: 'lib\\x1b[2Jmat", cp.stderr)
        self.assertNotIn("\x1b", cp.stderr)

    def test_report_stamp_and_trace_are_written_for_non_utf8_names(self):
        # A prefix whose path is not UTF-8 reaches the report, the trace and the records:
        # every writer must replace the bytes, never throw and lose the report and the stamp.
        lock = self.good_lock()
        env = os.fsencode(self.tmp) + b"/env\xff"
        report, trace = self.path("r.json"), self.path("t.json")
        cp = harness.run_materializer(
            self.binary, [b"install", lock.encode(), b"--prefix", env, b"--cache-dir",
                          self.path("cache").encode(), b"--report", report.encode(),
                          b"--trace", trace.encode()])
        self.assertEqual(cp.returncode, 0, harness.describe(cp))
        rep = harness.read_json(report)
        self.assertTrue(rep["ok"])
        self.assertIn("\ufffd", rep["prefix"])
        json.loads(harness.read_text(trace))
        meta = env + b"/conda-meta"
        self.assertTrue(os.path.exists(meta + b"/.materializer-stamp"))
        self.assertFalse(os.path.exists(meta + b"/.materializer-incomplete"))

    # --- 11: file:// only where allowed ------------------------------------------------

    def _secret(self):
        secret = os.urandom(64)
        path = write(os.path.join(self.tmp, "elsewhere", "secret.whl"), secret)
        return path, sha256(secret)

    def test_file_url_outside_the_lock_folder_is_never_read(self):
        path, digest = self._secret()
        pylock = ('lock-version = "1.0"\n[[packages]]\nname = "secret"\nversion = "1.0"\n'
                  f'wheels = [{{ url = "file://{path}", hashes = {{ sha256 = "{"1" * 64}" }} }}]\n'
                  '[[packages]]\nname = "remote"\nversion = "1.0"\n'
                  f'wheels = [{{ url = "{self.srv.url}/remote-1.0-py3-none-any.whl", '
                  f'hashes = {{ sha256 = "{"2" * 64}" }} }}]\n')
        lock = write(self.path("lockdir", "pylock.toml"), pylock)
        os.chmod(path, 0)  # even root must not read it (root ignores modes: the sha says it)
        cp = self.install(lock, self.path("env"), self.path("cache"), "--python-version", "3.11")
        self.assertRefusedBeforeAnything(cp)
        self.assertIn(f"file://{path}", cp.stderr)
        self.assertIn("outside the allowed folders", cp.stderr)
        self.assertIn("--allow-file-urls", cp.stderr)
        self.assertNotIn(digest, cp.stderr + cp.stdout)

    def test_etc_shadow_and_symlinks_and_dotdot_are_refused(self):
        os.makedirs(self.path("lockdir"))
        os.symlink("/etc", self.path("lockdir", "etc"))
        for url in ("file:///etc/shadow", f"file://{self.tmp}/lockdir/etc/shadow",
                    f"file://{self.tmp}/lockdir/../elsewhere/x.conda",
                    f"file://{self.tmp}/lockdir/%2E%2E/elsewhere/x.conda",
                    f"FILE://{self.tmp}/elsewhere/x.conda", "file:/etc/shadow",
                    "file://otherhost/etc/shadow"):
            with self.subTest(url=url):
                lock = write(self.path("lockdir", "explicit.txt"),
                             f"# platform: linux-64\n@EXPLICIT\n{url}#{'0' * 32}\n")
                cp = self.install(lock, self.path("env"), self.path("cache"))
                self.assertRefusedBeforeAnything(cp)
                self.assertIn("explicit.txt:3", cp.stderr)

    def test_find_links_and_index_outside_are_refused_before_any_request(self):
        os.makedirs(self.path("elsewhere"))
        req = write(self.path("lockdir", "requirements.txt"),
                    f"--find-links {self.tmp}/elsewhere\n"
                    f"--extra-index-url {self.srv.url}/simple\n"
                    "idna==3.7 --hash=sha256:" + "1" * 64 + "\n")
        cp = self.install(req, self.path("env"), self.path("cache"), "--python-version", "3.11")
        self.assertRefusedBeforeAnything(cp)
        self.assertIn("--find-links", cp.stderr)
        req = write(self.path("lockdir", "requirements.txt"),
                    "idna==3.7 --hash=sha256:" + "1" * 64 + "\n")
        cp = self.install(req, self.path("env"), self.path("cache"), "--python-version", "3.11",
                          "--index-url", f"file://{self.tmp}/elsewhere")
        self.assertRefusedBeforeAnything(cp)
        self.assertIn("--index-url", cp.stderr)

    def test_requirements_include_outside_is_not_read(self):
        path, _ = self._secret()
        write(path, "first-line-of-the-secret\n")
        req = write(self.path("lockdir", "requirements.txt"), f"-r {path}\n")
        cp = self.install(req, self.path("env"), self.path("cache"))
        self.assertRefusedBeforeAnything(cp)
        self.assertIn("requirements.txt:1: -r", cp.stderr)
        self.assertNotIn("first-line-of-the-secret", cp.stderr)

    def test_allow_file_urls_allows_that_folder_only(self):
        lock = os.path.join(self.fx.root, "locks", "file", "conda-lock.yml")
        cp = self.install(lock, self.path("env"), self.path("cache"))
        self.assertRefusedBeforeAnything(cp)
        cp = self.install(lock, self.path("env"), self.path("cache"), "--allow-file-urls",
                          self.fx.channel)
        self.assertExit(cp, 0)
        self.assertPrefixMatches(self.path("env"), "conda-lock.yml")
        cp = self.install(lock, self.path("env2"), self.path("cache"), "--allow-file-urls",
                          self.path("no-such-dir"))
        self.assertExit(cp, 2)
        self.assertIn("--allow-file-urls", cp.stderr)

    def test_lock_from_a_pipe_has_no_folder_of_its_own(self):
        text = self._lock_lines("explicit.txt")
        pkg_dir = self.path("pkgs")
        shutil.copytree(self.fx.channel, pkg_dir)
        text = text.replace(self.base, "file://" + pkg_dir)
        fifo = self.path("lock.fifo")
        os.mkfifo(fifo)
        import threading
        threading.Thread(target=lambda: write(fifo, text), daemon=True).start()
        cp = self.install(fifo, self.path("env"), self.path("cache"))
        self.assertRefusedBeforeAnything(cp)
        self.assertIn("none: the lock is not a local file", cp.stderr)

    # --- 12: never "environment ready" with nothing installed ---------------------------

    def test_explicit_without_platform_from_a_plain_folder_installs_everything(self):
        text = self._lock_lines("explicit.txt")
        flat = self.path("flat")
        os.makedirs(flat)
        lines = []
        for l in text.splitlines():
            if l.startswith("# platform:"):
                continue
            if l.startswith(self.base):
                url, frag = l.split("#")
                name = url.rsplit("/", 1)[1]
                shutil.copy(os.path.join(self.fx.channel, url[len(self.base) + 1:]), flat)
                l = f"file://{flat}/{name}#{frag}"
            lines.append(l)
        lock = write(self.path("explicit.txt"), "\n".join(lines) + "\n")
        cp = self.install(lock, self.path("env"), self.path("cache"))
        self.assertExit(cp, 0)
        self.assertPrefixMatches(self.path("env"), "explicit.txt")

    def test_nothing_selected_is_an_error_naming_the_platform(self):
        text = self._lock_lines("explicit.txt")
        text = text.replace("# platform: linux-64\n", "").replace("/linux-64/", "/osx-64/")
        text = text.replace("/noarch/", "/osx-64/")
        lock = write(self.path("explicit.txt"), text)
        report = self.path("r.json")
        cp = self.install(lock, self.path("env"), self.path("cache"), "--report", report)
        self.assertRefusedBeforeAnything(cp)
        self.assertIn("0 of its 10 packages are for platform linux-64", cp.stderr)
        self.assertIn("--platform osx-64", cp.stderr)
        self.assertNotIn("environment ready", cp.stderr)
        self.assertFalse(harness.read_json(report)["ok"])

    def test_platform_declared_but_empty_and_empty_locks_are_errors(self):
        text = self._lock_lines("conda-lock.yml").replace("  - linux-64\n",
                                                          "  - linux-64\n  - osx-arm64\n", 1)
        text = text.replace("platform: linux-64", "platform: osx-arm64")
        for name, body, want in (
                ("conda-lock.yml", text, "--platform osx-arm64"),
                ("empty.yml", "version: 1\nmetadata:\n  platforms: [linux-64]\npackage: []\n",
                 "the lock lists no packages"),
                ("pixi.lock", "version: 6\nenvironments:\n  default:\n    packages:\n"
                              "      linux-64: []\npackages: []\n", "lists no packages")):
            with self.subTest(lock=name):
                lock = write(self.path(name), body)
                cp = self.install(lock, self.path("env"), self.path("cache"))
                self.assertRefusedBeforeAnything(cp)
                self.assertIn(want, cp.stderr)
                self.assertNotIn("environment ready", cp.stderr)
        # prewarm as well: never "prewarmed 0 packages".
        cp = self.mat("prewarm", self.path("conda-lock.yml"), "--cache-dir", self.path("cache"))
        self.assertExit(cp, 2)


if __name__ == "__main__":
    harness.main()
