# shellcheck shell=bash
# shellcheck disable=SC2016 # snippets expand inside the test host
# 17-deb-shipped-container: the example package of examples/package/
# (sdme.container(5), "SHIPPING CONTAINERS IN PACKAGES"), built outside
# with dpkg-deb and installed with apt: its container is defined, enabled
# through its [Install] and running; an admin's /etc/sdme/hello.container
# overrides the package's file, a drop-in amends it; `apt-get remove`
# stops the container (overlay unmounted) and takes its units away, its
# state directory stays. sdme itself is the harness's `make install`, not a
# package, so the package is built without its "Depends: sdme" (the build
# with it is checked outside).

pkgdir=/var/tmp/pkg17
vendor=/usr/lib/sdme/hello.container
on_cleanup sh -c "rm -rf /var/lib/sdme/containers/hello /etc/sdme/hello.container /etc/sdme/hello.container.d $pkgdir; systemctl daemon-reload"
on_cleanup sh -c "systemctl stop sdme-hello 2>/dev/null; dpkg -s sdme-hello-example >/dev/null 2>&1 && apt-get purge -y -q sdme-hello-example >/dev/null; systemctl reset-failed 'sdme-*' 'sdme-prepare@*' 2>/dev/null; true"

# hostname_in: the container's hostname, asked inside it.
hostname_in() {
	th_exec timeout 60 systemd-run -q --collect -M hello --wait --pipe hostname 2>&1 | tr -d '\r'
}

step "build the example package (outside, as a user would)"
require "build.sh" "$TH_REPO/examples/package/build.sh" "$TH_ROOT$pkgdir/full"
deb=$(find "$TH_ROOT$pkgdir/full" -name 'sdme-hello-example_*.deb')
assert_eq "the package depends on sdme" sdme "$(dpkg-deb -f "$deb" Depends)"
assert_match "hello.container in it, root's, 0644" '^-rw-r--r-- root/root .* \./usr/lib/sdme/hello\.container$' \
	"$(dpkg-deb -c "$deb" | grep "/hello\.container$")"
require "build.sh --no-depends" "$TH_REPO/examples/package/build.sh" --no-depends "$TH_ROOT$pkgdir"
assert_eq "--no-depends: no Depends" "" "$(dpkg-deb -f "$TH_ROOT$pkgdir"/sdme-hello-example_*.deb Depends)"

step "apt-get install: defined, enabled, running"
require_in "apt-get install ./sdme-hello-example_*.deb" sh -c "cd $pkgdir && DEBIAN_FRONTEND=noninteractive apt-get install -y -q ./sdme-hello-example_*.deb"
assert_eq "defined from the package's file" $vendor \
	"$(th_exec systemctl show -p SourcePath --value sdme-hello.service)"
check_in "enabled through [Install]" test -L /run/systemd/generator/machines.target.wants/sdme-hello.service
assert_eq "started by the postinst" active "$(th_exec systemctl is-active sdme-hello 2>&1 || true)"
assert_eq "hostname" hello "$(hostname_in)"

step "an admin's /etc/sdme/hello.container overrides the package's file"
require_in "copy and edit" sh -c "sed '/^\[Container\]/a Hostname=admin17' $vendor >/etc/sdme/hello.container"
require_in "daemon-reload" systemctl daemon-reload
assert_eq "defined from the admin's file" /etc/sdme/hello.container \
	"$(th_exec systemctl show -p SourcePath --value sdme-hello.service)"
require_in "restart" timeout 180 systemctl restart sdme-hello
assert_eq "the admin's hostname" admin17 "$(hostname_in)"

step "admin file removed, a drop-in in /etc/sdme/hello.container.d amends the package's file"
require_in "rm the admin's file, add 50-x.conf" sh -c 'rm /etc/sdme/hello.container &&
	mkdir /etc/sdme/hello.container.d &&
	printf "[Service]\nMemoryMax=300M\n" >/etc/sdme/hello.container.d/50-x.conf'
require_in "daemon-reload" systemctl daemon-reload
require_in "restart" timeout 180 systemctl restart sdme-hello
assert_eq "the package's file again" $vendor \
	"$(th_exec systemctl show -p SourcePath --value sdme-hello.service)"
assert_eq "the package's hostname again" hello "$(hostname_in)"
assert_eq "MemoryMax= from the drop-in" 314572800 \
	"$(th_exec systemctl show -p MemoryMax --value sdme-hello.service)"
require_in "rm the drop-in" rm -r /etc/sdme/hello.container.d

step "apt-get remove: stopped, units gone, state kept"
require_in "apt-get remove sdme-hello-example" env DEBIAN_FRONTEND=noninteractive apt-get remove -y -q sdme-hello-example
assert_eq "stopped by the prerm" inactive "$(th_exec systemctl is-active sdme-hello 2>&1 || true)"
check "overlay unmounted" th_unmounted hello
assert_eq "sdme-hello.service gone at the postrm's reload" not-found \
	"$(th_exec systemctl show -p LoadState --value sdme-hello.service)"
check_in "no machines.target link" test ! -e /run/systemd/generator/machines.target.wants/sdme-hello.service
check_in "the package's file removed" test ! -e $vendor
check_in "/var/lib/sdme/containers/hello kept (the admin removes it)" test -d /var/lib/sdme/containers/hello/upper
