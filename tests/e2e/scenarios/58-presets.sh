# shellcheck shell=bash
# 58-presets: Hardened=yes and Strict=yes boot in the test host, checked
# from inside, and a sdme.conf drop-in changes the Hardened drop list after
# daemon-reload:
# - Hardened (h58): CapBnd of PID 1 lacks the three default drops
#   (CAP_NET_RAW 13, CAP_SYS_RAWIO 17, CAP_SYS_PTRACE 19) and keeps the
#   rest of nspawn's set (CAP_SYS_BOOT 22, CAP_SYS_NICE 23); NoNewPrivs: 1;
#   a user namespace: /proc/self/uid_map maps 0 to a 65536-UID range that
#   does not start at 0 (the control c58 shows the identity map);
#   a network namespace of its own with only lo, while the host clone
#   without the preset (c58, the control) shares the test host's;
# - Strict (s58, with Capability=CAP_SYS_PTRACE re-adding one): CapBnd is
#   exactly Docker's default set plus CAP_SYS_ADMIN and CAP_SYS_BOOT minus
#   CAP_NET_RAW (the Hardened drop) plus CAP_SYS_PTRACE; ptrace(PTRACE_TRACEME) fails with
#   EPERM (~@debug: nspawn itself allows ptrace when CAP_SYS_PTRACE is
#   kept), where it works in c58; a user namespace as in h58; the service
#   carries AppArmorProfile=sdme-default and, the test kernel having no
#   AppArmor, the start goes on with one warning in journalctl -u sdme-s58;
# - /etc/sdme/sdme.conf.d/50-e2e.conf with "DropCapability=" then
#   "DropCapability=CAP_SYS_NICE": after daemon-reload and a restart,
#   h58 has CAP_SYS_PTRACE back and lacks CAP_SYS_NICE.

h=h58
s=s58
c=c58
all="$h $s $c"

on_cleanup sh -c "for m in $all; do rm -rf /var/lib/sdme/containers/\$m /etc/sdme/\$m.container; done; rm -rf /etc/sdme/sdme.conf.d; systemctl daemon-reload"
on_cleanup sh -c "systemctl stop sdme-$h sdme-$s sdme-$c; systemctl reset-failed 'sdme-*' 'sdme-prepare@*' 2>/dev/null; true"

