# shellcheck shell=bash
# 55-security: the security keys seen from inside a booted guest:
# - Capability=/DropCapability=: CapBnd of the guest's PID 1 has
#   CAP_NET_ADMIN (12, which nspawn leaves out by default with the host's
#   network) and lacks CAP_SYS_PTRACE (19, which nspawn keeps by default);
# - NoNewPrivileges=yes: "NoNewPrivs: 1" in /proc/1/status;
# - SystemCallFilter=~syncfs: syncfs(2) (sync -f /) fails with EPERM
#   ("Operation not permitted") inside, where the control container runs it
#   fine. Not chroot: systemd 252 enters a sandboxed service's mount
#   namespace with chroot(2), so ~chroot left bookworm's guest degraded
#   (systemd-logind failed);
# - ReadOnly=yes: a write to / fails with EROFS, the guest still boots (its
#   state is printed, with the failed units if it is degraded).
#
# Containers: s55 (capabilities, no-new-privileges, system call filter),
# r55 (ReadOnly=yes; the control for everything s55 checks).

s=s55
r=r55

on_cleanup sh -c "rm -rf /var/lib/sdme/containers/$s /var/lib/sdme/containers/$r /etc/sdme/$s.container /etc/sdme/$r.container && systemctl daemon-reload"
on_cleanup sh -c "systemctl stop sdme-$s sdme-$r; systemctl reset-failed 'sdme-*' 'sdme-prepare@*' 2>/dev/null; true"

