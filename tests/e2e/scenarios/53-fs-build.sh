# shellcheck shell=bash
# shellcheck disable=SC2016 # snippets expand inside the test host
# 53-fs-build: `sdme fs build FILE NAME` (issue 15), the builder the build
# units run, on a terminal.
# - the original sdme's build file, unchanged (FROM, RUN with a
#   continuation, COPY of a directory, COPY fs:NAME:/path), gives the same
#   tree (manifest) as the same steps in a .build file;
# - fs ls says "build FILE"; an existing rootfs is refused without -f;
# - changing a copied file's content (same name) reruns from that Copy=
#   on: the step before comes from the cache, the log says so;
# - SIGINT during a Run= step: exit 130, no build container, mount or
#   unfinished layer; the finished step's layer is kept;
# - the original format's COPY CONTAINER:/path: from a running
#   container's overlay, and from a stopped one's layers (a file it
#   removed stays removed, owners and modes kept, the read-only mount
#   gone afterwards); a symlink on the way is refused;
# - refusals, each a file:line message and nothing built: Copy= to
#   /tmp/x, to an opaque dir (a build from the host hides /var/log), from
#   ../outside, through a symlink, the original format's COPY to /tmp,
#   and a FROM rootfs without systemd (one line);
# - --prune keeps exactly the layers the built rootfs name, and removes
#   the trees that rebuilds replaced (moved aside, not deleted, on the way).

W=/var/tmp/e2e-53
st=/var/lib/sdme
base=base53
on_cleanup sh -c "rm -rf $W $st/build; $(th_rootfs_rm "$base" o53 u53 s53 r53 k53 nosd53) true"
on_cleanup sh -c "systemctl stop sdme-c53.service; rm -rf /etc/sdme/c53.container $st/containers/c53; systemctl daemon-reload; systemctl reset-failed sdme-c53.service 2>/dev/null; true"
on_cleanup sh -c "pkill -INT -f '^sdme fs build $W' ; systemctl stop sdme-build-s53-boot.service 2>/dev/null; true"

th_put_rootfs "$base" || { fail "th_put_rootfs $base"; exit 1; }
th_sh "mkdir -p $st/rootfs/$base/srv/c53dir && echo base > $st/rootfs/$base/srv/c53dir/gone"
th_sh "set -e; mkdir -p $W/site/css; echo hello > $W/site/index.html; echo 'body{}' > $W/site/css/a.css
chmod 640 $W/site/css/a.css; chown 33:33 $W/site/index.html; echo secret > /var/tmp/outside53; ln -s /etc $W/link"

# The same four steps in both formats.
th_sh "cat > $W/o53.conf" <<EOF
# the original sdme's format, unchanged
FROM fs:$base
RUN echo first > /etc/first53 && \\
    chmod 600 /etc/first53
COPY site /srv/site
RUN ls -lnR /srv/site > /etc/site53.list
COPY fs:$base:/usr/lib/os-release /etc/base53-release
EOF
th_sh "cat > $W/u53.build" <<EOF
[Build]
From=$base
Run=echo first > /etc/first53 && chmod 600 /etc/first53
Copy=site:/srv/site
Run=ls -lnR /srv/site > /etc/site53.list
Copy=$base:/usr/lib/os-release:/etc/base53-release
EOF

step "the original tool's file and the .build file give the same tree"
t0=$(date +%s%N)
out=$(th_exec sdme fs build "$W/o53.conf" o53 2>&1) || fail "fs build o53.conf: $out"
printf '%s\n' "$out"
step "o53 built in $((($(date +%s%N) - t0) / 1000000)) ms"
assert_match "four steps, none from the cache" "built rootfs o53 \(4 steps, 0 from the cache" "$out"
out=$(th_exec sdme fs build "$W/u53.build" u53 2>&1) || fail "fs build u53.build: $out"
printf '%s\n' "$out"
assert_match "the .build file's steps name its lines" "step 2/4 $W/u53.build:4: Copy=site:/srv/site" "$out"
mo=$(th_manifest "$st/rootfs/o53")
mu=$(th_manifest "$st/rootfs/u53")
if [ "$mo" != "$mu" ]; then
	diff <(printf '%s\n' "$mo") <(printf '%s\n' "$mu") | head -40 || true