has_cap() { (((16#$1 >> $2) & 1)); }
status_field() { # MACHINE FIELD: a field of /proc/1/status in MACHINE
	th_run_in "$1" sed -n "s/^$2:[[:space:]]*//p" /proc/1/status 2>&1 | tr -d '\r' || true
}
# The bits of a capability list, as the mask /proc shows.
mask_of() {
	local m=0 b
	for b in "$@"; do m=$((m | (1 << b))); done
	printf '%016x' "$m"
}
booted() { # MACHINE: assert it booted; show the failed units if degraded
	local state u
	state=$(th_exec timeout 60 systemctl -M "$1" is-system-running 2>&1 || true)
	step "$1: system state '$state'"
	if [ "$state" != running ]; then
		th_exec systemctl -M "$1" --failed --no-legend --plain 2>&1 || true
		for u in $(th_exec systemctl -M "$1" --failed --no-legend --plain 2>/dev/null | awk '{print $1}'); do
			th_exec journalctl -M "$1" -b -u "$u" --no-pager -n 20 -o cat 2>&1 || true
		done
	fi
	assert_match "$1 booted (running or degraded)" '^(running|degraded)$' "$state"
}
# ptrace(PTRACE_TRACEME): prints 0, or the errno it failed with.
traceme='import ctypes; l = ctypes.CDLL(None, use_errno=True); r = l.ptrace(0, 0, 0, 0); print(0 if r == 0 else ctypes.get_errno())'

th_exec mkdir -p /etc/sdme
printf '[Container]\nHardened=yes\n' | th_exec sh -c "cat > /etc/sdme/$h.container"
printf '[Container]\nStrict=yes\nCapability=CAP_SYS_PTRACE\n' | th_exec sh -c "cat > /etc/sdme/$s.container"
printf '[Container]\n' | th_exec sh -c "cat > /etc/sdme/$c.container"
require_in "daemon-reload" systemctl daemon-reload
for m in $h $s; do
	th_exec systemctl cat "sdme-$m.service" | grep -E '^(ExecStart|AppArmorProfile)=' || true
done
check_in "sdme-$h: user namespace, private network, default drops, no-new-privileges" sh -c \
	"systemctl cat sdme-$h.service | grep -E '^ExecStart=.* --private-users=[0-9]+:65536 --private-users-ownership=off --private-network --drop-capability=CAP_NET_RAW,CAP_SYS_PTRACE,CAP_SYS_RAWIO --no-new-privileges=yes\$'"
assert_eq "systemctl show -p AppArmorProfile sdme-$s" "AppArmorProfile=sdme-default" \
	"$(th_exec systemctl show -p AppArmorProfile "sdme-$s" 2>&1 || true)"

since=$(th_exec date +%s)
for m in $all; do
	t0=$(date +%s%N)
	require_in "systemctl start sdme-$m" timeout 180 systemctl start "sdme-$m"
	step "$m started in $((($(date +%s%N) - t0) / 1000000)) ms"
	booted "$m"
done

step "Hardened: capabilities, no_new_privs, network"
caps_h=$(status_field $h CapBnd)
caps_c=$(status_field $c CapBnd)
step "CapBnd: $h $caps_h, $c (control) $caps_c"
assert_match "CapBnd of PID 1 in $h" '^[0-9a-f]{16}$' "$caps_h"
# CAP_SYS_RAWIO (17) is not in nspawn's default set: the control lacks it.
for bit in 13 19 22; do
	has_cap "$caps_c" $bit || fail "control $c lacks capability $bit ($caps_c): the check of $h cannot work"
done
for bit in 13 17 19; do
	! has_cap "$caps_h" $bit || fail "capability $bit still in the bounding set of $h ($caps_h)"
done
has_cap "$caps_h" 23 || fail "CAP_SYS_NICE (23) missing in $h ($caps_h): more than the preset was dropped"
has_cap "$caps_h" 22 || fail "CAP_SYS_BOOT (22) missing in $h ($caps_h): a reboot inside would be a power-off"
uid_map() { th_run_in "$1" cat /proc/self/uid_map 2>&1 | tr -d '\r' | xargs || true; }
map_h=$(uid_map $h)
map_c=$(uid_map $c)
step "uid_map: $h '$map_h', $c (control) '$map_c'"
assert_match "$h maps root to a 65536-UID range away from 0" '^0 [1-9][0-9]* 65536$' "$map_h"
assert_eq "the control $c has the identity map" "0 0 4294967295" "$map_c"
assert_match "$s maps root to a 65536-UID range away from 0" '^0 [1-9][0-9]* 65536$' "$(uid_map $s)"
assert_eq "NoNewPrivs of PID 1 in $h" 1 "$(status_field $h NoNewPrivs)"
assert_eq "NoNewPrivs of PID 1 in $c (control)" 0 "$(status_field $c NoNewPrivs)"
netns() { th_run_in "$1" readlink /proc/self/ns/net 2>&1 | tr -d '\r' || true; }
host_ns=$(th_exec readlink /proc/self/ns/net)
ns_h=$(netns $h)
ns_c=$(netns $c)
step "network namespaces: host $host_ns, $h $ns_h, $c (control) $ns_c"
assert_eq "the control $c shares the host's network namespace" "$host_ns" "$ns_c"
assert_match "$h has a network namespace" '^net:\[[0-9]+\]$' "$ns_h"
[ "$ns_h" != "$host_ns" ] || fail "$h shares the host's network namespace"
assert_eq "only lo in $h" lo "$(th_run_in $h ls /sys/class/net 2>&1 | tr -d '\r' | xargs || true)"

step "Strict: capabilities, system call filter, AppArmor"
caps_s=$(status_field $s CapBnd)
# Docker's set (CHOWN 0, DAC_OVERRIDE 1, FOWNER 3, FSETID 4, KILL 5,
# SETGID 6, SETUID 7, SETPCAP 8, NET_BIND_SERVICE 10, SYS_CHROOT 18,
# MKNOD 27, AUDIT_WRITE 29, SETFCAP 31) + SYS_ADMIN 21 + SYS_BOOT 22,
# without NET_RAW 13, + SYS_PTRACE 19 (Capability=).
want=$(mask_of 0 1 3 4 5 6 7 8 10 18 19 21 22 27 29 31)
assert_eq "CapBnd of PID 1 in $s" "$want" "$caps_s"
assert_eq "NoNewPrivs of PID 1 in $s" 1 "$(status_field $s NoNewPrivs)"
[ "$(netns $s)" != "$host_ns" ] || fail "$s shares the host's network namespace"
assert_eq "ptrace(PTRACE_TRACEME) in $c (control)" 0 "$(th_run_in $c python3 -c "$traceme" 2>&1 | tr -d '\r' || true)"
assert_eq "ptrace(PTRACE_TRACEME) in $s fails with EPERM (1)" 1 "$(th_run_in $s python3 -c "$traceme" 2>&1 | tr -d '\r' || true)"
th_exec journalctl --sync 2>/dev/null || true
warning="AppArmorProfile=sdme-default ignored: the kernel does not run AppArmor"
n=$(th_exec journalctl -u "sdme-$s" --since "@$since" --no-pager -o cat 2>&1 | grep -cF "$warning" || true)
assert_eq "one '$warning' line in journalctl -u sdme-$s" 1 "$n"

step "sdme.conf.d drop-in: a new Hardened drop list after daemon-reload"
th_exec mkdir -p /etc/sdme/sdme.conf.d
printf '[Hardened]\nDropCapability=\nDropCapability=CAP_SYS_NICE\n' |
	th_exec sh -c "cat > /etc/sdme/sdme.conf.d/50-e2e.conf"
require_in "daemon-reload" systemctl daemon-reload
check_in "sdme-$h drops only CAP_SYS_NICE now" sh -c \
	"systemctl cat sdme-$h.service | grep -E '^ExecStart=.* --drop-capability=CAP_SYS_NICE --no-new-privileges=yes\$'"
require_in "systemctl restart sdme-$h" timeout 180 systemctl restart "sdme-$h"
booted $h
caps_h2=$(status_field $h CapBnd)
step "CapBnd of $h after the drop-in: $caps_h2"
assert_match "CapBnd of PID 1 in $h" '^[0-9a-f]{16}$' "$caps_h2"
has_cap "$caps_h2" 19 || fail "CAP_SYS_PTRACE (19) not back in $h ($caps_h2) after the drop-in reset the list"
! has_cap "$caps_h2" 23 || fail "CAP_SYS_NICE (23) still in $h ($caps_h2) after the drop-in dropped it"

step "stop"
for m in $all; do
	require_in "systemctl stop sdme-$m" timeout 120 systemctl stop "sdme-$m"
	assert_eq "sdme-$m inactive (not failed) after stop" inactive "$(th_exec systemctl is-active "sdme-$m" 2>&1 || true)"
	th_unmounted "$m" || fail "overlay of $m still mounted after stop"
done
