# shellcheck shell=bash
# 37-import-disk: sdme-import of disk images and the post-import step.
#
# Disk images: GPT images made with mkfs.ext4 -d + sfdisk (a vfat ESP, a
# decoy ext4 and the root ext4), imported raw, converted to QCOW2, and a
# variant without the root partition type (the largest Linux file system
# wins); each boots with Rootfs=NAME. An image with only a vfat partition is
# a one-line error. After every import no loop device, mount or temporary
# file is left.
#
# Post-import: a debootstrap --variant=minbase bookworm tree (no systemd)
# imported with --install-packages=yes gets systemd and D-Bus through apt in
# the sandbox and boots; --install-packages=no warns that it will not boot.
#
# Why sdme-import runs on the CI machine here, not inside the test host:
# the test host's /dev is a private tmpfs without /dev/loop-control or loop
# nodes, and nspawn's device policy refuses block devices to it, so no loop
# device can be attached inside (checked first below). sdme-import mounts
# the image in a mount namespace of its own: checked against our mount
# table while an import is stopped with the image mounted, and by watching
# that table (findmnt --poll) through whole imports. And apt needs the
# Debian mirror, which only the CI machine reaches (the test host has no
# network). So the images are built and imported on the CI machine with
# --state-dir pointing at the test host's /var/lib/sdme (its tree is a
# plain directory here), and the results boot inside the test host.

name_raw=disk-raw
name_qcow=disk-qcow
name_big=disk-big
name_vfat=disk-vfat
name_yes=nosd-yes
name_no=nosd-no
all_names="$name_raw $name_qcow $name_big $name_vfat $name_yes $name_no"
state=$TH_ROOT/var/lib/sdme
# The static binary `make install` built (the runner ran it): it runs on the
# CI machine as well as in the test host.
imp=$TH_REPO/target/$(rustc -vV | sed -n 's/^host: //p')/release/sdme-import
work=$(mktemp -d /var/tmp/sdme-e2e-37.XXXXXX)

# The harness's cleanups run inside the test host; the work directory is
# out here: remove it after them (and stop the mount watcher, if running).
poll_pid=
# shellcheck disable=SC2064 # $work expands now, on purpose
trap "e2e__run_cleanups; [ -z \"\$poll_pid\" ] || kill \"\$poll_pid\" 2>/dev/null; rm -rf --one-file-system '$work'" EXIT

for n in $all_names; do
	on_cleanup sh -c "systemctl stop sdme-$n 2>/dev/null; systemctl reset-failed 'sdme-$n' 'sdme-prepare@$n' 2>/dev/null; rm -rf /var/lib/sdme/rootfs/$n /var/lib/sdme/containers/$n /var/lib/sdme/meta/$n.json /var/lib/sdme/import/$n.lock /var/lib/sdme/import/$n.use /etc/sdme/$n.container; true"
done
on_cleanup systemctl daemon-reload

for tool in mkfs.ext4 mkfs.vfat sfdisk qemu-img; do
	command -v "$tool" >/dev/null || {
		fail "$tool missing on the CI machine (tests/e2e/install-deps installs it)"
		exit 1
	}
done
require "sdme-import is built ($imp)" test -x "$imp"

step "loop devices inside the test host"
check_in "no /dev/loop-control inside the test host (why this runs outside)" \
	sh -c '! test -c /dev/loop-control'

# leftovers DIR...: loop devices backed by files below DIR, mounts below it,
# and staging or scratch files in the state directory.
leftovers() {
	local d
	for d in "$@"; do
		losetup -a | grep -F "$d" || true
		grep -F " $d" /proc/self/mountinfo || true
	done
	# The store keeps only rootfs/NAME, meta/NAME.json and the locks
	# import/NAME.lock and import/NAME.use.
	find "$state/import" -mindepth 1 ! -name '*.lock' ! -name '*.use' 2>/dev/null || true
	find "$state/rootfs" "$state/meta" -mindepth 1 -maxdepth 1 -name '.*' 2>/dev/null || true
}

# An ext4 image of TREE of SIZE MiB.
mkext4() { # mkext4 FILE SIZE_MIB TREE
	mkfs.ext4 -q -F -E root_owner=0:0 -d "$3" "$1" "$2M"
}

