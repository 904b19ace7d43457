# shellcheck shell=bash
# shellcheck disable=SC2016 # snippets expand inside the test host
# 92-many-reboot: issue 17 at a size CI can afford: SDME_E2E_MANY (default
# 20, at least 5) enabled containers ([Install] WantedBy=machines.target),
# mixed: host clones, every fifth PrivateUsers=yes, the third and fourth in
# a pod. Through a reboot of the test host all come back running (nobody
# starts them), none failed;
# `systemctl stop machines.target` stops them all, and their pod, and
# leaves no overlay mounted and nothing of theirs in /run/sdme.
#
# Every container counts against root's inotify instances on the machine
# (fs.inotify.max_user_instances; the test host shares the kernel, and a
# user namespace that root creates is charged to root too); a booted Debian
# guest holds 7. The scenario fails at once, naming the limit, when the
# machine's leaves no room for the containers (Debian's default 128 does
# not for 20): raise it on the machine running the suite, as sdme's
# /usr/lib/sysctl.d/60-sdme.conf does (8192). It never changes it.

n=${SDME_E2E_MANY:-20}
[ "$n" -ge 5 ] 2>/dev/null || {
	fail "SDME_E2E_MANY=$n: at least 5 (one of each kind)"
	exit 1
}
pod=p92
names=()
for i in $(seq "$n"); do names+=("$(printf 'm92n%02d' "$i")"); done
units=("${names[@]/#/sdme-}")

on_cleanup sh -c "cd /etc/sdme && rm -f m92n*.container $pod.pod; rm -rf /var/lib/sdme/containers/m92n*; systemctl daemon-reload"
on_cleanup sh -c "systemctl stop 'sdme-m92n*' sdme-pod-$pod; systemctl reset-failed 'sdme-*' 'sdme-prepare@*' 2>/dev/null; true"

step "room for $n containers in root's inotify instances (machine-wide)"
limit=$(cat /proc/sys/fs/inotify/max_user_instances)
open=0
for f in /proc/[0-9]*/fd/*; do
	[ "$(readlink "$f" 2>/dev/null)" = anon_inode:inotify ] && open=$((open + 1))
done
need=$((n * 8 + 40))
echo "fs.inotify.max_user_instances=$limit, $open open on the machine, $need needed (8 a container, 40 for the hosts)"
[ $((limit - open)) -ge "$need" ] || {
	fail "$n containers need about $need more inotify instances of root; the machine allows $limit and $open are open: raise fs.inotify.max_user_instances on it (sdme's 60-sdme.conf: 8192) or run with SDME_E2E_MANY=$(((limit - open - 40) / 8))"
	exit 1
}

step "write $n containers (every fifth PrivateUsers=yes, 3 and 4 in $pod.pod), all WantedBy=machines.target"
th_exec mkdir -p /etc/sdme
printf '[Pod]\n' | th_exec sh -c "cat > /etc/sdme/$pod.pod"
for i in $(seq "$n"); do
	extra=
	if [ $((i % 5)) = 0 ]; then
		extra='PrivateUsers=yes\n'
	elif [ "$i" = 3 ] || [ "$i" = 4 ]; then
		extra="Pod=$pod.pod\\n"
	fi
	# shellcheck disable=SC2059 # the format carries the extra key
	printf "[Container]\\n$extra\\n[Install]\\nWantedBy=machines.target\\n" |
		th_exec sh -c "cat > /etc/sdme/${names[i - 1]}.container"
done
require_in "daemon-reload" systemctl daemon-reload
assert_eq "machines.target.wants holds all $n" "$n" \
	"$(th_exec sh -c 'ls /run/systemd/generator/machines.target.wants/ | grep -c "^sdme-m92n"' 2>&1 || true)"

step "reboot the test host: all $n start at its boot"
t0=$SECONDS
require "th_reboot" th_reboot
step "test host up after $((SECONDS - t0)) s"
states=$(th_exec systemctl is-active "${units[@]}" 2>&1 || true)
assert_eq "all $n active after the reboot, nobody started them" "$n" "$(grep -cx active <<<"$states" || true)"
failed=$(th_exec systemctl list-units --failed --no-legend --plain 'sdme*' 'var-lib-sdme*' 2>&1 || true)
assert_eq "no failed sdme units" "" "$failed"
if [ -n "$failed" ]; then
	th_exec journalctl -b --no-pager -o short-precise -u 'sdme-m92n*' | grep -v ' systemd\[1\]: ' | tail -n 30 || true
fi
base=$(th_exec systemctl show -p UserspaceTimestampMonotonic --value)
last=$(for u in "${units[@]}"; do th_exec systemctl show -p ActiveEnterTimestampMonotonic --value "$u"; done | sort -n | tail -n 1)
step "host boot to the last of $n active: $(((last - base) / 1000)) ms"
machines=$(th_exec machinectl list --no-legend --no-pager 2>&1 | awk '$1 ~ /^m92n/' | wc -l)
assert_eq "machinectl lists $n machines" "$n" "$machines"
for m in "${names[@]}"; do
	assert_match "$m booted" '^(running|degraded)$' \
		"$(th_exec timeout 60 systemctl -M "$m" is-system-running --wait 2>&1 || true)"
done
assert_eq "the pod's members share its netns" 1 \
	"$(th_exec sh -c "for m in $(printf '%s\n' "${names[@]}" | grep -x -e m92n03 -e m92n04 | paste -sd' '); do readlink /proc/\$(machinectl show \$m -p Leader --value)/ns/net; done | sort -u | wc -l" 2>&1 || true)"

step "stop them all: systemctl stop machines.target"
# It returns when the target has stopped, before its containers (ordered
# Before= it, they stop after it); stopping the units as well waits for the
# jobs it queued (they merge), each returning with its overlay unmounted.
t0=$SECONDS
require_in "systemctl stop machines.target" timeout 300 systemctl stop machines.target
require_in "wait for the stop jobs" timeout 300 systemctl stop "${units[@]}"
step "stopped in $((SECONDS - t0)) s"
# The pod stops after its members (they are ordered after it): its job
# may still run when theirs are done.
check_in "the job queue drains" timeout 60 sh -c 'while systemctl list-jobs --no-legend | grep -q .; do sleep 0.1; done'
assert_eq "the pod stopped with machines.target (PartOf=)" inactive \
	"$(th_exec systemctl is-active "sdme-pod-$pod" 2>&1 || true)"
check_in "no namespace of $pod pinned" sh -c "! test -e /run/sdme/pods/$pod/netns"
states=$(th_exec systemctl is-active "${units[@]}" 2>&1 || true)
assert_eq "all $n inactive" "$n" "$(grep -cx inactive <<<"$states" || true)"
assert_eq "no overlay mounted below /var/lib/sdme/containers" "" \
	"$(th_exec sh -c 'findmnt -rn -o TARGET | grep "^/var/lib/sdme/containers/"' 2>&1 || true)"
assert_eq "nothing of theirs in /run/sdme" "" "$(th_exec sh -c 'find /run/sdme -mindepth 1 | grep m92n' 2>&1 || true)"
