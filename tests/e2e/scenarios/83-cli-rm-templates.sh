# shellcheck shell=bash
# shellcheck disable=SC2016 # snippets expand inside the test host
# 83-cli-rm-templates: `sdme rm` of a container template and `rm -a` with
# templates (host clones).
# - w83@.container, instance a running, instance b started and stopped
#   (systemd forgets it, its state dir stays), a plain container w83-x
#   whose machine name has the template's prefix:
#   rm w83@ is refused while w83@a runs (named, nothing changed);
#   rm -f w83@ stops w83@a, removes the template and the state dirs of
#   both instances, and leaves w83-x's alone;
# - rm -a -f removes a template with a running instance, a plain container
#   and their state.

st=/var/lib/sdme/containers
on_cleanup sh -c "rm -rf /etc/sdme/w83@.container /etc/sdme/w83-x.container /etc/sdme/t83@.container /etc/sdme/p83.container $st/w83-a $st/w83-b $st/w83-x $st/t83-a $st/p83; systemctl daemon-reload"
on_cleanup sh -c "systemctl stop sdme-w83@a sdme-w83@b sdme-t83@a sdme-p83; systemctl reset-failed 'sdme-*' 'sdme-prepare@*' 2>/dev/null; true"

step "a template with a running and a stopped instance, and w83-x"
printf '[Container]\n' | th_exec sh -c "cat > /etc/sdme/w83@.container"
require_in "sdme create w83-x" sdme create w83-x
require_in "w83-x's state" mkdir -p "$st/w83-x/upper"
require_in "daemon-reload" systemctl daemon-reload
require_in "start sdme-w83@a" timeout 180 systemctl start sdme-w83@a
require_in "start sdme-w83@b" timeout 180 systemctl start sdme-w83@b
require_in "stop sdme-w83@b" timeout 120 systemctl stop sdme-w83@b
check_in "w83-b's state dir stays after its stop" test -d "$st/w83-b/upper"

step "rm w83@: refused while w83@a runs, then -f"
assert_eq "rm w83@: refused, the instance named" \
	"1 sdme: w83@ has running instances: w83@a; stop them first or use rm -f; nothing removed" "$(out_rc sdme rm w83@)"
check_in "the template is still there" test -e /etc/sdme/w83@.container
assert_eq "w83@a still runs" active "$(th_exec systemctl is-active sdme-w83@a 2>&1 || true)"
assert_eq "rm -f w83@: exit 0, nothing said" "0 " "$(out_rc timeout 180 sdme rm -f w83@)"
assert_eq "w83@a stopped" inactive "$(th_exec systemctl is-active sdme-w83@a 2>&1 || true)"
check_in "the template and both instances' state dirs are gone" \
	sh -c "test ! -e /etc/sdme/w83@.container -a ! -e $st/w83-a -a ! -e $st/w83-b"
check_in "w83-x (a plain container with the prefix) keeps its file and state" \
	test -e /etc/sdme/w83-x.container -a -d "$st/w83-x/upper"
assert_match "rm of a template that is gone" '^1 sdme: no container w83@ \(no w83@.container on the search path\)$' \
	"$(out_rc sdme rm w83@)"
require_in "rm w83-x" sdme rm w83-x

step "rm -a -f: a template with a running instance and a plain container"
printf '[Container]\n' | th_exec sh -c "cat > /etc/sdme/t83@.container"
require_in "sdme create p83" sdme create p83
require_in "start sdme-t83@a" timeout 180 systemctl start sdme-t83@a
assert_eq "rm -a -f: exit 0" "0 " "$(out_rc sh -c 'timeout 180 sdme rm -a -f </dev/null')"
assert_eq "t83@a stopped" inactive "$(th_exec systemctl is-active sdme-t83@a 2>&1 || true)"
check_in "files and state dirs gone" sh -c "test ! -e /etc/sdme/t83@.container -a ! -e /etc/sdme/p83.container -a ! -e $st/t83-a -a ! -e $st/p83"
