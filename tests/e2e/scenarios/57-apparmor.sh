# shellcheck shell=bash
# 57-apparmor: AppArmorProfile= on a kernel without AppArmor (the test
# kernel has none): systemd ignores the directive without a word, so the
# container must start and run, the service must carry the directive
# (systemctl show), and sdme-prepare must leave exactly one warning line in
# the container's journal (journalctl -u sdme-NAME, sent with
# OBJECT_SYSTEMD_UNIT= from sdme-prepare@NAME.service).
#
# Container: a57 (AppArmorProfile=sdme-default).

a=a57
profile=sdme-default
warning="AppArmorProfile=$profile ignored: the kernel does not run AppArmor"

on_cleanup sh -c "rm -rf /var/lib/sdme/containers/$a /etc/sdme/$a.container && systemctl daemon-reload"
on_cleanup sh -c "systemctl stop sdme-$a; systemctl reset-failed 'sdme-*' 'sdme-prepare@*' 2>/dev/null; true"

enabled=$(th_exec cat /sys/module/apparmor/parameters/enabled 2>/dev/null || true)
step "AppArmor in the test kernel: '${enabled:-absent}'"
[ "$enabled" != Y ] || fail "the test kernel runs AppArmor: this scenario checks the kernel without it"

th_exec mkdir -p /etc/sdme
printf '[Container]\nAppArmorProfile=%s\n' "$profile" | th_exec sh -c "cat > /etc/sdme/$a.container"
require_in "daemon-reload" systemctl daemon-reload
args=$(th_prepare_args "$a")
step "sdme-prepare@$a arguments: $args"
assert_match "sdme-prepare@$a gets --apparmor-profile=$profile" "(^| )--apparmor-profile=$profile( |\$)" "$args"
assert_eq "systemctl show -p AppArmorProfile sdme-$a" "AppArmorProfile=$profile" \
	"$(th_exec systemctl show -p AppArmorProfile "sdme-$a" 2>&1 || true)"

since=$(th_exec date +%s)
require_in "systemctl start sdme-$a" timeout 180 systemctl start "sdme-$a"
state=$(th_exec timeout 60 systemctl -M "$a" is-system-running 2>&1 || true)
step "$a: system state '$state'"
assert_match "$a booted (running or degraded)" '^(running|degraded)$' "$state"
assert_eq "a command runs in $a" ok "$(th_run_in "$a" echo ok 2>&1 | tr -d '\r' || true)"
assert_eq "systemctl show -p AppArmorProfile sdme-$a (running)" "AppArmorProfile=$profile" \
	"$(th_exec systemctl show -p AppArmorProfile "sdme-$a" 2>&1 || true)"

th_exec journalctl --sync 2>/dev/null || true
log=$(th_exec journalctl -u "sdme-$a" --since "@$since" --no-pager -o cat 2>&1 || true)
printf 'journalctl -u sdme-%s:\n%s\n' "$a" "$log"
n=$(printf '%s\n' "$log" | grep -cF "$warning" || true)
assert_eq "one '$warning' line in journalctl -u sdme-$a" 1 "$n"
assert_match "... naming the machine" "^$a: warning: AppArmorProfile=$profile ignored" \
	"$(printf '%s\n' "$log" | grep -F "$warning" || true)"

step "stop"
require_in "systemctl stop" timeout 120 systemctl stop "sdme-$a"
assert_eq "sdme-$a inactive (not failed) after stop" inactive "$(th_exec systemctl is-active "sdme-$a" 2>&1 || true)"
th_unmounted "$a" || fail "overlay of $a still mounted after stop"
