# shellcheck shell=bash
# shellcheck disable=SC2016 # snippets expand inside the test host
# 47-app: an OCI application (App=) as the guest's sdme-app.service, on a
# clone of the test host: a static busybox image built with umoci from
# Debian's busybox-static package (downloaded on the machine that runs the
# suite, once, into the suite's cache: the test host's package list stays
# as it is), imported with sdme-import from its OCI layout.
# - `busybox httpd -f` answers from the test host, as USER 65534 (its
#   /proc/PID/status), in WORKDIR;
# - a line the entrypoint writes to /dev/stdout is in
#   `journalctl -M NAME -u sdme-app`; `systemctl -M NAME status sdme-app`
#   works;
# - the image's Volume (/data, owned by 65534 in the image) is written by
#   the app and survives a restart and the container's removal;
# - App=REF: pushed with skopeo to a loopback docker-registry (plain HTTP,
#   as Docker allows on loopback) and pulled by the shared image unit;
# - PrivateUsers=yes: the same app answers, its uid on the host is the
#   container's base + 65534; re-importing its image while it runs is
#   refused (the use record names the app's rootfs), and once stopped a
#   re-import keeps the volume;
# - Strict=yes: the app runs (as the container's base + 65534);
# - AppPod=: two app containers in one pod, Hardened=yes and Strict=yes
#   (a private network, user namespace, dropped capabilities, a system
#   call filter): the host makes
#   their app processes in the pod's network namespace (its inode), with
#   the unit's seccomp filters, no_new_privs and capability bounding set;
#   one answers in the pod (sdme-pod exec), not on the test host's
#   loopback, the other reaches it on 127.0.0.1, a third outside the pod
#   does not; without a user namespace too, the app's status is the
#   unit's (AppExit=stop, exit 3);
#   sdme exec --app runs in the pod's network too; a caller that is not
#   the container's root is refused (status 225, the reason); sdme create
#   --app-pod writes the key;
# - AppStopTimeout=2s: an app that ignores SIGTERM is killed after 2 s
#   (the stop takes at least that, and far less than the 90 s default);
# - a bare template's instance runs its app too;
# - AppExit=stop: an app that exits 3 stops the container, whose unit
#   shows status 3;
# - AppUser= that the image does not have: one line in the app's journal,
#   the container keeps running;
# - a rootfs without an OCI configuration: the start fails, and the
#   container's journal names App='s line.
# Prints the time `systemctl stop` takes (no assertion on it).

W=/var/tmp/e2e47
img=e2e47-bb
app=e2e47-app
uns=e2e47-uns
batch=e2e47-batch
plain=e2e47-plain
ref=e2e47-ref
strict=e2e47-strict
ghost=e2e47-ghost
pa=e2e47-pa
pb=e2e47-pb
pc=e2e47-pc
pd=e2e47-pd
stubborn=e2e47-stubborn
cli=e2e47-cli
REG=localhost:5047
all="$app $uns $batch $plain $ref $strict $ghost $stubborn $cli $pa $pb $pc $pd e2e47-pe e2e47-noapp $(seq -f 'e2e47-ten%g' -s ' ' 1 10)"

on_cleanup sh -c "for c in $all; do rm -rf /var/lib/sdme/containers/\$c /etc/sdme/\$c.container; done; rm -rf /var/lib/sdme/containers/e2e47-t-one /etc/sdme/e2e47-t@.container; rm -rf $W /var/lib/sdme/rootfs/$img /var/lib/sdme/meta/$img.json /var/lib/sdme/rootfs/e2e47-noconf /var/lib/sdme/meta/e2e47-noconf.json /var/lib/sdme/rootfs/e2e47-sctp /var/lib/sdme/meta/e2e47-sctp.json /var/lib/sdme/rootfs/e2e47-fsapp /var/lib/sdme/meta/e2e47-fsapp.json /var/lib/sdme/rootfs/bb-1-* /var/lib/sdme/meta/bb-1-*.json /var/lib/sdme/volumes /etc/sdme/e2e47pod.pod; systemctl daemon-reload"
on_cleanup sh -c "for c in $all e2e47-t@one; do systemctl stop sdme-\$c; done 2>/dev/null; systemctl stop e2e47-reg 'sdme-image-bb-1-*' sdme-pod-e2e47pod sdme-app-pod.socket 2>/dev/null; rm -rf /run/sdme/app-pod; systemctl reset-failed 'sdme-*' 'sdme-prepare@*' e2e47-reg 2>/dev/null; true"

put() { th_exec sh -c "cat > '$1'"; }

# wait_answer PORT: the page from 127.0.0.1:PORT on the test host.
wait_answer() { net_http_get "http://127.0.0.1:$1/"; }

