#!/usr/bin/python3
"""Network behaviour end to end: transient failures are retried (5xx, 429 + Retry-After),
http_proxy / no_proxy are honoured, and credentials in URLs never reach the output."""

import http.server
import os
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import harness  # noqa: E402


class ForwardProxy:
    """A minimal HTTP forward proxy: answers absolute-URI GETs by fetching the origin."""

    def __init__(self):
        self.requests = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                proxy.requests.append(self.path)
                opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                try:
                    with opener.open(self.path, timeout=30) as r:
                        body, code = r.read(), r.status
                except urllib.error.HTTPError as e:
                    body, code = e.read(), e.code
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        http.server.ThreadingHTTPServer.request_queue_size = 128
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class NetworkTest(harness.MaterializerTestCase):

    def setUp(self):
        super().setUp()
        self.srv = harness.HttpServer(self.fx.root).start()
        self.lock = self.fx.render_lock("conda-lock.yml", self.srv.url + "/channel", self.tmp)

    def tearDown(self):
        self.srv.stop()
        super().tearDown()

    def package_path(self):
        pkg = self.fx.manifest["packages"][0]
        return pkg, "/channel/" + pkg["subdir"] + "/" + pkg["url"].rsplit("/", 1)[1]

    def flaky(self, path, failures, status, headers=()):
        """Hook: the first `failures` requests for `path` get `status`, then the real file."""
        seen = {"n": 0}

        def hook(handler):
            if seen["n"] >= failures:
                return False
            seen["n"] += 1
            handler.send_response(status)
            for k, v in headers:
                handler.send_header(k, v)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return True

        self.srv.hooks[path] = hook
        return seen

    def test_server_errors_are_retried(self):
        pkg, path = self.package_path()
        seen = self.flaky(path, 2, 503)
        report = self.path("r.json")
        cp = self.install(self.lock, self.path("env"), self.path("cache"), "--report", report)
        self.assertExit(cp, 0)
        self.assertEqual(seen["n"], 2)
        rep = harness.read_json(report)
        entry = next(p for p in rep["packages"] if p["name"] == pkg["name"])
        self.assertEqual(entry.get("attempts"), 3)
        self.assertPrefixMatches(self.path("env"), "conda-lock.yml")

    def test_429_with_retry_after_is_honoured(self):
        pkg, path = self.package_path()
        seen = self.flaky(path, 1, 429, [("Retry-After", "1")])
        cp = self.install(self.lock, self.path("env"), self.path("cache"))
        self.assertExit(cp, 0)
        self.assertEqual(seen["n"], 1)

    def test_http_proxy_is_used_unless_no_proxy(self):
        proxy = ForwardProxy()
        try:
            env = {"http_proxy": proxy.url, "no_proxy": "", "NO_PROXY": ""}
            cp = self.install(self.lock, self.path("env1"), self.path("cache1"), env=env)
            self.assertExit(cp, 0)
            n = len(self.fx.manifest["packages"])
            self.assertEqual(len([r for r in proxy.requests if r.startswith("http://")]), n,
                             proxy.requests)
            proxy.requests.clear()
            env["no_proxy"] = "127.0.0.1"
            cp = self.install(self.lock, self.path("env2"), self.path("cache2"), env=env)
            self.assertExit(cp, 0)
            self.assertEqual(proxy.requests, [])
        finally:
            proxy.stop()

    # --- extraction while downloading (the streaming thread) ----------------------------

    def slow(self, path, attempts):
        """Hook: serves `path` in 256-byte pieces 10 ms apart. `attempts` is a list of what the
        successive requests get: "full", "half" (the first half, then the connection drops) or
        "corrupt" (every byte, one of them flipped). Returns the per-request log."""
        with open(os.path.join(self.fx.root, path.lstrip("/")), "rb") as fh:
            data = fh.read()
        served = []

        def hook(handler):
            kind = attempts[min(len(served), len(attempts) - 1)]
            served.append(kind)
            body = bytearray(data)
            if kind == "corrupt":
                body[len(body) // 2] ^= 0xFF
            if kind == "half":
                body = body[:len(body) // 2]
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            for at in range(0, len(body), 256):
                handler.wfile.write(body[at:at + 256])
                handler.wfile.flush()
                time.sleep(0.01)
            handler.close_connection = True
            return True

        self.srv.hooks[path] = hook
        return served

    def biggest_conda(self):
        pkgs = [p for p in self.fx.manifest["packages"] if p["url"].endswith(".conda")]
        pkg = max(pkgs, key=lambda p: p["size"])
        return pkg, "/channel/" + pkg["subdir"] + "/" + pkg["url"].rsplit("/", 1)[1]

    def entry(self, report, name):
        return next(p for p in harness.read_json(report)["packages"] if p["name"] == name)

    def test_slow_conda_is_extracted_while_it_downloads(self):
        pkg, path = self.biggest_conda()
        served = self.slow(path, ["full"])
        report, trace = self.path("r.json"), self.path("t.json")
        cp = self.install(self.lock, self.path("env"), self.path("cache"), "--report", report,
                          "--trace", trace)
        self.assertExit(cp, 0)
        self.assertEqual(served, ["full"])
        self.assertTrue(self.entry(report, pkg["name"]).get("streamed"), cp.stderr)
        self.assertPrefixMatches(self.path("env"), "conda-lock.yml")
        lanes = {e["tid"] for e in harness.read_json(trace)["traceEvents"]
                 if e.get("cat") == "extract" and e.get("name") == pkg["name"]}
        self.assertEqual(lanes, {998})  # Trace::kStreamLane
        # --no-stream: the same prefix, nothing streamed.
        served.clear()
        cp = self.install(self.lock, self.path("env2"), self.path("cache2"), "--report", report,
                          "--no-stream")
        self.assertExit(cp, 0)
        self.assertFalse(any(p.get("streamed") for p in harness.read_json(report)["packages"]))
        self.assertPrefixMatches(self.path("env2"), "conda-lock.yml")

    def test_download_that_restarts_is_extracted_from_the_file(self):
        pkg, path = self.biggest_conda()
        served = self.slow(path, ["half", "full"])
        report = self.path("r.json")
        cp = self.install(self.lock, self.path("env"), self.path("cache"), "--report", report,
                          "-v")
        self.assertExit(cp, 0)
        self.assertEqual(served, ["half", "full"])
        entry = self.entry(report, pkg["name"])
        self.assertEqual(entry.get("attempts"), 2)
        self.assertFalse(entry.get("streamed"))
        self.assertIn("extracting while downloading stopped", cp.stderr)
        self.assertPrefixMatches(self.path("env"), "conda-lock.yml")

    def test_corrupt_download_being_streamed_leaves_nothing(self):
        pkg, path = self.biggest_conda()
        self.slow(path, ["corrupt"])
        cache = self.path("cache")
        cp = self.install(self.lock, self.path("env"), cache)
        self.assertExit(cp, 1)
        self.assertIn("sha256 mismatch", cp.stderr)
        self.assertFalse(os.path.exists(os.path.join(cache, "v1", "trees",
                                                     "sha256-" + pkg["sha256"])))
        self.assertFalse(os.path.exists(os.path.join(cache, "v1", "archives",
                                                     "sha256-" + pkg["sha256"] + ".conda")))
        self.assertEqual(os.listdir(os.path.join(cache, "v1", "tmp")), [])
        # The next run, with the real bytes, installs it.
        self.srv.hooks.clear()
        cp = self.install(self.lock, self.path("env"), cache)
        self.assertExit(cp, 0)
        self.assertPrefixMatches(self.path("env"), "conda-lock.yml")

    def test_credentials_never_printed_on_success_or_failure(self):
        secret = "s3cr3t-token-value"
        base = self.srv.url.replace("http://", f"http://user:{secret}@") + "/channel"
        lock = self.fx.render_lock("conda-lock.yml", base, self.path("l"))
        report = self.path("r.json")
        cp = self.install(lock, self.path("env"), self.path("cache"), "-v", "--report", report)
        self.assertExit(cp, 0)
        self.assertNotInOutput(cp, secret, report)
        for name in os.listdir(os.path.join(self.path("env"), "conda-meta")):
            with open(os.path.join(self.path("env"), "conda-meta", name), errors="replace") as fh:
                self.assertNotIn(secret, fh.read(), name)
        _, path = self.package_path()
        self.srv.hooks[path] = 500
        cp = self.install(lock, self.path("env2"), self.path("cache2"), "--report", report)
        self.assertExit(cp, 1)
        self.assertNotInOutput(cp, secret, report)


if __name__ == "__main__":
    harness.main()
