# shellcheck shell=bash
# 38-image: images declared in files, imported on first start.
# - i38a.container with Image=/var/tmp/sdme38/base.tar (a tarball of a
#   bootable Debian tree: the cached test host rootfs): `systemctl start
#   sdme-i38a` runs the image unit, which imports, then the container
#   boots; the image unit finished before the prepare unit started;
# - i38c.container names the same Image=: it shares the image unit;
# - a second start (the image unit stopped, so it runs again) does not
#   re-import: the rootfs directory keeps its inode and a marker file put
#   into it after the first import, and the image unit's journal shows no
#   second import;
# - i38b.container with Rootfs=deb38.image (deb38.image: [Image]
#   Image=the same tarball) boots from /var/lib/sdme/rootfs/deb38;
# - f38.container with Rootfs=bad38.image, whose source does not exist:
#   the start fails, the image unit is failed and its journal says why.

tarball=/var/tmp/sdme38/base.tar
all="i38a i38b i38c f38"

on_cleanup sh -c "for m in $all; do rm -rf /var/lib/sdme/containers/\$m /etc/sdme/\$m.container; done; rm -rf /etc/sdme/deb38.image /etc/sdme/bad38.image /var/tmp/sdme38 /var/lib/sdme/rootfs/deb38 /var/lib/sdme/rootfs/base-*; systemctl daemon-reload"
on_cleanup sh -c "systemctl stop sdme-i38a sdme-i38b sdme-i38c sdme-f38 'sdme-image-*'; systemctl reset-failed 'sdme-*' 'sdme-prepare@*' 2>/dev/null; true"

booted() { # MACHINE
	local state
	state=$(th_exec timeout 60 systemctl -M "$1" is-system-running 2>&1 || true)
	step "$1: system state '$state'"
	assert_match "$1 booted (running or degraded)" '^(running|degraded)$' "$state"
}
mono() { # UNIT PROPERTY: a monotonic timestamp in µs
	th_exec systemctl show -p "$2" --value "$1" 2>/dev/null || true
}

th_exec mkdir -p /var/tmp/sdme38 /etc/sdme
require "the cached test host rootfs as a tarball in the host" \
	cp "$(th_cache_tarball "$TH_SUITE")" "$TH_ROOT$tarball"
step "tarball: $(th_exec du -h "$tarball" | cut -f1)"

printf '[Container]\nImage=%s\n' "$tarball" | th_exec sh -c "cat > /etc/sdme/i38a.container"
printf '[Container]\nImage=%s\n' "$tarball" | th_exec sh -c "cat > /etc/sdme/i38c.container"
printf '[Image]\nImage=%s\n' "$tarball" | th_exec sh -c "cat > /etc/sdme/deb38.image"
printf '[Container]\nRootfs=deb38.image\n' | th_exec sh -c "cat > /etc/sdme/i38b.container"
printf '[Image]\nImage=/var/tmp/sdme38/missing.tar\n' | th_exec sh -c "cat > /etc/sdme/bad38.image"
printf '[Container]\nRootfs=bad38.image\n' | th_exec sh -c "cat > /etc/sdme/f38.container"
require_in "daemon-reload" systemctl daemon-reload

