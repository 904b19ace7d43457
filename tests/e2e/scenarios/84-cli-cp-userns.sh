# shellcheck shell=bash
# shellcheck disable=SC2016 # snippets expand inside the test host
# 84-cli-cp-userns: `sdme cp` and a container with its own user namespace
# (PrivateUsers=yes, a host clone). Its layers hold the guest's own IDs
# (they are ID-mapped when mounted), so owners copy unchanged and mean the
# same on both sides, running or stopped:
# - running, in: written as the root of the guest's user namespace; a host
#   file owned by 0 (and one by 1000) shows as 0 (and 1000) inside the
#   guest, modes and a user.* xattr (and file capabilities, with setcap)
#   kept, a FIFO made; a link to /etc/shadow inside is written through
#   inside only; an owner outside the guest's ID range, or a device node,
#   is refused in one line, nothing written;
# - running, out: read through the layers; a guest file owned by 1000 is
#   owned by 1000 on the host; a link to /etc/shadow is copied as a link;
# - stopped: a host file owned by 0 (and one by 1000) copied in shows as
#   root (and 1000) inside the guest, and as UID base (+ 1000) from the
#   host's view of the running guest's root; a file the guest's root made,
#   copied out, is owned by 0 on the host.

c=cu84
st=/var/lib/sdme/containers/$c
on_cleanup sh -c "rm -rf /etc/sdme/$c.container $st /root/cp84 /root/cp84big /root/g84 /root/o84; systemctl daemon-reload"
on_cleanup sh -c "systemctl stop sdme-$c; systemctl reset-failed sdme-$c 2>/dev/null; true"

step "a PrivateUsers=yes container, running: cp in as the guest's root"
require_in "sdme create $c --userns" sdme create "$c" --userns
require_in "start $c" timeout 180 sdme start "$c"
require_in "host files owned by 0 and 1000, an xattr, one owned by 70000" sh -c 'mkdir -p /root/cp84/d /root/cp84big &&
	echo h > /root/cp84/f && chmod 640 /root/cp84/f && setfattr -n user.k -v v1 /root/cp84/f &&
	echo u > /root/cp84/u && chown 1000:1000 /root/cp84/u && chmod 4750 /root/cp84/u &&
	echo x > /root/cp84/d/x && chown -R 1000:1001 /root/cp84/d && chmod 710 /root/cp84/d &&
	echo b > /root/cp84big/b && chown 70000:70000 /root/cp84big/b && mkfifo -m 620 /root/cp84/p'
require_in "sdme cp /root/cp84 $c:/srv/ (running)" sdme cp /root/cp84 "$c:/srv/"
assert_eq "inside: owners 0 and 1000, modes, content" "0:0 640 h 1000:1000 4750 u 1000:1001 710 x" \
	"$(th_exec sdme exec "$c" -- sh -c 'echo $(stat -c "%u:%g %a" /srv/cp84/f) $(cat /srv/cp84/f) $(stat -c "%u:%g %a" /srv/cp84/u) $(cat /srv/cp84/u) $(stat -c "%u:%g %a" /srv/cp84/d) $(cat /srv/cp84/d/x)' 2>&1)"
assert_eq "inside: the xattr" v1 \
	"$(th_exec sdme exec "$c" -- getfattr --absolute-names --only-values -n user.k /srv/cp84/f 2>&1)"
assert_eq "in upper/: the guest's IDs, unshifted" "0:0 1000:1000" \
	"$(th_sh "echo \$(stat -c %u:%g $st/upper/srv/cp84/f) \$(stat -c %u:%g $st/upper/srv/cp84/u)" 2>&1)"
if th_exec sh -c 'command -v setcap' >/dev/null 2>&1; then
	require_in "a file with a capability" sh -c 'cp /bin/true /root/cp84cap && setcap cap_net_bind_service+ep /root/cp84cap'
	on_cleanup rm -f /root/cp84cap
	require_in "sdme cp it in" sdme cp /root/cp84cap "$c:/srv/cap"
	assert_match "inside: the capability kept, for the guest's root" 'cap_net_bind_service[=+]ep' \
		"$(th_exec sdme exec "$c" -- getcap /srv/cap 2>&1)"
else
	step "no setcap in the test host: file capabilities not checked"
