# shellcheck shell=bash
# 86-cli-files: the sdme commands that write drop-ins or read the search
# path. `enable` writes /etc/sdme/NAME.container.d/50-enable.conf and the
# generator links the unit into machines.target.wants; `disable` removes it,
# and resets a file's own [Install] with an empty WantedBy= (refused, naming
# the line, when a later drop-in sets it again). `cat` prints the file and
# its drop-ins in the generator's order (a shadowed drop-in left out);
# `verify` gives the generator's errors with file:line. `set` puts the
# limits into 50-limits.conf and into the running container's cgroup at
# once; they hold after a restart, and `set NAME` alone clears them.
# `restart` boots a new guest; `stop --kill` ends it at once (no shutdown
# in the guest, unit inactive, overlay unmounted); `stop --all` stops every
# running container.

name=cf
unit=sdme-$name.service
file=/etc/sdme/$name.container
dropd=/etc/sdme/$name.container.d
state=/var/lib/sdme/containers/$name
wants=/run/systemd/generator/machines.target.wants/$unit
cg=/sys/fs/cgroup/machine.slice/$unit

on_cleanup sh -c "rm -rf $state $file $dropd /etc/sdme/${name}2.container /var/lib/sdme/containers/${name}2 /usr/lib/sdme/$name.container.d /etc/sdme/vbad.container /tmp/verify /run/systemd/system.control/$unit.d && systemctl daemon-reload"
on_cleanup sh -c "systemctl stop $unit sdme-${name}2.service; systemctl reset-failed $unit sdme-${name}2.service 2>/dev/null; true"

step "sdme enable / disable"
require_in "sdme create $name" sdme create "$name"
assert_eq "enable of an unknown name: one line, exit 1" \
	"1 sdme: no container nosuch (no nosuch.container on the search path)" "$(out_rc sdme enable nosuch)"
check_in "nothing written for it" test ! -e /etc/sdme/nosuch.container.d
check_in "no link before enable" test ! -e "$wants"
require_in "sdme enable $name" sdme enable "$name"
assert_match "$dropd/50-enable.conf wants machines.target" '\[Install\]
WantedBy=machines.target$' "$(th_exec cat "$dropd/50-enable.conf" 2>&1)"
assert_eq "the generator linked $unit into machines.target.wants" "../$unit" \
	"$(th_exec readlink "$wants" 2>&1 || true)"
assert_match "machines.target wants $unit" "(^|[[:space:]])$unit([[:space:]]|$)" \
	"$(th_exec systemctl show -p Wants --value machines.target 2>&1 || true)"
require_in "sdme enable $name again (idempotent)" sdme enable "$name"
require "reboot the test host" th_reboot
assert_eq "$unit active after the host's boot, nobody started it" active \
	"$(th_exec systemctl is-active "$unit" 2>&1 || true)"
require_in "sdme stop $name" timeout 120 sdme stop "$name"
require_in "sdme disable $name" sdme disable "$name"
check_in "disable removed the drop-in and its empty folder" test ! -e "$dropd"
check_in "no link after disable" test ! -e "$wants"

step "a file's own [Install]: disable resets it, enable brings it back"
require_in "$file with WantedBy=machines.target" sh -c "printf '[Container]\n\n[Install]\nWantedBy=machines.target\n' > $file && systemctl daemon-reload"
check_in "linked by the file itself" test -L "$wants"
out=$(out_rc sdme disable "$name")
assert_eq "disable names the line it resets" \
	"0 sdme: $file:4: WantedBy=machines.target: reset by $dropd/50-enable.conf" "$out"
assert_match "the drop-in resets WantedBy=" '\[Install\]
WantedBy=
RequiredBy=$' "$(th_exec cat "$dropd/50-enable.conf" 2>&1)"
check_in "no link after disable" test ! -e "$wants"
require_in "sdme enable $name" sdme enable "$name"
check_in "enable removed disable's drop-in (the file's own [Install] applies)" test ! -e "$dropd"
check_in "linked again" test -L "$wants"
require_in "a later drop-in sets WantedBy= too" sh -c "mkdir -p $dropd && printf '[Install]\nWantedBy=machines.target\n' > $dropd/90-late.conf"
out=$(out_rc sdme disable "$name")
assert_match "disable refused, naming the later drop-in's line" \
	"^1 sdme: $dropd/90-late.conf:2: WantedBy=machines.target: read after $dropd/50-enable.conf, which cannot reset it" "$out"
check_in "nothing written" test ! -e "$dropd/50-enable.conf"
require_in "back to a plain file" sh -c "rm $dropd/90-late.conf && printf '[Container]\n' > $file && sdme disable $name"
check_in "no link" test ! -e "$wants"