# has_cap HEXMASK BIT: is capability BIT set in HEXMASK?
has_cap() { (((16#$1 >> $2) & 1)); }
CAP_NET_ADMIN=12
CAP_SYS_PTRACE=19

status_field() { # MACHINE FIELD: a field of /proc/1/status in MACHINE
	th_run_in "$1" sed -n "s/^$2:[[:space:]]*//p" /proc/1/status 2>&1 | tr -d '\r' || true
}

host_caps=$(th_exec sed -n 's/^CapBnd:[[:space:]]*//p' /proc/1/status)
for bit in $CAP_NET_ADMIN $CAP_SYS_PTRACE; do
	has_cap "$host_caps" "$bit" || fail "the test host lacks capability $bit ($host_caps): the checks below cannot work"
done

th_exec mkdir -p /etc/sdme
printf '%s\n' \
	'[Container]' \
	'Capability=net_admin' \
	'DropCapability=CAP_SYS_PTRACE' \
	'NoNewPrivileges=yes' \
	'SystemCallFilter=~syncfs' |
	th_exec sh -c "cat > /etc/sdme/$s.container"
printf '[Container]\nReadOnly=yes\n' | th_exec sh -c "cat > /etc/sdme/$r.container"
require_in "daemon-reload" systemctl daemon-reload
for m in "$s" "$r"; do
	th_exec systemctl cat "sdme-$m.service" | grep -E '^ExecStart=' || true
done
check_in "sdme-$s runs nspawn with the security options" sh -c \
	"systemctl cat sdme-$s.service | grep -E '^ExecStart=.* --capability=CAP_NET_ADMIN --drop-capability=CAP_SYS_PTRACE --no-new-privileges=yes --system-call-filter=~syncfs( |\$)'"
check_in "sdme-$r runs nspawn with --read-only" sh -c "systemctl cat sdme-$r.service | grep -E '^ExecStart=.* --read-only( |\$)'"

for m in "$s" "$r"; do
	t0=$(date +%s%N)
	require_in "systemctl start sdme-$m" timeout 180 systemctl start "sdme-$m"
	step "$m started in $((($(date +%s%N) - t0) / 1000000)) ms"
	state=$(th_exec timeout 60 systemctl -M "$m" is-system-running 2>&1 || true)
	step "$m: system state '$state'"
	if [ "$state" != running ]; then
		step "failed units in $m:"
		th_exec systemctl -M "$m" --failed --no-legend --plain 2>&1 || true
		for u in $(th_exec systemctl -M "$m" --failed --no-legend --plain 2>/dev/null | awk '{print $1}'); do
			th_exec journalctl -M "$m" -b -u "$u" --no-pager -n 20 -o cat 2>&1 || true
		done
	fi
	# Degraded is allowed for the read-only guest (units that must write
	# to / fail there); it must still have booted.
	assert_match "$m booted (running or degraded)" '^(running|degraded)$' "$state"
done
assert_eq "$s is running (not degraded)" running "$(th_exec timeout 60 systemctl -M "$s" is-system-running 2>&1 || true)"

step "Capability=net_admin, DropCapability=CAP_SYS_PTRACE: CapBnd of PID 1"
caps_s=$(status_field "$s" CapBnd)
caps_r=$(status_field "$r" CapBnd)
step "CapBnd: $s $caps_s, $r (control) $caps_r"
assert_match "CapBnd of PID 1 in $s" '^[0-9a-f]{16}$' "$caps_s"
assert_match "CapBnd of PID 1 in $r" '^[0-9a-f]{16}$' "$caps_r"
has_cap "$caps_s" $CAP_NET_ADMIN || fail "CAP_NET_ADMIN not in the bounding set of $s's PID 1 ($caps_s)"
if has_cap "$caps_s" $CAP_SYS_PTRACE; then
	fail "CAP_SYS_PTRACE still in the bounding set of $s's PID 1 ($caps_s)"
fi
if has_cap "$caps_r" $CAP_NET_ADMIN; then
	fail "control: CAP_NET_ADMIN in the bounding set of $r's PID 1 without Capability= ($caps_r)"
fi
has_cap "$caps_r" $CAP_SYS_PTRACE || fail "control: CAP_SYS_PTRACE not in the bounding set of $r's PID 1 ($caps_r): nspawn's default changed?"

step "NoNewPrivileges=yes"
assert_eq "NoNewPrivs of PID 1 in $s" 1 "$(status_field "$s" NoNewPrivs)"
assert_eq "control: NoNewPrivs of PID 1 in $r" 0 "$(status_field "$r" NoNewPrivs)"

step "SystemCallFilter=~syncfs"
# shellcheck disable=SC2016 # expands inside
out=$(th_run_in "$s" sh -c 'sync -f / 2>&1; echo "rc=$?"' 2>&1 || true)
printf 'sync -f / in %s: %s\n' "$s" "$out"
assert_match "syncfs(2) in $s fails with EPERM" 'Operation not permitted' "$out"
assert_match "... and sync exits non-zero" 'rc=[1-9]' "$out"
# shellcheck disable=SC2016 # expands inside
out=$(th_run_in "$r" sh -c 'sync -f / 2>&1; echo "rc=$?"' 2>&1 || true)
assert_match "control: sync -f / works in $r" '^rc=0' "$out"

step "ReadOnly=yes"
# shellcheck disable=SC2016 # expands inside
out=$(th_run_in "$r" sh -c 'touch /x 2>&1; echo "rc=$?"' 2>&1 || true)
printf 'touch /x in %s: %s\n' "$r" "$out"
assert_match "a write to / in $r fails with EROFS" 'Read-only file system' "$out"
assert_match "... and touch exits non-zero" 'rc=[1-9]' "$out"
assert_match "/ is mounted read-only in $r" '^ro(,|$)' "$(th_run_in "$r" findmnt -n -o OPTIONS / 2>&1 || true)"
check_in "nothing was created in upper/ of $r" sh -c "! test -e /var/lib/sdme/containers/$r/upper/x"
# shellcheck disable=SC2016 # expands inside
out=$(th_run_in "$s" sh -c 'touch /x 2>&1 && rm /x; echo "rc=$?"' 2>&1 || true)
assert_match "control: a write to / works in $s" '^rc=0' "$out"

step "stop"
require_in "systemctl stop" timeout 120 systemctl stop "sdme-$s" "sdme-$r"
for m in "$s" "$r"; do
	assert_eq "sdme-$m inactive (not failed) after stop" inactive "$(th_exec systemctl is-active "sdme-$m" 2>&1 || true)"
	th_unmounted "$m" || fail "overlay of $m still mounted after stop"
done
