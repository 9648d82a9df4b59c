"""Shared harness for tests/e2e and tests/bad (stdlib + yaml only; Debian /usr/bin/python3).

Each test file is a standalone script run by CTest as

    /usr/bin/python3 tests/e2e/test_x.py --binary /path/to/materializer

with MAT_SOURCE_DIR set. It calls `harness.main()`, which strips --binary and runs unittest.
Fixtures are generated into a temp dir by scripts/gen_fixtures.py; nothing is written into the
source tree.

    fx = harness.fixtures()                    # generated once per process (cached)
    with harness.HttpServer(fx.root) as srv:   # serves DIR; channel at srv.url + "/channel"
        lock = fx.render_lock("conda-lock.yml", srv.url + "/channel", tmpdir)
        cp = harness.run_materializer(harness.BINARY, ["install", lock, "--prefix", p])
        diffs = harness.check_prefix(p, fx.expected("conda-lock.yml"))

Faults: `harness.FaultServer(root)` (tests/fault_server.py) serves a directory with per-path
fault scripts (5xx/429, resets, short bodies, stalls, slow or wrong bytes, HTML pages,
redirects, ranges, a small backlog) and logs every request.

Wheels (scripts/gen_wheels.py): `harness.wheel_fixtures()` / `WheelTestCase` (assertWheelPrefix,
assertImportsAndScripts, assertWheelCache), the pip oracle `pip_install_prefix` / `pip_list` /
`pip_check` (see the note on Debian's --prefix layout there), and HttpServer's PEP 691 content
negotiation (a directory's index.json when Accept asks for application/vnd.pypi.simple.v1+json).
"""

import base64
import hashlib
import http.server
import importlib.util
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("MAT_SOURCE_DIR") or os.path.dirname(HERE)
BINARY = os.environ.get("MAT_BINARY", "")
SKIP_EXIT = 77

sys.path.insert(0, HERE)
import fault_server  # noqa: E402  (tests/fault_server.py)
FaultServer = fault_server.FaultServer  # per-path fault scripts; see tests/fault_server.py

_spec = importlib.util.spec_from_file_location(
    "gen_fixtures", os.path.join(SOURCE_DIR, "scripts", "gen_fixtures.py"))
gen_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen_fixtures)


# ---------------------------------------------------------------------------------------
# Test-runner convention
# ---------------------------------------------------------------------------------------

def main():
    """Strips `--binary PATH` from argv, then runs the calling module's unittest tests."""
    global BINARY
    argv = [sys.argv[0]]
    args = sys.argv[1:]
    i = 0
    while i < len(args):
        if args[i] == "--binary" and i + 1 < len(args):
            BINARY = os.path.abspath(args[i + 1])
            i += 2
        elif args[i].startswith("--binary="):
            BINARY = os.path.abspath(args[i].split("=", 1)[1])
            i += 1
        else:
            argv.append(args[i])
            i += 1
    os.environ["MAT_BINARY"] = BINARY
    runner = None
    if os.environ.get("MAT_LEDGER"):
        subprocess.Popen = _CountingPopen
        runner = unittest.TextTestRunner(resultclass=_LedgerResult, verbosity=2)
    unittest.main(module="__main__", argv=argv, verbosity=2, testRunner=runner)


# ---------------------------------------------------------------------------------------
# The ledger (scripts/reliability_table.py): with MAT_LEDGER=FILE, one JSON line per test
# appended to FILE: the file ("bad.test_x"), the test, its outcome, its subtests and how many
# times it ran the binary. Nothing is recorded without MAT_LEDGER.
# ---------------------------------------------------------------------------------------

_binary_runs = [0]


class _CountingPopen(subprocess.Popen):
    """Counts the processes started from the binary under test, however a test starts them."""

    def __init__(self, args, *rest, **kwargs):
        argv0 = args[0] if isinstance(args, (list, tuple)) and args else args
        if BINARY and isinstance(argv0, (str, bytes, os.PathLike)):
            try:
                if os.path.realpath(os.fsdecode(argv0)) == os.path.realpath(BINARY):
                    _binary_runs[0] += 1
            except (TypeError, ValueError):
                pass
        super().__init__(args, *rest, **kwargs)


class _LedgerResult(unittest.TextTestResult):
    def startTest(self, test):
        _binary_runs[0] = 0
        self._outcome_word, self._subtests, self._t0 = "pass", 0, time.monotonic()
        super().startTest(test)

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        self._subtests += 1
        if err is not None:
            self._outcome_word = "fail"

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._outcome_word = "fail"

    def addError(self, test, err):
        super().addError(test, err)
        self._outcome_word = "error"

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._outcome_word = "skip"

    def stopTest(self, test):
        super().stopTest(test)
        script = os.path.abspath(sys.argv[0])
        group = os.path.basename(os.path.dirname(script))
        line = json.dumps({
            "file": f"{group}.{os.path.splitext(os.path.basename(script))[0]}",
            "test": test.id().split(".", 1)[-1], "outcome": self._outcome_word,
            "subtests": self._subtests, "runs": _binary_runs[0],
            "seconds": round(time.monotonic() - self._t0, 3)})
        with open(os.environ["MAT_LEDGER"], "a", encoding="utf-8") as f:
            f.write(line + "\n")


def skip_process(message):
    """Whole-file skip: CTest sees exit code 77."""
    print(f"SKIP: {message}", flush=True)
    sys.exit(SKIP_EXIT)


def require_binary():
    """For tests that need the materializer binary: fail loudly when it is not there."""
    if not BINARY or not os.access(BINARY, os.X_OK):
        raise AssertionError(f"materializer binary not found or not executable: {BINARY!r} "
                             "(pass --binary PATH)")
    return BINARY


