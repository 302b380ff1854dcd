#!/usr/bin/env python3
"""TEST-ONLY InfluxDB 2 write-API front for a real InfluxDB 1.x server.

Python 3 standard library only. It exists so that allocwatch's InfluxDB 2
client can be tested against a *strict* line-protocol parser (influxd 1.6
from Debian), which rejects malformed lines with a 400 and the parser's
message, where VictoriaMetrics silently drops them.

    POST /api/v2/write?org=O&bucket=B&precision=P   (Authorization: Token T)
        -> POST {upstream}/write?db=B&precision=p    (p: ns->n, us->u, ms, s)
    GET  /health  -> 200 {"status":"pass",...}  (503 {"status":"fail"} when upstream is down)
    GET  /ping    -> 204,  GET /ready -> 200

Behaviour:
  * a missing or different token -> 401 {"code":"unauthorized","message":...}
  * bodies may be Content-Length or Transfer-Encoding: chunked (the Rust
    `influxdb2` crate streams its body, i.e. sends chunked), optionally
    Content-Encoding: gzip (decompressed here, forwarded as plain text)
  * the upstream status code is relayed; 1.x error bodies {"error": "..."} are
    rewritten into InfluxDB 2's shape {"code": ..., "message": "<1.x message verbatim>"}
  * upstream unreachable -> 503 {"code":"unavailable",...}
  * no bucket -> 400; unknown precision -> 400 (1.6 would silently read it as ns)

Not for production: no TLS, no limits beyond --max-body, one token.
"""

import argparse
import gzip
import http.client
import json
import signal
import sys
import threading
import time
import urllib.parse
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PRECISIONS = {"ns": "n", "n": "n", "us": "u", "u": "u", "ms": "ms", "s": "s"}
V2_CODES = {
    400: "invalid",
    401: "unauthorized",
    403: "forbidden",
    404: "not found",
    405: "method not allowed",
    413: "request too large",
    415: "unsupported media type",
    422: "unprocessable entity",
    429: "too many requests",
    500: "internal error",
    502: "bad gateway",
    503: "unavailable",
}
VERSION = "allocwatch-test-proxy/1"


