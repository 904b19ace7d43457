# shellcheck shell=bash
# 52-build: the builder (issue 15). A three-step .build from the test
# host's own tree (no network): Copy= a .deb made here with dpkg-deb,
# Run=dpkg -i it, Run= enabling its service. `systemctl start` of a
# container with Rootfs=NAME.build builds, then boots with the service
# running; the build unit does not stay active, so a second start is a
# no-op ("up to date") and editing the last step then only restarting
# the container rebuilds it, the first two steps from the cache; two
# containers on one build: restarting one while the other runs on the
# old result fails at once (in use), stopping both and starting them
# together builds once for both; a failing Run= fails the start with
# file:line and keeps the previous rootfs, which still boots.

name=b52
dir=/etc/sdme/$name
file=/etc/sdme/$name.build
cfile=/etc/sdme/$name.container
other=${name}b
ofile=/etc/sdme/$other.container
bunit=sdme-build-$name.service
st=/var/lib/sdme
on_cleanup sh -c "rm -rf $file $cfile $ofile $dir $st/containers/$name $st/containers/$other $st/build; $(th_rootfs_rm "$name") systemctl daemon-reload"
on_cleanup sh -c "systemctl stop sdme-$name.service sdme-$other.service $bunit; systemctl reset-failed sdme-$name.service sdme-$other.service $bunit sdme-build-$name-boot.service sdme-prepare@$name.service 2>/dev/null; true"

# mark: remember where the journal ends now; build_log: what the build
# unit logged since the mark (--sync: what the builder wrote to its
# stdout stream before it exited is in the journal). Not by invocation
# ID: journald finds it in the cgroup, which an up-to-date run of a few
# milliseconds may have left already (-u is the stream's own unit name).
mark() {
	cursor=$(th_exec journalctl -q -n 1 --show-cursor -o cat 2>&1 | sed -n 's/^-- cursor: //p')
}
build_log() {
	th_exec journalctl --sync
	th_exec journalctl -q -o cat -u "$bunit" --after-cursor="$cursor" 2>&1 || true
}
# restart: `systemctl restart` of the container alone (no reload: the
# builder reads the file again at every run of the build unit)
restart() {
	local t rc=0
	mark
	t=$(date +%s%N)
	th_exec timeout 300 systemctl restart "sdme-$name.service" || rc=$?
	step "restarted in $(ms "$t") ms"
	return "$rc"
}
ms() { echo $((($(date +%s%N) - $1) / 1000000)); }
steps() {
	printf '[Build]\nCopy=%s/hello52.deb:/root/\nRun=dpkg -i /root/hello52.deb\n%s\n' "$name" "$1" | th_exec sh -c "cat > $file"
}

step "a .deb with a service, made with dpkg-deb"
require_in "make hello52.deb" sh -c "set -e; p=\$(mktemp -d); mkdir -p \$p/DEBIAN \$p/usr/lib/systemd/system $dir; chmod 755 \$p \$p/DEBIAN
printf 'Package: hello52\nVersion: 1.0\nArchitecture: all\nMaintainer: sdme <sdme@example.org>\nDescription: sdme e2e 52\n' > \$p/DEBIAN/control
printf '[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n' > \$p/usr/lib/systemd/system/hello52.service
dpkg-deb --build \$p $dir/hello52.deb >/dev/null; rm -rf \$p"
steps "Run=systemctl enable hello52.service"
printf '[Container]\nRootfs=%s.build\n' "$name" | th_exec sh -c "cat > $cfile"
require_in "daemon-reload" systemctl daemon-reload

