# shellcheck shell=bash
# shellcheck disable=SC2016 # snippets expand inside the test host
# 84-cli-cp-userns: `sdme cp` and a container with its own user namespace
# (PrivateUsers=yes, a host clone). Its layers hold the guest's own IDs
# (they are ID-mapped when mounted), so through the layers of the stopped
# container owners copy unchanged and mean the same on both sides:
# - a host file owned by 0 (and one by 1000) copied in shows as root (and
#   1000) inside the guest, and as UID base (+ 1000) from the host's view
#   of the running guest's root;
# - a file the guest's root made, copied out, is owned by 0 on the host;
# - while it runs, cp is refused in one line and nothing is written.

c=cu84
st=/var/lib/sdme/containers/$c
on_cleanup sh -c "rm -rf /etc/sdme/$c.container $st /root/cp84 /root/g84; systemctl daemon-reload"
on_cleanup sh -c "systemctl stop sdme-$c; systemctl reset-failed sdme-$c 2>/dev/null; true"

step "a PrivateUsers=yes container, running: cp refused"
require_in "sdme create $c --userns" sdme create "$c" --userns
require_in "start $c" timeout 180 sdme start "$c"
require_in "host files owned by 0 and 1000" sh -c 'mkdir -p /root/cp84 && echo h > /root/cp84/f && chmod 640 /root/cp84/f &&
	echo u > /root/cp84/u && chown 1000:1000 /root/cp84/u'
assert_eq "cp into the running container: refused" \
	"1 sdme: $c is active in a user namespace (PrivateUsers=): sdme cp reaches it through its layers, stop it first" \
	"$(out_rc sdme cp /root/cp84/f "$c:/srv/f")"
assert_eq "cp out of it: refused too" \
	"1 sdme: $c is active in a user namespace (PrivateUsers=): sdme cp reaches it through its layers, stop it first" \
	"$(out_rc sdme cp "$c:/etc/hostname" /root/g84)"
check_in "nothing written on either side" sh -c "test ! -e $st/upper/srv/f -a ! -e /root/g84"
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
