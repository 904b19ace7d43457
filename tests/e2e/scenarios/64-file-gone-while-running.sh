# shellcheck shell=bash
# 64-file-gone-while-running: the file of a running container breaks (a
# bad Bind=) or is removed, then daemon-reload. The container keeps running
# (same MainPID), its unit stays loaded and `systemctl status` says why it
# is no longer defined; `systemctl stop` halts the guest cleanly (its own
# journal shows the shutdown target and systemd-shutdown, no re-execution)
# within 10 s, unmounts everything (overlay, ID-mapped layers, mount unit
# inactive) and removes the record, so the state directory can be removed;
# then a start fails with the reason, and the next reload drops the unit.
# Cases: a plain host clone and a PrivateUsers=yes container, each broken
# and removed, and an instance of a removed bare template; then a host
# reboot while an orphaned container runs. See
# sdme-generator(8), "RUNNING CONTAINERS WHOSE FILE IS GONE".

plain=gp64
userns=gu64
tmpl=gt64 # gt64@.container, instance gt64@a (machine gt64-a)

on_cleanup sh -c "rm -rf /etc/sdme/$plain.container /etc/sdme/$userns.container /etc/sdme/$tmpl@.container /var/lib/sdme/containers/$plain /var/lib/sdme/containers/$userns /var/lib/sdme/containers/$tmpl-a; systemctl daemon-reload"
on_cleanup sh -c "systemctl stop sdme-$plain sdme-$userns sdme-$tmpl@a; systemctl reset-failed 'sdme-*' 'var-lib-sdme-*' 2>/dev/null; true"

th_exec mkdir -p /etc/sdme

# unit_prop UNIT PROPERTY
unit_prop() { th_exec systemctl show -p "$2" --value "$1" 2>&1 || true; }

# run_case DESC UNIT MACHINE FILE CONTENT ACTION REASON-RE
# ACTION: "break" (a relative Bind= source) or "remove".
run_case() {
	local desc=$1 unit=$2 m=$3 file=$4 content=$5 action=$6 reason=$7
	local state=/var/lib/sdme/containers/$m pid status t0 ms out rc guest
	step "$desc: start $unit"
	printf '%b' "$content" | th_exec sh -c "cat > '$file'"
	require_in "$desc: daemon-reload" systemctl daemon-reload
	require_in "$desc: start $unit" timeout 180 systemctl start "$unit"
	assert_match "$desc: $m booted" '^(running|degraded)$' \
		"$(th_exec timeout 60 systemctl -M "$m" is-system-running --wait 2>&1 || true)"
	# /var/log is opaque in a host clone: make the guest's journal
	# persistent (upper/var/log/journal), to read its shutdown after stop.
	require "$desc: guest journal to /var/log/journal" th_run_in "$m" \
		sh -c 'mkdir -p /var/log/journal && journalctl --flush'
	pid=$(unit_prop "$unit" MainPID)

	step "$desc: $action $file while $unit runs, daemon-reload"
	case $action in
	break) printf '[Container]\nBind=srv/shared:/srv\n' | th_exec sh -c "cat > '$file'" ;;
	remove) th_exec rm -f "$file" ;;
	esac
	check_in "$desc: daemon-reload" systemctl daemon-reload
	assert_eq "$desc: $unit still active" active "$(th_exec systemctl is-active "$unit" 2>&1 || true)"
	assert_eq "$desc: same MainPID after the reload" "$pid" "$(unit_prop "$unit" MainPID)"
	assert_eq "$desc: $unit loaded (not not-found)" loaded "$(unit_prop "$unit" LoadState)"
	assert_eq "$desc: Type kept" notify "$(unit_prop "$unit" Type)"
	assert_eq "$desc: KillMode kept" mixed "$(unit_prop "$unit" KillMode)"
	status=$(th_exec systemctl status --no-pager -l "$unit" 2>&1 || true)
	head -n 5 <<<"$status"
	assert_match "$desc: status says why" "sdme container $m: $reason" "$status"
	if [ "$action" = break ]; then
		step "$desc: fixed again and reloaded, the container's own unit is back; then broken again"
		printf '%b' "$content" | th_exec sh -c "cat > '$file'"
		check_in "$desc: daemon-reload" systemctl daemon-reload
		assert_eq "$desc: own unit back" "sdme container $m" "$(unit_prop "$unit" Description)"
		assert_eq "$desc: same MainPID with its own unit" "$pid" "$(unit_prop "$unit" MainPID)"
		printf '[Container]\nBind=srv/shared:/srv\n' | th_exec sh -c "cat > '$file'"
		check_in "$desc: daemon-reload" systemctl daemon-reload
		assert_match "$desc: broken again" "^sdme container $m: $reason" "$(unit_prop "$unit" Description)"
	fi

	step "$desc: systemctl stop $unit"
	t0=$(date +%s%N)
	check_in "$desc: stop $unit" timeout 60 systemctl stop "$unit"
	ms=$((($(date +%s%N) - t0) / 1000000))
	step "$desc: stop took $ms ms"
	[ "$ms" -lt 10000 ] || fail "$desc: systemctl stop took $ms ms (bound: 10 s)"
	check "$desc: overlay unmounted, mount unit inactive, the instant stop returned" th_unmounted "$m"
	assert_eq "$desc: $unit inactive/success after stop" inactive/success \
		"$(unit_prop "$unit" ActiveState)/$(unit_prop "$unit" Result)"
	assert_eq "$desc: nspawn exited 0" 0 "$(unit_prop "$unit" ExecMainStatus)"
	assert_eq "$desc: nothing mounted below $state" "" \
		"$(th_exec findmnt -rn -o TARGET 2>&1 | grep -E "^$state(/|$)" || true)"
	assert_eq "$desc: no ID-mapped layers left" "" \
		"$(th_exec findmnt -rn -o TARGET 2>&1 | grep -E "^/run/sdme/idmap/$m(/|$)" || true)"
	check_in "$desc: record /run/sdme/inuse/$m removed" sh -c "! test -e /run/sdme/inuse/$m"
	guest=$(th_exec journalctl --no-pager -o cat -D "$state/upper/var/log/journal" 2>&1 || true)
	assert_match "$desc: guest's journal: shutdown target reached" 'Reached target .*Shutdown' "$guest"
	assert_match "$desc: guest's journal: PID 1 shut down" '(^|[[:space:]])Shutting down\.' "$guest"
	if [[ $guest =~ Reexecut ]]; then
		fail "$desc: the guest's systemd re-executed instead of halting"
		echo "$guest" | grep -n Reexecut
	fi
	check_in "$desc: rm -rf $state" rm -rf "$state"

	step "$desc: a start fails with the reason"
	rc=0
	out=$(th_exec systemctl start "$unit" 2>&1) || rc=$?
	echo "$out"
	[ "$rc" -ne 0 ] || fail "$desc: systemctl start $unit succeeded"
	[ "$rc" -ne 5 ] || fail "$desc: systemctl start $unit: unit not found (exit 5)"
	assert_match "$desc: start says the job failed" "Job for $unit failed" "$out"
	status=$(th_exec systemctl status --no-pager -l "$unit" 2>&1 || true)
	assert_match "$desc: status after the failed start says why" "sdme container $m: $reason" "$status"
	check_in "$desc: nothing created by the failed start" sh -c "! test -e $state"
	th_exec systemctl reset-failed "$unit" || true

	step "$desc: the next reload drops the stopping unit"
	th_exec rm -f "$file"
	require_in "$desc: daemon-reload" systemctl daemon-reload
	assert_eq "$desc: $unit gone" not-found "$(unit_prop "$unit" LoadState)"
}

