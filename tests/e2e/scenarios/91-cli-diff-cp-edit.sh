# shellcheck shell=bash
# 91-cli-diff-cp-edit: `sdme diff` lists what a running container added,
# changed and deleted (read from upper/, nothing mounted); `sdme cp` copies
# both ways on a running container (through its root) and on a stopped one
# (through its layers: written into upper/, read with whiteouts honoured),
# keeping owners, modes and xattrs, and a symlink in the container pointing
# to /etc/shadow is resolved inside the container, never to the host's;
# `sdme edit` with EDITOR set to a script: a valid drop-in lands and
# systemd is reloaded, an invalid one is refused with the model's message
# and the old file kept, an unchanged one changes nothing, --full edits the
# file itself.

name=fx
unit=sdme-$name.service
file=/etc/sdme/$name.container
dropd=/etc/sdme/$name.container.d
state=/var/lib/sdme/containers/$name

on_cleanup sh -c "rm -rf $state $file $dropd /etc/sdme/fu.container /etc/sdme/fs.container /var/lib/sdme/containers/fs /etc/sdme/fv.container /usr/lib/sdme/fv.container /var/lib/sdme/containers/fu /root/cpsrc /root/out1 /root/out2 /root/got1 /root/got2 /root/ed-valid /root/ed-bad /root/ed-full && systemctl daemon-reload"
on_cleanup sh -c "systemctl stop $unit; systemctl reset-failed $unit 2>/dev/null; true"

# out_rc CMD...: "RC OUTPUT" of a command inside the host.
out_rc() {
	local out rc=0
	out=$(th_exec "$@" 2>&1) || rc=$?
	printf '%s %s' "$rc" "$out"
}

# has_line DESC LINE TEXT: TEXT has LINE as one of its lines.
has_line() {
	assert_match "$1" "(^|"$'\n'")$2(\$|"$'\n'")" "$3"
}

step "sdme diff of a running container"
require_in "sdme create $name" sdme create "$name"
require_in "sdme start $name" timeout 180 sdme start "$name"
require_in "add, change and delete files in $name" sdme exec "$name" -- sh -c \
	'echo new > /root/added && echo changed >> /etc/issue && rm /etc/debian_version && echo inside > /etc/shadow && ln -s /etc /srv/etclink && ln -s /etc/shadow /srv/evil'
d=$(th_exec sdme diff "$name" 2>&1)
has_line "A /root/added" 'A /root/added' "$d"
has_line "C /etc/issue" 'C /etc/issue' "$d"
has_line "D /etc/debian_version" 'D /etc/debian_version' "$d"
has_line "A /srv/evil" 'A /srv/evil' "$d"
assert_eq "sorted" "$d" "$(printf '%s\n' "$d" | LC_ALL=C sort -k2)"
check_in "the host's files are untouched" test -e /etc/debian_version
assert_match "--json" '"change": "D", "path": "/etc/debian_version"' "$(th_exec sdme diff --json "$name" 2>&1)"
assert_match "diff of an unknown container" "^1 sdme: no container nosuch" "$(out_rc sdme diff nosuch)"

step "sdme cp on the running container"
require_in "a tree on the host with owner, mode and xattr" sh -c \
	'mkdir -p /root/cpsrc && echo data > /root/cpsrc/f && chown 1234:5678 /root/cpsrc/f && chmod 4750 /root/cpsrc/f && setfattr -n user.k -v v1 /root/cpsrc/f'
require_in "sdme cp host -> running" sdme cp /root/cpsrc "$name:/srv/"
assert_eq "owner and mode in the container" "1234:5678 4750" \
	"$(th_exec sdme exec "$name" -- stat -c '%u:%g %a' /srv/cpsrc/f 2>&1)"
assert_eq "xattr in the container" v1 \
	"$(th_exec sdme exec "$name" -- getfattr --absolute-names --only-values -n user.k /srv/cpsrc/f 2>&1)"