img=$(th_exec systemctl show -p Requires --value sdme-i38a | tr ' ' '\n' | grep -E '^sdme-image-' || true)
step "image unit of Image=$tarball: '$img'"
assert_match "sdme-i38a requires an image unit named after the tarball" '^sdme-image-base-[0-9a-f]{16}\.service$' "$img"
name=${img#sdme-image-}
name=${name%.service}
th_exec systemctl cat "$img" || true
assert_match "sdme-i38c shares it" "(^| )$img( |\$)" "$(th_exec systemctl show -p Requires --value sdme-i38c)"
# The prepare step is a static template's instance: the image unit orders
# itself before it (whether the start keeps that order is measured below).
assert_match "$img is ordered before sdme-prepare@i38a" "(^| )sdme-prepare@i38a\.service( |\$)" "$(th_exec systemctl show -p Before --value "$img")"
check_in "the image unit runs sdme-import --if-missing" sh -c \
	"systemctl cat $img | grep -E '^ExecStart=/usr/bin/sdme-import --if-missing --quiet $tarball $name\$'"
th_exec test ! -e "/var/lib/sdme/rootfs/$name" || fail "/var/lib/sdme/rootfs/$name exists before the first start"

step "first start: import, then boot"
t0=$(date +%s%N)
require_in "systemctl start sdme-i38a" timeout 600 systemctl start sdme-i38a
step "imported and booted in $((($(date +%s%N) - t0) / 1000000)) ms"
booted i38a
assert_eq "$img active" active "$(th_exec systemctl is-active "$img" 2>&1 || true)"
th_exec test -x "/var/lib/sdme/rootfs/$name/usr/lib/systemd/systemd" || fail "no systemd in /var/lib/sdme/rootfs/$name"
done_at=$(mono "$img" ExecMainExitTimestampMonotonic)
prep_at=$(mono sdme-prepare@i38a InactiveExitTimestampMonotonic)
step "image unit exited at $done_at µs, prepare started at $prep_at µs"
if [ -z "$done_at" ] || [ -z "$prep_at" ] || [ "$done_at" -eq 0 ] || [ "$prep_at" -lt "$done_at" ]; then
	fail "the prepare unit did not start after the import finished ($prep_at < $done_at)"
fi
inode=$(th_exec stat -c %i "/var/lib/sdme/rootfs/$name")
th_exec touch "/var/lib/sdme/rootfs/$name/marker38"
require_in "sdme-i38c starts on the same rootfs" timeout 180 systemctl start sdme-i38c
booted i38c

step "second start: no import"
require_in "stop sdme-i38a, sdme-i38c" timeout 120 systemctl stop sdme-i38a sdme-i38c
require_in "stop $img (so that it runs again)" systemctl stop "$img"
since=$(th_exec date +%s)
t0=$(date +%s%N)
require_in "systemctl start sdme-i38a again" timeout 180 systemctl start sdme-i38a
step "second start in $((($(date +%s%N) - t0) / 1000000)) ms"
booted i38a
assert_eq "$img ran again (active)" active "$(th_exec systemctl is-active "$img" 2>&1 || true)"
assert_eq "rootfs inode unchanged" "$inode" "$(th_exec stat -c %i "/var/lib/sdme/rootfs/$name" 2>&1 || true)"
th_exec test -e "/var/lib/sdme/rootfs/$name/marker38" || fail "the marker file is gone: the rootfs was imported again"
th_exec journalctl --sync 2>/dev/null || true
th_exec journalctl -u "$img" --since "@$since" --no-pager -o cat 2>&1 || true

step "Rootfs=deb38.image"
require_in "systemctl start sdme-i38b" timeout 600 systemctl start sdme-i38b
booted i38b
th_exec test -d /var/lib/sdme/rootfs/deb38/etc || fail "no /var/lib/sdme/rootfs/deb38"
assert_eq "sdme-image-deb38 active" active "$(th_exec systemctl is-active sdme-image-deb38 2>&1 || true)"

step "a failing import fails the start"
since=$(th_exec date +%s)
check_in_status 1 "systemctl start sdme-f38 fails" timeout 120 systemctl start sdme-f38
assert_eq "sdme-image-bad38 failed" failed "$(th_exec systemctl is-active sdme-image-bad38 2>&1 || true)"
assert_eq "sdme-f38 not active" inactive "$(th_exec systemctl is-active sdme-f38 2>&1 || true)"
th_exec journalctl --sync 2>/dev/null || true
log=$(th_exec journalctl -u sdme-image-bad38 --since "@$since" --no-pager -o cat 2>&1 || true)
printf 'journalctl -u sdme-image-bad38:\n%s\n' "$log"
assert_match "the reason in journalctl -u sdme-image-bad38" 'missing\.tar' "$(printf '%s\n' "$log" | grep -v -e '^Starting' -e '^Failed to start' -e 'Main process exited' -e 'Failed with result' || true)"
th_exec test ! -e /var/lib/sdme/rootfs/bad38 || fail "a failed import left /var/lib/sdme/rootfs/bad38"

step "stop"
for m in i38a i38b; do
	require_in "systemctl stop sdme-$m" timeout 120 systemctl stop "sdme-$m"
	th_unmounted "$m" || fail "overlay of $m still mounted after stop"
done