# app_pid MACHINE: the host PID of the app: sdme-app.service's process in
# the container's cgroup that is neither the output relay nor, with
# AppPod=, sdme-drop-privs waiting for the app the host made (its comm is
# that of /.sdme-drop-privs, cut to 15 bytes).
app_pid() {
	th_sh "for p in \$(cat \$(find /sys/fs/cgroup -path '*sdme-$1.service*' -path '*sdme-app.service*' -name cgroup.procs | head -n 1)); do
		case \$(cat /proc/\$p/comm) in .sdme-drop-priv | sdme-relay) ;; *) echo \$p; break ;; esac
	done"
}

step "busybox-static from Debian (cached on this machine)"
deb_dir=$TH_CACHE/debs
fetch_busybox() {
	[ -n "$(find "$deb_dir" -maxdepth 1 -name 'busybox-static_*.deb' 2>/dev/null)" ] && return 0
	mkdir -p "$deb_dir"
	(cd "$deb_dir" && apt-get download -q busybox-static)
}
require "apt-get download busybox-static into $deb_dir" fetch_busybox
deb=$(find "$deb_dir" -maxdepth 1 -name 'busybox-static_*.deb' | sed -n 1p)
th_sh "rm -rf $W && mkdir -p $W"
put "$W/bb.deb" <"$deb"

step "the image: umoci, USER 65534, WORKDIR /www, VOLUME /data"
put "$W/image.sh" <<'EOF'
set -eu
cd /var/tmp/e2e47
dpkg-deb -x bb.deb deb
mkdir -p tree/bin tree/etc tree/www tree/data tree/tmp
cp deb/bin/busybox tree/bin/busybox
ln -s busybox tree/bin/sh
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n' >tree/etc/passwd
printf 'root:x:0:\nnogroup:x:65534:\n' >tree/etc/group
echo "hello from busybox" >tree/www/index.html
chown 65534:65534 tree/data
echo seeded >tree/data/seed.txt
chown 65534:65534 tree/data/seed.txt
chmod 1777 tree/tmp
cat >tree/entry.sh <<'EOS'
#!/bin/sh
echo "e2e47 app $(busybox id -u) in $(busybox pwd)" >/dev/stdout
busybox date +%s%N >>/data/starts
exec busybox httpd -f -p "${PORT:-8047}" -h /www
EOS
chmod 755 tree/entry.sh
tar --numeric-owner -C tree -cf layer.tar .
umoci init --layout img
umoci new --image img:bb
umoci raw add-layer --image img:bb layer.tar
umoci config --image img:bb --config.entrypoint /entry.sh --config.env PATH=/bin \
	--config.user 65534 --config.workingdir /www --config.volume /data --config.stopsignal SIGTERM
mkdir -p noconf
echo x >noconf/x
EOF
require_in "build the image" sh "$W/image.sh"
out=$(th_exec sdme-import -q "$W/img:bb" "$img" 2>&1) || fail "sdme-import $W/img:bb $img: $out"
printf '%s\n' "$out"
assert_match "the import's warning points to App=" "warning: $img: no systemd in the image: it will not boot as Rootfs=$img, but its OCI configuration runs a program: a container runs it with App=$img" "$out"
step "sdme fs import with the original tool's --oci-mode and --base-fs"
out=$(th_exec sdme fs import --oci-mode=app -q "$W/img:bb" e2e47-fsapp 2>&1) || fail "fs import --oci-mode=app: $out"
printf '%s\n' "$out"
assert_match "--oci-mode=app says how to run it" "sdme: rootfs e2e47-fsapp is an application image, imported as it is: a container runs it with App=e2e47-fsapp on a clone of the host, nothing copied \(sdme create CONTAINER --app e2e47-fsapp;" "$out"
check_in "imported with its OCI configuration, nothing installed" sh -c "grep -q '\"entrypoint\"' /var/lib/sdme/meta/e2e47-fsapp.json && ! test -e /var/lib/sdme/rootfs/e2e47-fsapp/usr/lib/systemd/systemd"
out=$(th_exec sdme fs import --base-fs=nosuch47 -q "$W/img:bb" e2e47-fsapp2 2>&1; echo "rc=$?")
assert_match "--base-fs of a missing rootfs: one line, nothing imported" "^sdme: --base-fs=nosuch47: no rootfs nosuch47 in /var/lib/sdme/rootfs; import it first
rc=1$" "$out"
out=$(th_exec sdme fs import --oci-mode=base --base-fs=$img -q "$W/img:bb" e2e47-fsapp2 2>&1; echo "rc=$?")
assert_match "--oci-mode=base with --base-fs: one line" "^sdme: --base-fs=$img goes with application images, not --oci-mode=base
rc=1$" "$out"
out=$(th_exec sdme fs import --oci-mode=app --install-packages=yes -q "$W/img:bb" e2e47-fsapp2 2>&1; echo "rc=$?")
assert_match "--oci-mode=app with --install-packages=yes: one line" "^sdme: --install-packages=yes and an application image exclude each other: App= runs the image as it is
rc=1$" "$out"
check_in "no e2e47-fsapp2" test ! -e /var/lib/sdme/rootfs/e2e47-fsapp2
require_in "sdme fs rm e2e47-fsapp" sdme fs rm e2e47-fsapp
require_in "sdme-import a plain directory (no OCI configuration)" sdme-import -q "$W/noconf" e2e47-noconf

