# shellcheck shell=bash
# shellcheck disable=SC2016 # snippets expand inside the test host
# 75-cli-fs: `sdme fs` on the rootfs store.
# - fs import of a small tarball (sdme-import's options: --install-packages)
#   gives the tree the tarball holds; fs ls and fs ls --json list it with
#   its source, size and the container whose file names it;
# - fs rm is refused while a .container file names it, while it is bind
#   mounted, while something is mounted inside it (each user named,
#   nothing removed), and removes it once unused;
# - fs export of the rootfs, then sdme-import of the tarball: the same
#   tree (manifest: path, type, mode, owner, size, sha256, link target,
#   device number, xattrs, hard-link groups);
# - fs export of a stopped container whose upper/ has whiteouts, an opaque
#   directory and new files (made by a real overlay mount): the import of
#   the tarball equals the merged view the kernel shows;
# - bad input: an unknown suffix, an existing file, an unknown name, a
#   running container: one line, exit 1, nothing written.

W=/var/tmp/e2e-75
st=/var/lib/sdme
rf=fx75
ct=cx75
run=rx75

on_cleanup sh -c "umount $W/view $W/mnt $st/rootfs/$rf/mnt 2>/dev/null; rm -rf $W $st/containers/$ct $st/containers/$run /etc/sdme/$ct.container /etc/sdme/$run.container; for n in $rf fy75 fz75 cy75; do rm -rf $st/rootfs/\$n $st/meta/\$n.json $st/import/\$n.lock $st/import/\$n.use; done; systemctl daemon-reload"
on_cleanup sh -c "systemctl stop sdme-$run; systemctl reset-failed 'sdme-*' 'sdme-prepare@*' 'var-lib-sdme-*' 2>/dev/null; true"

th_exec mkdir -p "$W"

step "a small tree with owners, modes, xattrs, links, a device node and a fifo, as a tarball"
th_sh "set -e; d=$W/src; mkdir -p \$d/etc \$d/usr/bin \$d/var/lib/app \$d/gone/sub \$d/dev
echo 'PRETTY_NAME=\"Tiny 75\"' > \$d/etc/os-release
echo hello > \$d/usr/bin/tool; chmod 4755 \$d/usr/bin/tool
ln \$d/usr/bin/tool \$d/usr/bin/tool2
ln -s ../usr/bin/tool \$d/etc/tool-link
ln -s /etc/shadow \$d/etc/abs-link
echo data > \$d/var/lib/app/f; chown 1000:1001 \$d/var/lib/app/f; chmod 600 \$d/var/lib/app/f
chown 70000:70001 \$d/var/lib/app
setfattr -n user.note -v 'a value' \$d/var/lib/app/f
setfattr -n security.capability -v 0sAQAAAgAgAAAAAAAAAAAAAAAAAAA= \$d/usr/bin/tool
echo x > \$d/gone/file; echo y > \$d/gone/sub/z; echo keep > \$d/keep
mknod \$d/dev/null2 c 1 3; mkfifo \$d/dev/fifo
long=\$d/\$(printf 'n%.0s' \$(seq 1 120)); mkdir \$long; echo deep > \$long/\$(printf 'm%.0s' \$(seq 1 120))
tar --numeric-owner --xattrs --xattrs-include='*' -C \$d -czf $W/src.tar.gz ."

step "sdme fs import (sdme-import's options), fs ls, fs ls --json"
require_in "sdme fs import $rf" sdme fs import --install-packages=no -q "$W/src.tar.gz" "$rf"
assert_match "fs import --help shows sdme-import's options" "--install-packages.*--max-size" \
	"$(th_exec sdme fs import --help 2>&1 | tr '\n' ' ')"
assert_eq "the imported tree is the tarball's" "$(th_manifest "$W/src")" \
	"$(th_manifest "$st/rootfs/$rf")"
printf '[Container]\nRootfs=%s\n' "$rf" | th_exec sh -c "cat > /etc/sdme/$ct.container"
require_in "daemon-reload" systemctl daemon-reload
ls_out=$(th_exec sdme fs ls 2>&1)
printf '%s\n' "$ls_out"
assert_match "fs ls header" "^NAME +OS +SOURCE +IMPORTED +SIZE +USED BY" "$ls_out"
assert_match "fs ls row: name, OS, source, time, size, user" \
	"$rf +Tiny 75 +$W/src.tar.gz +[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z +[0-9.]+[KM]? +$ct" "$ls_out"
json=$(th_exec sdme fs ls --json 2>&1)
assert_eq "fs ls --json: fields of $rf" "Tiny 75|$W/src.tar.gz|tar|['$ct']|True" "$(printf '%s' "$json" | th_exec python3 -c "
import json, sys
r = [x for x in json.load(sys.stdin) if x['name'] == '$rf'][0]
print('%s|%s|%s|%s|%s' % (r['os'], r['source'], r['kind'], r['used_by'], isinstance(r['size'], int) and r['size'] > 0 and r['imported'].endswith('Z')))")"

step "sdme fs rm: refused while used (users named), nothing removed"
assert_match "fs rm while $ct.container names it: exit 1, the file named" \
	"^1 sdme: rootfs $rf \($st/rootfs/$rf\) is in use by /etc/sdme/$ct.container \(Rootfs=$rf\)" \
	"$(out_rc sdme fs rm "$rf")"
th_exec mkdir -p "$W/mnt"
th_exec mount --bind "$st/rootfs/$rf" "$W/mnt"
assert_match "fs rm while bind-mounted: the mount named" "^1 sdme: rootfs $rf .*the mount at $W/mnt" \
	"$(out_rc sdme fs rm "$rf")"
