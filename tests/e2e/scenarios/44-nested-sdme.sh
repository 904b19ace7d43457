# shellcheck shell=bash
# shellcheck disable=SC2016 # snippets expand inside the test host or guests
# 44-nested-sdme: a rootfs imported from a host that has .container files
# (`sdme-import / NAME`) does not start the host's containers inside its
# guests (issue 20, item 3):
# - the test host has an enabled e2e44on.container ([Install]
#   WantedBy=machines.target, a rootfs that does not exist, so that a
#   start of it inside a guest fails at once) when it is imported;
# - containers on that rootfs, plain and PrivateUsers=yes, come up
#   "running", not "degraded"; /etc/sdme inside is empty and the guest's
#   generator made no unit of the host's file; upper/etc/sdme is opaque;
# - a file the guest writes to its own /etc/sdme stays across a restart;
# - NestedSdme=yes (a drop-in, on the same container): the rootfs's file is
#   visible next to the guest's own, and the guest's generator loads it
#   (its failed start is what the default prevents); removing the key
#   hides it again and the guest is back to "running".

rf=nest44
n=n44       # default
p=p44       # PrivateUsers=yes
on=e2e44on  # the host's enabled container, copied by the import

on_cleanup sh -c "rm -rf /var/lib/sdme/rootfs/$rf /var/lib/sdme/containers/$n /var/lib/sdme/containers/$p /etc/sdme/$n.container /etc/sdme/$n.container.d /etc/sdme/$p.container /etc/sdme/$on.container && systemctl daemon-reload"
on_cleanup sh -c "systemctl stop sdme-$n sdme-$p; systemctl reset-failed 'sdme-*' 'sdme-prepare@*' 2>/dev/null; true"

# state M: the guest's boot state (running, degraded, ...).
state() { th_exec timeout 60 systemctl -M "$1" is-system-running 2>&1 || true; }
# in_etc_sdme M: the names in /etc/sdme inside M, on one line.
in_etc_sdme() { th_run_in "$1" ls -A /etc/sdme 2>&1 | tr -d '\r' | tr '\n' ' ' | sed 's/ $//' || true; }

step "import the test host while it has an enabled $on.container"
th_exec mkdir -p /etc/sdme
printf '[Container]\nRootfs=e2e44missing\n\n[Install]\nWantedBy=machines.target\n' |
	th_exec sh -c "cat > /etc/sdme/$on.container"
t0=$(date +%s%N)
require_in "sdme-import / $rf" timeout 900 sdme-import / "$rf"
step "imported / in $((($(date +%s%N) - t0) / 1000000)) ms"
th_exec rm -f "/etc/sdme/$on.container"
check_in "control: the rootfs holds the host's $on.container" test -f "/var/lib/sdme/rootfs/$rf/etc/sdme/$on.container"

printf '[Container]\nRootfs=%s\n' "$rf" | th_exec sh -c "cat > /etc/sdme/$n.container"
printf '[Container]\nRootfs=%s\nPrivateUsers=yes\n' "$rf" | th_exec sh -c "cat > /etc/sdme/$p.container"
require_in "daemon-reload" systemctl daemon-reload
for m in "$n" "$p"; do
	require_in "start sdme-$m" timeout 180 systemctl start "sdme-$m"
done

step "the host's container stays out of the guests"
for m in "$n" "$p"; do
	st=$(state "$m")
	[ "$st" = running ] || th_exec systemctl -M "$m" list-units --failed --plain --no-legend || true
	assert_eq "$m is running (not degraded)" running "$st"
	assert_eq "/etc/sdme in $m is empty" "" "$(in_etc_sdme "$m")"
	assert_eq "sdme-$on.service not generated in $m" not-found \
		"$(th_exec systemctl -M "$m" show -p LoadState --value "sdme-$on.service" 2>&1 || true)"
	assert_eq "upper/etc/sdme of $m is opaque" y \
		"$(th_exec getfattr --absolute-names --only-values -n trusted.overlay.opaque "/var/lib/sdme/containers/$m/upper/etc/sdme" 2>&1 || true)"
done

step "the guest's own /etc/sdme file stays"
check_in "write /etc/sdme/own44.container inside $n" \
	systemd-run -q --collect -M "$n" --wait --pipe sh -c 'printf "[Container]\n" > /etc/sdme/own44.container'
require_in "stop sdme-$n" timeout 120 systemctl stop "sdme-$n"
require_in "start sdme-$n again" timeout 180 systemctl start "sdme-$n"
assert_eq "/etc/sdme in $n after a restart: the guest's own file only" own44.container "$(in_etc_sdme "$n")"
assert_eq "$n is running after the restart" running "$(state "$n")"

step "NestedSdme=yes on the same container: the rootfs's files show"
require_in "stop sdme-$n" timeout 120 systemctl stop "sdme-$n"
th_exec mkdir -p "/etc/sdme/$n.container.d"
printf '[Container]\nNestedSdme=yes\n' | th_exec sh -c "cat > /etc/sdme/$n.container.d/nested.conf"
require_in "daemon-reload (NestedSdme=yes)" systemctl daemon-reload
check_in "sdme-prepare gets --nested-sdme" sh -c "systemctl cat 'var-lib-sdme-containers-$n-merged.mount' | grep -q -- ' --nested-sdme '"
require_in "start sdme-$n (NestedSdme=yes)" timeout 180 systemctl start "sdme-$n"
assert_eq "/etc/sdme in $n with NestedSdme=yes" "$on.container own44.container" "$(in_etc_sdme "$n")"
assert_eq "the guest's generator loads sdme-$on.service" loaded \
	"$(th_exec systemctl -M "$n" show -p LoadState --value "sdme-$on.service" 2>&1 || true)"
step "$n with NestedSdme=yes is $(state "$n") (its copy of $on fails to start: what the default prevents)"

step "the key removed: hidden again"
require_in "stop sdme-$n" timeout 120 systemctl stop "sdme-$n"
th_exec rm -rf "/etc/sdme/$n.container.d"
require_in "daemon-reload (key removed)" systemctl daemon-reload
require_in "start sdme-$n (key removed)" timeout 180 systemctl start "sdme-$n"
assert_eq "/etc/sdme in $n: the guest's own file only again" own44.container "$(in_etc_sdme "$n")"
assert_eq "$n is running again" running "$(state "$n")"

step "stop"
require_in "stop" timeout 120 systemctl stop "sdme-$n" "sdme-$p"
for m in "$n" "$p"; do
	th_unmounted "$m" || fail "overlay of $m still mounted after stop"
done
