# shellcheck shell=bash
# 63-reload-running: a daemon-reload never stops, restarts or kills a
# running container, whatever the edit; the edit takes effect at the next
# start (sdme.container(5), "CHANGING A RUNNING CONTAINER"). Four running
# host clones get drop-ins that change the units they depend on:
# - a63 (overlay by a .mount unit): Pod=duo63.pod (the pod is not running;
#   with BindsTo= on the pod, systemd stopped the container at the reload);
# - b63 (PrivateUsers=yes, overlay by the prepare helper): Pod=duo63.pod
#   and PrivateUsers=no (its overlay now gets a .mount unit);
# - c63 (overlay by a .mount unit): Rootfs=deb63.image and
#   PrivateUsers=yes (image unit, ID-mapped layers, no .mount unit);
# - e63 (overlay by a .mount unit): Rootfs=deb63.image alone (its mounted
#   .mount unit gets a new lower layer and Requires= on the image unit);
# - h63 (overlay by a .mount unit): Strict=yes (the preset switches on
#   PrivateUsers=, PrivateNetwork=, drops capabilities, adds a filter);
# - t63@a (an instance of the bare template t63@.container): the declared
#   instance t63@a.container appears, with Pod=duo63.pod;
# - d63: MachineName=d63x (the mount unit's name changes; with BindsTo= on
#   it, systemd stopped the container at the reload). Its stop unmounts the
#   old name's overlay (a second ExecStopPost= from the running record).
# After the reload each keeps its MainPID, stays running (machinectl) with
# no job queued, and its namespaces are the old ones. After a restart of
# each, the pod is up, a63, b63 and t63-a are in its namespace, b63 has no
# user namespace, c63 has one and boots the image's rootfs. A restart of
# the pod restarts its members into the new namespace; a stop of the pod
# stops them, with their overlays unmounted. Then a63 again: Pod= removed
# while it runs, the pod's stop no longer stops it, and neither does an
# umount of its overlay underneath it (its root lives on in its own mount
# namespace); its stop works and leaves nothing mounted.

pod=duo63
img=deb63
pin=/run/sdme/pods/$pod/netns
all="a63 b63 c63 e63 h63 t63-a d63 d63x"
units="sdme-a63 sdme-b63 sdme-c63 sdme-e63 sdme-h63 sdme-t63@a sdme-d63"

on_cleanup sh -c "for m in $all; do rm -rf /var/lib/sdme/containers/\$m; done; cd /etc/sdme && rm -rf a63.container* b63.container* c63.container* d63.container* e63.container* h63.container* t63@.container t63@a.container $pod.pod $img.image /var/lib/sdme/rootfs/$img && systemctl daemon-reload"
on_cleanup sh -c "umount /var/lib/sdme/containers/d63/merged 2>/dev/null; true" # only if the test failed
on_cleanup sh -c "systemctl stop $units sdme-pod-$pod sdme-image-$img; systemctl reset-failed 'sdme-*' 'sdme-prepare@*' 'var-lib-sdme-*' 2>/dev/null; true"

machine_of() { # UNIT -> machine name
	case $1 in
	sdme-t63@a) echo t63-a ;;
	*) echo "${1#sdme-}" ;;
	esac
}
pid_of() { th_exec systemctl show -p MainPID --value "$1" 2>&1 || true; }
leader_of() { th_exec machinectl show "$1" -p Leader --value 2>&1 || true; }
# The first line of the leader's uid_map, squeezed: "0 0 4294967295"
# without a user namespace.
uidmap_of() {
	th_exec sh -c "head -n1 /proc/\$(machinectl show $1 -p Leader --value)/uid_map" 2>&1 | tr -s ' ' | sed 's/^ //' || true
}

step "write $pod.pod, $img.image (rootfs put in place with a marker), a63, b63 (PrivateUsers=yes), c63, t63@.container"
th_exec mkdir -p /etc/sdme
require "put the test host's rootfs as $img" th_put_rootfs "$img"
th_exec sh -c "echo from-$img > /var/lib/sdme/rootfs/$img/etc/e2e-marker63"
printf '[Pod]\n' | th_exec sh -c "cat > /etc/sdme/$pod.pod"
# The rootfs is there, so sdme-import --if-missing never reads the source.
printf '[Image]\nImage=/var/tmp/sdme63/unused.tar\n' | th_exec sh -c "cat > /etc/sdme/$img.image"
printf '[Container]\n' | th_exec sh -c "cat > /etc/sdme/a63.container"
printf '[Container]\nPrivateUsers=yes\n' | th_exec sh -c "cat > /etc/sdme/b63.container"
printf '[Container]\n' | th_exec sh -c "cat > /etc/sdme/c63.container"
printf '[Container]\n' | th_exec sh -c "cat > /etc/sdme/d63.container"
printf '[Container]\n' | th_exec sh -c "cat > /etc/sdme/e63.container"
printf '[Container]\n' | th_exec sh -c "cat > /etc/sdme/h63.container"
printf '[Container]\n' | th_exec sh -c "cat > /etc/sdme/t63@.container"
require_in "daemon-reload" systemctl daemon-reload

