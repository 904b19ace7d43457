# shellcheck shell=bash
# shellcheck disable=SC2016 # snippets expand inside the test host
# 19-confext: a container's file from an extension image, sdme itself in
# the base /usr (the harness's `make install`); sdme.container(5),
# "IMAGE-BASED SYSTEMS".
# - systemd-confext (systemd >= 254: Debian 13) with etc/sdme/web19.container;
#   on Debian 12 (systemd 252) there is no systemd-confext: the scenario
#   checks that, and that the man page says so;
# - systemd-sysext with usr/lib/sdme/web19.container (both versions).
# Each: merged and reloaded, the container starts and boots; unmerged
# while it runs (bad input), the reload gives it an orphan unit (the file
# was removed): it keeps running, `systemctl stop` halts the guest cleanly
# (its journal shows the shutdown, no re-execution) and unmounts its
# overlay; the next reload drops the unit.

m=web19
state=/var/lib/sdme/containers/$m
cext=/run/confexts/$m
sext=/run/extensions/$m
on_cleanup sh -c "rm -rf $cext $sext $state; systemctl daemon-reload"
on_cleanup sh -c "systemctl stop sdme-$m; systemd-confext unmerge >/dev/null 2>&1; systemd-sysext unmerge >/dev/null 2>&1; systemctl reset-failed 'sdme-*' 'var-lib-sdme-*' 2>/dev/null; true"

prop() { th_exec systemctl show -p "$2" --value "$1" 2>&1 || true; }

# release HIERARCHY: the extension-release lines: the host's ID= and VERSION_ID=.
release() { grep -E '^(ID|VERSION_ID)=' "$TH_ROOT/usr/lib/os-release"; }

# orphan_case TOOL FILE: TOOL (systemd-confext or systemd-sysext) merges
# the extension that carries FILE; start, unmerge while running, stop.
orphan_case() {
	local tool=$1 file=$2 pid status guest
	step "$tool: merge and reload, start sdme-$m"
	require_in "$tool merge" "$tool" merge
	require_in "daemon-reload" systemctl daemon-reload
	assert_eq "sdme-$m from $file" "$file" "$(prop "sdme-$m.service" SourcePath)"
	require_in "systemctl start sdme-$m" timeout 180 systemctl start "sdme-$m"
	assert_match "$m booted" '^(running|degraded)$' \
		"$(th_exec timeout 60 systemctl -M "$m" is-system-running --wait 2>&1 || true)"
	# A host clone's /var/log is opaque: a persistent guest journal, to
	# read its shutdown after the stop.
	require "guest journal to /var/log/journal" th_run_in "$m" sh -c 'mkdir -p /var/log/journal && journalctl --flush'
	pid=$(prop "sdme-$m.service" MainPID)

	step "$tool: unmerge while sdme-$m runs, reload"
	require_in "$tool unmerge" "$tool" unmerge
	require_in "daemon-reload" systemctl daemon-reload
	check_in "$file is gone" test ! -e "$file"
	assert_eq "still active" active "$(prop "sdme-$m.service" ActiveState)"
	assert_eq "same MainPID" "$pid" "$(prop "sdme-$m.service" MainPID)"
	assert_eq "KillMode=mixed kept (orphan unit)" mixed "$(prop "sdme-$m.service" KillMode)"
	status=$(th_exec systemctl status --no-pager -l "sdme-$m.service" 2>&1 || true)
	head -n 3 <<<"$status"
	assert_match "status says why" "sdme container $m: $file was removed; stop it, or restore the file and daemon-reload" "$status"

	step "$tool: systemctl stop sdme-$m"
	check_in "stop" timeout 60 systemctl stop "sdme-$m"
	check "overlay unmounted, mount unit inactive" th_unmounted "$m"
	assert_eq "inactive, nspawn exited 0" inactive/0 \
		"$(prop "sdme-$m.service" ActiveState)/$(prop "sdme-$m.service" ExecMainStatus)"
	check_in "record removed" test ! -e "/run/sdme/inuse/$m"
	guest=$(th_exec journalctl --no-pager -o cat -D "$state/upper/var/log/journal" 2>&1 || true)
	assert_match "guest's journal: shutdown target reached" 'Reached target .*Shutdown' "$guest"
	assert_match "guest's journal: PID 1 shut down" '(^|[[:space:]])Shutting down\.' "$guest"
	[[ ! $guest =~ Reexecut ]] || fail "the guest's systemd re-executed instead of halting"
	require_in "daemon-reload" systemctl daemon-reload
	assert_eq "the next reload drops the unit" not-found "$(prop "sdme-$m.service" LoadState)"
	check_in "rm -rf $state" rm -rf "$state"
}

check_in "the man page says confext needs systemd 254" \
	grep -qx 'needs systemd 254 or later (Debian 13); Debian 12.s systemd 252 has none' /usr/share/man/man5/sdme.container.5
if th_exec sh -c 'command -v systemd-confext' >/dev/null; then
	step "systemd-confext: /run/confexts/$m with etc/sdme/$m.container"
	th_exec mkdir -p "$cext/etc/sdme" "$cext/etc/extension-release.d"
	printf '[Container]\n' | th_exec sh -c "cat > $cext/etc/sdme/$m.container"
	release | th_exec sh -c "cat > $cext/etc/extension-release.d/extension-release.$m"
	orphan_case systemd-confext "/etc/sdme/$m.container"
else
	step "no systemd-confext on systemd $(th_exec systemctl --version | sed -n '1s/^systemd \([0-9]*\).*/\1/p')"
	assert_eq "Debian 12 (systemd 252): no systemd-confext" bookworm "$TH_SUITE"
	check_in "no /usr/lib/systemd/systemd-confext either" sh -c '! ls /usr/lib/systemd/ | grep -q confext'
fi

step "systemd-sysext: /run/extensions/$m with usr/lib/sdme/$m.container"
th_exec mkdir -p "$sext/usr/lib/sdme" "$sext/usr/lib/extension-release.d"
printf '[Container]\n' | th_exec sh -c "cat > $sext/usr/lib/sdme/$m.container"
release | th_exec sh -c "cat > $sext/usr/lib/extension-release.d/extension-release.$m"
orphan_case systemd-sysext "/usr/lib/sdme/$m.container"
