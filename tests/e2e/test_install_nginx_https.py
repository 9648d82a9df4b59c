#!/usr/bin/python3
"""install over HTTPS + HTTP/2 from nginx, with a throwaway CA passed by --ca-bundle or
SSL_CERT_FILE; the certificate failure without it; redirects within https followed, https ->
http refused. Skips (exit 77) when nginx is not installed."""

import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import harness  # noqa: E402


class InstallNginxHttpsTest(harness.MaterializerTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # A plain-http server that an https redirect points at: it must never be asked.
        cls.plain = harness.FaultServer(cls.fx.root).start()
        pkg = cls.fx.package("datapkg")
        cls.down_path = "/down/" + pkg["subdir"] + "/" + pkg["url"].rsplit("/", 1)[1]
        cls.moved_path = "/moved/" + pkg["subdir"] + "/" + pkg["url"].rsplit("/", 1)[1]
        conf = (f"location /down/ {{ rewrite ^/down/(.*)$ {cls.plain.url}/channel/$1 redirect; }}\n"
                "        location /moved/ { rewrite ^/moved/(.*)$ /channel/$1 redirect; }")
        try:
            cls.nginx = harness.Nginx(cls.fx.root, extra_conf=conf).start()
        except BaseException:
            cls.plain.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.nginx.cleanup()
        cls.plain.stop()

    def lock_with(self, path, lock_name="conda-lock.yml"):
        """The lock, with datapkg's URL replaced by nginx's `path`."""
        lock = self.fx.render_lock(lock_name, self.nginx.url + "/channel", self.tmp)
        pkg = self.fx.package("datapkg")
        original = "/channel/" + pkg["subdir"] + "/" + pkg["url"].rsplit("/", 1)[1]
        text = harness.read_text(lock)
        self.assertIn(self.nginx.url + original, text)
        with open(lock, "w", encoding="utf-8") as fh:
            fh.write(text.replace(self.nginx.url + original, self.nginx.url + path))
        return lock

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
        # README: "--ca-bundle FILE or SSL_CERT_FILE". A certificate error here is that
        # promise broken: it fails the test (it used to skip it).
        cp = self.install(lock, self.path("env"), self.path("cache"),
                          env={"SSL_CERT_FILE": self.nginx.ca_file})
        self.assertExit(cp, 0)
        self.assertPrefixMatches(self.path("env"), "explicit.txt")
        # The same run without it is refused: the variable is what made the difference.
        cp = self.install(lock, self.path("env2"), self.path("cache2"))
        self.assertExit(cp, 1)
        self.assertIn("certificate", cp.stderr.lower())

    def test_https_redirect_within_https_is_followed(self):
        lock = self.lock_with(self.moved_path)
        cp = self.install(lock, self.path("env"), self.path("cache"), "--ca-bundle",
                          self.nginx.ca_file)
        self.assertExit(cp, 0)
        self.assertPrefixMatches(self.path("env"), "conda-lock.yml")
        self.assertTrue([line for line in self.nginx.log_lines()
                         if line.startswith("GET " + self.moved_path + " ") and " 302 " in line])

    def test_https_to_http_redirect_is_refused(self):
        lock = self.lock_with(self.down_path)
        before = len(self.plain.requests())
        cache = self.path("cache")
        cp = self.install(lock, self.path("env"), cache, "--ca-bundle", self.nginx.ca_file)
        self.assertExit(cp, 1)
        self.assertIn("redirect from https to http refused (" + self.nginx.url +
                      self.down_path + " -> " + self.plain.url +
                      self.down_path.replace("/down/", "/channel/") + ")", cp.stderr)
        self.assertEqual(len(self.plain.requests()), before)  # nothing went out in clear
        self.assertEqual(harness.cache_tmp(cache), [])
        self.assertPrefixUntouched(self.path("env"))

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
