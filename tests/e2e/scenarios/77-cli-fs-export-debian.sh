# shellcheck shell=bash
# shellcheck disable=SC2016 # snippets expand inside the test host
# 77-cli-fs-export-debian: `sdme fs export` of a real tree (the test host's
# own Debian, with its hard links, file capabilities, ACL-less setuid
# binaries, device nodes and long names), imported by sdme-import from a
# directory first so that its post-import patches are in place; the
# tarball imported again by sdme-import gives the same tree (manifest:
# path, type, mode, owner, size, sha256, link target, device number,
# xattrs, hard-link groups). The time of the export is printed, a figure
# only. Then a container booted on that rootfs: fs rm of the rootfs is
# refused naming the running container, fs export of the running container
# is refused; once stopped, the export of its merged view (a booted
# guest's upper/, opaque directories included) imported again equals the
# view the kernel shows.

W=/var/tmp/e2e-77
st=/var/lib/sdme

ct=rc77
on_cleanup sh -c "umount $W/view 2>/dev/null; rm -rf $W /etc/sdme/$ct.container $st/containers/$ct; for n in dd77 dx77 dy77 dz77; do rm -rf $st/rootfs/\$n $st/meta/\$n.json $st/import/\$n.lock $st/import/\$n.use; done"

th_exec mkdir -p "$W"

step "a Debian tree, imported by sdme-import from a directory"
require "th_put_rootfs dd77" th_put_rootfs dd77
require_in "sdme fs import of the directory" sdme fs import -q --install-packages=no "$st/rootfs/dd77" dx77
th_exec rm -rf "$st/rootfs/dd77"

step "sdme fs export, sdme-import of the tarball: the same tree"
t0=$(date +%s%N)
require_in "sdme fs export dx77" sdme fs export dx77 "$W/d.tar.zst"
printf 'figure: sdme fs export of a Debian tree (%s, zstd) took %d ms, tarball %s bytes\n' \
	"$(th_exec du -sh "$st/rootfs/dx77" | cut -f1)" $((($(date +%s%N) - t0) / 1000000)) \
	"$(th_exec stat -c %s "$W/d.tar.zst")"
require_in "sdme-import of the tarball" sdme-import -q --install-packages=no "$W/d.tar.zst" dy77
th_manifest "$st/rootfs/dx77" | th_exec sh -c "cat > $W/x.txt"
th_manifest "$st/rootfs/dy77" | th_exec sh -c "cat > $W/y.txt"
th_exec sh -c "wc -l < $W/x.txt; grep -c ' link:' $W/x.txt; grep -c 'security.capability' $W/x.txt || true" |
	paste -sd' ' | sed 's/^/entries, hard-linked, with file capabilities: /'
diff=$(th_exec diff "$W/x.txt" "$W/y.txt" 2>&1 | head -20 || true)
assert_eq "re-imported tree == exported tree" "" "$diff"
check_in "the tree has hard links (the test means something)" grep -q ' link:' "$W/x.txt"

step "a container booted on dx77: fs rm and fs export refused while it runs"
on_cleanup sh -c "systemctl stop sdme-$ct; systemctl reset-failed 'sdme-*' 'sdme-prepare@*' 'var-lib-sdme-*' 2>/dev/null; true"
printf '[Container]\nRootfs=dx77\n' | th_exec sh -c "cat > /etc/sdme/$ct.container"
require_in "daemon-reload" systemctl daemon-reload
require_in "start $ct" timeout 180 systemctl start "sdme-$ct"
th_run_in "$ct" sh -c 'echo guest > /etc/e2e77; rm -f /etc/issue.net' || fail "changes in $ct"
out=$(out_rc sdme fs rm dx77)
printf '%s\n' "$out"
assert_match "fs rm of the rootfs of a running container: refused, the container named" \
	"^1 sdme: rootfs dx77 \($st/rootfs/dx77\) is in use by container $ct \(sdme-$ct.service, its overlay at $st/containers/$ct/merged\)" "$out"
check_in "the rootfs is still there" test -x "$st/rootfs/dx77/usr/bin/true"
assert_eq "fs export of the running container: refused" \
	"1 sdme: container $ct is active; stop it first (sdme stop $ct)" "$(out_rc sdme fs export "$ct" "$W/c.tar")"

step "stopped: the export of its merged view, imported again, equals the kernel's view"
require_in "stop $ct" systemctl stop "sdme-$ct"
th_exec mkdir -p "$W/view"
th_exec mount -t overlay overlay -o "ro,lowerdir=$st/containers/$ct/upper:$st/rootfs/dx77" "$W/view"
th_manifest "$W/view" | th_exec sh -c "cat > $W/v.txt"
th_exec umount "$W/view"
check_in "the view has the guest's change" grep -q '^etc/e2e77 ' "$W/v.txt"
check_in "the view has the guest's deletion" sh -c "! grep -q '^etc/issue.net ' $W/v.txt"
require_in "sdme fs export $ct" sdme fs export "$ct" "$W/c.tar.gz"
require_in "sdme-import of the container's tarball" sdme-import -q --install-packages=no "$W/c.tar.gz" dz77
th_manifest "$st/rootfs/dz77" | th_exec sh -c "cat > $W/z.txt"
diff=$(th_exec diff "$W/v.txt" "$W/z.txt" 2>&1 | head -20 || true)
assert_eq "re-imported tree == the stopped container's merged view" "" "$diff"
th_exec rm -f "/etc/sdme/$ct.container"
require_in "daemon-reload" systemctl daemon-reload
require_in "fs rm dx77 dy77 dz77 once unused" sdme fs rm dx77 dy77 dz77
