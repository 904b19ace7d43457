# shellcheck shell=bash
# shellcheck disable=SC2016 # snippets expand inside the test host or guests
# 56-userns: PrivateUsers= runs a container in its own user namespace on
# ID-mapped layers, with nothing copied up:
# - a host clone (PrivateUsers=yes, base from the machine name) and an
#   imported rootfs (a fixed base) boot; /proc/self/uid_map inside shows
#   "0 BASE 65536"; systemctl -M and machinectl shell work; upper/ stays
#   under 10 MB after the first boot;
# - a file made by root inside is uid 0 in upper/, one made by uid 1000
#   inside is 1000 in upper/ (the host sees them as BASE and BASE+1000 in
#   merged/);
# - stop leaves nothing mounted (overlay, /run/sdme/idmap); start again
#   works and keeps the files;
# - a rootfs without /tmp and /root (as many OCI images) boots: sdme-prepare
#   makes them in upper/ (0:0 on disk, 1777 and 700; the host sees the
#   base in merged/), since nspawn as host root cannot on the mapped overlay;
# - a pod member with PrivateUsers=yes serves and reaches another member
#   on 127.0.0.1;
# - a second file with the same base is refused by the generator (the
#   error names both files), the first one is still generated;
# - for comparison, nspawn's own --private-users=pick
#   --private-users-ownership=chown on a plain overlay of the same rootfs:
#   du -s upper/ after it ran (printed, and checked to be far bigger).

hc=un56       # host clone, PrivateUsers=yes
rf=ur56       # rootfs, fixed base
rf_base=2097152
col=zz56      # same base as $rf, later in file-name order: refused
ch=ch56       # chown fallback, measured
pod=pod56
pa=pa56       # pod member with PrivateUsers=yes
pb=pb56       # pod member without
tp=ut56       # bare template ut56@.container, PrivateUsers=yes
nt=nt56       # rootfs without /tmp and /root, fixed base
nt_base=2162688
names="$hc $rf $col $ch $pa $pb $nt"

cleanup_files="/etc/sdme/$pod.pod /var/lib/sdme/rootfs/$rf /var/lib/sdme/rootfs/$nt"
for n in $names; do cleanup_files="$cleanup_files /etc/sdme/$n.container /var/lib/sdme/containers/$n"; done
cleanup_files="$cleanup_files /etc/sdme/$tp@.container /var/lib/sdme/containers/$tp-a"
on_cleanup sh -c "rm -rf $cleanup_files && systemctl daemon-reload"
on_cleanup sh -c "for n in $names; do systemctl stop sdme-\$n; done; systemctl stop sdme-pod-$pod sdme-$tp@a;  /usr/libexec/sdme/sdme-prepare --unmount --state=/var/lib/sdme/containers/$ch $ch; systemctl reset-failed 'sdme-*' 'sdme-prepare@*' 'var-lib-sdme-*' 2>/dev/null; true"

# nothing_mapped: no mount below /run/sdme/idmap.
nothing_mapped() {
	[ -z "$(th_exec findmnt -rn -o TARGET 2>/dev/null | grep '^/run/sdme/idmap' || true)" ]
}

# uid_map MACHINE: the guest's uid_map, white space squeezed.
uid_map() {
	th_run_in "$1" cat /proc/self/uid_map 2>&1 | tr -s ' \t' ' ' | sed 's/^ //; s/ $//' || true
}

# base_of UNIT: the base on nspawn's command line in UNIT.
base_of() {
	th_exec systemctl cat "$1" 2>/dev/null | sed -n 's/.*--private-users=\([0-9]*\):65536 --private-users-ownership=off.*/\1/p' | sed -n 1p
}

