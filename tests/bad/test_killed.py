#!/usr/bin/python3
"""A process killed mid-download (SIGKILL: no cleanup code runs) leaves no corrupt cache entry
and no prefix that looks complete; the next run finishes the job."""

import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import harness  # noqa: E402


class KilledProcessTest(harness.MaterializerTestCase):

    def test_sigkill_during_download_then_rerun(self):
        release = threading.Event()
        started = threading.Event()
        srv = harness.HttpServer(self.fx.root)

        # The largest package trickles: half its bytes, then the server stalls until released.
        big = max(self.fx.manifest["packages"], key=lambda p: p["size"])
        file_name = big["url"].rsplit("/", 1)[1]
        path = "/channel/" + big["subdir"] + "/" + file_name
        with open(os.path.join(self.fx.channel, big["subdir"], file_name), "rb") as fh:
            blob = fh.read()

        def stall(handler):
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(blob)))
            handler.end_headers()
            handler.wfile.write(blob[: len(blob) // 2])
            handler.wfile.flush()
            started.set()
            release.wait(30)
            return True

        srv.hooks[path] = stall
        srv.start()
        try:
            lock = self.fx.render_lock("conda-lock.yml", srv.url + "/channel", self.tmp)
            prefix, cache = self.path("env"), self.path("cache")
            proc = harness.start_materializer(
                self.binary, ["install", lock, "--prefix", prefix, "--cache-dir", cache])
            self.assertTrue(started.wait(30), "the stalled download never started")
            time.sleep(0.3)  # let the other packages finish and extract
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            release.set()

            # Nothing half-written is visible: every published entry verifies.
            cp = self.mat("cache", "verify", "--cache-dir", cache)
            self.assertExit(cp, 0)
            self.assertFalse([e for e in harness.cache_archives(cache)
                              if e.startswith("sha256-" + big["sha256"])],
                             "a partial archive was published")
            # The prefix, if the run got that far, is not complete: no record for every package.
            meta = os.path.join(prefix, "conda-meta")
            records = [f for f in os.listdir(meta) if f.endswith(".json")] \
                if os.path.isdir(meta) else []
            self.assertLess(len(records), len(self.fx.manifest["packages"]))

            # The rerun completes the environment, and leaves no temp files behind.
            del srv.hooks[path]
            cp = self.install(lock, prefix, cache)
            self.assertExit(cp, 0)
            self.assertPrefixMatches(prefix, "conda-lock.yml")
            self.assertFalse(os.path.exists(os.path.join(meta, ".materializer-incomplete")))
            self.assertEqual(harness.cache_tmp(cache), [], "stale temp files were not cleaned")
        finally:
            release.set()
            srv.stop()


if __name__ == "__main__":
    harness.main()
