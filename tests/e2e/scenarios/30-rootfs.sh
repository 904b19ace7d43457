# shellcheck shell=bash
# 30-rootfs: Rootfs=NAME boots /var/lib/sdme/rootfs/NAME (a debootstrapped
# tree placed by th_put_rootfs) as the lower layer: the container sees the
# rootfs, not the test host's /; `systemctl -M` and `journalctl -M` work;
# writes land in upper/ and the rootfs is left byte-for-byte untouched.
# A second container boots a rootfs of the other Debian suite (a systemd
# 252 guest on a 257 host and the other way round).

name=rfs
other=rfs-x
case $TH_SUITE in
	bookworm) other_suite=trixie ;;
	*) other_suite=bookworm ;;
esac

on_cleanup sh -c "rm -rf /var/lib/sdme/rootfs/$name /var/lib/sdme/rootfs/$other /var/lib/sdme/containers/$name /var/lib/sdme/containers/$other /etc/sdme/$name.container /etc/sdme/$other.container /etc/e2e-30-host-only && systemctl daemon-reload"
on_cleanup sh -c "systemctl stop sdme-$name sdme-$other; systemctl reset-failed 'sdme-*' 'sdme-prepare@*' 2>/dev/null; true"

# A fingerprint of a whole tree: path, type, mode, owner, size, mtime and
# symlink target of every entry, plus the content of every regular file.
tree_sum() {
	th_sh "cd '$1' && { find . -printf '%p %y %m %u:%g %s %T@ %l\n' | LC_ALL=C sort; find . -type f -print0 | LC_ALL=C sort -z | xargs -0 cat; } | sha256sum | cut -d' ' -f1"
}

step "th_put_rootfs $name ($TH_SUITE) and $other ($other_suite)"
require "th_put_rootfs $name" th_put_rootfs "$name"
require "th_put_rootfs $other $other_suite" th_put_rootfs "$other" "$other_suite"
# Markers that tell the lower layers apart: one only in the rootfs, one
# only on the test host's /.
th_sh "echo rootfs-$name > /var/lib/sdme/rootfs/$name/etc/e2e-30-rootfs-marker"
th_sh "echo host > /etc/e2e-30-host-only"
sum_before=$(tree_sum "/var/lib/sdme/rootfs/$name")
sum_other_before=$(tree_sum "/var/lib/sdme/rootfs/$other")
step "rootfs fingerprints: $sum_before $sum_other_before"
empty_sum=$(printf '' | sha256sum | cut -d' ' -f1)
for s in "$sum_before" "$sum_other_before"; do
	assert_match "tree fingerprint computed" '^[0-9a-f]{64}$' "$s"
	[ "$s" != "$empty_sum" ] || fail "tree fingerprint of an empty listing"
done

th_exec mkdir -p /etc/sdme
printf '[Container]\nRootfs=%s\n' "$name" | th_exec sh -c "cat > /etc/sdme/$name.container"
printf '[Container]\nRootfs=%s\n' "$other" | th_exec sh -c "cat > /etc/sdme/$other.container"
require_in "daemon-reload" systemctl daemon-reload
unit_prepare=$(th_prepare_args "$name")
check_in "sdme-prepare@$name is the static template's instance" sh -c \
	"systemctl show -p FragmentPath --value sdme-prepare@$name.service | grep -qE '^(/usr)?/lib/systemd/system/sdme-prepare@\.service$'"
assert_match "prepare step gets --lower=/var/lib/sdme/rootfs/$name" \
	"--lower=/var/lib/sdme/rootfs/$name( |$)" "$unit_prepare"
[[ $unit_prepare != *--host-clone* ]] || fail "prepare step of a Rootfs= container has --host-clone"

step "systemctl start sdme-$name sdme-$other"
t0=$(date +%s%N)
require_in "systemctl start sdme-$name" timeout 180 systemctl start "sdme-$name"
step "$name started in $((($(date +%s%N) - t0) / 1000000)) ms"
t0=$(date +%s%N)
require_in "systemctl start sdme-$other" timeout 180 systemctl start "sdme-$other"
step "$other started in $((($(date +%s%N) - t0) / 1000000)) ms"

for m in "$name" "$other"; do
	assert_eq "sdme-$m is active" active "$(th_exec systemctl is-active "sdme-$m" 2>&1 || true)"
	state=$(th_exec timeout 60 systemctl -M "$m" is-system-running 2>&1 || true)
	if [ "$state" != running ]; then
		th_exec systemctl -M "$m" --failed --no-pager --no-legend || true
	fi
	assert_eq "systemctl -M $m is-system-running" running "$state"
	assert_eq "systemctl -M $m is-active dbus.service" active \
		"$(th_exec systemctl -M "$m" is-active dbus.service 2>&1 || true)"
	assert_eq "hostname inside $m" "$m" "$(th_run_in "$m" cat /proc/sys/kernel/hostname 2>&1 || true)"
	opts=$(th_exec findmnt -n -o FSTYPE,OPTIONS "/var/lib/sdme/containers/$m/merged" 2>&1 || true)
	assert_match "overlay of $m has lowerdir=/var/lib/sdme/rootfs/$m" \
		"^overlay .*lowerdir=/var/lib/sdme/rootfs/$m(,|$)" "$opts"
	# The guest's journal, read from the host through machined.
	check_in "journalctl -M $m shows the guest's boot" \
		sh -c "journalctl -M '$m' -b --no-pager -q | grep -q 'Startup finished'"
