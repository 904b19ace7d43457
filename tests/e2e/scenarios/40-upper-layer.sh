# shellcheck shell=bash
# 40-upper-layer: what sdme-prepare writes into upper/ does its job in a
# booted guest:
# - host name = machine name, or Hostname=;
# - /etc/machine-id differs from the test host's (and between clones) and
#   is stable across stop/start;
# - /etc/resolv.conf is the host's (nspawn --resolv-conf=auto, host network),
#   also for a rootfs whose own resolv.conf differs; resolved masked;
# - the test host's own fstab entries, .mount and .swap units do not fail
#   inside: hidden by the opaque /etc/systemd/system (default) or masked
#   (OpaqueDir= reset), fstab stubbed;
# - OpaqueDir=/etc/systemd/system on a rootfs whose dbus.service is an
#   alias (as with dbus-broker): the alias is copied, D-Bus runs;
# - opaque /var/log hides the host's logs; a deleted lower file is a whiteout.
#
# Containers: u40 (host clone, defaults), u40b (host clone, OpaqueDir=
# reset, Hostname=h40b), r40 (Rootfs=r40, OpaqueDir=/etc/systemd/system).

c1=u40
c2=u40b
c3=r40
rootfs=/var/lib/sdme/rootfs/$c3
fstab_unit='mnt-e2e\x2d40\x2dfstab.mount'
mount_unit='mnt-e2e\x2d40\x2dunit.mount'
swap_unit='e2e\x2d40\x2dswapfile.swap'

on_cleanup sh -c "rm -rf $rootfs /var/lib/sdme/containers/$c1 /var/lib/sdme/containers/$c2 /var/lib/sdme/containers/$c3 /etc/sdme/$c1.container /etc/sdme/$c2.container /etc/sdme/$c3.container && systemctl daemon-reload"
on_cleanup sh -c "systemctl stop sdme-$c1 sdme-$c2 sdme-$c3; systemctl reset-failed 'sdme-*' 'sdme-prepare@*' 2>/dev/null; true"

step "give the test host an fstab entry, a .mount and a .swap unit that fail"
# Each would fail in a container (a file system type that does not exist,
# swap on a missing file; not a bind of a missing source, which systemd
# creates): nofail keeps a failure from blocking a boot, so what
# this scenario would see without sdme's stubs and masks is a degraded
# guest with failed units.
th_exec cp /etc/fstab /etc/fstab.e2e-40
on_cleanup sh -c "systemctl stop '$fstab_unit' '$mount_unit' '$swap_unit'; mv -f /etc/fstab.e2e-40 /etc/fstab && rm -f '/etc/systemd/system/$mount_unit' '/etc/systemd/system/$swap_unit' '/etc/systemd/system/multi-user.target.wants/$mount_unit' '/etc/systemd/system/swap.target.wants/$swap_unit' /var/log/e2e-40-host.log /etc/e2e-40-lower && rmdir /mnt/e2e-40-fstab /mnt/e2e-40-unit /etc/systemd/system/swap.target.wants 2>/dev/null; systemctl daemon-reload && systemctl reset-failed"
th_sh 'echo "e2e-40 /mnt/e2e-40-fstab e2e40nofs nofail 0 0" >> /etc/fstab'
printf '[Unit]\nDescription=e2e 40 host mount\n[Mount]\nWhat=e2e-40\nWhere=/mnt/e2e-40-unit\nType=e2e40nofs\n[Install]\nWantedBy=multi-user.target\n' |
	th_exec sh -c "cat > '/etc/systemd/system/$mount_unit'"
printf '[Unit]\nDescription=e2e 40 host swap\n[Swap]\nWhat=/e2e-40-swapfile\n[Install]\nWantedBy=swap.target\n' |
	th_exec sh -c "cat > '/etc/systemd/system/$swap_unit'"