step "App=$img on a clone of the host"
printf '[Container]\nApp=%s\n' "$img" | put "/etc/sdme/$app.container"
require_in "daemon-reload" systemctl daemon-reload
require_in "start sdme-$app" timeout 120 systemctl start "sdme-$app"
assert_eq "httpd answers from the test host" "hello from busybox" "$(wait_answer 8047)"
check_in "systemctl -M $app status sdme-app" systemctl -M "$app" status sdme-app
pid=$(app_pid "$app")
assert_match "the app runs as 65534" '^Uid:	65534	65534	65534	65534$' \
	"$(th_exec grep '^Uid:' "/proc/$pid/status")"
assert_match "its command" 'httpd' "$(th_exec cat "/proc/$pid/cmdline" | tr '\0' ' ')"
th_exec journalctl -M "$app" --sync 2>/dev/null || true
assert_match "/dev/stdout of the entrypoint in journalctl -M $app -u sdme-app" 'e2e47 app 65534 in /www' \
	"$(th_exec journalctl -M "$app" -u sdme-app -o cat --no-pager 2>&1)"
check_in "the app's root at /oci/apps/$img/root" systemd-run -q --collect -M "$app" --wait --pipe \
	test -f "/oci/apps/$img/root/www/index.html"
assert_eq "the anonymous volume has one start" 1 \
	"$(th_sh "wc -l < /var/lib/sdme/volumes/$app/data/starts")"
assert_eq "the new volume started with the image's file, owner kept" "seeded 65534" \
	"$(th_sh "echo \$(cat /var/lib/sdme/volumes/$app/data/seed.txt) \$(stat -c %u /var/lib/sdme/volumes/$app/data/seed.txt)")"

step "restart: the volume keeps its file"
require_in "restart sdme-$app" timeout 120 systemctl restart "sdme-$app"
assert_eq "answers again" "hello from busybox" "$(wait_answer 8047)"
assert_eq "two starts in the volume" 2 "$(th_sh "wc -l < /var/lib/sdme/volumes/$app/data/starts")"

step "stop"
t0=$(date +%s%N)
require_in "stop sdme-$app" systemctl stop "sdme-$app"
t1=$(date +%s%N)
echo "FIGURE: systemctl stop sdme-$app (app + guest) took $(((t1 - t0) / 1000000)) ms"
require "the overlay is unmounted" th_unmounted "$app"
assert_eq "the app's tree is unmounted" "" \
	"$(th_sh "grep ' /var/lib/sdme/containers/$app/' /proc/self/mountinfo || true")"
require_in "remove the container" sh -c "rm -rf /var/lib/sdme/containers/$app /etc/sdme/$app.container"
check_in "the volume outlives the container" test -s "/var/lib/sdme/volumes/$app/data/starts"

step "the CLI: create --app, logs --app, exec --app, rm --volumes"
require_in "sdme create $cli --app $img --app-env PORT=8051 --volume /srv/v" \
	sdme create "$cli" --app "$img" --app-env PORT=8051 --volume /srv/v
assert_match "the file has the keys" "App=$img
AppEnvironment=PORT=8051
Volume=/srv/v" "$(th_exec cat "/etc/sdme/$cli.container")"
require_in "sdme start $cli" timeout 120 sdme start "$cli"
assert_eq "the app answers" "hello from busybox" "$(wait_answer 8051)"
ps_json=$(th_exec sdme ps --json 2>&1)
assert_eq "sdme ps --json: the app and its state in HEALTH" "$img ok, app running" \
	"$(printf '%s' "$ps_json" | python3 -c 'import json,sys; r=[r for r in json.load(sys.stdin) if r["name"] == sys.argv[1]][0]; print(r["app"], r["health"])' "$cli")"
th_exec journalctl -M "$cli" --sync 2>/dev/null || true
assert_match "sdme logs --app: the app's own lines" 'e2e47 app 65534 in /www' \
	"$(th_exec sdme logs "$cli" --app -- --no-pager -o cat 2>&1)"
