# shellcheck shell=bash
# shellcheck disable=SC2016 # snippets expand inside the test host
# 90-templates: a template web@.container with declared instances web@a and
# web@b (symbolic links to it) runs them side by side, each on its own
# upper/; an undeclared instance sdme-web@c of the bare template mounts its
# overlay itself (sdme-prepare --mount) and unmounts it after stop; five
# containers start in one transaction and stop in parallel.

cs="c1 c2 c3 c4 c5"
machines_all="web-a web-b web-c $cs"

on_cleanup sh -c "cd /etc/sdme && rm -f web@.container web@a.container web@b.container c?.container; for m in $machines_all; do rm -rf /var/lib/sdme/containers/\$m; done; systemctl daemon-reload"
on_cleanup sh -c "systemctl stop 'sdme-web@*' 'sdme-c[1-5].service'; systemctl reset-failed 'sdme-*' 'sdme-prepare@*' 2>/dev/null; true"

run_in() { th_run_in "$@" 2>&1 | tr -d '\r'; } # run_in MACHINE CMD...
mounted() { th_exec findmnt -n -o FSTYPE "/var/lib/sdme/containers/$1/merged" 2>/dev/null || true; }
# unmounted MACHINE...: their overlays gone, checked the instant stop
# returned (it returns only then).
unmounted() {
	local m left=
	for m in "$@"; do [ -z "$(mounted "$m")" ] || left+=" $m"; done
	[ -z "$left" ] || fail "overlays still mounted when stop returned:$left"
}
machine_list() { th_exec machinectl list --no-legend --no-pager 2>/dev/null | awk 'NF { print $1 }' | sort | paste -sd' '; }

step "web@.container with declared instances web@a, web@b (links)"
th_exec mkdir -p /etc/sdme
printf '[Container]\nEnvironment=E2E_INSTANCE=%%i\n' | th_exec sh -c 'cat > /etc/sdme/web@.container'
th_exec ln -s web@.container /etc/sdme/web@a.container
th_exec ln -s web@.container /etc/sdme/web@b.container
require_in "daemon-reload" systemctl daemon-reload
for i in a b; do
	check_in "declared instance web@$i has its own unit" test -f "/run/systemd/generator/sdme-web@$i.service"
	assert_match "declared instance web@$i has its own prepare arguments" \
		"--state=/var/lib/sdme/containers/web-$i .*--unit=sdme-web@$i\.service web-$i\$" "$(th_prepare_args "web-$i")"
done
check_in "the template unit exists" test -f /run/systemd/generator/sdme-web@.service
check_in "no unit file generated for web@c" sh -c '! test -e /run/systemd/generator/sdme-web@c.service'

step "start sdme-web@a and sdme-web@b together"
require_in "systemctl start sdme-web@a sdme-web@b" timeout 180 systemctl start sdme-web@a sdme-web@b
assert_eq "machinectl list shows web-a and web-b" "web-a web-b" "$(machine_list)"
for i in a b; do
	assert_eq "sdme-web@$i active" active "$(th_exec systemctl is-active "sdme-web@$i" 2>&1 || true)"
	assert_match "web-$i is running" '^(running|degraded)$' \
		"$(th_exec timeout 60 systemctl -M "web-$i" is-system-running --wait 2>&1 || true)"
	assert_eq "hostname of web-$i" "web-$i" "$(run_in "web-$i" cat /proc/sys/kernel/hostname || true)"
	assert_eq "%i expanded in web-$i's Environment=" "E2E_INSTANCE=$i" \
		"$(run_in "web-$i" sh -c 'tr "\0" "\n" < /proc/1/environ | grep ^E2E_INSTANCE=' || true)"
	assert_eq "web-$i runs on its own overlay" overlay "$(mounted "web-$i")"
	check_in "web-$i: write /root/who" timeout 60 systemd-run -q --collect -M "web-$i" --wait --pipe \
		sh -c "echo $i > /root/who"
done
for i in a b; do
	assert_eq "upper/ of web-$i holds its own /root/who" "$i" \
		"$(th_exec cat "/var/lib/sdme/containers/web-$i/upper/root/who" 2>&1 || true)"
	assert_eq "web-$i sees its own /root/who" "$i" "$(run_in "web-$i" cat /root/who || true)"