require_in "sdme cp running -> host" sdme cp "$name:/srv/cpsrc" /root/out1
# shellcheck disable=SC2016 # expanded by the test host's shell
assert_eq "owner, mode, xattr back on the host" "1234:5678 4750 v1" \
	"$(th_sh 'echo $(stat -c "%u:%g %a" /root/out1/f) $(getfattr --absolute-names --only-values -n user.k /root/out1/f)' 2>&1)"
shadow_sum=$(th_exec sha256sum /etc/shadow)
require_in "read through a link to /etc: the container's /etc/shadow" sdme cp "$name:/srv/etclink/shadow" /root/got1
assert_eq "the container's shadow, not the host's" inside "$(th_exec cat /root/got1 2>&1)"
require_in "write through the link to /etc/shadow" sdme cp /root/cpsrc/f "$name:/srv/evil"
assert_eq "the host's /etc/shadow unchanged" "$shadow_sum" "$(th_exec sha256sum /etc/shadow)"
assert_eq "the container's /etc/shadow written" data \
	"$(th_exec sdme exec "$name" -- cat /etc/shadow 2>&1)"
assert_match "neither side a container" "^1 sdme: neither" "$(out_rc sdme cp /root/cpsrc /root/x)"

assert_match "both sides in one container" "^1 sdme: .* are in one container" \
	"$(out_rc sdme cp "$name:/srv/cpsrc" "$name:/srv/x")"
require_in "sdme create fu --userns" sdme create fu --userns
assert_match "a user namespace container never started: refused (no upper yet)" "^1 sdme: fu has no /var/lib/sdme/containers/fu/upper yet" \
	"$(out_rc sdme cp /root/cpsrc fu:/srv/)"
check_in "nothing written for it" test ! -e /var/lib/sdme/containers/fu
require_in "sdme rm fu" sdme rm fu
require_in "sdme create fs (never started)" sdme create fs
assert_eq "diff of a container never started: nothing, exit 0" "0 " "$(out_rc sdme diff fs)"
require_in "plant upper/ -> /etc" sh -c 'mkdir -p /var/lib/sdme/containers/fs && ln -s /etc /var/lib/sdme/containers/fs/upper'
assert_match "diff refuses a symlinked upper/, naming it" \
	"^1 sdme: /var/lib/sdme/containers/fs/upper is not a directory" "$(out_rc sdme diff fs)"
assert_match "cp refuses it too" "^1 sdme: /var/lib/sdme/containers/fs/upper is not a directory" \
	"$(out_rc sdme cp /root/cpsrc fs:/)"
check_in "nothing written through it" test ! -e /etc/cpsrc
require_in "remove the planted link, sdme rm fs" sh -c 'rm /var/lib/sdme/containers/fs/upper && sdme rm fs'

step "sdme cp on the stopped container, through its layers"
require_in "sdme stop $name" timeout 120 sdme stop "$name"
require_in "sdme cp host -> stopped" sdme cp /root/cpsrc/f "$name:/usr/share/stopped"
assert_eq "written into upper/ with owner, mode and xattr" "1234:5678 4750 v1" \
	"$(th_sh "echo \$(stat -c '%u:%g %a' $state/upper/usr/share/stopped) \$(getfattr --absolute-names --only-values -n user.k $state/upper/usr/share/stopped)" 2>&1)"
assert_eq "parent copied up with the lower's mode and owner" "$(th_exec stat -c '%u:%g %a' /usr/share)" \
	"$(th_exec stat -c '%u:%g %a' "$state/upper/usr/share" 2>&1)"
require_in "sdme cp stopped -> host" sdme cp "$name:/srv/cpsrc/f" /root/out2
# shellcheck disable=SC2016 # expanded by the test host's shell
assert_eq "read from upper/ with its attributes" "1234:5678 4750 v1" \
	"$(th_sh 'echo $(stat -c "%u:%g %a" /root/out2) $(getfattr --absolute-names --only-values -n user.k /root/out2)' 2>&1)"
