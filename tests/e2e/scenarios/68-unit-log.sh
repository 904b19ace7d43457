# shellcheck shell=bash
# 68-unit-log: what the unit's journal holds.
# - By default (ul68) the guest's console stays out of it: one start and
#   stop leave only systemd's, nspawn's and the helpers' lines (counted and
#   printed; no "Reached target" console line), while the guest's own
#   journal has its boot (journalctl -M while it runs);
# - LogConsole=yes (a drop-in, then daemon-reload) brings the console back:
#   the same start and stop log the guest's boot and shutdown messages
#   and more lines than without it;
# - a failed WaitFor=nginx.service (wf68, no nginx inside): the start fails
#   and `systemctl status -n 10` shows the cause ("unit nginx.service not
#   found inside the container");
# - OnFailure= names the explain instance after the unit without its
#   suffix: sdme-explain@sdme-wf68.service, and for a template instance
#   sdme-explain@sdme-wt68@a.service (a '@' in an instance name).

on_cleanup sh -c "rm -rf /var/lib/sdme/containers/ul68 /var/lib/sdme/containers/wf68 /var/lib/sdme/containers/wt68-a /etc/sdme/ul68.container /etc/sdme/ul68.container.d /etc/sdme/wf68.container /etc/sdme/wt68@.container; systemctl daemon-reload"
on_cleanup sh -c "systemctl stop sdme-ul68 sdme-wf68 sdme-wt68@a; systemctl reset-failed 'sdme-*' 'sdme-prepare@*' 2>/dev/null; true"

cursor() { th_exec journalctl -n 0 --show-cursor --no-pager 2>/dev/null | sed -n 's/^-- cursor: //p'; }
# unit_log CURSOR UNIT: the unit's journal lines after CURSOR.
unit_log() { th_exec journalctl --no-pager -o cat --after-cursor="$1" -u "$2" 2>&1 || true; }
# boot_and_stop NAME: start, wait for the boot, stop; sets ulog to the
# lines the unit logged meanwhile.
boot_and_stop() {
	local c
	c=$(cursor)
	require_in "systemctl start sdme-$1" timeout 180 systemctl start "sdme-$1"
	assert_match "$1 booted" '^(running|degraded)$' \
		"$(th_exec timeout 60 systemctl -M "$1" is-system-running --wait 2>&1 || true)"
	check_in "journalctl -M $1 has the guest's boot" sh -c \
		"journalctl -M '$1' -b --no-pager -o cat | grep -q 'Reached target'"
	require_in "systemctl stop sdme-$1" timeout 120 systemctl stop "sdme-$1"
	th_exec journalctl --sync 2>/dev/null || true
	ulog=$(unit_log "$c" "sdme-$1")
}
ulog=

th_exec mkdir -p /etc/sdme
printf '[Container]\n' | th_exec sh -c "cat > /etc/sdme/ul68.container"
printf '[Container]\nWaitFor=nginx.service\nBootTimeout=60s\n' | th_exec sh -c "cat > /etc/sdme/wf68.container"
printf '[Container]\nWaitFor=nginx.service\nBootTimeout=60s\n' | th_exec sh -c "cat > /etc/sdme/wt68@.container"
require_in "daemon-reload" systemctl daemon-reload

step "default: one boot and stop of ul68"
boot_and_stop ul68
quiet_n=$(printf '%s\n' "$ulog" | wc -l)
step "journalctl -u sdme-ul68, one boot and stop, default: $quiet_n lines"
printf '%s\n' "$ulog"
if [[ $ulog == *"Reached target"* ]]; then
	fail "the guest's console is in the unit's journal by default"
fi
[ "$quiet_n" -le 40 ] || fail "the unit logged $quiet_n lines for one boot and stop by default (want at most 40)"

step "LogConsole=yes: the console is back"
th_exec mkdir -p /etc/sdme/ul68.container.d
printf '[Container]\nLogConsole=yes\n' | th_exec sh -c "cat > /etc/sdme/ul68.container.d/50-console.conf"
require_in "daemon-reload" systemctl daemon-reload
boot_and_stop ul68
console_n=$(printf '%s\n' "$ulog" | wc -l)
step "journalctl -u sdme-ul68, one boot and stop, LogConsole=yes: $console_n lines"
[[ $ulog == *"Reached target"* ]] ||
	fail "no guest console line ('Reached target') in the unit's journal with LogConsole=yes"
[ "$console_n" -gt "$quiet_n" ] ||
	fail "LogConsole=yes logged $console_n lines, not more than the default's $quiet_n"

step "WaitFor=nginx.service without nginx: the cause in systemctl status"
cause="unit nginx.service not found inside the container"
for u in sdme-wf68 sdme-wt68@a; do
	c=$(cursor)
	if th_exec timeout 180 systemctl start "$u" >/dev/null 2>&1; then
		fail "systemctl start $u succeeded without nginx inside"
	fi
	assert_eq "$u failed" failed "$(th_exec systemctl is-active "$u" 2>&1 || true)"
	th_exec journalctl --sync 2>/dev/null || true
	status=$(th_exec systemctl status -n 10 --no-pager "$u" 2>&1 || true)
	echo "$status" | tail -n 12
	case $status in
	*"$cause"*) ;;
	*) fail "systemctl status -n 10 $u does not show '$cause'" ;;
	esac
	explain="sdme-explain@${u}.service"
	log=$(th_exec journalctl --no-pager -o cat --after-cursor="$c" 2>&1 || true)
	case $log in
	*"$explain"* | *"Explain the failure of $u.service"*) ;;
	*) fail "no $explain in the journal after $u failed" ;;
	esac
	case $log in
	*"$u.service.service"*) fail "an explain instance named after $u.service.service" ;;
	esac
	th_exec systemctl reset-failed "$u" 2>/dev/null || true
done
