# shellcheck shell=bash
# shellcheck disable=SC2016 # snippets expand inside the test host
# 82-cli-pod-templates: `sdme pod` on pod templates (sdme.pod(5),
# TEMPLATES).
# - pod new g82@ writes the template /etc/sdme/g82@.pod and reloads (its
#   instances' units load); pod new of an instance, or of a template with
#   --enable, is refused with one line and writes nothing;
# - a container template m82@ with Pod=g82@%i.pod, instance a started:
#   pod ls shows the template (state "template") and the running instance
#   g82@a with its member m82@a, in the table and in --json;
# - pod rm g82@ is refused while m82@a runs (named, nothing changed);
#   pod rm -f g82@ stops m82@a and the pod instance and removes the
#   template and its drop-ins, noting the member's file.

tpl=g82
ct=m82

on_cleanup sh -c "rm -rf /etc/sdme/$tpl@.pod /etc/sdme/$tpl@.pod.d /etc/sdme/$tpl@x.pod /etc/sdme/h82@.pod /etc/sdme/$ct@.container /var/lib/sdme/containers/$ct-a; systemctl daemon-reload"
on_cleanup sh -c "systemctl stop sdme-$ct@a sdme-pod-$tpl@a; systemctl reset-failed 'sdme-*' 'sdme-prepare@*' 2>/dev/null; true"

step "sdme pod new of a template"
require_in "sdme pod new $tpl@" sdme pod new "$tpl@"
assert_eq "$tpl@.pod: the header and [Pod]" "# Made by \`sdme pod new\`. An ordinary sdme.pod(5) file: edit it
# freely, then run \`systemctl daemon-reload\`.
[Pod]" "$(th_exec cat "/etc/sdme/$tpl@.pod" 2>&1)"
assert_eq "an instance's unit loads from the template (pod new reloaded)" "loaded sdme-pod-$tpl@.service" \
	"$(th_exec sh -c "systemctl show -P LoadState sdme-pod-$tpl@x.service; basename \$(systemctl show -P FragmentPath sdme-pod-$tpl@x.service)" 2>&1 | paste -sd' ')"
assert_eq "a second pod new $tpl@: refused" "1 sdme: pod $tpl@ exists already: /etc/sdme/$tpl@.pod" \
	"$(out_rc sdme pod new "$tpl@")"
assert_eq "pod new of an instance: refused, one line" \
	"1 sdme: '$tpl@x' is an instance of the template $tpl@.pod: it needs no file (a container joins it with Pod=$tpl@x.pod; make the template with sdme pod new $tpl@)" \
	"$(out_rc sdme pod new "$tpl@x")"
assert_eq "pod new of a template with --enable: refused, one line" \
	"1 sdme: a template is not enabled: its instances start with their members (enable a container with Pod=h82@INSTANCE.pod)" \
	"$(out_rc sdme pod new h82@ --enable)"
check_in "no file for either, no temporary file" sh -c "! ls -A /etc/sdme | grep -q -e '^$tpl@x' -e '^h82@' -e '^\.'"

step "a container template with Pod=$tpl@%i.pod, instance a running; pod ls"
printf '[Container]\nPod=%s@%%i.pod\n' "$tpl" | th_exec sh -c "cat > /etc/sdme/$ct@.container"
th_exec mkdir -p "/etc/sdme/$tpl@.pod.d"
printf '[Unit]\nDescription=pod template 82\n' | th_exec sh -c "cat > /etc/sdme/$tpl@.pod.d/10-d.conf"
require_in "daemon-reload" systemctl daemon-reload
require_in "start sdme-$ct@a" timeout 180 systemctl start "sdme-$ct@a"
ls_out=$(th_exec sdme pod ls 2>&1)
printf '%s\n' "$ls_out"
assert_match "pod ls: the template, its members" "(^|"$'\n'")$tpl@ +template +$ct@a \(active\)" "$ls_out"
assert_match "pod ls: the running instance, its member" $'\n'"$tpl@a +active +$ct@a \(active\)" "$ls_out"
assert_eq "pod ls --json: template and instance" "$tpl@:template:$ct@a=active $tpl@a:active:$ct@a=active" \
	"$(th_exec sdme pod ls --json | th_exec python3 -c "
import json, sys
print(' '.join(p['name'] + ':' + p['state'] + ':' + ','.join(m['name'] + '=' + m['state'] for m in p['members'])
               for p in json.load(sys.stdin) if p['name'].startswith('$tpl@')))")"

step "pod rm of the template: refused while an instance's member runs, then -f"
assert_eq "pod rm $tpl@: refused, the member named" \
	"1 sdme: pod template $tpl@.pod has instances with running members: $ct@a; stop them first or use pod rm -f" \
	"$(out_rc sdme pod rm "$tpl@")"
check_in "the template is still there" test -s "/etc/sdme/$tpl@.pod"
assert_eq "$ct@a still runs" active "$(th_exec systemctl is-active "sdme-$ct@a" 2>&1 || true)"
out=$(out_rc timeout 180 sdme pod rm -f "$tpl@")
printf '%s\n' "$out"
assert_match "pod rm -f $tpl@: exit 0, a note on the member" "^0 note: $ct@a still name an instance of $tpl@.pod" "$out"
assert_eq "$ct@a stopped" inactive "$(th_exec systemctl is-active "sdme-$ct@a" 2>&1 || true)"
assert_eq "the pod instance stopped" inactive "$(th_exec systemctl is-active "sdme-pod-$tpl@a" 2>&1 || true)"
check_in "the template and its drop-ins are gone" sh -c "test ! -e /etc/sdme/$tpl@.pod -a ! -e /etc/sdme/$tpl@.pod.d"
check_in "nothing left in /run/sdme/pods" sh -c "! ls /run/sdme/pods 2>/dev/null | grep -q $tpl"
assert_match "pod rm of a template that is gone" "^1 sdme: no pod $tpl@ \(no $tpl@.pod on the search path\)\$" \
	"$(out_rc sdme pod rm "$tpl@")"