assert_eq "sdme exec --app: as the app's user, in its working directory" "65534 /www" \
	"$(th_exec sdme exec --app "$cli" -- sh -c 'echo $(busybox id -u) $(busybox pwd)' 2>&1)"
assert_eq "sdme exec --app: in the app's root, with its environment" "hello from busybox PORT=8051" \
	"$(th_exec sdme exec --app "$cli" -- sh -c 'echo $(busybox cat index.html) PORT=$PORT' 2>&1)"
check_in "sdme exec --app: writes reach the image's volume /data" sdme exec --app "$cli" -- busybox touch /data/mark
check_in_status 203 "sdme exec --app: a missing command is drop-privs' 203" sdme exec --app "$cli" -- /no/such
out=$(th_exec sdme rm -f "$cli" 2>&1; echo "rc=$?")
printf '%s\n' "$out"
assert_match "rm keeps the volumes and says where" "volumes of $cli are kept in /var/lib/sdme/volumes/$cli \(rm --volumes removes them\)" "$out"
check_in "the volumes are there" test -e "/var/lib/sdme/volumes/$cli/data/mark" -a -d "/var/lib/sdme/volumes/$cli/srv-v"
require_in "sdme create $cli again" sdme create "$cli" --app "$img" --app-env PORT=8051 --volume /srv/v
require_in "sdme rm --volumes $cli" sdme rm --volumes "$cli"
check_in "the volumes are gone" test ! -e "/var/lib/sdme/volumes/$cli"

step "the CLI's --app on a container without App=: one line each"
require_in "sdme create e2e47-noapp" sdme create e2e47-noapp
for verb in exec logs; do
	args=(--app e2e47-noapp)
	[ "$verb" = exec ] && args+=(-- true)
	out=$(th_exec sdme "$verb" "${args[@]}" 2>&1; echo "rc=$?")
	assert_match "sdme $verb --app of e2e47-noapp names the missing key" "^sdme: e2e47-noapp runs no application \\(its file has no App=\\)
rc=1$" "$out"
done
require_in "sdme rm e2e47-noapp" sdme rm -f e2e47-noapp

step "ten app containers of one image on one base: the disk they add"
ten=$(seq -f 'e2e47-ten%g' -s ' ' 1 10)
ten_units=()
for i in $(seq 10); do
	ten_units+=("sdme-e2e47-ten$i")
	printf '[Container]\nApp=%s\nAppEnvironment=PORT=%s\n' "$img" "$((8100 + i))" | put "/etc/sdme/e2e47-ten$i.container"
done
require_in "daemon-reload" systemctl daemon-reload
before=$(th_sh "du -sxk /var/lib/sdme | cut -f1")
require_in "start the ten" timeout 300 systemctl start "${ten_units[@]}"
for i in $(seq 10); do
	assert_eq "e2e47-ten$i answers" "hello from busybox" "$(wait_answer "$((8100 + i))")"
done
after=$(th_sh "du -sxk /var/lib/sdme | cut -f1")
echo "FIGURE: ten booted app containers (App=$img on a host clone) added $((after - before)) KiB to /var/lib/sdme"
th_sh "du -xk --max-depth=5 /var/lib/sdme/containers/e2e47-ten1/upper | sort -n | tail -4"
# No copy of the image or the base, and the guest's journal files kept
# small (journald.conf.d/50-sdme-app.conf): a journald file is otherwise
# 8 MiB from the first line.
check_in "the ten add less than 10 MB" test "$((after - before))" -lt 10240
check_in "the guest's journald got sdme's drop-in" grep -qx "SystemMaxFileSize=512K" \
	/var/lib/sdme/containers/e2e47-ten1/upper/etc/systemd/journald.conf.d/50-sdme-app.conf
require_in "stop the ten" systemctl stop "${ten_units[@]}"
th_sh "for c in $ten; do rm -rf /var/lib/sdme/containers/\$c /var/lib/sdme/volumes/\$c /etc/sdme/\$c.container; done; systemctl daemon-reload"

step "App=REF: a loopback registry, the shared image unit"
printf 'version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: %s/reg\nhttp:\n  addr: 127.0.0.1:5047\n' "$W" |
	put "$W/reg.yml"
