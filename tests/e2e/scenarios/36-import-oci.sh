# shellcheck shell=bash
# 36-import-oci: sdme-import from OCI registries, OCI layouts, archives and
# URLs, against real peers on the test host's loopback: Debian's
# docker-registry with TLS from a test CA and htpasswd basic auth, a second
# one with token auth from a small issuer (python3, JWTs signed by
# openssl), images built with umoci and pushed with skopeo, a python3 web
# server and tinyproxy. Checks whiteouts, platform choice from an index,
# pinned digests, the blob cache (a re-import downloads nothing), a
# tampered blob, 401/404/TLS errors (one line, nothing left), that an
# imported rootfs boots, proxies and no_proxy; prints pull figures.

W=/var/tmp/e2e36
REG=localhost:5443
TOK=localhost:5444
boot=e2e36-boot
decl=e2e36-decl

on_cleanup sh -c "rm -rf $W /var/lib/sdme/rootfs/e2e36-* /var/lib/sdme/meta/e2e36-* /var/lib/sdme/blobs /var/lib/sdme/containers/$boot /var/lib/sdme/containers/$decl /etc/sdme/$boot.container /etc/sdme/$decl.container /etc/sdme/e2e36-img.image /run/containers/0/auth.json; systemctl daemon-reload"
on_cleanup sh -c "systemctl stop sdme-$boot sdme-$decl sdme-image-e2e36-img e2e36-reg-basic e2e36-reg-token e2e36-issuer e2e36-web e2e36-proxy 2>/dev/null; systemctl reset-failed 'sdme-*' 'sdme-prepare@*' 'e2e36-*' 2>/dev/null; true"

# put FILE: stdin into FILE inside the host.
put() { th_exec sh -c "cat > '$1'"; }

# imp [VAR=VALUE...] ARGS...: sdme-import inside the host, in $W, with the
# test CA unless ARGS say otherwise; output and status are the command's.
imp() { th_exec env -C "$W" "$@"; }

# expect_fail DESC REGEX NAME [VAR=VALUE...] sdme-import ARGS...: the import
# fails with exactly one line matching REGEX and leaves no rootfs NAME, no
# staging directory and no temporary blob.
expect_fail() {
	local desc=$1 re=$2 name=$3 out rc=0
	shift 3
	out=$(imp "$@" 2>&1) || rc=$?
	printf '%s: %s\n' "$desc" "$out"
	[ "$rc" -ne 0 ] || fail "$desc: the import succeeded"
	[ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ] || fail "$desc: more than one line of output"
	assert_match "$desc: the error" "$re" "$out"
	check_in "$desc: no rootfs $name left" test ! -e "/var/lib/sdme/rootfs/$name"
	assert_eq "$desc: no staging directory left" "" \
		"$(th_exec find /var/lib/sdme/import -mindepth 1 -maxdepth 1 ! -name '*.lock' ! -name '*.use' 2>&1)"
	assert_eq "$desc: no temporary blob left" "" \
		"$(th_exec find /var/lib/sdme/blobs -name '.tmp-*' 2>&1)"
}

# blob_gets: how many blob GETs the basic-auth registry has served.
blob_gets() {
	th_sh "journalctl -q -u e2e36-reg-basic -o cat | grep -c '\"GET /v2/[^ ]*/blobs/sha256:[0-9a-f]* HTTP' || true"
}

step "peers: a test CA, server and token-signing certificates, htpasswd, registry configs"
th_sh "rm -rf $W && mkdir -p $W/certs $W/www"
put "$W/setup.sh" <<'EOF'
set -eu
W=/var/tmp/e2e36
cd "$W"
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=e2e36-ca \
	-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj /CN=localhost 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n' >srv.ext
openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out srv.crt -days 2 -extfile srv.ext 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -keyout tok.key -out tok.crt -days 2 -subj /CN=e2e36-issuer \
	-addext keyUsage=critical,digitalSignature 2>/dev/null