class BodyError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "influx-v2-proxy"
    sys_version = ""

    # ---- plumbing -------------------------------------------------------
    def log_message(self, fmt, *args):
        sys.stderr.write(
            "%s %s %s\n"
            % (time.strftime("%Y-%m-%dT%H:%M:%S"), self.address_string(), fmt % args)
        )
        sys.stderr.flush()

    def _send(self, status, body=b"", content_type="application/json; charset=utf-8", extra=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("X-Influxdb-Version", VERSION)
        self.send_header("X-Influxdb-Build", "OSS")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        if body:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status, message, code=None):
        self.log_message("-> %d %s", status, message)
        self._send(status, {"code": code or V2_CODES.get(status, "internal error"), "message": message})

    def _read_body(self):
        limit = self.server.max_body
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            parts, total = [], 0
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise BodyError(400, "truncated chunked body")
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    # trailers until the empty line
                    while True:
                        t = self.rfile.readline(65537)
                        if t in (b"\r\n", b"\n", b""):
                            break
                    break
                total += size
                if total > limit:
                    self.close_connection = True
                    raise BodyError(413, "request body exceeds %d bytes" % limit)
                parts.append(self.rfile.read(size))
                self.rfile.readline(3)  # CRLF after the chunk
            body = b"".join(parts)
        else:
            n = int(self.headers.get("Content-Length") or 0)
            if n > limit:
                self.close_connection = True
                raise BodyError(413, "request body exceeds %d bytes" % limit)
            body = self.rfile.read(n) if n else b""
        enc = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        if enc == "gzip":
            try:
                body = gzip.decompress(body)
            except (OSError, EOFError, zlib.error) as e:
                raise BodyError(400, "cannot gunzip body: %s" % e)
        elif enc not in ("", "identity"):
            raise BodyError(415, "unsupported Content-Encoding %r" % enc)
        return body

    def _upstream(self, method, path, body=None, headers=None):
        u = self.server.upstream
        conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=self.server.timeout_s)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read(), resp.getheader("Content-Type") or ""
        finally:
            conn.close()

    # ---- routes ---------------------------------------------------------
    def do_GET(self):
        path = urllib.parse.urlsplit(self.path).path
        if path == "/ping":
            self._send(204)
        elif path == "/ready":
            self._send(200, {"status": "ready", "started": self.server.started, "up": "%ds" % int(time.time() - self.server.t0)})
        elif path == "/health":
            try:
                status, _, _ = self._upstream("GET", "/ping")
                ok = status == 204
                msg = "ready for queries and writes" if ok else "upstream /ping answered %d" % status
            except OSError as e:
                ok, msg = False, "upstream influxdb unreachable: %s" % e
            self._send(200 if ok else 503, {
                "name": "influxdb", "message": msg, "status": "pass" if ok else "fail",
                "checks": [], "version": VERSION, "commit": "",
            })
        else:
            self._error(404, "path not found")

    do_HEAD = do_GET

    def do_POST(self):
        parts = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(parts.query)
        try:
            body = self._read_body()
        except BodyError as e:
            self._error(e.status, e.message)
            return
        except ValueError as e:
            self.close_connection = True
            self._error(400, "bad request body framing: %s" % e)
            return
        if parts.path != "/api/v2/write":
            self._error(404, "path not found")
            return
        auth = self.headers.get("Authorization") or ""
        if auth != "Token " + self.server.token:
            self._error(401, "unauthorized access")
            return
        bucket = (q.get("bucket") or [""])[0]
        if not bucket:
            self._error(400, "bucket not specified")
            return
        prec_in = (q.get("precision") or ["ns"])[0]
        prec = PRECISIONS.get(prec_in)
        if prec is None:
            self._error(400, "invalid precision %r: use ns, us, ms or s" % prec_in)
            return
        up_path = "/write?" + urllib.parse.urlencode({"db": bucket, "precision": prec})
        try:
            status, rbody, ctype = self._upstream(
                "POST", up_path, body=body,
                headers={"Content-Type": "text/plain; charset=utf-8", "Content-Length": str(len(body))},
            )
        except OSError as e:
            self._error(503, "upstream influxdb unreachable: %s" % e)
            return
        if 200 <= status < 300:
            self._send(204)
            return
        message = rbody.decode("utf-8", "replace").strip()
        try:
            j = json.loads(message)
            if isinstance(j, dict) and "error" in j:
                message = str(j["error"])
        except ValueError:
            pass
        if status == 404 and "database not found" in message:
            message = "bucket %r not found (%s)" % (bucket, message)
        self._error(status, message or "upstream answered %d" % status)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT to listen on (default 127.0.0.1:0)")
    ap.add_argument("--upstream", required=True, help="InfluxDB 1.x base URL, e.g. http://127.0.0.1:8086")
    ap.add_argument("--token", required=True, help="the only token accepted")
    ap.add_argument("--max-body", type=int, default=64 << 20)
    ap.add_argument("--timeout", type=float, default=30.0, help="upstream timeout, seconds")
    a = ap.parse_args()
    host, _, port = a.listen.rpartition(":")
    srv = ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler)
    srv.daemon_threads = True
    srv.upstream = urllib.parse.urlsplit(a.upstream)
    srv.token = a.token
    srv.max_body = a.max_body
    srv.timeout_s = a.timeout
    srv.t0 = time.time()
    srv.started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    def stop(signum, frame):
        threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    sys.stderr.write("influx_v2_proxy listening on http://%s:%d -> %s\n" % (srv.server_address[0], srv.server_address[1], a.upstream))
    sys.stderr.flush()
    srv.serve_forever(poll_interval=0.2)
    srv.server_close()


if __name__ == "__main__":
    main()