# mkdisk OUT ROOT_TYPE: a GPT image: p1 a vfat ESP, p2 a decoy ext4 (Linux
# data), p3 the real tree (type ROOT_TYPE). With the x86-64 root type p3
# must be chosen although the decoy is larger; with the Linux data type p3
# must be chosen because it is the largest.
ESP=C12A7328-F81F-11D2-BA4B-00A0C93EC93B
LINUX=0FC63DAF-8483-4772-8E79-3D69D8477DE4
ROOT_X86_64=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709
mkdisk() {
	local out=$1 root_type=$2 decoy_mib=$3 starts
	sfdisk -q "$out" <<-EOF
		label: gpt
		size=16MiB, type=$ESP, name=esp
		size=${decoy_mib}MiB, type=$LINUX, name=decoy
		size=${root_mib}MiB, type=$root_type, name=root
	EOF
	mapfile -t starts < <(sfdisk -d "$out" | sed -n 's/.*start= *\([0-9]*\),.*/\1/p')
	dd if="$work/esp.vfat" of="$out" bs=512 seek="${starts[0]}" conv=notrunc,sparse status=none
	dd if="$work/decoy-$decoy_mib.ext4" of="$out" bs=512 seek="${starts[1]}" conv=notrunc,sparse status=none
	dd if="$work/root.ext4" of="$out" bs=512 seek="${starts[2]}" conv=notrunc,sparse status=none
}

step "build the disk images ($TH_SUITE tree)"
require "th_build_rootfs $TH_SUITE" th_build_rootfs "$TH_SUITE"
mkdir "$work/tree" "$work/decoy"
tar --numeric-owner --xattrs --xattrs-include='*' -C "$work/tree" -xf "$(th_cache_tarball "$TH_SUITE")"
echo disk-root >"$work/tree/etc/e2e-37-marker"
mkdir -p "$work/decoy/etc"
echo decoy >"$work/decoy/etc/e2e-37-decoy"
tree_mib=$(($(du -sm "$work/tree" | cut -f1)))
root_mib=$((tree_mib * 13 / 10 + 64))
require "mkfs.ext4 -d (root, $root_mib MiB)" mkext4 "$work/root.ext4" "$root_mib" "$work/tree"
require "mkfs.ext4 -d (decoy, larger)" mkext4 "$work/decoy-$((root_mib + 64)).ext4" "$((root_mib + 64))" "$work/decoy"
require "mkfs.ext4 -d (decoy, small)" mkext4 "$work/decoy-32.ext4" 32 "$work/decoy"
require "mkfs.vfat" mkfs.vfat -C "$work/esp.vfat" $((16 * 1024 - 1024))
disk_mib=$((16 + root_mib + 64 + root_mib + 4))
truncate -s "${disk_mib}M" "$work/root-type.img" "$work/largest.img" "$work/vfat.img"
require "GPT image with the x86-64 root type" mkdisk "$work/root-type.img" "$ROOT_X86_64" $((root_mib + 64))
require "GPT image without a root type" mkdisk "$work/largest.img" "$LINUX" 32
require "QCOW2 of the first" qemu-img convert -O qcow2 "$work/root-type.img" "$work/root-type.qcow2"
require "GPT image with only a vfat partition" sh -c "printf 'label: gpt\nsize=16MiB, type=$ESP\n' | sfdisk -q '$work/vfat.img' &&
	dd if='$work/esp.vfat' of='$work/vfat.img' bs=512 seek=2048 conv=notrunc status=none"
rm -rf "$work/tree" "$work/decoy" "$work"/*.ext4 "$work/esp.vfat"
ls -ls "$work"

# e37_import SOURCE NAME [OPTIONS...]: run sdme-import out here; its
# stderr in $work/NAME.err.
e37_import() {
	local src=$1 name=$2
	shift 2
	"$imp" --state-dir "$state" "$@" "$src" "$name" 2>"$work/$name.err"
}

# wait_mounted NAME PID: until the disk image of the import of NAME (by
# PID) is mounted in its staging directory, as one of its threads sees it
# (sdme-import mounts it in a private mount namespace); prints that thread's
# id; status 1 if never.
wait_mounted() {
	local m
	for _ in $(seq 600); do
		m=$(grep -lF " $state/import/$1.staging/" /proc/"$2"/task/*/mountinfo 2>/dev/null | sed -n 1p)
		if [ -n "$m" ]; then
			m=${m%/mountinfo}
			echo "${m##*/}"
			return 0
		fi
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}