require_in "daemon-reload (host units)" systemctl daemon-reload
require_in "enable $mount_unit $swap_unit on the test host" systemctl enable -q "$mount_unit" "$swap_unit"
# Control: these units really fail (here on the test host, itself a container).
check_in_status 1 "control: $fstab_unit fails on the test host" systemctl start "$fstab_unit"
check_in_status 1 "control: $mount_unit fails on the test host" systemctl start "$mount_unit"
check_in_status 1 "control: $swap_unit fails on the test host" systemctl start "$swap_unit"
th_exec systemctl reset-failed "$fstab_unit" "$mount_unit" "$swap_unit" || true

th_sh 'echo host-log > /var/log/e2e-40-host.log && echo lower > /etc/e2e-40-lower'

step "a rootfs $c3 whose dbus.service is an alias, and whose resolv.conf is its own"
require "th_put_rootfs $c3" th_put_rootfs "$c3"
th_sh "cd $rootfs && mv usr/lib/systemd/system/dbus.service usr/lib/systemd/system/dbus-daemon.service &&
	ln -s /usr/lib/systemd/system/dbus-daemon.service etc/systemd/system/dbus.service &&
	rm -f etc/resolv.conf && echo 'nameserver 192.0.2.40 # e2e-40 rootfs' > etc/resolv.conf"

th_exec mkdir -p /etc/sdme
printf '[Container]\n' | th_exec sh -c "cat > /etc/sdme/$c1.container"
printf '[Container]\nOpaqueDir=\nHostname=h40b\n' | th_exec sh -c "cat > /etc/sdme/$c2.container"
printf '[Container]\nRootfs=%s\nOpaqueDir=/etc/systemd/system\n' "$c3" | th_exec sh -c "cat > /etc/sdme/$c3.container"
require_in "daemon-reload" systemctl daemon-reload

for m in "$c1" "$c2" "$c3"; do
	t0=$(date +%s%N)
	require_in "systemctl start sdme-$m" timeout 180 systemctl start "sdme-$m"
	step "$m started in $((($(date +%s%N) - t0) / 1000000)) ms"
done

step "boot state, D-Bus, no failed units"
for m in "$c1" "$c2" "$c3"; do
	state=$(th_exec timeout 60 systemctl -M "$m" is-system-running 2>&1 || true)
	failed=$(th_exec systemctl -M "$m" list-units --failed --plain --no-legend 2>&1 || true)
	[ -z "$failed" ] || printf 'failed units in %s:\n%s\n' "$m" "$failed"
	assert_eq "$m is running (not degraded)" running "$state"
	assert_eq "no failed units in $m" "" "$failed"
	failed_mounts=$(th_exec systemctl -M "$m" list-units --all --plain --no-legend --type=mount,swap,automount --state=failed 2>&1 || true)
	assert_eq "no failed mount/swap/automount units in $m" "" "$failed_mounts"
	assert_eq "dbus.service active in $m" active "$(th_exec systemctl -M "$m" is-active dbus.service 2>&1 || true)"
	check_in "busctl -M $m talks to the guest's bus" \
		sh -c "busctl -M '$m' list --no-pager | grep -q '^org.freedesktop.systemd1 '"
done

step "host names"
assert_eq "host name in $c1 is the machine name" "$c1" "$(th_run_in "$c1" cat /proc/sys/kernel/hostname 2>&1 || true)"
assert_eq "/etc/hostname in $c1" "$c1" "$(th_run_in "$c1" cat /etc/hostname 2>&1 || true)"
assert_eq "host name in $c3 is the machine name" "$c3" "$(th_run_in "$c3" cat /proc/sys/kernel/hostname 2>&1 || true)"
assert_eq "Hostname=h40b: host name in $c2" h40b "$(th_run_in "$c2" cat /proc/sys/kernel/hostname 2>&1 || true)"
assert_eq "Hostname=h40b: /etc/hostname in $c2" h40b "$(th_run_in "$c2" cat /etc/hostname 2>&1 || true)"
check_in "Hostname=h40b: /etc/hosts in $c2 names h40b" \
	systemd-run -q --collect -M "$c2" --wait --pipe grep -qw h40b /etc/hosts