done

step "the guests run their rootfs, not the test host's /"
assert_eq "the rootfs marker is visible inside $name" "rootfs-$name" \
	"$(th_run_in "$name" cat /etc/e2e-30-rootfs-marker 2>&1 || true)"
for m in "$name" "$other"; do
	check_in "the test host's /etc/e2e-30-host-only is not visible inside $m" \
		timeout 60 systemd-run -q --collect -M "$m" --wait --pipe sh -c '! test -e /etc/e2e-30-host-only'
done
codename=$(th_run_in "$other" sed -n 's/^VERSION_CODENAME=//p' /etc/os-release 2>&1 || true)
assert_eq "$other runs Debian $other_suite" "$other_suite" "$codename"
codename=$(th_run_in "$name" sed -n 's/^VERSION_CODENAME=//p' /etc/os-release 2>&1 || true)
assert_eq "$name runs Debian $TH_SUITE" "$TH_SUITE" "$codename"

step "systemctl -M $name"
units=$(th_exec systemctl -M "$name" list-units --no-legend --plain --type=target 2>&1 || true)
assert_match "systemctl -M $name list-units shows multi-user.target" '(^|[[:space:]])multi-user\.target ' "$units"
check_in "systemctl -M $name start a transient unit" \
	systemd-run -q --collect -M "$name" --wait -u e2e-30-transient /bin/true
check_in "busctl -M $name lists org.freedesktop.systemd1" \
	sh -c "busctl -M '$name' list --no-pager | grep -q '^org.freedesktop.systemd1 '"

step "copy-on-write into upper/"
state=/var/lib/sdme/containers/$name
check_in "write a new file and change a rootfs file inside $name" \
	timeout 60 systemd-run -q --collect -M "$name" --wait --pipe \
	sh -c 'echo inside > /root/e2e-30-new && echo changed >> /etc/e2e-30-rootfs-marker && rm /etc/issue.net'
assert_eq "new file in upper/" inside "$(th_exec cat "$state/upper/root/e2e-30-new" 2>&1 || true)"
assert_eq "changed file copied up into upper/" "$(printf 'rootfs-%s\nchanged' "$name")" \
	"$(th_exec cat "$state/upper/etc/e2e-30-rootfs-marker" 2>&1 || true)"
assert_eq "deleted file is a whiteout (char 0:0) in upper/" "c 0:0" \
	"$(th_exec stat -c '%F %t:%T' "$state/upper/etc/issue.net" 2>&1 | sed 's/^character special file/c/' || true)"
assert_eq "rootfs's file unchanged" "rootfs-$name" \
	"$(th_exec cat "/var/lib/sdme/rootfs/$name/etc/e2e-30-rootfs-marker" 2>&1 || true)"
check_in "rootfs's /etc/issue.net still there" test -f "/var/lib/sdme/rootfs/$name/etc/issue.net"
check_in "no /root/e2e-30-new in the rootfs" sh -c "! test -e /var/lib/sdme/rootfs/$name/root/e2e-30-new"
check_in "no /root/e2e-30-new on the test host" sh -c '! test -e /root/e2e-30-new'

step "stop"
require_in "systemctl stop sdme-$name sdme-$other" timeout 120 systemctl stop "sdme-$name" "sdme-$other"
for m in "$name" "$other"; do
	assert_eq "sdme-$m inactive (not failed) after stop" inactive \
		"$(th_exec systemctl is-active "sdme-$m" 2>&1 || true)"
	th_unmounted "$m" || fail "overlay of $m still mounted after stop"
done
check_in "upper/ survives stop" test -f "$state/upper/root/e2e-30-new"
# The whole tree, after a boot, writes, deletions and a shutdown of each
# guest: not one byte, mode or timestamp changed.
assert_eq "rootfs $name untouched (tree fingerprint)" "$sum_before" "$(tree_sum "/var/lib/sdme/rootfs/$name")"
assert_eq "rootfs $other untouched (tree fingerprint)" "$sum_other_before" "$(tree_sum "/var/lib/sdme/rootfs/$other")"

step "start again: what the container wrote is still there"
require_in "systemctl start sdme-$name (again)" timeout 180 systemctl start "sdme-$name"
assert_eq "file written before the restart" inside "$(th_run_in "$name" cat /root/e2e-30-new 2>&1 || true)"
check_in "file deleted before the restart stays deleted" \
	timeout 60 systemd-run -q --collect -M "$name" --wait --pipe sh -c '! test -e /etc/issue.net'
require_in "systemctl stop sdme-$name" timeout 120 systemctl stop "sdme-$name"
th_unmounted "$name" || fail "overlay of $name still mounted after the second stop"
