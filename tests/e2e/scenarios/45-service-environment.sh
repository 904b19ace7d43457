# shellcheck shell=bash
# shellcheck disable=SC2016 # snippets expand inside the test host or guests
# 45-service-environment: Environment= reaches the guest's PID 1 only;
# ServiceEnvironment= reaches every service of the guest (issue 20, item 4):
# - in a plain and a PrivateUsers=yes container, `systemd-run -M --pipe`
#   and a real unit inside (a file in /etc/systemd/system) see the
#   ServiceEnvironment= variables, values with spaces, quotes, backslash,
#   `$` and `%` exactly as written; the guest manager's environment has
#   them, and so does a `machinectl shell` session; Environment='s
#   variable is in /proc/1/environ but not in a service;
# - the drop-in in upper/ is a regular file, 0644, root's inside the guest
#   (0:0 in upper/, also with PrivateUsers=);
# - a symlink the guest puts at the drop-in's name, pointing at a test host
#   file, is replaced at the next start; the test host's file is intact;
# - with the key removed (and a restart) the variables are gone, and so is
#   the drop-in.

c=se45     # host clone
u=su45     # host clone, PrivateUsers=yes
dropin=etc/systemd/system.conf.d/50-sdme-environment.conf
tricky='it'\''s "q" \ $HOME 50%n'

on_cleanup sh -c "rm -rf /var/lib/sdme/containers/$c /var/lib/sdme/containers/$u /etc/sdme/$c.container /etc/sdme/$u.container /etc/e2e45-victim && systemctl daemon-reload"
on_cleanup sh -c "systemctl stop sdme-$c sdme-$u; systemctl reset-failed 'sdme-*' 'sdme-prepare@*' 2>/dev/null; true"

# Both container files, with the keys.
keys='[Container]
Environment=PID1ONLY=yes
ServiceEnvironment=GREETING=hello "SPACED=a b  c"
ServiceEnvironment="TRICKY=it'\''s \"q\" \\ $HOME 50%n"
'
th_exec mkdir -p /etc/sdme
printf '%s' "$keys" | th_exec sh -c "cat > /etc/sdme/$c.container"
printf '%sPrivateUsers=yes\n' "$keys" | th_exec sh -c "cat > /etc/sdme/$u.container"
require_in "daemon-reload" systemctl daemon-reload
for m in "$c" "$u"; do
	require_in "start sdme-$m" timeout 180 systemctl start "sdme-$m"
done

# printenv_in M VAR: VAR as a service of M sees it (status 1 when unset).
printenv_in() { th_run_in "$1" printenv "$2" 2>&1 | tr -d '\r'; }

step "services see ServiceEnvironment=, not Environment="
for m in "$c" "$u"; do
	assert_eq "GREETING in a transient service of $m" hello "$(printenv_in "$m" GREETING || true)"
	assert_eq "SPACED in $m" "a b  c" "$(printenv_in "$m" SPACED || true)"
	assert_eq "TRICKY in $m" "$tricky" "$(printenv_in "$m" TRICKY || true)"
	check_in "$m's manager environment has GREETING=hello" \
		sh -c "systemctl -M '$m' show-environment | grep -qx 'GREETING=hello'"
	check_in_status 1 "Environment='s PID1ONLY is not in a service of $m" \
		systemd-run -q --collect -M "$m" --wait --pipe printenv PID1ONLY
	check_in "Environment='s PID1ONLY is in /proc/1/environ of $m" \
		systemd-run -q --collect -M "$m" --wait --pipe sh -c 'tr "\0" "\n" < /proc/1/environ | grep -qx PID1ONLY=yes'
	assert_eq "the drop-in inside $m: root's, 0644, a regular file" "0 0 644 regular file" \
		"$(th_run_in "$m" stat -c '%u %g %a %F' "/$dropin" 2>&1 | tr -d '\r' || true)"
	assert_eq "the drop-in in upper/ of $m: 0:0" "0 0 644" \
		"$(th_exec stat -c '%u %g %a' "/var/lib/sdme/containers/$m/upper/$dropin" 2>&1 || true)"

	step "a real unit in $m"
	check_in "write probe45.service in $m" systemd-run -q --collect -M "$m" --wait --pipe sh -c \
		'printf "[Service]\nType=oneshot\nExecStart=/bin/sh -c \"printenv GREETING TRICKY > /run/probe45\"\n" > /etc/systemd/system/probe45.service'
	check_in "daemon-reload in $m" systemctl -M "$m" daemon-reload
	check_in "start probe45.service in $m" timeout 60 systemctl -M "$m" start probe45.service
	assert_eq "probe45.service in $m saw the variables" "hello"$'\n'"$tricky" \
		"$(th_run_in "$m" cat /run/probe45 2>&1 | tr -d '\r' || true)"
