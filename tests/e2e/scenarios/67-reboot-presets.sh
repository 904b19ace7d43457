# shellcheck shell=bash
# 67-reboot-presets: a reboot inside restarts the unit under every preset.
# `machinectl reboot` of a Hardened=yes (hr67) and a Strict=yes (sr67)
# container brings each back `running`/`degraded` with a new leader PID
# and a new nspawn (MainPID), nobody starting it: both presets keep
# CAP_SYS_BOOT (without it the guest's systemd exits instead of rebooting,
# and the unit ended inactive with Result=success).

all="hr67 sr67"
on_cleanup sh -c "for m in $all; do rm -rf /var/lib/sdme/containers/\$m /etc/sdme/\$m.container; done; systemctl daemon-reload"
on_cleanup sh -c "systemctl stop sdme-hr67 sdme-sr67; systemctl reset-failed 'sdme-*' 'sdme-prepare@*' 2>/dev/null; true"

booted() { # MACHINE DESC
	assert_match "$2: systemctl -M $1 is-system-running" '^(running|degraded)$' \
		"$(th_exec timeout 90 systemctl -M "$1" is-system-running --wait 2>&1 || true)"
}

th_exec mkdir -p /etc/sdme
printf '[Container]\nHardened=yes\n' | th_exec sh -c "cat > /etc/sdme/hr67.container"
printf '[Container]\nStrict=yes\n' | th_exec sh -c "cat > /etc/sdme/sr67.container"
require_in "daemon-reload" systemctl daemon-reload

for m in $all; do
	unit=sdme-$m
	step "$m: start, then machinectl reboot $m"
	require_in "systemctl start $unit" timeout 180 systemctl start "$unit"
	booted "$m" "first boot"
	old_pid=$(th_exec systemctl show -p MainPID --value "$unit")
	old_leader=$(th_exec machinectl show "$m" -p Leader --value)
	check_in "machinectl reboot $m" machinectl reboot "$m"
	new_leader=$old_leader
	t0=$SECONDS
	while [ $((SECONDS - t0)) -lt 90 ]; do
		new_leader=$(th_exec machinectl show "$m" -p Leader --value 2>/dev/null || true)
		if [ -n "$new_leader" ] && [ "$new_leader" != "$old_leader" ] &&
			[ "$(th_exec systemctl is-active "$unit" 2>/dev/null || true)" = active ]; then
			break
		fi
		sleep 0.2
	done
	step "$m back after $((SECONDS - t0)) s: leader $old_leader -> $new_leader"
	assert_eq "$unit active again after the reboot (within 90 s, nobody started it)" active \
		"$(th_exec systemctl is-active "$unit" 2>&1 || true)"
	assert_match "machine $m registered again" '^[0-9]+$' "$new_leader"
	[ "$new_leader" != "$old_leader" ] || fail "$m: leader PID unchanged after reboot ($old_leader)"
	[ "$(th_exec systemctl show -p MainPID --value "$unit")" != "$old_pid" ] ||
		fail "$m: same nspawn ($old_pid) after reboot"
	booted "$m" "after reboot"
	assert_eq "machinectl show $m -p State" running \
		"$(th_exec machinectl show "$m" -p State --value 2>&1 || true)"
	require_in "systemctl stop $unit" timeout 120 systemctl stop "$unit"
	assert_eq "$unit inactive after stop" inactive "$(th_exec systemctl is-active "$unit" 2>&1 || true)"
	th_unmounted "$m" || fail "overlay of $m still mounted after stop"
done
