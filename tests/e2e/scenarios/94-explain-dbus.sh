# shellcheck shell=bash
# shellcheck disable=SC2016 # snippets expand inside the test host
# 94-explain-dbus: past about 250 running containers the host's system bus
# refuses root's next connection (dbus-daemon's max_connections_per_user
# is 256 and every running nspawn holds one of root's: tests/bench/scale
# 300 brought 253 up), and nspawn says only "Failed to register machine:
# No buffer space available", the unit only "exit-code". sdme-explain@
# names the limit and where to raise it.
#
# The limit is met for real, at a size CI affords: the test host's own
# dbus-daemon gets, in /etc/dbus-1/system-local.conf (reloaded with
# SIGHUP), a per-user limit that its root's connections fill already, so
# the next container's nspawn is refused as the 254th was. Then: nothing
# stays mounted, and with the limit gone the same container starts.

m=bx94
conf=/etc/dbus-1/system-local.conf

on_cleanup sh -c "rm -rf /var/lib/sdme/containers/$m /etc/sdme/$m.container; systemctl daemon-reload"
on_cleanup sh -c "systemctl stop sdme-$m; systemctl reset-failed sdme-$m 'sdme-explain@*' 'sdme-prepare@*' 2>/dev/null; true"
on_cleanup sh -c "rm -f $conf; pkill -HUP -x dbus-daemon; true"

# root_connections: root's connections to the system bus but busctl's own.
root_connections() {
	th_sh "busctl list --no-legend | awk '\$1 ~ /^:/ && \$4 == \"root\" && \$3 != \"busctl\"' | wc -l"
}

step "the test host's system bus takes no more connections of root"
n=$(root_connections)
require "root holds connections to the bus ($n)" test "$n" -ge 1
printf '<busconfig>\n  <limit name="max_connections_per_user">%s</limit>\n</busconfig>\n' "$n" |
	th_exec sh -c "cat > $conf"
require_in "dbus-daemon reloads its configuration (SIGHUP)" pkill -HUP -x dbus-daemon
check_in "a new connection of root is refused" sh -c "for i in \$(seq 50); do busctl list >/dev/null 2>&1 || exit 0; sleep 0.1; done; exit 1"

step "$m: nspawn cannot register the machine"
printf '[Container]\n' | th_exec sh -c "cat > /etc/sdme/$m.container"
require_in "daemon-reload" systemctl daemon-reload
lines0=$(th_journal_lines "sdme-$m")
check_in_status 1 "systemctl start sdme-$m fails" timeout 120 systemctl start "sdme-$m"
th_unmounted "$m" || fail "overlay of $m still mounted after the failed start"

step "sdme-explain@sdme-$m names the limit"
new=$(th_journal_after "sdme-$m" "$lines0" '^sdme-boot-wait\|could not register the machine with' 2>&1) ||
	fail "no line from sdme-explain@sdme-$m.service within 60 s"
printf '%s\n' "$new" | tail -n 8
check "nspawn's own message is there" grep -q 'Failed to register machine: No buffer space available' <<<"$new"
why=$(printf '%s\n' "$new" | grep 'could not register the machine with' || true)
assert_eq "one explanation line" 1 "$(printf '%s' "$why" | grep -c . || true)"
assert_match "it names the limit" 'max_connections_per_user=256' "$why"
assert_match "and where to raise it" '/etc/dbus-1/system-local\.conf' "$why"

step "with the limit gone, $m starts"
require_in "rm $conf; dbus-daemon reloads" sh -c "rm -f $conf && pkill -HUP -x dbus-daemon"
check_in "root connects again" sh -c "for i in \$(seq 50); do busctl list >/dev/null 2>&1 && exit 0; sleep 0.1; done; exit 1"
th_exec systemctl reset-failed "sdme-$m" 2>/dev/null || true
require_in "start sdme-$m" timeout 120 systemctl start "sdme-$m"
check_in "machinectl knows it" machinectl show "$m" -p State
require_in "stop sdme-$m" systemctl stop "sdme-$m"
require "its overlay is unmounted" th_unmounted "$m"