assert_eq "Hostname=h40b: machine name stays $c2" "$c2" "$(th_exec machinectl show "$c2" -p Name --value 2>&1 || true)"
assert_eq "test host's own name unchanged" sdme-testhost "$(th_exec cat /proc/sys/kernel/hostname)"

step "machine IDs"
host_id=$(th_exec cat /etc/machine-id)
declare -A ids
for m in "$c1" "$c2" "$c3"; do
	ids[$m]=$(th_run_in "$m" cat /etc/machine-id 2>&1 || true)
	assert_match "$m has a machine ID" '^[0-9a-f]{32}$' "${ids[$m]}"
	[ "${ids[$m]}" != "$host_id" ] || fail "$m has the test host's machine ID $host_id"
	# machined knows the guest by the same ID.
	assert_eq "machinectl show $m -p Id" "${ids[$m]}" "$(th_exec machinectl show "$m" -p Id --value 2>&1 | tr -d '-' || true)"
done
[ "${ids[$c1]}" != "${ids[$c2]}" ] || fail "two clones of the host share the machine ID ${ids[$c1]}"
step "machine IDs: host $host_id, $c1 ${ids[$c1]}, $c2 ${ids[$c2]}, $c3 ${ids[$c3]}"

step "DNS configuration"
# nspawn --resolv-conf=auto with the host's network: resolved's stub file
# if resolved runs on the host, else the host's /etc/resolv.conf.
if [ "$(th_exec systemctl is-active systemd-resolved.service 2>/dev/null || true)" = active ]; then
	src=/run/systemd/resolve/stub-resolv.conf
else
	src=/etc/resolv.conf
fi
want=$(th_exec cat "$src")
step "host DNS configuration from $src"
assert_match "host's $src names a nameserver" '(^|'$'\n'')nameserver ' "$want"
for m in "$c1" "$c2" "$c3"; do
	assert_eq "/etc/resolv.conf in $m is the host's $src" "$want" "$(th_run_in "$m" cat /etc/resolv.conf 2>&1 || true)"
	check_in "/etc/resolv.conf in $m is a regular file" \
		systemd-run -q --collect -M "$m" --wait --pipe sh -c 'test -f /etc/resolv.conf && ! test -L /etc/resolv.conf'
	assert_eq "systemd-resolved masked in $m (host network)" masked \
		"$(th_exec systemctl -M "$m" show -P LoadState systemd-resolved.service 2>&1 || true)"
done
check_in "the rootfs's own resolv.conf is untouched" grep -q 'e2e-40 rootfs' "$rootfs/etc/resolv.conf"

step "the test host's mounts and swap inside the clones"
for m in "$c1" "$c2"; do
	up=/var/lib/sdme/containers/$m/upper
	check_in "upper/etc/fstab of $m has no entry of the host's" sh -c "! grep -q e2e-40 $up/etc/fstab"
	assert_eq "$fstab_unit not generated in $m" not-found \
		"$(th_exec systemctl -M "$m" show -P LoadState "$fstab_unit" 2>&1 || true)"
done
# u40: /etc/systemd/system is opaque, the host's units are not there at all.
for u in "$mount_unit" "$swap_unit"; do
	assert_eq "$u hidden in $c1 (opaque /etc/systemd/system)" not-found \
		"$(th_exec systemctl -M "$c1" show -P LoadState "$u" 2>&1 || true)"
	assert_eq "$u masked in $c2 (not opaque)" masked \
		"$(th_exec systemctl -M "$c2" show -P LoadState "$u" 2>&1 || true)"
	assert_eq "upper/ of $c2 masks $u" /dev/null \
		"$(th_exec readlink "/var/lib/sdme/containers/$c2/upper/etc/systemd/system/$u" 2>&1 || true)"
done
check_in "no masks written into the opaque /etc/systemd/system of $c1" \
	sh -c "! test -e '/var/lib/sdme/containers/$c1/upper/etc/systemd/system/$mount_unit'"

step "opaque directories"
for d in etc/systemd/system var/log; do
	assert_eq "upper/$d of $c1 is opaque" y \
		"$(th_exec getfattr --absolute-names --only-values -n trusted.overlay.opaque "/var/lib/sdme/containers/$c1/upper/$d" 2>&1 || true)"