step "start the seven"
for u in $units; do
	require_in "systemctl start $u" timeout 180 systemctl start "$u"
done
host_ns=$(th_exec readlink /proc/1/ns/net)
declare -A pid ns uidmap
for u in $units; do
	m=$(machine_of "$u")
	pid[$u]=$(pid_of "$u")
	ns[$u]=$(net_leader_ns "$m")
	uidmap[$u]=$(uidmap_of "$m")
	step "$u: MainPID ${pid[$u]}, leader's ${ns[$u]}, uid_map '${uidmap[$u]}'"
	assert_match "$u has a MainPID" '^[1-9][0-9]*$' "${pid[$u]}"
	assert_eq "$u starts in the host's network namespace" "$host_ns" "${ns[$u]}"
done
assert_eq "a63 has no user namespace" "0 0 4294967295" "${uidmap[sdme-a63]}"
assert_match "b63 has a user namespace" '^0 [1-9][0-9]* 65536$' "${uidmap[sdme-b63]}"
assert_eq "c63 has no user namespace" "0 0 4294967295" "${uidmap[sdme-c63]}"
check_in "c63 is a host clone: no marker of $img" sh -c "! test -e /var/lib/sdme/containers/c63/merged/etc/e2e-marker63"

step "drop-ins: a63 Pod=, b63 Pod= and PrivateUsers=no, c63 Rootfs=$img.image and PrivateUsers=yes, e63 Rootfs=$img.image, h63 Strict=yes, t63@a.container with Pod=, d63 MachineName=d63x"
th_exec mkdir -p /etc/sdme/a63.container.d /etc/sdme/b63.container.d /etc/sdme/c63.container.d /etc/sdme/d63.container.d /etc/sdme/e63.container.d /etc/sdme/h63.container.d
printf '[Container]\nStrict=yes\n' | th_exec sh -c "cat > /etc/sdme/h63.container.d/strict.conf"
printf '[Container]\nRootfs=%s.image\n' "$img" | th_exec sh -c "cat > /etc/sdme/e63.container.d/image.conf"
printf '[Container]\nMachineName=d63x\n' | th_exec sh -c "cat > /etc/sdme/d63.container.d/name.conf"
printf '[Container]\nPod=%s.pod\n' "$pod" | th_exec sh -c "cat > /etc/sdme/a63.container.d/pod.conf"
printf '[Container]\nPod=%s.pod\nPrivateUsers=no\n' "$pod" | th_exec sh -c "cat > /etc/sdme/b63.container.d/pod.conf"
printf '[Container]\nRootfs=%s.image\nPrivateUsers=yes\n' "$img" | th_exec sh -c "cat > /etc/sdme/c63.container.d/image.conf"
printf '[Container]\nPod=%s.pod\n' "$pod" | th_exec sh -c "cat > /etc/sdme/t63@a.container"
require_in "daemon-reload" systemctl daemon-reload
# A stop that the reload caused would be queued as a job by now: systemd
# dispatches it before it answers the next request.
jobs=$(th_exec systemctl list-jobs --no-legend 2>&1 || true)
step "jobs after the reload: '${jobs}'"
for u in $units; do
	assert_eq "no job for $u after the reload" "" "$(grep -F "$u.service" <<<"$jobs" || true)"
done

step "after the reload: the same MainPIDs, still running, old namespaces"
for u in $units; do
	m=$(machine_of "$u")
	assert_eq "$u keeps MainPID ${pid[$u]}" "${pid[$u]}" "$(pid_of "$u")"
	assert_eq "$u active" active "$(th_exec systemctl is-active "$u" 2>&1 || true)"
	assert_eq "machine $m running" running "$(th_exec machinectl show "$m" -p State --value 2>&1 || true)"
	assert_eq "$m still in the host's network namespace" "$host_ns" "$(net_leader_ns "$m")"
	assert_eq "$m keeps its uid_map" "${uidmap[$u]}" "$(uidmap_of "$m")"
	check_in "$m's overlay still mounted" mountpoint -q "/var/lib/sdme/containers/$m/merged"