# private_mount PID TID NAME: with the import PID stopped while its thread
# TID has the disk image of NAME mounted: that thread's mount namespace is
# not ours, and our mount table has no trace of the image.
private_mount() {
	assert_match "$3: the image is mounted in the import's thread" " $state/import/$3.staging/" \
		"$(cat "/proc/$1/task/$2/mountinfo")"
	check "$3: the import's mount namespace is not the caller's" \
		test "$(readlink "/proc/$1/task/$2/ns/mnt")" != "$(readlink /proc/self/ns/mnt)"
	assert_eq "$3: no mount of the image in the caller's mount table" "" \
		"$(grep -F -e " $state/import/" -e " $work" /proc/self/mountinfo || true)"
}

# loops_gone: until no loop device is backed by a file below $work (the
# kernel releases an autoclear loop device after its last mount goes, which
# follows the death of the namespace); status 1 after 10 s.
loops_gone() {
	for _ in $(seq 100); do
		grep -qF "$work" <<<"$(losetup -a)" || return 0
		sleep 0.1
	done
	return 1
}

step "kill -9 while the disk image is mounted: nothing is left"
"$imp" --state-dir "$state" "$work/largest.img" "$name_big" 2>"$work/$name_big.killed.err" &
pid=$!
if tid=$(wait_mounted "$name_big" "$pid"); then
	kill -STOP "$pid"
	private_mount "$pid" "$tid" "$name_big"
else
	fail "the disk image of $name_big was never seen mounted"
fi
kill -KILL "$pid" 2>/dev/null || true
wait "$pid" || true
check "the loop device is released after kill -9" loops_gone
assert_eq "no mount left after kill -9" "" "$(grep -F -e " $state/import/" -e " $work" /proc/self/mountinfo || true)"
check "no rootfs $name_big after kill -9" test ! -e "$state/rootfs/$name_big"

# Every change to our mount table during the imports below, as findmnt
# --poll reports it; a probe mount proves it is listening before they start.
findmnt --poll --raw --noheadings -o ACTION,TARGET >"$work/mount-events" &
poll_pid=$!
mkdir "$work/probe"
mount -t tmpfs e2e-37-probe "$work/probe"
for _ in $(seq 100); do
	grep -qF "$work/probe" "$work/mount-events" && break
	sleep 0.1
done
umount "$work/probe"
require "findmnt --poll sees a probe mount" grep -qF "$work/probe" "$work/mount-events"

# The import of largest.img is also the rerun after the kill -9 above.
for spec in "root-type.img $name_raw" "root-type.qcow2 $name_qcow" "largest.img $name_big"; do
	read -r img n <<<"$spec"
	step "sdme-import $img $n"
	t0=$(date +%s%N)
	if e37_import "$work/$img" "$n"; then
		step "imported in $((($(date +%s%N) - t0) / 1000000)) ms"
	else
		fail "sdme-import $img $n failed: $(tail -n 3 "$work/$n.err")"
	fi
	cat "$work/$n.err"
	assert_eq "$n: the root file system's marker" disk-root "$(cat "$state/rootfs/$n/etc/e2e-37-marker" 2>&1 || true)"
	check "$n: not the decoy partition" test ! -e "$state/rootfs/$n/etc/e2e-37-decoy"
	check "$n: a whole tree (usr/lib/systemd/systemd)" test -x "$state/rootfs/$n/usr/lib/systemd/systemd"
	assert_eq "$n: nothing left (loop devices, mounts, temporary files)" "" "$(leftovers "$work" "$state")"
done
kill "$poll_pid"
wait "$poll_pid" || true
poll_pid=
assert_eq "no mount of a disk image ever appeared in our mount table" "" \
	"$(grep -F " $state/import/" "$work/mount-events" || true)"
assert_match "the root partition type was reported" "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709" "$(cat "$work/$name_raw.err")"
assert_match "the largest Linux file system was reported" "largest" "$(cat "$work/$name_big.err")"