class TempDirTestCase(unittest.TestCase):
    """setUp makes self.tmp (removed afterwards unless MAT_KEEP_TMP=1)."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix=f"mat-{self._testMethodName}-")
        if os.environ.get("MAT_KEEP_TMP") != "1":
            self.addCleanup(shutil.rmtree, self.tmp, True)

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)


# ---------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------

class Fixtures:
    def __init__(self, root):
        self.root = root
        with open(os.path.join(root, "fixtures.json"), encoding="utf-8") as fh:
            self.manifest = json.load(fh)
        self.placeholder = self.manifest["placeholder"]

    @property
    def channel(self):
        return os.path.join(self.root, "channel")

    @property
    def bad_channel(self):
        return os.path.join(self.root, "bad", "channel")

    def lock_names(self):
        return list(self.manifest["locks"])

    def expected(self, lock_name):
        with open(os.path.join(self.root, self.manifest["locks"][lock_name]["expected"]),
                  encoding="utf-8") as fh:
            return json.load(fh)

    def render_lock(self, lock_name, base_url, dest_dir, bad_base_url=None, bad=False):
        """Renders locks/<lock_name>.in (or bad/locks/ with bad=True) into dest_dir, keeping the
        file name (line numbers are unchanged). Returns the path."""
        src = os.path.join(self.root, "bad" if bad else "", "locks", lock_name + ".in")
        mapping = {"@BAD_BASE_URL@": bad_base_url or base_url.rsplit("/channel", 1)[0]
                   + "/bad/channel", "@BASE_URL@": base_url}
        return render_file(src, os.path.join(dest_dir, lock_name), mapping)

    def bad_case(self, name):
        return self.manifest["bad"][name]

    def package(self, name):
        return next(p for p in self.manifest["packages"] if p["name"] == name)


def render(text, mapping):
    return gen_fixtures.render(text, mapping)


def render_file(src, dest, mapping):
    with open(src, encoding="utf-8") as fh:
        text = fh.read()
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    with open(dest, "w", encoding="utf-8") as fh:
        fh.write(render(text, mapping))
    return dest


_GENERATED = {}


def _generated_once(key, generate, wrap):
    """`generate(root)` once per process into a temp dir (removed at exit unless
    MAT_KEEP_TMP=1); returns `wrap(root)`, cached under `key`."""
    if key not in _GENERATED:
        root = tempfile.mkdtemp(prefix=f"mat-{key}-")
        if os.environ.get("MAT_KEEP_TMP") != "1":
            import atexit
            atexit.register(shutil.rmtree, root, True)
        generate(root)
        _GENERATED[key] = wrap(root)
    return _GENERATED[key]


def fixtures():
    """Conda fixtures generated once per process into a temp dir (removed at exit)."""
    return _generated_once("fixtures", gen_fixtures.generate, Fixtures)


# ---------------------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------------------

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class HttpServer:
    """http.server on 127.0.0.1 serving `root` from a background thread.

    hooks: {url_path: int status | callable(handler) -> bool (True = handled)}.
    requests: list of (method, path, status) seen; count(path_suffix) counts them.
    """

    def __init__(self, root, port=0):
        self.root = os.path.abspath(root)
        self.hooks = {}
        self.requests = []
        self.json_served = []   # paths answered with a PEP 691 JSON page (content negotiation)
        self.accept_headers = []  # (path, Accept header) of every GET
        self.lock = threading.Lock()
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def __init__(self, *a, **kw):
                super().__init__(*a, directory=server.root, **kw)

            def log_message(self, *a):
                pass

            def send_response(self, code, message=None):
                with server.lock:
                    server.requests.append((self.command, self.path, code))
                super().send_response(code, message)

            def _hook(self):
                path = self.path.split("?", 1)[0]
                hook = server.hooks.get(path)
                if hook is None:
                    return False
                if callable(hook):
                    return hook(self)
                self.send_response(hook)
                body = f"{hook} from test hook\n".encode()
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
                return True

            def _simple_json(self):
                """PEP 691: a directory holding index.json is served as JSON when the client's
                Accept header asks for application/vnd.pypi.simple.v1+json; else as usual
                (index.html). Directories without index.json never answer JSON."""
                accept = self.headers.get("Accept", "")
                with server.lock:
                    server.accept_headers.append((self.path, accept))
                if SIMPLE_JSON_MIME not in accept:
                    return False
                path = self.translate_path(self.path)
                if not self.path.split("?", 1)[0].endswith("/") or not os.path.isdir(path):
                    return False
                page = os.path.join(path, "index.json")
                if not os.path.isfile(page) or _json_refused(accept):
                    return False
                with open(page, "rb") as fh:
                    body = fh.read()
                # Recorded before the body goes out: the client may check right after reading.
                with server.lock:
                    server.json_served.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", SIMPLE_JSON_MIME)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Vary", "Accept")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
                return True

            def do_GET(self):
                if not self._hook() and not self._simple_json():
                    super().do_GET()

            def do_HEAD(self):
                if not self._hook():
                    super().do_HEAD()

        http.server.ThreadingHTTPServer.request_queue_size = 128  # default 5 drops SYNs under load
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = None

    def start(self):
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.thread is not None:
            self.httpd.shutdown()
            self.thread.join()
            self.thread = None
        self.httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def count(self, suffix=""):
        with self.lock:
            return sum(1 for _, p, _ in self.requests if p.split("?", 1)[0].endswith(suffix))

    def reset_counts(self):
        with self.lock:
            self.requests.clear()


SIMPLE_JSON_MIME = "application/vnd.pypi.simple.v1+json"


def _json_refused(accept):
    """True when the Accept header lists the JSON type with q=0."""
    for part in accept.split(","):
        fields = [f.strip() for f in part.split(";")]
        if fields[0] == SIMPLE_JSON_MIME:
            for f in fields[1:]:
                if f.replace(" ", "") in ("q=0", "q=0.0", "q=0.00", "q=0.000"):
                    return True
    return False


class Nginx:
    """nginx over HTTPS + HTTP/2 on 127.0.0.1:<free port>, serving `root`, with a throwaway CA.

    ca_file: the CA certificate to pass as --ca-bundle. log_lines(): the access log, one
    "<request> <status> <server_protocol>" line per request. Calls skip_process() (exit 77)
    when nginx or openssl is missing.
    """

    def __init__(self, root, limit_rate=None, extra_conf=""):
        self.root = os.path.abspath(root)
        # nginx's limit_rate (e.g. "20m": bytes/s per response), to stand in for a remote server
        self.limit_rate = limit_rate
        # directives added to the server block (e.g. `location = /x { return 302 ...; }`)
        self.extra_conf = extra_conf
        self.nginx = shutil.which("nginx") or ("/usr/sbin/nginx"
                                               if os.access("/usr/sbin/nginx", os.X_OK) else None)
        if not self.nginx:
            skip_process("nginx is not installed")
        if not shutil.which("openssl"):
            skip_process("openssl CLI is not installed")
        self.dir = tempfile.mkdtemp(prefix="mat-nginx-")
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.ca_file = os.path.join(self.dir, "ca.pem")
        self.access_log = os.path.join(self.dir, "access.log")
        self.proc = None

    def _openssl(self, *args):
        subprocess.run(["openssl", *args], cwd=self.dir, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def _make_certs(self):
        d = self.dir
        with open(os.path.join(d, "ca.ext"), "w") as fh:
            fh.write("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
                     "subjectKeyIdentifier=hash\n")
        with open(os.path.join(d, "server.ext"), "w") as fh:
            fh.write("basicConstraints=critical,CA:FALSE\n"
                     "keyUsage=critical,digitalSignature,keyEncipherment\n"
                     "extendedKeyUsage=serverAuth\n"
                     "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                     "authorityKeyIdentifier=keyid\n")
        self._openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
                      "-out", "ca.pem", "-days", "2", "-subj", "/CN=materializer test CA",
                      "-addext", "basicConstraints=critical,CA:TRUE",
                      "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        self._openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
                      "-out", "server.csr", "-subj", "/CN=127.0.0.1")
        self._openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                      "-CAcreateserial", "-out", "server.pem", "-days", "2",
                      "-extfile", "server.ext")

    def _conf(self):
        d = self.dir
        user = "user root root;\n" if os.geteuid() == 0 else ""
        return f"""{user}daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 256; }}
