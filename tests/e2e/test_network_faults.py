#!/usr/bin/python3
"""Network faults end to end: the real binary against tests/fault_server.py on 127.0.0.1.

Each test scripts one fault on one package's path, installs, and checks the outcome from both
sides: what the binary did (exit status, message, prefix, cache) and what the server saw (how
many requests, which Range/If-Range/Authorization headers, how many bytes it sent, how many
connections were open at once)."""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import harness  # noqa: E402


class FaultTestCase(harness.MaterializerTestCase):
    lock_name = "conda-lock.yml"

    def setUp(self):
        super().setUp()
        self.srv = harness.FaultServer(self.fx.root).start()
        self.addCleanup(self.srv.stop)
        self.lock = self.fx.render_lock(self.lock_name, self.srv.url + "/channel", self.tmp)

    def pkg(self, name):
        p = self.fx.package(name)
        return p, "/channel/" + p["subdir"] + "/" + p["url"].rsplit("/", 1)[1]

    def run_install(self, *extra, lock=None, env=None):
        """Installs into a fresh prefix and cache; returns (cp, report dict or None)."""
        self.n = getattr(self, "n", 0) + 1
        report = self.path(f"r{self.n}.json")
        self.cache = self.path(f"cache{self.n}")
        self.env = self.path(f"env{self.n}")
        cp = self.install(lock or self.lock, self.env, self.cache, "--report", report, *extra,
                          env=env)
        rep = harness.read_json(report) if os.path.exists(report) else None
        return cp, rep

    def entry(self, rep, name):
        return next(p for p in rep["packages"] if p["name"] == name)

    def assertInstalled(self, cp):
        self.assertExit(cp, 0)
        self.assertPrefixMatches(self.env, self.lock_name)
        self.assertEqual(harness.cache_tmp(self.cache), [])

    def assertNothingCached(self, pkg):
        key = "sha256-" + pkg["sha256"]
        self.assertNotIn(key, harness.cache_trees(self.cache))
        self.assertFalse([a for a in harness.cache_archives(self.cache) if a.startswith(key)])
        self.assertEqual(harness.cache_tmp(self.cache), [])

    def statuses(self, path):
        return [r["status"] for r in self.srv.requests(path)]

    def resumed_twice(self, path, size):
        """The two requests of a resumed transfer: returns the resume offset."""
        first, second = self.srv.requests(path)
        self.assertIsNone(first["range"])
        self.assertEqual(second["status"], 206)
        self.assertTrue(second["range"].startswith("bytes="), second)
        offset = int(second["range"][6:].rstrip("-"))
        self.assertGreater(offset, 0)
        self.assertIsNotNone(second["if_range"])
        self.assertEqual(second["bytes"], size - offset)  # only the rest was sent again
        self.assertLess(first["bytes"] + second["bytes"], 2 * size)
        return offset


class RetryTest(FaultTestCase):

    def test_5xx_then_success(self):
        pkg, path = self.pkg("datapkg")
        self.srv.set_rules({path: [{"status": 503}, {"status": 500}]})
        cp, rep = self.run_install()
        self.assertInstalled(cp)
        self.assertEqual(self.statuses(path), [503, 500, 200])
        self.assertEqual(self.entry(rep, "datapkg").get("attempts"), 3)

    def test_429_retry_after_seconds_and_date_are_waited_for(self):
        _, p1 = self.pkg("datapkg")
        _, p2 = self.pkg("libmat")
        # The backoff alone would retry within 0.5 s; the server asks for about 1.5 s.
        self.srv.set_rules({p1: [{"status": 429, "retry_after": 2}],
                            p2: [{"status": 503, "retry_after_date": 2}]})
        cp, _ = self.run_install()
        self.assertInstalled(cp)
        for path in (p1, p2):
            first, second = self.srv.requests(path)
            self.assertIn(first["status"], (429, 503))
            self.assertEqual(second["status"], 200)
            # An HTTP-date has one-second resolution: at least ~1 s of the 2 asked for.
            self.assertGreaterEqual(second["t"] - first["t"], 0.9, path)

    def test_always_failing_server_gives_up_with_the_url_and_a_hint(self):
        pkg, path = self.pkg("datapkg")
        self.srv.set_rules({path: [{"status": 500, "repeat": True}]})
        cp, _ = self.run_install()
        self.assertExit(cp, 1)
        self.assertIn("HTTP 500 after 5 attempts", cp.stderr)
        self.assertIn(path, cp.stderr)
        self.assertEqual(len(self.srv.requests(path)), 5)
        self.assertNothingCached(pkg)
        self.assertPrefixUntouched(self.env)