step "Ctrl+C while the disk image is mounted and being copied"
name_int=disk-int
"$imp" --state-dir "$state" "$work/root-type.qcow2" "$name_int" 2>"$work/$name_int.err" &
pid=$!
wait_mounted "$name_int" "$pid" >/dev/null || fail "the disk image of $name_int was never seen mounted"
kill -INT "$pid" 2>/dev/null || true
rc=0
wait "$pid" || rc=$?
cat "$work/$name_int.err"
assert_eq "interrupted import exits 130" 130 "$rc"
check "no rootfs $name_int" test ! -e "$state/rootfs/$name_int"
assert_eq "nothing left after Ctrl+C" "" "$(leftovers "$work" "$state")"
rm -f "$state/import/$name_int.lock"

step "a disk image without a Linux file system"
rc=0
e37_import "$work/vfat.img" "$name_vfat" --quiet || rc=$?
cat "$work/$name_vfat.err"
[ "$rc" -ne 0 ] || fail "sdme-import of a vfat-only disk image succeeded"
assert_eq "one line of error" 1 "$(wc -l <"$work/$name_vfat.err")"
assert_match "the error names the file and the reason" "$work/vfat.img.*no Linux file system" "$(cat "$work/$name_vfat.err")"
check "no rootfs $name_vfat" test ! -e "$state/rootfs/$name_vfat"
assert_eq "nothing left after the error" "" "$(leftovers "$work" "$state")"

step "a corrupt GPT and a missing qemu-img"
# One byte of the primary GPT header changed: its CRC no longer matches.
cp --sparse=always "$work/largest.img" "$work/corrupt.img"
printf 'X' | dd of="$work/corrupt.img" bs=1 seek=$((512 + 40)) conv=notrunc status=none
rc=0
e37_import "$work/corrupt.img" disk-corrupt --quiet || rc=$?
cat "$work/disk-corrupt.err"
[ "$rc" -ne 0 ] || fail "sdme-import of a disk image with a corrupt GPT succeeded"
assert_eq "corrupt GPT: one line of error" 1 "$(wc -l <"$work/disk-corrupt.err")"
assert_match "corrupt GPT: names the file and the reason" "$work/corrupt.img.*corrupt GPT: header checksum" "$(cat "$work/disk-corrupt.err")"
rm -f "$work/corrupt.img" "$state/import/disk-corrupt.lock"
rc=0
PATH=/nonexistent e37_import "$work/root-type.qcow2" disk-noqemu --quiet || rc=$?
cat "$work/disk-noqemu.err"
[ "$rc" -ne 0 ] || fail "sdme-import of a QCOW2 image without qemu-img succeeded"
assert_eq "no qemu-img: one line of error" 1 "$(wc -l <"$work/disk-noqemu.err")"
assert_match "no qemu-img: names the file and the reason" "$work/root-type.qcow2.*qemu-img.*not installed" "$(cat "$work/disk-noqemu.err")"
rm -f "$state/import/disk-noqemu.lock"
check "no rootfs after the errors" test ! -e "$state/rootfs/disk-corrupt" -a ! -e "$state/rootfs/disk-noqemu"
assert_eq "nothing left after the errors" "" "$(leftovers "$work" "$state")"

step "boot the imported disk images"
th_exec mkdir -p /etc/sdme
for n in "$name_raw" "$name_qcow" "$name_big"; do
	printf '[Container]\nRootfs=%s\n' "$n" | th_exec sh -c "cat > /etc/sdme/$n.container"
done
require_in "daemon-reload" systemctl daemon-reload
for n in "$name_raw" "$name_qcow" "$name_big"; do
	t0=$(date +%s%N)
	check_in "systemctl start sdme-$n" timeout 180 systemctl start "sdme-$n"
	step "sdme-$n started in $((($(date +%s%N) - t0) / 1000000)) ms"
	assert_eq "$n: is-system-running" running "$(th_exec timeout 60 systemctl -M "$n" is-system-running 2>&1 || true)"
	assert_eq "$n: the disk's tree inside" disk-root "$(th_run_in "$n" cat /etc/e2e-37-marker 2>&1 || true)"
	check_in "systemctl stop sdme-$n" timeout 120 systemctl stop "sdme-$n"
	th_unmounted "$n" || fail "overlay of $n still mounted after stop"
done

