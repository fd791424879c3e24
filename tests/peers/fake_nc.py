#!/usr/bin/env python3
"""Fake Nextcloud for Lyre's tests: serves AppAPI's two HaRP callbacks (harp-compat.md §3.6,
§3.8, Appendix C). Python standard library only (no venv needed).

Run:  python3 fake_nc.py [--config FILE] [--tls-cert PEM --tls-key PEM]
      Listens on 127.0.0.1:0 and prints `PORT <n>` as its first stdout line (flushed).
      The initial config comes from --config FILE or the env var FAKE_NC_CONFIG (JSON text).
      Stop it with SIGTERM/SIGKILL.

Nextcloud endpoints (any path prefix before /index.php is accepted, e.g. /sub/index.php/...):
  GET .../index.php/apps/app_api/harp/exapp-meta?appId=<id>
      harp-shared-key must equal config.shared_key, else
      401 {"message":"Harp shared key is not valid"}.
      <id> in config.apps (case-sensitive, like Nextcloud) -> 200 JSON record; else the same
      401 (Nextcloud answers 401 for unknown apps on purpose).
  GET .../index.php/apps/app_api/harp/user-info?appId=<id>
      key and app checked as above (401 on failure). The user comes from the LAST
      `oc_sessionPassphrase` cookie (over all Cookie headers) looked up in config.users,
      else the Authorization header value looked up in config.auth, else anonymous.
      Unknown passphrase/authorization -> anonymous. Answer: 200 {"user_id": "...",
      "access_level": 0|1|2}; anonymous is {"user_id": "", "access_level": 0}.

Config (JSON object; every key optional):
  shared_key   string, default "fake-key"
  apps         {appId: record}  record is sent as-is (any JSON value), so invalid shapes can
               be tested too
  users        {passphrase: {"user_id": str, "access_level": int}}
  auth         {authorization header value: {"user_id": str, "access_level": int}}
  override     {key: {"status": int, "body": str, "delay": seconds}}  replaces the normal
               answer; key is "<endpoint>:<appId>" or "<endpoint>" (the former wins);
               endpoint is "exapp-meta" or "user-info". "body" defaults to "{}".
  delay        {endpoint: seconds}  sleep before answering (timeouts)
  framing      "length" (default) | "chunked" | "close" (no length, close after the body)
  keep_alive   bool, default true; false adds `Connection: close` and closes
  close_reused int, default 0: the next N requests that arrive on an already used
               connection are read and then the connection is closed without an answer
               (the "server closed my pooled connection" race)

Control endpoints (never counted, never key-checked):
  POST /_fake/config           body = JSON config; replaces it (`?merge=1`: top-level merge)
  GET  /_fake/counts           {"exapp-meta": {appId: n}, "user-info": {appId: n},
                                "connections": n, "requests": n}; connections = TCP
                                connections that carried at least one Nextcloud request
  GET  /_fake/last?endpoint=E  the last request to E: {"method", "target", "path", "query",
                                "headers": [[name, value], ...]} with names as received, in
                                arrival order; 404 if none yet
  POST /_fake/reset            zero the counters and forget the last requests
"""
import argparse
import copy
import json
import os
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

ENDPOINTS = {
    "/index.php/apps/app_api/harp/exapp-meta": "exapp-meta",
    "/index.php/apps/app_api/harp/user-info": "user-info",
}
BAD_KEY = b'{"message":"Harp shared key is not valid"}'
MAX_CONTROL_BODY = 1 << 20  # cap of a POST /_fake/config body

LOCK = threading.Lock()
CONFIG = {}
COUNTS = {"exapp-meta": {}, "user-info": {}, "connections": 0, "requests": 0}
LAST = {}


def set_config(new, merge=False):
    global CONFIG
    with LOCK:
        CONFIG = {**CONFIG, **new} if merge else dict(new)


def cfg(key, default=None):
    with LOCK:
        return copy.deepcopy(CONFIG.get(key, default))


def endpoint_of(path):
    for suffix, name in ENDPOINTS.items():
        if path.endswith(suffix):
            return name
    return None


