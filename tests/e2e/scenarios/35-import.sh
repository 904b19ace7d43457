# shellcheck shell=bash
# shellcheck disable=SC2016 # snippets expand inside the test host
# 35-import: sdme-import's core, inside the test host.
# - Tarballs in every compression (none, gzip, bzip2, xz, zstd) of a tree
#   with hard links, a device node, a fifo, a sparse file, xattrs and an ACL
#   give the same tree as GNU tar extracting them; the test host's own
#   rootfs tarball, zstd-compressed, is imported and booted with
#   Rootfs=NAME, and its metadata file says where it came from.
# - A directory source with the same contents (plus a socket) is copied
#   exactly: stat, getfattr, getfacl, hard links, holes.
# - Malicious tarballs made here with python3's tarfile (../, absolute
#   path, an entry below a symlinked parent, hard links out of the tree)
#   are each refused with a one-line error naming the entry, and nothing
#   outside the target changes; a file entry replacing a symlink that
#   points out writes inside, never through the link.
# - kill -9 in the middle of an import: no partial rootfs is ever visible,
#   the next run cleans the leftovers and succeeds; two concurrent imports
#   of one name: the second is refused; --force replaces; removing (or
#   replacing) a rootfs a container uses is refused.
# - Bad inputs (corrupt archive, unknown format, invalid names, a size over
#   --max-size) each give one line on stderr, exit 1, and leave nothing.
# - Sparse files in every format GNU tar writes them (--format=gnu -S,
#   --format=posix -S with --sparse-version 0.0, 0.1, 1.0) give the tree GNU
#   tar extracts, holes kept; a 1 MB tarball whose long name header declares
#   1 GiB is refused at once, in under 64 MB, naming the header and limit.

w=/var/tmp/e2e-35
st=/var/lib/sdme
boot=imp35-boot
names="imp35-none imp35-gz imp35-bz2 imp35-xz imp35-zst imp35-acls imp35-dir imp35-kill imp35-conc imp35-bad imp35-bomb $boot"
sparse_formats="gnu pax-0.0 pax-0.1 pax-1.0"
for v in $sparse_formats; do names="$names imp35-s${v//[.-]/}"; done

# shellcheck disable=SC2086 # $names is a list of words
on_cleanup sh -c "$(th_rootfs_rm $names) rm -rf $w /tmp/e2e35-out /tmp/e2e35-pwned-*; rm -rf $st/containers/$boot /etc/sdme/$boot.container; systemctl daemon-reload"
on_cleanup sh -c "systemctl stop sdme-$boot; systemctl reset-failed 'sdme-*' 'sdme-prepare@*' 2>/dev/null; true"

# fingerprint DIR: every entry's path, type, mode, owner, size, mtime, link
# count and symlink target, the content of every regular file, all xattrs
# and ACLs (the top directory itself left out).
fingerprint() {
	th_exec bash -c "cd '$1' && {
		find . -mindepth 1 -printf '%P %y %m %U:%G %s %T@ %n %l\n' | LC_ALL=C sort
		find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r cat | sha256sum
		getfattr -R -h -d -m - --absolute-names . 2>/dev/null | grep -v '^security.selinux=' || true
		getfacl -R -P -p . 2>/dev/null | grep -v '^# file: \.$' || true
	} | sha256sum | cut -d' ' -f1"
}

# one_line_error DESC CMD...: CMD fails with exit 1 and exactly one line on
# stderr, which is printed (for the log) and kept in $err.
err=
one_line_error() {
	local desc=$1 rc=0
	shift
	err=$(th_exec "$@" 2>&1 >/dev/null) || rc=$?
	printf '%s: %s\n' "$desc" "$err"
	[ "$rc" -eq 1 ] || fail "$desc: exit $rc, expected 1"
	[ "$(printf '%s\n' "$err" | wc -l)" -eq 1 ] || fail "$desc: not one line on stderr: $err"
	[[ $err == sdme-import:* ]] || fail "$desc: error does not start with 'sdme-import:': $err"
}

# nothing_left NAME: no rootfs, metadata or staging directory of NAME.
nothing_left() {
	check_in "nothing left of $1" sh -c "! test -e $st/rootfs/$1 && ! test -e $st/meta/$1.json && ! test -e $st/import/$1.staging"
}

