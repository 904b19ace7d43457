# shellcheck shell=bash
# shellcheck disable=SC2016 # snippets expand inside the test host or guests
# 65-pods: web.pod and two members (Pod=web.pod, host clones):
# - the pod unit pins a loopback-only network namespace at
#   /run/sdme/pods/web/netns; both members' leaders are in it;
# - a server listening on 127.0.0.1 in one member is reached from the other;
#   a third container (not in the pod, host network) and the test host
#   cannot reach it;
# - systemctl stop sdme-pod-web stops both members and removes the pin;
# - with [Install] WantedBy=machines.target on the members, after the test
#   host reboots both are back, nobody started them, and they share one
#   namespace again.
#
# The server and client are tests/e2e/net's (net_serve, net_fetch).

p1=p65a
p2=p65b
o3=o65 # outside the pod
pod=web65
port=8065
pin=/run/sdme/pods/$pod/netns

on_cleanup sh -c "rm -rf /var/lib/sdme/containers/$p1 /var/lib/sdme/containers/$p2 /var/lib/sdme/containers/$o3 /etc/sdme/$p1.container /etc/sdme/$p2.container /etc/sdme/$o3.container /etc/sdme/$pod.pod && systemctl daemon-reload"
on_cleanup sh -c "systemctl stop sdme-$p1 sdme-$p2 sdme-$o3 sdme-pod-$pod; systemctl reset-failed 'sdme-*' 'sdme-prepare@*' 2>/dev/null; true"

step "write $pod.pod, $p1 and $p2 (Pod=$pod.pod, WantedBy=machines.target), $o3 (no pod)"
net_require_server
th_exec mkdir -p /etc/sdme
printf '[Pod]\n' | th_exec sh -c "cat > /etc/sdme/$pod.pod"
for m in "$p1" "$p2"; do
	printf '[Container]\nPod=%s.pod\n\n[Install]\nWantedBy=machines.target\n' "$pod" |
		th_exec sh -c "cat > /etc/sdme/$m.container"
done
printf '[Container]\n' | th_exec sh -c "cat > /etc/sdme/$o3.container"
require_in "daemon-reload" systemctl daemon-reload
th_exec systemctl cat "sdme-pod-$pod.service" "sdme-$p1.service" | grep -E '^(ExecStart|ExecStop|Requires|BindsTo|After|Type|RemainAfterExit)=' || true
assert_eq "daemon-reload did not start the pod" inactive "$(th_exec systemctl is-active "sdme-pod-$pod" 2>&1 || true)"

step "start the members: the pod comes up first"
for m in "$p1" "$p2" "$o3"; do
	require_in "systemctl start sdme-$m" timeout 180 systemctl start "sdme-$m"
done
assert_eq "sdme-pod-$pod active" active "$(th_exec systemctl is-active "sdme-pod-$pod" 2>&1 || true)"
pin_ino=$(net_pod_ino "$pod")
assert_match "$pin is a pinned namespace" '^[0-9]+$' "$pin_ino"
assert_eq "$pin is on nsfs" nsfs "$(th_exec stat -f -c %T "$pin" 2>&1 || true)"
host_ns=$(th_exec readlink /proc/1/ns/net)
ns1=$(net_leader_ns "$p1")
ns2=$(net_leader_ns "$p2")
ns3=$(net_leader_ns "$o3")
assert_eq "$p1's leader is in the pod's namespace" "net:[$pin_ino]" "$ns1"
assert_eq "$p2's leader is in the same namespace" "$ns1" "$ns2"
[ "$ns1" != "$host_ns" ] || fail "the pod shares the host's network namespace ($host_ns)"
assert_eq "$o3 (no pod) is in the host's namespace" "$host_ns" "$ns3"
assert_eq "$p1 sees only lo" "lo " "$(th_run_in "$p1" ls /sys/class/net 2>&1 | tr '\n' ' ' || true)"
assert_eq "systemd-resolved not masked in $p1 (not the host's network)" "" \
	"$(th_exec systemctl -M "$p1" show -P LoadState systemd-resolved.service 2>&1 | grep -x masked || true)"

step "a server on 127.0.0.1:$port in $p1"
require "start the listener in $p1" net_serve "$p1" srv65 "$port" pod-hello
net_await "$p1" "$port" pod-hello || fail "the listener in $p1 never answered on 127.0.0.1:$port"
assert_eq "$p2 reaches $p1's server on 127.0.0.1:$port" pod-hello "$(net_fetch "$p2" "$port")"
assert_eq "$o3 (outside the pod) does not reach it" "" "$(net_fetch "$o3" "$port")"
assert_eq "the test host does not reach it" "" \
	"$(th_exec timeout 10 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port && cat <&3" 2>/dev/null || true)"

step "systemctl stop sdme-pod-$pod stops both members"
require_in "systemctl stop sdme-pod-$pod" timeout 180 systemctl stop "sdme-pod-$pod"
for m in "$p1" "$p2"; do
	assert_eq "sdme-$m inactive after the pod stopped" inactive "$(th_exec systemctl is-active "sdme-$m" 2>&1 || true)"
	th_unmounted "$m" || fail "overlay of $m still mounted after the pod stopped"
done
assert_eq "sdme-$o3 (outside) still active" active "$(th_exec systemctl is-active "sdme-$o3" 2>&1 || true)"
check_in "the pin $pin is gone" sh -c "! test -e $pin && ! test -e /run/sdme/pods"
require_in "systemctl stop sdme-$o3" timeout 120 systemctl stop "sdme-$o3"
th_unmounted "$o3" || fail "overlay of $o3 still mounted after stop"

step "reboot the test host: the enabled members come back in one pod"
require "th_reboot" th_reboot
for m in "$p1" "$p2"; do
	state=$(th_exec systemctl is-active "sdme-$m" 2>&1 || true)
	if [ "$state" != active ]; then
		th_exec journalctl -b --no-pager -o short-precise -u "sdme-$m" -u "sdme-pod-$pod" | tail -n 30 || true
	fi
	assert_eq "sdme-$m active after the host's boot, nobody started it" active "$state"
done
assert_eq "sdme-pod-$pod active after the boot" active "$(th_exec systemctl is-active "sdme-pod-$pod" 2>&1 || true)"
pin_ino=$(net_pod_ino "$pod")
ns1=$(net_leader_ns "$p1")
ns2=$(net_leader_ns "$p2")
host_ns=$(th_exec readlink /proc/1/ns/net)
assert_eq "$p1's leader is in the pod's namespace after the reboot" "net:[$pin_ino]" "$ns1"
assert_eq "$p2's leader shares it" "$ns1" "$ns2"
[ "$ns1" != "$host_ns" ] || fail "after the reboot the pod shares the host's network namespace"
require "start the listener in $p1 again" net_serve "$p1" srv65 "$port" pod-again
net_await "$p2" "$port" pod-again || fail "after the reboot $p2 never reached $p1's server on 127.0.0.1:$port"

step "stop"
require_in "systemctl stop" timeout 180 systemctl stop "sdme-$p1" "sdme-$p2" "sdme-pod-$pod"
for m in "$p1" "$p2"; do
	th_unmounted "$m" || fail "overlay of $m still mounted after stop"
done
check_in "no pin left" sh -c "! test -e /run/sdme/pods"
