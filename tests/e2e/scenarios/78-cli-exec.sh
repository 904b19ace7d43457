# shellcheck shell=bash
# shellcheck disable=SC2016 # th_sh snippets expand inside the test host
# 78-cli-exec: `sdme exec` on the guest's own bus, in a host clone (xa)
# and in a PrivateUsers= container (xu): exit statuses (a status, death
# by a signal as 128 + N, 127 for a missing command, 126 for one that
# cannot be executed), stdin, stdout and stderr passed through (a pipe
# in, EOF, large output whole, a reader that leaves early is no error),
# the command as the guest's root, SIGINT and SIGTERM to sdme reaching
# the command within a second, and no transient unit left behind.

names="xa xu"
on_cleanup sh -c "for n in $names; do rm -rf /var/lib/sdme/containers/\$n /etc/sdme/\$n.container; done; rm -f /tmp/x78-err; systemctl daemon-reload"
on_cleanup sh -c "for n in $names; do systemctl stop sdme-\$n; systemctl reset-failed sdme-\$n sdme-prepare@\$n; done 2>/dev/null; true"

# out_rc CMD...: "RC OUTPUT" of a command inside the host.
out_rc() {
	local out rc=0
	out=$(th_exec "$@" 2>&1) || rc=$?
	printf '%s %s' "$rc" "$out"
}

require_in "sdme create xa" sdme create xa
require_in "sdme create xu --userns" sdme create xu --userns
require_in "sdme start xa xu" timeout 180 sdme start xa xu

for n in xa xu; do
	step "sdme exec $n: statuses"
	check_in_status 7 "$n: exit 7" timeout 60 sdme exec "$n" -- sh -c 'exit 7'
	check_in_status 0 "$n: true by name" timeout 60 sdme exec "$n" -- true
	check_in_status 143 "$n: killed by SIGTERM: 143" timeout 60 sdme exec "$n" -- sh -c 'kill -TERM $$'
	check_in_status 137 "$n: killed by SIGKILL: 137" timeout 60 sdme exec "$n" -- sh -c 'kill -KILL $$'
	assert_eq "$n: a missing command: one line, 127" "127 sdme: no-such-cmd: command not found in $n" \
		"$(out_rc timeout 60 sdme exec "$n" -- no-such-cmd)"
	assert_eq "$n: a missing path: 127" "127 sdme: /no/such: command not found in $n" \
		"$(out_rc timeout 60 sdme exec "$n" -- /no/such)"
	assert_eq "$n: not executable: 126" "126 sdme: /etc/hostname: cannot be executed in $n" \
		"$(out_rc timeout 60 sdme exec "$n" -- /etc/hostname)"

	step "sdme exec $n: stdin, stdout, stderr"
	assert_eq "$n: printf 'x\\ny\\n' | sdme exec -- wc -l" 2 \
		"$(printf 'x\ny\n' | th_exec timeout 60 sdme exec "$n" -- wc -l 2>&1)"
	assert_eq "$n: stdin at EOF (/dev/null)" "0 0" \
		"$(th_sh "timeout 60 sdme exec $n -- wc -c </dev/null; echo \$?" 2>&1 | xargs)"
	assert_eq "$n: stdin closed" "0 0" \
		"$(th_sh "timeout 60 sdme exec $n -- wc -c <&-; echo \$?" 2>&1 | xargs)"
	assert_eq "$n: 300000 lines, whole" "$(seq 300000 | md5sum)" \
		"$(th_sh "timeout 60 sdme exec $n -- seq 300000 | md5sum" 2>&1)"
	assert_eq "$n: stderr is stderr" "err" \
		"$(th_sh "timeout 60 sdme exec $n -- sh -c 'echo out; echo err >&2' 2>&1 >/dev/null")"
	assert_eq "$n: | head -1: the first line, no message, 141 (SIGPIPE)" "1 141 0" \
		"$(th_exec bash -c "timeout 60 sdme exec $n -- seq 10000000 2>/tmp/x78-err | head -1; echo \${PIPESTATUS[*]}; cat /tmp/x78-err" 2>&1 | xargs)"
	assert_eq "$n: the words as given (no \$VAR expansion by systemd)" 'A $HOME ${X} $$' \
		"$(th_exec timeout 60 sdme exec "$n" -- echo A '$HOME' '${X}' '$$' 2>&1)"
	assert_eq "$n: the guest's root runs it" "0 $n" \
		"$(th_exec timeout 60 sdme exec "$n" -- sh -c 'echo $(id -u) $(hostname)' 2>&1)"

	step "SIGINT and SIGTERM to sdme exec $n -- sleep 100"
	for s in INT TERM; do
		out=$(th_sh 'sdme exec '"$n"' -- sleep 100 & p=$!
i=0; until pgrep -f "^sleep 100" >/dev/null; do
	i=$((i + 1)); [ $i -lt 100 ] || { echo "sleep never started"; break; }; sleep 0.1; done
t0=$(date +%s%N); kill -'"$s"' $p; rc=0; wait $p || rc=$?
echo "rc=$rc ms=$((($(date +%s%N) - t0) / 1000000))"
pgrep -f "^sleep 100" || echo "no sleep left"' 2>&1)
		printf '%s\n' "$out"
		want=130
		[ "$s" = INT ] || want=143
		assert_match "$n: SIG$s: exit $want" "rc=$want " "$out"
		ms=$(printf '%s\n' "$out" | sed -n 's/.*ms=\([0-9]*\).*/\1/p')
		assert_match "$n: SIG$s: ended within a second (${ms:-?} ms)" '^([0-9]{1,3})$' "$ms"
		assert_match "$n: SIG$s: the command is gone" 'no sleep left' "$out"
	done
	assert_eq "$n: no run-sdme unit left in the guest" "" \
		"$(th_exec systemctl -M "$n" list-units --all --no-legend 'run-sdme-*' 2>&1)"
done
assert_match "xu has a user namespace of its own" '^ *0 +[1-9][0-9]* +65536$' \
	"$(th_exec timeout 60 sdme exec xu -- cat /proc/self/uid_map 2>&1)"

require_in "sdme stop xa xu" timeout 120 sdme stop xa xu
assert_match "exec of a stopped container: one line, exit 1" "^1 sdme: xa is not running \(inactive\)$" \
	"$(out_rc sdme exec xa -- true)"
require_in "sdme rm xa xu" sdme rm xa xu