step "sdme cat: the file and its drop-ins in the generator's order"
require_in "drop-ins in /usr/lib/sdme and /etc/sdme" sh -c "mkdir -p /usr/lib/sdme/$name.container.d $dropd &&
	printf '[Container]\nHostname=vendor\n' > /usr/lib/sdme/$name.container.d/10-vendor.conf &&
	printf '[Container]\nHostname=shadowed\n' > /usr/lib/sdme/$name.container.d/20-admin.conf &&
	printf '[Container]\nHostname=admin\n' > $dropd/20-admin.conf"
want="# $file
[Container]

# /usr/lib/sdme/$name.container.d/10-vendor.conf
[Container]
Hostname=vendor

# $dropd/20-admin.conf
[Container]
Hostname=admin"
assert_eq "sdme cat $name" "$want" "$(th_exec sdme cat "$name" 2>&1)"
assert_eq "sdme cat of an unknown name" \
	"1 sdme: no container nosuch (no nosuch.container on the search path)" "$(out_rc sdme cat nosuch)"

step "sdme verify"
check_in_status 0 "sdme verify: every file on the search path is good" sdme verify
check_in_status 0 "sdme verify $file" sdme verify "$file"
require_in "a bad file and a bad drop-in" sh -c "printf '[Container]\nBnd=/x\n' > /etc/sdme/vbad.container &&
	printf '[Container]\nCapability=cap_foo\n' > $dropd/30-bad.conf"
out=$(out_rc sdme verify)
printf '%s\n' "$out"
assert_match "sdme verify exits 1" '^1 ' "$out"
assert_match "names the bad file's line" "/etc/sdme/vbad.container:2: unknown key 'Bnd'" "$out"
assert_match "names the bad drop-in's line" "$dropd/30-bad.conf:2: Capability=cap_foo: unknown capability" "$out"
gen=$(th_exec /usr/lib/systemd/system-generators/sdme-generator --dry-run 2>&1 >/dev/null || true)
assert_match "the generator reports the same line" "$dropd/30-bad.conf:2: Capability=cap_foo" "$gen"
out=$(out_rc sdme verify "$file")
assert_match "sdme verify $file: its drop-in's error only" "^1 $dropd/30-bad.conf:2: Capability=cap_foo" "$out"
assert_eq "... and not vbad's" 0 "$(printf '%s\n' "$out" | grep -c vbad || true)"
require_in "a draft off the search path" sh -c "mkdir -p /tmp/verify && printf '[Container]\nBootTimeout=soon\n' > /tmp/verify/d.container"
assert_match "sdme verify of a draft off the search path" "^1 /tmp/verify/d.container:2: " \
	"$(out_rc sdme verify /tmp/verify/d.container)"
require_in "remove the bad files" rm /etc/sdme/vbad.container "$dropd/30-bad.conf" \
	/usr/lib/sdme/$name.container.d/10-vendor.conf /usr/lib/sdme/$name.container.d/20-admin.conf "$dropd/20-admin.conf"

step "sdme set: limits at once, after a restart, and cleared"
assert_match "a bad size: one line naming it" "^1 sdme: --memory: '300Q' is not a size" \
	"$(out_rc sdme set "$name" --memory 300Q --cpus 1)"
check_in "nothing written" test ! -e "$dropd/50-limits.conf"
require_in "sdme start $name" timeout 180 sdme start "$name"
assert_eq "$unit runs in machine.slice" "${cg#/sys/fs/cgroup}" \
	"$(th_exec systemctl show -P ControlGroup "$unit" 2>&1 || true)"
controllers=$(th_exec cat /sys/fs/cgroup/cgroup.controllers 2>&1 || true)
if ! grep -qw memory <<<"$controllers"; then
	# As in 50-keys: the machine the tests run on keeps its controllers on
	# cgroup v1, so the test host's cgroup v2 tree has none and the kernel's
	# files do not exist; systemd's live values of the unit are checked.
	step "NOTE: no memory controller in the test host's cgroup tree ('$controllers'); only systemd's live values are checked"