done
assert_eq "upper/etc/systemd/system of $c3 is opaque" y \
	"$(th_exec getfattr --absolute-names --only-values -n trusted.overlay.opaque "/var/lib/sdme/containers/$c3/upper/etc/systemd/system" 2>&1 || true)"
check_in "upper/var/log of $c2 is not opaque (OpaqueDir= reset)" \
	sh -c "! getfattr --absolute-names --only-values -n trusted.overlay.opaque /var/lib/sdme/containers/$c2/upper/var/log 2>/dev/null | grep -q y"
check_in "the test host's /var/log/e2e-40-host.log is hidden in $c1 (opaque /var/log)" \
	systemd-run -q --collect -M "$c1" --wait --pipe sh -c '! test -e /var/log/e2e-40-host.log'
assert_eq "control: the test host's /var/log/e2e-40-host.log is visible in $c2" host-log \
	"$(th_run_in "$c2" cat /var/log/e2e-40-host.log 2>&1 || true)"
# The rootfs's enablement links are hidden too: only the alias came up.
assert_eq "dbus.service alias copied into upper/ of $c3" /usr/lib/systemd/system/dbus-daemon.service \
	"$(th_exec readlink "/var/lib/sdme/containers/$c3/upper/etc/systemd/system/dbus.service" 2>&1 || true)"
assert_eq "dbus.service in $c3 is dbus-daemon.service" dbus-daemon.service \
	"$(th_exec systemctl -M "$c3" show -P Id dbus.service 2>&1 || true)"
check_in "the rootfs's getty.target.wants is hidden in $c3" \
	systemd-run -q --collect -M "$c3" --wait --pipe sh -c '! test -e /etc/systemd/system/getty.target.wants'

step "whiteout of a deleted lower file"
check_in "rm /etc/e2e-40-lower inside $c1" \
	systemd-run -q --collect -M "$c1" --wait --pipe rm /etc/e2e-40-lower
assert_eq "upper/etc/e2e-40-lower of $c1 is a whiteout (char 0:0)" "character special file 0:0" \
	"$(th_exec stat -c '%F %t:%T' "/var/lib/sdme/containers/$c1/upper/etc/e2e-40-lower" 2>&1 || true)"
assert_eq "the test host's /etc/e2e-40-lower is still there" lower "$(th_exec cat /etc/e2e-40-lower 2>&1 || true)"
assert_eq "$c2 still sees /etc/e2e-40-lower" lower "$(th_run_in "$c2" cat /etc/e2e-40-lower 2>&1 || true)"

step "stop and start $c1: machine ID and deletion persist, prepare rewrites what it owns"
require_in "systemctl stop sdme-$c1" timeout 120 systemctl stop "sdme-$c1"
th_unmounted "$c1" || fail "overlay of $c1 still mounted after stop"
require_in "systemctl start sdme-$c1 (again)" timeout 180 systemctl start "sdme-$c1"
assert_eq "machine ID of $c1 stable across stop/start" "${ids[$c1]}" "$(th_run_in "$c1" cat /etc/machine-id 2>&1 || true)"
check_in "/etc/e2e-40-lower stays deleted in $c1" \
	systemd-run -q --collect -M "$c1" --wait --pipe sh -c '! test -e /etc/e2e-40-lower'
assert_eq "$c1 running after restart" running "$(th_exec timeout 60 systemctl -M "$c1" is-system-running 2>&1 || true)"
assert_eq "/etc/resolv.conf in $c1 after restart" "$want" "$(th_run_in "$c1" cat /etc/resolv.conf 2>&1 || true)"

step "stop"
require_in "systemctl stop" timeout 120 systemctl stop "sdme-$c1" "sdme-$c2" "sdme-$c3"
for m in "$c1" "$c2" "$c3"; do
	assert_eq "sdme-$m inactive (not failed) after stop" inactive "$(th_exec systemctl is-active "sdme-$m" 2>&1 || true)"
	th_unmounted "$m" || fail "overlay of $m still mounted after stop"
done