step "a tree with hard links, a device node, a fifo, a sparse file, xattrs and an ACL"
require_in "make the tree" bash -c "
	set -e
	rm -rf $w && mkdir -p $w/src/etc $w/src/data/sub $w/src/dev
	cp -a /etc/os-release /etc/passwd /etc/group $w/src/etc/
	echo hello > $w/src/data/a
	ln $w/src/data/a $w/src/data/sub/a-hardlink
	ln -s ../a $w/src/data/sub/relative-link
	ln -s /etc/shadow $w/src/data/absolute-link
	mknod $w/src/dev/null c 1 3
	mknod $w/src/dev/loop9 b 7 9
	mkfifo $w/src/data/fifo
	truncate -s 64M $w/src/data/sparse
	printf data | dd of=$w/src/data/sparse bs=1 seek=32M conv=notrunc status=none
	chown 1234:5678 $w/src/data/sub
	chmod 4755 $w/src/data/a
	chmod 1777 $w/src/data/sub
	setfattr -n user.e2e -v 35 $w/src/data/a
	setfattr -n user.newlines -v 0x0a4c460a0a $w/src/data/a
	setfattr -n trusted.e2e -v t $w/src/data/sub
	setfacl -m u:1234:rwx,g:5678:r-x $w/src/data/sub
	setfacl -d -m u:1234:rwx $w/src/data/sub
	setfacl -m u:daemon:r--,g:daemon:rw- $w/src/etc/group
	touch -h -d '2001-02-03 04:05:06.789' $w/src/data/absolute-link $w/src/data/a
"
require_in "tar it (with xattrs)" tar --xattrs --xattrs-include='*' --numeric-owner -C $w/src -cf $w/tree.tar .
require_in "GNU tar's extraction as the reference" bash -c "mkdir $w/ref && tar --xattrs --xattrs-include='*' --numeric-owner -xpf $w/tree.tar -C $w/ref"
ref=$(fingerprint $w/ref)
src=$(fingerprint $w/src)
assert_match "reference fingerprint" '^[0-9a-f]{64}$' "$ref"
step "fingerprints: source $src, GNU tar $ref"

step "tarballs: none, gzip, bzip2, xz, zstd"
require_in "compress" bash -c "cd $w && gzip -c tree.tar > tree.tar.gz && bzip2 -c tree.tar > tree.tar.bz2 && xz -T0 -c tree.tar > tree.tar.xz && zstd -q -c tree.tar > tree.tar.zst"
for c in none gz bz2 xz zst; do
	f=$w/tree.tar
	[ "$c" = none ] || f=$w/tree.tar.$c
	require_in "sdme-import $f imp35-$c" sdme-import "$f" "imp35-$c"
	assert_eq "imp35-$c is the tree GNU tar extracts" "$ref" "$(fingerprint "$st/rootfs/imp35-$c")"
	kind=$(th_exec python3 -c "import json; print(json.load(open('$st/meta/imp35-$c.json'))['kind'])" 2>&1 || true)
	assert_eq "meta of imp35-$c records kind tar" tar "$kind"
done
used=$(th_exec du -k "$st/rootfs/imp35-gz/data/sparse" | cut -f1)
[ "$used" -lt 1024 ] || fail "sparse file takes $used KiB after a tar import"

step "GNU tar --acls: ACLs as multi-line text records, with user and group names"
require_in "tar it (--acls, no --xattrs; names, not numbers, in the ACLs)" tar --acls -C $w/src -cf $w/acls.tar .
check_in "the archive holds text ACLs naming daemon" bash -c "tar --acls -tvf $w/acls.tar >/dev/null && grep -a -q 'user:daemon:r--' $w/acls.tar"
require_in "GNU tar's extraction as the reference" bash -c "mkdir $w/ref-acls && tar --acls --numeric-owner -xpf $w/acls.tar -C $w/ref-acls"
ref_acls=$(fingerprint $w/ref-acls)
require_in "sdme-import $w/acls.tar imp35-acls" sdme-import "$w/acls.tar" imp35-acls
assert_eq "imp35-acls is the tree GNU tar --acls extracts" "$ref_acls" "$(fingerprint "$st/rootfs/imp35-acls")"
acl=$(th_exec getfacl -n -p "$st/rootfs/imp35-acls/etc/group" 2>&1 || true)
assert_match "daemon resolved through the image's /etc/passwd and /etc/group" 'user:1:r--.*group:1:rw-' "$(printf '%s' "$acl" | tr '\n' ' ')"