step "write $hc (host clone) and $rf (rootfs, PrivateUsers=$rf_base)"
require "th_put_rootfs $rf" th_put_rootfs "$rf"
th_exec mkdir -p /etc/sdme
printf '[Container]\nPrivateUsers=yes\n' | th_exec sh -c "cat > /etc/sdme/$hc.container"
printf '[Container]\nRootfs=%s\nPrivateUsers=%s\n' "$rf" "$rf_base" | th_exec sh -c "cat > /etc/sdme/$rf.container"
require_in "daemon-reload" systemctl daemon-reload
hc_base=$(base_of "sdme-$hc.service")
assert_match "sdme-$hc runs nspawn with --private-users=BASE:65536 --private-users-ownership=off" '^[0-9]+$' "$hc_base"
assert_eq "sdme-$rf has the fixed base" "$rf_base" "$(base_of "sdme-$rf.service")"
if [ -n "$hc_base" ]; then
	if [ $((hc_base % 65536)) != 0 ] || [ "$hc_base" -lt 524288 ] || [ "$hc_base" -gt 1878982656 ]; then
		fail "base $hc_base is not a multiple of 65536 in nspawn's pick range"
	fi
fi
check_in "no mount unit for a PrivateUsers= container (sdme-prepare mounts)" \
	sh -c "! systemctl cat var-lib-sdme-containers-$hc-merged.mount >/dev/null 2>&1"

for m in "$hc" "$rf"; do
	step "start $m"
	t0=$(date +%s%N)
	require_in "systemctl start sdme-$m" timeout 180 systemctl start "sdme-$m"
	step "$m started in $((($(date +%s%N) - t0) / 1000000)) ms"
done
for m in "$hc" "$rf"; do
	b=$rf_base
	[ "$m" != "$hc" ] || b=$hc_base
	assert_eq "uid_map inside $m" "0 $b 65536" "$(uid_map "$m")"
	state=$(th_exec timeout 60 systemctl -M "$m" is-system-running 2>&1 || true)
	if [ "$state" != running ] && [ "$state" != degraded ]; then
		th_exec systemctl -M "$m" --failed --no-pager --no-legend || true
	fi
	assert_match "systemctl -M $m is-system-running" '^(running|degraded)$' "$state"
	[ "$state" = running ] || th_exec systemctl -M "$m" --failed --no-pager --no-legend || true
	assert_match "machinectl shell $m works" 'shell-56-ok' \
		"$(th_exec timeout 60 machinectl shell "$m" /bin/echo shell-56-ok 2>&1 || true)"
	kb=$(th_exec du -s "/var/lib/sdme/containers/$m/upper" 2>&1 | cut -f1 || true)
	step "du -s /var/lib/sdme/containers/$m/upper after the first boot: $kb KiB; the biggest entries:"
	th_exec sh -c "du -a /var/lib/sdme/containers/$m/upper | sort -n | tail -n 4" || true
	assert_match "du -s upper/ of $m is a number" '^[0-9]+$' "$kb"
	if ! [ "${kb:-99999999}" -lt 10240 ] 2>/dev/null; then
		fail "upper/ of $m is $kb KiB after the first boot (want < 10 MB)"
	fi
	check_in "the overlay of $m is mounted" findmnt -n "/var/lib/sdme/containers/$m/merged"
	nothing_mapped || fail "mapped layers still mounted below /run/sdme/idmap while $m runs"

	step "$m: files made inside keep the container's IDs on disk"
	check_in "root inside $m writes /root/e2e-56-root" \
		timeout 60 systemd-run -q --collect -M "$m" --wait --pipe touch /root/e2e-56-root
	check_in "uid 1000 inside $m writes /var/tmp/e2e-56-user" \
		timeout 60 systemd-run -q --collect -M "$m" --wait --pipe \
		setpriv --reuid=1000 --regid=1000 --clear-groups touch /var/tmp/e2e-56-user
	up=/var/lib/sdme/containers/$m/upper
	assert_eq "root's file is 0:0 in upper/" "0:0" "$(th_exec stat -c %u:%g "$up/root/e2e-56-root" 2>&1 || true)"
	assert_eq "uid 1000's file is 1000:1000 in upper/" "1000:1000" "$(th_exec stat -c %u:%g "$up/var/tmp/e2e-56-user" 2>&1 || true)"
	merged=/var/lib/sdme/containers/$m/merged
	assert_eq "the host sees root's file as BASE in merged/" "$b" "$(th_exec stat -c %u "$merged/root/e2e-56-root" 2>&1 || true)"
	assert_eq "the host sees uid 1000's file as BASE+1000 in merged/" "$((b + 1000))" \
		"$(th_exec stat -c %u "$merged/var/tmp/e2e-56-user" 2>&1 || true)"
	assert_eq "inside, root's file belongs to root" "0" "$(th_run_in "$m" stat -c %u /root/e2e-56-root 2>&1 | tr -d '\r' || true)"