cp ca.crt certs/ca.crt
htpasswd -Bbn e2e s3cret >htpasswd
for r in basic token; do
	case $r in
	basic) port=5443 auth="  htpasswd:
    realm: e2e36
    path: $W/htpasswd" ;;
	token) port=5444 auth="  token:
    realm: http://127.0.0.1:5445/token
    service: e2e36-registry
    issuer: e2e36-issuer
    rootcertbundle: $W/tok.crt" ;;
	esac
	cat >"reg-$r.yml" <<EOC
version: 0.1
log:
  level: info
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: $W/reg-$r
http:
  addr: 127.0.0.1:$port
  tls:
    certificate: $W/srv.crt
    key: $W/srv.key
auth:
$auth
EOC
done
printf '{"auths":{"localhost:5443":{"auth":"%s"}}}\n' "$(printf e2e:s3cret | base64)" >auth.json
printf '{"auths":{"https://localhost:5443":{"username":"e2e","password":"wrong"}}}\n' >auth-bad.json
printf '{"auths":{"localhost:5444":{"username":"tok","password":"tokpass"}}}\n' >auth-tok.json
cat >tinyproxy.conf <<EOC
User nobody
Group nogroup
Port 8888
Listen 127.0.0.1
Timeout 60
LogFile "$W/tinyproxy.log"
LogLevel Info
MaxClients 20
Allow 127.0.0.1
EOC
: >tinyproxy.log
chown nobody tinyproxy.log
EOF
require_in "certificates and configs" sh "$W/setup.sh"

put "$W/issuer.py" <<'EOF'
# A token issuer for the registry's `auth: token:`: anonymous pulls of
# public/*, every asked action for tok:tokpass; RS256 JWTs signed by
# openssl, the signing certificate in the x5c header.
import base64, json, os, subprocess, sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlparse

