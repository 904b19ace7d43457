# shellcheck shell=bash
# 39-import-errors: sdme-import against a registry and web server on the
# test host's loopback that fail on purpose (tests/e2e/peers/faultsrv.py):
# - 503 and 429 with Retry-After: retried, the import succeeds once the
#   server recovers, and fails in one line when it never does;
# - 403; a manifest whose bytes do not match the pinned @sha256: digest; a
#   config blob that does not match its digest; a layer and a URL whose
#   body stops before its Content-Length (truncated download);
# - a server that stops sending in the middle of a layer or a URL, then
#   SIGINT: exit 130 within 3 s (the read blocked for 120 s before), and
#   the same during a TCP connect that hangs (30 s before); a
#   layer that fails to apply while the next one's download is stalled
#   fails the import at once;
# each failure leaves no rootfs, no staging directory, no held lock and no
# temporary blob;
# - Image= in a .container naming a registry reference (pinned): `systemctl
#   start` pulls it through the image unit and boots it.

W=/var/tmp/e2e39
PORT=5939
REG=localhost:$PORT
WEB=http://127.0.0.1:$PORT/files
inl=e2e39-inl

on_cleanup sh -c "rm -rf $W /var/lib/sdme/rootfs/e2e39-* /var/lib/sdme/meta/e2e39-* /var/lib/sdme/import/e2e39-* /var/lib/sdme/blobs /var/lib/sdme/containers/$inl /etc/sdme/$inl.container; systemctl daemon-reload"
on_cleanup sh -c "systemctl stop sdme-$inl 'sdme-image-*' e2e39-faults 2>/dev/null; systemctl reset-failed 'sdme-*' 'sdme-prepare@*' 'e2e39-*' 2>/dev/null; true"

# imp ARGS...: sdme-import inside the host; output and status are its own.
imp() { th_exec sdme-import "$@"; }

# left_behind NAME: what a failed import of NAME left (empty: nothing): the
# rootfs, a staging directory, a held lock, a temporary blob.
left_behind() {
	th_sh "test ! -e /var/lib/sdme/rootfs/$1 || echo rootfs/$1
		find /var/lib/sdme/import -mindepth 1 -maxdepth 1 ! -name '*.lock' ! -name '*.use'
		test ! -e /var/lib/sdme/import/$1.lock || flock -n /var/lib/sdme/import/$1.lock true || echo 'lock of $1 held'
		find /var/lib/sdme/blobs -name '.tmp-*' 2>/dev/null" 2>&1
}

# expect_fail DESC REGEX NAME SOURCE [OPTION...]: the import of SOURCE as
# NAME fails with exactly one line that names SOURCE and matches REGEX,
# and leaves nothing behind. Starts from an empty blob cache (the faults
# are served under digests a good pull may have cached).
expect_fail() {
	local desc=$1 re=$2 name=$3 src=$4 out rc=0
	shift 4
	th_exec rm -rf /var/lib/sdme/blobs
	out=$(imp --install-packages=no "$@" "$src" "$name" 2>&1) || rc=$?
	printf '%s: exit %s: %s\n' "$desc" "$rc" "$out"
	[ "$rc" -ne 0 ] || fail "$desc: the import succeeded"
	[ "$rc" -ne 130 ] || fail "$desc: exit 130 (interrupted) for a failure"
	[ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ] || fail "$desc: more than one line of output"
	[[ $out == *"$src"* ]] || fail "$desc: the error does not name $src"
	assert_match "$desc: the error" "$re" "$out"
	assert_eq "$desc: nothing left behind" "" "$(left_behind "$name")"
}

# expect_ok DESC NAME SOURCE: the import succeeds; prints how long it took.
expect_ok() {
	local desc=$1 name=$2 src=$3 out rc=0 t0
	th_exec rm -rf /var/lib/sdme/blobs
	t0=$(date +%s%N)
	out=$(imp --install-packages=no "$src" "$name" 2>&1) || rc=$?
	printf '%s: exit %s in %s ms: %s\n' "$desc" "$rc" "$((($(date +%s%N) - t0) / 1000000))" "$out"
	[ "$rc" -eq 0 ] || fail "$desc: the import failed (exit $rc)"
	check_in "$desc: the image's file is there" grep -qx e2e39 "/var/lib/sdme/rootfs/$name/etc/e2e39"
}

