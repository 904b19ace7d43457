# shellcheck shell=bash
# 81-cli-bus: the sdme command line through systemd's and machined's D-Bus
# APIs. A start that fails prints the unit's Result and its journal lines
# and exits non-zero; Ctrl+C during a start stops the container again (exit
# 130); `stop --term` (TerminateMachine) and `stop --kill` (SIGKILL, stop,
# reset-failed) return with the unit inactive and the overlay unmounted;
# `set --memory` applies at once (the unit's MemoryMax, not cgroup files:
# the CI machine's cgroups may be v1-hybrid); `ps --json` gives STATUS and
# HEALTH of running (ok, and degraded with a failed unit inside), stopped,
# failed, broken, rootfs-less and image-less containers;
# `sdme ps | head -1` exits 0.

on_cleanup sh -c "rm -rf /etc/sdme/bus1.container /etc/sdme/busf.container /etc/sdme/busm.container /etc/sdme/busb.container /etc/sdme/busi.container /etc/sdme/bust@.container /var/lib/sdme/containers/bust-x /etc/sdme/busw.container /etc/sdme/busw.container.d /etc/sdme/bus1.container.d /var/lib/sdme/containers/bus1 /var/lib/sdme/containers/busf /var/lib/sdme/containers/busw /tmp/busw.out && systemctl daemon-reload"
on_cleanup sh -c "for u in sdme-bust@x.service sdme-bus1.service sdme-busf.service sdme-busw.service; do systemctl stop \$u; systemctl reset-failed \$u 2>/dev/null; done; true"

# out_rc CMD...: "RC OUTPUT" of a command inside the host.
out_rc() {
	local out rc=0
	out=$(th_exec "$@" 2>&1) || rc=$?
	printf '%s %s' "$rc" "$out"
}

# ps_field NAME FIELD: FIELD of NAME's object in `sdme ps --json`.
ps_field() {
	th_exec sdme ps --json | python3 -c 'import json,sys; print([r for r in json.load(sys.stdin) if r["name"] == sys.argv[1]][0][sys.argv[2]])' "$1" "$2"
}

step "a start that fails: the reason, exit 1"
require_in "sdme create busf --wait-for no-such.service" sdme create busf --wait-for no-such.service
out=$(out_rc timeout 120 sdme start busf)
printf '%s\n' "$out"
assert_match "sdme start busf exits 1 naming the job's result" \
	'^1 .*sdme: sdme-busf.service did not start \(job result: failed, Result=' "$out"
assert_match "the journal of this start names the cause" 'no-such.service not found inside the container' "$out"

step "ps --json: failed, stopped with a missing rootfs, a file error, running"
require_in "busm: a rootfs that is not there" sh -c 'printf "[Container]\nRootfs=gone-rootfs\n" > /etc/sdme/busm.container'
require_in "busi: an image not imported" sh -c 'printf "[Container]\nImage=/var/tmp/no-such-image.tar\n" > /etc/sdme/busi.container'
require_in "busb: a file error" sh -c 'printf "[Container]\nBnd=x\n" > /etc/sdme/busb.container'
require_in "sdme create bus1; daemon-reload" sdme create bus1
require_in "sdme start bus1" timeout 180 sdme start bus1
th_exec sdme ps
th_exec sdme ps --json
assert_eq "busf STATUS" failed "$(ps_field busf status)"
assert_eq "busf HEALTH" failed "$(ps_field busf health)"
assert_eq "busm STATUS" stopped "$(ps_field busm status)"
assert_eq "busm HEALTH" "rootfs missing" "$(ps_field busm health)"
assert_eq "busi HEALTH" "image not imported yet" "$(ps_field busi health)"
assert_eq "busb STATUS" stopped "$(ps_field busb status)"
assert_match "busb HEALTH" '^file error: /etc/sdme/busb.container:2: ' "$(ps_field busb health)"
assert_eq "bus1 STATUS" running "$(ps_field bus1 status)"
assert_eq "bus1 HEALTH" ok "$(ps_field bus1 health)"
assert_eq "bus1 ROOTFS" "(host)" "$(ps_field bus1 rootfs)"
# A failed unit inside (a transient unit that fails, kept): degraded.
check_in "a failed unit in bus1" sh -c 'systemd-run -q -M bus1 --unit=fail81 --wait false; true'
assert_eq "bus1 HEALTH with a failed unit inside" degraded "$(ps_field bus1 health)"
require_in "reset-failed in bus1" systemctl -M bus1 reset-failed fail81.service
assert_eq "bus1 HEALTH ok again" ok "$(ps_field bus1 health)"
assert_match "bus1 OS: the host's PRETTY_NAME" '^Debian GNU/Linux' "$(ps_field bus1 os)"
# shellcheck disable=SC2016 # expanded by the test host's shell
check_in "sdme ps | head -1 exits 0 (pipefail)" bash -c 'set -o pipefail; sdme ps | head -1 >/dev/null && sdme ps | true'
assert_match "ps header" '^NAME +STATUS +HEALTH +OS +ROOTFS +POD +USERNS +ENABLED +ADDRESSES$' "$(th_exec sdme ps | sed -n 1p)"
require_in "remove busm, busb; reset busf" sh -c 'rm /etc/sdme/busm.container /etc/sdme/busb.container /etc/sdme/busi.container && systemctl reset-failed sdme-busf.service'
require_in "sdme rm busf" sdme rm busf