fi
shadow=$(th_exec sha256sum /etc/shadow)
require_in "a link to /etc/shadow inside" sdme exec "$c" -- ln -s /etc/shadow /srv/evil
require_in "sdme cp through it" sdme cp /root/cp84/f "$c:/srv/evil"
assert_eq "the host's /etc/shadow unchanged" "$shadow" "$(th_exec sha256sum /etc/shadow)"
assert_eq "the guest's /etc/shadow written, root's" "0 h" \
	"$(th_exec sdme exec "$c" -- sh -c 'echo $(stat -c %u /etc/shadow) $(cat /etc/shadow)' 2>&1)"
assert_match "an owner outside the guest's IDs: refused in one line" \
	"^1 sdme: copying /root/cp84big to $c:/srv/: /srv/cp84big/b: owner 70000:70000 is outside $c's user namespace \\(UIDs 0-65535, GIDs 0-65535\\)\$" \
	"$(out_rc sdme cp /root/cp84big "$c:/srv/")"
check_in "nothing written for it" sdme exec "$c" -- test ! -e /srv/cp84big
assert_eq "a FIFO made inside" "fifo 620" \
	"$(th_exec sdme exec "$c" -- stat -c '%F %a' /srv/cp84/p 2>&1)"
assert_match "a device node: refused in one line (none can be made in a user namespace)" \
	"^1 sdme: copying /dev/null to $c:/srv/null: /srv/null: a device node cannot be made from inside $c's user namespace\$" \
	"$(out_rc sdme cp /dev/null "$c:/srv/null")"

step "running: cp out through the layers"
require "the guest writes /srv/o (1000:1000 640, an xattr) and a link" th_run_in "$c" sh -c 'echo o > /srv/o &&
	chown 1000:1000 /srv/o && chmod 640 /srv/o && setfattr -n user.o -v w /srv/o && ln -s /etc/shadow /srv/sh'
require_in "sdme cp $c:/srv/o /root/o84 (running)" sdme cp "$c:/srv/o" /root/o84
assert_eq "on the host: 1000:1000 640, the content and xattr" "1000:1000 640 o w" \
	"$(th_sh 'echo $(stat -c "%u:%g %a" /root/o84) $(cat /root/o84) $(getfattr --absolute-names --only-values -n user.o /root/o84)' 2>&1)"
require_in "sdme cp $c:/srv/sh /root/o84sh" sdme cp "$c:/srv/sh" /root/o84sh
on_cleanup rm -f /root/o84sh
assert_eq "the link copied as a link, not followed" "/etc/shadow" "$(th_exec readlink /root/o84sh 2>&1)"
require "the guest's root writes /srv/g" th_run_in "$c" sh -c 'echo g > /srv/g'
require_in "stop $c" timeout 120 sdme stop "$c"

step "stopped: cp both ways through the layers"
require_in "sdme cp /root/cp84/f $c:/srv/f" sdme cp /root/cp84/f "$c:/srv/f"
require_in "sdme cp /root/cp84/u $c:/srv/u" sdme cp /root/cp84/u "$c:/srv/u"
require_in "sdme cp $c:/srv/g /root/g84" sdme cp "$c:/srv/g" /root/g84
assert_eq "copied out: the guest root's file is owned by 0 on the host" "0:0 g" \
	"$(th_sh 'echo $(stat -c %u:%g /root/g84) $(cat /root/g84)' 2>&1)"
assert_eq "in upper/: the guest's IDs, unshifted" "0:0 640 1000:1000" \
	"$(th_sh "echo \$(stat -c '%u:%g %a' $st/upper/srv/f) \$(stat -c %u:%g $st/upper/srv/u)" 2>&1)"

step "started again: the guest sees root and 1000, the host the UID base"
require_in "start $c" timeout 180 sdme start "$c"
assert_eq "inside: /srv/f is root's, /srv/u 1000's" "root:root 640 h 1000:1000 u" \
	"$(th_run_in "$c" sh -c 'echo $(stat -c "%U:%G %a" /srv/f) $(cat /srv/f) $(stat -c %u:%g /srv/u) $(cat /srv/u)' 2>&1)"
leader=$(th_exec machinectl show -p Leader --value "$c")
base=$(th_exec awk 'NR == 1 { print $2 }' "/proc/$leader/uid_map")
assert_match "the guest has a UID base" '^[1-9][0-9]+$' "$base"
assert_eq "from the host: /srv/f owned by the base, /srv/u by base + 1000" "$base $((base + 1000))" \
	"$(th_exec sh -c "echo \$(stat -c %u /proc/$leader/root/srv/f) \$(stat -c %u /proc/$leader/root/srv/u)" 2>&1)"
require_in "stop $c" timeout 120 sdme stop "$c"
require_in "rm $c" sdme rm "$c"
