# shellcheck shell=bash
# shellcheck disable=SC2016 # snippets expand inside the test host
# 93-explain-inotify: a guest whose systemd could not get an inotify
# instance (issue 17: at 30 containers on a host with Debian's
# fs.inotify.max_user_instances=128 some fail at boot, and the unit says
# only "exit-code") gets one line from sdme-explain@ in the unit's journal
# naming the limit, its value, the sysctl and the file sdme ships.
#
# The limit is not lowered (it is the machine's, shared with every test
# host): the guest's init is replaced, in its upper layer, by a script that
# prints what the guest's systemd prints then (systemd 252 and 257) and
# exits 255 as it does; LogConsole=yes puts the console in the journal.
# Also: nothing stays mounted after the failed start, and the shipped
# sysctl.d file is installed with both limits.

m=ix93
up=/var/lib/sdme/containers/$m/upper

on_cleanup sh -c "rm -rf /var/lib/sdme/containers/$m /etc/sdme/$m.container; systemctl daemon-reload"
on_cleanup sh -c "systemctl stop sdme-$m; systemctl reset-failed sdme-$m 'sdme-explain@*' 'sdme-prepare@*' 2>/dev/null; true"

step "the shipped sysctl.d file"
conf=$(th_exec cat /usr/lib/sysctl.d/60-sdme.conf 2>&1 || true)
assert_match "60-sdme.conf raises max_user_instances" '(^|[[:space:]])fs\.inotify\.max_user_instances = 8192($|[[:space:]])' "$conf"
assert_match "60-sdme.conf raises max_user_watches" '(^|[[:space:]])fs\.inotify\.max_user_watches = 1048576($|[[:space:]])' "$conf"

step "$m: a guest init that fails as systemd does without an inotify instance"
th_exec mkdir -p /etc/sdme "$up/usr/lib/systemd"
printf '[Container]\nLogConsole=yes\n' | th_exec sh -c "cat > /etc/sdme/$m.container"
printf '%s\n' '#!/bin/sh' \
	'echo "Failed to create control group inotify object: Too many open files"' \
	'echo "Failed to allocate manager object: Too many open files"' \
	'exit 255' | th_exec sh -c "cat > $up/usr/lib/systemd/systemd && chmod 0755 $up/usr/lib/systemd/systemd"
require_in "daemon-reload" systemctl daemon-reload
lines0=$(th_journal_lines "sdme-$m")
check_in_status 1 "systemctl start sdme-$m fails" timeout 120 systemctl start "sdme-$m"
assert_eq "nspawn's status is the guest's 255" 255 "$(th_exec systemctl show -p ExecMainStatus --value "sdme-$m" 2>&1 || true)"
th_unmounted "$m" || fail "overlay of $m still mounted after the failed start"

step "sdme-explain@sdme-$m names the limit"
# OnFailure= starts it after the failure: wait (60 s at most) for its
# line, then read every line of this start.
new=$(th_journal_after "sdme-$m" "$lines0" '^sdme-boot-wait\|instances open' 2>&1) ||
	fail "no line from sdme-explain@sdme-$m.service within 60 s"
printf '%s\n' "$new" | tail -n 8
why=$(printf '%s\n' "$new" | grep 'inotify instance' | grep -v '^Failed' || true)
assert_eq "one explanation line" 1 "$(printf '%s' "$why" | grep -c . || true)"
assert_match "it names the limit and its value" 'fs\.inotify\.max_user_instances \(now [0-9]+, [0-9]+ instances open\)' "$why"
assert_match "it names the sysctl" 'sysctl -w fs\.inotify\.max_user_instances=' "$why"
assert_match "it names the shipped file" '/usr/lib/sysctl\.d/60-sdme\.conf' "$why"
