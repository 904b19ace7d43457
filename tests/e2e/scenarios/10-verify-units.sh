# shellcheck shell=bash
# 10-verify-units: the generator's output for every golden case passes
# `systemd-analyze verify` on a real systemd.
#
# For each tests/golden/CASE/ with an expected/ dir (cases with an
# expected-error file are error cases and have no units to verify): copy
# CASE/root into the host, run the installed generator on it with
# SDME_UNIT_DIRS pointing at the copy, and verify every generated unit with
# the output directories first in the unit path. Any output of verify is a
# failure (a clean unit produces none), and so is a non-zero exit.
#
# E2E_GOLDEN_DIR overrides tests/golden (used to test this scenario itself).

golden=${E2E_GOLDEN_DIR:-$TH_REPO/tests/golden}
generator=/usr/lib/systemd/system-generators/sdme-generator
scratch=/var/tmp/sdme-e2e-golden

cases=()
for d in "$golden"/*/; do
	[ -d "$d" ] || continue
	c=$(basename "$d")
	if [ -e "$d/expected-error" ]; then
		step "$c: error case, nothing to verify"
		continue
	fi
	[ -d "$d/expected" ] || continue
	[ -d "$d/root" ] || {
		fail "golden case $c has expected/ but no root/"
		continue
	}
	cases+=("$c")
done
if [ "${#cases[@]}" -eq 0 ]; then
	fail "no golden cases with an expected/ directory under $golden"
	exit 1
fi
step "${#cases[@]} golden cases: ${cases[*]}"

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
	gen_out=$(th_exec env SDME_UNIT_DIRS="$dirs" SYSTEMD_LOG_LEVEL=info \
		"$generator" "$out/normal" "$out/early" "$out/late" 2>&1) || rc=$?
	[ -z "$gen_out" ] || printf '%s\n' "$gen_out"
	if [ "$rc" -ne 0 ]; then
		fail "$c: generator exited $rc: $(echo "$gen_out" | head -n 3 | paste -sd' ' -)"
		continue
	fi
	mapfile -t units < <(th_exec find "$out/normal" "$out/early" "$out/late" -maxdepth 1 -type f \
		-regex '.*\.\(service\|mount\|socket\|target\|path\|timer\|slice\|swap\|automount\)$' | sort)
	if [ "${#units[@]}" -eq 0 ]; then
		fail "$c: generator wrote no unit files (expected/ is not empty?)"
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