step "sdme set --memory 300M on a running container: MemoryMax at once"
require_in "sdme set bus1 --memory 300M" sdme set bus1 --memory 300M
assert_eq "MemoryMax of sdme-bus1" 314572800 "$(th_exec systemctl show -p MemoryMax --value sdme-bus1.service)"
require_in "sdme set bus1 (clear)" sdme set bus1
assert_eq "MemoryMax cleared" infinity "$(th_exec systemctl show -p MemoryMax --value sdme-bus1.service)"

step "sdme stop --term: TerminateMachine, unit inactive, overlay unmounted"
assert_match "--term and --kill are exclusive" '^2 ' "$(out_rc sdme stop --term --kill bus1)"
require_in "sdme stop --term bus1" timeout 60 sdme stop --term bus1
assert_eq "sdme-bus1 inactive" inactive "$(th_exec systemctl is-active sdme-bus1.service || true)"
check "bus1 unmounted" th_unmounted bus1
check_in "no use record of bus1 left" test ! -e /run/sdme/inuse/bus1

step "sdme stop --kill: SIGKILL, stop, reset-failed"
require_in "sdme start bus1 again" timeout 180 sdme start bus1
require_in "sdme stop --kill bus1" timeout 60 sdme stop --kill bus1
assert_eq "sdme-bus1 inactive, not failed" inactive "$(th_exec systemctl is-active sdme-bus1.service || true)"
check "bus1 unmounted" th_unmounted bus1
check_in "no machine bus1" sh -c '! machinectl status bus1 >/dev/null 2>&1'
check_in "its ExecStopPost ran: no use record of bus1 left" test ! -e /run/sdme/inuse/bus1
require_in "sdme rm bus1" sdme rm bus1

step "ps: a running template instance without a file of its own gets a row; -a lists the template"
require_in "bust@.container" sh -c 'printf "[Container]\n" > /etc/sdme/bust@.container && systemctl daemon-reload'
require_in "start sdme-bust@x" timeout 180 systemctl start sdme-bust@x.service
assert_eq "bust@x STATUS" running "$(ps_field bust@x status)"
assert_eq "bust@x unit" sdme-bust@x.service "$(ps_field bust@x unit)"
assert_eq "bust@x HEALTH: its guest (machine bust-x) asked" ok "$(ps_field bust@x health)"
assert_eq "no row for the bare template without -a" "" \
	"$(th_exec sdme ps --json | python3 -c 'import json,sys; print(*[r["name"] for r in json.load(sys.stdin) if r["name"] == "bust@"])')"
assert_eq "-a: the template's row" template \
	"$(th_exec sdme ps -a --json | python3 -c 'import json,sys; print(*[r["status"] for r in json.load(sys.stdin) if r["name"] == "bust@"])')"
require_in "stop sdme-bust@x" timeout 120 systemctl stop sdme-bust@x.service
require_in "remove bust@.container and its state" sh -c 'rm /etc/sdme/bust@.container && rm -r /var/lib/sdme/containers/bust-x && systemctl daemon-reload'

step "Ctrl+C during a start: the container is stopped again, exit 130"
# rescue.target stays inactive in the guest: the start waits for it. The
# guest is up (multi-user.target active) before Ctrl+C, so that its init
# handles the halt nspawn asks for (an init too early in its boot would
# ignore it until the stop times out).
require_in "sdme create busw --wait-for rescue.target" sdme create busw --wait-for rescue.target --boot-timeout 5min
# shellcheck disable=SC2016 # expanded by the test host's shell
out=$(th_sh 'sdme start busw >/tmp/busw.out 2>&1 & p=$!
timeout 120 sh -c "until [ \"\$(systemctl -M busw is-active multi-user.target 2>/dev/null)\" = active ]; do sleep 0.2; done" || echo "never booted"
kill -INT $p; rc=0; wait $p || rc=$?; echo "rc=$rc"; cat /tmp/busw.out')
printf '%s\n' "$out"
assert_match "sdme start exits 130" 'rc=130' "$out"
assert_match "and says it stopped busw again" 'interrupted: busw stopped again' "$out"
assert_eq "sdme-busw inactive" inactive "$(th_exec systemctl is-active sdme-busw.service || true)"
check "busw unmounted" th_unmounted busw
check_in "no machine busw" sh -c '! machinectl status busw >/dev/null 2>&1'
require_in "sdme rm busw" sdme rm busw
