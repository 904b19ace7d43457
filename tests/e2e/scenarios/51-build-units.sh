# shellcheck shell=bash
# 51-build-units: `.build` files and `Rootfs=NAME.build` (issue 15, first
# slice: the model and the generator; the builder itself is 52-build). The
# generator makes sdme-build-NAME.service, ordered before the container's
# prepare step; a build that fails (here: From= a rootfs that does not
# exist) fails the container's start without preparing anything. `sdme verify` checks .build files with the
# generator's file:line errors (refusals of Copy= destinations under /tmp
# and opaque dirs, sources from ../outside).

name=b51
file=/etc/sdme/$name.build
cfile=/etc/sdme/$name.container
bad=/etc/sdme/bad51.build
bunit=sdme-build-$name.service
on_cleanup sh -c "rm -f $file $cfile $bad && systemctl daemon-reload"
on_cleanup sh -c "systemctl stop sdme-$name.service $bunit; systemctl reset-failed sdme-$name.service $bunit sdme-prepare@$name.service sdme-explain@sdme-$name.service 2>/dev/null; true"

step "Rootfs=NAME.build gives a build unit before the prepare step"
require_in "write $file and $cfile" sh -c "printf '[Build]\nFrom=nosuch51\nRun=true\n' > $file && printf '[Container]\nRootfs=$name.build\n' > $cfile && systemctl daemon-reload"
assert_eq "the build unit is a oneshot" oneshot \
	"$(th_exec systemctl show -p Type --value "$bunit" 2>&1 || true)"
assert_eq "that does not remain active (every start of a container runs it)" no \
	"$(th_exec systemctl show -p RemainAfterExit --value "$bunit" 2>&1 || true)"
assert_match "the container requires the build unit" "(^|[[:space:]])$bunit([[:space:]]|$)" \
	"$(th_exec systemctl show -p Requires --value "sdme-$name.service" 2>&1 || true)"
assert_match "the build unit is ordered before the prepare step" "(^|[[:space:]])sdme-prepare@$name.service([[:space:]]|$)" \
	"$(th_exec systemctl show -p Before --value "$bunit" 2>&1 || true)"
assert_match "the prepare step requires the build unit" "(^|[[:space:]])$bunit([[:space:]]|$)" \
	"$(th_exec systemctl show -p Requires --value "sdme-prepare@$name.service" 2>&1 || true)"

step "a failing build fails the start with the reason"
check_in_status 1 "start of sdme-$name fails" systemctl start "sdme-$name.service"
assert_match "the build unit's journal says why" "$file: rootfs $name was not built: From=nosuch51: no rootfs nosuch51" \
	"$(th_exec journalctl -q -u "$bunit" -o cat 2>&1 || true)"
check_in "no rootfs was made" test ! -e "/var/lib/sdme/rootfs/$name"
check_in "the container was not prepared" test ! -e "/var/lib/sdme/containers/$name"
assert_eq "the prepare step never ran (a failed dependency)" "0" \
	"$(th_exec systemctl show -p ExecMainStartTimestampMonotonic --value "sdme-prepare@$name.service" 2>&1 || true)"

step "sdme verify: refusals with file:line"
require_in "write $bad" sh -c "printf '[Build]\nCopy=../outside:/srv/x\nCopy=a:/tmp/x\nFrom=\nCopy=b:/var/log/x\nRun=\n' > $bad"
out=$(th_exec sdme verify "$bad" 2>&1; echo "rc=$?")
assert_match "Copy= from ../outside" "$bad:2: Copy=../outside:/srv/x: the source '../outside' escapes the build directory /etc/sdme" "$out"
assert_match "Copy= to /tmp" "$bad:3: Copy=a:/tmp/x: the destination /tmp/x is under /tmp" "$out"
assert_match "Copy= into an opaque dir of a host clone" "$bad:5: Copy=b:/var/log/x: the destination /var/log/x is under /var/log, an opaque directory" "$out"
assert_match "an empty Run=" "$bad:6: an empty Run= is an error" "$out"
assert_match "verify exits 1" "rc=1$" "$out"
assert_eq "verify of the good file" "0" "$(th_exec sdme verify "$file" >/dev/null 2>&1; echo $?)"
