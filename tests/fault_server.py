#!/usr/bin/python3
"""A fault-injecting HTTP/1.1 server (stdlib only), for tests and for trying faults by hand.

It serves a directory like a plain static file server (keep-alive, HEAD, byte ranges with
`Range`/`If-Range`, `ETag`, `Last-Modified`, `Accept-Ranges: bytes`) and, per URL path, plays a
script of faults set by the test: each request for the path takes the next step of its script;
once the script is used up the path is served normally. A step with "repeat": true is never used
up. A step with "host": "127.0.0.1" applies only to requests whose Host is that name (other
hosts get the file), so a redirect from 127.0.0.1 to localhost on the same server can be played.

Steps (JSON objects; keys combine where it makes sense, e.g. reset_after + rate):
  {"status": 503}                       that status with a short text body; with
      "retry_after": 2                  Retry-After in seconds, or
      "retry_after_date": 2             Retry-After as an HTTP-date this many seconds ahead
  {"redirect": "/other" | "http://localhost:PORT/x", "status": 302}
  {"html": true}                        200 with a text/html error page instead of the file
  {"reset_after": K}                    headers (full Content-Length), K body bytes, then RST
  {"short_after": K}                    K body bytes, then a clean close (fewer than announced)
  {"stall_after": K, "stall_s": S}      K body bytes, then silence with the connection open for
                                        S seconds (default: until the client gives up)
  {"rate": B}                           body at B bytes per second
  {"flip": OFFSET}                      the byte at OFFSET of the file is inverted
  {"ignore_range": true}                Range is ignored: always 200 with the whole file
  {"etag": "\"v2\""}                    this ETag instead of the file's (If-Range compares it,
                                        so a client holding the old one gets the whole file)
  {"no_validators": true}               no ETag, no Last-Modified
  {"content_range_shift": D}            a Range request gets a 206 whose range (and bytes)
                                        start D bytes away from the one asked for

Server options: `backlog` (the listen(2) queue; 1 = a server that drops SYNs under a burst) and
`accept_delay` (seconds slept before each accept: a busy server).

Every request is logged: {"conn", "method", "path", "host", "range", "if_range",
"authorization" (present or not, never its value), "status", "bytes" (body bytes sent),
"step" (the fault played, or null), "t" (monotonic seconds)}. `max_connections` is the most
connections open at once.

In a test (same process):
    srv = FaultServer(root).start()
    srv.set_rules({"/channel/noarch/x.conda": [{"status": 503}, {"reset_after": 5000}]})
    ... run the client against srv.url ...
    srv.requests("/channel/noarch/x.conda"); srv.max_connections; srv.stop()

By hand (benchmarks, debugging):
    /usr/bin/python3 tests/fault_server.py --root DIR [--port 8000] [--backlog 1]
        [--accept-delay 0.05] [--rules rules.json]
then, while it runs (curl or any client):
    PUT  /_fault/rules      body {"/path": [steps...]}: replaces every script
    POST /_fault/rules      body {"/path": [steps...]}: sets the scripts of these paths
    GET  /_fault/log        the request log (JSON)
    GET  /_fault/stats      {"max_connections": N, "open_connections": N, "requests": N}
    POST /_fault/reset      clears scripts, log and counters
"""

import argparse
import email.utils
import http.server
import io
import json
import os
import select
import socket
import socketserver
import struct
import sys
import threading
import time
import urllib.parse

CONTROL = "/_fault/"
CHUNK = 64 * 1024
HTML_PAGE = (b"<!DOCTYPE html>\n<html><head><title>Service temporarily unavailable</title></head>"
             b"<body><h1>Sorry</h1><p>The mirror is being updated. Try again later.</p>"
             b"</body></html>\n")