done
# The reload did load the new units.
for u in sdme-a63 sdme-b63 sdme-t63@a; do
	assert_match "$u requires the pod now" "(^| )sdme-pod-$pod\\.service( |\$)" \
		"$(th_exec systemctl show -p Requires --value "$u" 2>&1 || true)"
done
for u in sdme-c63 sdme-e63; do
	assert_match "$u requires the image unit now" "(^| )sdme-image-$img\\.service( |\$)" \
		"$(th_exec systemctl show -p Requires --value "$u" 2>&1 || true)"
done
assert_eq "the reload started no pod" inactive "$(th_exec systemctl is-active "sdme-pod-$pod" 2>&1 || true)"
assert_eq "the reload started no image unit" inactive "$(th_exec systemctl is-active "sdme-image-$img" 2>&1 || true)"
th_exec systemctl cat sdme-a63 | grep -E '^(Requires|BindsTo|After)=' || true
check_in "sdme-d63 runs machine d63x at its next start" sh -c "systemctl cat sdme-d63 | grep -q -- ' --machine=d63x '"

check_in "sdme-d63's stop unmounts the old name's overlay too" sh -c \
	"systemctl cat sdme-d63 | grep -qx 'ExecStopPost=/usr/libexec/sdme/sdme-prepare --unmount --mount-unit --unit=%n --state=/var/lib/sdme/containers/d63 d63'"

step "stop d63 (renamed): nothing of either name stays mounted"
require_in "systemctl stop sdme-d63" timeout 120 systemctl stop sdme-d63
assert_eq "sdme-d63 inactive (not failed)" inactive "$(th_exec systemctl is-active sdme-d63 2>&1 || true)"
th_unmounted d63 || fail "the old overlay of d63 is still mounted after stop"
th_unmounted d63x || fail "an overlay of d63x is mounted after stop"
check_in "no use record of d63 left" test ! -e /run/sdme/inuse/d63

step "restart each: the edits take effect"
units=${units% sdme-d63}
for u in $units; do
	require_in "systemctl restart $u" timeout 180 systemctl restart "$u"
	[ "$(pid_of "$u")" != "${pid[$u]}" ] || fail "restart of $u kept MainPID ${pid[$u]}"
	m=$(machine_of "$u")
	assert_eq "machine $m running after the restart" running "$(th_exec machinectl show "$m" -p State --value 2>&1 || true)"
done
assert_eq "sdme-pod-$pod active (started by its members)" active "$(th_exec systemctl is-active "sdme-pod-$pod" 2>&1 || true)"
pin_ino=$(net_pod_ino "$pod")
assert_match "$pin is pinned" '^[0-9]+$' "$pin_ino"
for m in a63 b63 t63-a; do
	assert_eq "$m's leader is in the pod's namespace" "net:[$pin_ino]" "$(net_leader_ns "$m")"
done
assert_eq "c63 (no pod) in the host's network namespace" "$host_ns" "$(net_leader_ns c63)"
assert_eq "b63 has no user namespace now" "0 0 4294967295" "$(uidmap_of b63)"
assert_match "c63 has a user namespace now" '^0 [1-9][0-9]* 65536$' "$(uidmap_of c63)"
for m in c63 e63; do
	assert_eq "$m boots $img's rootfs" "from-$img" "$(th_run_in "$m" cat /etc/e2e-marker63 2>&1 | tr -d '\r' || true)"
done
assert_eq "e63 still has no user namespace" "0 0 4294967295" "$(uidmap_of e63)"
assert_match "h63 (Strict=yes) has a user namespace now" '^0 [1-9][0-9]* 65536$' "$(uidmap_of h63)"
h_ns=$(net_leader_ns h63)
if [ -z "$h_ns" ] || [ "$h_ns" = "$host_ns" ]; then
	fail "h63 (Strict=yes) is not in a network namespace of its own: '$h_ns'"
fi
assert_eq "sdme-image-$img ran (active)" active "$(th_exec systemctl is-active "sdme-image-$img" 2>&1 || true)"
b_mount=$(th_exec systemd-escape --path --suffix=mount /var/lib/sdme/containers/b63/merged)
assert_eq "b63's overlay is mounted by its generated .mount unit now" "sdme overlay of b63" \
	"$(th_exec systemctl show -p Description --value "$b_mount" 2>&1 || true)"

step "restart the pod: its members restart into the new namespace"
for m in a63 b63 t63-a; do
	pid[$m]=$(pid_of "sdme-${m/t63-a/t63@a}")