require_in "registry" systemd-run -q --unit=e2e47-reg docker-registry serve "$W/reg.yml"
require_in "registry listening" sh -c "for i in \$(seq 100); do python3 -c 'import urllib.request; urllib.request.urlopen(\"http://127.0.0.1:5047/v2/\")' 2>/dev/null && exit 0; sleep 0.2; done; exit 1"
require_in "skopeo push $REG/e2e47/bb:1" skopeo copy -q --dest-tls-verify=false "oci:$W/img:bb" "docker://$REG/e2e47/bb:1"
printf '[Container]\nApp=%s/e2e47/bb:1\nAppEnvironment=PORT=8049\n' "$REG" | put "/etc/sdme/$ref.container"
require_in "daemon-reload" systemctl daemon-reload
require_in "start sdme-$ref (imports the image first)" timeout 180 systemctl start "sdme-$ref"
assert_eq "httpd answers" "hello from busybox" "$(wait_answer 8049)"
assert_match "the image unit imported it" 'sdme-image-bb-1-[0-9a-f]{16}\.service' \
	"$(th_exec systemctl list-units --no-legend --plain 'sdme-image-*' 2>&1)"
check_in "with its OCI configuration" sh -c "grep -q '\"entrypoint\"' /var/lib/sdme/meta/bb-1-*.json"
require_in "stop sdme-$ref" systemctl stop "sdme-$ref"

step "PrivateUsers=yes"
printf '[Container]\nApp=%s\nPrivateUsers=yes\nAppEnvironment=PORT=8048\n' "$img" | put "/etc/sdme/$uns.container"
require_in "daemon-reload" systemctl daemon-reload
require_in "start sdme-$uns" timeout 120 systemctl start "sdme-$uns"
assert_eq "httpd answers" "hello from busybox" "$(wait_answer 8048)"
base=$(th_exec systemctl show -p ExecStart --value "sdme-$uns" | grep -o -- '--private-users=[0-9]*:' | tr -dc 0-9)
pid=$(app_pid "$uns")
assert_eq "its uid on the host is the base + 65534" "$((base + 65534))" \
	"$(th_exec awk '/^Uid:/ { print $2 }' "/proc/$pid/status")"
assert_eq "its volume file is owned by 65534 on disk" 65534 \
	"$(th_exec stat -c %u "/var/lib/sdme/volumes/$uns/data/starts")"
out=$(th_exec sdme-import -q --force "$W/img:bb" "$img" 2>&1) && fail "re-import while the app runs succeeded"
assert_match "re-importing the app's image while it runs is refused, naming the container" \
	"rootfs $img .* is in use by container $uns" "$out"
require_in "stop sdme-$uns" systemctl stop "sdme-$uns"
require_in "re-import the image once stopped" sdme-import -q --force "$W/img:bb" "$img"
require_in "start sdme-$uns again" timeout 120 systemctl start "sdme-$uns"
assert_eq "answers" "hello from busybox" "$(wait_answer 8048)"
assert_eq "the volume kept its file over the image update" 2 \
	"$(th_sh "wc -l < /var/lib/sdme/volumes/$uns/data/starts")"
require_in "stop sdme-$uns" systemctl stop "sdme-$uns"

step "Strict=yes (PrivateUsers=, a private network, capabilities, system calls, AppArmor)"
printf '[Container]\nApp=%s\nStrict=yes\n' "$img" | put "/etc/sdme/$strict.container"
require_in "daemon-reload" systemctl daemon-reload
require_in "start sdme-$strict" timeout 120 systemctl start "sdme-$strict"
check_in "sdme-app is active in it" systemctl -M "$strict" is-active -q sdme-app
base=$(th_exec systemctl show -p ExecStart --value "sdme-$strict" | grep -o -- '--private-users=[0-9]*:' | tr -dc 0-9)
pid=$(app_pid "$strict")
assert_eq "the app runs as the base + 65534" "$((base + 65534))" \
	"$(th_exec awk '/^Uid:/ { print $2 }' "/proc/$pid/status")"
require_in "stop sdme-$strict" systemctl stop "sdme-$strict"

step "AppPod=: two app containers in one pod (Hardened=yes, Strict=yes), one outside"
printf '[Pod]\n' | put /etc/sdme/e2e47pod.pod
printf '[Container]\nApp=%s\nHardened=yes\nAppPod=e2e47pod.pod\nAppEnvironment=PORT=8060\n' "$img" | put "/etc/sdme/$pa.container"
put "/etc/sdme/$pb.container" <<EOF
[Container]
App=$img
Strict=yes
AppPod=e2e47pod.pod
AppExec=/bin/sh -c "for i in \$(busybox seq 50); do if got=\$(busybox wget -q -O - http://127.0.0.1:8060/); then echo e2e47 pod got: \$got; break; fi; busybox sleep 0.2; done; exec busybox httpd -f -p 8061 -h /www"
EOF
put "/etc/sdme/$pc.container" <<EOF
[Container]
App=$img
Hardened=yes
AppExec=/bin/sh -c "if busybox wget -q -O - http://127.0.0.1:8060/; then echo e2e47 outside reached the pod; else echo e2e47 outside: no answer; fi; exec busybox httpd -f -p 8062 -h /www"
EOF
require_in "daemon-reload" systemctl daemon-reload
require_in "start sdme-$pa (starts the pod first)" timeout 120 systemctl start "sdme-$pa"
check_in "the pod runs" systemctl is-active -q sdme-pod-e2e47pod
# shellcheck disable=SC2154 # net_http_get_py comes from tests/e2e/net
assert_eq "its app answers inside the pod (sdme-pod exec)" "hello from busybox" \
	"$(th_exec /usr/libexec/sdme/sdme-pod exec e2e47pod -- python3 -c "$net_http_get_py" http://127.0.0.1:8060/ 2>&1)"