class ResumeTest(FaultTestCase):

    def test_reset_mid_body_resumes_with_range(self):
        pkg, path = self.pkg("datapkg")
        self.srv.set_rules({path: [{"reset_after": 40000}]})
        cp, rep = self.run_install()
        self.assertInstalled(cp)
        offset = self.resumed_twice(path, pkg["size"])
        self.assertLessEqual(offset, 40000)
        first, second = self.srv.requests(path)
        self.assertTrue(second["if_range"].startswith('"'), second)  # the strong ETag
        self.assertEqual(self.entry(rep, "datapkg").get("attempts"), 2)

    def test_short_body_resumes_with_range(self):
        pkg, path = self.pkg("datapkg")
        self.srv.set_rules({path: [{"short_after": 30000}]})
        cp, _ = self.run_install()
        self.assertInstalled(cp)
        self.assertEqual(self.resumed_twice(path, pkg["size"]), 30000)

    def test_resume_keeps_the_streaming_extraction(self):
        # The largest .conda is extracted while it downloads; a resume must not cancel that.
        pkg, path = self.pkg("nolink")
        half = pkg["size"] // 2
        self.srv.set_rules({path: [{"reset_after": half, "rate": 8000}, {"rate": 8000}]})
        cp, rep = self.run_install("-v")
        self.assertInstalled(cp)
        self.resumed_twice(path, pkg["size"])
        self.assertTrue(self.entry(rep, "nolink").get("streamed"), cp.stderr)
        self.assertNotIn("extracting while downloading stopped", cp.stderr)

    def test_range_ignored_restarts_from_zero(self):
        pkg, path = self.pkg("nolink")
        half = pkg["size"] // 2
        self.srv.set_rules({path: [{"reset_after": half, "rate": 8000},
                                   {"ignore_range": True, "rate": 8000}]})
        cp, rep = self.run_install("-v")
        self.assertInstalled(cp)
        first, second = self.srv.requests(path)
        self.assertIsNotNone(second["range"])  # asked to resume ...
        self.assertEqual((second["status"], second["bytes"]), (200, pkg["size"]))  # ... got it all
        # The streaming reader had consumed bytes that are now gone: it stops, and the
        # package is extracted from the finished file.
        self.assertFalse(self.entry(rep, "nolink").get("streamed"))
        self.assertIn("extracting while downloading stopped", cp.stderr)

    def test_changed_etag_fails_if_range_and_restarts_from_zero(self):
        pkg, path = self.pkg("datapkg")
        self.srv.set_rules({path: [{"reset_after": 40000}, {"etag": '"another-version"'}]})
        cp, _ = self.run_install()
        self.assertInstalled(cp)
        first, second = self.srv.requests(path)
        self.assertIsNotNone(second["if_range"])
        self.assertNotEqual(second["if_range"], '"another-version"')
        self.assertEqual((second["status"], second["bytes"]), (200, pkg["size"]))

    def test_no_validator_means_no_range(self):
        pkg, path = self.pkg("datapkg")
        self.srv.set_rules({path: [{"reset_after": 40000, "no_validators": True}]})
        cp, _ = self.run_install()
        self.assertInstalled(cp)
        first, second = self.srv.requests(path)
        self.assertIsNone(second["range"])
        self.assertEqual((second["status"], second["bytes"]), (200, pkg["size"]))

    def test_misplaced_partial_answer_starts_over_without_range(self):
        pkg, path = self.pkg("datapkg")
        self.srv.set_rules({path: [{"reset_after": 40000}, {"content_range_shift": -100}]})
        cp, _ = self.run_install()
        self.assertInstalled(cp)
        reqs = self.srv.requests(path)
        self.assertEqual([r["status"] for r in reqs], [200, 206, 200])
        self.assertIsNotNone(reqs[1]["range"])
        self.assertIsNone(reqs[2]["range"])


class BadBytesTest(FaultTestCase):

    def test_wrong_bytes_are_a_hash_mismatch_and_nothing_is_kept(self):
        pkg, path = self.pkg("datapkg")
        self.srv.set_rules({path: [{"flip": 1000, "repeat": True}]})
        cp, rep = self.run_install()
        self.assertExit(cp, 1)
        self.assertIn("sha256 mismatch", cp.stderr)
        self.assertEqual(len(self.srv.requests(path)), 1)  # the same bytes again would not help
        self.assertEqual(self.entry(rep, "datapkg")["status"], "hash-mismatch")
        self.assertNothingCached(pkg)
        self.assertPrefixUntouched(self.env)

    def test_html_error_page_is_named_in_the_hash_mismatch(self):
        pkg, path = self.pkg("datapkg")
        self.srv.set_rules({path: [{"html": True, "repeat": True}]})
        cp, _ = self.run_install()  # conda-lock.yml gives no sizes: the digest catches it
        self.assertExit(cp, 1)
        self.assertIn("sha256 mismatch", cp.stderr)
        self.assertIn("the server sent text/html, not a package", cp.stderr)
        self.assertNothingCached(pkg)

    def test_html_error_page_is_named_in_the_size_mismatch(self):
        pkg, path = self.pkg("datapkg")
        self.srv.set_rules({path: [{"html": True, "repeat": True}]})
        lock = self.fx.render_lock("pixi.lock", self.srv.url + "/channel", self.path("l"))
        cp, _ = self.run_install(lock=lock)  # pixi.lock gives sizes
        self.assertExit(cp, 1)
        self.assertIn("size mismatch", cp.stderr)
        self.assertIn("the server sent text/html, not a package", cp.stderr)
        self.assertNothingCached(pkg)