step "sparse files in every format GNU tar writes, compared with GNU tar's extraction"
for v in $sparse_formats; do
	n=imp35-s${v//[.-]/}
	case $v in
	gnu) fmt=(--format=gnu) ;;
	*) fmt=(--format=posix "--sparse-version=${v#pax-}") ;;
	esac
	require_in "tar -S ${fmt[*]}" tar -S "${fmt[@]}" --numeric-owner -C $w/src -cf "$w/sparse-$v.tar" .
	require_in "GNU tar's extraction of sparse-$v.tar" bash -c "mkdir $w/ref-$v && tar --numeric-owner -xpf $w/sparse-$v.tar -C $w/ref-$v"
	require_in "sdme-import sparse-$v.tar $n" sdme-import "$w/sparse-$v.tar" "$n"
	assert_eq "$n is the tree GNU tar extracts" "$(fingerprint "$w/ref-$v")" "$(fingerprint "$st/rootfs/$n")"
	check_in "$n: no GNUSparseFile directory" sh -c "! find $st/rootfs/$n -name 'GNUSparseFile*' | grep -q ."
	used=$(th_exec du -k "$st/rootfs/$n/data/sparse" | cut -f1)
	[ "$used" -lt 1024 ] || fail "$n: the sparse file takes $used KiB"
done

step "a directory source"
th_exec python3 -c "import socket; s = socket.socket(socket.AF_UNIX); s.bind('$w/src/data/socket')"
src=$(fingerprint $w/src)
require_in "sdme-import $w/src imp35-dir" sdme-import "$w/src" imp35-dir
assert_eq "imp35-dir is the source tree (stat, contents, xattrs, ACLs)" "$src" "$(fingerprint "$st/rootfs/imp35-dir")"
assert_eq "hard links stay hard links" "$(th_exec stat -c %i "$st/rootfs/imp35-dir/data/a")" \
	"$(th_exec stat -c %i "$st/rootfs/imp35-dir/data/sub/a-hardlink")"
assert_eq "the socket is a socket" socket "$(th_exec stat -c %F "$st/rootfs/imp35-dir/data/socket")"
assert_eq "the device node" "character special file 1:3" \
	"$(th_exec stat -c '%F %t:%T' "$st/rootfs/imp35-dir/dev/null")"
used=$(th_exec du -k "$st/rootfs/imp35-dir/data/sparse" | cut -f1)
[ "$used" -lt 1024 ] || fail "sparse file takes $used KiB after a directory import"
acl=$(th_exec getfacl -p "$st/rootfs/imp35-dir/data/sub" 2>&1 || true)
assert_match "the ACL is there" 'user:1234:rwx' "$acl"
assert_match "the default ACL is there" 'default:user:1234:rwx' "$acl"

step "malicious tarballs"
require_in "make them" python3 -c "
import io, tarfile
def mk(name, members):
    with tarfile.open('$w/evil-' + name + '.tar', 'w', format=tarfile.GNU_FORMAT) as t:
        for kind, path, arg in members:
            i = tarfile.TarInfo(path)
            if kind == 'file':
                i.size = len(arg); t.addfile(i, io.BytesIO(arg))
            elif kind == 'dir':
                i.type = tarfile.DIRTYPE; i.mode = 0o755; t.addfile(i)
            elif kind == 'sym':
                i.type = tarfile.SYMTYPE; i.linkname = arg; t.addfile(i)
            elif kind == 'hard':
                i.type = tarfile.LNKTYPE; i.linkname = arg; t.addfile(i)
