#!/usr/bin/env python3
"""A stub of the servers real clients talk to, for credlock's integration tests.

Modes:
  bearer    a Kubernetes API server: every request needs `Authorization: Bearer <token>`;
            `/api` answers an APIVersions object.
  git       a smart-HTTP git server for one bare repository (`--repo`): HTTP Basic, the
            password being the token; a missing or refused one gets 401 with
            `WWW-Authenticate: Basic` so that git asks its credential helper.
  registry  a Docker registry (v2 API) with HTTP Basic, serving one manifest for any name.

A token is refused when it is listed in the file `--reject-file` (read on every request, so a
test can add the token it just saw rejected). Every token presented is appended, one per
line, to `--log`. The port is printed on the first line of stdout. The server exits by itself
after `--lifetime` seconds, in case the test that started it could not kill it.
"""

import argparse
import base64
import http.server
import hashlib
import json
import os
import ssl
import subprocess
import sys
import threading

LOG_LOCK = threading.Lock()


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--mode", choices=["bearer", "git", "registry"], required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--reject-file")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--repo")
    p.add_argument("--lifetime", type=float, default=180.0)
    return p.parse_args()


ARGS = parse_args()


def refused(token):
    if not token:
        return True
    if ARGS.reject_file and os.path.exists(ARGS.reject_file):
        with open(ARGS.reject_file, encoding="utf-8") as f:
            if token in (line.strip() for line in f):
                return True
    return False


def log_token(token):
    with LOG_LOCK, open(ARGS.log, "a", encoding="utf-8") as f:
        f.write(token + "\n")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def token(self):
        header = self.headers.get("Authorization", "")
        if ARGS.mode == "bearer":
            return header[len("Bearer "):] if header.startswith("Bearer ") else None
        if not header.startswith("Basic "):
            return None
        try:
            user_pass = base64.b64decode(header[len("Basic "):]).decode("utf-8")
        except ValueError:
            return None
        return user_pass.partition(":")[2]

    def send(self, status, body, content_type="application/json", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def authorized(self):
        token = self.token()
        if token is not None:
            log_token(token)
        if refused(token):
            challenge = "Bearer" if ARGS.mode == "bearer" else 'Basic realm="stub"'
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            del body
            self.send(401, b'{"message":"unauthorized"}', headers=[("WWW-Authenticate", challenge)])
            return False
        return True

    def do_GET(self):
        if not self.authorized():
            return
        if ARGS.mode == "bearer":
            self.send(200, json.dumps({
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:443"}
                ],
            }).encode())
        elif ARGS.mode == "git" and self.path.endswith("/info/refs?service=git-upload-pack"):
            refs = subprocess.run(
                ["git", "upload-pack", "--stateless-rpc", "--advertise-refs", ARGS.repo],
                check=True, capture_output=True, timeout=30,
            ).stdout
            service = b"# service=git-upload-pack\n"
            head = b"%04x" % (len(service) + 4) + service + b"0000"
            self.send(200, head + refs, "application/x-git-upload-pack-advertisement")
        elif ARGS.mode == "registry" and self.path == "/v2/":
            self.send(200, b"{}")
        elif ARGS.mode == "registry" and "/manifests/" in self.path:
            manifest = json.dumps({
                "schemaVersion": 2,
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {
                    "mediaType": "application/vnd.docker.container.image.v1+json",
                    "size": 2,
                    "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
                },
                "layers": [],
            }).encode()
            digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
            self.send(200, manifest, "application/vnd.docker.distribution.manifest.v2+json",
                      [("Docker-Content-Digest", digest)])
        elif ARGS.mode == "registry" and "/blobs/sha256:44136fa3" in self.path:
            # The image configuration the manifest names: `{}` (whose digest that is).
            self.send(200, b"{}", "application/octet-stream")
        else:
            self.send(404, b'{"message":"not found"}')

    do_HEAD = do_GET

    def do_POST(self):
        if not self.authorized():
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if ARGS.mode == "git" and self.path.endswith("/git-upload-pack"):
            out = subprocess.run(
                ["git", "upload-pack", "--stateless-rpc", ARGS.repo],
                input=body, check=True, capture_output=True, timeout=30,
            ).stdout
            self.send(200, out, "application/x-git-upload-pack-result")
        else:
            self.send(404, b'{"message":"not found"}')


def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    if ARGS.cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(ARGS.cert, ARGS.key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Timer(ARGS.lifetime, lambda: os._exit(0)).start()
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