class StallTest(FaultTestCase):

    def test_stall_is_abandoned_after_stall_timeout_and_resumed(self):
        pkg, path = self.pkg("datapkg")
        self.srv.set_rules({path: [{"stall_after": 20000}]})
        t0 = time.monotonic()
        cp, rep = self.run_install("--stall-timeout", "1")
        elapsed = time.monotonic() - t0
        self.assertInstalled(cp)
        self.assertEqual(self.resumed_twice(path, pkg["size"]), 20000)
        self.assertEqual(self.entry(rep, "datapkg").get("attempts"), 2)
        # 1 s of silence + backoff (<= 0.5 s) + the rest; generous for a loaded machine, and
        # far from libcurl's old 60 s low-speed timeout.
        self.assertLess(elapsed, 30, cp.stderr)

    def test_slow_body_that_keeps_moving_is_no_stall(self):
        pkg, path = self.pkg("datapkg")
        self.srv.set_rules({path: [{"rate": 60000}]})  # ~1.4 s for the 81 KB
        cp, _ = self.run_install("--stall-timeout", "1")
        self.assertInstalled(cp)
        self.assertEqual(self.statuses(path), [200])

    def test_bad_values_are_usage_errors(self):
        for flag, value in (("--stall-timeout", "-1"), ("--max-connections-per-host", "-2"),
                            ("--stall-timeout", "soon")):
            cp, _ = self.run_install(flag, value)
            self.assertExit(cp, 2)
            self.assertIn(flag, cp.stderr)


class RedirectTest(FaultTestCase):

    def test_redirect_chain_is_followed(self):
        pkg, path = self.pkg("datapkg")
        rules = {path: [{"redirect": "/hop/1", "repeat": True}]}
        for k in range(1, 5):
            rules[f"/hop/{k}"] = [{"redirect": f"/hop/{k + 1}" if k < 4 else
                                   "/channel/" + pkg["subdir"] + "/datapkg-copy", "repeat": True}]
        self.srv.set_rules(rules)
        # The chain ends at a copy of the file under another name.
        src = os.path.join(self.fx.root, path.lstrip("/"))
        dst = os.path.join(self.fx.root, "channel", pkg["subdir"], "datapkg-copy")
        with open(src, "rb") as a, open(dst, "wb") as b:
            b.write(a.read())
        self.addCleanup(os.remove, dst)
        cp, _ = self.run_install()
        self.assertInstalled(cp)
        self.assertEqual(len(self.srv.requests("/channel/" + pkg["subdir"] + "/datapkg-copy")), 1)

    def test_redirect_loop_is_reported_clearly(self):
        pkg, path = self.pkg("datapkg")
        self.srv.set_rules({path: [{"redirect": "/loop/a", "repeat": True}],
                            "/loop/a": [{"redirect": "/loop/b", "status": 301, "repeat": True}],
                            "/loop/b": [{"redirect": "/loop/a", "status": 307, "repeat": True}]})
        cp, rep = self.run_install()
        self.assertExit(cp, 1)
        self.assertIn("redirect loop: " + self.srv.url + path + " -> " + self.srv.url +
                      "/loop/a -> " + self.srv.url + "/loop/b -> " + self.srv.url + "/loop/a",
                      cp.stderr)
        self.assertEqual(len(self.srv.requests(path)), 1)  # not retried
        self.assertNothingCached(pkg)

    def test_credentials_are_not_sent_to_another_host_after_a_redirect(self):
        secret = "hunter2-secret"
        base = self.srv.url_for("/channel", userinfo="user:" + secret)
        lock = self.fx.render_lock(self.lock_name, base, self.path("l"))
        pkg, path = self.pkg("datapkg")
        # 127.0.0.1 sends datapkg to localhost (same server, another host name).
        self.srv.set_rules({path: [{"redirect": self.srv.url_for(path, host="localhost"),
                                    "host": "127.0.0.1", "repeat": True}]})
        cp, rep = self.run_install(lock=lock)
        self.assertInstalled(cp)
        by_host = {r["host"]: r for r in self.srv.requests(path)}
        self.assertEqual(set(by_host), {"127.0.0.1", "localhost"})
        self.assertTrue(by_host["127.0.0.1"]["authorization"])
        self.assertFalse(by_host["localhost"]["authorization"])
        # Every other package came straight from the origin, with the credentials.
        others = [r for r in self.srv.requests() if r["path"] != path]
        self.assertTrue(others and all(r["authorization"] for r in others))
        self.assertNotInOutput(cp, secret)