done

step "stop: nothing stays mounted"
require_in "systemctl stop sdme-$hc sdme-$rf" timeout 120 systemctl stop "sdme-$hc" "sdme-$rf"
for m in "$hc" "$rf"; do
	assert_eq "sdme-$m inactive after stop" inactive "$(th_exec systemctl is-active "sdme-$m" 2>&1 || true)"
	th_unmounted "$m" || fail "overlay of $m still mounted after stop"
done
nothing_mapped || fail "mapped layers left below /run/sdme/idmap after stop"
check_in "/run/sdme/idmap has no directory left for $hc or $rf" \
	sh -c "! test -e /run/sdme/idmap/$hc && ! test -e /run/sdme/idmap/$rf"

step "start $rf again: it works and keeps its files"
require_in "systemctl start sdme-$rf (again)" timeout 180 systemctl start "sdme-$rf"
assert_eq "uid_map inside $rf after the restart" "0 $rf_base 65536" "$(uid_map "$rf")"
check_in "root's file is still there" timeout 60 systemd-run -q --collect -M "$rf" --wait --pipe test -f /root/e2e-56-root
require_in "systemctl stop sdme-$rf" timeout 120 systemctl stop "sdme-$rf"
th_unmounted "$rf" || fail "overlay of $rf still mounted after the second stop"
nothing_mapped || fail "mapped layers left after the second stop"

step "a rootfs without /tmp and /root ($nt, PrivateUsers=$nt_base)"
require "th_put_rootfs $nt" th_put_rootfs "$nt"
rm -rf --one-file-system "$TH_ROOT/var/lib/sdme/rootfs/$nt/tmp" "$TH_ROOT/var/lib/sdme/rootfs/$nt/root"
check_in "no /tmp and no /root in rootfs $nt" \
	sh -c "! test -e /var/lib/sdme/rootfs/$nt/tmp && ! test -e /var/lib/sdme/rootfs/$nt/root"
printf '[Container]\nRootfs=%s\nPrivateUsers=%s\n' "$nt" "$nt_base" | th_exec sh -c "cat > /etc/sdme/$nt.container"
require_in "daemon-reload" systemctl daemon-reload
check_in "systemctl start sdme-$nt" timeout 180 systemctl start "sdme-$nt"
assert_eq "machine $nt is registered and running" running "$(th_exec machinectl show -p State --value "$nt" 2>&1 || true)"
assert_eq "uid_map inside $nt" "0 $nt_base 65536" "$(uid_map "$nt")"
up=/var/lib/sdme/containers/$nt/upper
assert_eq "upper/tmp made by sdme-prepare: 0:0, 1777" "0:0 1777" "$(th_exec stat -c '%u:%g %a' "$up/tmp" 2>&1 || true)"
assert_eq "upper/root made by sdme-prepare: 0:0, 700" "0:0 700" "$(th_exec stat -c '%u:%g %a' "$up/root" 2>&1 || true)"
assert_eq "the host sees merged/tmp owned by the base" "$nt_base:$nt_base" \
	"$(th_exec stat -c %u:%g "/var/lib/sdme/containers/$nt/merged/tmp" 2>&1 || true)"