W = sys.argv[1]
CERT = subprocess.run(["openssl", "x509", "-in", W + "/tok.crt", "-outform", "DER"],
                      capture_output=True, check=True).stdout


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class Issuer(BaseHTTPRequestHandler):
    def do_GET(self):
        q = parse_qs(urlparse(self.path).query)
        user = None
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            u, _, p = base64.b64decode(auth[6:]).decode().partition(":")
            if (u, p) != ("tok", "tokpass"):
                self.send_response(401)
                self.end_headers()
                return
            user = u
        access = []
        for scope in q.get("scope", []):
            typ, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if user:
                access.append({"type": typ, "name": name, "actions": actions.split(",")})
            elif name.startswith("public/"):
                access.append({"type": typ, "name": name, "actions": ["pull"]})
        now = int(time.time())
        claims = {"iss": "e2e36-issuer", "sub": user or "", "aud": q.get("service", [""])[0],
                  "exp": now + 600, "nbf": now - 60, "iat": now, "jti": os.urandom(8).hex(),
                  "access": access}
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(CERT).decode()]}
        signing = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", W + "/tok.key"],
                             input=signing.encode(), capture_output=True, check=True).stdout
        body = json.dumps({"token": signing + "." + b64url(sig)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


HTTPServer(("127.0.0.1", 5445), Issuer).serve_forever()
EOF

step "peers: two registries, the token issuer, a web server and tinyproxy (systemd-run units)"
require_in "registry (basic auth)" systemd-run -q --unit=e2e36-reg-basic docker-registry serve "$W/reg-basic.yml"
require_in "registry (token auth)" systemd-run -q --unit=e2e36-reg-token docker-registry serve "$W/reg-token.yml"
require_in "token issuer" systemd-run -q --unit=e2e36-issuer python3 "$W/issuer.py" "$W"
require_in "web server" systemd-run -q --unit=e2e36-web python3 -m http.server --bind 127.0.0.1 --directory "$W/www" 8080
require_in "tinyproxy" systemd-run -q --unit=e2e36-proxy tinyproxy -d -c "$W/tinyproxy.conf"
put "$W/wait.py" <<'EOF'
import socket, sys, time
for port in map(int, sys.argv[1:]):
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        sys.exit(f"nothing listens on 127.0.0.1:{port}")
EOF
require_in "peers listening" python3 "$W/wait.py" 5443 5444 5445 8080 8888

step "images: umoci layouts (3 layers with whiteouts, a tampered one, a bootable one, a multi-platform index)"
put "$W/images.sh" <<'EOF'
set -eu
cd /var/tmp/e2e36
umoci init --layout img
mkdir -p l1/data l1/opq l2/data l2/opq l3/data l4
echo a >l1/data/a.txt
echo del >l1/data/del.txt
echo x >l1/opq/x
echo y >l1/opq/y
: >l2/data/.wh.del.txt
: >l2/opq/.wh..wh..opq
echo new >l2/opq/new
echo c >l3/data/c.txt
for i in 1 2 3; do head -c 32M /dev/urandom >"l$i/data/big$i"; done
echo "tamper $$ $(date +%s%N)" >l4/tamper.txt
for i in 1 2 3 4; do tar --numeric-owner -C "l$i" -cf "l$i.tar" .; done
umoci new --image img:layers
for i in 1 2 3; do umoci raw add-layer --image img:layers "l$i.tar"; done
umoci config --image img:layers --config.entrypoint /bin/echo --config.cmd hello \
	--config.env FOO=bar --config.workingdir /data --config.user 101:102 \
	--config.exposedports 80/tcp --config.volume /data --config.stopsignal SIGQUIT
umoci new --image img:tamper
umoci raw add-layer --image img:tamper l4.tar
umoci new --image img:base
umoci raw add-layer --image img:base base.tar
rm base.tar
tar -C l1 -czf www/small.tar.gz .
EOF
put "$W/multi.py" <<'EOF'
# Adds tag "multi" to the layout: an index with the "layers" image for
# this machine's architecture and, listed first, a copy for another one.
import hashlib, json, sys
lay, arch = sys.argv[1], sys.argv[2]
other = "arm64" if arch != "arm64" else "s390x"
idx = json.load(open(lay + "/index.json"))
def blob(d): return open(lay + "/blobs/sha256/" + d.split(":")[1], "rb").read()
def put(b):
    h = hashlib.sha256(b).hexdigest()
    open(lay + "/blobs/sha256/" + h, "wb").write(b)
    return "sha256:" + h
m = [x for x in idx["manifests"] if x["annotations"]["org.opencontainers.image.ref.name"] == "layers"][0]
man = json.loads(blob(m["digest"]))
cfg = json.loads(blob(man["config"]["digest"]))
c2 = json.dumps(dict(cfg, architecture=other)).encode()
man["config"] = dict(man["config"], digest=put(c2), size=len(c2))
m2 = json.dumps(man).encode()
here = {"mediaType": m["mediaType"], "digest": m["digest"], "size": m["size"], "platform": {"os": "linux", "architecture": arch}}
there = {"mediaType": m["mediaType"], "digest": put(m2), "size": len(m2), "platform": {"os": "linux", "architecture": other}}
ib = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [there, here]}).encode()
idx["manifests"].append({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": put(ib), "size": len(ib), "annotations": {"org.opencontainers.image.ref.name": "multi"}})
json.dump(idx, open(lay + "/index.json", "w"))
EOF
# The bootable image's tree: the test host's own root file system (the
# cached tarball th_put_rootfs unpacks).
copy_base() { put "$W/base.tar" <"$(th_cache_tarball "$TH_SUITE")"; }
require "copy the test host's rootfs tarball in" copy_base
require_in "umoci images" sh "$W/images.sh"
arch=$(th_exec dpkg --print-architecture)
require_in "multi-platform index" python3 "$W/multi.py" "$W/img" "$arch"

step "push with skopeo"
for img in layers tamper base; do
	require_in "push e2e/$img" skopeo copy -q --dest-cert-dir "$W/certs" --dest-creds e2e:s3cret \
		--digestfile "$W/$img.digest" "oci:$W/img:$img" "docker://$REG/e2e/$img:1"
done
require_in "push e2e/multi (--all)" skopeo copy -q --all --dest-cert-dir "$W/certs" --dest-creds e2e:s3cret \
	--digestfile "$W/multi.digest" "oci:$W/img:multi" "docker://$REG/e2e/multi:1"
for repo in public/layers private/layers; do
	require_in "push $repo to the token registry" skopeo copy -q --dest-cert-dir "$W/certs" --dest-creds tok:tokpass \
		"oci:$W/img:layers" "docker://$TOK/$repo:1"
done
layers_digest=$(th_exec cat "$W/layers.digest")
multi_digest=$(th_exec cat "$W/multi.digest")
assert_match "digest of e2e/layers" '^sha256:[0-9a-f]{64}$' "$layers_digest"

step "pull a 3-layer image with basic auth: whiteouts applied, metadata recorded"
th_exec rm -rf /var/lib/sdme/blobs
out=$(imp REGISTRY_AUTH_FILE=auth.json sdme-import --ca-file ca.crt --install-packages=no "$REG/e2e/layers:1" e2e36-lay 2>&1) ||
	fail "pull $REG/e2e/layers:1: $out"
printf '%s\n' "$out"
assert_match "first pull downloads 4 blobs (config + 3 layers)" 'e2e/layers:1: 4 blob\(s\) downloaded' "$out"
R=/var/lib/sdme/rootfs/e2e36-lay
check_in "data/a.txt from layer 1" test -f "$R/data/a.txt"
check_in "data/c.txt from layer 3" test -f "$R/data/c.txt"
check_in "data/del.txt deleted by a whiteout in layer 2" test ! -e "$R/data/del.txt"
check_in "opq/x hidden by the opaque whiteout" test ! -e "$R/opq/x"
check_in "opq/y hidden by the opaque whiteout" test ! -e "$R/opq/y"
assert_eq "opq/new from layer 2" new "$(th_exec cat "$R/opq/new" 2>&1)"
assert_eq "no whiteout file left in the tree" "" "$(th_exec find "$R" -name '.wh.*' 2>&1)"
meta=$(th_exec cat /var/lib/sdme/meta/e2e36-lay.json 2>&1)
assert_match "meta: digest" "\"digest\": \"$layers_digest\"" "$meta"
assert_match "meta: platform" "\"platform\": \"linux/$arch\"" "$meta"
for want in '"/bin/echo"' '"hello"' '"FOO=bar"' '"user": "101:102"' '"working_dir": "/data"' '"80/tcp"' '"stop_signal": "SIGQUIT"'; do
	assert_match "meta: OCI config $want" "$want" "$meta"
done

step "re-import of the unchanged image downloads nothing"
gets_before=$(blob_gets)
out=$(imp REGISTRY_AUTH_FILE=auth.json sdme-import --ca-file ca.crt --install-packages=no --force "$REG/e2e/layers:1" e2e36-lay 2>&1) ||
	fail "re-import: $out"
printf '%s\n' "$out"
gets_after=$(blob_gets)
step "registry blob GETs: $gets_before before the re-import, $gets_after after"
assert_match "blob GETs counted" '^[0-9]+$' "$gets_before"
[ "$gets_before" -ge 4 ] || fail "the registry log shows $gets_before blob GETs for the first pull (expected at least 4)"
assert_eq "no blob GET for the re-import" "$gets_before" "$gets_after"
assert_match "sdme-import counts 0 blobs downloaded" 'e2e/layers:1: 0 blob\(s\) downloaded' "$out"

step "a pinned digest, and --if-missing with it"
check_in "pull @digest" env -C "$W" REGISTRY_AUTH_FILE=auth.json sdme-import -q --ca-file ca.crt --install-packages=no "$REG/e2e/layers@$layers_digest" e2e36-pin
assert_match "meta of the pinned import" "\"digest\": \"$layers_digest\"" "$(th_exec cat /var/lib/sdme/meta/e2e36-pin.json 2>&1)"
out=$(imp REGISTRY_AUTH_FILE=auth.json sdme-import --ca-file ca.crt --if-missing "$REG/e2e/layers@$layers_digest" e2e36-pin 2>&1) ||
	fail "--if-missing: $out"
assert_match "--if-missing with the recorded pin does nothing" "already there" "$out"
bad_pin="sha256:$(printf x | sha256sum | cut -d' ' -f1)"
expect_fail "a pinned digest the registry does not have" "HTTP 404" e2e36-pin-bad \
	REGISTRY_AUTH_FILE=auth.json sdme-import --ca-file ca.crt "$REG/e2e/layers@$bad_pin" e2e36-pin-bad

step "a multi-platform index: this machine's platform is chosen; --platform without a match fails"
check_in "pull e2e/multi:1" env -C "$W" REGISTRY_AUTH_FILE=auth.json sdme-import -q --ca-file ca.crt --install-packages=no "$REG/e2e/multi:1" e2e36-multi
meta=$(th_exec cat /var/lib/sdme/meta/e2e36-multi.json 2>&1)
assert_match "multi: platform linux/$arch" "\"platform\": \"linux/$arch\"" "$meta"
assert_match "multi: the index digest is recorded" "\"digest\": \"$multi_digest\"" "$meta"
check_in "multi: the tree is the $arch image" test -f /var/lib/sdme/rootfs/e2e36-multi/data/c.txt
expect_fail "--platform linux/mips64le" "no manifest for platform linux/mips64le" e2e36-multi2 \
	REGISTRY_AUTH_FILE=auth.json sdme-import --ca-file ca.crt --platform linux/mips64le "$REG/e2e/multi:1" e2e36-multi2

step "errors: tampered blob, bad password, no such tag, TLS without the CA"
tamper_layer=$(th_exec python3 -c "import json,sys; m=json.load(open('$W/img/blobs/sha256/'+open('$W/tamper.digest').read().split(':')[1])); print(m['layers'][0]['digest'].split(':')[1])")
data=$W/reg-basic/docker/registry/v2/blobs/sha256/${tamper_layer:0:2}/$tamper_layer/data
require_in "tamper with the stored layer" python3 -c "p='$data'; b=bytearray(open(p,'rb').read()); b[len(b)//2]^=0xff; open(p,'wb').write(b)"
expect_fail "tampered layer" "digest mismatch" e2e36-tamper \
	REGISTRY_AUTH_FILE=auth.json sdme-import --ca-file ca.crt "$REG/e2e/tamper:1" e2e36-tamper
check_in "the tampered blob is not in the cache" test ! -e "/var/lib/sdme/blobs/sha256/$tamper_layer"
expect_fail "bad password" "HTTP 401" e2e36-x REGISTRY_AUTH_FILE=auth-bad.json sdme-import --ca-file ca.crt "$REG/e2e/layers:1" e2e36-x
expect_fail "no such tag" "HTTP 404" e2e36-x REGISTRY_AUTH_FILE=auth.json sdme-import --ca-file ca.crt "$REG/e2e/layers:nosuch" e2e36-x
expect_fail "TLS without --ca-file" "TLS failure" e2e36-x REGISTRY_AUTH_FILE=auth.json sdme-import "$REG/e2e/layers:1" e2e36-x

step "token auth: anonymous bearer token for public/, credentials for private/"
check_in "anonymous pull of public/layers" env -C "$W" sdme-import -q --ca-file ca.crt --install-packages=no "$TOK/public/layers:1" e2e36-tok-pub
check_in "public/layers has its files" test -f /var/lib/sdme/rootfs/e2e36-tok-pub/data/c.txt
expect_fail "anonymous pull of private/layers" "HTTP 401" e2e36-tok-priv sdme-import --ca-file ca.crt "$TOK/private/layers:1" e2e36-tok-priv
check_in "pull of private/layers with credentials (token with basic credentials)" env -C "$W" REGISTRY_AUTH_FILE=auth-tok.json \
	sdme-import -q --ca-file ca.crt --install-packages=no "$TOK/private/layers:1" e2e36-tok-priv

step "OCI layout, oci-archive and docker-archive sources"
check_in "OCI layout DIR:TAG" env -C "$W" sdme-import -q --install-packages=no "$W/img:layers" e2e36-layout
check_in "layout: whiteouts" test ! -e /var/lib/sdme/rootfs/e2e36-layout/data/del.txt
require_in "skopeo: oci-archive" skopeo copy -q "oci:$W/img:layers" "oci-archive:$W/layers-oci.tar"
require_in "skopeo: docker-archive" skopeo copy -q "oci:$W/img:layers" "docker-archive:$W/layers-docker.tar:e2e/layers:1"
check_in "oci-archive" sdme-import -q --install-packages=no "$W/layers-oci.tar" e2e36-ociar
check_in "docker-archive" sdme-import -q --install-packages=no "$W/layers-docker.tar" e2e36-dockar
for n in ociar dockar; do
	check_in "$n: layer 3 and the whiteouts" sh -c "test -f /var/lib/sdme/rootfs/e2e36-$n/data/c.txt && test ! -e /var/lib/sdme/rootfs/e2e36-$n/opq/x"
done

step "a rootfs pulled from the registry boots (Rootfs=$boot)"
require_in "pull e2e/base:1" env -C "$W" REGISTRY_AUTH_FILE=auth.json sdme-import -q --ca-file ca.crt --install-packages=no "$REG/e2e/base:1" "$boot"
th_exec mkdir -p /etc/sdme
printf '[Container]\nRootfs=%s\n' "$boot" | put "/etc/sdme/$boot.container"
require_in "daemon-reload" systemctl daemon-reload
check_in "systemctl start sdme-$boot" timeout 180 systemctl start "sdme-$boot"
assert_eq "sdme-$boot is active" active "$(th_exec systemctl is-active "sdme-$boot" 2>&1 || true)"
assert_eq "hostname inside $boot" "$boot" "$(th_run_in "$boot" cat /proc/sys/kernel/hostname 2>&1 || true)"
th_exec systemctl stop "sdme-$boot" || true
th_unmounted "$boot" || fail "the overlay of $boot is still mounted after stop"

step "declared in files: $decl.container with Rootfs=e2e36-img.image, Image= pinned to a digest, credentials from /run/containers/0/auth.json"
base_digest=$(th_exec cat "$W/base.digest")
th_exec mkdir -p /run/containers/0
th_exec cp "$W/auth.json" /run/containers/0/auth.json
printf '[Image]\nImage=%s\nCAFile=%s\nInstallPackages=no\n' "$REG/e2e/base@$base_digest" "$W/ca.crt" | put /etc/sdme/e2e36-img.image
printf '[Container]\nRootfs=e2e36-img.image\n' | put "/etc/sdme/$decl.container"
require_in "daemon-reload" systemctl daemon-reload
check_in "systemctl start sdme-$decl (imports, then boots)" timeout 300 systemctl start "sdme-$decl"
assert_eq "sdme-image-e2e36-img is active" active "$(th_exec systemctl is-active sdme-image-e2e36-img 2>&1 || true)"
assert_match "the image unit's import recorded the pinned digest" "\"digest\": \"$base_digest\"" \
	"$(th_exec cat /var/lib/sdme/meta/e2e36-img.json 2>&1)"
assert_eq "hostname inside $decl" "$decl" "$(th_run_in "$decl" cat /proc/sys/kernel/hostname 2>&1 || true)"
th_exec systemctl stop "sdme-$decl" || true
th_unmounted "$decl" || fail "the overlay of $decl is still mounted after stop"
stamp() { th_sh "grep imported_at /var/lib/sdme/meta/e2e36-img.json"; }
stamp_before=$(stamp)
check_in "restart of the image unit (--if-missing, same pin)" systemctl restart sdme-image-e2e36-img
assert_match "import time recorded" imported_at "$stamp_before"
assert_eq "the pinned image was not imported again" "$stamp_before" "$(stamp)"
th_exec systemctl stop sdme-image-e2e36-img || true

step "URLs: a local web server, through tinyproxy, and no_proxy"
url=http://127.0.0.1:8080/small.tar.gz
check_in "URL import" sdme-import -q --install-packages=no "$url" e2e36-url
check_in "URL: the tarball's files" test -f /var/lib/sdme/rootfs/e2e36-url/data/a.txt
check_in "URL through the proxy" env http_proxy=http://127.0.0.1:8888 sdme-import -q --install-packages=no "$url" e2e36-url-proxy
log=$(th_exec cat "$W/tinyproxy.log" 2>&1)
# ureq tunnels http:// through the proxy too (CONNECT host:port).
assert_match "tinyproxy logged the request" "CONNECT 127.0.0.1:8080" "$log"
n_before=$(th_exec grep -c 'Request .*127.0.0.1:8080' "$W/tinyproxy.log" || true)
check_in "URL with no_proxy" env HTTP_PROXY=http://127.0.0.1:8888 NO_PROXY=localhost,127.0.0.0/8 sdme-import -q --install-packages=no "$url" e2e36-url-direct
assert_eq "no_proxy: tinyproxy saw nothing more" "$n_before" "$(th_exec grep -c 'Request .*127.0.0.1:8080' "$W/tinyproxy.log" || true)"
check_in "registry pull through the proxy (CONNECT)" env -C "$W" https_proxy=http://127.0.0.1:8888 REGISTRY_AUTH_FILE=auth.json \
	sdme-import -q --ca-file ca.crt --install-packages=no "$REG/e2e/layers:1" e2e36-lay-proxy
assert_match "tinyproxy logged the CONNECT" "CONNECT $REG" "$(th_exec cat "$W/tinyproxy.log" 2>&1)"
expect_fail "URL over --max-size" "size cap" e2e36-urlcap sdme-import --max-size=1M "$url" e2e36-urlcap
expect_fail "URL 404" "HTTP 404" e2e36-url404 sdme-import "http://127.0.0.1:8080/nope.tar.gz" e2e36-url404
expect_fail "nothing listens" "127.0.0.1:9" e2e36-url9 sdme-import "http://127.0.0.1:9/x.tar.gz" e2e36-url9

step "figures: pull of the 3-layer image (3 x 32 MiB, loopback TLS), empty cache, parallel 1 vs 4, median of 5"
for p in 1 4 1 4 1 4 1 4 1 4; do
	th_exec sh -c 'rm -rf /var/lib/sdme/blobs /var/lib/sdme/rootfs/e2e36-fig /var/lib/sdme/meta/e2e36-fig.json'
	t0=$(date +%s%N)
	imp REGISTRY_AUTH_FILE=auth.json SDME_IMPORT_PARALLEL=$p sdme-import -q --ca-file ca.crt --install-packages=no "$REG/e2e/layers:1" e2e36-fig ||
		fail "figure run with parallel $p"
	echo "$p $((($(date +%s%N) - t0) / 1000000))" >>"$TH_RUN/e2e36-fig"
done
for p in 1 4; do
	med=$(awk -v p="$p" '$1 == p { print $2 }' "$TH_RUN/e2e36-fig" | sort -n | sed -n 3p)
	step "FIGURE: SDME_IMPORT_PARALLEL=$p sdme-import $REG/e2e/layers:1: median $med ms"
done
rm -f "$TH_RUN/e2e36-fig"