check_in "and not on the test host's loopback" sh -c "! python3 -c 'import urllib.request; urllib.request.urlopen(\"http://127.0.0.1:8060/\", timeout=2)' 2>/dev/null"
pid=$(app_pid "$pa")
assert_eq "the app's network namespace is the pod's" \
	"$(th_exec stat -L -c %i /run/sdme/pods/e2e47pod/netns)" "$(th_exec stat -L -c %i "/proc/$pid/ns/net")"
leader=$(th_exec machinectl show "$pa" -p Leader --value)
check_in "the guest around it keeps its own" test "$(th_exec stat -L -c %i "/proc/$leader/ns/net")" != "$(th_exec stat -L -c %i "/proc/$pid/ns/net")"
base=$(th_exec systemctl show -p ExecStart --value "sdme-$pa" | grep -o -- '--private-users=[0-9]*:' | tr -dc 0-9)
assert_eq "it runs as the base + 65534" "$((base + 65534))" "$(th_exec awk '/^Uid:/ { print $2 }' "/proc/$pid/status")"
assert_eq "with the unit's seccomp filters and no_new_privs (Hardened=)" "2 1" \
	"$(th_exec awk '/^Seccomp:/ { s = $2 } /^NoNewPrivs:/ { n = $2 } END { print s, n }' "/proc/$pid/status")"
client=$(th_sh "for p in \$(cat \$(find /sys/fs/cgroup -path '*sdme-$pa.service*' -path '*sdme-app.service*' -name cgroup.procs | head -n 1)); do if [ \$(cat /proc/\$p/comm) = .sdme-drop-priv ]; then echo \$p; fi; done")
assert_eq "as many filters as the unit's own process (sdme-drop-privs --via-pod)" \
	"$(th_exec awk '/^Seccomp_filters:/ { print $2 }' "/proc/$client/status")" "$(th_exec awk '/^Seccomp_filters:/ { print $2 }' "/proc/$pid/status")"
assert_eq "and the container's capability bounding set" \
	"$(th_exec awk '/^CapBnd:/ { print $2 }' "/proc/$leader/status")" "$(th_exec awk '/^CapBnd:/ { print $2 }' "/proc/$pid/status")"
th_exec journalctl -M "$pa" --sync 2>/dev/null || true
assert_match "its /dev/stdout reaches journalctl -M $pa -u sdme-app" 'e2e47 app 65534 in /www' \
	"$(th_exec journalctl -M "$pa" -u sdme-app -o cat --no-pager 2>&1)"
require_in "start sdme-$pb and sdme-$pc" timeout 120 systemctl start "sdme-$pb" "sdme-$pc"
check_in "the other app of the pod reaches it on 127.0.0.1" sh -c "for i in \$(seq 100); do journalctl -M $pb -u sdme-app -o cat 2>/dev/null | grep -qx 'e2e47 pod got: hello from busybox' && exit 0; sleep 0.2; done; exit 1"
check_in "an app outside the pod does not" sh -c "for i in \$(seq 100); do journalctl -M $pc -u sdme-app -o cat 2>/dev/null | grep -qx 'e2e47 outside: no answer' && exit 0; sleep 0.2; done; exit 1"
assert_eq "sdme exec --app runs in the pod's network too" "hello from busybox" \
	"$(th_exec sdme exec --app "$pb" -- busybox wget -q -O - http://127.0.0.1:8060/ 2>&1)"
