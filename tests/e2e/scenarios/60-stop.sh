# shellcheck shell=bash
# 60-stop: ending a container. `systemctl stop` halts the guest cleanly (the
# guest's own journal and its console in the host journal show an orderly
# shutdown), unmounts the overlay and keeps upper/; `systemctl kill -s
# SIGKILL` kills it and the next start works; `reboot` inside makes nspawn
# exit 133 and the unit restarts by itself (RestartForceExitStatus=133),
# re-running the prepare step (the mount is PartOf= the service). A
# template instance killed with SIGKILL starts again too.

name=st
unit=sdme-$name
state=/var/lib/sdme/containers/$name

on_cleanup sh -c "rm -rf $state /etc/sdme/$name.container && systemctl daemon-reload"
on_cleanup sh -c "systemctl stop $unit; systemctl reset-failed $unit 'sdme-prepare@$name' 2>/dev/null; true"

# The host journal's cursor now: later greps read only what came after it.
cursor() { th_exec journalctl -n 0 --show-cursor --no-pager 2>/dev/null | sed -n 's/^-- cursor: //p'; }
# journal_after CURSOR [journalctl args]: host journal lines after CURSOR.
journal_after() {
	local c=$1
	shift
	th_exec journalctl --no-pager -o cat --after-cursor="$c" "$@" 2>&1 || true
}
# run_in CMD...: a command inside the container, its exit status forwarded.
run_in() { th_run_in "$name" "$@"; }
# gone DESC: the overlay unmounted and its mount unit inactive (not
# failed), checked at once: the service's stop ends only then.
gone() {
	local mount_unit
	mount_unit=$(th_exec systemd-escape --path --suffix=mount "$state/merged")
	check_in "$1: $state/merged is not a mount point" sh -c "! findmnt -n '$state/merged'"
	assert_eq "$1: $mount_unit inactive" inactive \
		"$(th_exec systemctl is-active "$mount_unit" 2>&1 || true)"
	check_in "$1: machine $name is gone from machined" sh -c "! machinectl show '$name' >/dev/null 2>&1"
}
booted() { # booted DESC: the guest finished booting
	assert_match "$1: systemctl -M $name is-system-running" '^(running|degraded)$' \
		"$(th_exec timeout 60 systemctl -M "$name" is-system-running --wait 2>&1 || true)"
}

step "write /etc/sdme/$name.container, start"
th_exec mkdir -p /etc/sdme
# LogConsole=yes: the checks below read the guest's console in the unit's
# journal (by default it goes nowhere; see 68-unit-log).
printf '[Container]\nLogConsole=yes\n' | th_exec sh -c "cat > /etc/sdme/$name.container"
require_in "daemon-reload" systemctl daemon-reload
require_in "systemctl start $unit" timeout 180 systemctl start "$unit"
booted "first start"

step "make the guest's journal persistent, write a file before stop"
# /var/log is opaque in a host clone, so the guest starts with a volatile
# journal; with /var/log/journal created and flushed it writes to disk
# (upper/var/log/journal), which outlives the container.
require_in "guest journal to /var/log/journal" timeout 60 systemd-run -q --collect -M "$name" --wait --pipe \
	sh -c 'mkdir -p /var/log/journal && journalctl --flush'
require_in "write /root/before-stop inside" timeout 60 systemd-run -q --collect -M "$name" --wait --pipe \
	sh -c 'echo kept > /root/before-stop && sync'

step "systemctl stop $unit"
c=$(cursor)
t0=$(date +%s%N)
require_in "systemctl stop $unit" timeout 120 systemctl stop "$unit"
step "stop took $((($(date +%s%N) - t0) / 1000000)) ms"
assert_eq "$unit inactive (not failed) after stop" inactive "$(th_exec systemctl is-active "$unit" 2>&1 || true)"
assert_eq "$unit Result after stop" success "$(th_exec systemctl show -p Result --value "$unit" 2>&1)"
assert_eq "nspawn's exit status after stop" 0 "$(th_exec systemctl show -p ExecMainStatus --value "$unit" 2>&1)"
# The guest's console goes to nspawn's stdout, i.e. with LogConsole=yes
# this unit's journal.
console=$(journal_after "$c" -u "$unit")
assert_match "guest console in the host journal: reached the shutdown target" \
	'Reached target .*Shutdown' "$console"