fi
# limit WHEN PROPERTY WANT CONTROLLER FILE FILE-WANT: the unit's live
# value, and the cgroup file when its controller is there.
limit() {
	assert_eq "$2 of $unit $1" "$3" "$(th_exec systemctl show -P "$2" "$unit" 2>&1 || true)"
	if grep -qw "$4" <<<"$controllers"; then
		assert_eq "$5 $1" "$6" "$(th_exec cat "$cg/$5" 2>&1 || true)"
	fi
}
limit before MemoryMax infinity memory memory.max max
require_in "sdme set $name --memory 300M --cpus 0.5 --tasks 200" sdme set "$name" --memory 300M --cpus 0.5 --tasks 200
limit "at once" MemoryMax 314572800 memory memory.max 314572800
limit "at once" CPUQuotaPerSecUSec 500ms cpu cpu.max "50000 100000"
limit "at once" TasksMax 200 pids pids.max 200
assert_eq "$unit not restarted" active "$(th_exec systemctl is-active "$unit" 2>&1 || true)"
assert_match "$dropd/50-limits.conf" '\[Service\]
MemoryMax=300M
CPUQuota=50%
TasksMax=200$' "$(th_exec cat "$dropd/50-limits.conf" 2>&1)"
check_in "no runtime control drop-ins left to shadow the file" test ! -e "/run/systemd/system.control/$unit.d/50-MemoryMax.conf"
check_in "no temporary file left" sh -c "! ls -A $dropd | grep -q '^\.'"
require_in "systemctl restart $unit" timeout 180 systemctl restart "$unit"
limit "after a restart" MemoryMax 314572800 memory memory.max 314572800
limit "after a restart" TasksMax 200 pids pids.max 200
require_in "sdme set $name (clears)" sdme set "$name"
check_in "the drop-in is gone" test ! -e "$dropd/50-limits.conf"
limit "cleared at once" MemoryMax infinity memory memory.max max
limit "cleared at once" CPUQuotaPerSecUSec infinity cpu cpu.max "max 100000"
limit "back to the generator's" TasksMax 16384 pids pids.max 16384

step "sdme set while stopped applies at the next start"
require_in "sdme stop $name" timeout 120 sdme stop "$name"
require_in "sdme set $name --memory 1G" sdme set "$name" --memory 1G
# The restart's check of a clean guest halt below reads the guest's console
# in the unit's journal: LogConsole=yes from this start on.
require_in "LogConsole=yes" sh -c "printf '[Container]\nLogConsole=yes\n' > $dropd/40-console.conf && systemctl daemon-reload"
require_in "sdme start $name" timeout 180 sdme start "$name"
limit "after the start" MemoryMax 1073741824 memory memory.max 1073741824
require_in "sdme set $name (clears)" sdme set "$name"
limit cleared MemoryMax infinity memory memory.max max

step "sdme restart; sdme stop --kill; sdme stop --all"
leader=$(th_exec machinectl show -p Leader --value "$name" 2>&1 || true)
# journal_since CURSOR: the unit's log after CURSOR.
journal_since() { th_exec journalctl --no-pager -o cat -u "$unit" --after-cursor="$1" 2>&1; }
cursor() {
	local c
	c=$(th_exec journalctl -n 0 --show-cursor 2>&1 | sed -n 's/^-- cursor: //p')
	[ -n "$c" ] || fail "no journal cursor"
	printf '%s' "$c"
}
cur=$(cursor)
require_in "sdme restart $name" timeout 180 sdme restart "$name"
assert_eq "$unit active after restart" active "$(th_exec systemctl is-active "$unit" 2>&1 || true)"
new_leader=$(th_exec machinectl show -p Leader --value "$name" 2>&1 || true)
if [ -z "$new_leader" ] || [ "$new_leader" = "$leader" ]; then
	fail "the machine's leader did not change over the restart ($leader, $new_leader)"
fi
assert_match "the restart shut the guest down cleanly" '^[1-9]' \
	"$(journal_since "$cur" | grep -c 'Halting system' || true)"
cur=$(cursor)
t0=$(date +%s%N)
require_in "sdme stop --kill $name" timeout 120 sdme stop --kill "$name"
echo "figure: sdme stop --kill took $((($(date +%s%N) - t0) / 1000000)) ms"
assert_eq "$unit inactive (not failed) after stop --kill" inactive "$(th_exec systemctl is-active "$unit" 2>&1 || true)"
check_in "$state/merged unmounted after stop --kill" sh -c "! findmnt -n $state/merged"
assert_eq "no guest shutdown in the log of stop --kill" 0 \
	"$(journal_since "$cur" | grep -c 'Halting system' || true)"
require_in "a second container" sdme create "${name}2"
require_in "start both" timeout 180 sdme start "$name" "${name}2"
assert_match "stop with names and --all is refused" '^2 ' "$(out_rc sdme stop -a "$name")"
require_in "sdme stop --all" timeout 180 sdme stop --all
assert_eq "both stopped" "inactive inactive" \
	"$(th_exec systemctl is-active "$unit" "sdme-${name}2.service" 2>&1 | paste -sd' ' || true)"
check_in_status 0 "sdme stop --all with nothing running" sdme stop --all
require_in "sdme rm ${name}2" sdme rm "${name}2"
require_in "sdme rm $name" sdme rm "$name"
check_in "no $dropd" test ! -e "$dropd"
