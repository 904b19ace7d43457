# shellcheck shell=bash
# 95-reload: editing a .container file and `systemctl daemon-reload`
# changes the next start (stop/start and `systemctl restart` both apply
# it, upper-layer files included) and leaves a running container alone;
# removing the file of a stopped container and reloading removes its units
# (its upper/ stays).

name=x
unit=sdme-$name
state=/var/lib/sdme/containers/$name
file=/etc/sdme/$name.container

on_cleanup sh -c "rm -rf $state $file && systemctl daemon-reload"
on_cleanup sh -c "systemctl stop $unit; systemctl reset-failed $unit 'sdme-prepare@$name' 2>/dev/null; true"

write() { printf '[Container]\nHostname=%s\n' "$1" | th_exec sh -c "cat > $file"; }
hostname_in() {
	th_exec timeout 60 systemd-run -q --collect -M "$name" --wait --pipe \
		cat /proc/sys/kernel/hostname /etc/hostname 2>&1 | tr -d '\r' | paste -sd' ' || true
}

step "Hostname=one"
th_exec mkdir -p /etc/sdme
write one
require_in "daemon-reload" systemctl daemon-reload
require_in "systemctl start $unit" timeout 180 systemctl start "$unit"
assert_eq "hostname and /etc/hostname inside" "one one" "$(hostname_in)"

step "edit to Hostname=two while running"
sleep 1 # a new mtime for NeedDaemonReload=
write two
assert_eq "NeedDaemonReload=yes after the edit (SourcePath= is the .container)" yes \
	"$(th_exec systemctl show -p NeedDaemonReload --value "$unit" 2>&1 || true)"
require_in "daemon-reload" systemctl daemon-reload
assert_eq "NeedDaemonReload=no after daemon-reload" no \
	"$(th_exec systemctl show -p NeedDaemonReload --value "$unit" 2>&1 || true)"
check_in "the new unit has --hostname=two" sh -c "systemctl cat $unit | grep -q -- '--hostname=two'"
assert_eq "$unit still active after daemon-reload" active "$(th_exec systemctl is-active "$unit" 2>&1 || true)"
assert_eq "the running container keeps its hostname" "one one" "$(hostname_in)"

step "stop, start: Hostname=two applies"
require_in "systemctl stop $unit" timeout 120 systemctl stop "$unit"
require_in "systemctl start $unit" timeout 180 systemctl start "$unit"
assert_eq "hostname and /etc/hostname inside after stop/start" "two two" "$(hostname_in)"
assert_eq "upper/etc/hostname rewritten" two "$(th_exec cat "$state/upper/etc/hostname" 2>&1 || true)"

step "edit to Hostname=three, daemon-reload, systemctl restart"
write three
require_in "daemon-reload" systemctl daemon-reload
old_pid=$(th_exec systemctl show -p MainPID --value "$unit")
require_in "systemctl restart $unit" timeout 180 systemctl restart "$unit"
[ "$(th_exec systemctl show -p MainPID --value "$unit")" != "$old_pid" ] ||
	fail "restart kept nspawn $old_pid"
assert_eq "$unit active after restart" active "$(th_exec systemctl is-active "$unit" 2>&1 || true)"
# /etc/hostname comes from the prepare step: restart re-ran it (the
# overlay mount is PartOf= the service).
assert_eq "hostname and /etc/hostname inside after restart" "three three" "$(hostname_in)"

step "remove the file of the stopped container"
require_in "systemctl stop $unit" timeout 120 systemctl stop "$unit"
for _ in $(seq 100); do
	th_exec findmnt -n "$state/merged" >/dev/null 2>&1 || break
	sleep 0.1
done
th_exec rm -f "$file"
require_in "daemon-reload" systemctl daemon-reload
check_in "systemctl cat $unit fails" sh -c "! systemctl cat $unit >/dev/null 2>&1"
assert_eq "$unit LoadState" not-found "$(th_exec systemctl show -p LoadState --value "$unit" 2>&1 || true)"
# sdme-prepare@NAME is an instance of a static template: it still loads,
# but has nothing to prepare.
check_in "sdme-prepare@$name refuses to run" sh -c "! systemctl start sdme-prepare@$name"
mount_unit=$(th_exec systemd-escape --path --suffix=mount "$state/merged")
assert_eq "$mount_unit has no unit file" "" \
	"$(th_exec systemctl show -p FragmentPath --value "$mount_unit" 2>&1 || true)"
assert_eq "no generated files for $name left" "" \
	"$(th_sh "grep -rl 'sdme-generator from $file' /run/systemd/generator* 2>/dev/null" || true)"
check_in_status 5 "systemctl start $unit: unit not found (exit 5)" systemctl start "$unit"
check_in "upper/ is kept after the file is removed" test -f "$state/upper/etc/hostname"