done
require_in "systemctl restart sdme-pod-$pod" timeout 180 systemctl restart "sdme-pod-$pod"
pin_ino2=$(net_pod_ino "$pod")
for m in a63 b63 t63-a; do
	u=sdme-${m/t63-a/t63@a}
	# systemctl waited for the pod's job only: the members' restart jobs
	# may still be queued or booting them. Jobs first: a job that is gone
	# by the second look left the unit active.
	jobs=$(th_exec systemctl list-jobs --no-legend 2>&1 || true)
	state=$(th_exec systemctl is-active "$u" 2>&1 || true)
	if ! grep -qE "^ *[0-9]+ +$u\.service +(start|restart) " <<<"$jobs"; then
		assert_match "$u restarted with the pod (no job left: active)" '^(active|activating)$' "$state"
	fi
	# A start merges with the running job and waits for the boot.
	require_in "wait for $u's boot" timeout 180 systemctl start "$u"
	[ "$(pid_of "$u")" != "${pid[$m]}" ] || fail "the pod's restart kept $u's MainPID ${pid[$m]}"
	assert_eq "$m's leader is in the pod's new namespace" "net:[$pin_ino2]" "$(net_leader_ns "$m")"
done

step "stop the pod: its members stop, overlays unmounted"
require_in "systemctl stop sdme-pod-$pod" timeout 180 systemctl stop "sdme-pod-$pod"
for m in a63 b63 t63-a; do
	u=sdme-${m/t63-a/t63@a}
	assert_eq "$u inactive after the pod stopped" inactive "$(th_exec systemctl is-active "$u" 2>&1 || true)"
	th_unmounted "$m" || fail "overlay of $m still mounted after the pod stopped"
done
assert_eq "sdme-c63 (not in the pod) still active" active "$(th_exec systemctl is-active sdme-c63 2>&1 || true)"
require_in "systemctl stop sdme-c63 sdme-e63 sdme-h63" timeout 120 systemctl stop sdme-c63 sdme-e63 sdme-h63
th_unmounted h63 || fail "overlay of h63 still mounted after stop"
th_unmounted c63 || fail "overlay of c63 still mounted after stop"
th_unmounted e63 || fail "overlay of e63 still mounted after stop"
check_in "no pin left" sh -c "! test -e /run/sdme/pods"

step "Pod= removed from a running member: the pod's stop no longer stops it; an overlay unmounted underneath does not stop it either"
require_in "systemctl start sdme-a63 (starts the pod)" timeout 180 systemctl start sdme-a63
pin_ino=$(net_pod_ino "$pod")
a_pid=$(pid_of sdme-a63)
th_exec rm /etc/sdme/a63.container.d/pod.conf
require_in "daemon-reload" systemctl daemon-reload
require_in "systemctl stop sdme-pod-$pod" timeout 180 systemctl stop "sdme-pod-$pod"
assert_eq "sdme-a63 keeps MainPID $a_pid after the pod stopped" "$a_pid" "$(pid_of sdme-a63)"
assert_eq "sdme-a63 active" active "$(th_exec systemctl is-active sdme-a63 2>&1 || true)"
assert_eq "a63 stays in the old pod's namespace" "net:[$pin_ino]" "$(net_leader_ns a63)"
require_in "umount a63's overlay underneath it" umount /var/lib/sdme/containers/a63/merged
# systemd learns of the umount from mountinfo, asynchronously; a BindsTo=
# on the mount unit would queue the container's stop in the same step.
a_mount=$(th_exec systemd-escape --path --suffix=mount /var/lib/sdme/containers/a63/merged)
for _ in $(seq 100); do
	[ "$(th_exec systemctl is-active "$a_mount" 2>&1 || true)" = inactive ] && break
	sleep 0.1
done
assert_eq "systemd saw the umount of $a_mount" inactive "$(th_exec systemctl is-active "$a_mount" 2>&1 || true)"
jobs=$(th_exec systemctl list-jobs --no-legend 2>&1 || true)
assert_eq "no job for sdme-a63 after the umount" "" "$(grep -F sdme-a63.service <<<"$jobs" || true)"
assert_eq "sdme-a63 keeps MainPID $a_pid after the umount" "$a_pid" "$(pid_of sdme-a63)"
assert_eq "a63 answers inside" ok "$(th_run_in a63 echo ok 2>&1 | tr -d '\r' || true)"
require_in "systemctl stop sdme-a63" timeout 120 systemctl stop sdme-a63
assert_eq "sdme-a63 inactive (not failed)" inactive "$(th_exec systemctl is-active sdme-a63 2>&1 || true)"
th_unmounted a63 || fail "overlay of a63 mounted after stop"
