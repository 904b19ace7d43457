# shellcheck shell=bash
# 85-cli: the sdme command line, on the files and on systemd. `sdme create`
# writes exactly the file the options say (and nothing when the model
# refuses a value: the generator's own message), `start` boots it, `exec`
# forwards stdin and the exit status, `ps` shows the state, `stop` returns
# with the overlay unmounted, `rm` refuses while running, while something is
# mounted below the state dir, masks a vendor file, then removes the file,
# the state and the unit. `new` with a command exits with its status, and a
# `new` whose start fails leaves nothing behind.

name=cli
unit=sdme-$name.service
file=/etc/sdme/$name.container
state=/var/lib/sdme/containers/$name

on_cleanup sh -c "rm -rf $state /var/lib/sdme/containers/cli2 /var/lib/sdme/containers/cli3 $file /etc/sdme/bad.container /etc/sdme/cli2.container /etc/sdme/cli3.container /usr/lib/sdme/vend.container /etc/sdme/race.container /tmp/race1 /tmp/race2 /etc/sdme/evil.container /etc/sdme/broken.container /var/lib/sdme/containers/evil /root/canary && systemctl daemon-reload"
on_cleanup sh -c "umount $state/mnt 2>/dev/null; for u in $unit sdme-cli2.service sdme-cli3.service; do systemctl stop \$u; systemctl reset-failed \$u 2>/dev/null; done; true"

step "sdme --version; a bad value gives the model's message and writes nothing"
assert_match "sdme --version" '^sdme [0-9]+\.[0-9]+\.[0-9]+$' "$(th_exec sdme --version 2>&1)"
assert_match "sdme create bad --capability cap_foo: exit 1, the generator's message" \
	"^1 sdme: /etc/sdme/bad.container:[0-9]+: Capability=cap_foo: unknown capability 'cap_foo'" \
	"$(out_rc sdme create bad --capability cap_foo)"
check_in "no bad.container" test ! -e /etc/sdme/bad.container
check_in "no temporary file in /etc/sdme" sh -c '! ls -A /etc/sdme 2>/dev/null | grep -q sdme-create'
# shellcheck disable=SC2016 # expanded by the test host's bash
assert_eq "bash completion installed: sdme sto<TAB> gives stop" stop "$(th_exec bash -c \
	'. /usr/share/bash-completion/completions/sdme; COMP_WORDS=(sdme sto); COMP_CWORD=1; _sdme sdme sto sdme; echo "${COMPREPLY[*]}"' 2>&1)"
check_in "zsh and fish completions installed" test -s /usr/share/zsh/vendor-completions/_sdme -a -s /usr/share/fish/vendor_completions.d/sdme.fish
assert_match "a name the model refuses" "^1 sdme: machine name '../x'" "$(out_rc sdme create ../x)"

step "sdme create $name"
require_in "sdme create $name" sdme create "$name" -e "GREETING=hello world" --hostname clihost --boot-timeout 2min
# shellcheck disable=SC2016 # the backquotes are the file's text
want='# Made by `sdme create`. An ordinary sdme.container(5) file: edit it
# freely, then run `systemctl daemon-reload`.
[Container]
Hostname=clihost
Environment="GREETING=hello world"
BootTimeout=2min'
assert_eq "$file content" "$want" "$(th_exec cat "$file")"
assert_eq "$file mode" 644 "$(th_exec stat -c %a "$file")"
assert_eq "$unit generated and loaded (create reloaded)" loaded \
	"$(th_exec systemctl show -p LoadState --value "$unit")"
assert_match "a second create of $name is refused, naming the file" \
	"^1 sdme: container $name exists already: $file\$" "$(out_rc sdme create "$name" -r other)"
assert_eq "$file unchanged" "$want" "$(th_exec cat "$file")"
assert_match "exec in a stopped container is refused" "^1 sdme: $name is not running \(inactive\)" \
	"$(out_rc sdme exec "$name" -- true)"