assert_eq "inside, /root belongs to root" "0 700" "$(th_run_in "$nt" stat -c '%u %a' /root 2>&1 | tr -d '\r' || true)"
check_in "systemctl stop sdme-$nt" timeout 120 systemctl stop "sdme-$nt"
th_unmounted "$nt" || fail "overlay of $nt still mounted after stop"
nothing_mapped || fail "mapped layers left after $nt stopped"

step "an instance of a bare template with PrivateUsers=yes: its base comes from its machine name at start"
printf '[Container]\nRootfs=%s\nPrivateUsers=yes\n' "$rf" | th_exec sh -c "cat > /etc/sdme/$tp@.container"
require_in "daemon-reload" systemctl daemon-reload
assert_match "the template runs nspawn with --private-users=yes --private-users-ownership=off" \
	'--private-users=yes --private-users-ownership=off' "$(th_exec systemctl cat "sdme-$tp@.service" 2>&1 || true)"
require_in "systemctl start sdme-$tp@a" timeout 180 systemctl start "sdme-$tp@a"
tb=$(th_exec stat -c %u "/var/lib/sdme/containers/$tp-a/merged" 2>&1 || true)
step "$tp-a: the mapped root directory is owned by $tb on the host"
assert_match "the root of $tp-a is owned by a base" '^[0-9]+$' "$tb"
if [ $((${tb:-1} % 65536)) != 0 ] || [ "${tb:-0}" -lt 524288 ]; then
	fail "the root of $tp-a is owned by $tb, not a base in nspawn's pick range"
fi
[ "$tb" != "$rf_base" ] || fail "$tp-a got $rf's base"
assert_eq "uid_map inside $tp-a" "0 $tb 65536" "$(uid_map "$tp-a")"
assert_match "systemctl -M $tp-a is-system-running" '^(running|degraded)$' \
	"$(th_exec timeout 60 systemctl -M "$tp-a" is-system-running 2>&1 || true)"
require_in "systemctl stop sdme-$tp@a" timeout 120 systemctl stop "sdme-$tp@a"
th_unmounted "$tp-a" || fail "overlay of $tp-a still mounted after stop"
nothing_mapped || fail "mapped layers left after $tp-a stopped"
th_exec rm -f "/etc/sdme/$tp@.container"

step "a pod member with PrivateUsers=yes ($pa) and one without ($pb)"
printf '[Pod]\n' | th_exec sh -c "cat > /etc/sdme/$pod.pod"
printf '[Container]\nPod=%s.pod\nPrivateUsers=yes\n' "$pod" | th_exec sh -c "cat > /etc/sdme/$pa.container"
printf '[Container]\nPod=%s.pod\n' "$pod" | th_exec sh -c "cat > /etc/sdme/$pb.container"
require_in "daemon-reload" systemctl daemon-reload
for m in "$pa" "$pb"; do
	require_in "systemctl start sdme-$m" timeout 180 systemctl start "sdme-$m"
done
pa_base=$(base_of "sdme-$pa.service")
assert_eq "uid_map inside $pa" "0 $pa_base 65536" "$(uid_map "$pa")"
require "a listener on 127.0.0.1:8056 in $pa" net_serve "$pa" srv56 8056 from-userns
require "a listener on 127.0.0.1:8057 in $pb" net_serve "$pb" srv56 8057 from-plain
net_await "$pb" 8056 from-userns ||
	fail "$pb never reached the server in $pa ($pa has PrivateUsers=yes) on 127.0.0.1:8056"
assert_eq "$pa (PrivateUsers=yes) reaches the server in $pb on 127.0.0.1:8057" from-plain "$(net_fetch "$pa" 8057)"
require_in "systemctl stop sdme-pod-$pod" timeout 180 systemctl stop "sdme-pod-$pod"
for m in "$pa" "$pb"; do
	th_unmounted "$m" || fail "overlay of $m still mounted after the pod stopped"
