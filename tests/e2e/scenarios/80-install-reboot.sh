# shellcheck shell=bash
# shellcheck disable=SC2016 # snippets expand inside the test host
# 80-install-reboot: [Install] WantedBy=machines.target makes the generator
# link the container into machines.target.wants; after the test host itself
# reboots, that container is running without anyone starting it, while a
# container without [Install] (running before the reboot, stopped cleanly
# by the host's shutdown) is not.

en=en # enabled
ne=ne # not enabled

on_cleanup sh -c "rm -rf /var/lib/sdme/containers/$en /var/lib/sdme/containers/$ne /etc/sdme/$en.container /etc/sdme/$ne.container && systemctl daemon-reload"
on_cleanup sh -c "systemctl stop sdme-$en sdme-$ne; systemctl reset-failed sdme-$en sdme-$ne 'sdme-prepare@*' 2>/dev/null; true"

step "write $en.container (WantedBy=machines.target) and $ne.container (no [Install])"
th_exec mkdir -p /etc/sdme
printf '[Container]\n\n[Install]\nWantedBy=machines.target\n' | th_exec sh -c "cat > /etc/sdme/$en.container"
# LogConsole=yes: the check of its clean halt below reads the guest's
# console in the unit's journal of the previous boot.
printf '[Container]\nLogConsole=yes\n' | th_exec sh -c "cat > /etc/sdme/$ne.container"
require_in "daemon-reload" systemctl daemon-reload
check_in "machines.target is enabled in the test host" systemctl is-enabled -q machines.target
link=$(th_exec sh -c "readlink /run/systemd/generator/machines.target.wants/sdme-$en.service" 2>&1 || true)
assert_eq "generator linked sdme-$en into machines.target.wants" "../sdme-$en.service" "$link"
check_in "no machines.target.wants link for sdme-$ne" \
	sh -c "! test -e /run/systemd/generator/machines.target.wants/sdme-$ne.service"
assert_match "machines.target wants sdme-$en" "(^|[[:space:]])sdme-$en\.service([[:space:]]|$)" \
	"$(th_exec systemctl show -p Wants --value machines.target 2>&1 || true)"
assert_eq "daemon-reload did not start sdme-$en" inactive "$(th_exec systemctl is-active "sdme-$en" 2>&1 || true)"

step "start $ne before the reboot and leave a file in it"
require_in "systemctl start sdme-$ne" timeout 180 systemctl start "sdme-$ne"
require_in "write a file inside $ne" timeout 60 systemd-run -q --collect -M "$ne" --wait --pipe \
	sh -c 'echo before-reboot > /root/marker && sync'

step "reboot the test host"
boot_before=$(th_exec cat /proc/sys/kernel/random/boot_id)
require "th_reboot" th_reboot
boot_after=$(th_exec cat /proc/sys/kernel/random/boot_id)
[ "$boot_before" != "$boot_after" ] || fail "boot id unchanged after th_reboot ($boot_after)"

step "after the reboot"
# th_boot waited for is-system-running; sdme-$en is Type=notify and
# Before=machines.target, so the boot finished only after it was up.
state=$(th_exec systemctl is-active "sdme-$en" 2>&1 || true)
if [ "$state" != active ]; then
	th_exec journalctl -b --no-pager -o short-precise -u "sdme-$en" -u "sdme-prepare@$en" | tail -n 30 || true
fi
assert_eq "sdme-$en active after the host's boot, nobody started it" active "$state"
check_in "no failed sdme units in the test host" \
	sh -c '[ -z "$(systemctl list-units --failed --no-legend --plain "sdme*" "var-lib-sdme*" 2>&1)" ]'
assert_match "systemctl -M $en is-system-running" '^(running|degraded)$' \
	"$(th_exec timeout 60 systemctl -M "$en" is-system-running --wait 2>&1 || true)"
# A host clone must not see the host's .container files: its own generator
# would start sdme-$en (WantedBy=machines.target) again inside it.
assert_eq "no sdme units inside the clone $en" "" \
	"$(th_exec systemctl -M "$en" list-units --all --plain --no-legend 'sdme*' 2>&1 || true)"
machines=$(th_exec machinectl list --no-legend --no-pager 2>&1 || true)
echo "$machines"
assert_eq "machinectl list shows $en only" "$en" "$(echo "$machines" | awk 'NF { print $1 }' | paste -sd' ')"
assert_eq "sdme-$ne (no [Install]) not running after the reboot" inactive \
	"$(th_exec systemctl is-active "sdme-$ne" 2>&1 || true)"
check_in "overlay of $ne not mounted" sh -c "! findmnt -n /var/lib/sdme/containers/$ne/merged"
check_in "upper/ of $ne kept across the host's reboot" test -f "/var/lib/sdme/containers/$ne/upper/root/marker"
# The host's shutdown stopped $ne like `systemctl stop`: an orderly halt.
prev=$(th_exec journalctl -b -1 --no-pager -o cat -u "sdme-$ne" 2>&1 || true)
assert_match "previous boot: $ne halted cleanly at the host's shutdown" 'Halting system' "$prev"
assert_match "previous boot: sdme-$ne stopped" "Stopped sdme-$ne\.service" "$prev"

step "stop $en"
require_in "systemctl stop sdme-$en" timeout 120 systemctl stop "sdme-$en"
assert_eq "sdme-$en inactive after stop" inactive "$(th_exec systemctl is-active "sdme-$en" 2>&1 || true)"
