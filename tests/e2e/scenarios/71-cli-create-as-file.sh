# shellcheck shell=bash
# 71-cli-create-as-file: `sdme create` with the keys an administrator
# would write by hand (--rootfs, --bind, --env, --userns, --enable,
# --memory) gives exactly the units the same keys written by hand give,
# and after a reboot of the test host the container is running, in its
# own user namespace, with the binds in place (their destinations, missing
# from the rootfs, made by sdme-prepare: nspawn cannot on ID-mapped layers).

name=c71
rf=r71
unit=sdme-$name.service
file=/etc/sdme/$name.container
state=/var/lib/sdme/containers/$name
gen=/run/systemd/generator

on_cleanup sh -c "rm -rf $state $file /srv/c71 /tmp/c71-units.* && $(th_rootfs_rm "$rf") systemctl daemon-reload"
on_cleanup sh -c "systemctl stop $unit; systemctl reset-failed $unit 2>/dev/null; true"

# units OUT: every file the generator wrote for $name inside the host (the
# service, the overlay's mount unit unless the helper mounts it, the
# enable link), names and contents as one text, into the local file OUT.
units() {
	th_sh "cd $gen && find . -name '*$name*' | sort | while read -r f; do
		echo \"== \$f\"; if [ -L \"\$f\" ]; then readlink \"\$f\"; else cat \"\$f\"; fi; done" >"$1"
}

require "a rootfs $rf" th_put_rootfs "$rf"
require_in "a directory to bind" sh -c 'mkdir -p /srv/c71 && echo bound >/srv/c71/f'

step "sdme create with options, then the same keys by hand"
require_in "sdme create $name" sdme create "$name" --rootfs "$rf" --bind /srv/c71:/srv/data \
	--bind-ro /srv/c71/f:/etc/c71.conf --env A=1 -e "B=two words" --userns --enable --memory 256M
cat_created=$(th_exec cat "$file")
printf '%s\n' "$cat_created"
by_sdme=$(mktemp) by_hand=$(mktemp)
units "$by_sdme"
require_in "sdme rm $name" sdme rm "$name"
require_in "the same keys written by hand" sh -c "cat >$file <<'EOF'
[Container]
Rootfs=$rf
Bind=/srv/c71:/srv/data
BindReadOnly=/srv/c71/f:/etc/c71.conf
Environment=A=1 \"B=two words\"
PrivateUsers=yes

[Service]
MemoryMax=256M

[Install]
WantedBy=machines.target
EOF
systemctl daemon-reload"
units "$by_hand"
assert_eq "the units of sdme create are those of the file written by hand" \
	"$(cat "$by_hand")" "$(cat "$by_sdme")"
check "the units are not empty" grep -q "ExecStart=" "$by_sdme"
rm -f "$by_sdme" "$by_hand"

step "the created file, enabled, runs after a reboot"
require_in "remove the hand-written file" sh -c "rm $file && systemctl daemon-reload"
require_in "sdme create $name again" sdme create "$name" --rootfs "$rf" --bind /srv/c71:/srv/data \
	--bind-ro /srv/c71/f:/etc/c71.conf --env A=1 -e "B=two words" --userns --enable --memory 256M
assert_eq "the same file as the first create" "$cat_created" "$(th_exec cat "$file")"
require "reboot the test host" th_reboot
assert_eq "$unit active after the host's boot, nobody started it" active \
	"$(th_exec systemctl is-active "$unit" 2>&1 || true)"
assert_eq "the directory bind is there (its mount point made by prepare)" bound \
	"$(th_exec timeout 60 sdme exec "$name" -- cat /srv/data/f 2>&1)"
assert_eq "the file bind is there" bound "$(th_exec timeout 60 sdme exec "$name" -- cat /etc/c71.conf 2>&1)"
assert_match "a user namespace of its own (root maps elsewhere)" '^ *0 +[1-9][0-9]* +65536$' \
	"$(th_exec timeout 60 sdme exec "$name" -- cat /proc/self/uid_map 2>&1)"
assert_eq "MemoryMax= from --memory" 268435456 "$(th_exec systemctl show -p MemoryMax --value "$unit")"
require_in "sdme stop $name" timeout 120 sdme stop "$name"
require_in "sdme rm $name" sdme rm "$name"
