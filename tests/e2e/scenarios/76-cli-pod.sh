# shellcheck shell=bash
# shellcheck disable=SC2016 # snippets expand inside the test host
# 76-cli-pod: `sdme pod`.
# - pod new writes /etc/sdme/NAME.pod (validated, --enable adds [Install])
#   and reloads: sdme-pod-NAME.service is loaded; a second pod new of the
#   name and a bad name are refused with one line, nothing written;
# - pod ls and pod ls --json show the pod's state and its members' states;
# - pod rm is refused while a member runs (the member named, nothing
#   changed), pod rm -f stops the member and the pod and removes the file
#   and its drop-ins; a vendor file is masked with a /dev/null symlink in
#   /etc/sdme, and the command says so.

pod=px75
m1=pm75
vend=pv75

on_cleanup sh -c "rm -rf /etc/sdme/$pod.pod /etc/sdme/$pod.pod.d /etc/sdme/$m1.container /var/lib/sdme/containers/$m1 /usr/lib/sdme/$vend.pod /etc/sdme/$vend.pod /etc/sdme/bad75.pod; systemctl daemon-reload"
on_cleanup sh -c "systemctl stop sdme-$m1 sdme-pod-$pod sdme-pod-$vend; systemctl reset-failed 'sdme-*' 'sdme-prepare@*' 2>/dev/null; true"

out_rc() {
	local out rc=0
	out=$(th_exec "$@" 2>&1) || rc=$?
	printf '%s %s' "$rc" "$out"
}

step "sdme pod new"
require_in "sdme pod new $pod --enable" sdme pod new "$pod" --enable
# shellcheck disable=SC2016 # the backquotes are the file's text
want='# Made by `sdme pod new`. An ordinary sdme.pod(5) file: edit it
# freely, then run `systemctl daemon-reload`.
[Pod]

[Install]
WantedBy=machines.target'
assert_eq "$pod.pod content" "$want" "$(th_exec cat "/etc/sdme/$pod.pod")"
assert_eq "sdme-pod-$pod.service loaded (pod new reloaded)" loaded \
	"$(th_exec systemctl show -p LoadState --value "sdme-pod-$pod.service")"
assert_eq "a second pod new: refused, the file named" \
	"1 sdme: pod $pod exists already: /etc/sdme/$pod.pod" "$(out_rc sdme pod new "$pod")"
assert_match "a bad name: refused" "^1 sdme: .*pod name" "$(out_rc sdme pod new ../bad75)"
check_in "no file for the bad name, no temporary file" sh -c "! ls -A /etc/sdme | grep -q -e bad75 -e sdme-pod"

step "a member, running; pod ls and pod ls --json"
printf '[Container]\nPod=%s.pod\n' "$pod" | th_exec sh -c "cat > /etc/sdme/$m1.container"
th_exec mkdir -p "/etc/sdme/$pod.pod.d"
printf '[Unit]\nDescription=pod 75\n' | th_exec sh -c "cat > /etc/sdme/$pod.pod.d/10-d.conf"
require_in "daemon-reload" systemctl daemon-reload
require_in "start $m1" timeout 180 systemctl start "sdme-$m1"
ls_out=$(th_exec sdme pod ls 2>&1)
printf '%s\n' "$ls_out"
assert_match "pod ls: the pod active, its member active" "$pod +active +$m1 \(active\)" "$ls_out"
assert_eq "pod ls --json" "active|$m1=active" "$(th_exec sdme pod ls --json | th_exec python3 -c "
import json, sys
p = [x for x in json.load(sys.stdin) if x['name'] == '$pod'][0]
print(p['state'] + '|' + ','.join(m['name'] + '=' + m['state'] for m in p['members']))")"

step "pod rm: refused while a member runs, then -f"
assert_eq "pod rm with a running member: refused, the member named" \
	"1 sdme: pod $pod has running members: $m1; stop them first or use pod rm -f" "$(out_rc sdme pod rm "$pod")"
check_in "the file is still there" test -s "/etc/sdme/$pod.pod"
assert_eq "$m1 still runs" active "$(th_exec systemctl is-active "sdme-$m1" 2>&1 || true)"
out=$(out_rc sdme pod rm -f "$pod")
printf '%s\n' "$out"
assert_match "pod rm -f: exit 0, a note on the member's file" "^0 note: $m1 still name Pod=$pod.pod" "$out"
assert_eq "$m1 stopped" inactive "$(th_exec systemctl is-active "sdme-$m1" 2>&1 || true)"
assert_eq "the pod stopped" inactive "$(th_exec systemctl is-active "sdme-pod-$pod" 2>&1 || true)"
check_in "the file and the drop-ins are gone" sh -c "test ! -e /etc/sdme/$pod.pod -a ! -e /etc/sdme/$pod.pod.d"
assert_match "pod rm of a pod that is gone" "^1 sdme: no pod $pod \(no $pod.pod on the search path\)\$" \
	"$(out_rc sdme pod rm "$pod")"
th_exec rm -f "/etc/sdme/$m1.container"
th_exec rm -rf "/var/lib/sdme/containers/$m1"

step "pod rm of a vendor file masks it"
th_exec mkdir -p /usr/lib/sdme
printf '[Pod]\n' | th_exec sh -c "cat > /usr/lib/sdme/$vend.pod"
require_in "daemon-reload" systemctl daemon-reload
assert_match "pod rm $vend: says it masked the vendor file" \
	"^0 pod $vend is defined by /usr/lib/sdme/$vend.pod, which sdme does not remove: masked it with /etc/sdme/$vend.pod -> /dev/null" \
	"$(out_rc sdme pod rm "$vend")"
assert_eq "the mask" /dev/null "$(th_exec readlink "/etc/sdme/$vend.pod")"
check_in "the vendor file is kept" test -s "/usr/lib/sdme/$vend.pod"
assert_eq "the pod's unit is gone" not-found "$(th_exec systemctl show -p LoadState --value "sdme-pod-$vend.service")"
assert_eq "pod rm of a masked pod: refused" "1 sdme: /etc/sdme/$vend.pod masks pod $vend already" \
	"$(out_rc sdme pod rm "$vend")"
