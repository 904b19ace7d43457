# shellcheck shell=bash
# shellcheck disable=SC2016 # th_sh snippets expand inside the test host
# 70-failures: a start that cannot succeed fails `systemctl start` within
# its timeout, and `journalctl -u sdme-NAME` has one line naming the cause:
# a missing rootfs (sdme-prepare), a BootTimeout= shorter than the boot
# (systemd's start timeout, named by sdme-boot-wait --stopped), a WaitFor=
# unit that never becomes active (sdme-boot-wait), a umask that strips
# "other" permissions (sdme-prepare). Nothing is left mounted or running.

names="nr bt wf um"

on_cleanup sh -c "for n in $names; do rm -rf /var/lib/sdme/containers/\$n /etc/sdme/\$n.container; done; systemctl daemon-reload"
on_cleanup sh -c "for n in $names; do systemctl stop sdme-\$n; systemctl reset-failed sdme-\$n sdme-prepare@\$n; done 2>/dev/null; true"

cursor() { th_exec journalctl -n 0 --show-cursor --no-pager 2>/dev/null | sed -n 's/^-- cursor: //p'; }

# expect_failure NAME MAX_SECONDS REGEX DESC FAILED_UNIT: `systemctl start
# sdme-NAME` must fail within MAX_SECONDS, the unit's journal since then must
# hold exactly one line matching REGEX (the cause), and FAILED_UNIT must be
# in the failed state (then reset).
expect_failure() {
	local n=$1 max=$2 re=$3 desc=$4 failed_unit=$5 c t0 ms rc=0 log hits before mount_unit
	step "$desc: systemctl start sdme-$n"
	c=$(cursor)
	# Counted over the unit's whole journal, not after a cursor: journalctl
	# 252 with --after-cursor and -u misses the helper's OBJECT_SYSTEMD_UNIT=
	# line (measured).
	before=$(th_exec journalctl --no-pager -o cat -u "sdme-$n" 2>/dev/null | grep -cE "$re" || true)
	t0=$(date +%s%N)
	th_exec timeout $((max + 60)) systemctl start "sdme-$n" || rc=$?
	ms=$((($(date +%s%N) - t0) / 1000000))
	step "$desc: start returned $rc after $ms ms"
	[ "$rc" -ne 0 ] || fail "$desc: systemctl start sdme-$n succeeded"
	[ "$ms" -lt $((max * 1000)) ] || fail "$desc: start took $ms ms, more than $max s"
	# A helper's line may reach the journal a moment after systemd's own.
	for _ in $(seq 50); do
		hits=$(th_exec journalctl --no-pager -o cat -u "sdme-$n" 2>/dev/null | grep -cE "$re" || true)
		[ "$hits" -gt "$before" ] && break
		sleep 0.1
	done
	hits=$((hits - before))
	log=$(th_exec journalctl --no-pager -o cat --after-cursor="$c" -u "sdme-$n" 2>&1 || true)
	echo "--- journalctl -u sdme-$n since the start (without the guest's console):"
	echo "$log" | grep -Ev '^(\[|         |$)' || true
	assert_eq "$desc: lines matching /$re/ in journalctl -u sdme-$n" 1 "$hits"
	# Nothing left: no machine, no overlay, the service not running.
	assert_match "$desc: sdme-$n not running" '^(failed|inactive)$' \
		"$(th_exec systemctl is-active "sdme-$n" 2>&1 || true)"
	check_in "$desc: machine $n not registered" sh -c "! machinectl show '$n' >/dev/null 2>&1"
	mount_unit=$(th_exec systemd-escape --path --suffix=mount "/var/lib/sdme/containers/$n/merged")
	for _ in $(seq 100); do
		[ "$(th_exec systemctl is-active "$mount_unit" 2>/dev/null || true)" = inactive ] &&
			! th_exec findmnt -n "/var/lib/sdme/containers/$n/merged" >/dev/null 2>&1 && break
		sleep 0.1
	done
	check_in "$desc: overlay of $n not mounted" sh -c "! findmnt -n /var/lib/sdme/containers/$n/merged"
	assert_eq "$desc: $failed_unit is failed" failed "$(th_exec systemctl is-active "$failed_unit" 2>&1 || true)"
	th_exec systemctl reset-failed "sdme-$n" "sdme-prepare@$n" 2>/dev/null || true
}