class CredentialTest(FaultTestCase):

    def test_odd_credentials_are_never_printed(self):
        """A password with '@' and ':' (percent-encoded, as a URL needs them), a one-character
        user and a one-character conda token: none of them in any output, on success (-v) or
        on failure."""
        root = self.path("served")
        os.makedirs(os.path.join(root, "t", "Q"))
        os.symlink(self.fx.channel, os.path.join(root, "t", "Q", "channel"))
        with harness.FaultServer(root) as srv:
            base = srv.url_for("/t/Q/channel", userinfo="Z:p%40ss%3Aw0rd")
            lock = self.fx.render_lock(self.lock_name, base, self.path("l"))
            cp, _ = self.run_install("-v", lock=lock)
            self.assertInstalled(cp)
            self.assertTrue(all(r["authorization"] for r in srv.requests()))
            outputs = [cp]
            _, path = self.pkg("datapkg")
            srv.set_rules({"/t/Q" + path: [{"status": 500, "repeat": True}]})
            cp, _ = self.run_install("-v", lock=lock)
            self.assertExit(cp, 1)
            outputs.append(cp)
        # The failure names the URL, redacted; so do both reports.
        self.assertIn("http://***@127.0.0.1:%d/t/***/channel/" % srv.port, outputs[1].stderr)
        for k, out in enumerate(outputs, 1):
            report = self.path(f"r{k}.json")
            self.assertIn("/t/***/channel/", harness.read_text(report))
            for secret in ("p%40ss", "p@ss", "w0rd", "Z:", "/t/Q/"):
                self.assertNotInOutput(out, secret, report)
        for name in os.listdir(os.path.join(self.path("env1"), "conda-meta")):
            text = harness.read_text(os.path.join(self.path("env1"), "conda-meta", name))
            for secret in ("w0rd", "/t/Q/"):
                self.assertNotIn(secret, text, name)


    def test_netrc_is_not_read(self):
        home = self.path("home")
        os.makedirs(home)
        with open(os.path.join(home, ".netrc"), "w") as fh:
            fh.write("machine 127.0.0.1 login netrcuser password netrcpass\n"
                     "default login netrcuser password netrcpass\n")
        os.chmod(os.path.join(home, ".netrc"), 0o600)
        cp, _ = self.run_install(env={"HOME": home})
        self.assertInstalled(cp)
        self.assertFalse(any(r["authorization"] for r in self.srv.requests()))


class BacklogTest(harness.MaterializerTestCase):
    """~40 packages from an HTTP/1.1 server that accepts slowly with listen(1): with the
    per-host cap the client never holds more than N connections, so no SYN is dropped
    beyond the first few."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.bench_root = harness._generated_once(
            "bench40", lambda root: harness.gen_fixtures.gen_bench(root, 40), lambda root: root)

    def install_from(self, srv, run, *extra):
        lock = harness.render_file(os.path.join(self.bench_root, "bench", "locks",
                                                "conda-lock.yml.in"),
                                   self.path("lock", "conda-lock.yml"),
                                   {"@BASE_URL@": srv.url + "/bench/channel"})
        t0 = time.monotonic()
        cp = self.install(lock, self.path(f"env{run}"), self.path(f"cache{run}"), *extra)
        return cp, time.monotonic() - t0

    def test_connections_per_host_are_capped(self):
        with harness.FaultServer(self.bench_root, backlog=1, accept_delay=0.01) as srv:
            cp, elapsed = self.install_from(srv, 1, "--max-connections-per-host", "4")
            self.assertExit(cp, 0)
            self.assertEqual(len(srv.requests()), 40)
            self.assertLessEqual(srv.max_connections, 4)
            self.assertGreaterEqual(srv.max_connections, 2)  # still in parallel
            # The default (6) holds too.
            srv.reset()
            self.assertEqual(srv.max_connections, 0)
            cp, elapsed = self.install_from(srv, 2)
            self.assertExit(cp, 0)
            self.assertLessEqual(srv.max_connections, 6)
            self.assertLess(elapsed, 60, cp.stderr)
            print(f"\n  40 packages, listen(1), accept delay 10 ms: {elapsed:.2f} s with the "
                  f"default cap (max {srv.max_connections} connections)", file=sys.stderr)


if __name__ == "__main__":
    harness.main()