assert_match "a deleted file (whiteout) is not read from the lower layer" \
	"^1 sdme: .*no such file" "$(out_rc sdme cp "$name:/etc/debian_version" /root/got2)"
require_in "read through the link while stopped" sdme cp "$name:/srv/etclink/shadow" /root/got2
assert_eq "the container's shadow (upper), not the host's" data "$(th_exec cat /root/got2 2>&1)"
assert_eq "the host's /etc/shadow unchanged" "$shadow_sum" "$(th_exec sha256sum /etc/shadow)"
require_in "sdme start $name" timeout 180 sdme start "$name"
# shellcheck disable=SC2016 # expanded by the test host's shell
assert_eq "the file copied while stopped is there after the start" "1234:5678 4750 data" \
	"$(th_exec sdme exec "$name" -- sh -c 'echo $(stat -c "%u:%g %a" /usr/share/stopped) $(cat /usr/share/stopped)' 2>&1)"
require_in "sdme stop $name" timeout 120 sdme stop "$name"

step "sdme edit with EDITOR set to a script"
require_in "editor scripts" sh -c "printf '#!/bin/sh\nprintf \"[Container]\\\\nEnvironment=EDITED=yes\\\\n\" > \"\$1\"\n' > /root/ed-valid &&
	printf '#!/bin/sh\nprintf \"[Container]\\\\nPrivateUsers=maybe\\\\n\" > \"\$1\"\n' > /root/ed-bad &&
	printf '#!/bin/sh\necho Hostname=edited >> \"\$1\"\n' > /root/ed-full && chmod +x /root/ed-valid /root/ed-bad /root/ed-full"
require_in "sdme edit $name (valid)" env EDITOR=/root/ed-valid sdme edit "$name"
assert_eq "the drop-in landed" "[Container]
Environment=EDITED=yes" "$(th_exec cat "$dropd/override.conf" 2>&1)"
assert_match "systemd reloaded: the unit has it" "EDITED=yes" "$(th_exec systemctl cat "$unit" 2>&1)"
assert_match "an invalid edit is refused with the model's message" \
	"^1 sdme: $dropd/override.conf:2: PrivateUsers=maybe" "$(out_rc env EDITOR=/root/ed-bad sdme edit "$name")"
assert_eq "the old drop-in kept" "[Container]
Environment=EDITED=yes" "$(th_exec cat "$dropd/override.conf" 2>&1)"
assert_match "an unchanged edit changes nothing" "^0 sdme: $dropd/50-x.conf unchanged" \
	"$(out_rc env EDITOR=true sdme edit "$name" --drop-in 50-x.conf)"
check_in "no drop-in written for it" test ! -e "$dropd/50-x.conf"
assert_match "a bad drop-in name" "^1 sdme: --drop-in: '../x.conf'" "$(out_rc env EDITOR=true sdme edit "$name" --drop-in ../x.conf)"
require_in "sdme edit --full $name" env EDITOR=/root/ed-full sdme edit --full "$name"
assert_match "the file itself edited" "Hostname=edited$" "$(th_exec cat "$file" 2>&1)"
assert_match "systemd reloaded: the unit has the hostname" "hostname=edited" "$(th_exec systemctl cat "$unit" 2>&1)"
require_in "a vendor container" sh -c "mkdir -p /usr/lib/sdme && printf '[Container]\n' > /usr/lib/sdme/fv.container && systemctl daemon-reload"
require_in "sdme edit --full of a vendor file" env EDITOR=/root/ed-full sdme edit --full fv
assert_eq "the edited copy in /etc/sdme" "[Container]
Hostname=edited" "$(th_exec cat /etc/sdme/fv.container 2>&1)"
assert_eq "the vendor file untouched" "[Container]" "$(th_exec cat /usr/lib/sdme/fv.container 2>&1)"
