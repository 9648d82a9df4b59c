#!/usr/bin/python3
"""Messages (issue 11 defect 14): every echoed input is capped, and every hint names a real
command or flag.

- A lock with a 20 MB URL printed 63 MB of stderr: every value from a lock, a package or a
  server is echoed through printable()/shown_url() (bounded, escaped), and every printed message
  through clip_message() (materializer/base/text.h). Each case below puts a 20 MB (or 2 MB)
  value where a message echoes it, and stderr must stay under 64 KiB.
- Five hints suggested a `--refresh` flag that does not exist: every `--flag` in a string
  literal of the sources (materializer/, fetch/, cache/) must be a flag of `materializer` (in
  some subcommand's --help), every `materializer <cmd> [<sub>] [--flag...]` a real command with
  those flags; the few flags that name another tool's options (pip's requirements-file options,
  `conda list --explicit --md5`, `pip-compile --generate-hashes`) are listed below with the file
  allowed to name them. The hints of errors triggered for real are checked the same way.
"""

import glob
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import harness  # noqa: E402

SOURCE = harness.SOURCE_DIR
STDERR_BOUND = 64 * 1024

# Flags of other tools that messages may quote, and the only files allowed to quote them.
FOREIGN = {
    # pip's requirements-file options (what the parser accepts or refuses, by name)
    **{f: {"materializer/lock_requirements.cc"} for f in (
        "--hash", "--requirement", "--constraint", "--editable", "--no-binary",
        "--only-binary", "--pre", "--prefer-binary", "--require-hashes", "--trusted-host",
        "--use-feature", "--global-option", "--install-option", "--config-settings",
        "--no-index")},
    "--explicit": {"materializer/lock_explicit.cc"},        # conda list --explicit --md5
    "--md5": {"materializer/lock_explicit.cc"},
    "--generate-hashes": {"materializer/lock_requirements.cc",  # pip-compile
                          "materializer/pypi_index.cc"},
}

LITERAL_OR_COMMENT = re.compile(r'"(?:[^"\\\n]|\\.)*"|//[^\n]*|\'(?:[^\'\\\n]|\\.)*\'')
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
COMMAND = re.compile(r"materializer((?: [a-z]+)+)((?: --?[a-z][a-z0-9-]*(?: [A-Z]+)?)*)")


def source_literals():
    """(file, text) of every string literal in the non-test C++ sources (comments skipped)."""
    files = []
    for d in ("materializer", "fetch", "cache"):
        files += glob.glob(os.path.join(SOURCE, d, "**", "*.cc"), recursive=True)
        files += glob.glob(os.path.join(SOURCE, d, "**", "*.h"), recursive=True)
    for path in sorted(files):
        rel = os.path.relpath(path, SOURCE)
        if rel.endswith("_test.cc") or "test_" in os.path.basename(rel):
            continue
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        for m in LITERAL_OR_COMMENT.finditer(text):
            tok = m.group(0)
            if tok.startswith('"'):
                yield rel, tok[1:-1]