class FaultServer:
    def __init__(self, root, host="127.0.0.1", port=0, backlog=128, accept_delay=0.0):
        self.root = os.path.abspath(root)
        self.lock = threading.Lock()
        self.rules = {}          # path -> list of steps (GUARDED_BY lock)
        self.log = []            # request records (GUARDED_BY lock)
        self.open_connections = 0
        self.max_connections = 0
        self.next_conn = 0
        self.stopping = threading.Event()
        server = self

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            request_queue_size = backlog  # listen(2) backlog, used by server_activate()
            allow_reuse_address = True

            def get_request(self):
                if accept_delay > 0:
                    time.sleep(accept_delay)
                return self.socket.accept()

        class Handler(FaultHandler):
            fault_server = server

        self.httpd = Server((host, port), Handler)
        self.host = host
        self.port = self.httpd.server_address[1]
        self.url = f"http://{host}:{self.port}"
        self.thread = None

    # --- life cycle ---
    def start(self):
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.stopping.set()  # ends stalls
        if self.thread is not None:
            self.httpd.shutdown()
            self.thread.join()
            self.thread = None
        self.httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def url_for(self, path, host=None, userinfo=None):
        """http://[userinfo@]host:port/path (host defaults to the bound address)."""
        auth = f"{userinfo}@" if userinfo else ""
        return f"http://{auth}{host or self.host}:{self.port}{path}"

    # --- scripts and log ---
    def set_rules(self, rules):
        """Replaces every script: {path: [step, ...]}."""
        with self.lock:
            self.rules = {p: [dict(s) for s in steps] for p, steps in rules.items()}

    def add_rules(self, rules):
        with self.lock:
            for p, steps in rules.items():
                self.rules[p] = [dict(s) for s in steps]

    def reset(self):
        with self.lock:
            self.rules.clear()
            self.log.clear()
            self.max_connections = self.open_connections

    def requests(self, path=None):
        """Log records (copies), all or those for one path, in arrival order (a record is
        written when its answer ends, so the log itself is in order of completion)."""
        with self.lock:
            recs = [dict(r) for r in self.log if path is None or r["path"] == path]
        return sorted(recs, key=lambda r: r["t"])

    def stats(self):
        with self.lock:
            return {"max_connections": self.max_connections,
                    "open_connections": self.open_connections, "requests": len(self.log)}

    def _take_step(self, path, host):
        with self.lock:
            steps = self.rules.get(path)
            if not steps:
                return None
            step = steps[0]
            if step.get("host") and step["host"] != host:
                return None
            if not step.get("repeat"):
                steps.pop(0)
            return step

    def _record(self, rec):
        with self.lock:
            self.log.append(rec)

    def _connection(self, delta):
        with self.lock:
            self.open_connections += delta
            if delta > 0:
                self.next_conn += 1
                self.max_connections = max(self.max_connections, self.open_connections)
                return self.next_conn
            return None


def http_date(ts):
    return email.utils.formatdate(ts, usegmt=True)


class FaultHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fault_server = None  # set by the FaultServer's subclass

    def log_message(self, *args):
        pass

    def setup(self):
        super().setup()
        self.conn_id = self.fault_server._connection(+1)
        self.aborted = False

    def finish(self):
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.fault_server._connection(-1)

    # --- entry points ---
    def do_GET(self):
        self._serve(head_only=False)

    def do_HEAD(self):
        self._serve(head_only=True)

    def do_PUT(self):
        self._control()

    def do_POST(self):
        self._control()

    # --- control endpoints ---
    def _control(self):
        srv = self.fault_server
        path = urllib.parse.urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if path == CONTROL + "rules":
            rules = json.loads(body or b"{}")
            (srv.set_rules if self.command == "PUT" else srv.add_rules)(rules)
            return self._send_json({"ok": True})
        if path == CONTROL + "reset":
            srv.reset()
            return self._send_json({"ok": True})
        self._simple(404, b"no such control endpoint\n")

    def _send_json(self, obj, status=200):
        data = json.dumps(obj, indent=1).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _simple(self, status, body, ctype="text/plain", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        return len(body) if self.command != "HEAD" else 0

    # --- serving ---
    def _serve(self, head_only):
        srv = self.fault_server
        split = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(split.path)
        if path.startswith(CONTROL):
            if path == CONTROL + "log":
                return self._send_json(srv.requests())
            if path == CONTROL + "stats":
                return self._send_json(srv.stats())
            return self._simple(404, b"no such control endpoint\n")
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
        step = srv._take_step(path, host)
        rec = {"conn": self.conn_id, "method": self.command, "path": path, "host": host,
               "range": self.headers.get("Range"), "if_range": self.headers.get("If-Range"),
               "authorization": self.headers.get("Authorization") is not None,
               "status": None, "bytes": 0, "step": step, "t": time.monotonic()}
        try:
            rec["status"], rec["bytes"] = self._answer(path, step or {}, head_only)
        finally:
            srv._record(rec)

    def _answer(self, path, step, head_only):
        """Sends the response; returns (status, body bytes sent)."""
        if "redirect" in step:
            status = int(step.get("status", 302))
            return status, self._simple(status, b"moved\n", extra=[("Location",
                                                                     step["redirect"])])
        if "status" in step:
            status = int(step["status"])
            extra = []
            if "retry_after" in step:
                extra.append(("Retry-After", str(step["retry_after"])))
            if "retry_after_date" in step:
                extra.append(("Retry-After", http_date(time.time() + step["retry_after_date"])))
            return status, self._simple(status, f"{status} from the fault server\n".encode(),
                                        extra=extra)
        if step.get("html"):
            return 200, self._simple(200, HTML_PAGE, "text/html; charset=utf-8")

        full = os.path.normpath(os.path.join(self.fault_server.root, path.lstrip("/")))
        if not (full + os.sep).startswith(self.fault_server.root + os.sep) or \
                not os.path.isfile(full):
            return 404, self._simple(404, b"not found\n")
        st = os.stat(full)
        size = st.st_size
        etag = step.get("etag") or '"%x-%x"' % (size, st.st_mtime_ns)
        last_modified = http_date(st.st_mtime)
        validators = [] if step.get("no_validators") else [("ETag", etag),
                                                          ("Last-Modified", last_modified)]

        status, first, last = 200, 0, size - 1
        want = self._wanted_range(size, etag, last_modified, step)
        if want == "unsatisfiable":
            return 416, self._simple(416, b"", extra=[("Content-Range", f"bytes */{size}")])
        if want is not None:
            status, (first, last) = 206, want
            shift = int(step.get("content_range_shift", 0))
            first = min(max(0, first + shift), last)
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(last - first + 1))
        self.send_header("Accept-Ranges", "bytes")
        for k, v in validators:
            self.send_header(k, v)
        if status == 206:
            self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        self.end_headers()
        if head_only:
            return status, 0
        return status, self._send_body(full, first, last + 1, step)

    def _wanted_range(self, size, etag, last_modified, step):
        """(first, last) for a satisfiable single Range the server honours, None for the whole
        file, "unsatisfiable" for 416."""
        rng = self.headers.get("Range")
        if not rng or step.get("ignore_range") or not rng.startswith("bytes=") or "," in rng:
            return None
        if_range = self.headers.get("If-Range")
        if if_range is not None and if_range not in (etag, last_modified):
            return None  # the client's copy is of another version: send it all
        a, _, b = rng[6:].strip().partition("-")
        try:
            if a == "":
                first, last = max(0, size - int(b)), size - 1  # suffix range
            else:
                first, last = int(a), (int(b) if b else size - 1)
        except ValueError:
            return None
        if first >= size:
            return "unsatisfiable"
        return first, min(last, size - 1)

    def _send_body(self, full, start, end, step):
        """Sends bytes [start, end) of the file as the step says; returns bytes sent."""
        limit = end - start  # the fault's K counts this response's body bytes
        for key in ("reset_after", "short_after", "stall_after"):
            if key in step:
                limit = min(limit, max(0, int(step[key])))
        rate = step.get("rate")
        flip = step.get("flip")
        sent = 0
        with open(full, "rb") as fh:
            fh.seek(start)
            while sent < limit:
                n = min(CHUNK, limit - sent)
                if rate:
                    n = min(n, max(1, int(rate) // 20))
                data = bytearray(fh.read(n))
                if not data:
                    break
                if flip is not None and start + sent <= flip < start + sent + len(data):
                    data[flip - start - sent] ^= 0xFF
                try:
                    self.wfile.write(data)
                except OSError:
                    self.close_connection = True
                    return sent
                sent += len(data)
                if rate:
                    time.sleep(len(data) / float(rate))
                if self.fault_server.stopping.is_set():
                    break
        if "reset_after" in step:
            self._reset()
        elif "short_after" in step:
            self.close_connection = True
        elif "stall_after" in step:
            self._stall(step.get("stall_s"))
            self.close_connection = True
        return sent

    def _reset(self):
        """Ends the connection with a TCP RST (SO_LINGER 0), not a clean close."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.wfile.close()
            self.rfile.close()
            self.connection.close()  # the last reference: the kernel sends RST
        except OSError:
            pass
        # The request loop flushes and closes these after the method returns.
        self.wfile, self.rfile = io.BytesIO(), io.BytesIO()

    def _stall(self, seconds):
        """Silence with the connection open, until the client closes it, `seconds` pass or the
        server stops."""
        deadline = None if seconds is None else time.monotonic() + float(seconds)
        while not self.fault_server.stopping.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                return
            try:
                ready, _, _ = select.select([self.connection], [], [], 0.05)
                if ready and not self.connection.recv(1, socket.MSG_PEEK):
                    return  # the client closed it
            except OSError:
                return


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", required=True, help="directory to serve")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    ap.add_argument("--backlog", type=int, default=128, help="listen(2) backlog")
    ap.add_argument("--accept-delay", type=float, default=0.0,
                    help="seconds slept before each accept()")
    ap.add_argument("--rules", help="JSON file {path: [steps...]} to start with")
    args = ap.parse_args(argv)
    srv = FaultServer(args.root, args.host, args.port, args.backlog, args.accept_delay)
    if args.rules:
        with open(args.rules, encoding="utf-8") as fh:
            srv.set_rules(json.load(fh))
    srv.start()
    print(f"fault_server: serving {srv.root} at {srv.url} (backlog {args.backlog}); "
          f"control at {srv.url}{CONTROL}rules|log|stats|reset; Ctrl-C stops", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
