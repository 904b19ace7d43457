# shellcheck shell=bash
# shellcheck disable=SC2016 # snippets expand inside the test host
# 21-factory-reset: an image-based host with a stateless /var
# (sdme.container(5), "IMAGE-BASED SYSTEMS"). sdme comes from a system
# extension in /var/lib/extensions (the harness's `make install` removed
# from the base /usr, put back at the end as 16 does), merged at boot by
# systemd-sysext.service and followed by the reload unit the man page
# gives (sysext-reload.service in /etc). Two enabled containers
# (WantedBy=machines.target) whose root file system is a digest-pinned
# Image= on a registry (Debian's docker-registry on the test host's
# loopback, plain HTTP, an enabled unit of the host); they run, are
# stopped, /var/lib/sdme is wiped and the test host reboots: both come
# back running, the image imported again at boot, nobody doing anything.
# tmpfiles (sdme.conf from the extension) made /var/lib/sdme again; the
# image unit (After=network-online.target) is ordered after the registry
# by the test's drop-in for every image unit (sdme-image-.service.d).
# The host's /var/lib/sdme of before is moved aside for the wipe and put
# back at the end, for the scenarios that follow.

W=/var/tmp/e2e21
REG=localhost:5021
saved=/var/lib/sdme.e2e21
all="fr21a fr21b"
dropin=/etc/systemd/system/sdme-image-.service.d
regunit=/etc/systemd/system/e2e21-reg.service
ext=/var/lib/extensions/sdme21
stage=/var/tmp/sdme21-ext
reload_unit=/etc/systemd/system/sysext-reload.service

# Out here, after the cleanups inside (which unmerge): the harness's
# installation back for the scenarios that follow.
trap 'e2e__run_cleanups; th_install' EXIT
# Last: the extension away (after the containers stopped, while it was
# there to stop them).
on_cleanup sh -c "systemctl disable --now systemd-sysext.service sysext-reload.service; rm -rf $ext $stage $reload_unit; systemctl daemon-reload; true"
# The state of before back (it holds the first start's too), then this
# scenario's containers, rootfs and blobs removed.
on_cleanup sh -c "rm -rf $W $regunit $dropin; for m in $all; do rm -f /etc/sdme/\$m.container; done
	if [ -d $saved ]; then rm -rf /var/lib/sdme && mv $saved /var/lib/sdme; fi
	rm -rf /var/lib/sdme/containers/fr21a /var/lib/sdme/containers/fr21b /var/lib/sdme/blobs; $(th_rootfs_rm 'base-*')
	systemctl daemon-reload"
on_cleanup sh -c "systemctl stop sdme-fr21a sdme-fr21b 'sdme-image-*'; systemctl disable --now e2e21-reg.service; systemctl reset-failed 'sdme-*' 'sdme-prepare@*' 'e2e21-*' 2>/dev/null; true"

prop() { th_exec systemctl show -p "$2" --value "$1" 2>&1 || true; }
put() { th_exec sh -c "cat > '$1'"; }
booted() {
	assert_match "$1 booted" '^(running|degraded)$' \
		"$(th_exec timeout 90 systemctl -M "$1" is-system-running --wait 2>&1 || true)"
}

step "sdme from /var/lib/extensions/sdme21, merged at boot, the reload unit after it"
rm -rf "${TH_ROOT:?}$stage"
require "make install DESTDIR=$TH_ROOT$stage" make -s -C "$TH_REPO" --no-print-directory install DESTDIR="$TH_ROOT$stage"
rm -r "${TH_ROOT:?}$stage/etc"
mkdir -p "$TH_ROOT$stage/usr/lib/extension-release.d"
grep -E '^(ID|VERSION_ID)=' "$TH_ROOT/usr/lib/os-release" >"$TH_ROOT$stage/usr/lib/extension-release.d/extension-release.sdme21"
require_in "move it to $ext" sh -c "mkdir -p /var/lib/extensions && mv $stage $ext"
require "make uninstall DESTDIR=$TH_ROOT" make -s -C "$TH_REPO" --no-print-directory uninstall DESTDIR="$TH_ROOT"
# The unit of sdme.container(5), "sdme in a system extension".
put "$reload_unit" <<'EOF'
[Unit]
Description=Run the generators of system extensions
DefaultDependencies=no
After=systemd-sysext.service
Before=sysinit.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/bin/systemctl daemon-reload
ExecStart=/usr/bin/systemctl start --no-block machines.target

[Install]
WantedBy=sysinit.target
EOF
require_in "enable systemd-sysext.service sysext-reload.service" systemctl enable systemd-sysext.service sysext-reload.service
require_in "start systemd-sysext.service (merge)" systemctl start systemd-sysext.service
require_in "daemon-reload" systemctl daemon-reload
check_in "sdme from the extension" sh -c 'test -x /usr/lib/systemd/system-generators/sdme-generator && test -x /usr/bin/sdme-import'

step "the registry: an enabled unit of the host, ready once it listens"
th_exec mkdir -p "$W"
put "$W/reg.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $W/reg
http:
  addr: 127.0.0.1:5021
EOF
put "$regunit" <<EOF
[Unit]
Description=e2e 21: a loopback registry

