#!/usr/bin/python3
"""A registry and web server on loopback that fails on purpose, for the
network error cases of sdme-import (scenario 39).

    faultsrv.py PORT DIR ARCH [BASE_TAR]

It serves one small image (a gzip'd layer of 512 KiB, its config and an OCI
manifest, for linux/ARCH) under every repository, and the layer as a plain
tarball under /files/; with BASE_TAR, repositories base/* have an image
whose one layer is that (uncompressed) tarball instead. The first path part below /v2/ or /files/ picks the
fault; the next part is a free name, so that each test counts its requests
on its own:

    ok        no fault
    base      no fault, the BASE_TAR image
    flaky503  the first 2 requests get 503 with Retry-After: 1, then no fault
    flaky429  the same with 429
    down503   every request gets 503 with Retry-After: 1
    down429   every request gets 429 with Retry-After: 1
    forbidden every request gets 403
    liar      any manifest reference gets the manifest (so a pin on other
              bytes does not match)
    badcfg    the config blob's bytes differ from its digest (same size)
    trunc     the layer announces its full Content-Length, sends half, closes
    stall     the layer sends half its bytes, creates DIR/stalled, then
              keeps the connection open without sending anything
    evilstall a two-layer image: the second layer stalls as above, the
              first (a tarball with an entry "../e2e39-escape") is sent
              once the second has stalled

On PORT+1 it listens without ever accepting, its accept queue filled by
its own connections, so that a connect to it hangs (Linux drops the SYN).

Writes DIR/manifest.digest (the manifest's digest), with BASE_TAR
DIR/base.digest, and DIR/ready once it listens; appends the path of each
request to DIR/requests.log before answering it.
"""

import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import sys
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, DIR, ARCH = int(sys.argv[1]), sys.argv[2], sys.argv[3]
BASE_TAR = sys.argv[4] if len(sys.argv) > 4 else None
FLAKY_FAILURES = 2


def digest(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def make_layer(files):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
            t.addfile(info, io.BytesIO(data))
    tar = raw.getvalue()
    return tar, gzip.compress(tar, mtime=0)


def file_digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def image(layers):
    """The config and manifest of an image of `layers`: (digest, size,
    diff_id, media type) each."""
    config = json.dumps({
        "architecture": ARCH, "os": "linux", "config": {"Cmd": ["/sbin/init"]},
        "rootfs": {"type": "layers", "diff_ids": [l[2] for l in layers]},
    }).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest(config), "size": len(config)},
        "layers": [{"mediaType": l[3], "digest": l[0], "size": l[1]} for l in layers],
    }).encode()
    return config, manifest


GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
TAR, LAYER = make_layer([("etc/e2e39", b"e2e39\n"), ("big", os.urandom(512 << 10))])
CONFIG, MANIFEST = image([(digest(LAYER), len(LAYER), digest(TAR), GZ)])
EVIL_TAR, EVIL = make_layer([("../e2e39-escape", b"escaped\n")])
EVIL_CONFIG, EVIL_MANIFEST = image([(digest(EVIL), len(EVIL), digest(EVIL_TAR), GZ),
                                    (digest(LAYER), len(LAYER), digest(TAR), GZ)])
# Same size as CONFIG, other bytes: what a corrupted store would serve.
BAD_CONFIG = CONFIG[:-2] + (b" }" if CONFIG[-2:] != b" }" else b"} ")
BLOBS = {digest(CONFIG): CONFIG, digest(LAYER): LAYER, digest(EVIL_CONFIG): EVIL_CONFIG}
if BASE_TAR:
    BASE_LAYER = file_digest(BASE_TAR)
    BASE_CONFIG, BASE_MANIFEST = image([(BASE_LAYER, os.path.getsize(BASE_TAR), BASE_LAYER,
                                         "application/vnd.oci.image.layer.v1.tar")])
    BLOBS[digest(BASE_CONFIG)] = BASE_CONFIG

counts = {}
lock = threading.Lock()


class Faulty(BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        print(fmt % args, flush=True)

    def reply(self, status, body=b"", ctype="application/octet-stream", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        parts = self.path.split("?")[0].strip("/").split("/")
        if parts[0] not in ("v2", "files") or len(parts) < 4:
            return self.reply(404, b"not here\n", "text/plain")
        fault, key = parts[1], "/".join(parts[1:3])
        with lock:
            counts[key] = counts.get(key, 0) + 1
            n = counts[key]
            with open(os.path.join(DIR, "requests.log"), "a") as log:
                log.write(self.path + "\n")
        if fault in ("down503", "down429") or (fault in ("flaky503", "flaky429") and n <= FLAKY_FAILURES):
            return self.reply(int(fault[-3:]), b"try later\n", "text/plain", [("Retry-After", "1")])
        if fault == "forbidden":
            return self.reply(403, b"denied\n", "text/plain")
        if parts[0] == "files":
            return self.send_layer(fault)
        kind, ref = parts[-2], parts[-1]
        if kind == "manifests":
            manifest = {"base": BASE_MANIFEST if BASE_TAR else MANIFEST,
                        "evilstall": EVIL_MANIFEST}.get(fault, MANIFEST)
            if ref in ("1", digest(manifest)) or fault == "liar":
                return self.reply(200, manifest, "application/vnd.oci.image.manifest.v1+json",
                                  [("Docker-Content-Digest", digest(manifest))])
            return self.reply(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}', "application/json")
        if kind == "blobs" and BASE_TAR and ref == BASE_LAYER:
            return self.send_file(BASE_TAR)
        if kind == "blobs" and ref == digest(EVIL):
            for _ in range(100):
                if os.path.exists(os.path.join(DIR, "stalled")):
                    break
                time.sleep(0.1)
            return self.reply(200, EVIL)
        if kind == "blobs" and ref in BLOBS:
            if ref == digest(LAYER):
                return self.send_layer(fault)
            return self.reply(200, BAD_CONFIG if fault == "badcfg" else BLOBS[ref])
        return self.reply(404, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}', "application/json")

    def send_file(self, path):
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(os.path.getsize(path)))
        self.end_headers()
        with open(path, "rb") as f:
            shutil.copyfileobj(f, self.wfile, 1 << 20)

    def send_layer(self, fault):
        if fault not in ("trunc", "stall", "evilstall"):
            return self.reply(200, LAYER, "application/gzip")
        self.send_response(200)
        self.send_header("Content-Type", "application/gzip")
        self.send_header("Content-Length", str(len(LAYER)))
        self.end_headers()
        self.wfile.write(LAYER[: len(LAYER) // 2])
        self.wfile.flush()
        if fault in ("stall", "evilstall"):
            open(os.path.join(DIR, "stalled"), "w").close()
            time.sleep(600)
        self.close_connection = True


class Server(ThreadingHTTPServer):
    daemon_threads = True


hang = socket.socket()
hang.bind(("127.0.0.1", PORT + 1))
hang.listen(0)
fillers = []
for _ in range(4):
    c = socket.socket()
    c.setblocking(False)
    c.connect_ex(("127.0.0.1", PORT + 1))
    fillers.append(c)
srv = Server(("127.0.0.1", PORT), Faulty)
with open(os.path.join(DIR, "manifest.digest"), "w") as f:
    f.write(digest(MANIFEST) + "\n")
if BASE_TAR:
    with open(os.path.join(DIR, "base.digest"), "w") as f:
        f.write(digest(BASE_MANIFEST) + "\n")
open(os.path.join(DIR, "ready"), "w").close()
srv.serve_forever()
