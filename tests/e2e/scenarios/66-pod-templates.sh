# shellcheck shell=bash
# shellcheck disable=SC2016 # snippets expand inside the test host or guests
# 66-pod-templates: the pod template grp66@.pod (one instance file,
# grp66@a.pod, a symlink to it; grp66@b and grp66@zzz undeclared) and two
# container templates, started as undeclared instances (host clones):
# - c66@.container has Pod=grp66@a.pod: its instances c66@x and c66@y both
#   join the pod instance grp66@a;
# - s66@.container has Pod=grp66@%i.pod: s66@a joins grp66@a, s66@b joins
#   grp66@b;
# - each pod instance pins its namespace at /run/sdme/pods/grp66@INST/netns;
# - a server on 127.0.0.1 in c66-x is reached from c66-y and s66-a (same pod
#   instance), not from s66-b (grp66@b);
# - systemctl start sdme-pod-grp66@zzz (no file, no member) works;
# - stopping the pod instances stops their members and leaves nothing in
#   /run/sdme/pods.
# The server and client are tests/e2e/net's (net_serve, net_fetch).

pod=grp66
port=8066
machines="c66-x c66-y s66-a s66-b"
units="sdme-c66@x sdme-c66@y sdme-s66@a sdme-s66@b"

on_cleanup sh -c "cd /var/lib/sdme/containers && rm -rf $machines; rm -f /etc/sdme/c66@.container /etc/sdme/s66@.container /etc/sdme/$pod@.pod /etc/sdme/$pod@a.pod && systemctl daemon-reload"
on_cleanup sh -c "systemctl stop $units sdme-pod-$pod@a sdme-pod-$pod@b sdme-pod-$pod@zzz; systemctl reset-failed 'sdme-*' 'sdme-prepare@*' 2>/dev/null; true"

step "write $pod@.pod (+ the instance $pod@a.pod -> $pod@.pod), c66@.container (Pod=$pod@a.pod), s66@.container (Pod=$pod@%i.pod)"
net_require_server
th_exec mkdir -p /etc/sdme
printf '[Pod]\n' | th_exec sh -c "cat > /etc/sdme/$pod@.pod"
th_exec ln -sf "$pod@.pod" "/etc/sdme/$pod@a.pod"
printf '[Container]\nPod=%s@a.pod\n' "$pod" | th_exec sh -c "cat > /etc/sdme/c66@.container"
printf '[Container]\nPod=%s@%%i.pod\n' "$pod" | th_exec sh -c "cat > /etc/sdme/s66@.container"
require_in "daemon-reload" systemctl daemon-reload
th_exec systemctl cat "sdme-pod-$pod@.service" "sdme-s66@.service" | grep -E '^(ExecStart|ExecStop|Requires|BindsTo)=' || true
assert_eq "the template's unit file is generated" "sdme-pod-$pod@.service" \
	"$(th_exec sh -c "basename \$(systemctl show -P FragmentPath sdme-pod-$pod@b.service)" 2>&1 || true)"

step "start the four container instances: the pod instances come up first"
for u in $units; do
	require_in "systemctl start $u" timeout 180 systemctl start "$u"
done
for i in a b; do
	assert_eq "sdme-pod-$pod@$i active" active "$(th_exec systemctl is-active "sdme-pod-$pod@$i" 2>&1 || true)"
	assert_eq "/run/sdme/pods/$pod@$i/netns is on nsfs" nsfs \
		"$(th_exec stat -f -c %T "/run/sdme/pods/$pod@$i/netns" 2>&1 || true)"
done
ino_a=$(net_pod_ino "$pod@a")
ino_b=$(net_pod_ino "$pod@b")
assert_match "$pod@a is pinned" '^[0-9]+$' "$ino_a"
[ "$ino_a" != "$ino_b" ] || fail "$pod@a and $pod@b share one namespace ($ino_a)"
for m in c66-x c66-y s66-a; do
	assert_eq "$m's leader is in $pod@a's namespace" "net:[$ino_a]" "$(net_leader_ns "$m")"
done
assert_eq "s66-b's leader is in $pod@b's namespace" "net:[$ino_b]" "$(net_leader_ns s66-b)"

step "a server on 127.0.0.1:$port in c66-x"
require "start the listener in c66-x" net_serve c66-x srv66 "$port" pod-tpl-hello
net_await c66-x "$port" pod-tpl-hello || fail "the listener in c66-x never answered on 127.0.0.1:$port"
assert_eq "c66-y (Pod=$pod@a.pod) reaches it" pod-tpl-hello "$(net_fetch c66-y "$port")"
assert_eq "s66-a (Pod=$pod@%i.pod, instance a) reaches it" pod-tpl-hello "$(net_fetch s66-a "$port")"
assert_eq "s66-b (in $pod@b) does not reach it" "" "$(net_fetch s66-b "$port")"

step "systemctl start sdme-pod-$pod@zzz: an undeclared pod instance"
require_in "systemctl start sdme-pod-$pod@zzz" timeout 60 systemctl start "sdme-pod-$pod@zzz"
assert_eq "/run/sdme/pods/$pod@zzz/netns is on nsfs" nsfs \
	"$(th_exec stat -f -c %T "/run/sdme/pods/$pod@zzz/netns" 2>&1 || true)"
require_in "systemctl stop sdme-pod-$pod@zzz" timeout 60 systemctl stop "sdme-pod-$pod@zzz"
check_in "the pin of $pod@zzz is gone" sh -c "! test -e /run/sdme/pods/$pod@zzz"

step "stop the pod instances: their members stop, nothing is left in /run/sdme/pods"
require_in "systemctl stop sdme-pod-$pod@a sdme-pod-$pod@b" timeout 180 systemctl stop "sdme-pod-$pod@a" "sdme-pod-$pod@b"
for u in $units; do
	assert_eq "$u inactive after its pod stopped" inactive "$(th_exec systemctl is-active "$u" 2>&1 || true)"
done
for m in $machines; do
	th_unmounted "$m" || fail "overlay of $m still mounted after the pod stopped"
done
check_in "nothing left in /run/sdme/pods" sh -c "! test -e /run/sdme/pods"