class MessagesTest(harness.MaterializerTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.help = {}
        for cmd in ([], ["install"], ["prewarm"], ["cache"], ["cache", "stats"],
                    ["cache", "verify"], ["cache", "clean"]):
            cp = harness.run_materializer(cls.binary, cmd + ["--help"])
            assert cp.returncode == 0, (cmd, cp.stderr)
            cls.help[" ".join(cmd)] = set(FLAG.findall(cp.stdout))
        cls.all_flags = set().union(*cls.help.values())

    def check_text(self, where, text):
        """Problems with the flags and commands named in `text` (a literal or a message)."""
        problems = []
        for flag in FLAG.findall(text):
            if flag in self.all_flags:
                continue
            if where in FOREIGN.get(flag, ()):
                continue
            problems.append(f"{where}: '{flag}' is not a materializer flag: {text[:160]!r}")
        for m in COMMAND.finditer(text):
            words = m.group(1).split()
            # "materializer cache clean --all": the longest known command prefix.
            cmd = None
            for n in range(len(words), 0, -1):
                if " ".join(words[:n]) in self.help:
                    cmd = " ".join(words[:n])
                    break
            if cmd is None:
                if words[0] in ("is", "install", "prewarm", "cache", "ran", "runs", "will",
                                "writes", "wrote", "uses", "turns", "keeps"):
                    if words[0] in ("install", "prewarm", "cache"):
                        problems.append(f"{where}: unknown command 'materializer "
                                        f"{' '.join(words)}': {text[:160]!r}")
                continue
            for flag in FLAG.findall(m.group(2)):
                if flag not in self.help[cmd] and flag not in self.help[""]:
                    problems.append(f"{where}: 'materializer {cmd}' has no {flag}: "
                                    f"{text[:160]!r}")
        return problems

    def test_every_flag_and_command_in_the_sources_exists(self):
        problems, seen = [], 0
        for rel, literal in source_literals():
            if "--" in literal or "materializer " in literal:
                seen += 1
                problems += self.check_text(rel, literal)
        self.assertGreater(seen, 50, "the source scan found almost nothing: broken regex?")
        self.assertEqual(problems, [], "\n".join(problems))
        # The check itself: a hint naming a flag that does not exist is found.
        self.assertTrue(self.check_text("x.cc", "sha256 mismatch; retry with --refresh"))
        self.assertTrue(self.check_text("x.cc", "run `materializer cache clean --repair`"))
        self.assertFalse(self.check_text("x.cc", "run `materializer cache clean --all`"))

    def test_hints_of_triggered_errors_name_real_flags(self):
        fx = self.fx
        cases = []
        with harness.HttpServer(fx.root) as srv:
            lock = fx.render_lock("conda-lock.yml", srv.url + "/channel", self.tmp)
            # selection that keeps nothing (hint: --platform)
            cases.append(self.install(lock, self.path("e1"), self.path("c"),
                                      "--platform", "osx-arm64"))
            # explicit lock for another platform (hint: --platform X)
            ex = fx.render_lock("explicit.txt", srv.url + "/channel", self.tmp)
            cases.append(self.install(ex, self.path("e2"), self.path("c"),
                                      "--platform", "linux-aarch64"))
            # pixi environment that does not exist (hint: --environment)
            px = fx.render_lock("pixi.lock", srv.url + "/channel", self.tmp)
            cases.append(self.install(px, self.path("e3"), self.path("c"), "-e", "nope"))
            # a hash mismatch (per-package failure with a fix: line)
            with open(lock, encoding="utf-8") as fh:
                text = fh.read()
            sha = re.search(r"sha256: ([0-9a-f]{64})", text).group(1)
            bad = self.path("bad", "conda-lock.yml")
            os.makedirs(os.path.dirname(bad))
            with open(bad, "w", encoding="utf-8") as fh:
                fh.write(text.replace(sha, "0" * 64, 1))
            cases.append(self.install(bad, self.path("e4"), self.path("c2")))
            # a file:// URL outside the allowed folders (hint: --allow-file-urls)
            flock = self.path("f", "conda-lock.yml")
            os.makedirs(os.path.dirname(flock))
            with open(os.path.join(fx.root, fx.manifest["locks"]["conda-lock.yml"]["file"]),
                      encoding="utf-8") as fh:
                ftext = fh.read()
            with open(flock, "w", encoding="utf-8") as fh:
                fh.write(ftext)
            cases.append(self.install(flock, self.path("e5"), self.path("c")))
            # a lock larger than --max-lock-size (hint: --max-lock-size)
            cases.append(self.install(lock, self.path("e6"), self.path("c"),
                                      "--max-lock-size", "100"))
        wfx = harness.wheel_fixtures()
        with harness.HttpServer(wfx.root) as srv:
            pl = wfx.render_lock("pylock.toml", srv.url, self.tmp)
            # wheels without any interpreter (hint: --python / --python-version)
            cases.append(self.install(pl, self.path("e7"), self.path("c")))
        problems, hints = [], 0
        for cp in cases:
            self.assertNotEqual(cp.returncode, 0, harness.describe(cp))
            hints += len(FLAG.findall(cp.stderr))
            problems += self.check_text("stderr", cp.stderr)
        self.assertGreaterEqual(hints, 6, "the triggered errors name almost no flag")
        self.assertEqual(problems, [], "\n".join(problems))

    def test_odd_credentials_are_redacted_in_messages(self):
        """A raw '@' in the password (redaction must run to the LAST '@'), a one-character
        conda token and a one-character token parameter: none in stderr or the report."""
        lock = self.path("sec", "explicit.txt")
        os.makedirs(os.path.dirname(lock))
        with open(lock, "w", encoding="utf-8") as fh:
            fh.write("@EXPLICIT\nhttps://us:p@ss@127.0.0.1:9/t/Q/linux-64/a-1-0.conda"
                     "?token=Z#" + "0" * 64 + "\n")
        report = self.path("sec", "r.json")
        cp = self.install(lock, self.path("env"), self.path("cache"), "--offline",
                          "--report", report)
        self.assertExit(cp, 1)
        self.assertIn("https://***@127.0.0.1:9/t/***/linux-64/a-1-0.conda?token=***", cp.stderr)
        for secret in ("p@ss", "ss@", "us:", "/t/Q/", "token=Z"):
            self.assertNotInOutput(cp, secret, report)

    def test_huge_values_in_a_lock_give_bounded_stderr(self):
        big = "x" * 20_000_000
        mid = "y" * 2_000_000
        z64 = "0" * 64
        locks = {
            # the case: a 20 MB URL
            "explicit.txt": "@EXPLICIT\nhttps://h/linux-64/" + big + ".conda#" + "0" * 32 + "\n",
            "frag/explicit.txt": "@EXPLICIT\nhttps://h/linux-64/a-1-0.conda#" + mid + "\n",
            "platform/explicit.txt": "# platform: " + mid + "\n@EXPLICIT\n"
                                     "https://h/linux-64/a-1-0.conda#" + "0" * 32 + "\n",
            "conda-lock.yml": "version: 1\nmetadata:\n  platforms: [linux-64]\npackage:\n"
                              "- name: a\n  version: '1'\n  manager: conda\n"
                              "  platform: linux-64\n  dependencies: {}\n"
                              "  url: https://h/linux-64/a-1-0.conda\n  hash:\n"
                              "    sha256: " + mid + "\n",
            "manager/conda-lock.yml": "version: 1\nmetadata:\n  platforms: [linux-64]\n"
                                      "package:\n- name: a\n  version: '1'\n  manager: " + mid
                                      + "\n  platform: linux-64\n"
                                      "  url: https://h/linux-64/a-1-0.conda\n  hash:\n"
                                      "    sha256: " + z64 + "\n",
            "pixi.lock": "version: 6\nenvironments:\n  default:\n    channels: []\n"
                         "    packages:\n      linux-64:\n      - conda: https://h/" + mid
                         + "\npackages: []\n",
            "pylock.toml": 'lock-version = "' + mid + '"\n',
            "url/pylock.toml": 'lock-version = "1.0"\n[[packages]]\nname = "a"\n'
                               'version = "1"\nwheels = [{ url = "https://h/' + big
                               + '.whl", hashes = { sha256 = "' + z64 + '" } }]\n',
            "requirements.txt": "a==1 --hash=sha256:" + mid + "\n",
            "name/requirements.txt": mid + "\n",
            "index/requirements.txt": "-i https://127.0.0.1:9/" + mid + "\n"
                                      "a==1 --hash=sha256:" + z64 + "\n",
            "include/requirements.txt": "-r " + mid + "\n",
            "uv.lock": 'version = 1\n[[package]]\nname = "' + mid + '"\nversion = "1"\n',
        }
        for rel, text in locks.items():
            with self.subTest(lock=rel):
                path = self.path("locks", rel)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w", encoding="utf-8") as fh:
                    fh.write(text)
                report = self.path("r.json")
                cp = self.install(path, self.path("env"), self.path("cache"),
                                  "--max-lock-size", "64MiB", "--python-version", "3.11",
                                  "--offline", "--report", report)
                self.assertNotEqual(cp.returncode, 0, harness.describe(cp))
                self.assertLess(len(cp.stderr.encode()), STDERR_BOUND,
                                f"{len(cp.stderr)} bytes of stderr: {cp.stderr[:300]!r}")
                self.assertIn("error:", cp.stderr)
                if os.path.exists(report):
                    self.assertLess(os.path.getsize(report), STDERR_BOUND)
                    os.unlink(report)
                self.assertPrefixUntouched(self.path("env"))


if __name__ == "__main__":
    harness.main()