http {{
    types {{ application/octet-stream conda bz2; text/plain txt yml lock; }}
    default_type application/octet-stream;
    log_format proto '$request $status $server_protocol';
    access_log {self.access_log} proto;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    sendfile on;
    keepalive_timeout 30;
    {f"limit_rate {self.limit_rate};" if self.limit_rate else ""}
    server {{
        listen 127.0.0.1:{self.port} ssl http2;
        server_name localhost 127.0.0.1;
        ssl_certificate {d}/server.pem;
        ssl_certificate_key {d}/server.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        root {self.root};
        location / {{ autoindex off; }}
        {self.extra_conf}
    }}
}}
"""

    def start(self):
        self._make_certs()
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as fh:
            fh.write(self._conf())
        self.stderr = open(os.path.join(self.dir, "stderr.log"), "wb")
        self.proc = subprocess.Popen([self.nginx, "-p", self.dir, "-c", conf],
                                     stdout=self.stderr, stderr=self.stderr,
                                     start_new_session=True)
        if not wait_for_port(self.port, 10) or self.proc.poll() is not None:
            self.stop()
            with open(os.path.join(self.dir, "stderr.log"), errors="replace") as fh:
                raise RuntimeError(f"nginx did not start: {fh.read()}")
        return self

    def stop(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGQUIT)
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait()
            self.proc = None
            self.stderr.close()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()

    def log_lines(self):
        # nginx writes access log lines when a request completes; give it a moment.
        time.sleep(0.2)
        try:
            with open(self.access_log, errors="replace") as fh:
                return [line.rstrip("\n") for line in fh]
        except FileNotFoundError:
            return []


# ---------------------------------------------------------------------------------------
# Running the binary
# ---------------------------------------------------------------------------------------

_STRIP_ENV = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
              "all_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE",
              "REQUESTS_CA_BUNDLE", "MATERIALIZER_CACHE_DIR")


def clean_env(extra=None):
    env = {k: v for k, v in os.environ.items() if k not in _STRIP_ENV}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra or {})
    return env


def run_materializer(binary, args, env=None, timeout=300, cwd=None):
    """Runs the binary; env entries are added to a cleaned environment (no proxies, no CA
    overrides, no MATERIALIZER_CACHE_DIR). Returns CompletedProcess with text stdout/stderr."""
    return subprocess.run([binary, *args], env=clean_env(env), cwd=cwd, timeout=timeout,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          errors="replace")


def start_materializer(binary, args, env=None, cwd=None):
    """Popen variant (for concurrent runs); use .communicate()."""
    return subprocess.Popen([binary, *args], env=clean_env(env), cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            errors="replace")


def describe(cp):
    """For assertion messages."""
    return (f"\n--- exit {cp.returncode}\n--- stdout:\n{cp.stdout[-6000:]}\n"
            f"--- stderr:\n{cp.stderr[-6000:]}")


# ---------------------------------------------------------------------------------------
# Prefix checks
# ---------------------------------------------------------------------------------------

def walk(root, exclude_top=("conda-meta",)):
    """{relpath: os.stat_result (lstat)} for everything under root, without following links."""
    out = {}

    def rec(d, rel):
        with os.scandir(d) as it:
            for ent in it:
                r = f"{rel}/{ent.name}" if rel else ent.name
                if not rel and ent.name in exclude_top:
                    continue
                st = os.lstat(ent.path)
                out[r] = st
                if stat.S_ISDIR(st.st_mode):
                    rec(ent.path, r)

    rec(root, "")
    return out


def expected_content(spec, prefix):
    """Bytes a "file" recipe must hold in `prefix`, or None when only sha256 is known."""
    if "data_b64" not in spec:
        return None
    raw = base64.b64decode(spec["data_b64"])
    return gen_fixtures.expected_bytes(raw, spec["placeholder"], spec["file_mode"], prefix)


def _is_pycache(rel):
    parts = rel.split("/")
    return "__pycache__" in parts


def check_entry_point(prefix, rel, spec, data):
    """Differences for a noarch-python entry point script."""
    diffs = []
    python = os.path.join(prefix, spec["python"])
    want = gen_fixtures.entry_point_shebang(python)
    first = data.split(b"\n", 1)[0] + b"\n"
    if not data.startswith(want) and first != f"#!/usr/bin/env {os.path.basename(python)}\n".encode():
        diffs.append(f"{rel}: entry point shebang {first!r}, expected {want!r}")
    text = data.decode("utf-8", "replace")
    if f"from {spec['module']} import" not in text and f"import {spec['module']}" not in text:
        diffs.append(f"{rel}: entry point does not import {spec['module']}")
    if spec["func"] not in text:
        diffs.append(f"{rel}: entry point does not call {spec['func']}")
    return diffs


def implied_dirs(paths):
    """Every parent directory of the given prefix-relative paths."""
    implied = set()
    for p in paths:
        parts = p.split("/")
        for i in range(1, len(parts)):
            implied.add("/".join(parts[:i]))
    return implied


def check_prefix(prefix, expected, ignore_pycache=True):
    """Compares the installed prefix (excluding conda-meta/) with an expected/*.json recipe.
    `expected` is the dict or a path. Returns a list of human-readable differences."""
    if isinstance(expected, str):
        with open(expected, encoding="utf-8") as fh:
            expected = json.load(fh)
    if not os.path.isdir(prefix):
        return [f"prefix {prefix} does not exist"]
    prefix = os.path.abspath(prefix)
    actual = walk(prefix)
    paths = expected["paths"]
    implied = implied_dirs(paths)
    diffs = []
    for rel, spec in sorted(paths.items()):
        st = actual.get(rel)
        full = os.path.join(prefix, rel)
        if st is None:
            diffs.append(f"missing: {rel}")
            continue
        kind = spec["type"]
        if kind == "dir":
            if not stat.S_ISDIR(st.st_mode):
                diffs.append(f"{rel}: expected a directory, found mode {oct(st.st_mode)}")
        elif kind == "symlink":
            if not stat.S_ISLNK(st.st_mode):
                diffs.append(f"{rel}: expected a symlink -> {spec['target']}, "
                             f"found mode {oct(st.st_mode)}")
            elif os.readlink(full) != spec["target"]:
                diffs.append(f"{rel}: symlink target {os.readlink(full)!r}, "
                             f"expected {spec['target']!r}")
        elif kind in ("file", "entry_point"):
            if not stat.S_ISREG(st.st_mode):
                diffs.append(f"{rel}: expected a regular file, found mode {oct(st.st_mode)}")
                continue
            with open(full, "rb") as fh:
                data = fh.read()
            if kind == "entry_point":
                if st.st_mode & 0o111 != 0o111:
                    diffs.append(f"{rel}: entry point not executable "
                                 f"(mode {oct(st.st_mode & 0o777)})")
                diffs += check_entry_point(prefix, rel, spec, data)
                continue
            if st.st_mode & 0o777 != spec["mode"]:
                diffs.append(f"{rel}: mode {oct(st.st_mode & 0o777)}, expected "
                             f"{oct(spec['mode'])}")
            want = expected_content(spec, prefix)
            got_sha = hashlib.sha256(data).hexdigest()
            if want is not None:
                if data != want:
                    diffs.append(f"{rel}: content after prefix replacement "
                                 f"({spec['file_mode']}) differs: got sha256 {got_sha}, "
                                 f"expected {hashlib.sha256(want).hexdigest()}; "
                                 f"{_first_difference(data, want)}")
            elif got_sha != spec["sha256"]:
                diffs.append(f"{rel}: sha256 {got_sha}, expected {spec['sha256']}")
        else:
            diffs.append(f"{rel}: unknown expected type {kind}")
    for rel, st in sorted(actual.items()):
        if rel in paths:
            continue
        if rel in implied and stat.S_ISDIR(st.st_mode):
            continue
        if ignore_pycache and _is_pycache(rel):
            continue
        diffs.append(f"extra: {rel}")
    return diffs


def _first_difference(got, want):
    n = min(len(got), len(want))
    i = next((k for k in range(n) if got[k] != want[k]), n)
    return (f"first difference at byte {i} (sizes {len(got)} vs {len(want)}): "
            f"got {got[max(0, i - 20):i + 40]!r}, expected {want[max(0, i - 20):i + 40]!r}")


def check_records(prefix, expected, archive_sha256=None):
    """Differences between conda-meta/*.json and the expected packages. archive_sha256 maps
    package name -> real sha256 of its archive (defaults to the expected record's)."""
    diffs = []
    meta = os.path.join(prefix, "conda-meta")
    if not os.path.isdir(meta):
        return [f"{meta} does not exist"]
    if os.path.exists(os.path.join(meta, ".materializer-incomplete")):
        diffs.append("conda-meta/.materializer-incomplete exists after a successful install")
    if not os.path.isfile(os.path.join(meta, "history")):
        diffs.append("conda-meta/history is missing")
    wanted = set()
    for pkg in expected["packages"]:
        fname = f"{pkg['name']}-{pkg['version']}-{pkg['build']}.json"
        wanted.add(fname)
        path = os.path.join(meta, fname)
        if not os.path.isfile(path):
            diffs.append(f"missing record conda-meta/{fname}")
            continue
        try:
            with open(path, encoding="utf-8") as fh:
                rec = json.load(fh)
        except ValueError as e:
            diffs.append(f"conda-meta/{fname}: not JSON: {e}")
            continue
        for field in ("name", "version", "build"):
            if rec.get(field) != pkg[field]:
                diffs.append(f"conda-meta/{fname}: {field} {rec.get(field)!r}, "
                             f"expected {pkg[field]!r}")
        real_sha = (archive_sha256 or {}).get(pkg["name"], pkg["sha256"])
        if pkg["key"].startswith("sha256-") and rec.get("sha256") != real_sha:
            diffs.append(f"conda-meta/{fname}: sha256 {rec.get('sha256')!r}, expected {real_sha}")
        elif rec.get("sha256") not in (None, "", real_sha):
            diffs.append(f"conda-meta/{fname}: sha256 {rec.get('sha256')!r} is not the "
                         f"archive's {real_sha}")
        if pkg.get("locked_by") == "md5" and rec.get("md5") != pkg["md5"]:
            diffs.append(f"conda-meta/{fname}: md5 {rec.get('md5')!r}, expected {pkg['md5']}")
        if not str(rec.get("url", "")).endswith(pkg["file_name"]):
            diffs.append(f"conda-meta/{fname}: url {rec.get('url')!r} does not end in "
                         f"{pkg['file_name']}")
        files = rec.get("files")
        if not isinstance(files, list):
            diffs.append(f"conda-meta/{fname}: files is not a list")
            continue
        got = {p for p in files if not _is_pycache(p)}
        required = set(pkg["files"]) - set(pkg["files_optional"])
        dirs = {p for p in pkg["files"] if expected["paths"].get(p, {}).get("type") == "dir"}
        missing = required - got - dirs
        extra = got - set(pkg["files"])
        if missing:
            diffs.append(f"conda-meta/{fname}: files lacks {sorted(missing)}")
        if extra:
            diffs.append(f"conda-meta/{fname}: files has unexpected {sorted(extra)}")
        pd = rec.get("paths_data")
        if not isinstance(pd, dict) or not isinstance(pd.get("paths"), list):
            diffs.append(f"conda-meta/{fname}: paths_data.paths missing")
        else:
            pd_paths = {p.get("_path") for p in pd["paths"] if isinstance(p, dict)}
            entry_points = {p for p in required
                            if expected["paths"].get(p, {}).get("type") == "entry_point"}
            lack = required - pd_paths - dirs - entry_points
            if lack:
                diffs.append(f"conda-meta/{fname}: paths_data lacks {sorted(lack)}")
    return diffs


def check_report(report, n_packages, ok=True):
    """Differences between a --report JSON document and the contract."""
    diffs = []

    def need(obj, key, types, where):
        if not isinstance(obj, dict) or key not in obj:
            diffs.append(f"report: {where}{key} missing")
            return None
        if not isinstance(obj[key], types) or (isinstance(obj[key], bool)
                                               and bool not in _as_tuple(types)):
            diffs.append(f"report: {where}{key} has type {type(obj[key]).__name__}")
            return None
        return obj[key]

    num = (int, float)
    if need(report, "ok", bool, "") is not None and report["ok"] != ok:
        diffs.append(f"report: ok is {report['ok']}, expected {ok}")
    need(report, "exit_code", int, "")
    need(report, "wall_seconds", num, "")
    lock = need(report, "lock", dict, "")
    if lock is not None:
        for k in ("path", "format", "platform"):
            need(lock, k, str, "lock.")
    stages = need(report, "stages", dict, "")
    if stages is not None:
        dl = need(stages, "download", dict, "stages.")
        if dl is not None:
            need(dl, "seconds", num, "stages.download.")
            need(dl, "bytes", int, "stages.download.")
        for s in ("extract", "link"):
            st = need(stages, s, dict, "stages.")
            if st is not None:
                need(st, "seconds", num, f"stages.{s}.")
    pkgs = need(report, "packages", list, "")
    if pkgs is not None:
        if len(pkgs) != n_packages:
            diffs.append(f"report: {len(pkgs)} packages, expected {n_packages}")
        for i, p in enumerate(pkgs):
            w = f"packages[{i}]."
            for k in ("name", "version", "build", "url", "key", "status"):
                need(p, k, str, w)
            need(p, "bytes", int, w)
            need(p, "cache_hit", bool, w)
            for k in ("download_seconds", "extract_seconds", "link_seconds"):
                need(p, k, num, w)
            if isinstance(p, dict) and "error" not in p:
                diffs.append(f"report: {w}error missing")
    return diffs


def _as_tuple(t):
    return t if isinstance(t, tuple) else (t,)


def read_json(path):
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


# ---------------------------------------------------------------------------------------
# Cache inspection
# ---------------------------------------------------------------------------------------

def cache_archives(cache):
    d = os.path.join(cache, "v1", "archives")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def cache_trees(cache):
    d = os.path.join(cache, "v1", "trees")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def cache_tmp(cache):
    d = os.path.join(cache, "v1", "tmp")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def dir_is_empty_or_absent(path):
    return not os.path.exists(path) or (os.path.isdir(path) and not os.listdir(path))


# ---------------------------------------------------------------------------------------
# Reading conda archives (for self-tests and cache checks)
# ---------------------------------------------------------------------------------------

def read_archive(path):
    """{member name: (kind, data, mode, linkname)} of a .conda or .tar.bz2, kind in
    file/symlink/dir/hardlink. Needs python3-zstandard for .conda."""
    import io
    import tarfile
    import zipfile

    def members(tf, out):
        for ti in tf.getmembers():
            if ti.isreg():
                out[ti.name] = ("file", tf.extractfile(ti).read(), ti.mode, None)
            elif ti.issym():
                out[ti.name] = ("symlink", b"", ti.mode, ti.linkname)
            elif ti.isdir():
                out[ti.name] = ("dir", b"", ti.mode, None)
            elif ti.islnk():
                out[ti.name] = ("hardlink", b"", ti.mode, ti.linkname)
        return out

    out = {}
    if path.endswith(".conda"):
        import zstandard
        with zipfile.ZipFile(path) as zf:
            for name in zf.namelist():
                if name.endswith(".tar.zst"):
                    raw = zstandard.ZstdDecompressor().decompressobj().decompress(zf.read(name))
                    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tf:
                        members(tf, out)
    else:
        with tarfile.open(path, mode="r:bz2") as tf:
            members(tf, out)
    return out


def read_text(path):
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def load_yaml(path):
    import yaml
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


# ---------------------------------------------------------------------------------------
# Base class for tests against the binary
# ---------------------------------------------------------------------------------------

class MaterializerTestCase(TempDirTestCase):
    """self.binary, self.fx; helpers to run the binary and check what it produced."""

    @classmethod
    def setUpClass(cls):
        cls.binary = require_binary()
        cls.fx = fixtures()

    def mat(self, *args, env=None, timeout=300):
        return run_materializer(self.binary, [str(a) for a in args], env=env, timeout=timeout)

    def install(self, lock, prefix, cache, *extra, env=None):
        return self.mat("install", lock, "--prefix", prefix, "--cache-dir", cache, *extra,
                        env=env)

    def assertExit(self, cp, code):
        self.assertEqual(cp.returncode, code, f"expected exit {code}" + describe(cp))

    def assertPrefixMatches(self, prefix, lock_name):
        exp = self.fx.expected(lock_name)
        diffs = check_prefix(prefix, exp)
        self.assertEqual(diffs, [], "prefix differs:\n  " + "\n  ".join(diffs))
        diffs = check_records(prefix, exp)
        self.assertEqual(diffs, [], "conda-meta differs:\n  " + "\n  ".join(diffs))
        # no_link files are copies, never hard links into the cache.
        for rel, spec in exp["paths"].items():
            if spec.get("no_link"):
                st = os.lstat(os.path.join(prefix, rel))
                self.assertEqual(st.st_nlink, 1, f"{rel} is no_link but has "
                                                 f"{st.st_nlink} links")
        return exp

    def assertEntryPointsRun(self, prefix, direct=True):
        site = os.path.join(prefix, "lib", "python3.11", "site-packages")
        env = {"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": site}
        for cmd, want in (("mypkg-cli", "hello from mypkg"),
                          ("otherpy-run", "hello from otherpy")):
            script = os.path.join(prefix, "bin", cmd)
            runs = [["/usr/bin/python3", script]] + ([[script]] if direct else [])
            for argv in runs:
                cp = subprocess.run(argv, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, timeout=60)
                self.assertEqual((cp.returncode, cp.stdout.strip()), (0, want),
                                 f"{argv}: {cp.stderr}")

    def assertPrefixUntouched(self, prefix):
        self.assertTrue(dir_is_empty_or_absent(prefix),
                        f"prefix {prefix} was touched: "
                        f"{sorted(walk(prefix, ()))[:20] if os.path.isdir(prefix) else ''}")

    def assertNotInOutput(self, cp, needle, report=None):
        self.assertNotIn(needle, cp.stdout, "stdout leaks " + needle)
        self.assertNotIn(needle, cp.stderr, "stderr leaks " + needle)
        if report and os.path.exists(report):
            self.assertNotIn(needle, read_text(report), "report leaks " + needle)


# ---------------------------------------------------------------------------------------
# Wheels (PyPI): fixtures from scripts/gen_wheels.py, the pip oracle, prefix/RECORD checks
# ---------------------------------------------------------------------------------------

_wspec = importlib.util.spec_from_file_location(
    "gen_wheels", os.path.join(SOURCE_DIR, "scripts", "gen_wheels.py"))
gen_wheels = importlib.util.module_from_spec(_wspec)
_wspec.loader.exec_module(gen_wheels)

SYSTEM_PYTHON = "/usr/bin/python3"


class WheelFixtures:
    """DIR from gen_wheels.generate(): served as a whole, so @BASE_URL@ is the server root
    (srv.url) and wheels are at @BASE_URL@/files/, the index at @BASE_URL@/simple/."""

    def __init__(self, root):
        self.root = root
        self.manifest = read_json(os.path.join(root, "wheels.json"))
        self.site = self.manifest["site"]

    @property
    def files_dir(self):
        return os.path.join(self.root, "files")

    @property
    def file_url(self):
        return "file://" + self.root

    def expected(self):
        return self.manifest["expected"]

    def lock(self, name):
        return self.manifest["locks"][name]

    def bad_case(self, name):
        return self.manifest["bad"][name]

    def dists(self):
        return self.manifest["dists"]

    def render_lock(self, lock_name, base_url, dest_dir, index_url=None, bad=False):
        """Renders locks/<lock_name>.in (bad/locks/ with bad=True) into dest_dir under the same
        name. index_url defaults to base_url + "/simple"."""
        src = os.path.join(self.root, "bad" if bad else "", "locks", lock_name + ".in")
        mapping = {"@INDEX_URL@": index_url or base_url + "/simple", "@BASE_URL@": base_url}
        return render_file(src, os.path.join(dest_dir, lock_name), mapping)

    def install_set_wheels(self):
        """Paths of the wheels pip must install (the INSTALL_SET)."""
        return [os.path.join(self.files_dir, d["file_name"]) for d in self.dists().values()]

    def pins(self):
        return [f"{n}=={d['version']}" for n, d in self.dists().items()]


def wheel_fixtures():
    """Wheel fixtures generated once per process into a temp dir (removed at exit)."""
    return _generated_once("wheels", gen_wheels.generate, WheelFixtures)


# --- the pip oracle ---------------------------------------------------------------------
#
# Debian's pip does not give the upstream layout under --prefix: Debian's sysconfig makes
# `posix_local` the preferred "prefix" scheme outside a venv (P/local/lib/python3.11/
# dist-packages, P/local/bin, data in P/local; DEB_PYTHON_INSTALL_LAYOUT=deb_system gives
# P/lib/python3/dist-packages instead), and inside a venv pip uses the `venv` scheme but puts
# headers into P/include/site/python3.11/NAME. Neither is `lib/python3.11/site-packages` +
# `include/python3.11/NAME`. So the oracle runs Debian's own pip 23 with
# sysconfig.get_preferred_scheme("prefix") returning "posix_prefix" — upstream CPython's scheme,
# i.e. what `pip install --prefix` does on every non-Debian CPython. --prefix also skips the
# PEP 668 EXTERNALLY-MANAGED check (pip only enforces it for the running environment).
# The environment drops every PIP_* variable (this machine sets PIP_FIND_LINKS=/opt/wheels)
# and points PIP_CONFIG_FILE at /dev/null.

_PIP_BOOT = ("import runpy, sysconfig\n"
             "_orig = sysconfig.get_preferred_scheme\n"
             "sysconfig.get_preferred_scheme = "
             "lambda key: 'posix_prefix' if key == 'prefix' else _orig(key)\n"
             "runpy.run_module('pip', run_name='__main__', alter_sys=True)\n")


def pip_env(extra=None):
    env = {k: v for k, v in clean_env().items() if not k.startswith("PIP_")}
    env.update({"PIP_CONFIG_FILE": os.devnull, "PIP_NO_CACHE_DIR": "1",
                "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONDONTWRITEBYTECODE": "1",
                "PIP_ROOT_USER_ACTION": "ignore", "PIP_NO_INPUT": "1"})
    env.pop("PYTHONPATH", None)
    env.update(extra or {})
    return env


def pip(args, env=None, timeout=600, check=True):
    """Debian's pip with the upstream posix_prefix scheme (see above)."""
    cp = subprocess.run([SYSTEM_PYTHON, "-c", _PIP_BOOT, *args], env=pip_env(env),
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                        timeout=timeout)
    if check and cp.returncode != 0:
        raise AssertionError(f"pip {' '.join(args)} failed" + describe(cp))
    return cp


def pip_install_prefix(prefix, wheels_or_pins, find_links=None, compile=False):
    """`pip install --no-deps --no-index --prefix PREFIX ...` (no bytecode unless compile)."""
    args = ["install", "--no-deps", "--no-index", "--prefix", prefix,
            "--no-warn-script-location", "--compile" if compile else "--no-compile"]
    if find_links:
        args += ["--find-links", find_links]
    return pip(args + list(wheels_or_pins))


def pip_list(site):
    """{normalized name: version} from `pip list --path SITE --format json`."""
    cp = subprocess.run([SYSTEM_PYTHON, "-m", "pip", "list", "--path", site, "--format",
                         "json"], env=pip_env(), stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True, timeout=120)
    if cp.returncode != 0:
        raise AssertionError("pip list failed" + describe(cp))
    return {gen_wheels.normalize(d["name"]): d["version"] for d in json.loads(cp.stdout)}


def pip_check(site, workdir):
    """`pip check` of SITE alone. pip 23 has no `check --path`, and the system environment is
    not clean (python3-gi's pygobject lacks pycairo), so pip runs with -S (no site dirs) and a
    PYTHONPATH of SITE plus a directory holding only a symlink to pip's package (pip vendors
    its dependencies): pip then sees exactly the distributions in SITE. Returns
    CompletedProcess (exit 0 and "No broken requirements found." when clean)."""
    piponly = os.path.join(workdir, "pip-only")
    if not os.path.isdir(piponly):
        os.makedirs(piponly)
        import pip as _pip_mod  # noqa: F401  (Debian: /usr/lib/python3/dist-packages/pip)
        os.symlink(os.path.dirname(_pip_mod.__file__), os.path.join(piponly, "pip"))
    env = pip_env({"PYTHONPATH": site + os.pathsep + piponly})
    return subprocess.run([SYSTEM_PYTHON, "-S", "-m", "pip", "check"], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=120)


def run_python(code_or_argv, site, cwd=None, direct=False):
    """Runs `/usr/bin/python3 -c CODE` (or argv) with PYTHONPATH=site, no bytecode."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": site,
           "LC_ALL": "C.UTF-8"}
    argv = code_or_argv if isinstance(code_or_argv, list) else [SYSTEM_PYTHON, "-c",
                                                                  code_or_argv]
    return subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=120)


# --- checks -----------------------------------------------------------------------------

def shebang_ok(data, python_exe):
    """A generated script's interpreter line: "#!<exe>", or for long / spaced paths the
    /bin/sh trampoline naming <exe> (conda's and distlib's form). python_exe None: any python."""
    first, _, rest = data.partition(b"\n")
    if python_exe is None:
        return first.startswith(b"#!") and b"python" in first + rest.split(b"\n", 1)[0]
    exe = python_exe.encode()
    if first == b"#!" + exe:
        return True
    if first == b"#!/bin/sh" and exe in rest.split(b"\n", 1)[0]:
        return True
    return first == b"#!/usr/bin/env " + os.path.basename(exe)


def _first_line(data):
    return data.split(b"\n", 1)[0]


def check_wheel_prefix(prefix, expected, python_exe, installer=b"materializer\n",
                       conda_paths=None, allow_pycache=True):
    """Differences between PREFIX (conda-meta/ excluded) and the gen_wheels `expected` recipe
    (plus, for mixed locks, gen_fixtures-style `conda_paths`). python_exe: the interpreter the
    generated scripts must name (None = any python)."""
    prefix = os.path.abspath(prefix)
    if not os.path.isdir(prefix):
        return [f"prefix {prefix} does not exist"]
    actual = walk(prefix)
    paths = dict(expected)
    paths.update(conda_paths or {})
    implied = implied_dirs(paths)
    diffs = []
    for rel, spec in sorted(paths.items()):
        st = actual.get(rel)
        full = os.path.join(prefix, rel)
        if st is None:
            diffs.append(f"missing: {rel}")
            continue
        kind = spec["type"]
        if kind == "dir":
            if not stat.S_ISDIR(st.st_mode):
                diffs.append(f"{rel}: not a directory")
            continue
        if kind == "symlink":
            if not stat.S_ISLNK(st.st_mode) or os.readlink(full) != spec["target"]:
                diffs.append(f"{rel}: expected a symlink -> {spec['target']}")
            continue
        if not stat.S_ISREG(st.st_mode):
            diffs.append(f"{rel}: not a regular file (mode {oct(st.st_mode)})")
            continue
        with open(full, "rb") as fh:
            data = fh.read()
        if "exec" in spec and bool(st.st_mode & 0o100) != spec["exec"]:
            diffs.append(f"{rel}: executable bit is {bool(st.st_mode & 0o100)}, expected "
                         f"{spec['exec']} (mode {oct(st.st_mode & 0o777)})")
        if kind == "file":
            want = spec.get("sha256")
            if want is None and "data_b64" in spec:  # conda recipe with a placeholder
                continue
            if hashlib.sha256(data).hexdigest() != want:
                diffs.append(f"{rel}: sha256 {hashlib.sha256(data).hexdigest()}, expected "
                             f"{want}")
        elif kind == "script":
            if not shebang_ok(data, python_exe):
                diffs.append(f"{rel}: interpreter line {_first_line(data)!r}, expected "
                             f"#!{python_exe}")
            lines = data.split(b"\n")
            # after "#!exe", or after a /bin/sh trampoline of 2 (conda) or 3 (distlib) lines
            skips = (2, 3) if data.startswith(b"#!/bin/sh\n") else (1,)
            if not any(hashlib.sha256(b"\n".join(lines[k:])).hexdigest() == spec["body_sha256"]
                       for k in skips):
                diffs.append(f"{rel}: script body differs from the wheel's after the "
                             f"#!python line")
        elif kind == "entry_point":
            if not shebang_ok(data, python_exe):
                diffs.append(f"{rel}: entry point interpreter line "
                             f"{_first_line(data)!r}, expected #!{python_exe}")
            text = data.decode("utf-8", "replace")
            if (f"from {spec['module']} import" not in text
                    and f"import {spec['module']}" not in text):
                diffs.append(f"{rel}: entry point does not import {spec['module']}")
            if spec["func"] not in text:
                diffs.append(f"{rel}: entry point does not call {spec['func']}")
        elif kind == "installer":
            if installer is not None and data != installer:
                diffs.append(f"{rel}: {data!r}, expected {installer!r}")
        elif kind in ("requested", "record"):
            pass
        else:
            diffs.append(f"{rel}: unknown expected type {kind}")
    for rel, st in sorted(actual.items()):
        if rel in paths or (rel in implied and stat.S_ISDIR(st.st_mode)):
            continue
        if allow_pycache and _is_pycache(rel):
            continue
        diffs.append(f"extra: {rel}")
    return diffs


def read_record(path):
    import csv
    with open(path, newline="", encoding="utf-8") as fh:
        return [row for row in csv.reader(fh) if row]


def record_paths(prefix, site_rel, record_file):
    """RECORD rows -> {prefix-relative path: (hash, size)}; relative rows are relative to
    site-packages (pip writes ../../../bin/x), absolute ones must lie inside the prefix."""
    prefix = os.path.abspath(prefix)
    site = os.path.join(prefix, site_rel)
    out = {}
    for row in read_record(record_file):
        p = row[0]
        full = os.path.normpath(p if os.path.isabs(p) else os.path.join(site, p))
        rel = os.path.relpath(full, prefix)
        out[rel] = (row[1] if len(row) > 1 else "", row[2] if len(row) > 2 else "")
    return out


def check_wheel_records(prefix, expected, dists, site_rel, compile=False):
    """Every dist's RECORD lists exactly its installed files (expected recipe entries with
    that dist; with compile=True also a __pycache__/*.cpython-311.pyc for each site-packages
    .py, listed with or without hash as pip does), each with the right sha256 and size;
    RECORD itself without hash."""
    diffs = []
    tag = "cpython-" + gen_wheels.PYTHON_XY.replace(".", "")
    for name, d in dists.items():
        rec_rel = f"{site_rel}/{d['dist_info']}/RECORD"
        rec = os.path.join(prefix, rec_rel)
        if not os.path.isfile(rec):
            diffs.append(f"{name}: {rec_rel} missing")
            continue
        rows = record_paths(prefix, site_rel, rec)
        want = {p for p, s in expected.items() if s.get("dist") == name}
        got_pyc = {p for p in rows if _is_pycache(p)}
        if compile:
            for p in sorted(want):
                if p.startswith(site_rel + "/") and p.endswith(".py"):
                    d_, base = os.path.split(p)
                    pyc = f"{d_}/__pycache__/{base[:-3]}.{tag}.pyc"
                    if pyc not in rows:
                        diffs.append(f"{name}: RECORD lacks {pyc}")
                    if not os.path.isfile(os.path.join(prefix, pyc)):
                        diffs.append(f"{name}: {pyc} missing")
        got = set(rows) - (got_pyc if compile else set())
        for p in sorted(want - got):
            diffs.append(f"{name}: RECORD lacks {p}")
        for p in sorted(got - want):
            diffs.append(f"{name}: RECORD has unexpected {p}")
        for p, (h, size) in sorted(rows.items()):
            if p == rec_rel:
                if h or size:
                    diffs.append(f"{name}: RECORD lists itself with hash {h!r} size {size!r}")
                continue
            full = os.path.join(prefix, p)
            if not os.path.isfile(full):
                if p in want or compile:
                    diffs.append(f"{name}: RECORD row {p} names no file")
                continue
            with open(full, "rb") as fh:
                data = fh.read()
            if _is_pycache(p) and (h, size) == ("", ""):
                continue  # pip lists bytecode without hash and size; either form is fine
            if h != gen_wheels.record_hash(data):
                diffs.append(f"{name}: RECORD hash of {p} is {h!r}, file has "
                             f"{gen_wheels.record_hash(data)}")
            if size != str(len(data)):
                diffs.append(f"{name}: RECORD size of {p} is {size!r}, file has {len(data)}")
    return diffs


def installed_files(prefix, exclude_top=("conda-meta",), pycache=False):
    """Regular files and symlinks under prefix, prefix-relative."""
    return {rel for rel, st in walk(prefix, exclude_top).items()
            if not stat.S_ISDIR(st.st_mode) and (pycache or not _is_pycache(rel))}


class WheelTestCase(MaterializerTestCase):
    """self.wfx (wheel fixtures) and assertions for installed wheel prefixes."""

    @classmethod
    def setUpClass(cls):
        cls.binary = require_binary()
        cls.wfx = wheel_fixtures()

    def assertWheelPrefix(self, prefix, python_exe, mixed=False, compile=False,
                          installer=b"materializer\n"):
        exp = self.wfx.expected()
        conda = self.wfx.manifest["conda"]["expected_paths"] if mixed else None
        diffs = check_wheel_prefix(prefix, exp, python_exe, installer=installer,
                                   conda_paths=conda, allow_pycache=True)
        self.assertEqual(diffs, [], "prefix differs:\n  " + "\n  ".join(diffs))
        diffs = check_wheel_records(prefix, exp, self.wfx.dists(), self.wfx.site,
                                    compile=compile)
        self.assertEqual(diffs, [], "RECORD differs:\n  " + "\n  ".join(diffs))
        if not compile:
            pyc = [p for p in installed_files(prefix, pycache=True) if _is_pycache(p)]
            self.assertEqual(pyc, [], "bytecode written without --compile")

    def assertImportsAndScripts(self, prefix, direct=True):
        site = os.path.join(prefix, self.wfx.site)
        best = self.wfx.manifest["choose"]["best"]
        cp = run_python("import purepkg, platpkg, datafiles, datafiles_extra, nsroot.alpha, "
                        "nsroot.beta, choose; print(choose.VARIANT, nsroot.alpha.WHO, "
                        "nsroot.beta.WHO)", site, cwd=self.tmp)
        self.assertEqual((cp.returncode, cp.stdout.strip()), (0, f"{best} alpha beta"),
                         cp.stderr)
        for script, (_, _, out) in self.wfx.manifest["entry_points"].items():
            path = os.path.join(prefix, "bin", script)
            runs = [[SYSTEM_PYTHON, path]] + ([[path]] if direct else [])
            for argv in runs:
                cp = run_python(argv, site, cwd=self.tmp)
                self.assertEqual((cp.returncode, cp.stdout.strip()), (0, out),
                                 f"{argv}: {cp.stderr}")
        tool = os.path.join(prefix, "bin", "tool")
        for argv in [[SYSTEM_PYTHON, tool]] + ([[tool]] if direct else []):
            cp = run_python(argv, site, cwd=self.tmp)
            self.assertEqual((cp.returncode, cp.stdout.strip()), (0, "tool from datafiles"),
                             f"{argv}: {cp.stderr}")
        cp = run_python([os.path.join(prefix, "bin", "plain.sh")], site, cwd=self.tmp)
        self.assertEqual((cp.returncode, cp.stdout.strip()), (0, "plain"), cp.stderr)

    def assertWheelCache(self, cache, file_names):
        """CACHE/v1/archives/sha256-<hex>.whl and trees/sha256-<hex> for exactly these wheels."""
        files = self.wfx.manifest["files"]
        keys = {"sha256-" + files[f]["sha256"] for f in file_names}
        archives = {a for a in cache_archives(cache) if a.endswith(".whl")}
        self.assertEqual(archives, {k + ".whl" for k in keys})
        trees = set(cache_trees(cache))
        self.assertTrue(keys <= trees, f"trees lack {sorted(keys - trees)}")
        self.assertEqual(cache_tmp(cache), [])
