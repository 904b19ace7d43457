# shellcheck shell=bash
# shellcheck disable=SC2016 # snippets expand inside the test host
# 61-stop-unmount: `systemctl stop sdme-NAME` returns only when the
# container's overlay is unmounted (sdme.container(5), "STOP"), for every
# kind: a plain host clone (overlay mounted by its .mount unit), one with
# PrivateUsers=yes (the prepare helper mounts it over ID-mapped layers) and
# an instance of a bare template. Each is started and stopped 30 times;
# the instant stop returns, merged/ must not be a mount point, the service
# must be inactive (not failed) and systemd must show the mount unit
# inactive with Result=success (for the plain one, its own stop job found
# nothing to do; for the others, the unit systemd made from mountinfo). The first mounted one fails the scenario, loudly. Then a
# restart of each works and stop unmounts again.

plain=sp61
userns=su61
tmpl=st61 # st61@.container, instance st61@a (machine st61-a)
cycles=${E2E_STOP_CYCLES:-30}

cleanup_files="/etc/sdme/$plain.container /etc/sdme/$userns.container /etc/sdme/$tmpl@.container"
cleanup_files="$cleanup_files /var/lib/sdme/containers/$plain /var/lib/sdme/containers/$userns /var/lib/sdme/containers/$tmpl-a"
on_cleanup sh -c "rm -rf $cleanup_files && systemctl daemon-reload"
on_cleanup sh -c "systemctl stop e2e-busy61 sdme-$plain sdme-$userns sdme-$tmpl@a; systemctl reset-failed 'sdme-*' 'sdme-prepare@*' 'var-lib-sdme-*' 2>/dev/null; true"

th_exec mkdir -p /etc/sdme
printf '[Container]\n' | th_exec sh -c "cat > /etc/sdme/$plain.container"
printf '[Container]\nPrivateUsers=yes\n' | th_exec sh -c "cat > /etc/sdme/$userns.container"
printf '[Container]\n' | th_exec sh -c "cat > /etc/sdme/$tmpl@.container"
require_in "daemon-reload" systemctl daemon-reload

# The loop runs inside the host: no nsenter between stop and the check.
# Arguments: UNIT MACHINE MOUNT-UNIT-OR-EMPTY CYCLES. Prints one line per
# failure and stops at the first one; prints the mean cycle time.
cycle_script='
u=$1 m=$2 mu=$3 n=$4
merged=/var/lib/sdme/containers/$m/merged
t0=$(date +%s%N)
i=0
while [ "$i" -lt "$n" ]; do
	i=$((i + 1))
	timeout 180 systemctl start "$u" || { echo "cycle $i: systemctl start $u failed"; exit 1; }
	timeout 120 systemctl stop "$u" || { echo "cycle $i: systemctl stop $u failed"; exit 1; }
	if mountpoint -q "$merged"; then
		echo "cycle $i: $merged is still mounted when systemctl stop $u returned"
		findmnt "$merged"
		exit 1
	fi
	s=$(systemctl show -p ActiveState --value "$u")
	r=$(systemctl show -p Result --value "$u")
	[ "$s/$r" = inactive/success ] || { echo "cycle $i: $u is $s/$r after stop"; exit 1; }
	if [ -n "$mu" ]; then
		s=$(systemctl show -p ActiveState --value "$mu")
		r=$(systemctl show -p Result --value "$mu")
		[ "$s/$r" = inactive/success ] || { echo "cycle $i: $mu is $s/$r when stop returned"; exit 1; }
	fi
	if findmnt -rn -o TARGET | grep -q "^/run/sdme/idmap"; then
		echo "cycle $i: ID-mapped layers left mounted below /run/sdme/idmap"
		exit 1
	fi
done
echo "$n cycles of $u, $((($(date +%s%N) - t0) / n / 1000000)) ms per start and stop"
'

# cycles UNIT MACHINE [MOUNT-UNIT]
cycles() {
	step "start and stop $1 $cycles times"
	check_in "$1: overlay unmounted the instant every stop returned" sh -c "$cycle_script" sh "$1" "$2" "${3:-}" "$cycles"
}