step "post-import: a minbase bookworm tree without systemd"
minbase=$TH_CACHE/minbase-bookworm.tar
if [ ! -s "$minbase" ]; then
	step "debootstrap --variant=minbase bookworm (cached as $minbase)"
	require "debootstrap minbase bookworm" debootstrap --variant=minbase bookworm "$work/minbase-build" "$TH_MIRROR"
	tar --numeric-owner --xattrs --xattrs-include='*' -C "$work/minbase-build" -cf "$minbase.tmp.$$" .
	mv -f "$minbase.tmp.$$" "$minbase"
	rm -rf --one-file-system "$work/minbase-build"
fi
mkdir "$work/minbase"
tar --numeric-owner --xattrs --xattrs-include='*' -C "$work/minbase" -xf "$minbase"
check "the minbase tree has no systemd" test ! -e "$work/minbase/usr/lib/systemd/systemd"
# The tree's resolv.conf is a symlink (as with resolved): it must be the
# same symlink again after the sandbox ran with the host's resolv.conf.
rm -f "$work/minbase/etc/resolv.conf"
ln -s ../run/systemd/resolve/stub-resolv.conf "$work/minbase/etc/resolv.conf"

step "sdme-import --install-packages=yes (apt in the sandbox, on the CI machine)"
t0=$(date +%s%N)
if e37_import "$work/minbase" "$name_yes" --install-packages=yes; then
	step "imported with apt in $((($(date +%s%N) - t0) / 1000000)) ms"
else
	fail "sdme-import --install-packages=yes failed: $(tail -n 3 "$work/$name_yes.err")"
fi
tail -n 15 "$work/$name_yes.err"
root_yes=$state/rootfs/$name_yes
check "systemd installed" test -x "$root_yes/usr/lib/systemd/systemd"
check "dbus installed" test -x "$root_yes/usr/bin/dbus-daemon"
assert_eq "resolv.conf restored (the tree's symlink)" ../run/systemd/resolve/stub-resolv.conf \
	"$(readlink "$root_yes/etc/resolv.conf" 2>&1 || true)"
check "no resolv.conf left aside" test ! -e "$root_yes/etc/.resolv.conf.sdme-import"
check "no policy-rc.d left" test ! -e "$root_yes/usr/sbin/policy-rc.d"
assert_eq "no mount left below the state dir or the source" "" "$(grep -F -e " $state" -e " $work" /proc/self/mountinfo || true)"
assert_eq "nothing left" "" "$(leftovers "$work" "$state")"
assert_match "the install was reported" "installing systemd dbus.* with apt-get" "$(cat "$work/$name_yes.err")"

step "boot it"
printf '[Container]\nRootfs=%s\n' "$name_yes" | th_exec sh -c "cat > /etc/sdme/$name_yes.container"
require_in "daemon-reload" systemctl daemon-reload
t0=$(date +%s%N)
check_in "systemctl start sdme-$name_yes" timeout 180 systemctl start "sdme-$name_yes"
step "sdme-$name_yes started in $((($(date +%s%N) - t0) / 1000000)) ms"
assert_eq "$name_yes: is-system-running" running "$(th_exec timeout 60 systemctl -M "$name_yes" is-system-running 2>&1 || true)"
assert_eq "$name_yes: dbus active" active "$(th_exec systemctl -M "$name_yes" is-active dbus.service 2>&1 || true)"
assert_eq "$name_yes: runs bookworm" bookworm "$(th_run_in "$name_yes" sed -n 's/^VERSION_CODENAME=//p' /etc/os-release 2>&1 || true)"
check_in "systemctl stop sdme-$name_yes" timeout 120 systemctl stop "sdme-$name_yes"
th_unmounted "$name_yes" || fail "overlay of $name_yes still mounted after stop"

step "sdme-import --install-packages=no"
rc=0
e37_import "$work/minbase" "$name_no" --install-packages=no || rc=$?
cat "$work/$name_no.err"
assert_eq "--install-packages=no imports (exit 0)" 0 "$rc"
assert_match "a warning that it will not boot" "warning: $name_no: no systemd.*will not boot as Rootfs=$name_no" "$(cat "$work/$name_no.err")"
check "nothing installed" test ! -e "$state/rootfs/$name_no/usr/lib/systemd/systemd"