done

step "a machinectl shell session (on a pseudo-terminal, which it needs) sees them"
# Its output has \r\n line ends, and the pty's echo of the EOF script
# passes on (^@, two characters) before the command's first line.
out=$(th_exec script -qec "machinectl shell $c /usr/bin/printenv GREETING" /dev/null </dev/null 2>&1 | tr -d '\r' || true)
got=$(printf '%s\n' "$out" | sed 's/^\^@//' | grep -x hello || true)
assert_eq "machinectl shell $c: printenv GREETING" hello "$got"
[ "$got" = hello ] || printf 'machinectl shell printed:\n%s\n' "$out"

step "a symlink the guest plants at the drop-in is replaced, never followed"
th_sh 'echo precious > /etc/e2e45-victim'
check_in "plant /$dropin -> /etc/e2e45-victim inside $c" \
	systemd-run -q --collect -M "$c" --wait --pipe ln -sfn /etc/e2e45-victim "/$dropin"
require_in "stop sdme-$c" timeout 120 systemctl stop "sdme-$c"
require_in "start sdme-$c (symlink planted)" timeout 180 systemctl start "sdme-$c"
assert_eq "the test host's /etc/e2e45-victim is intact" precious "$(th_exec cat /etc/e2e45-victim 2>&1 || true)"
check_in "upper/$dropin of $c is a regular file again" \
	sh -c "test -f '/var/lib/sdme/containers/$c/upper/$dropin' && ! test -L '/var/lib/sdme/containers/$c/upper/$dropin'"
assert_eq "GREETING in $c after the planted symlink" hello "$(printenv_in "$c" GREETING || true)"

step "the key removed: the variables and the drop-in are gone"
printf '[Container]\nEnvironment=PID1ONLY=yes\n' | th_exec sh -c "cat > /etc/sdme/$c.container"
printf '[Container]\nPrivateUsers=yes\n' | th_exec sh -c "cat > /etc/sdme/$u.container"
require_in "daemon-reload (key removed)" systemctl daemon-reload
for m in "$c" "$u"; do
	require_in "restart sdme-$m" timeout 180 systemctl restart "sdme-$m"
	check_in_status 1 "GREETING unset in a service of $m" \
		systemd-run -q --collect -M "$m" --wait --pipe printenv GREETING
	check_in_status 1 "probe45.service in $m fails: printenv finds neither" \
		timeout 60 systemctl -M "$m" start probe45.service
	assert_eq "probe45.service in $m saw nothing" "" "$(th_run_in "$m" cat /run/probe45 2>&1 | tr -d '\r' || true)"
	check_in "no drop-in in upper/ of $m" sh -c "! test -e '/var/lib/sdme/containers/$m/upper/$dropin' && ! test -L '/var/lib/sdme/containers/$m/upper/$dropin'"
done

step "stop"
require_in "stop" timeout 120 systemctl stop "sdme-$c" "sdme-$u"
for m in "$c" "$u"; do
	th_unmounted "$m" || fail "overlay of $m still mounted after stop"
done