fi
assert_eq "the same tree (manifest)" "$mo" "$mu"
check_in "the steps ran" sh -c "grep -qx first $st/rootfs/u53/etc/first53 && test -f $st/rootfs/u53/srv/site/css/a.css && grep -q index.html $st/rootfs/u53/etc/site53.list && cmp $st/rootfs/$base/usr/lib/os-release $st/rootfs/u53/etc/base53-release"
assert_eq "Copy= keeps owners and modes" "33:33 640" \
	"$(th_exec stat -c '%u:%g' "$st/rootfs/u53/srv/site/index.html" 2>&1) $(th_exec stat -c '%a' "$st/rootfs/u53/srv/site/css/a.css" 2>&1)"
ls_out=$(th_exec sdme fs ls 2>&1 || true)
printf '%s\n' "$ls_out"
assert_match "fs ls: the source of a built rootfs" "u53 .* build $W/u53.build " "$ls_out"
assert_match "fs ls: the original format too" "o53 .* build $W/o53.conf " "$ls_out"
out=$(th_exec sdme fs build "$W/u53.build" u53 2>&1; echo "rc=$?")
assert_match "an existing rootfs is refused without -f" "rootfs u53 already exists; use -f to replace it.*rc=1" "$(echo "$out" | tr '\n' ' ')"

step "a changed Copy= source reruns from that step"
th_exec sh -c "echo changed > $W/site/index.html && chown 33:33 $W/site/index.html"
t0=$(date +%s%N)
out=$(th_exec sdme fs build -f "$W/u53.build" u53 2>&1) || fail "fs build -f u53: $out"
printf '%s\n' "$out"
step "rebuilt from step 2 in $((($(date +%s%N) - t0) / 1000000)) ms"
assert_match "step 1 from the cache" "step 1/4 $W/u53.build:3: Run=echo first > /etc/first53 && chmod 600 /etc/first53: from the cache" "$out"
assert_match "step 2 runs again" "step 2/4 $W/u53.build:4: Copy=site:/srv/site
" "$out"
assert_match "one from the cache, files linked" "built rootfs u53 \(4 steps, 1 from the cache; result stored in [0-9.]+ s, [1-9][0-9]* files linked" "$out"
check_in "the change is in the rootfs" grep -qx changed "$st/rootfs/u53/srv/site/index.html"

step "SIGINT during a Run= step stops the build container, keeps the finished layer"
# From o53 (built above), which the steps below remove while it is in use.
th_sh "printf '[Build]\nFrom=o53\nRun=echo s53 > /etc/s53\nRun=sleep 300\n' > $W/s53.build"
before=$(th_exec ls -A "$st/build/layers" | sort)
th_sh "(sdme fs build $W/s53.build s53 > $W/s53.log 2>&1; echo \$? > $W/s53.rc) </dev/null >/dev/null 2>&1 &"
# Bounded wait for a condition: the second step is running.
for _ in $(seq 1 300); do
	th_exec pgrep -f "^sleep 300" >/dev/null && break
	sleep 0.2
done
check_in "the step is running" pgrep -f "^sleep 300"
# The build holds its From= rootfs's use lock shared (issue 19): a
# replacement (exclusive) would wait, a container start (shared) would not.
check_in "From=o53 in use: an exclusive lock waits" sh -c "! flock -n -x $st/import/o53.use true"
check_in "From=o53: a shared lock is free" flock -n -s "$st/import/o53.use" true
# A removal of the base while a step's overlay is mounted is refused at
# once, naming the build.
out=$(th_exec sdme-import --remove o53 2>&1; echo "rc=$?")
printf '%s\n' "$out"
assert_match "--remove of a build's base is refused, naming the build" "^sdme-import: rootfs o53 \($st/rootfs/o53\) is in use by the build of rootfs s53 \(its step's overlay at /run/sdme/build/s53\); let those builds end and remove or edit those files before removing it
rc=1$" "$out"
th_exec pkill -INT -f "^sdme fs build $W/s53.build" || fail "no sdme fs build to interrupt"
for _ in $(seq 1 300); do
	th_exec test -e "$W/s53.rc" && break
	sleep 0.2