check_in_status 3 "and returns its command's status" sdme exec --app "$pb" -- sh -c 'exit 3'
# The spawner serves only the container's root (sdme-app.service before
# sdme-drop-privs changes user): a process of the guest as 65534 in the
# app's root is refused, with the reason and drop-privs' status 225.
out=$(th_exec sdme exec "$pb" -- chroot --userspec=65534:65534 "/oci/apps/$img/root" /.sdme-drop-privs --via-pod 65534 / -- true 2>&1; echo "rc=$?")
assert_match "a caller that is not the container's root is refused" "only the container's root may ask for AppPod=.*
rc=225$" "$out"
# The pod's namespace taken away under its running members (sdme-pod
# remove by hand): the spawner refuses the next app process by name, and
# a new namespace serves it again.
require_in "sdme-pod remove e2e47pod, under its members" /usr/libexec/sdme/sdme-pod remove e2e47pod
out=$(th_exec sdme exec "$pb" -- chroot "/oci/apps/$img/root" /.sdme-drop-privs --via-pod 65534 / -- true 2>&1; echo "rc=$?")
assert_match "a pod that is not running is named" "pod e2e47pod is not running \\(start sdme-pod-e2e47pod\\.service\\).*
rc=225$" "$out"
require_in "sdme-pod create e2e47pod" /usr/libexec/sdme/sdme-pod create e2e47pod
check_in_status 0 "then the spawner serves it again" sdme exec "$pb" -- chroot "/oci/apps/$img/root" /.sdme-drop-privs --via-pod 65534 / -- /bin/busybox true
t0=$(date +%s%N)
require_in "stop the three" systemctl stop "sdme-$pa" "sdme-$pb" "sdme-$pc"
echo "FIGURE: systemctl stop of three app containers (two in a pod) took $((($(date +%s%N) - t0) / 1000000)) ms"
for c in $pa $pb $pc; do
	require "$c: the overlay is unmounted" th_unmounted "$c"
done
check_in "no spawner is left" sh -c "! systemctl list-units --no-legend --plain 'sdme-app-pod@*' | grep -q ."
check_in "the stops removed the AppPod= records" test ! -e /run/sdme/app-pods
# Without a user namespace (the host's root in the guest): the same way.
printf '[Container]\nApp=%s\nAppPod=e2e47pod.pod\nAppExec=/bin/sh -c "echo e2e47 pod batch; exit 3"\nAppExit=stop\n' "$img" | put "/etc/sdme/$pd.container"
require_in "daemon-reload" systemctl daemon-reload
th_exec systemctl start "sdme-$pd" >/dev/null 2>&1 || true
check_in "AppExit=stop in a pod: the container stops by itself" sh -c "for i in \$(seq 100); do systemctl is-active -q sdme-$pd || exit 0; sleep 0.2; done; exit 1"
assert_eq "with the app's status, relayed by the host" 3 "$(th_exec systemctl show -p ExecMainStatus --value "sdme-$pd")"
th_exec systemctl reset-failed "sdme-$pd" 2>/dev/null || true
require_in "stop the pod" systemctl stop sdme-pod-e2e47pod
require_in "sdme create --app-pod" sdme create e2e47-pe --app "$img" --app-pod e2e47pod
assert_match "writes AppPod=" "AppPod=e2e47pod.pod" "$(th_exec cat /etc/sdme/e2e47-pe.container)"
require_in "sdme rm e2e47-pe" sdme rm -f e2e47-pe

step "AppStopTimeout=2s: an app that ignores its stop signal is killed after it"
put "/etc/sdme/$stubborn.container" <<EOF
[Container]
App=$img
AppExec=/bin/sh -c "trap '' TERM; echo e2e47 stubborn; while :; do busybox sleep 1; done"
AppStopTimeout=2s
EOF
require_in "daemon-reload" systemctl daemon-reload
require_in "start sdme-$stubborn" timeout 120 systemctl start "sdme-$stubborn"
check_in "the app runs" sh -c "for i in \$(seq 100); do journalctl -M $stubborn -u sdme-app -o cat 2>/dev/null | grep -qx 'e2e47 stubborn' && exit 0; sleep 0.2; done; exit 1"
t0=$(date +%s%N)
require_in "stop sdme-$stubborn" timeout 80 systemctl stop "sdme-$stubborn"
t1=$(date +%s%N)
ms=$(((t1 - t0) / 1000000))
echo "FIGURE: systemctl stop of a container whose app ignores SIGTERM (AppStopTimeout=2s) took $ms ms"
[ "$ms" -ge 2000 ] || fail "the stop took $ms ms: the app was not given its 2 s"
[ "$ms" -lt 60000 ] || fail "the stop took $ms ms: the app's stop timeout did not apply"

step "a template instance (sdme-prepare --mount mounts the app's tree too)"
printf '[Container]\nApp=%s\nAppEnvironment=PORT=8050\n' "$img" | put /etc/sdme/e2e47-t@.container
require_in "daemon-reload" systemctl daemon-reload
require_in "start sdme-e2e47-t@one" timeout 120 systemctl start sdme-e2e47-t@one
assert_eq "httpd answers" "hello from busybox" "$(wait_answer 8050)"
require_in "stop sdme-e2e47-t@one" systemctl stop sdme-e2e47-t@one
assert_eq "nothing of it stays mounted" "" \
	"$(th_sh "grep ' /var/lib/sdme/containers/e2e47-t-one/' /proc/self/mountinfo || true")"