# requests PREFIX: how many requests the fault server answered below
# /v2/PREFIX/ or /files/PREFIX/ (PREFIX: FAULT/NAME[/...]).
requests() {
	th_sh "grep -c -E '^/(v2|files)/$1/' $W/requests.log || true"
}

step "the fault server (with the test host's rootfs as a bootable image under base/)"
th_exec mkdir -p "$W"
require "copy the fault server in" th_copy_in "$TH_REPO/tests/e2e/peers" "$W" faultsrv.py
copy_base() { th_exec sh -c "cat > $W/base.tar" <"$(th_cache_tarball "$TH_SUITE")"; }
require "copy the test host's rootfs tarball in" copy_base
arch=$(th_exec dpkg --print-architecture)
require_in "start it" systemd-run -q --unit=e2e39-faults python3 "$W/faultsrv.py" "$PORT" "$W" "$arch" "$W/base.tar"
require_in "it listens" sh -c "for i in \$(seq 600); do test -e $W/ready && exit 0; sleep 0.1; done; exit 1"
digest=$(th_exec cat "$W/manifest.digest")
assert_match "manifest digest" '^sha256:[0-9a-f]{64}$' "$digest"

step "no fault: the image and the URL import"
expect_ok "registry, no fault" e2e39-ok "$REG/ok/a:1"
expect_ok "registry, pinned" e2e39-pin "$REG/ok/b@$digest"
expect_ok "URL, no fault" e2e39-url "$WEB/ok/c/layer.tar.gz"

step "503 and 429 with Retry-After: retried until the server recovers"
expect_ok "registry, 2 x 503 first" e2e39-r503 "$REG/flaky503/a:1"
expect_ok "registry, 2 x 429 first" e2e39-r429 "$REG/flaky429/a:1"
expect_ok "URL, 2 x 503 first" e2e39-u503 "$WEB/flaky503/b/layer.tar.gz"
# The first request of each is answered twice with an error, then served.
assert_eq "the 503s were retried (registry: 2 errors, then manifest, config, layer)" 5 "$(requests flaky503/a)"
assert_eq "the 503s were retried (URL: 2 errors, then the file)" 3 "$(requests flaky503/b)"

step "503 and 429 that never end, 403: one line, nothing left"
t0=$(date +%s)
expect_fail "registry, always 503" 'HTTP 503 .*retries exhausted' e2e39-d503 "$REG/down503/a:1"
t1=$(date +%s)
step "always 503: gave up after $((t1 - t0)) s"
[ $((t1 - t0)) -ge 3 ] || fail "always 503: gave up after $((t1 - t0)) s, before waiting out 4 x Retry-After: 1"
assert_eq "always 503: 1 request and 4 retries" 5 "$(requests down503/a)"
expect_fail "registry, always 429" 'HTTP 429 .*rate limited' e2e39-d429 "$REG/down429/a:1"
expect_fail "URL, always 503" 'HTTP 503' e2e39-du503 "$WEB/down503/b/layer.tar.gz"
expect_fail "registry, 403" 'HTTP 403 Forbidden' e2e39-403 "$REG/forbidden/a:1"
expect_fail "URL, 403" 'HTTP 403 Forbidden' e2e39-u403 "$WEB/forbidden/b/layer.tar.gz"

step "digests: a pinned manifest with other bytes, a config blob with other bytes"
other="sha256:$(printf x | sha256sum | cut -d' ' -f1)"
expect_fail "manifest not matching its pin" "manifest .*digest mismatch: expected $other" e2e39-liar "$REG/liar/a@$other"
expect_fail "config blob not matching its digest" 'config .*digest mismatch' e2e39-badcfg "$REG/badcfg/a:1"

step "truncated downloads: the body ends before its Content-Length"
expect_fail "registry layer truncated" 'layer 1/1 .*truncated download: [0-9]+ of [0-9]+ bytes' e2e39-trunc "$REG/trunc/a:1"
assert_eq "the truncated layer was fetched 3 times (and the config once)" 4 "$(requests trunc/a/blobs)"
expect_fail "URL truncated" 'truncated download: [0-9]+ of [0-9]+ bytes' e2e39-utrunc "$WEB/trunc/b/layer.tar.gz"