done
assert_eq "exit status 130" 130 "$(th_exec cat "$W/s53.rc" 2>&1 || true)"
check_in "the log says interrupted" grep -q "^sdme: .*interrupted" "$W/s53.log"
check_in "no build container, mount or unfinished layer" sh -c "! systemctl is-active -q sdme-build-s53-boot.service && ! machinectl show sdme-build-s53 >/dev/null 2>&1 && ! findmnt -rn -o TARGET | grep -q /run/sdme/build && ! ls -d $st/build/layers/.tmp-* 2>/dev/null | grep -q ."
check_in "no rootfs s53" test ! -e "$st/rootfs/s53"
after=$(th_exec ls -A "$st/build/layers" | sort)
assert_eq "one layer more: the finished first step" 1 "$(comm -13 <(echo "$before") <(echo "$after") | grep -c .)"

step "a removal waits for the base's use lock, and says why"
# What a build holds between its steps, and a container while it is
# prepared (checked above): the use lock, shared. Held here by flock.
th_sh "(flock -s $st/import/o53.use sleep 600) </dev/null >/dev/null 2>&1 &"
for _ in $(seq 1 100); do
	th_exec sh -c "! flock -n -x $st/import/o53.use true" && break
	sleep 0.1
done
th_sh "(sdme-import --remove o53 > $W/rm53.log 2>&1; echo \$? > $W/rm53.rc) </dev/null >/dev/null 2>&1 &"
for _ in $(seq 1 300); do
	th_exec grep -q "waiting for rootfs o53's users" "$W/rm53.log" && break
	sleep 0.1
done
rm_log=$(th_exec cat "$W/rm53.log" 2>&1 || true)
printf '%s\n' "$rm_log"
assert_match "sdme-import --remove says what it waits for" "^sdme-import: waiting for rootfs o53's users to let go of $st/import/o53.use \(a container being prepared on it, or a build from it\)" "$rm_log"
check_in "it waits: o53 is there, no exit yet" sh -c "test -d $st/rootfs/o53 && ! test -e $W/rm53.rc"
th_exec pkill -f "^sleep 600" || fail "no lock holder to stop"
for _ in $(seq 1 300); do
	th_exec test -e "$W/rm53.rc" && break
	sleep 0.1
done
assert_eq "the removal goes on once the lock is free: exit 0" 0 "$(th_exec cat "$W/rm53.rc" 2>&1 || true)"
check_in "o53 is removed" sh -c "! test -e $st/rootfs/o53 && ! test -e $st/meta/o53.json"

step "COPY CONTAINER:/path, from a running and a stopped container"
th_sh "printf '[Container]\nRootfs=$base\n' > /etc/sdme/c53.container && systemctl daemon-reload"
require_in "start sdme-c53" timeout 120 systemctl start sdme-c53.service
th_run_in c53 sh -c "rm /srv/c53dir/gone && echo new > /srv/c53dir/new && chown 33:33 /srv/c53dir/new && chmod 640 /srv/c53dir/new && ln -s /etc /srv/c53-link" ||
	fail "change c53's tree"
th_sh "printf 'FROM $base\nCOPY c53:/srv/c53dir /srv/running\n' > $W/k53.conf"
out=$(th_exec sdme fs build "$W/k53.conf" k53 2>&1) || fail "fs build k53.conf (running): $out"
printf '%s\n' "$out"
check_in "from the running container" sh -c "grep -qx new $st/rootfs/k53/srv/running/new && ! test -e $st/rootfs/k53/srv/running/gone"
require_in "stop sdme-c53" systemctl stop sdme-c53.service
th_sh "printf 'FROM $base\nCOPY c53:/srv/c53dir /srv/stopped\n' > $W/k53.conf"
out=$(th_exec sdme fs build -f "$W/k53.conf" k53 2>&1) || fail "fs build k53.conf (stopped): $out"
printf '%s\n' "$out"
check_in "from the stopped container's layers: the removed file stays removed" \
	sh -c "grep -qx new $st/rootfs/k53/srv/stopped/new && ! test -e $st/rootfs/k53/srv/stopped/gone"
