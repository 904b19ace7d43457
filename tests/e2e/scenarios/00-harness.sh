# shellcheck shell=bash
# 00-harness: the test host itself works as the other scenarios assume:
# installing into a running host (tmpfiles applied, generator run on
# daemon-reload), rebooting it (same root, new boot), commands inside.

step "install into the running host"
require "th_install while booted" th_install
check_in "generator installed" test -x /usr/lib/systemd/system-generators/sdme-generator
check_in "sdme-prepare installed" test -x /usr/libexec/sdme/sdme-prepare
check_in "sdme-boot-wait installed" test -x /usr/libexec/sdme/sdme-boot-wait
check_in "tmpfiles created /var/lib/sdme/containers" test -d /var/lib/sdme/containers
check_in "/etc/sdme exists" test -d /etc/sdme
check_in_status 3 "th_exec forwards exit status 3" sh -c 'exit 3'
assert_eq "th_exec runs in the host's UTS namespace" sdme-testhost "$(th_exec cat /proc/sys/kernel/hostname)"
assert_eq "th_exec runs in the host's PID namespace" systemd "$(th_exec cat /proc/1/comm)"

step "reboot the test host"
boot_before=$(th_exec cat /proc/sys/kernel/random/boot_id)
th_exec sh -c 'echo survives > /var/tmp/e2e-reboot-marker'
on_cleanup rm -f /var/tmp/e2e-reboot-marker
require "th_reboot" th_reboot
boot_after=$(th_exec cat /proc/sys/kernel/random/boot_id)
# nspawn gives every boot of a container its own boot id.
assert_match "new boot id after reboot (was $boot_before)" "^[0-9a-f-]{36}$" "$boot_after"
[ "$boot_before" != "$boot_after" ] || fail "boot id unchanged after reboot: $boot_after"
state=$(th_exec systemctl is-system-running 2>&1 || true)
assert_match "host is up after reboot" '^(running|degraded)$' "$state"
assert_eq "file on the host's disk survives reboot" survives "$(th_exec cat /var/tmp/e2e-reboot-marker 2>&1 || true)"
step "boot ids: $boot_before -> $boot_after"
check_in "generator still installed after reboot" test -x /usr/lib/systemd/system-generators/sdme-generator
