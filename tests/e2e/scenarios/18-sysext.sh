# shellcheck shell=bash
# shellcheck disable=SC2016 # snippets expand inside the test host
# 18-sysext: sdme itself from a systemd-sysext extension (sdme.container(5),
# "IMAGE-BASED SYSTEMS"). The harness's `make install` is removed from the
# base /usr first (put back at the end, as 16 does); the extension is a
# directory /run/extensions/sdme18 holding what `make install DESTDIR=`
# lays out under usr/ (generator, helpers, sdme-import, sdme, units,
# tmpfiles), usr/lib/sdme/web.container, an invalid package file
# usr/lib/sdme/bad18.container, and its extension-release file.
# - merged and reloaded: the generator, the static units and the tmpfiles
#   file are seen through the merged /usr; the invalid file is reported
#   with its path and line (its error unit) and sdme-web starts and boots;
#   its service is ordered to stop before a shutdown's unmerge;
#   stopped, unmerged and reloaded: its units are gone, nothing is mounted;
# - unmerged while sdme-web runs (bad input): the container keeps running
#   under a unit that has lost its file (systemd's defaults: no
#   ExecStopPost=, KillMode=control-group); what sdme(5) tells the admin to
#   do then is checked: merge again and reload (the container's own unit
#   is back, same MainPID), stop it (clean: overlay unmounted), unmerge;
# - merged by starting systemd-sysext.service and unmerged by stopping it
#   while sdme-web runs: the extension's drop-in (PartOf=) stops sdme-web
#   cleanly before the unmerge.
# Raw images in /var/lib/extensions need loop devices, which the test host
# (an nspawn container) does not have: directories only.

ext=/run/extensions/sdme18
stage=/var/tmp/sdme18-ext
web=/var/lib/sdme/containers/web
# Out here, after the cleanups inside (which unmerge): the harness's
# installation back for the scenarios that follow.
trap 'e2e__run_cleanups; th_install' EXIT
on_cleanup sh -c "rm -rf $ext $stage $web; systemctl daemon-reload"
on_cleanup sh -c "systemd-sysext merge >/dev/null 2>&1; systemctl daemon-reload; systemctl stop sdme-web; systemctl stop systemd-sysext.service; systemd-sysext unmerge >/dev/null 2>&1; systemctl reset-failed 'sdme-*' 'var-lib-sdme-*' 2>/dev/null; true"

# prop UNIT PROPERTY
prop() { th_exec systemctl show -p "$2" --value "$1" 2>&1 || true; }
# booted MACHINE: its systemd finished booting.
booted() {
	assert_match "$1 booted" '^(running|degraded)$' \
		"$(th_exec timeout 60 systemctl -M "$1" is-system-running --wait 2>&1 || true)"
}
# merge: systemd-sysext merge, then the reload that makes the generator run
# (systemd >= 255 reloads by itself; 252 does not).
merge() {
	require_in "systemd-sysext merge" systemd-sysext merge
	require_in "daemon-reload" systemctl daemon-reload
}
unmerge() {
	require_in "systemd-sysext unmerge" systemd-sysext unmerge
	require_in "daemon-reload" systemctl daemon-reload
}
# sysext_mounts: /usr or /opt mounted (the merged hierarchies).
sysext_mounts() { th_exec findmnt -rn -o TARGET,FSTYPE 2>&1 | grep -E "^/(usr|opt) " || true; }

step "the extension: make install DESTDIR=, web.container, extension-release"
rm -rf "${TH_ROOT:?}$stage"
require "make install DESTDIR=$TH_ROOT$stage" make -s -C "$TH_REPO" --no-print-directory install DESTDIR="$TH_ROOT$stage"
# sysext merges /usr and /opt only: the AppArmor profile (/etc) cannot
# come from it.
rm -r "${TH_ROOT:?}$stage/etc"
mkdir -p "$TH_ROOT$stage/usr/lib/sdme" "$TH_ROOT$stage/usr/lib/extension-release.d"
printf '[Container]\n' >"$TH_ROOT$stage/usr/lib/sdme/web.container"
# An invalid package file beside it (a relative Bind= source).
printf '[Container]\nBind=srv/x:/srv\n' >"$TH_ROOT$stage/usr/lib/sdme/bad18.container"
# The drop-in of sdme.container(5) for an extension that carries sdme:
# stopping systemd-sysext.service (its ExecStop= unmerges) stops every
# sdme unit first.
mkdir -p "$TH_ROOT$stage/usr/lib/systemd/system/sdme-.service.d"
printf '[Unit]\nPartOf=systemd-sysext.service\nAfter=systemd-sysext.service\n' \
	>"$TH_ROOT$stage/usr/lib/systemd/system/sdme-.service.d/50-sysext.conf"