assert_eq "owner and mode kept" "33:33 640" "$(th_exec stat -c '%u:%g %a' "$st/rootfs/k53/srv/stopped/new" 2>&1 || true)"
check_in "the container's layers are not mounted any more" sh -c "! findmnt -rn -o TARGET | grep -q /run/sdme/build"
th_sh "printf 'FROM $base\nCOPY c53:/srv/c53-link/passwd /srv/x\n' > $W/r6.conf"
out=$(th_exec sdme fs build "$W/r6.conf" r53 2>&1; echo "rc=$?")
printf '%s\n' "$out"
assert_match "a symlink in the container is refused with file:line" "$W/r6.conf:2: .*c53-link: is a symlink; Copy= does not follow symlinks.*rc=1" "$(echo "$out" | tr '\n' ' ')"
check_in "nothing mounted after the refusal" sh -c "! findmnt -rn -o TARGET | grep -q /run/sdme/build"

step "refusals: file:line, nothing built"
th_sh "set -e; cd $W
printf '[Build]\nFrom=$base\nCopy=site/index.html:/tmp/x\n' > r1.build
printf '[Build]\nRun=true\nCopy=site/index.html:/var/log/x\n' > r2.build
printf '[Build]\nFrom=$base\nCopy=../outside53:/srv/x\n' > r3.build
printf '[Build]\nFrom=$base\nCopy=link/hostname:/srv/x\n' > r4.build
printf 'FROM $base\nRUN true\nCOPY site /tmp/site\n' > r5.conf
mkdir -p $st/rootfs/nosd53/etc && echo ID=debian > $st/rootfs/nosd53/etc/os-release
printf '# no systemd\nFROM nosd53\nRUN true\n' > r7.conf"
layers=$(th_exec ls -A "$st/build/layers" | sort)
refuse() {
	local file=$1 want=$2 out
	out=$(th_exec sdme fs build "$W/$file" r53 2>&1; echo "rc=$?")
	printf '%s\n' "$out"
	assert_match "$file refused with file:line" "$want" "$out"
	assert_match "$file: exit 1" "rc=1$" "$out"
}
refuse r1.build "$W/r1.build:3: .*/tmp"
refuse r2.build "$W/r2.build:3: .*/var/log"
refuse r3.build "$W/r3.build:3: .*\.\./outside53"
refuse r4.build "$W/r4.build:3: $W/link: is a symlink; Copy= does not follow symlinks"
refuse r5.conf "$W/r5.conf:3: .*/tmp"
refuse r7.conf "sdme: $W/r7.conf: rootfs r53 was not built: $W/r7.conf:2: the rootfs nosd53 \\($st/rootfs/nosd53\\) has no systemd: a build boots its base"
assert_eq "a From rootfs without systemd: one line" 1 "$(th_exec sdme fs build "$W/r7.conf" r53 2>&1 | wc -l)"
check_in "no rootfs r53" test ! -e "$st/rootfs/r53"
assert_eq "no layer made" "$layers" "$(th_exec ls -A "$st/build/layers" | sort)"

step "--prune keeps exactly the layers of the built rootfs"
out=$(th_exec sdme fs build --prune 2>&1) || fail "fs build --prune: $out"
printf '%s\n' "$out"
keys=$(th_exec sh -c "sed -n 's/.*\"key\": \"\([0-9a-f]*\)\".*/\1/p' $st/meta/u53.json $st/meta/k53.json" | sort -u)
assert_eq "the layers left are those the metadata names" "$keys" "$(th_exec ls -A "$st/build/layers" | sort)"
assert_match "it says what it removed" "removed layer [0-9a-f]{64}" "$out"
assert_match "the trees that rebuilds replaced (u53, k53) are removed too" "; [2-9] replaced trees removed" "$out"
check_in "no replaced tree left" sh -c "! ls -A $st/build/trash/* 2>/dev/null | grep -q ."

step "fs rm of a rebuilt rootfs takes its replaced trees with it"
out=$(th_exec sdme fs build -f "$W/u53.build" u53 2>&1) || fail "fs build -f u53: $out"
check_in "the rebuild left the old tree in the trash" sh -c "ls -A $st/build/trash/u53 | grep -q ."
require_in "sdme fs rm u53" sdme fs rm u53
check_in "no rootfs u53, no trash of it" sh -c "! test -e $st/rootfs/u53 && ! test -e $st/build/trash/u53"