mk('dotdot', [('file', 'ok', b'x'), ('file', '../../../../../../tmp/e2e35-pwned-dotdot', b'pwned')])
mk('absolute', [('file', '/tmp/e2e35-pwned-abs', b'pwned')])
mk('symlinked-parent', [('sym', 'evil', '../../../../../../tmp/e2e35-out'), ('file', 'evil/pwned', b'pwned')])
mk('symlinked-parent-abs', [('dir', 'a', None), ('sym', 'a/b', '/tmp/e2e35-out'), ('file', 'a/b/pwned', b'pwned')])
mk('hardlink-out', [('hard', 'passwd', '../../../../../../etc/passwd')])
mk('hardlink-abs', [('hard', 'passwd', '/etc/passwd')])
mk('hardlink-via-symlink', [('sym', 'etc', '/etc'), ('hard', 'passwd', 'etc/passwd')])
mk('replace-symlink', [('sym', 'f', '/tmp/e2e35-out/target'), ('file', 'f', b'inside')])
"
th_exec sh -c 'rm -rf /tmp/e2e35-out /tmp/e2e35-pwned-*; mkdir /tmp/e2e35-out; echo keep > /tmp/e2e35-out/sentinel'
passwd_before=$(th_exec sha256sum /etc/passwd)
for e in dotdot absolute symlinked-parent symlinked-parent-abs hardlink-out hardlink-abs hardlink-via-symlink; do
	one_line_error "evil-$e.tar" sdme-import "$w/evil-$e.tar" imp35-bad
	assert_match "evil-$e.tar: the error names the entry" "tar entry '" "$err"
	nothing_left imp35-bad
done
assert_eq "nothing written outside: /tmp/e2e35-out" sentinel "$(th_exec ls /tmp/e2e35-out 2>&1 || true)"
check_in "nothing written outside: /tmp/e2e35-pwned-*" sh -c '! ls /tmp/e2e35-pwned-* 2>/dev/null'
assert_eq "/etc/passwd untouched" "$passwd_before" "$(th_exec sha256sum /etc/passwd)"
require_in "a file replacing a symlink that points out is written inside" \
	sdme-import "$w/evil-replace-symlink.tar" imp35-bad
assert_eq "the file is in the tree" inside "$(th_exec cat "$st/rootfs/imp35-bad/f" 2>&1 || true)"
check_in "and not through the link" sh -c '! test -e /tmp/e2e35-out/target'
require_in "sdme-import --remove imp35-bad" sdme-import --remove imp35-bad
nothing_left imp35-bad

step "bad inputs"
require_in "a corrupt gzip and an unknown format" bash -c "
	cd $w && cp tree.tar.gz corrupt.tar.gz && printf 'garbage!' | dd of=corrupt.tar.gz bs=1 seek=2000 conv=notrunc status=none &&
	head -c 100000 /dev/urandom > random.bin"
one_line_error "corrupt gzip" sdme-import "$w/corrupt.tar.gz" imp35-bad
assert_match "corrupt gzip: names the source" "$w/corrupt.tar.gz" "$err"
nothing_left imp35-bad
one_line_error "unknown format" sdme-import "$w/random.bin" imp35-bad
assert_match "unknown format: says so" "unknown format" "$err"
nothing_left imp35-bad
one_line_error "invalid name" sdme-import "$w/tree.tar" 'bad/name'
assert_match "invalid name: says why" "rootfs name 'bad/name' contains '/'" "$err"
one_line_error "invalid name" sdme-import "$w/tree.tar" '.hidden'
one_line_error "over --max-size" sdme-import --max-size=1M "$w/tree.tar.gz" imp35-bad
assert_match "over --max-size: says so" "--max-size=1M" "$err"
nothing_left imp35-bad
one_line_error "a missing file" sdme-import "$w/nothing-here.tar" imp35-bad
step "a tar bomb: a 1 MB tarball whose long name header declares 1 GiB"
require_in "make it" python3 -c "
import gzip, tarfile
d = tarfile.TarInfo('etc'); d.type = tarfile.DIRTYPE
h = tarfile.TarInfo('././@LongLink'); h.type = tarfile.GNUTYPE_LONGNAME; h.size = 1 << 30
chunk = gzip.compress(b'a' * (1 << 20), 9)
with open('$w/bomb.tar.gz', 'wb') as o:
    o.write(gzip.compress(d.tobuf(tarfile.GNU_FORMAT) + h.tobuf(tarfile.GNU_FORMAT)))
    for _ in range(1024):
        o.write(chunk)
