#!/usr/bin/python3
"""The no-op fast path (a prefix already materialized from the same lock is left alone, and
anything that changes the input or damages the record of completion makes it reinstall), and the
--trace timeline (Chrome trace-event JSON with download, extract and stage spans)."""

import json
import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import harness  # noqa: E402


class NoopAndTraceTest(harness.MaterializerTestCase):

    def setUp(self):
        super().setUp()
        self.srv = harness.HttpServer(self.fx.root).start()
        self.lock = self.fx.render_lock("conda-lock.yml", self.srv.url + "/channel", self.tmp)
        self.prefix, self.cache = self.path("env"), self.path("cache")

    def tearDown(self):
        self.srv.stop()
        super().tearDown()

    def install(self, *extra):
        report = self.path("r.json")
        cp = super().install(self.lock, self.prefix, self.cache, "--report", report, *extra)
        self.assertExit(cp, 0)
        return cp, harness.read_json(report)

    def test_second_install_is_a_noop_until_the_input_or_prefix_changes(self):
        _, rep = self.install()
        self.assertFalse(rep["noop"])
        self.srv.reset_counts()
        cp, rep = self.install()
        self.assertTrue(rep["noop"], cp.stderr)
        self.assertIn("nothing to do", cp.stderr)
        self.assertEqual(self.srv.count(), 0)
        self.assertPrefixMatches(self.prefix, "conda-lock.yml")

        # --force reinstalls (from the cache: still no network).
        _, rep = self.install("--force")
        self.assertFalse(rep["noop"])
        self.assertEqual(self.srv.count(), 0)

        # A missing conda-meta record means the prefix is not what the stamp says.
        meta = os.path.join(self.prefix, "conda-meta")
        victim = sorted(f for f in os.listdir(meta) if f.endswith(".json"))[0]
        os.unlink(os.path.join(meta, victim))
        _, rep = self.install()
        self.assertFalse(rep["noop"])
        self.assertTrue(os.path.exists(os.path.join(meta, victim)))

        # An interrupted run leaves the incomplete marker: never a no-op.
        with open(os.path.join(meta, ".materializer-incomplete"), "w") as fh:
            fh.write("interrupted\n")
        _, rep = self.install()
        self.assertFalse(rep["noop"])
        self.assertFalse(os.path.exists(os.path.join(meta, ".materializer-incomplete")))

        # Another lock (even one byte) or other options: reinstall.
        with open(self.lock, "a") as fh:
            fh.write("# edited\n")
        _, rep = self.install()
        self.assertFalse(rep["noop"])
        _, rep = self.install("--link-mode", "copy")
        self.assertFalse(rep["noop"])
        _, rep = self.install("--link-mode", "copy")
        self.assertTrue(rep["noop"])

    def test_trace_is_chrome_trace_json_with_a_lane_per_worker(self):
        trace = self.path("trace.json")
        self.install("--trace", trace, "--jobs", "2")
        with open(trace) as fh:
            doc = json.load(fh)
        events = doc["traceEvents"]
        spans = [e for e in events if e["ph"] == "X"]
        names = {e["name"] for e in events if e["ph"] == "M"}
        self.assertIn("thread_name", names)
        cats = {e["cat"] for e in spans}
        self.assertTrue({"download", "extract", "stage"} <= cats, cats)
        n = len(self.fx.manifest["packages"])
        self.assertEqual(len([e for e in spans if e["cat"] == "download"]), n)
        self.assertEqual(len([e for e in spans if e["cat"] == "extract"]), n)
        for e in spans:
            self.assertGreaterEqual(e["ts"], 0)
            self.assertGreater(e["dur"], 0)
        # Download lanes never overlap.
        lanes = {}
        for e in sorted((e for e in spans if e["cat"] == "download"), key=lambda e: e["ts"]):
            self.assertLessEqual(lanes.get(e["tid"], 0), e["ts"])
            lanes[e["tid"]] = e["ts"] + e["dur"]
        # The disk-bound half (archive fsync + rename, manifest fsync + rename) of every package
        # runs on the committer's own lane, after its extraction, never on a worker lane.
        lane_names = {e["tid"]: e["args"]["name"] for e in events
                      if e["ph"] == "M" and e["name"] == "thread_name"}
        commits = [e for e in spans if e["cat"] == "commit"]
        self.assertEqual(len(commits), n)
        self.assertEqual({lane_names[e["tid"]] for e in commits}, {"commit (fsync, rename)"})
        self.assertFalse([e for e in spans if e["cat"] == "publish"])
        extract_end = {e["name"]: e["ts"] + e["dur"] for e in spans if e["cat"] == "extract"}
        for e in commits:
            self.assertGreaterEqual(e["ts"], extract_end[e["name"]], e["name"])
        self.assertTrue(all(lane_names[e["tid"]].startswith("worker ")
                            for e in spans if e["cat"] == "extract"))


    def test_extraction_takes_the_largest_ready_package_first(self):
        # conda-lock v1 gives no sizes, so the order comes from the archives themselves. Every
        # archive is cached and no tree is: all packages are ready at once, and one worker
        # must extract them largest first (the first may start before the others are queued).
        self.install()
        trees = os.path.join(self.cache, "v1", "trees")
        for name in os.listdir(trees):
            shutil.rmtree(os.path.join(trees, name))
        self.prefix = self.path("env2")
        trace = self.path("trace.json")
        _, rep = self.install("--trace", trace, "--jobs", "1")
        archives = os.path.join(self.cache, "v1", "archives")
        size = {}
        for p in rep["packages"]:
            key = p["key"]
            match = [a for a in os.listdir(archives) if a.startswith(key)]
            self.assertEqual(len(match), 1, (key, match))
            size[p["name"]] = os.path.getsize(os.path.join(archives, match[0]))
        with open(trace) as fh:
            spans = [e for e in json.load(fh)["traceEvents"]
                     if e["ph"] == "X" and e["cat"] == "extract"]
        order = [e["name"] for e in sorted(spans, key=lambda e: e["ts"])]
        self.assertEqual(sorted(order), sorted(size))
        in_lock_order = [size[p["name"]] for p in rep["packages"]]
        self.assertNotEqual(in_lock_order, sorted(in_lock_order, reverse=True),
                            "fixture sizes already descend in lock order: the test shows nothing")
        got = [size[n] for n in order[1:]]
        self.assertEqual(got, sorted(got, reverse=True), list(zip(order, [size[n] for n in order])))


if __name__ == "__main__":
    harness.main()
