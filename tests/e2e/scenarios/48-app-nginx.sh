# shellcheck shell=bash
# shellcheck disable=SC2016 # snippets expand inside the test host
# 48-app-nginx: nginx from Debian's packages, packaged as the official
# image is (issue 14), run with App=REF on a clone of the test host:
# - the image (th_put_nginx_image of tests/e2e/testhost and
#   tests/e2e/peers/nginx-image.sh: a debootstrap --variant=minbase
#   bookworm tree with nginx, cached on the machine, made into an OCI
#   layout with umoci in the test host): logs symlinked to /dev/stdout and
#   /dev/stderr, CMD nginx -g 'daemon off;', STOPSIGNAL SIGQUIT, EXPOSE 80,
#   pushed with skopeo to a loopback docker-registry and pulled by the
#   shared image unit;
# - a request from the test host returns the page, and its access-log line
#   (nginx writes it to /dev/stdout, a pipe relayed to the journal) is in
#   `journalctl -M NAME -u sdme-app`;
# - nginx runs as it does anywhere: its master as root, its workers as the
#   image's www-data;
# - the app's KillSignal is the image's SIGQUIT (nginx's graceful stop);
#   the time `systemctl stop` takes is printed (no assertion on it);
# - with PrivateNetwork=yes the image's EXPOSE 80 becomes a port forward:
#   sdme-prepare writes --network-veth --port=tcp:80:80 for ExecStart=
#   ($SDME_APP_NSPAWN), and nginx answers on port 80 of the test host's
#   address on the veth link (systemd-networkd, started in the test host
#   and enabled in /usr for its clones, gives the link its addresses), while
#   nothing listens on the test host's own 127.0.0.1:80.

W=/var/tmp/e2e48
REG=localhost:5048
app=e2e48-nginx
fwd=e2e48-fw
# Enabled for the guests in /usr: a clone's /etc/systemd/system is its own.
nd_wants=/usr/lib/systemd/system/multi-user.target.wants/systemd-networkd.service

on_cleanup sh -c "rm -rf /var/lib/sdme/containers/$app /var/lib/sdme/volumes/$app /etc/sdme/$app.container $W /var/lib/sdme/rootfs/nginx-1-* /var/lib/sdme/meta/nginx-1-*.json; systemctl daemon-reload"
on_cleanup sh -c "rm -rf /var/lib/sdme/containers/$fwd /var/lib/sdme/volumes/$fwd /etc/sdme/$fwd.container $nd_wants; systemctl daemon-reload; systemctl stop 'systemd-networkd*' 2>/dev/null; true"
on_cleanup sh -c "systemctl stop sdme-$app sdme-$fwd e2e48-reg 'sdme-image-nginx-1-*' 2>/dev/null; systemctl reset-failed 'sdme-*' 'sdme-prepare@*' e2e48-reg 2>/dev/null; true"

put() { th_exec sh -c "cat > '$1'"; }

# get PATH: the body from http://127.0.0.1:80PATH, retried for up to 20 s
# (nginx listens a moment after its unit started).
get() { net_http_get "http://127.0.0.1:80$1"; }

step "the image: Debian's nginx packaged as the official one (th_put_nginx_image)"
require "the nginx image in $W" th_put_nginx_image "$W"
printf 'version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: %s/reg\nhttp:\n  addr: 127.0.0.1:5048\n' "$W" |
	put "$W/reg.yml"
require_in "registry" systemd-run -q --unit=e2e48-reg docker-registry serve "$W/reg.yml"
require_in "registry listening" sh -c "for i in \$(seq 100); do python3 -c 'import urllib.request; urllib.request.urlopen(\"http://127.0.0.1:5048/v2/\")' 2>/dev/null && exit 0; sleep 0.2; done; exit 1"
require_in "skopeo push $REG/e2e48/nginx:1" skopeo copy -q --dest-tls-verify=false "oci:$W/img:nginx" "docker://$REG/e2e48/nginx:1"