def pass_cookie(headers):
    """The last oc_sessionPassphrase over all Cookie headers (HAProxy req.cook)."""
    value = None
    for name, line in headers:
        if name.lower() != "cookie":
            continue
        for part in line.split(";"):
            k, sep, v = part.strip().partition("=")
            if sep and k == "oc_sessionPassphrase":
                value = v
    return value


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeNextcloud/1"

    def setup(self):
        super().setup()
        self.requests_seen = 0
        self.counted = False
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    def log_message(self, fmt, *args):
        pass

    # --- plumbing -----------------------------------------------------------------------
    def send_body(self, status, body, content_type="application/json"):
        framing = cfg("framing", "length")
        keep = cfg("keep_alive", True) and framing != "close"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if framing == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
        elif framing != "close":
            self.send_header("Content-Length", str(len(body)))
        if not keep:
            self.send_header("Connection", "close")
        self.end_headers()
        if framing == "chunked":
            for i in range(0, len(body), 7):  # small chunks exercise the decoder
                piece = body[i:i + 7]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.wfile.write(body)
        self.wfile.flush()
        self.close_connection = not keep

    def send_json(self, status, obj):
        self.send_body(status, json.dumps(obj).encode())

    def control_reply(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    # --- dispatch -----------------------------------------------------------------------
    def do_GET(self):
        self.requests_seen += 1
        url = urlsplit(self.path)
        if url.path.startswith("/_fake/"):
            return self.control_get(url)
        endpoint = endpoint_of(url.path)
        if endpoint is None:
            return self.control_reply(404, {"message": "not a HaRP callback"})
        self.nextcloud(endpoint, url)

    def do_POST(self):
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_CONTROL_BODY:
            return self.control_reply(413, {"error": "body too large"})
        body = self.rfile.read(length)
        if url.path == "/_fake/config":
            try:
                new = json.loads(body or b"{}")
            except ValueError as e:
                return self.control_reply(400, {"error": str(e)})
            set_config(new, merge=parse_qs(url.query).get("merge") == ["1"])
            return self.control_reply(200, {"ok": True})
        if url.path == "/_fake/reset":
            with LOCK:
                COUNTS.update({"exapp-meta": {}, "user-info": {}, "connections": 0,
                               "requests": 0})
                LAST.clear()
            return self.control_reply(200, {"ok": True})
        self.control_reply(404, {"error": "unknown control endpoint"})

    def control_get(self, url):
        if url.path == "/_fake/counts":
            with LOCK:
                snapshot = copy.deepcopy(COUNTS)
            return self.control_reply(200, snapshot)
        if url.path == "/_fake/last":
            endpoint = parse_qs(url.query).get("endpoint", [""])[0]
            with LOCK:
                last = copy.deepcopy(LAST.get(endpoint))
            if last is None:
                return self.control_reply(404, {"error": f"no {endpoint} request yet"})
            return self.control_reply(200, last)
        self.control_reply(404, {"error": "unknown control endpoint"})

    # --- the fake Nextcloud -------------------------------------------------------------
    def nextcloud(self, endpoint, url):
        app_id = parse_qs(url.query, keep_blank_values=True).get("appId", [""])[0]
        headers = list(self.headers.items())
        with LOCK:
            COUNTS["requests"] += 1
            COUNTS[endpoint][app_id] = COUNTS[endpoint].get(app_id, 0) + 1
            if not self.counted:
                COUNTS["connections"] += 1
            LAST[endpoint] = {"method": self.command, "target": self.path, "path": url.path,
                              "query": url.query, "headers": [[k, v] for k, v in headers]}
            drop = self.requests_seen > 1 and CONFIG.get("close_reused", 0) > 0
            if drop:
                CONFIG["close_reused"] -= 1
        self.counted = True
        if drop:
            self.close_connection = True
            return
        delay = cfg("delay", {}).get(endpoint, 0)
        overrides = cfg("override", {})
        override = overrides.get(f"{endpoint}:{app_id}", overrides.get(endpoint))
        if override is not None:
            time.sleep(delay + override.get("delay", 0))
            return self.send_body(override.get("status", 200),
                                  override.get("body", "{}").encode())
        time.sleep(delay)
        apps = cfg("apps", {})
        if self.headers.get("harp-shared-key") != cfg("shared_key", "fake-key") \
                or app_id not in apps:
            return self.send_body(401, BAD_KEY)
        if endpoint == "exapp-meta":
            return self.send_json(200, apps[app_id])
        self.send_json(200, self.user_of(headers))

    def user_of(self, headers):
        anonymous = {"user_id": "", "access_level": 0}
        passphrase = pass_cookie(headers)
        if passphrase:
            user = cfg("users", {}).get(passphrase)
            if user is not None:
                return user
        authorization = self.headers.get("Authorization")
        if authorization:
            return cfg("auth", {}).get(authorization, anonymous)
        return anonymous


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # Clients that reset, time out or fail the TLS handshake are part of the tests.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    args = ap.parse_args()
    initial = {}
    if args.config:
        with open(args.config, encoding="utf-8") as f:
            initial = json.load(f)
    elif os.environ.get("FAKE_NC_CONFIG"):
        initial = json.loads(os.environ["FAKE_NC_CONFIG"])
    set_config(initial)
    server = Server(("127.0.0.1", 0), Handler)
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        # Handshake in the connection's thread (Handler.setup), not in the accept loop.
        server.socket = ctx.wrap_socket(server.socket, server_side=True,
                                        do_handshake_on_connect=False)
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