step "two sdme create of one name at once: one file, one clear error"
# shellcheck disable=SC2016 # expanded by the test host's shell
out=$(th_sh 'sdme create race >/tmp/race1 2>&1 & p1=$!; sdme create race -r other >/tmp/race2 2>&1 & p2=$!
r1=0; r2=0; wait $p1 || r1=$?; wait $p2 || r2=$?; echo "$r1$r2"; cat /tmp/race1 /tmp/race2')
printf '%s\n' "$out"
assert_match "exactly one create succeeded" '^(01|10)$' "${out%%$'\n'*}"
assert_match "the other names the file" "sdme: container race exists already: /etc/sdme/race.container" "$out"
check_in "no temporary file in /etc/sdme" sh -c '! ls -A /etc/sdme | grep -q sdme-create'
require_in "sdme rm race" sdme rm race

step "sdme start, exec, ps"
require_in "sdme start $name" timeout 180 sdme start "$name"
assert_eq "$unit active after sdme start" active "$(th_exec systemctl is-active "$unit" 2>&1 || true)"
check_in_status 7 "sdme exec forwards exit status 7" timeout 60 sdme exec "$name" -- sh -c 'exit 7'
check_in_status 0 "sdme exec true" timeout 60 sdme exec "$name" -- true
assert_eq "sdme exec hostname" clihost "$(th_exec timeout 60 sdme exec "$name" -- hostname 2>&1)"
assert_eq "stdin passes through sdme exec" 2 \
	"$(printf 'x\ny\n' | th_exec timeout 60 sdme exec "$name" -- wc -l 2>&1)"
# Figures, not assertions: 10 alternating runs each, medians in ms.
# shellcheck disable=SC2016 # expanded by the test host's shell
th_sh 'ms() { t0=$(date +%s%N); "$@" >/dev/null 2>&1; echo $((($(date +%s%N) - t0) / 1000000)); }
med() { sort -n | sed -n 5p; }
for i in 1 2 3 4 5 6 7 8 9 10; do
	ms sdme exec '"$name"' -- /bin/true >>/tmp/f.exec
	ms systemd-run -M '"$name"' --wait --pipe -q --collect /bin/true >>/tmp/f.run
	ms sdme ps >>/tmp/f.ps
done
echo "figures: sdme exec /bin/true $(med </tmp/f.exec) ms, systemd-run -M --wait --pipe /bin/true $(med </tmp/f.run) ms, sdme ps $(med </tmp/f.ps) ms (medians of 10)"
rm -f /tmp/f.exec /tmp/f.run /tmp/f.ps' || true
ps=$(th_exec sdme ps 2>&1)
printf '%s\n' "$ps"
assert_match "sdme ps header" '^NAME +STATUS +HEALTH +OS +ROOTFS' "$ps"
assert_match "sdme ps: $name running ok on (host)" "^$name +running +ok +.* +\(host\) +" \
	"$(printf '%s\n' "$ps" | awk -v n="$name" '$1 == n')"
check_in "sdme logs -n 50" sh -c "sdme logs $name -n 50 | grep -q ."
assert_match "rm of a running container is refused" "^1 sdme: $name is active; stop it first or use rm -f" \
	"$(out_rc sdme rm "$name")"
check_in "$file kept" test -e "$file"

step "sdme stop: returns with the overlay unmounted"
require_in "sdme stop $name" timeout 120 sdme stop "$name"
check_in "$state/merged is not a mount point right after sdme stop" sh -c "! findmnt -n $state/merged"
assert_eq "$unit inactive" inactive "$(th_exec systemctl is-active "$unit" 2>&1 || true)"
assert_match "sdme ps: $name stopped" "^$name +stopped +ok +.* +\(host\) +" \
	"$(th_exec sdme ps 2>&1 | awk -v n="$name" '$1 == n')"

step "sdme rm refuses while something is mounted below the state dir; masks vendor files"
require_in "mount a tmpfs at $state/mnt" sh -c "mkdir -p $state/mnt && mount -t tmpfs none $state/mnt"
assert_match "rm refused, naming the mount" "^1 sdme: $state/mnt is still mounted; nothing removed" \
	"$(out_rc sdme rm "$name")"
check_in "$file kept" test -e "$file"
require_in "umount $state/mnt" umount "$state/mnt"
require_in "a vendor file" sh -c 'mkdir -p /usr/lib/sdme && printf "[Container]\n" > /usr/lib/sdme/vend.container'
assert_eq "rm of a vendor file masks it and says so" \
	"0 sdme: vend is defined by /usr/lib/sdme/vend.container: masked with /etc/sdme/vend.container -> /dev/null" \
	"$(out_rc sdme rm vend)"
check_in "vendor file kept" test -e /usr/lib/sdme/vend.container
assert_eq "the mask" /dev/null "$(th_exec readlink /etc/sdme/vend.container 2>&1 || true)"
require_in "remove the vendor file and its mask" sh -c "rm /usr/lib/sdme/vend.container /etc/sdme/vend.container && systemctl daemon-reload"

step "sdme rm"
require_in "sdme rm $name" sdme rm "$name"
check_in "no $file" test ! -e "$file"
check_in "no $state" test ! -e "$state"
assert_eq "$unit gone" not-found "$(th_exec systemctl show -p LoadState --value "$unit")"

step "sdme rm never deletes through a symlinked state dir or upper/"
require_in "a host dir with a canary" sh -c 'mkdir -p /root/canary && echo keep > /root/canary/file'
require_in "sdme create evil" sdme create evil
require_in "state dir evil -> /root/canary" ln -sfn /root/canary /var/lib/sdme/containers/evil
require_in "sdme rm evil (state dir is a symlink)" sdme rm evil
check_in "the link is gone" sh -c '! test -L /var/lib/sdme/containers/evil'
check_in "nothing behind the link was deleted" test -f /root/canary/file
require_in "sdme create evil again" sdme create evil
require_in "state dir with upper -> /root/canary" sh -c 'mkdir -p /var/lib/sdme/containers/evil && ln -s /root/canary /var/lib/sdme/containers/evil/upper'
require_in "sdme rm evil (upper/ is a symlink)" sdme rm evil
check_in "state dir gone" test ! -e /var/lib/sdme/containers/evil
check_in "nothing behind upper/ was deleted" test -f /root/canary/file
require_in "remove the canary" rm -r /root/canary

step "sdme ps shows a file with errors; non-root is refused in one line"
require_in "a broken file" sh -c 'printf "[Container]\nBnd=x\n" > /etc/sdme/broken.container'
assert_match "sdme ps: broken has a file error" '^broken +stopped +file error: /etc/sdme/broken.container:2: ' \
	"$(th_exec sdme ps 2>&1 | awk '$1 == "broken"')"
require_in "remove the broken file" rm /etc/sdme/broken.container
assert_eq "sdme ps as nobody" "1 sdme: must be run as root" "$(out_rc setpriv --reuid=65534 --regid=65534 --clear-groups sdme ps)"

step "sdme new with a command; a new whose start fails leaves nothing"
check_in_status 3 "sdme new cli2 -- sh -c 'exit 3'" timeout 180 sdme new cli2 -- sh -c 'exit 3'
require_in "sdme rm -f cli2" timeout 120 sdme rm -f cli2
check_in "no cli2 file or state" sh -c '! test -e /etc/sdme/cli2.container && ! test -e /var/lib/sdme/containers/cli2'
check_in_status 4 "sdme new --rm cli2 -- sh -c 'exit 4'" timeout 180 sdme new --rm cli2 -- sh -c 'exit 4'
check_in "--rm: no cli2 file or state afterwards" sh -c '! test -e /etc/sdme/cli2.container && ! test -e /var/lib/sdme/containers/cli2'
assert_eq "--rm: sdme-cli2.service gone" not-found "$(th_exec systemctl show -p LoadState --value sdme-cli2.service)"
out=$(out_rc timeout 180 sdme new cli3 -r no-such-rootfs)
printf '%s\n' "$out"
assert_match "sdme new cli3 with a missing rootfs fails, naming the removal" "^1 .*cli3 was removed again: cli3 did not start" "$out"
check_in "no cli3 file or state" sh -c '! test -e /etc/sdme/cli3.container && ! test -e /var/lib/sdme/containers/cli3'
assert_eq "sdme-cli3.service gone" not-found "$(th_exec systemctl show -p LoadState --value sdme-cli3.service)"