step "App=$REG/e2e48/nginx:1 on a clone of the host"
printf '[Container]\nApp=%s/e2e48/nginx:1\n' "$REG" | put "/etc/sdme/$app.container"
require_in "daemon-reload" systemctl daemon-reload
t0=$(date +%s%N)
require_in "start sdme-$app (imports the image first)" timeout 300 systemctl start "sdme-$app"
assert_eq "nginx answers from the test host" "hello from nginx" "$(get /)"
echo "FIGURE: systemctl start sdme-$app (image pulled and imported) to nginx's first answer: $((($(date +%s%N) - t0) / 1000000)) ms"
assert_eq "its KillSignal is the image's SIGQUIT" 3 \
	"$(th_exec systemctl -M "$app" show -p KillSignal --value sdme-app 2>&1)"
assert_eq "the app is active" active "$(th_exec systemctl -M "$app" is-active sdme-app 2>&1)"

step "the access log reaches the guest's journal through /dev/stdout"
assert_eq "a request for /index.html?e2e48" "hello from nginx" "$(get '/index.html?e2e48')"
check_in "the access-log line in journalctl -M $app -u sdme-app" sh -c "for i in \$(seq 100); do journalctl -M $app -u sdme-app -o cat 2>/dev/null | grep -q '\"GET /index.html?e2e48 HTTP/1.1\" 200' && exit 0; sleep 0.2; done; exit 1"

step "the processes: nginx's master as root, its workers as the image's www-data"
procs=$(th_sh "for p in \$(cat \$(find /sys/fs/cgroup -path '*sdme-$app.service*' -path '*sdme-app.service*' -name cgroup.procs)); do echo \"\$(awk '/^Uid:/ { print \$2 }' /proc/\$p/status) \$(tr '\\0' ' ' </proc/\$p/cmdline)\"; done")
printf '%s\n' "$procs"
check "the master runs as root" grep -q '^0 nginx: master process nginx -g daemon off;' <<<"$procs"
check "a worker runs as www-data (33)" grep -q '^33 nginx: worker process' <<<"$procs"

step "stop"
t0=$(date +%s%N)
require_in "stop sdme-$app" systemctl stop "sdme-$app"
echo "FIGURE: systemctl stop sdme-$app (nginx by SIGQUIT, then the guest) took $((($(date +%s%N) - t0) / 1000000)) ms"
require "the overlay is unmounted" th_unmounted "$app"

step "PrivateNetwork=yes: the image's EXPOSE 80 is forwarded from the test host"
require_in "systemd-networkd in the test host (the veth's host side)" systemctl start systemd-networkd
require_in "and enabled for its clones (the guest's host0)" ln -sf /usr/lib/systemd/system/systemd-networkd.service "$nd_wants"
printf '[Container]\nApp=%s/e2e48/nginx:1\nPrivateNetwork=yes\n' "$REG" | put "/etc/sdme/$fwd.container"
require_in "daemon-reload" systemctl daemon-reload
check_in "ExecStart= has \$SDME_APP_NSPAWN" sh -c "systemctl cat sdme-$fwd | grep -q '^ExecStart=.* \\\$SDME_APP_NSPAWN '"
require_in "start sdme-$fwd" timeout 120 systemctl start "sdme-$fwd"
assert_eq "what sdme-prepare wrote for it" "SDME_APP_NSPAWN=--network-veth --port=tcp:80:80" \
	"$(th_exec grep -v '^#' "/var/lib/sdme/containers/$fwd/app/nspawn.env" 2>&1)"
ve=$(th_sh "for i in \$(seq 100); do a=\$(ip -4 -o addr show dev ve-$fwd 2>/dev/null | awk '{ sub(\"/.*\", \"\", \$4); print \$4 }' | head -n 1); [ -n \"\$a\" ] && { echo \$a; exit; }; sleep 0.2; done")
require "the veth's host side has an address ($ve)" test -n "$ve"
assert_eq "nginx answers on port 80 of $ve" "hello from nginx" "$(net_http_get "http://$ve:80/")"
check_in "nothing listens on the test host's own 127.0.0.1:80" sh -c "! timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/80' 2>/dev/null"
require_in "stop sdme-$fwd" systemctl stop "sdme-$fwd"
require "its overlay is unmounted" th_unmounted "$fwd"
