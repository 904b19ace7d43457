# shellcheck shell=bash
# shellcheck disable=SC2016 # snippets expand inside the test host
# 16-deb-package: `make deb` builds a lintian-clean package that installs
# with apt instead of `make install`. The harness's own installation is
# removed first (`make uninstall`), so the host has no sdme file but the
# package's; it is put back at the end. Installed, every binary answers
# --version with the package's version, the README's container boots
# (the postinst reloaded: no reboot, no reload by hand); `apt-get remove`
# stops the running container (its overlay unmounted), removes every file
# the package installed but its conffile and takes the units away;
# `purge` removes the conffile and leaves /var/lib/sdme, which is data.

deb_dir=$TH_REPO/target/dist
# Out here, after the cleanups inside (which remove the package): the
# harness's installation back for the scenarios that follow.
trap 'e2e__run_cleanups; th_install' EXIT
on_cleanup sh -c "rm -rf /var/lib/sdme/containers/hello /etc/sdme/hello.container /var/tmp/sdme_*.deb /var/tmp/deb-files; systemctl daemon-reload"
on_cleanup sh -c "systemctl stop sdme-hello 2>/dev/null; dpkg -s sdme >/dev/null 2>&1 && apt-get purge -y -q sdme >/dev/null; true"

step "make deb (lintian runs as part of it)"
require "make deb" make -C "$TH_REPO" --no-print-directory deb
deb=$(find "$deb_dir" -maxdepth 1 -name 'sdme_*.deb' | sort | tail -1)
[ -n "$deb" ] || fail "no sdme_*.deb in $deb_dir"
version=$(dpkg-deb -f "$deb" Version)
echo "package $deb, version $version"

step "remove the harness's make install, then apt install the package"
require "make uninstall DESTDIR=$TH_ROOT" make -C "$TH_REPO" --no-print-directory uninstall DESTDIR="$TH_ROOT"
require_in "daemon-reload" systemctl daemon-reload
check_in "no sdme binary left" sh -c '! command -v sdme && ! test -e /usr/lib/systemd/system-generators/sdme-generator'
cp "$deb" "$TH_ROOT/var/tmp/"
require_in "rmdir /var/lib/sdme/rootfs (the postinst's tmpfiles makes it again)" rmdir /var/lib/sdme/rootfs
require_in "apt install ./$(basename "$deb")" sh -c "cd /var/tmp && apt-get install -y -q ./$(basename "$deb")"
assert_eq "dpkg: installed" "install ok installed $version" \
	"$(th_exec dpkg-query -W -f '${Status} ${Version}' sdme)"
for b in /usr/bin/sdme /usr/bin/sdme-import /usr/lib/systemd/system-generators/sdme-generator \
	/usr/libexec/sdme/sdme-prepare /usr/libexec/sdme/sdme-boot-wait /usr/libexec/sdme/sdme-pod \
	/usr/libexec/sdme/sdme-drop-privs; do
	assert_eq "$b --version" "$(basename "$b") $version" "$(th_exec "$b" --version 2>&1)"
done
check_in "man page, completion, tmpfiles, sysctl.d, AppArmor profile, units installed" sh -c \
	'test -s /usr/share/man/man5/sdme.container.5.gz && test -s /usr/share/bash-completion/completions/sdme &&
	test -s /usr/lib/tmpfiles.d/sdme.conf && test -s /etc/apparmor.d/sdme-default &&
	test -s /usr/lib/sysctl.d/60-sdme.conf &&
	test -s /usr/lib/systemd/system/sdme-prepare@.service'
check_in "tmpfiles applied by the postinst" test -d /var/lib/sdme/rootfs
th_exec dpkg -L sdme | sort >"$TH_ROOT/var/tmp/deb-files"

step "the README's container boots from the package"
th_copy_in "$TH_REPO" /tmp/deb-examples examples
on_cleanup rm -rf /tmp/deb-examples
require_in "install examples/hello.container" install -Dm644 /tmp/deb-examples/examples/hello.container /etc/sdme/hello.container
require_in "daemon-reload" systemctl daemon-reload
require_in "systemctl start sdme-hello" timeout 180 systemctl start sdme-hello
assert_eq "the container answers" hello \
	"$(th_exec timeout 60 systemd-run -q -M hello --wait --pipe hostname 2>&1 | tr -d '\r')"

step "apt-get remove: the running container stops, the package's files and units go"
require_in "apt-get remove sdme" apt-get remove -y -q sdme
assert_eq "sdme-hello stopped by the prerm" inactive "$(th_exec systemctl is-active sdme-hello 2>&1 || true)"
check_in "its overlay unmounted" sh -c '! findmnt -n /var/lib/sdme/containers/hello/merged'
assert_eq "sdme-hello.service gone (no generator at the postrm's reload)" not-found \
	"$(th_exec systemctl show -p LoadState --value sdme-hello.service)"
assert_eq "sdme-prepare@.service gone" not-found \
	"$(th_exec systemctl show -p LoadState --value sdme-prepare@x.service)"
left=$(th_exec sh -c 'while read -r f; do [ -e "$f" ] && [ ! -d "$f" ] && echo "$f"; done </var/tmp/deb-files' || true)
assert_eq "after remove only the conffile is left" /etc/apparmor.d/sdme-default "$left"
require_in "apt-get purge sdme" apt-get purge -y -q sdme
check_in "purge removed the conffile" test ! -e /etc/apparmor.d/sdme-default
check_in "purge left /var/lib/sdme (data)" test -d /var/lib/sdme/containers/hello