step "a server that stops sending mid-download, then SIGINT: exit 130 within 3 s, nothing left"
th_exec sh -c "cat > $W/stall.sh" <<'EOF'
# stall.sh DIR NAME SOURCE [connect]: import SOURCE as NAME; once the
# server has stalled (DIR/stalled; with "connect": at once) and a second
# passed, SIGINT; prints "STATUS MS".
set -u
rm -f "$1/stalled"
sdme-import --install-packages=no "$3" "$2" >"$1/stall.out" 2>&1 &
pid=$!
[ "${4-}" != connect ] || : >"$1/stalled"
i=0
while [ ! -e "$1/stalled" ]; do
	i=$((i + 1))
	if [ "$i" -gt 300 ]; then
		kill -9 "$pid"
		echo "the server never stalled"
		exit 1
	fi
	sleep 0.1
done
sleep 1
t0=$(date +%s%N)
kill -INT "$pid"
wait "$pid"
rc=$?
echo "$rc $((($(date +%s%N) - t0) / 1000000))"
EOF
for case in "registry $REG/stall/a:1" "URL $WEB/stall/b/layer.tar.gz" "connect http://127.0.0.1:$((PORT + 1))/x.tar.gz"; do
	what=${case%% *}
	src=${case#* }
	name=e2e39-stall-$what
	th_exec rm -rf /var/lib/sdme/blobs
	res=$(th_exec sh "$W/stall.sh" "$W" "$name" "$src" "$what" 2>&1 || true)
	out=$(th_exec cat "$W/stall.out" 2>&1)
	step "stalled $what: status and ms after SIGINT: '$res'; output: $out"
	assert_match "stalled $what: exit 130" '^130 [0-9]+$' "$res"
	ms=${res#* }
	if ! [[ $ms =~ ^[0-9]+$ ]] || [ "$ms" -ge 3000 ]; then
		fail "stalled $what: $ms ms from SIGINT to exit (at most 3000)"
	fi
	assert_eq "stalled $what: one line saying so" "sdme-import: interrupted; nothing was imported" "$out"
	assert_eq "stalled $what: nothing left behind" "" "$(left_behind "$name")"
done

step "a layer that fails to apply while the next one's download is stalled: the import ends at once"
th_exec rm -f "$W/stalled"
t0=$(date +%s)
expect_fail "bad layer 1, layer 2 stalled" "layer 1/2 .*refusing to write outside the target" e2e39-evil "$REG/evilstall/a:1"
t1=$(date +%s)
step "bad layer 1, layer 2 stalled: failed after $((t1 - t0)) s"
check_in "layer 2 had stalled" test -e "$W/stalled"
[ $((t1 - t0)) -lt 15 ] || fail "bad layer 1, layer 2 stalled: $((t1 - t0)) s to fail (the stalled read was waited out)"

step "Image= in a .container naming a registry reference (pinned): systemctl start pulls and boots it"
base_digest=$(th_exec cat "$W/base.digest")
ref="$REG/base/deb@$base_digest"
th_exec mkdir -p /etc/sdme
printf '[Container]\nImage=%s\n' "$ref" | th_exec sh -c "cat > /etc/sdme/$inl.container"
require_in "daemon-reload" systemctl daemon-reload
img=$(th_exec systemctl show -p Requires --value "sdme-$inl" | tr ' ' '\n' | grep -E '^sdme-image-' || true)
step "image unit of Image=$ref: '$img'"
assert_match "sdme-$inl requires an image unit named after the reference" '^sdme-image-deb-[0-9a-f]{16}\.service$' "$img"
rootfs=${img#sdme-image-}
rootfs=${rootfs%.service}
check_in "the image unit runs sdme-import --if-missing on the reference" sh -c \
	"systemctl cat $img | grep -E '^ExecStart=/usr/bin/sdme-import --if-missing --quiet $ref $rootfs\$'"
on_cleanup rm -rf "/var/lib/sdme/rootfs/$rootfs" "/var/lib/sdme/meta/$rootfs.json"
check_in "systemctl start sdme-$inl (pulls, then boots)" timeout 300 systemctl start "sdme-$inl"
assert_eq "$img is active" active "$(th_exec systemctl is-active "$img" 2>&1 || true)"
assert_match "the import recorded the pinned digest" "\"digest\": \"$base_digest\"" \
	"$(th_exec cat "/var/lib/sdme/meta/$rootfs.json" 2>&1)"
assert_eq "hostname inside $inl" "$inl" "$(th_run_in "$inl" cat /proc/sys/kernel/hostname 2>&1 || true)"
th_exec systemctl stop "sdme-$inl" "$img" || true
th_unmounted "$inl" || fail "the overlay of $inl is still mounted after stop"
