# shellcheck shell=bash
# shellcheck disable=SC2016 # snippets expand inside the test host
# 62-import-inuse: `sdme-import --force` never replaces the rootfs of a
# running container (issue 19, item 2), whatever kind it is and whenever it
# started:
# - a running PrivateUsers= container (its overlay names only the
#   ID-mapped clone, so only the use record of its prepare step tells);
# - a running plain container (Rootfs=);
# - both started while the import downloads (a server that stalls the body
#   until released): the start does not wait for the import, and the
#   import, checking again under the use lock at commit, refuses.
# Each time: exit 1, the message names the container(s), the rootfs and
# what to do; merged/usr/bin/true is still there, the container answers
# and the rootfs is the old tree. Once both are stopped (their records
# gone, /run/sdme empty), --force replaces the tree.

rf=iu62
plain=ip62
userns=iq62
W=/var/tmp/e2e-62
PORT=18662
st=/var/lib/sdme

on_cleanup sh -c "rm -rf $W $st/rootfs/$rf $st/meta/$rf.json $st/import/$rf.lock $st/import/$rf.use $st/import/$rf.staging /etc/sdme/$plain.container /etc/sdme/$userns.container $st/containers/$plain $st/containers/$userns; systemctl daemon-reload"
on_cleanup sh -c "systemctl stop e2e62-slow e2e62-import sdme-$plain sdme-$userns; systemctl reset-failed 'sdme-*' 'sdme-prepare@*' 'var-lib-sdme-*' 'e2e62-*' 2>/dev/null; true"

step "rootfs $rf, containers $plain (plain) and $userns (PrivateUsers=yes) on it, a small new tree"
require "th_put_rootfs $rf" th_put_rootfs "$rf"
th_exec mkdir -p /etc/sdme "$W/new/etc"
printf '[Container]\nRootfs=%s\n' "$rf" | th_exec sh -c "cat > /etc/sdme/$plain.container"
printf '[Container]\nRootfs=%s\nPrivateUsers=yes\n' "$rf" | th_exec sh -c "cat > /etc/sdme/$userns.container"
th_exec sh -c "echo new > $W/new/etc/e2e62 && tar -C $W/new -czf $W/new.tar.gz ."
require_in "daemon-reload" systemctl daemon-reload

# intact MACHINE...: each container's files and answer, and the old tree.
intact() {
	local m
	for m in "$@"; do
		check_in "$m: merged/usr/bin/true still there" test -x "$st/containers/$m/merged/usr/bin/true"
		check "$m still answers" th_run_in "$m" /usr/bin/true
	done
	check_in "rootfs $rf is the old tree" sh -c "test -x $st/rootfs/$rf/usr/bin/true && ! test -e $st/rootfs/$rf/etc/e2e62"
}

# refused DESC OUTPUT RC MACHINE...: exit 1 and a message naming each
# machine, the rootfs and what to do.
refused() {
	local desc=$1 out=$2 rc=$3 m
	shift 3
	printf '%s: exit %s: %s\n' "$desc" "$rc" "$out"
	assert_eq "$desc: exit status" 1 "$rc"
	assert_match "$desc: names the rootfs" "rootfs $rf \\($st/rootfs/$rf\\) is in use by" "$out"
	for m in "$@"; do
		assert_match "$desc: names container $m" "container $m \\(" "$out"
	done
	assert_match "$desc: says what to do" "stop those containers \\(systemctl stop sdme-NAME\\)" "$out"
}

force() { # force: sdme-import --force of the new tree; sets out and rc
	rc=0
	out=$(th_exec sdme-import --install-packages=no --force "$W/new" "$rf" 2>&1) || rc=$?
}

step "--force while a PrivateUsers= container runs on the rootfs"
require_in "start sdme-$userns" timeout 180 systemctl start "sdme-$userns"
lower=$(th_exec findmnt -n -o OPTIONS "$st/containers/$userns/merged" | tr ',' '\n' | sed -n 's/^lowerdir=//p')
step "its overlay's lowerdir: $lower"
force
refused "--force, PrivateUsers= container running" "$out" "$rc" "$userns"
intact "$userns"
require_in "stop sdme-$userns" timeout 120 systemctl stop "sdme-$userns"

step "--force while a plain container runs on the rootfs"
require_in "start sdme-$plain" timeout 180 systemctl start "sdme-$plain"
force
refused "--force, plain container running" "$out" "$rc" "$plain"
intact "$plain"
require_in "stop sdme-$plain" timeout 120 systemctl stop "sdme-$plain"
check_in "no use record left after the stops" sh -c "! test -e /run/sdme/inuse"

step "--force from a URL whose download stalls; both containers start meanwhile"
th_exec sh -c "cat > $W/slow.py" <<'EOF'
# slow.py PORT DIR: serve DIR/new.tar.gz; after half of the body, create
# DIR/stalled and wait until DIR/release exists, then send the rest.
import http.server, os, sys, time
port, d = int(sys.argv[1]), sys.argv[2]
data = open(os.path.join(d, "new.tar.gz"), "rb").read()

class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        half = len(data) // 2
        self.wfile.write(data[:half])
        self.wfile.flush()
        open(os.path.join(d, "stalled"), "w").close()
        while not os.path.exists(os.path.join(d, "release")):
            time.sleep(0.05)
        self.wfile.write(data[half:])

http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
EOF
require_in "start the slow server" systemd-run -q --unit=e2e62-slow python3 "$W/slow.py" "$PORT" "$W"
require_in "it listens" sh -c "for i in \$(seq 100); do python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", $PORT))' 2>/dev/null && exit 0; sleep 0.1; done; exit 1"
require_in "start the import" systemd-run -q --unit=e2e62-import sh -c \
	"sdme-import --install-packages=no --force http://127.0.0.1:$PORT/new.tar.gz $rf >$W/import.out 2>&1; echo \$? >$W/import.rc"
require_in "the download stalls" sh -c "for i in \$(seq 300); do test -e $W/stalled && exit 0; sleep 0.1; done; exit 1"
t0=$(date +%s%N)
require_in "start sdme-$plain during the import" timeout 180 systemctl start "sdme-$plain"
require_in "start sdme-$userns during the import" timeout 180 systemctl start "sdme-$userns"
step "both started in $((($(date +%s%N) - t0) / 1000000)) ms while the import held its name lock"
check_in "the import is still downloading" sh -c "! test -e $W/import.rc"
th_exec touch "$W/release"
require_in "the import ends" sh -c "for i in \$(seq 600); do test -e $W/import.rc && exit 0; sleep 0.1; done; exit 1"
refused "--force, containers started during the download" "$(th_exec cat "$W/import.out")" \
	"$(th_exec cat "$W/import.rc")" "$plain" "$userns"
intact "$plain" "$userns"
check_in "no staging left" sh -c "! test -e $st/import/$rf.staging"

step "both stopped: --force replaces the tree"
require_in "stop both" timeout 120 systemctl stop "sdme-$plain" "sdme-$userns"
check_in "no use record left after the stops" sh -c "! test -e /run/sdme/inuse"
force
printf '%s\n' "$out"
assert_eq "--force with nothing running: exit status" 0 "$rc"
check_in "the new tree is in place" grep -qx new "$st/rootfs/$rf/etc/e2e62"
