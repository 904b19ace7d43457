# shellcheck shell=bash
# shellcheck disable=SC2016 # th_sh snippets expand inside the test host
# 87-cli-interactive: `sdme new`, `join`, `exec` as a user types them. A
# generated name; exit statuses forwarded (new, join, exec); an interactive
# `sdme join` and `sdme new --rm` on a real terminal (script(1)); stdin
# through exec; SIGINT to exec reaches the command at once; a `new` whose start fails (missing
# rootfs, too short --boot-timeout) or that gets SIGINT during the boot
# leaves nothing behind and says why; two `create` of one name at once; the
# umask check; `logs --guest`.

a=ia
names="ia ib ic id ie iu irace"
on_cleanup sh -c "for n in $names; do rm -rf /var/lib/sdme/containers/\$n /etc/sdme/\$n.container; done; rm -f /tmp/irace1 /tmp/irace2 /tmp/ijoin /tmp/ijout; systemctl daemon-reload"
on_cleanup sh -c "for n in $names; do systemctl stop sdme-\$n; systemctl reset-failed sdme-\$n sdme-prepare@\$n; done 2>/dev/null; true"

# out_rc CMD...: "RC OUTPUT" of a command inside the host.
out_rc() {
	local out rc=0
	out=$(th_exec "$@" 2>&1) || rc=$?
	printf '%s %s' "$rc" "$out"
}

# gone NAME: no file, no state dir, no unit.
gone() {
	check_in "no $1 file" test ! -e "/etc/sdme/$1.container"
	check_in "no $1 state dir" test ! -e "/var/lib/sdme/containers/$1"
	assert_eq "sdme-$1.service gone" not-found "$(th_exec systemctl show -p LoadState --value "sdme-$1.service")"
}

step "sdme new -- hostname: a generated name, exit 0"
out=$(th_sh 'sdme new -- hostname 2>/tmp/ijoin; echo "rc=$?"; cat /tmp/ijoin; rm -f /tmp/ijoin')
printf '%s\n' "$out"
gen=${out%%$'\n'*} # the first line (no pipe: `| head` would SIGPIPE the writer)
assert_match "hostname prints an adjective-noun name" '^[a-z]+-[a-z]+$' "$gen"
assert_match "exit 0, stderr names it" "rc=0"$'\n'"sdme: created $gen\$" "$out"
if [[ $gen =~ ^[a-z]+-[a-z]+$ ]]; then
	require_in "sdme rm -f $gen" timeout 120 sdme rm -f "$gen"
	gone "$gen"
fi

step "sdme new $a -- sh -c 'exit 7'; join and exec forward statuses"
check_in_status 7 "sdme new $a -- sh -c 'exit 7'" timeout 180 sdme new "$a" -- sh -c 'exit 7'
check_in_status 5 "sdme join $a -- sh -c 'exit 5'" timeout 60 sdme join "$a" -- sh -c 'exit 5'
assert_eq "join: a login environment" "/root root" \
	"$(th_exec timeout 60 sdme join "$a" -- sh -c 'echo "$HOME $USER"' </dev/null 2>&1 | tr -d '\r')"
assert_eq "printf 'x\\ny\\n' | sdme exec $a -- wc -l" 2 \
	"$(printf 'x\ny\n' | th_exec timeout 60 sdme exec "$a" -- wc -l 2>&1)"

check_in "sdme logs $a --guest -n 5 -- -o cat: the guest's journal" sh -c "sdme logs $a --guest -n 5 -- -o cat | grep -q ."
check_in "sdme logs $a --since today: the unit's log" sh -c "sdme logs $a --since today | grep -q sdme-$a"

step "an interactive sdme join on a terminal: hostname, then exit 3"
# on_terminal NAME CMD: CMD (sdme join NAME, sdme new NAME) on a terminal,
# typed into as a user does, each line once the shell shows it is ready:
# `hostname`, then `exit 3`. Prints the screen and "rc=STATUS".
on_terminal() {
	th_exec bash -s "$1" "$2" <<'EOS' 2>&1
a=$1
rm -f /tmp/ijoin /tmp/ijout && mkfifo /tmp/ijoin
TERM=xterm timeout 120 script -qec "$2; echo rc=\$?" /dev/null </tmp/ijoin >/tmp/ijout 2>&1 &
p=$!
exec 3>/tmp/ijoin
# screen: the terminal's text without escape sequences and CRs.
screen() { sed 's/\x1b\[[0-9;?]*[a-zA-Z]//g; s/\r//g' /tmp/ijout; }
wait_for() {
	local i=0
	until grep -qx -- "$1" <<<"$(screen)"; do
		i=$((i + 1))
		[ $i -lt 900 ] || { echo "no line '$1' after 90 s"; return 1; }
		sleep 0.1
	done
}
wait_for "root@$a:~# " && printf 'hostname\n' >&3
wait_for "$a" && printf 'exit 3\n' >&3
exec 3>&-
wait $p
screen
rm -f /tmp/ijoin /tmp/ijout
EOS
}