done
la=$(th_exec findmnt -n -o OPTIONS /var/lib/sdme/containers/web-a/merged || true)
assert_match "web-a's overlay uses web-a's upper/" 'upperdir=/var/lib/sdme/containers/web-a/upper' "$la"

step "an undeclared instance: systemctl start sdme-web@c"
require_in "systemctl start sdme-web@c" timeout 180 systemctl start sdme-web@c
assert_eq "sdme-web@c active" active "$(th_exec systemctl is-active sdme-web@c 2>&1 || true)"
assert_eq "sdme-web@c runs from the template unit" /run/systemd/generator/sdme-web@.service \
	"$(th_exec systemctl show -p FragmentPath --value sdme-web@c 2>&1 || true)"
assert_eq "machinectl list shows web-a, web-b and web-c" "web-a web-b web-c" "$(machine_list)"
assert_match "web-c is running" '^(running|degraded)$' \
	"$(th_exec timeout 60 systemctl -M web-c is-system-running --wait 2>&1 || true)"
assert_eq "web-c's overlay mounted by sdme-prepare --mount" overlay "$(mounted web-c)"
# systemd shows any mount point as a mount unit; this one has no unit file.
assert_eq "no generated mount unit for web-c's overlay" "" \
	"$(th_exec systemctl show -p FragmentPath --value 'var-lib-sdme-containers-web\x2dc-merged.mount' 2>&1 || true)"
assert_eq "%i expanded for the undeclared instance" "E2E_INSTANCE=c" \
	"$(run_in web-c sh -c 'tr "\0" "\n" < /proc/1/environ | grep ^E2E_INSTANCE=' || true)"
check_in "web-c: write /root/who" timeout 60 systemd-run -q --collect -M web-c --wait --pipe \
	sh -c 'echo c > /root/who'
require_in "systemctl stop sdme-web@c" timeout 120 systemctl stop sdme-web@c
assert_eq "sdme-web@c inactive after stop" inactive "$(th_exec systemctl is-active sdme-web@c 2>&1 || true)"
assert_eq "web-c's overlay unmounted by ExecStopPost= (sdme-prepare --unmount)" "" "$(mounted web-c)"
check_in "web-c's upper/ kept after stop" test -f /var/lib/sdme/containers/web-c/upper/root/who

step "stop web@a and web@b"
require_in "systemctl stop sdme-web@a sdme-web@b" timeout 120 systemctl stop sdme-web@a sdme-web@b
unmounted web-a web-b
assert_eq "no machines left" "" "$(machine_list)"

step "five containers start together"
for c in $cs; do
	printf '[Container]\n' | th_exec sh -c "cat > /etc/sdme/$c.container"
done
require_in "daemon-reload" systemctl daemon-reload
t0=$(date +%s%N)
units=()
for c in $cs; do units+=("sdme-$c"); done
require_in "systemctl start ${units[*]}" timeout 300 systemctl start "${units[@]}"
step "five started in $((($(date +%s%N) - t0) / 1000000)) ms"
assert_eq "machinectl list shows all five" "$cs" "$(machine_list)"
for c in $cs; do
	assert_eq "sdme-$c active" active "$(th_exec systemctl is-active "sdme-$c" 2>&1 || true)"
	assert_match "$c is running" '^(running|degraded)$' \
		"$(th_exec timeout 60 systemctl -M "$c" is-system-running --wait 2>&1 || true)"
	assert_eq "hostname of $c" "$c" "$(run_in "$c" cat /proc/sys/kernel/hostname || true)"
	assert_eq "$c on its own overlay" overlay "$(mounted "$c")"
done

step "five containers stop in parallel"
t0=$(date +%s%N)
pids=()
for c in $cs; do
	th_exec timeout 120 systemctl stop "sdme-$c" &
	pids+=("$!")
done
for i in "${!pids[@]}"; do
	wait "${pids[$i]}" || fail "systemctl stop ${units[$i]} failed"
done
step "five stopped in $((($(date +%s%N) - t0) / 1000000)) ms"
for c in $cs; do
	assert_eq "sdme-$c inactive after stop" inactive "$(th_exec systemctl is-active "sdme-$c" 2>&1 || true)"
done
# shellcheck disable=SC2086 # the list of names
unmounted $cs
assert_eq "no machines left" "" "$(machine_list)"