"
# exit status, peak RSS (KiB), seconds, stderr: from a python3 parent.
bomb=$(th_exec python3 -c "
import resource, subprocess, time
t = time.monotonic()
r = subprocess.run(['sdme-import', '--max-size=1M', '$w/bomb.tar.gz', 'imp35-bomb'], stderr=subprocess.PIPE, text=True)
print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, '%.3f' % (time.monotonic() - t), r.stderr.strip().replace(chr(10), ' '))
")
step "bomb: $bomb"
read -r rc rss secs msg <<<"$bomb"
assert_eq "bomb: exit 1" 1 "$rc"
assert_match "bomb: names the header and the limit" "GNU long name header \\(type 'L'\\) of 1073741824 bytes, more than the limit of 1M" "$msg"
[ "$rss" -lt 65536 ] || fail "bomb: peak RSS $rss KiB"
step "bomb: refused in $secs s with a peak RSS of $rss KiB"
nothing_left imp35-bomb
nothing_left imp35-bad
one_line_error "an existing name without --force" sdme-import "$w/tree.tar" imp35-gz
assert_match "an existing name: suggests --force" "--force" "$err"

step "the test host's rootfs, zstd-compressed, imported and booted"
th_exec mkdir -p "$w"
cp "$(th_cache_tarball "$TH_SUITE")" "$TH_ROOT$w/host.tar"
require_in "zstd host.tar" zstd -q -T0 -1 "$w/host.tar" -o "$w/host.tar.zst"
t0=$(date +%s%N)
require_in "sdme-import host.tar.zst $boot" sdme-import "$w/host.tar.zst" "$boot"
step "imported in $((($(date +%s%N) - t0) / 1000000)) ms"
meta=$(th_exec cat "$st/meta/$boot.json" 2>&1 || true)
assert_match "meta records the source" "\"source\": \"$w/host.tar.zst\"" "$meta"
assert_match "meta records os-release" "\"VERSION_CODENAME\": \"$TH_SUITE\"" "$meta"
th_exec mkdir -p /etc/sdme
printf '[Container]\nRootfs=%s\n' "$boot" | th_exec sh -c "cat > /etc/sdme/$boot.container"
require_in "daemon-reload" systemctl daemon-reload
require_in "systemctl start sdme-$boot" timeout 180 systemctl start "sdme-$boot"
assert_eq "sdme-$boot is active" active "$(th_exec systemctl is-active "sdme-$boot" 2>&1 || true)"
state=$(th_exec timeout 60 systemctl -M "$boot" is-system-running 2>&1 || true)
assert_eq "systemctl -M $boot is-system-running" running "$state"
codename=$(th_run_in "$boot" sed -n 's/^VERSION_CODENAME=//p' /etc/os-release 2>&1 || true)
assert_eq "$boot runs Debian $TH_SUITE" "$TH_SUITE" "$codename"

step "a rootfs in use is neither removed nor replaced"
one_line_error "--remove while running" sdme-import --remove "$boot"
assert_match "--remove while running: names the container and its overlay" \
	"container $boot \\(sdme-$boot.service, its overlay at $st/containers/$boot/merged\\)" "$err"
assert_match "--remove while running: names the file" "/etc/sdme/$boot.container" "$err"
one_line_error "--force while running" sdme-import --force "$w/tree.tar" "$boot"
assert_match "--force while running: in use" "in use" "$err"
require_in "systemctl stop sdme-$boot" timeout 120 systemctl stop "sdme-$boot"
th_unmounted "$boot" || fail "overlay of $boot still mounted after stop"
one_line_error "--remove with a .container file naming it" sdme-import --remove "$boot"
assert_match "--remove: names the file" "/etc/sdme/$boot.container \(Rootfs=$boot\)" "$err"
check_in "the rootfs is still there" test -d "$st/rootfs/$boot/etc"
require_in "drop the container" sh -c "rm -rf /etc/sdme/$boot.container $st/containers/$boot && systemctl daemon-reload"
require_in "sdme-import --remove $boot" sdme-import --remove "$boot"
nothing_left "$boot"