# restart UNIT MACHINE: restart a running container, then stop it.
restart() {
	local u=$1 m=$2
	step "systemctl restart $u"
	require_in "start $u" timeout 180 systemctl start "$u"
	# The old stop must not delete the record of the start that follows
	# it (the generator keeps a stop-capable unit from it): every restart.
	# (reset-failed also resets systemd's start rate limit, 5 in 10 s by
	# default, which restarts in a row after the cycles above would hit.)
	check_in "restart $u 4 times, its record in /run/sdme/inuse after each" sh -c \
		"for i in 1 2 3 4; do systemctl reset-failed $u; timeout 180 systemctl restart $u || exit 1
		test -s /run/sdme/inuse/$m || { echo \"no record after restart \$i\"; exit 1; }; done"
	assert_eq "$u active after restart" active "$(th_exec systemctl is-active "$u" 2>&1 || true)"
	assert_match "$m booted after restart" '^(running|degraded)$' \
		"$(th_exec timeout 60 systemctl -M "$m" is-system-running --wait 2>&1 || true)"
	check_in "stop $u" timeout 120 systemctl stop "$u"
	check_in "$m: overlay unmounted after stop" sh -c "! mountpoint -q /var/lib/sdme/containers/$m/merged"
	assert_eq "$u inactive after stop" inactive "$(th_exec systemctl is-active "$u" 2>&1 || true)"
	check_in "$m: record gone after stop" test ! -e "/run/sdme/inuse/$m"
}

mount_unit=$(th_exec systemd-escape --path --suffix=mount "/var/lib/sdme/containers/$plain/merged")
cycles "sdme-$plain.service" "$plain" "$mount_unit"
restart "sdme-$plain.service" "$plain"
assert_eq "$mount_unit inactive/success after the restart and stop" inactive/success \
	"$(th_exec systemctl show -p ActiveState --value "$mount_unit")/$(th_exec systemctl show -p Result --value "$mount_unit")"

cycles "sdme-$userns.service" "$userns" \
	"$(th_exec systemd-escape --path --suffix=mount "/var/lib/sdme/containers/$userns/merged")"
restart "sdme-$userns.service" "$userns"

cycles "sdme-$tmpl@a.service" "$tmpl-a" \
	"$(th_exec systemd-escape --path --suffix=mount "/var/lib/sdme/containers/$tmpl-a/merged")"
restart "sdme-$tmpl@a.service" "$tmpl-a"

step "a busy overlay: stop says so and leaves it mounted (no lazy detach)"
require_in "start sdme-$plain" timeout 180 systemctl start "sdme-$plain"
# A process of the host with its working directory in merged/ holds it
# (not through WorkingDirectory=, which would make its unit depend on the
# mount unit and be stopped with it).
th_exec systemd-run -q --unit=e2e-busy61 sh -c "cd /var/lib/sdme/containers/$plain/merged && exec sleep 600"
require_in "the holder runs in merged/" sh -c "for i in \$(seq 50); do [ \"\$(readlink /proc/\$(systemctl show -p MainPID --value e2e-busy61)/cwd)\" = /var/lib/sdme/containers/$plain/merged ] && exit 0; sleep 0.1; done; exit 1"
check_in "stop sdme-$plain (returns)" timeout 120 systemctl stop "sdme-$plain"
check_in "merged/ still mounted while busy" mountpoint -q "/var/lib/sdme/containers/$plain/merged"
check_in "its record kept while it stays mounted" test -s "/run/sdme/inuse/$plain"
assert_eq "sdme-$plain failed (its stop could not unmount)" failed \
	"$(th_exec systemctl is-active "sdme-$plain" 2>&1 || true)"
assert_match "the journal names the mount point and says it is busy" \
	"cannot unmount the overlay at /var/lib/sdme/containers/$plain/merged: it is busy" \
	"$(th_exec journalctl --no-pager -o cat -u "sdme-$plain" -n 20 2>&1 || true)"
step "mount unit after the failed stop: $(th_exec systemctl show -p ActiveState --value "$mount_unit")/$(th_exec systemctl show -p Result --value "$mount_unit") (informational)"
th_exec systemctl stop e2e-busy61 || true
th_exec systemctl reset-failed "sdme-$plain" "$mount_unit" || true
step "once free, the next start reuses the overlay and stop unmounts it"
require_in "start sdme-$plain again" timeout 180 systemctl start "sdme-$plain"
check_in "stop sdme-$plain" timeout 120 systemctl stop "sdme-$plain"
check_in "merged/ unmounted" sh -c "! mountpoint -q /var/lib/sdme/containers/$plain/merged"
assert_eq "$mount_unit inactive/success" inactive/success \
	"$(th_exec systemctl show -p ActiveState --value "$mount_unit")/$(th_exec systemctl show -p Result --value "$mount_unit")"