broken="/etc/sdme/[a-z0-9@]+\.container has errors: /etc/sdme/[a-z0-9@]+\.container:2: Bind=srv/shared:/srv: source 'srv/shared' is not an absolute path; stop it, or fix the file and daemon-reload"
removed() { echo "/etc/sdme/$1 was removed; stop it, or restore the file and daemon-reload"; }

run_case "plain, broken" "sdme-$plain.service" "$plain" "/etc/sdme/$plain.container" \
	'[Container]\n' break "$broken"
run_case "plain, removed" "sdme-$plain.service" "$plain" "/etc/sdme/$plain.container" \
	'[Container]\n' remove "$(removed "$plain.container")"
run_case "PrivateUsers, broken" "sdme-$userns.service" "$userns" "/etc/sdme/$userns.container" \
	'[Container]\nPrivateUsers=yes\n' break "$broken"
run_case "PrivateUsers, removed" "sdme-$userns.service" "$userns" "/etc/sdme/$userns.container" \
	'[Container]\nPrivateUsers=yes\n' remove "$(removed "$userns.container")"
run_case "template instance, template removed" "sdme-$tmpl@a.service" "$tmpl-a" "/etc/sdme/$tmpl@.container" \
	'[Container]\n' remove "$(removed "$tmpl@.container")"

step "host reboot with an orphan unit: the guest halts cleanly, the overlay is unmounted before shutdown"
state=/var/lib/sdme/containers/$plain
mount_unit=$(th_exec systemd-escape --path --suffix=mount "$state/merged")
printf '[Container]\n' | th_exec sh -c "cat > /etc/sdme/$plain.container"
require_in "daemon-reload" systemctl daemon-reload
require_in "start sdme-$plain" timeout 180 systemctl start "sdme-$plain"
assert_match "$plain booted" '^(running|degraded)$' \
	"$(th_exec timeout 60 systemctl -M "$plain" is-system-running --wait 2>&1 || true)"
require "guest journal to /var/log/journal" th_run_in "$plain" sh -c 'mkdir -p /var/log/journal && journalctl --flush'
th_exec rm -f "/etc/sdme/$plain.container"
require_in "daemon-reload" systemctl daemon-reload
assert_match "orphan unit loaded" "^sdme container $plain: $(removed "$plain.container")" \
	"$(unit_prop "sdme-$plain" Description)"
require "th_reboot" th_reboot
prev=$(th_exec journalctl -b -1 --no-pager -o cat -u "sdme-$plain.service" 2>&1 || true)
assert_match "host journal of the last boot: sdme-$plain stopped" "Stopped .*$plain" "$prev"
mlog=$(th_exec journalctl -b -1 --no-pager -o cat -u "$mount_unit" 2>&1 || true)
if [[ $mlog =~ (Failed|failed|busy) ]]; then
	fail "the overlay's mount unit failed at shutdown: $(echo "$mlog" | grep -E 'Failed|failed|busy' | head -n 3 | paste -sd'|' -)"
fi
guest=$(th_exec journalctl --no-pager -o cat -D "$state/upper/var/log/journal" 2>&1 || true)
assert_match "guest's journal: shutdown target reached" 'Reached target .*Shutdown' "$guest"
assert_match "guest's journal: PID 1 shut down" '(^|[[:space:]])Shutting down\.' "$guest"
[[ ! $guest =~ Reexecut ]] || fail "the guest's systemd re-executed at the host's shutdown"
assert_eq "after the reboot: no unit (no file, no record)" not-found "$(unit_prop "sdme-$plain" LoadState)"
check_in "rm -rf $state" rm -rf "$state"

assert_eq "no failed sdme units" "" \
	"$(th_exec systemctl list-units --failed --plain --no-legend 'sdme-*' 'var-lib-sdme-*' 2>&1 || true)"
