# shellcheck shell=bash
# 15-readme: the README's first command, run as written after its
# `make deps && make && make install` steps (done by the harness), without
# a terminal (th_exec has none): install
# examples/hello.container, daemon-reload, start, and a shell command in
# the booted container.

on_cleanup sh -c "rm -rf /var/lib/sdme/containers/hello /etc/sdme/hello.container && systemctl daemon-reload"
on_cleanup sh -c "systemctl stop sdme-hello; systemctl reset-failed 'sdme-*' 'sdme-prepare@*' 2>/dev/null; true"

# The command as README.md has it, from `install` on.
cmd=$(sed -n '/^make deps && make && make install && /{s/^make deps && make && make install && //;p;q}' "$TH_REPO/README.md")
[ -n "$cmd" ] || fail "README.md has no line starting with 'make deps && make && make install && '"
step "README command: $cmd"
th_copy_in "$TH_REPO" /root/sdme-readme examples
on_cleanup rm -rf /root/sdme-readme
out=$(th_exec timeout 180 sh -c "cd /root/sdme-readme && $cmd" 2>&1 | tr -d '\r' || true)
echo "$out"
assert_eq "sdme-hello is active" active "$(th_exec systemctl is-active sdme-hello 2>&1 || true)"
assert_match "the container answered with its hostname" '(^|[[:space:]])hello($|[[:space:]])' "$out"
assert_match "and its state" '(running|degraded)' "$out"
assert_eq "MemoryMax= from the example applied" 1073741824 \
	"$(th_exec systemctl show -p MemoryMax --value sdme-hello 2>&1 || true)"
check_in "enabled through [Install]" test -L /run/systemd/generator/machines.target.wants/sdme-hello.service