[Service]
ExecStart=/usr/bin/docker-registry serve $W/reg.yml
# Started (forked) is not listening: ready when it accepts connections.
ExecStartPost=/usr/bin/timeout 30 /bin/bash -c 'until : 2>/dev/null >/dev/tcp/127.0.0.1/5021; do sleep 0.1; done'

[Install]
WantedBy=multi-user.target
EOF
# Every image unit (prefix drop-in): the registry first.
th_exec mkdir -p "$dropin"
printf '[Unit]\nWants=e2e21-reg.service\nAfter=e2e21-reg.service\n' | put "$dropin/e2e21-registry.conf"
require_in "daemon-reload" systemctl daemon-reload
require_in "enable --now e2e21-reg" systemctl enable --now e2e21-reg.service

step "a bootable image (the test host's rootfs) pushed with its digest"
require "copy the rootfs tarball in" sh -c "cat '$(th_cache_tarball "$TH_SUITE")' >'$TH_ROOT$W/base.tar'"
require_in "umoci image" sh -c "cd $W && umoci init --layout img && umoci new --image img:base &&
	umoci raw add-layer --image img:base base.tar && rm base.tar"
require_in "skopeo push" skopeo copy -q --dest-tls-verify=false --digestfile "$W/base.digest" \
	"oci:$W/img:base" "docker://$REG/e2e/base:21"
th_exec rm -rf "$W/img"
digest=$(th_exec cat "$W/base.digest")
assert_match "digest" '^sha256:[0-9a-f]{64}$' "$digest"

step "two enabled containers, Image=$REG/e2e/base@$digest"
th_exec mkdir -p /etc/sdme
for m in $all; do
	printf '[Container]\nImage=%s/e2e/base@%s\n\n[Install]\nWantedBy=machines.target\n' "$REG" "$digest" |
		put "/etc/sdme/$m.container"
done
require_in "daemon-reload" systemctl daemon-reload
img=$(prop sdme-fr21a Requires | tr ' ' '\n' | grep -E '^sdme-image-' || true)
rootfs=${img#sdme-image-}
rootfs=${rootfs%.service}
step "image unit $img, rootfs $rootfs"
assert_match "an image unit" '^sdme-image-.+\.service$' "$img"
assert_eq "shared by both" "$img" "$(prop sdme-fr21b Requires | tr ' ' '\n' | grep -E '^sdme-image-' || true)"
assert_match "the image unit after the registry (the drop-in)" '(^| )e2e21-reg\.service( |$)' "$(prop "$img" After)"
assert_match "the image unit after network-online.target (its own)" '(^| )network-online\.target( |$)' "$(prop "$img" After)"
for m in $all; do
	check_in "$m enabled (machines.target.wants)" test -L "/run/systemd/generator/machines.target.wants/sdme-$m.service"
done

step "first start: imported, both boot"
require_in "start both" timeout 600 systemctl start sdme-fr21a sdme-fr21b
for m in $all; do booted "$m"; done

step "factory reset: stop, wipe /var/lib/sdme, reboot"
require_in "stop both" timeout 120 systemctl stop sdme-fr21a sdme-fr21b
for m in $all; do check "$m unmounted" th_unmounted "$m"; done
require_in "wipe /var/lib/sdme (moved aside, to put back at the end)" mv /var/lib/sdme $saved
boot_before=$(th_exec cat /proc/sys/kernel/random/boot_id)
# The import of the image is part of this boot.
TH_BOOT_TIMEOUT=600 require "th_reboot" th_reboot
assert_eq "rebooted" false "$([ "$boot_before" = "$(th_exec cat /proc/sys/kernel/random/boot_id)" ] && echo true || echo false)"

step "after the reboot: both back, imported again"
for m in $all; do
	assert_eq "sdme-$m active, nobody started it" active "$(prop "sdme-$m" ActiveState)"
	booted "$m"
done
assert_match "sdme merged at boot" '^/usr +sdme21 ' "$(th_exec systemd-sysext status --no-pager 2>&1 | grep '^/usr' || true)"
check_in "tmpfiles (sdme.conf of the extension) made /var/lib/sdme/containers" test -d /var/lib/sdme/containers
check_in "the rootfs imported again" test -x "/var/lib/sdme/rootfs/$rootfs/usr/lib/systemd/systemd"
assert_match "its metadata: the pinned digest" "\"digest\": \"$digest\"" \
	"$(th_exec cat "/var/lib/sdme/meta/$rootfs.json" 2>&1)"
assert_eq "$img active" active "$(prop "$img" ActiveState)"
reg_up=$(prop e2e21-reg.service ActiveEnterTimestampMonotonic)
imp_start=$(prop "$img" ExecMainStartTimestampMonotonic)
step "registry ready at $reg_up µs, import started at $imp_start µs"
if ! { [ -n "$reg_up" ] && [ -n "$imp_start" ] && [ "$reg_up" -gt 0 ] && [ "$imp_start" -ge "$reg_up" ]; }; then
	fail "the import did not start after the registry was ready ($imp_start < $reg_up)"
fi
check_in "no failed sdme or registry units" sh -c '[ -z "$(systemctl list-units --failed --no-legend --plain "sdme*" "var-lib-sdme*" "e2e21*")" ]'

step "stop both"
require_in "stop both" timeout 120 systemctl stop sdme-fr21a sdme-fr21b
for m in $all; do check "$m unmounted" th_unmounted "$m"; done
