#!/usr/bin/python3
"""install over HTTPS + HTTP/2 from nginx, with a throwaway CA passed by --ca-bundle; and the
certificate failure without it. Skips (exit 77) when nginx is not installed."""

import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import harness  # noqa: E402


class InstallNginxHttpsTest(harness.MaterializerTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.nginx = harness.Nginx(cls.fx.root).start()

    @classmethod
    def tearDownClass(cls):
        cls.nginx.cleanup()

    def test_https_http2_with_ca_bundle(self):
        ng = self.nginx
        lock = self.fx.render_lock("conda-lock.yml", ng.url + "/channel", self.tmp)
        prefix, cache = self.path("env"), self.path("cache")
        cp = self.install(lock, prefix, cache, "--ca-bundle", ng.ca_file,
                          "--report", self.path("r.json"))
        self.assertExit(cp, 0)
        self.assertPrefixMatches(prefix, "conda-lock.yml")
        lines = ng.log_lines()
        for pkg in self.fx.expected("conda-lock.yml")["packages"]:
            hits = [line for line in lines if f"/channel/{pkg['url_path']} " in line]
            self.assertTrue(hits, f"{pkg['file_name']} not in access log:\n" + "\n".join(lines))
            for line in hits:
                self.assertTrue(line.endswith(" HTTP/2.0"), f"not HTTP/2: {line}")
        self.assertTrue(harness.read_json(self.path("r.json"))["ok"])

    def test_ca_bundle_via_ssl_cert_file(self):
        # libcurl-style environment is an accepted alternative to --ca-bundle.
        lock = self.fx.render_lock("explicit.txt", self.nginx.url + "/channel", self.tmp)
        cp = self.install(lock, self.path("env"), self.path("cache"),
                          env={"SSL_CERT_FILE": self.nginx.ca_file})
        if cp.returncode != 0 and "certificate" in cp.stderr.lower():
            self.skipTest("SSL_CERT_FILE is not honoured (only --ca-bundle is required)")
        self.assertExit(cp, 0)
        self.assertPrefixMatches(self.path("env"), "explicit.txt")

    def test_untrusted_certificate_fails_cleanly(self):
        lock = self.fx.render_lock("pixi.lock", self.nginx.url + "/channel", self.tmp)
        prefix, cache = self.path("env"), self.path("cache")
        cp = self.install(lock, prefix, cache, "--report", self.path("r.json"))
        self.assertExit(cp, 1)
        self.assertIn("certificate", cp.stderr.lower(), harness.describe(cp))
        self.assertEqual(harness.cache_archives(cache), [])
        self.assertEqual(harness.cache_trees(cache), [])
        self.assertEqual(harness.cache_tmp(cache), [])
        self.assertPrefixUntouched(prefix)
        report = harness.read_json(self.path("r.json"))
        self.assertFalse(report["ok"])
        self.assertEqual(report["exit_code"], 1)
        self.assertTrue(any(p["error"] for p in report["packages"]), report["packages"])


if __name__ == "__main__":
    if not (shutil.which("nginx") or os.access("/usr/sbin/nginx", os.X_OK)):
        harness.skip_process("nginx is not installed")
    harness.main()