step "write the containers"
th_exec mkdir -p /etc/sdme
# A rootfs that does not exist.
printf '[Container]\nRootfs=nope\nBootTimeout=20s\n' | th_exec sh -c 'cat > /etc/sdme/nr.container'
# A host clone whose boot takes at least 5 s (a oneshot in the upper
# layer's /etc/systemd/system delays multi-user.target), with BootTimeout=1s.
printf '[Container]\nBootTimeout=1s\n' | th_exec sh -c 'cat > /etc/sdme/bt.container'
th_sh 'd=/var/lib/sdme/containers/bt/upper/etc/systemd/system &&
	mkdir -p $d/multi-user.target.wants &&
	printf "[Service]\nType=oneshot\nExecStart=/bin/sleep 5\n" > $d/e2e-slow.service &&
	ln -s ../e2e-slow.service $d/multi-user.target.wants/e2e-slow.service'
# A unit inside that exists but nobody starts: WaitFor= times out.
printf '[Container]\nBootTimeout=15s\nWaitFor=e2e-never.service\n' | th_exec sh -c 'cat > /etc/sdme/wf.container'
th_sh 'd=/var/lib/sdme/containers/wf/upper/etc/systemd/system && mkdir -p $d &&
	printf "[Service]\nExecStart=/bin/sleep infinity\n" > $d/e2e-never.service'
# A umask that would make upper/ unreadable to non-root services.
printf '[Container]\nBootTimeout=20s\n\n[Service]\nUMask=0077\n' | th_exec sh -c 'cat > /etc/sdme/um.container'
require_in "daemon-reload" systemctl daemon-reload
for n in $names; do
	require_in "sdme-$n.service generated" systemctl cat "sdme-$n.service"
done
assert_match "UMask=0077 passed to sdme-prepare@um.service" "(^| )--umask=0077( |\$)" "$(th_prepare_args um)"

step "sdme-prepare@ghost: a machine no .container file declares"
rc=0
th_exec timeout 60 systemctl start sdme-prepare@ghost.service || rc=$?
[ "$rc" -ne 0 ] || fail "systemctl start sdme-prepare@ghost succeeded"
# The helper's stderr line may reach the journal a moment after systemd's
# own (seen with systemd 252); no cursor, as in expect_failure.
for _ in $(seq 50); do
	log=$(th_exec journalctl --no-pager -o cat -u sdme-prepare@ghost.service 2>&1 || true)
	[[ $log == *"no generated mount unit"* ]] && break
	sleep 0.1
done
echo "$log"
assert_match "sdme-prepare@ghost names the missing mount unit" \
	'sdme-prepare: ghost: no generated mount unit /run/systemd/generator/var-lib-sdme-containers-ghost-merged\.mount: no \.container file declares' "$log"
th_exec systemctl reset-failed sdme-prepare@ghost.service 2>/dev/null || true

expect_failure nr 30 'rootfs /var/lib/sdme/rootfs/nope not found' "missing rootfs" sdme-prepare@nr.service

expect_failure bt 11 'did not finish booting within BootTimeout=1s' "BootTimeout=1s" sdme-bt.service

expect_failure wf 25 'timed out after 15s waiting for unit e2e-never\.service' "WaitFor= never active" sdme-wf.service

expect_failure um 30 'umask 0077 removes read or execute permission for others' "UMask=0077" sdme-prepare@um.service
check_in "UMask=0077: nothing was created in upper/" sh -c '! test -e /var/lib/sdme/containers/um/upper'