# ID= and VERSION_ID= of the host (or ID=_any): checked by systemd-sysext.
grep -E '^(ID|VERSION_ID)=' "$TH_ROOT/usr/lib/os-release" >"$TH_ROOT$stage/usr/lib/extension-release.d/extension-release.sdme18"
cat "$TH_ROOT$stage/usr/lib/extension-release.d/extension-release.sdme18"
require_in "move it to $ext" sh -c "mkdir -p /run/extensions && mv $stage $ext"

step "remove the harness's make install from the base /usr"
require "make uninstall DESTDIR=$TH_ROOT" make -s -C "$TH_REPO" --no-print-directory uninstall DESTDIR="$TH_ROOT"
require_in "daemon-reload" systemctl daemon-reload
check_in "no sdme in the base /usr" sh -c '! command -v sdme && ! test -e /usr/lib/systemd/system-generators/sdme-generator && ! test -e /usr/libexec/sdme/sdme-prepare'
assert_eq "sdme-prepare@.service not found" not-found "$(prop sdme-prepare@x.service LoadState)"

step "merge and reload: sdme from the extension"
merge
th_exec systemd-sysext status --no-pager || true
assert_match "/usr is the merged overlay" '^/usr overlay$' "$(sysext_mounts)"
check_in "the generator, the helpers and the CLI through /usr" sh -c \
	'test -x /usr/lib/systemd/system-generators/sdme-generator && test -x /usr/libexec/sdme/sdme-prepare &&
	test -x /usr/libexec/sdme/sdme-boot-wait && test -x /usr/bin/sdme-import && command -v sdme'
# (systemd 252 names it by the /lib symbolic link.)
assert_match "sdme-prepare@.service from the extension" '^(/usr)?/lib/systemd/system/sdme-prepare@\.service$' \
	"$(prop sdme-prepare@web.service FragmentPath)"
check_in "the tmpfiles file is read" sh -c 'systemd-tmpfiles --cat-config | grep -qx "# /usr/lib/tmpfiles.d/sdme.conf"'
check_in "systemd-tmpfiles --create sdme.conf" systemd-tmpfiles --create sdme.conf
assert_eq "sdme-web.service generated from the extension's file" /usr/lib/sdme/web.container \
	"$(prop sdme-web.service SourcePath)"
check_in "the generator wrote it" test -s /run/systemd/generator/sdme-web.service
check_in "sdme sees it" sh -c 'sdme ps --all 2>&1 | grep -w web'
assert_match "the invalid package file: reported with its path and line" \
	"/usr/lib/sdme/bad18\.container has errors: /usr/lib/sdme/bad18\.container:2: Bind=srv/x:/srv: source 'srv/x' is not an absolute path" \
	"$(prop sdme-bad18.service Description)"
# A shutdown's unmerge (systemd-sysext.service's ExecStop=, when it merged
# at boot) comes after every container stopped: it is ordered before
# sysinit.target, which the containers' services are after.
assert_match "systemd-sysext.service is before sysinit.target" '(^| )sysinit\.target( |$)' \
	"$(prop systemd-sysext.service Before)"
assert_match "sdme-web.service is after sysinit.target" '(^| )sysinit\.target( |$)' "$(prop sdme-web.service After)"

step "start sdme-web"
require_in "systemctl start sdme-web" timeout 180 systemctl start sdme-web
assert_eq "sdme-web active" active "$(th_exec systemctl is-active sdme-web 2>&1 || true)"
booted web

