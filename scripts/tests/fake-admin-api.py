#!/usr/bin/env python3
"""A stand-in for the control plane's admin API, for the RBAC script tests.

Serves GET /admin/api/v1/resources on 127.0.0.1 (a free port) with the JSON array in
RESOURCES_FILE, exactly as control-plane/src/admin/resources.rs shapes it, behind the same
check as control-plane/src/admin/mod.rs: `Authorization: Bearer <token>`, else 401 with the
admin API's error body. Every request is logged to LOG_FILE as
"<method> <path> auth=<ok|missing|invalid>" (never the token).

    FAKE_ADMIN_TOKEN=... fake-admin-api.py RESOURCES_FILE PORT_FILE LOG_FILE

Writes the port to PORT_FILE once it listens; runs until killed.
"""

import hmac
import http.server
import json
import os
import sys

RESOURCES_FILE, PORT_FILE, LOG_FILE = sys.argv[1:4]
TOKEN = os.environ["FAKE_ADMIN_TOKEN"]


def error_body(status, reason, message):
    return json.dumps({"error": {"code": reason, "message": message, "status": status}}).encode()


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def send(self, status, body, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/healthz":
            self.send(200, b"ok", "text/plain")
            return
        header = self.headers.get("Authorization")
        if header is None or not header.startswith("Bearer "):
            auth = "missing"
        elif hmac.compare_digest(header[len("Bearer "):].strip().encode(), TOKEN.encode()):
            auth = "ok"
        else:
            auth = "invalid"
        with open(LOG_FILE, "a", encoding="utf-8") as log:
            log.write("%s %s auth=%s\n" % (self.command, self.path, auth))
        if auth == "missing":
            self.send(401, error_body(401, "Unauthorized",
                                      "missing admin token: send 'Authorization: Bearer <AIPROXY_ADMIN_TOKEN>'"))
        elif auth == "invalid":
            self.send(401, error_body(401, "Unauthorized", "invalid admin token"))
        elif self.path == "/admin/api/v1/resources":
            with open(RESOURCES_FILE, "rb") as f:
                self.send(200, f.read())
        else:
            self.send(404, error_body(404, "Not Found",
                                      "No admin API route %s: see /admin/api/v1/openapi.json" % self.path))


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(PORT_FILE + ".tmp", "w", encoding="utf-8") as f:
    f.write(str(server.server_address[1]))
os.replace(PORT_FILE + ".tmp", PORT_FILE)
server.serve_forever()
