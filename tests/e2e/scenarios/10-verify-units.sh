# shellcheck shell=bash
# 10-verify-units: the generator's output for every golden case passes
# `systemd-analyze verify` on a real systemd.
#
# For each tests/golden/CASE/ (format: generator/tests/golden.rs; CASE/root
# is a fake root, CASE/expected the output tree, CASE/expected-stderr the
# error lines, whose presence means exit status 1): copy CASE/root into the
# host, run the installed generator on it with SDME_UNIT_DIRS pointing at
# the copy, check its exit status, and verify every unit it generated (error
# cases still generate the units of their valid files) with the output
# directories first in the unit path. Any output of verify is a failure (a
# clean unit produces none), and so is a non-zero exit.
#
# E2E_GOLDEN_DIR overrides tests/golden (used to test this scenario itself).

golden=${E2E_GOLDEN_DIR:-$TH_REPO/tests/golden}
generator=/usr/lib/systemd/system-generators/sdme-generator
scratch=/var/tmp/sdme-e2e-golden

cases=()
for d in "$golden"/*/; do
	[ -d "$d/root" ] || continue
	cases+=("$(basename "$d")")
done
if [ "${#cases[@]}" -eq 0 ]; then
	fail "no golden cases (CASE/root/) under $golden"
	exit 1
fi
step "${#cases[@]} golden cases"

require_in "generator installed at $generator" test -x "$generator"

on_cleanup rm -rf "$scratch"
th_exec rm -rf "$scratch"
roots=()
for c in "${cases[@]}"; do roots+=("$c/root"); done
require "copy golden roots into the host" th_copy_in "$golden" "$scratch" "${roots[@]}"

for c in "${cases[@]}"; do
	step "case $c"
	r=$scratch/$c/root
	out=$scratch/$c/out
	dirs="$r/etc/sdme:$r/run/sdme:$r/usr/local/lib/sdme:$r/usr/lib/sdme"
	th_exec mkdir -p "$out/normal" "$out/early" "$out/late"
	rc=0
	# The case's records of running containers, as the golden test reads
	# them (orphan units).
	gen_out=$(th_exec env SDME_UNIT_DIRS="$dirs" SDME_INUSE_DIR="$r/run/sdme/inuse" SYSTEMD_LOG_LEVEL=info \
		"$generator" "$out/normal" "$out/early" "$out/late" 2>&1) || rc=$?
	[ -z "$gen_out" ] || printf '%s\n' "$gen_out"
	want_rc=0
	if [ -s "$golden/$c/expected-stderr" ] || [ -e "$golden/$c/expected-error" ]; then
		want_rc=1
	fi
	if [ "$rc" -ne "$want_rc" ]; then
		fail "$c: generator exited $rc, expected $want_rc: $(echo "$gen_out" | head -n 3 | paste -sd' ' -)"
		continue
	fi
	mapfile -t units < <(th_exec find "$out/normal" "$out/early" "$out/late" -maxdepth 1 -type f \
		-regex '.*\.\(service\|mount\|socket\|target\|path\|timer\|slice\|swap\|automount\)$' | sort)
	mapfile -t want_units < <(find "$golden/$c/expected" -maxdepth 1 -type f \
		-regex '.*\.\(service\|mount\|socket\|target\|path\|timer\|slice\|swap\|automount\)$' 2>/dev/null || true)
	if [ "${#units[@]}" -ne "${#want_units[@]}" ]; then
		fail "$c: generator wrote ${#units[@]} unit files, expected/ has ${#want_units[@]}"
	fi
	if [ "${#units[@]}" -eq 0 ]; then
		step "$c: no units to verify (exit $rc as expected)"
		continue
	fi
	step "$c: verifying ${units[*]##*/}"
	rc=0
	verify_out=$(th_exec env SYSTEMD_UNIT_PATH="$out/normal:$out/early:$out/late:" \
		systemd-analyze verify "${units[@]}" 2>&1) || rc=$?
	if [ -n "$verify_out" ] || [ "$rc" -ne 0 ]; then
		printf '%s\n' "$verify_out"
		fail "$c: systemd-analyze verify (exit $rc): $(echo "$verify_out" | head -n 2 | paste -sd' ' -)"
	fi
done
