# shellcheck shell=bash
# shellcheck disable=SC2016 # snippets expand inside the test host
# 77-cli-fs-export-debian: `sdme fs export` of a real tree (the test host's
# own Debian, with its hard links, file capabilities, ACL-less setuid
# binaries, device nodes and long names), imported by sdme-import from a
# directory first so that its post-import patches are in place; the
# tarball imported again by sdme-import gives the same tree (manifest:
# path, type, mode, owner, size, sha256, link target, device number,
# xattrs, hard-link groups). The time of the export is printed, a figure
# only.

W=/var/tmp/e2e-77
st=/var/lib/sdme

on_cleanup sh -c "rm -rf $W; for n in dd77 dx77 dy77; do rm -rf $st/rootfs/\$n $st/meta/\$n.json $st/import/\$n.lock $st/import/\$n.use; done"

th_exec mkdir -p "$W"
th_exec sh -c "cat > $W/manifest.py" <<'EOF'
import hashlib, os, stat, sys
root = sys.argv[1]
out = []
paths = {}
for d, dirs, files in os.walk(root):
    for n in sorted(dirs + files):
        p = os.path.join(d, n)
        rel = os.path.relpath(p, root)
        s = os.lstat(p)
        kind = stat.S_IFMT(s.st_mode)
        extra = ""
        if stat.S_ISREG(kind):
            h = hashlib.sha256()
            with open(p, "rb") as f:
                for b in iter(lambda: f.read(1 << 20), b""):
                    h.update(b)
            extra = h.hexdigest()
        elif stat.S_ISLNK(kind):
            extra = "-> " + os.readlink(p)
        elif stat.S_ISCHR(kind) or stat.S_ISBLK(kind):
            extra = "dev %d,%d" % (os.major(s.st_rdev), os.minor(s.st_rdev))
        try:
            xs = sorted(os.listxattr(p, follow_symlinks=False))
        except OSError:
            xs = []
        xa = ",".join("%s=%s" % (x, os.getxattr(p, x, follow_symlinks=False).hex()) for x in xs if not x.startswith("security.selinux"))
        if not stat.S_ISDIR(kind):
            paths.setdefault((s.st_dev, s.st_ino), []).append(rel)
        size = s.st_size if not stat.S_ISDIR(kind) else 0
        out.append(("%s %o %d:%d %d %s %s" % (rel, s.st_mode, s.st_uid, s.st_gid, size, extra, xa), (s.st_dev, s.st_ino)))
lines = []
for line, key in out:
    group = sorted(paths.get(key, []))
    lines.append(line + (" link:" + group[0] if len(group) > 1 else ""))
print("\n".join(sorted(lines)))
EOF

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
th_exec sh -c "python3 $W/manifest.py $st/rootfs/dx77 > $W/x.txt; python3 $W/manifest.py $st/rootfs/dy77 > $W/y.txt"
th_exec sh -c "wc -l < $W/x.txt; grep -c ' link:' $W/x.txt; grep -c 'security.capability' $W/x.txt || true" |
	paste -sd' ' | sed 's/^/entries, hard-linked, with file capabilities: /'
diff=$(th_exec diff "$W/x.txt" "$W/y.txt" 2>&1 | head -20 || true)
assert_eq "re-imported tree == exported tree" "" "$diff"
check_in "the tree has hard links (the test means something)" grep -q ' link:' "$W/x.txt"
