# shellcheck shell=bash
# shellcheck disable=SC2016 # snippets expand inside the test host
# 33-import-sandbox: an image's own code never runs with the host's
# privileges (issue 19).
# - A hostile image (tests/e2e/peers/hostile-sh.c as its /bin/sh, an
#   os-release with ID=debian, an empty apt-get, no systemd) is imported
#   with the default --install-packages=auto, with =yes, and through an
#   image unit (`systemctl start sdme-image-NAME`). Its /bin/sh runs, and
#   records what it could do: it runs in a user namespace whose root is not
#   the host's (uid_map), with NO_NEW_PRIVS and a seccomp filter; no block
#   device opens; the chroot escape and /proc/1/root write no marker on the
#   host.
# - With --install-packages=no nothing from the image runs at all.
# The real package installation in the sandbox (apt in a minbase Debian
# tree, which then boots) is 37-import-disk's.

w=/var/tmp/e2e-33
st=/var/lib/sdme
names="imp33-auto imp33-yes imp33-no imp33-unit"
# shellcheck disable=SC2086 # $names is a list of words
on_cleanup sh -c "$(th_rootfs_rm $names) rm -rf $w /sdme-escape-marker /sdme-escape-marker-proc /etc/sdme/imp33-unit.image; systemctl daemon-reload"
on_cleanup sh -c 'systemctl stop sdme-image-imp33-unit.service; systemctl reset-failed "sdme-*" 2>/dev/null; true'

step "build the hostile image (static /bin/sh) out here, into the host's $w"
build=$TH_ROOT$w/build
mkdir -p "$build/tree/bin" "$build/tree/etc" "$build/tree/usr/bin" "$TH_ROOT$w/src"
require "cc -static hostile-sh.c" cc -static -O2 -o "$build/tree/bin/sh" "$TH_REPO/tests/e2e/peers/hostile-sh.c"
printf 'ID=debian\nPRETTY_NAME="hostile image"\n' >"$build/tree/etc/os-release"
: >"$build/tree/usr/bin/apt-get"
chmod 0755 "$build/tree/usr/bin/apt-get"
tar --numeric-owner -C "$build/tree" -czf "$TH_ROOT$w/src/hostile.tar.gz" .
th_exec rm -f /sdme-escape-marker /sdme-escape-marker-proc

# import ARGS...: sdme-import as an administrator runs it, from a shell in
# a scope of the host's systemd (th_exec alone runs in a cgroup outside the
# host's tree, where nspawn cannot find its own control group).
import() { th_exec systemd-run -q --scope sdme-import "$@"; }

# no_escape WHAT: the hostile /bin/sh left no trace on the test host.
no_escape() {
	check_in "$1: no marker at the host's root" test ! -e /sdme-escape-marker
	check_in "$1: no marker through /proc/1/root" test ! -e /sdme-escape-marker-proc
}

# confined WHAT EVIDENCE: what the hostile /bin/sh recorded shows a sandbox.
confined() {
	local what=$1 ev=$2 map base
	printf '%s: evidence:\n%s\n' "$what" "$ev"
	[ -n "$ev" ] || {
		fail "$what: the image's /bin/sh recorded nothing (did it run?)"
		return
	}
	map=$(sed -n '/uid_map/{s/^.*uid_map *//p;q}' <<<"$ev")
	read -r _ base _ <<<"$map"
	if [ -z "$base" ] || [ "$base" = 0 ]; then
		fail "$what: root inside is the host's root (uid_map '$map')"
	fi
	assert_match "$what: NO_NEW_PRIVS" $'NoNewPrivs:\t1' "$ev"
	assert_match "$what: seccomp filter" $'Seccomp:\t2' "$ev"
	if grep -q OPENED <<<"$ev"; then
		fail "$what: a block device opened: $(grep -m 3 OPENED <<<"$ev")"
	fi
	if grep -q 'block-mknod.*denied\|block-open.*denied' <<<"$ev"; then :; else
		fail "$what: no block device was tried"
	fi
}

step "default import (--install-packages=auto): the image's sh runs, sandboxed"
rc=0
out=$(import "$w/src/hostile.tar.gz" imp33-auto 2>&1) || rc=$?
printf '%s\n' "$out"
assert_eq "auto: the import succeeds (exit 0)" 0 "$rc"
assert_match "auto: says where the package manager runs" "in a sandbox" "$out"
assert_match "auto: warns that it will not boot" "no systemd in the image" "$out"
confined auto "$(printf '%s\n' "$out" | sed -n 's/^EVIDENCE //p')"
no_escape auto
check_in "auto: the tree's own evidence file" test -s "$st/rootfs/imp33-auto/sdme-evidence"
check_in "auto: no policy-rc.d left (there was no /usr/sbin)" test ! -e "$st/rootfs/imp33-auto/usr/sbin/policy-rc.d"
check_in "auto: no resolv.conf left in the tree" test ! -e "$st/rootfs/imp33-auto/etc/resolv.conf"
assert_eq "auto: files keep their on-disk owner (mapped, not chowned)" "0:0" \
	"$(th_exec stat -c %u:%g "$st/rootfs/imp33-auto/bin/sh")"

step "--install-packages=yes: the same sandbox; the import fails (no systemd after)"
rc=0
out=$(import --install-packages=yes "$w/src/hostile.tar.gz" imp33-yes 2>&1) || rc=$?
printf '%s\n' "$out"
[ "$rc" -ne 0 ] || fail "yes: the import of an image whose apt installs nothing succeeded"
assert_match "yes: says why" "still missing after the package manager ran" "$out"
confined yes "$(printf '%s\n' "$out" | sed -n 's/^EVIDENCE //p')"
no_escape yes
check_in "yes: no rootfs" test ! -e "$st/rootfs/imp33-yes"

step "--install-packages=no: nothing from the image runs"
rc=0
out=$(import --install-packages=no "$w/src/hostile.tar.gz" imp33-no 2>&1) || rc=$?
printf '%s\n' "$out"
assert_eq "no: exit 0" 0 "$rc"
if grep -q EVIDENCE <<<"$out"; then fail "no: the image's /bin/sh ran"; fi
check_in "no: no evidence file in the tree" test ! -e "$st/rootfs/imp33-no/sdme-evidence"
no_escape no

step "an image unit (Image= at systemctl start) runs the same sandbox"
printf '[Image]\nImage=%s/src/hostile.tar.gz\n' "$w" | th_exec sh -c 'cat > /etc/sdme/imp33-unit.image'
require_in "daemon-reload" systemctl daemon-reload
check_in "systemctl start sdme-image-imp33-unit" timeout 300 systemctl start sdme-image-imp33-unit.service
confined unit "$(th_exec cat "$st/rootfs/imp33-unit/sdme-evidence" 2>/dev/null || true)"
no_escape unit