out=$(on_terminal "$a" "sdme join $a")
printf '%s\n' "$out"
assert_match "the shell answered hostname" $'(^|\n)'"$a"$'\n' "$out"
assert_match "sdme join exited 3" $'\nrc=3' "$out"
check_in_status 5 "join on a terminal forwards a command's status" \
	timeout 60 script -qec "sdme join $a -- sh -c 'test -t 0 && exit 5'" /dev/null

step "sdme new --rm ie on a terminal: a shell, exit 3, then nothing left"
out=$(on_terminal ie "sdme new --rm ie")
printf '%s\n' "$out"
assert_match "the shell of the new container answered hostname" $'(^|\n)ie\n' "$out"
assert_match "sdme new exited 3" $'\nrc=3' "$out"
gone ie

step "SIGINT to sdme exec $a -- sleep 100 ends it within a second"
out=$(th_sh 'sdme exec '"$a"' -- sleep 100 & p=$!
i=0; until systemd-run -q --collect -M '"$a"' --wait --pipe pgrep -x sleep >/dev/null; do
	i=$((i + 1)); [ $i -lt 100 ] || { echo "sleep never started"; break; }; sleep 0.1; done
t0=$(date +%s%N); kill -INT $p; rc=0; wait $p || rc=$?
echo "rc=$rc ms=$((($(date +%s%N) - t0) / 1000000))"
systemd-run -q --collect -M '"$a"' --wait --pipe pgrep -x sleep || echo "no sleep left"' 2>&1)
printf '%s\n' "$out"
assert_match "exit 130 (SIGINT)" 'rc=130 ' "$out"
ms=$(printf '%s\n' "$out" | sed -n 's/.*ms=\([0-9]*\).*/\1/p')
assert_match "ended within a second (${ms:-?} ms)" '^([0-9]{1,3})$' "$ms"
assert_match "the command is gone in the container" 'no sleep left' "$out"
require_in "sdme rm -f $a" timeout 120 sdme rm -f "$a"
gone "$a"
assert_match "join of a stopped container: one line, exit 1" "^1 sdme: $a is not running|^1 sdme: no container $a" \
	"$(out_rc sdme join "$a")"

step "a failing start under sdme new leaves nothing and says why"
out=$(out_rc timeout 180 sdme new ib -r no-such-rootfs -- true)
printf '%s\n' "$out"
assert_match "missing rootfs: exit 1" '^1 ' "$out"
assert_match "the cause is printed" 'rootfs /var/lib/sdme/rootfs/no-such-rootfs not found' "$out"
assert_match "the removal is said" 'ib was removed again: ib did not start' "$out"
gone ib
# emergency.service: in every guest, never started by a normal boot, so a
# --wait-for on it keeps the boot waiting until --boot-timeout.
out=$(out_rc timeout 180 sdme new ic --boot-timeout 2s --wait-for emergency.service -- true)
printf '%s\n' "$out"
assert_match "too short --boot-timeout: exit 1, removed" '^1 .*ic was removed again: ic did not start' "$out"
assert_match "the cause is printed" 'emergency.service' "$out"
gone ic

step "SIGINT to sdme new during the boot leaves nothing"
out=$(th_sh 'sdme new id --boot-timeout 2min --wait-for emergency.service -- true & p=$!
i=0; until [ "$(systemctl is-active sdme-id.service)" = activating ]; do
	i=$((i + 1)); [ $i -lt 300 ] || { echo "never activating"; break; }; sleep 0.1; done
kill -INT $p; rc=0; wait $p || rc=$?; echo "rc=$rc"' 2>&1)
printf '%s\n' "$out"
assert_match "interrupted, removed, exit non-zero" 'id was removed again: interrupted by SIGINT' "$out"
assert_match "exit non-zero" 'rc=[1-9]' "$out"
gone id

step "two sdme create irace at once: one file, one clear error; the umask check"
out=$(th_sh 'sdme create irace >/tmp/irace1 2>&1 & p1=$!; sdme create irace -r other >/tmp/irace2 2>&1 & p2=$!
r1=0; r2=0; wait $p1 || r1=$?; wait $p2 || r2=$?; echo "$r1$r2"; cat /tmp/irace1 /tmp/irace2; rm -f /tmp/irace1 /tmp/irace2')
printf '%s\n' "$out"
assert_match "exactly one create succeeded" '^(01|10)'$'\n' "$out"
assert_match "the other names the file" "sdme: container irace exists already: /etc/sdme/irace.container" "$out"
require_in "sdme rm irace" sdme rm irace
assert_match "umask 027 is refused with the reason" "^1 sdme: umask 0027 removes read or execute permission for others: .*non-root services" \
	"$(out_rc sh -c 'umask 027; exec sdme create iu')"
check_in "no iu file" test ! -e /etc/sdme/iu.container