step "stop, unmerge, reload: units gone, nothing mounted"
require_in "systemctl stop sdme-web" timeout 60 systemctl stop sdme-web
check "overlay unmounted" th_unmounted web
unmerge
assert_eq "sdme-web.service gone" not-found "$(prop sdme-web.service LoadState)"
assert_eq "sdme-bad18.service gone" not-found "$(prop sdme-bad18.service LoadState)"
assert_eq "sdme-prepare@.service gone" not-found "$(prop sdme-prepare@web.service LoadState)"
assert_eq "nothing merged on /usr or /opt" "" "$(sysext_mounts)"
assert_eq "nothing mounted below /var/lib/sdme" "" \
	"$(th_exec findmnt -rn -o TARGET 2>&1 | grep '^/var/lib/sdme' || true)"
check_in "no generator left" test ! -e /usr/lib/systemd/system-generators/sdme-generator

step "unmerged while sdme-web runs"
merge
require_in "systemctl start sdme-web" timeout 180 systemctl start sdme-web
booted web
pid=$(prop sdme-web.service MainPID)
unmerge
for p in LoadState ActiveState SubState MainPID KillMode ExecStopPost FragmentPath; do
	echo "after unmerge: $p=$(prop sdme-web.service "$p")"
done
# What sdme.container(5) says happens: the container runs on, under a unit
# that has lost its file, so its stop would not be sdme's.
assert_eq "sdme-web still active" active "$(prop sdme-web.service ActiveState)"
assert_eq "same MainPID" "$pid" "$(prop sdme-web.service MainPID)"
assert_eq "its unit has no file" not-found "$(prop sdme-web.service LoadState)"
assert_eq "no ExecStopPost= (the unmount helper is gone with /usr)" "" "$(prop sdme-web.service ExecStopPost)"
check_in "its overlay still mounted" mountpoint -q $web/merged

step "what the admin does: merge again, reload, stop, unmerge"
merge
assert_eq "its own unit is back" /usr/lib/sdme/web.container "$(prop sdme-web.service SourcePath)"
assert_eq "same MainPID under it" "$pid" "$(prop sdme-web.service MainPID)"
assert_eq "KillMode=mixed again" mixed "$(prop sdme-web.service KillMode)"
require_in "systemctl stop sdme-web" timeout 60 systemctl stop sdme-web
check "overlay unmounted, mount unit inactive" th_unmounted web
assert_eq "stopped cleanly (inactive, nspawn exited 0)" inactive/0 \
	"$(prop sdme-web.service ActiveState)/$(prop sdme-web.service ExecMainStatus)"
check_in "record /run/sdme/inuse/web removed" test ! -e /run/sdme/inuse/web
unmerge
assert_eq "sdme-web.service gone" not-found "$(prop sdme-web.service LoadState)"
assert_eq "nothing merged" "" "$(sysext_mounts)"

step "unmerged by stopping systemd-sysext.service: the extension's drop-in stops sdme-web first"
require_in "systemctl start systemd-sysext.service (merges)" systemctl start systemd-sysext.service
require_in "daemon-reload" systemctl daemon-reload
require_in "systemctl start sdme-web" timeout 180 systemctl start sdme-web
booted web
assert_match "sdme-web is PartOf= systemd-sysext.service" '(^| )systemd-sysext\.service( |$)' "$(prop sdme-web.service PartOf)"
require_in "systemctl stop systemd-sysext.service (unmerges)" timeout 120 systemctl stop systemd-sysext.service
assert_eq "sdme-web stopped cleanly first (inactive, nspawn exited 0)" inactive/0 \
	"$(prop sdme-web.service ActiveState)/$(prop sdme-web.service ExecMainStatus)"
check "overlay unmounted, mount unit inactive" th_unmounted web
check_in "record /run/sdme/inuse/web removed" test ! -e /run/sdme/inuse/web
assert_eq "nothing merged" "" "$(sysext_mounts)"
require_in "daemon-reload" systemctl daemon-reload
assert_eq "sdme-web.service gone" not-found "$(prop sdme-web.service LoadState)"