done
nothing_mapped || fail "mapped layers left after the pod stopped"

step "a second file with $rf's base: the generator refuses it, naming both files"
printf '[Container]\nPrivateUsers=%s\n' "$rf_base" | th_exec sh -c "cat > /etc/sdme/$col.container"
since=$(th_exec date '+%Y-%m-%d %H:%M:%S')
check_in "daemon-reload" systemctl daemon-reload
# Under systemd the generator logs to /dev/kmsg, which an nspawn test host
# does not pass on to its journal: the journal has systemd's line about
# the exit status, and the generator run by hand shows the message.
assert_match "the journal says the generator failed" 'sdme-generator failed with exit status 1' \
	"$(th_exec journalctl -q --no-pager --since "$since" 2>&1 || true)"
gen=$(th_exec sh -c 'd=$(mktemp -d) && /usr/lib/systemd/system-generators/sdme-generator "$d" "$d" "$d" 2>&1; rm -rf "$d"' || true)
step "the generator says: $gen"
assert_match "the collision is reported with both files" \
	"/etc/sdme/$col.container: PrivateUsers=: the UID range $rf_base-$((rf_base + 65535)) of machine '$col' is already the range of machine '$rf' \\(/etc/sdme/$rf.container\\)" "$gen"
assert_eq "only that file is reported" 2 "$(printf '%s\n' "$gen" | grep -c "^sdme-generator: " || true)"
# The refused file gets an error unit: no mount, and its start fails with
# the collision (sdme-generator(8), ERROR UNITS).
check_in "sdme-$col.service is an error unit" sh -c "systemctl cat sdme-$col.service | grep -q '^Type=oneshot'"
check_in "no mount unit for $col" sh -c "! systemctl cat var-lib-sdme-containers-$col-merged.mount >/dev/null 2>&1"
check_in_status 1 "systemctl start sdme-$col fails" systemctl start "sdme-$col"
assert_match "its status names the collision" "UID range $rf_base-$((rf_base + 65535))" \
	"$(th_exec systemctl status --no-pager -l "sdme-$col" 2>&1 || true)"
th_exec systemctl reset-failed "sdme-$col"
check_in "sdme-$rf.service is still generated" systemctl cat "sdme-$rf.service"
check_in "sdme-$hc.service is still generated" systemctl cat "sdme-$hc.service"
th_exec rm -f "/etc/sdme/$col.container"

step "for comparison: nspawn's own chown on a plain overlay of the same rootfs"
chstate=/var/lib/sdme/containers/$ch
require_in "mount a plain overlay of $rf for $ch" /usr/libexec/sdme/sdme-prepare --mount \
	"--lower=/var/lib/sdme/rootfs/$rf" "--state=$chstate" "--hostname=$ch" "$ch"
before=$(th_exec du -s "$chstate/upper" | cut -f1)
t0=$(date +%s%N)
check_in "systemd-nspawn --private-users=pick --private-users-ownership=chown /bin/true" \
	timeout 600 systemd-nspawn -q --register=no -D "$chstate/merged" \
	--private-users=pick --private-users-ownership=chown /bin/true
ms=$((($(date +%s%N) - t0) / 1000000))
after=$(th_exec du -s "$chstate/upper" | cut -f1)
step "chown fallback: du -s upper/ went from $before KiB to $after KiB in $ms ms (PrivateUsers=: $kb KiB after a whole boot)"
[ "${after:-0}" -gt 51200 ] || fail "the chown fallback copied only $after KiB up (expected far more than PrivateUsers=)"
check_in "unmount $ch" /usr/libexec/sdme/sdme-prepare --unmount "--state=$chstate" "$ch"
th_unmounted "$ch" || fail "overlay of $ch still mounted after unmount"