th_exec umount "$W/mnt"
th_exec mkdir -p "$st/rootfs/$rf/mnt"
th_exec mount -t tmpfs none "$st/rootfs/$rf/mnt"
assert_eq "fs rm with a mount inside the tree: refused, the mount named" \
	"1 sdme: rootfs $rf: $st/rootfs/$rf/mnt is mounted; unmount it first, nothing removed" \
	"$(out_rc sdme fs rm "$rf")"
th_exec umount "$st/rootfs/$rf/mnt"
th_exec rmdir "$st/rootfs/$rf/mnt"
check_in "the rootfs is still there" test -s "$st/rootfs/$rf/usr/bin/tool"
assert_match "fs rm of an unknown rootfs" "^1 sdme: no rootfs named nope75 in $st/rootfs\$" "$(out_rc sdme fs rm nope75)"

step "sdme fs export of the rootfs, then sdme-import of the tarball: the same tree"
for sfx in tar tar.zst tar.xz; do
	require_in "fs export $rf $W/r.$sfx" sdme fs export "$rf" "$W/r.$sfx"
done
assert_eq "the tarball is mode 600" 600 "$(th_exec stat -c %a "$W/r.tar.zst")"
check_in "zstd by suffix" sh -c "zstd -t $W/r.tar.zst"
check_in "xz by suffix" sh -c "xz -t $W/r.tar.xz"
require_in "sdme-import of the exported tarball" sdme-import --install-packages=no -q "$W/r.tar.zst" fy75
assert_eq "re-imported tree == exported tree" "$(th_manifest "$st/rootfs/$rf")" \
	"$(th_manifest "$st/rootfs/fy75")"
assert_eq "an existing FILE: refused, kept" \
	"1 sdme: $W/r.tar exists already; nothing written" "$(out_rc sdme fs export "$rf" "$W/r.tar")"
assert_eq "an unknown suffix: refused" \
	"1 sdme: $W/r.zip: unknown suffix; use .tar, .tar.gz, .tar.bz2, .tar.xz or .tar.zst" \
	"$(out_rc sdme fs export "$rf" "$W/r.zip")"
assert_eq "an unknown name" "1 sdme: no rootfs or container named nope75" \
	"$(out_rc sdme fs export nope75 "$W/n.tar")"
check_in "no temporary files left" sh -c "! ls -A $W | grep -q sdme-export"

step "a stopped container's upper/ with whiteouts and an opaque dir (a real overlay wrote them)"
c=$st/containers/$ct
th_exec mkdir -p "$c/upper" "$c/work" "$W/view"
th_exec mount -t overlay overlay -o "lowerdir=$st/rootfs/$rf,upperdir=$c/upper,workdir=$c/work" "$W/view"
th_sh "set -e; v=$W/view; rm \$v/keep; rm -rf \$v/gone; mkdir \$v/gone; echo new > \$v/gone/new
echo changed > \$v/usr/bin/tool; echo added > \$v/etc/added; chown 5:6 \$v/etc/added
setfattr -n user.x -v y \$v/etc/added; ln \$v/etc/added \$v/etc/added2"
th_exec umount "$W/view"
check_in "upper/ holds a whiteout" test -c "$c/upper/keep"
check_in "upper/ holds an opaque dir" sh -c "getfattr -n trusted.overlay.opaque --only-values $c/upper/gone | grep -q y"
th_exec mount -t overlay overlay -o "ro,lowerdir=$c/upper:$st/rootfs/$rf" "$W/view"
want=$(th_manifest "$W/view")
th_exec umount "$W/view"
require_in "fs export $ct (stopped container)" sdme fs export "$ct" "$W/c.tar.gz"
check_in "nothing of the export stays mounted" sh -c "! grep -q sdme-export /proc/self/mountinfo"
require_in "sdme-import of the container's tarball" sdme-import --install-packages=no -q "$W/c.tar.gz" cy75
got=$(th_manifest "$st/rootfs/cy75")
assert_eq "re-imported tree == the container's merged view" "$want" "$got"
check_in "the whiteout applied: keep is gone" test ! -e "$st/rootfs/cy75/keep"
check_in "the opaque dir applied: gone/ holds only new" sh -c "test \"\$(ls -A $st/rootfs/cy75/gone)\" = new"

step "fs export of a running container is refused; fs rm once unused"
printf '[Container]\n' | th_exec sh -c "cat > /etc/sdme/$run.container"
require_in "daemon-reload" systemctl daemon-reload
require_in "start $run" timeout 180 systemctl start "sdme-$run"
assert_eq "fs export of a running container: refused" \
	"1 sdme: container $run is active; stop it first (sdme stop $run)" \
	"$(out_rc sdme fs export "$run" "$W/run.tar")"
check_in "no tarball written" test ! -e "$W/run.tar"
th_exec systemctl stop "sdme-$run"
th_exec rm -f "/etc/sdme/$ct.container" "/etc/sdme/$run.container"
require_in "daemon-reload" systemctl daemon-reload
require_in "fs rm $rf fy75 (unused now)" sdme fs rm "$rf" fy75
check_in "rootfs and metadata gone" sh -c "test ! -e $st/rootfs/$rf -a ! -e $st/meta/$rf.json -a ! -e $st/rootfs/fy75"
assert_eq "fs ls no longer lists it" 0 "$(th_exec sdme fs ls 2>&1 | grep -c "^$rf " || true)"