step "the first start builds, then boots with the package's service running"
mark
t0=$(date +%s%N)
check_in "systemctl start sdme-$name (builds)" timeout 300 systemctl start "sdme-$name.service"
step "cold build and boot: $(ms "$t0") ms"
log=$(build_log)
printf '%s\n' "$log"
assert_match "the build log shows the steps" "step 3/3 $file:4: Run=systemctl enable hello52.service" "$log"
assert_match "the build log says it was built" "built rootfs $name \(3 steps, 0 from the cache" "$log"
assert_eq "hello52 runs inside" active "$(th_run_in "$name" systemctl is-active hello52.service 2>&1 || true)"
assert_eq "the build unit does not stay active" inactive "$(th_exec systemctl is-active "$bunit" 2>&1 || true)"
meta=$(th_exec cat "$st/meta/$name.json" 2>&1 || true)
assert_match "the metadata records the build" "\"file\": \"$file\"" "$meta"
keys=$(th_exec sed -n 's/.*"key": "\([0-9a-f]*\)".*/\1/p' "$st/meta/$name.json" 2>&1 || true)
assert_eq "three step layers" 3 "$(echo "$keys" | grep -c .)"
for k in $keys; do
	l=$st/build/layers/$k
	assert_eq "no journal, wtmp or machine-id of the build container in layer ${k:0:12}" "" \
		"$(th_exec sh -c "ls -d $l/var/log/journal/* $l/var/log/wtmp $l/etc/machine-id 2>/dev/null" || true)"
done

step "a second start does not build again"
t0=$(date +%s%N)
restart || fail "second start failed"
step "start with an up-to-date build: $(ms "$t0") ms"
assert_match "the build log says up to date" "rootfs $name is up to date \(3 steps, checked in [0-9]+ ms\)" "$(build_log)"

step "editing the last step and only restarting the container reuses the first two"
steps "Run=systemctl enable hello52.service && echo v2 > /etc/b52-version"
t0=$(date +%s%N)
restart || fail "start after editing the last step failed"
step "rebuild of the last step and boot: $(ms "$t0") ms"
log=$(build_log)
printf '%s\n' "$log"
assert_match "step 1 from the cache" "step 1/3 $file:2: Copy=[^ ]*: from the cache" "$log"
assert_match "step 2 from the cache" "step 2/3 $file:3: Run=dpkg -i /root/hello52.deb: from the cache" "$log"
assert_match "2 from the cache" "built rootfs $name \(3 steps, 2 from the cache" "$log"
assert_eq "the change is in the new rootfs" v2 "$(th_run_in "$name" cat /etc/b52-version 2>&1 || true)"

step "two containers on one build"
printf '[Container]\nRootfs=%s.build\n' "$name" | th_exec sh -c "cat > $ofile"
require_in "daemon-reload" systemctl daemon-reload
mark
check_in "start $other beside the running $name" timeout 300 systemctl start "sdme-$other.service"
assert_match "up to date for $other" "rootfs $name is up to date" "$(build_log)"
steps "Run=systemctl enable hello52.service && echo v3 > /etc/b52-version"
mark
t0=$(date +%s%N)
check_in_status 1 "restarting $name alone while $other runs on the old result fails" \
	timeout 300 systemctl restart "sdme-$name.service"
step "refused in $(ms "$t0") ms"
log=$(build_log)
printf '%s\n' "$log"
assert_match "the build log names the user" "rootfs $name .* is in use by .*containers/$other/merged.* before rebuilding it" "$log"
assert_eq "no step ran" "" "$(printf '%s\n' "$log" | grep '^step ' || true)"
assert_eq "$other still runs" active "$(th_exec systemctl is-active "sdme-$other.service" 2>&1 || true)"
check_in "the rootfs is still v2" grep -qx v2 "$st/rootfs/$name/etc/b52-version"
require_in "stop $other" systemctl stop "sdme-$other.service"
t0=$(date +%s%N)
check_in "start both together" timeout 300 systemctl start "sdme-$name.service" "sdme-$other.service"
step "rebuilt and both started in $(ms "$t0") ms"
for m in "$name" "$other"; do
	assert_eq "$m runs the new rootfs" v3 "$(th_run_in "$m" cat /etc/b52-version 2>&1 || true)"
done
th_exec journalctl --sync
log=$(th_exec journalctl -q -o cat -u "$bunit" --since "@$((t0 / 1000000000))" 2>&1 || true)
printf '%s\n' "$log"
assert_match "2 steps from the cache" "built rootfs $name \(3 steps, 2 from the cache" "$log"
assert_eq "built once for both" 1 "$(printf '%s\n' "$log" | grep -c '^built rootfs' || true)"
require_in "remove $other" sh -c "systemctl stop sdme-$other.service && rm -r $ofile $st/containers/$other && systemctl daemon-reload"

step "a failing Run= fails the start with file:line; the previous rootfs is kept"
t0=$(date +%s%N)
th_exec systemctl stop "sdme-$name.service"
step "stopped in $(ms "$t0") ms"
require_in "add a failing step" sh -c "echo 'Run=echo boom52; exit 7' >> $file"
t0=$(date +%s%N)
check_in_status 1 "start fails" timeout 300 systemctl start "sdme-$name.service"
step "failed in $(ms "$t0") ms"
th_exec journalctl --sync
log=$(th_exec journalctl -q -o cat -u "$bunit" 2>&1 || true)
assert_match "the journal names file:line and the status" "$file:5: Run=echo boom52; exit 7: exited with status 7" "$log"
assert_match "the journal shows the step's output" "boom52" "$log"
check_in "the previous rootfs is there" grep -qx v3 "$st/rootfs/$name/etc/b52-version"
check_in "no build mount, container or unfinished layer" sh -c "! test -e /run/sdme/build/$name && ! test -e $st/build/layers/.tmp-$name && ! systemctl is-active -q sdme-build-$name-boot.service && ! findmnt -rn -o TARGET | grep -q /run/sdme/build"
check_in "no staging directory" sh -c "! ls -d $st/import/$name.* 2>/dev/null | grep -v -e '\.lock\$' -e '\.use\$' | grep -q ."
require_in "drop the failing step" sed -i "/^Run=echo boom52/d" "$file"
restart || fail "start of the previous rootfs failed"
assert_match "up to date again" "rootfs $name is up to date" "$(build_log)"
assert_eq "the previous rootfs boots: v3" v3 "$(th_run_in "$name" cat /etc/b52-version 2>&1 || true)"
th_exec systemctl stop "sdme-$name.service" "$bunit"

step "stopping the build unit during a Run= stops the build container, leaves only finished layers"
before=$(th_exec ls -A "$st/build/layers" 2>&1 | sort)
require_in "add a long step" sh -c "echo 'Run=sleep 300' >> $file && systemctl daemon-reload"
require_in "start the build" systemctl start --no-block "$bunit"
# Bounded wait for a condition: the build container is up (its unit
# becomes active once booted) and the step is running in it.
for _ in $(seq 1 300); do
	th_exec systemctl is-active -q "sdme-build-$name-boot.service" &&
		th_exec pgrep -f "sleep 300" >/dev/null && break
	sleep 0.2
done
check_in "the step is running" sh -c 'pgrep -f "sleep 300" >/dev/null'
t0=$(date +%s%N)
require_in "systemctl stop $bunit" timeout 120 systemctl stop "$bunit"
step "interrupted in $(ms "$t0") ms"
check_in "no build container" sh -c "! systemctl is-active -q sdme-build-$name-boot.service && ! machinectl show sdme-build-$name >/dev/null 2>&1"
check_in "no build mount, no unfinished layer" sh -c "! test -e /run/sdme/build/$name && ! findmnt -rn -o TARGET | grep -q /run/sdme/build"
assert_eq "the layers are those of the finished steps" "$before" "$(th_exec ls -A "$st/build/layers" 2>&1 | sort)"
check_in "the rootfs is the previous one" grep -qx v3 "$st/rootfs/$name/etc/b52-version"