assert_match "guest console in the host journal: systemd-shutdown halted" \
	'Halting system' "$console"
if [[ $console =~ (Freezing execution|Failed to|Timed out) ]]; then
	step "unexpected lines in the guest's shutdown (informational):"
	echo "$console" | grep -E 'Freezing execution|Failed to|Timed out' || true
fi
guest=$(th_exec journalctl --no-pager -o cat -D "$state/upper/var/log/journal" 2>&1 || true)
assert_match "guest's own journal (upper/var/log/journal): shutdown target reached" \
	'Reached target .*Shutdown' "$guest"
assert_match "guest's own journal: PID 1 shut down" '(^|[[:space:]])Shutting down\.' "$guest"
gone "after stop"
assert_eq "upper/ keeps the file written before stop" kept \
	"$(th_exec cat "$state/upper/root/before-stop" 2>&1 || true)"

step "start again: the file is back"
require_in "second systemctl start $unit" timeout 180 systemctl start "$unit"
booted "second start"
assert_eq "file written before stop visible inside after the next start" kept \
	"$(run_in cat /root/before-stop 2>&1 | tr -d '\r' || true)"

step "systemctl kill -s SIGKILL $unit"
pid=$(th_exec systemctl show -p MainPID --value "$unit")
check_in "kill -s SIGKILL" systemctl kill -s SIGKILL "$unit"
for _ in $(seq 100); do
	st=$(th_exec systemctl is-active "$unit" 2>/dev/null || true)
	[ "$st" = failed ] || [ "$st" = inactive ] && break
	sleep 0.1
done
assert_match "$unit failed or inactive after SIGKILL (within 10 s)" '^(failed|inactive)$' \
	"$(th_exec systemctl is-active "$unit" 2>&1 || true)"
assert_eq "$unit Result after SIGKILL" signal "$(th_exec systemctl show -p Result --value "$unit" 2>&1)"
check_in "nspawn $pid is gone" sh -c "! test -e /proc/$pid"
gone "after SIGKILL"
check_in "upper/ survives SIGKILL" test -f "$state/upper/root/before-stop"
check_in "reset-failed $unit" systemctl reset-failed "$unit"
c=$(cursor)
if th_exec timeout 180 systemctl start "$unit" >/dev/null 2>&1; then
	booted "start after SIGKILL"
else
	fail "systemctl start $unit after SIGKILL failed: $(journal_after "$c" -u "$unit" | grep -v '^\[' | tail -n 5 | paste -sd'|')"
	th_exec systemctl reset-failed "$unit" || true
	# nspawn's leftovers are cleaned by a failed start: go on with the rest.
	require_in "systemctl start $unit after a failed start" timeout 180 systemctl start "$unit"
fi

step "reboot inside: nspawn exits 133, the unit restarts by itself"
old_pid=$(th_exec systemctl show -p MainPID --value "$unit")
old_leader=$(th_exec machinectl show "$name" -p Leader --value)
old_inv=$(th_exec systemctl show -p InvocationID --value "$unit")
c=$(cursor)
# The guest's bus may go down before the reply to the Reboot call comes
# back, the reboot being under way by then: systemctl then says
# "Connection reset by peer" (and "Transport endpoint is not connected" for
# its fallback) and exits 1. What follows checks that the reboot happened;
# any other error fails here.
if ! out=$(th_exec systemctl -M "$name" reboot 2>&1); then
	assert_match "systemctl -M $name reboot: ok, or its reply lost with the guest's bus" \
		'Connection reset by peer|Transport endpoint is not connected' "$out"
fi
new_pid=$old_pid
t0=$SECONDS
while [ $((SECONDS - t0)) -lt 60 ]; do
	new_pid=$(th_exec systemctl show -p MainPID --value "$unit" 2>/dev/null || true)
	if [ "$new_pid" != "$old_pid" ] && [ "$new_pid" != 0 ] &&
		[ "$(th_exec systemctl is-active "$unit" 2>/dev/null || true)" = active ]; then
		break
	fi
	sleep 0.2