step "AppExit=stop: the container ends with the app's status"
put "/etc/sdme/$batch.container" <<EOF
[Container]
App=$img
AppExec=/bin/sh -c "echo e2e47 batch done; exit 3"
AppExit=stop
EOF
require_in "daemon-reload" systemctl daemon-reload
th_exec systemctl start "sdme-$batch" >/dev/null 2>&1 || true
check_in "the container stops by itself" sh -c "for i in \$(seq 100); do systemctl is-active -q sdme-$batch || exit 0; sleep 0.2; done; exit 1"
assert_eq "its unit shows the app's status" "3" "$(th_exec systemctl show -p ExecMainStatus --value "sdme-$batch")"
assert_match "and failed" 'failed|inactive' "$(th_exec systemctl is-active "sdme-$batch" || true)"
th_exec systemctl reset-failed "sdme-$batch" 2>/dev/null || true

step "AppUser= not in the image: one line in the app's journal, the container runs on"
printf '[Container]\nApp=%s\nAppUser=ghost\n' "$img" | put "/etc/sdme/$ghost.container"
require_in "daemon-reload" systemctl daemon-reload
require_in "start sdme-$ghost" timeout 120 systemctl start "sdme-$ghost"
check_in "the app's journal names the user" sh -c "for i in \$(seq 100); do journalctl -M $ghost -u sdme-app -o cat 2>/dev/null | grep -qx 'sdme-drop-privs: user ghost does not exist in /etc/passwd' && exit 0; sleep 0.2; done; exit 1"
check_in "the container still runs" systemctl is-active -q "sdme-$ghost"
require_in "stop sdme-$ghost" systemctl stop "sdme-$ghost"

step "a rootfs without an OCI configuration"
printf '[Container]\nApp=e2e47-noconf\n' | put "/etc/sdme/$plain.container"
require_in "daemon-reload" systemctl daemon-reload
check_in_status 1 "start fails" systemctl start "sdme-$plain"
assert_match "the journal names App='s line and the cause" \
	"/etc/sdme/$plain.container:2: App= \(rootfs e2e47-noconf\): the rootfs has no OCI image configuration" \
	"$(th_exec journalctl -u "sdme-$plain" -u "sdme-prepare@$plain" --no-pager -o cat 2>&1)"
th_exec systemctl reset-failed "sdme-$plain" "sdme-prepare@$plain" 2>/dev/null || true

step "an image port nspawn cannot forward (EXPOSE 9/sctp), with a private network"
require_in "a copy of the image that exposes 9/sctp" sh -c "cp -a /var/lib/sdme/rootfs/$img /var/lib/sdme/rootfs/e2e47-sctp &&
	python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); d[\"oci\"][\"exposed_ports\"] = [\"9/sctp\"]; json.dump(d, open(sys.argv[2], \"w\"))' \
	/var/lib/sdme/meta/$img.json /var/lib/sdme/meta/e2e47-sctp.json"
printf '[Container]\nApp=e2e47-sctp\nPrivateNetwork=yes\n' | put "/etc/sdme/$plain.container"
require_in "daemon-reload" systemctl daemon-reload
check_in_status 1 "start fails" systemctl start "sdme-$plain"
assert_match "the journal names App='s line, the entry and Port=" \
	"/etc/sdme/$plain.container:2: App= \\(rootfs e2e47-sctp\\): the image's ExposedPorts has '9/sctp', which nspawn cannot forward .*set Port= in the file" \
	"$(th_exec journalctl -u "sdme-$plain" -u "sdme-prepare@$plain" --no-pager -o cat 2>&1)"
require "nothing stays mounted" th_unmounted "$plain"
th_exec systemctl reset-failed "sdme-$plain" "sdme-prepare@$plain" 2>/dev/null || true
printf '[Container]\nApp=e2e47-sctp\nPrivateNetwork=yes\nPort=8047:80\n' | put "/etc/sdme/$plain.container"
require_in "daemon-reload" systemctl daemon-reload
require_in "with Port= of the file (then only those), it starts" timeout 120 systemctl start "sdme-$plain"
check_in "and no forward of the image's is written" test ! -e "/var/lib/sdme/containers/$plain/app/nspawn.env"
require_in "stop sdme-$plain" systemctl stop "sdme-$plain"
require "its overlay is unmounted" th_unmounted "$plain"
