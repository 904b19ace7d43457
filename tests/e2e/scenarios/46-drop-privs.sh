# shellcheck shell=bash
# shellcheck disable=SC2016 # snippets expand inside the test host
# 46-drop-privs: sdme-drop-privs under a real systemd, as the app's unit will
# run it (RootDirectory= an image root with its own /etc/passwd and
# /etc/group, the host's /usr bound in read-only, stdout and stderr the
# journal's stream sockets):
# - systemd's own User= of a user that exists only in the image fails with
#   217/USER (why the helper exists), and /dev/stdout cannot be opened
#   without the helper (ENXIO);
# - through the helper the program runs as the image's app (4242, with its
#   supplementary group data), HOME from the image's passwd, in WORKDIR, and
#   what it writes to /dev/stdout, /dev/stderr and /proc/self/fd/1 is in the
#   unit's journal;
# - the app is the unit's main process (its uid from /proc/PID/status) and
#   its exit status is the unit's; a user that is not in the image is one
#   line in the journal and status 217;
# - the app starts with SIGPIPE at its default (without the helper, a unit's
#   process has it ignored).

root=/var/tmp/dp46/root
helper=/usr/libexec/sdme/sdme-drop-privs
on_cleanup sh -c "systemctl stop dp46-main 2>/dev/null; systemctl reset-failed 'dp46-*' 2>/dev/null; rm -rf /var/tmp/dp46; true"

# run46 NAME ARGS...: a transient unit in the image root; its exit status.
run46() {
	local name=$1
	shift
	th_exec systemd-run -q --wait -u "$name" -p RootDirectory="$root" -p MountAPIVFS=yes \
		-p BindReadOnlyPaths=/usr -p "BindReadOnlyPaths=$helper:/sdme-drop-privs" "$@" \
		>/dev/null 2>&1
	th_exec systemctl show -p ExecMainStatus --value "$name"
}
log46() { th_exec journalctl --sync; th_exec journalctl --no-pager -o cat -u "$1" 2>&1 || true; }

step "an image root whose user exists only in its own /etc/passwd"
require_in "make $root" sh -c "mkdir -p $root/etc $root/usr $root/srv $root/home/app &&
	for l in bin lib lib64 sbin; do ln -s usr/\$l $root/\$l; done &&
	printf 'root:x:0:0:root:/root:/bin/sh\napp:x:4242:4242:app:/home/app:/bin/sh\n' > $root/etc/passwd &&
	printf 'root:x:0:\napp:x:4242:\ndata:x:5000:app\n' > $root/etc/group"
check_in "app is not a user of the test host" sh -c '! getent passwd app'

step "without the helper: User= fails with 217/USER, /dev/stdout with ENXIO"
assert_eq "User=app: status 217" 217 "$(run46 dp46-user -p User=app /bin/true)"
assert_eq "echo > /dev/stdout fails" 2 "$(run46 dp46-stdout /bin/sh -c 'echo x > /dev/stdout')"
assert_match "the journal says why" 'No such device or address' "$(log46 dp46-stdout)"

step "through sdme-drop-privs"
script='echo "ids $(id -u) $(id -g) $(id -G)" > /dev/stdout; echo "home $HOME" > /proc/self/fd/1; echo "cwd $(pwd)" > /dev/stderr; exit 3'
assert_eq "the app's exit status is the unit's" 3 \
	"$(run46 dp46-app /sdme-drop-privs app /srv -- sh -c "$script")"
assert_eq "its lines, through /dev/stdout, /proc/self/fd/1 and /dev/stderr, in the unit's journal" \
	"ids 4242 4242 4242 5000
home /home/app
cwd /srv" "$(log46 dp46-app | grep -E '^(ids|home|cwd) ')"
assert_eq "a missing user: status 217" 217 "$(run46 dp46-ghost /sdme-drop-privs ghost / -- true)"
assert_match "and one line naming it" '^sdme-drop-privs: user ghost does not exist in /etc/passwd$' \
	"$(log46 dp46-ghost | grep '^sdme-drop-privs:')"

step "the app starts with SIGPIPE at its default (Rust's runtime and systemd's IgnoreSIGPIPE=yes ignore it, and an exec keeps that)"
assert_eq "status 0" 0 "$(run46 dp46-sig /sdme-drop-privs app / -- sh -c 'grep ^SigIgn: /proc/self/status > /dev/stdout')"
ign=$(log46 dp46-sig | sed -n 's/^SigIgn:[[:space:]]*//p')
# Bit 12 is signal 13, SIGPIPE. (Signals 32 and 33, glibc's own, may be
# ignored: systemd's executor gets them so from posix_spawn.)
assert_eq "SIGPIPE is not in the app's SigIgn ($ign)" 0 "$(((16#${ign:-1000} >> 12) & 1))"
assert_eq "without the helper it is (IgnoreSIGPIPE=yes)" 1 \
	"$(run46 dp46-sig0 sh -c 'grep ^SigIgn: /proc/self/status' >/dev/null; ign0=$(log46 dp46-sig0 | sed -n 's/^SigIgn:[[:space:]]*//p'); echo $(((16#${ign0:-0} >> 12) & 1)))"

step "the app is the unit's main process"
require_in "start dp46-main" systemd-run -q -u dp46-main -p RootDirectory="$root" -p MountAPIVFS=yes \
	-p BindReadOnlyPaths=/usr -p "BindReadOnlyPaths=$helper:/sdme-drop-privs" \
	/sdme-drop-privs app / -- sleep 60
pid=$(th_exec systemctl show -p MainPID --value dp46-main)
# Bounded wait for a condition: systemd-run returns once the main process
# is forked (Type=simple), before systemd's executor and then the helper
# have exec'd into the app (seen: comm still systemd's "(op-privs)" while
# the helper had already set the IDs).
for _ in $(seq 1 100); do
	[ "$(th_exec cat "/proc/$pid/comm" 2>/dev/null)" = sleep ] && break
	sleep 0.1
done
assert_match "MainPID runs sleep as 4242" '^sleep Uid:	4242	4242	4242	4242$' \
	"$(th_exec sh -c "printf '%s ' \$(cat /proc/$pid/comm); grep ^Uid: /proc/$pid/status")"
require_in "stop dp46-main" systemctl stop dp46-main