step "kill -9 in the middle of an import, then a rerun"
# The rootfs must never be visible before the import is complete: checked
# all along the run, until the kill.
out=$(th_exec bash -c "
	sdme-import -q $w/host.tar imp35-kill & pid=\$!
	seen=0 partial=0
	for i in \$(seq 2000); do
		test -e $st/rootfs/imp35-kill && partial=1
		if [ -d $st/import/imp35-kill.staging/rootfs/usr/lib ]; then seen=\$((seen + 1)); fi
		[ \$seen -ge 3 ] && break
		sleep 0.01
	done
	kill -9 \$pid; wait \$pid; rc=\$?
	echo \"seen=\$seen partial=\$partial rc=\$rc\"
" 2>&1 || true)
step "$out"
assert_match "killed in the middle (exit 137), never visible before" 'seen=3 partial=0 rc=137$' "$out"
check_in "no rootfs after kill -9" sh -c "! test -e $st/rootfs/imp35-kill"
check_in "the killed run's staging directory is left" test -d "$st/import/imp35-kill.staging"
require_in "rerun" sdme-import -q "$w/host.tar" imp35-kill
check_in "leftovers cleaned" sh -c "! test -e $st/import/imp35-kill.staging"
check_in "the rerun's rootfs is complete" test -f "$st/rootfs/imp35-kill/etc/os-release"

step "Ctrl+C (SIGINT) in the middle of an import"
out=$(th_exec bash -c "
	sdme-import -q $w/host.tar imp35-bad 2>$w/int.err & pid=\$!
	for i in \$(seq 2000); do [ -d $st/import/imp35-bad.staging/rootfs/usr/lib ] && break; sleep 0.01; done
	kill -INT \$pid; wait \$pid; echo \"rc=\$? \$(cat $w/int.err)\"
" 2>&1 || true)
step "$out"
assert_eq "interrupted: exit 130, one line" "rc=130 sdme-import: interrupted; nothing was imported" "$out"
nothing_left imp35-bad

step "--if-missing"
sum=$(fingerprint "$st/rootfs/imp35-gz")
out=$(th_exec sdme-import --if-missing "$w/host.tar" imp35-gz 2>&1 || echo "exit $?")
assert_eq "--if-missing with the rootfs there: nothing to do" "rootfs imp35-gz is already there; nothing to do" "$out"
assert_eq "--if-missing left the rootfs alone" "$sum" "$(fingerprint "$st/rootfs/imp35-gz")"
require_in "--if-missing without the rootfs imports" sdme-import -q --if-missing "$w/tree.tar" imp35-bad
check_in "imported" test -f "$st/rootfs/imp35-bad/data/a"
require_in "sdme-import --remove imp35-bad" sdme-import -q --remove imp35-bad

step "two imports of one name at once"
out=$(th_exec bash -c "
	sdme-import -q $w/host.tar imp35-conc & pid=\$!
	for i in \$(seq 1000); do [ -d $st/import/imp35-conc.staging ] && break; sleep 0.01; done
	second=\$(sdme-import $w/tree.tar imp35-conc 2>&1); rc2=\$?
	wait \$pid; rc1=\$?
	echo \"rc1=\$rc1 rc2=\$rc2 \$second\"
" 2>&1 || true)
step "$out"
assert_match "the first succeeds, the second is refused clearly" \
	'^rc1=0 rc2=1 sdme-import: cannot import .*: rootfs imp35-conc is being imported or removed by another sdme-import \(pid [0-9]+\)' "$out"
check_in "the first import's rootfs" test -f "$st/rootfs/imp35-conc/etc/os-release"

step "--force replaces"
require_in "sdme-import --force tree.tar imp35-conc" sdme-import --force "$w/tree.tar" imp35-conc
assert_eq "replaced by the small tree" "$ref" "$(fingerprint "$st/rootfs/imp35-conc")"
check_in "no staging left after --force" sh -c "! test -e $st/import/imp35-conc.staging"

step "remove what this scenario imported"
for n in imp35-none imp35-gz imp35-bz2 imp35-xz imp35-zst imp35-dir imp35-kill imp35-conc; do
	require_in "sdme-import --remove $n" sdme-import -q --remove "$n"
	nothing_left "$n"
done