done
step "back after $((SECONDS - t0)) s: nspawn $old_pid -> $new_pid"
assert_eq "$unit active again after reboot inside (within 60 s, nobody started it)" active \
	"$(th_exec systemctl is-active "$unit" 2>&1 || true)"
if [ "$new_pid" = "$old_pid" ] || [ "$new_pid" = 0 ]; then
	fail "no new nspawn after reboot (MainPID $old_pid -> $new_pid)"
fi
[ "$(th_exec systemctl show -p InvocationID --value "$unit")" != "$old_inv" ] ||
	fail "same InvocationID after reboot: the unit did not restart"
new_leader=$(th_exec machinectl show "$name" -p Leader --value 2>&1 || true)
assert_match "machine $name registered again" '^[0-9]+$' "$new_leader"
[ "$new_leader" != "$old_leader" ] || fail "leader PID unchanged after reboot ($old_leader)"
booted "after reboot"
log=$(journal_after "$c")
assert_match "guest's systemd-shutdown rebooted (exit 133 path)" 'Rebooting' "$log"
assert_match "systemd restarted $unit on its own" "$unit.service: Scheduled restart job" "$log"
# With Restart=no only RestartForceExitStatus=133 restarts the unit: the
# restart above means nspawn exited 133.
assert_eq "$unit has Restart=no (so the restart came from exit status 133)" no \
	"$(th_exec systemctl show -p Restart --value "$unit" 2>&1 || true)"
assert_eq "$unit RestartForceExitStatus" 133 \
	"$(th_exec systemctl show -p RestartForceExitStatus --value "$unit" 2>&1 || true)"
assert_match "the restart re-ran the prepare step" "(Finished|Started) sdme-prepare@$name.service" "$log"
check_in "upper/ survives reboot" test -f "$state/upper/root/before-stop"
step "NRestarts=$(th_exec systemctl show -p NRestarts --value "$unit") (informational)"

step "final stop"
require_in "systemctl stop $unit" timeout 120 systemctl stop "$unit"
assert_eq "$unit inactive after the final stop" inactive "$(th_exec systemctl is-active "$unit" 2>&1 || true)"
gone "after the final stop"

step "SIGKILL of a template instance (sdme-stt@k): the next start works"
# Template instances mount their overlay from ExecStartPre= and unmount it
# from ExecStopPost=; nspawn's leftovers must not block the next start.
on_cleanup sh -c "systemctl stop sdme-stt@k; systemctl reset-failed sdme-stt@k 2>/dev/null; rm -rf /etc/sdme/stt@.container /var/lib/sdme/containers/stt-k; systemctl daemon-reload"
printf '[Container]\n' | th_exec sh -c 'cat > /etc/sdme/stt@.container'
require_in "daemon-reload" systemctl daemon-reload
require_in "systemctl start sdme-stt@k" timeout 180 systemctl start sdme-stt@k
check_in "kill -s SIGKILL sdme-stt@k" systemctl kill -s SIGKILL sdme-stt@k
for _ in $(seq 100); do
	st=$(th_exec systemctl is-active sdme-stt@k 2>/dev/null || true)
	[ "$st" = failed ] || [ "$st" = inactive ] && break
	sleep 0.1
done
assert_match "sdme-stt@k failed or inactive after SIGKILL" '^(failed|inactive)$' "$st"
check_in "machine stt-k is gone" sh -c "! machinectl show stt-k >/dev/null 2>&1"
# Informational: whether ExecStopPost= got to unmount the overlay.
step "overlay of stt-k after SIGKILL: '$(th_exec findmnt -n -o FSTYPE /var/lib/sdme/containers/stt-k/merged 2>/dev/null || true)' (informational)"
th_exec systemctl reset-failed sdme-stt@k || true
require_in "systemctl start sdme-stt@k after SIGKILL" timeout 180 systemctl start sdme-stt@k
assert_match "stt-k booted after SIGKILL" '^(running|degraded)$' \
	"$(th_exec timeout 60 systemctl -M stt-k is-system-running --wait 2>&1 || true)"
require_in "systemctl stop sdme-stt@k" timeout 120 systemctl stop sdme-stt@k
check_in "overlay of stt-k unmounted after stop" sh -c '! findmnt -n /var/lib/sdme/containers/stt-k/merged'
