#!/usr/bin/python3
"""Network behaviour end to end: transient failures are retried (5xx, 429 + Retry-After),
http_proxy / no_proxy are honoured, and credentials in URLs never reach the output."""

import http.server
import os
import sys
import threading
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
