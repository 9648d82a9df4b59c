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
    unittest.main(module="__main__", argv=argv, verbosity=2)


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


_FIXTURES = None


def fixtures():
    """Fixtures generated once per process into a temp dir (removed at exit)."""
    global _FIXTURES
    if _FIXTURES is None:
        root = tempfile.mkdtemp(prefix="mat-fixtures-")
        if os.environ.get("MAT_KEEP_TMP") != "1":
            import atexit
            atexit.register(shutil.rmtree, root, True)
        gen_fixtures.generate(root)
        _FIXTURES = Fixtures(root)
    return _FIXTURES


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

            def do_GET(self):
                if not self._hook():
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


class Nginx:
    """nginx over HTTPS + HTTP/2 on 127.0.0.1:<free port>, serving `root`, with a throwaway CA.

    ca_file: the CA certificate to pass as --ca-bundle. log_lines(): the access log, one
    "<request> <status> <server_protocol>" line per request. Calls skip_process() (exit 77)
    when nginx or openssl is missing.
    """

    def __init__(self, root):
        self.root = os.path.abspath(root)
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
    server {{
        listen 127.0.0.1:{self.port} ssl http2;
        server_name localhost 127.0.0.1;
        ssl_certificate {d}/server.pem;
        ssl_certificate_key {d}/server.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        root {self.root};
        location / {{ autoindex off; }}
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
    implied = set()
    for p in paths:
        parts = p.split("/")
        for i in range(1, len(parts)):
            implied.add("/".join(parts[:i]))
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
        if pkg["key"].startswith("md5-") and rec.get("md5") != pkg["md5"]:
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
