# shellcheck shell=bash
# 96-cli-config: `sdme config set` changes one line of /etc/sdme/sdme.conf
# and keeps its comments and order; an unknown key or a bad value is one
# line naming it and leaves the file as it was. `config get` shows the value
# in force and the default; `config apparmor-profile` prints the installed
# profile. The installed bash completion completes commands and, through
# `sdme __names`, container, rootfs and pod names (for root and for a user).
# `sdme rm` of a vendor file masks it; `rm -a` without -f and without a
# terminal is refused; `rm -a -f` removes every container, a running one too;
# a /run/sdme file is deleted, an /etc file over a vendor one becomes a mask.

conf=/etc/sdme/sdme.conf
comp=/usr/share/bash-completion/completions/sdme

on_cleanup sh -c "rm -rf $conf /tmp/sdme.conf.before /etc/sdme/cpl.container /etc/sdme/cplpod.pod /var/lib/sdme/rootfs/cplfs /etc/sdme/ra1.container /etc/sdme/ra2.container /etc/sdme/vend96.container /usr/lib/sdme/vend96.container /var/lib/sdme/containers/ra1 /var/lib/sdme/containers/ra2 /var/lib/sdme/containers/cpl /var/lib/sdme/containers/vend96 /run/sdme/run96.container /var/lib/sdme/containers/run96 && systemctl daemon-reload"
on_cleanup sh -c "for u in sdme-ra1.service sdme-ra2.service; do systemctl stop \$u; systemctl reset-failed \$u 2>/dev/null; done; true"

step "sdme config get / set"
assert_eq "config get of the built-in default" "CAP_NET_RAW CAP_SYS_RAWIO CAP_SYS_PTRACE" \
	"$(th_exec sdme config get Hardened.DropCapability 2>&1)"
assert_match "config get lists the key with its default" \
	'^Hardened\.DropCapability=.*
    default: CAP_SYS_PTRACE CAP_NET_RAW CAP_SYS_RAWIO' "$(th_exec sdme config get 2>&1)"
assert_eq "config get of an unknown key: one line naming it" \
	"1 sdme: unknown key 'Hardened.Nope' (sdme.conf keys: Hardened.DropCapability, App.DefaultRootfs)" "$(out_rc sdme config get Hardened.Nope)"
require_in "a commented $conf" sh -c "printf '# site settings\n[Hardened]\n# reset, then ours\nDropCapability=\nDropCapability=CAP_KILL\n; end\n' > $conf && cp $conf /tmp/sdme.conf.before"
require_in "sdme config set Hardened.DropCapability 'CAP_SYS_TIME CAP_MKNOD'" \
	sdme config set Hardened.DropCapability 'CAP_SYS_TIME CAP_MKNOD'
assert_eq "only the value line changed, comments and order kept" \
	"5c5
< DropCapability=CAP_KILL
---
> DropCapability=CAP_SYS_TIME CAP_MKNOD" "$(th_exec diff /tmp/sdme.conf.before "$conf" 2>&1 || true)"
assert_eq "config get gives the new value" "CAP_SYS_TIME CAP_MKNOD" \
	"$(th_exec sdme config get Hardened.DropCapability 2>&1)"
check_in "no temporary file left in /etc/sdme" sh -c '! ls -A /etc/sdme | grep -q "^\."'
require_in "keep a copy" cp "$conf" /tmp/sdme.conf.before
assert_match "config set of an unknown key: one line naming it" \
	"^1 sdme: unknown key 'Hardened.Nope' \(sdme.conf keys: Hardened.DropCapability, App.DefaultRootfs\); nothing written$" \
	"$(out_rc sdme config set Hardened.Nope 1)"
check_in "$conf unchanged" cmp /tmp/sdme.conf.before "$conf"
assert_match "config set of a bad value: one line naming it" \
	"^1 sdme: Hardened.DropCapability=cap_nope: unknown capability 'cap_nope' \(.*\); nothing written$" \
	"$(out_rc sdme config set Hardened.DropCapability cap_nope)"
check_in "$conf unchanged" cmp /tmp/sdme.conf.before "$conf"
require_in "remove $conf" rm "$conf" /tmp/sdme.conf.before
require_in "config set without a file creates it" sdme config set Hardened.DropCapability ''
assert_eq "the new $conf" "[Hardened]
DropCapability=" "$(th_exec cat "$conf" 2>&1)"
assert_eq "config get: empty" "" "$(th_exec sdme config get Hardened.DropCapability 2>&1)"
require_in "remove $conf" rm "$conf"
require_in "sdme config set App.DefaultRootfs debian" sdme config set App.DefaultRootfs debian
assert_eq "config get App.DefaultRootfs" debian "$(th_exec sdme config get App.DefaultRootfs 2>&1)"
assert_match "config set App.DefaultRootfs of a bad name: one line naming it" \
	"^1 sdme: App.DefaultRootfs=\.\./x: rootfs name .*; nothing written$" \
	"$(out_rc sdme config set App.DefaultRootfs ../x)"
require_in "remove $conf" rm "$conf"

step "sdme config apparmor-profile"
check_in "prints the installed profile" sh -c 'sdme config apparmor-profile | cmp - /etc/apparmor.d/sdme-default'

step "bash completion of commands and names"
# shellcheck disable=SC2016 # expanded by the test host's bash
# As bash calls it: the function `complete -p sdme` names, with the command,
# the current word and the one before.
complete_words='. '$comp'; f=$(complete -p sdme | sed -n "s/.*-F \([^ ]*\) .*/\1/p"); COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1));
	"$f" sdme "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"; printf "%s\n" "${COMPREPLY[@]}"'
# completes WORD...: what bash completes for the command line WORD... (the
# last word is the one being completed).
completes() { th_exec bash --norc --noprofile -c "$complete_words" bash "$@" 2>&1 | paste -sd' '; }
require_in "a container, a rootfs and a pod" sh -c 'printf "[Container]\n" > /etc/sdme/cpl.container &&
	printf "[Pod]\n" > /etc/sdme/cplpod.pod && mkdir -p /var/lib/sdme/rootfs/cplfs'
assert_eq "sdme sto<TAB>" stop "$(completes sdme sto)"
assert_eq "sdme stop <TAB>" cpl "$(completes sdme stop '')"
assert_eq "sdme exec c<TAB>" cpl "$(completes sdme exec c)"
assert_eq "sdme create x --rootfs <TAB>" cplfs "$(completes sdme create x --rootfs '')"
assert_eq "sdme create x --pod <TAB>" cplpod "$(completes sdme create x --pod '')"
assert_match "sdme stop --<TAB>: options from clap" '--kill' "$(completes sdme stop --)"
# shellcheck disable=SC2016 # expanded by the test host's bash
assert_eq "sdme stop <TAB> as nobody (no root needed)" cpl "$(th_exec setpriv --reuid=65534 --regid=65534 --clear-groups \
	bash --norc --noprofile -c "$complete_words" bash sdme stop '' 2>&1)"
t0=$(date +%s%N)
th_exec sdme __names container >/dev/null
echo "figure: sdme __names container took $((($(date +%s%N) - t0) / 1000000)) ms (with th_exec's nsenter)"
require_in "remove them" rm -r /etc/sdme/cpl.container /etc/sdme/cplpod.pod /var/lib/sdme/rootfs/cplfs

step "sdme rm masks a vendor file; rm -a needs -f without a terminal"
require_in "a vendor file and two containers, one running" sh -c 'mkdir -p /usr/lib/sdme &&
	printf "[Container]\n" > /usr/lib/sdme/vend96.container && sdme create ra1 && sdme create ra2 && timeout 180 sdme start ra1'
assert_eq "rm -a without -f and without a terminal is refused" \
	"1 sdme: rm -a removes every container: confirm on a terminal or add -f; nothing removed" \
	"$(out_rc sh -c 'sdme rm -a </dev/null')"
check_in "nothing removed" test -e /etc/sdme/ra1.container -a -e /etc/sdme/ra2.container -a ! -e /etc/sdme/vend96.container
# On a terminal (script gives it one) it lists them and asks.
out=$(th_exec sh -c "printf 'n\n' | script -qec 'sdme rm -a' /dev/null" 2>&1 | tr -d '\r' || true)
assert_match "rm -a on a terminal asks, naming them; 'n' keeps them" \
	"Remove 3 containers \(ra1, ra2, vend96\)\? \[y/N\] .*sdme: nothing removed" "$(printf '%s' "$out" | paste -sd' ')"
check_in "nothing removed after 'n'" test -e /etc/sdme/ra1.container -a -e /etc/sdme/ra2.container -a ! -e /etc/sdme/vend96.container
assert_eq "sdme-ra1 still running" active "$(th_exec systemctl is-active sdme-ra1.service 2>&1 || true)"
out=$(out_rc sh -c 'timeout 180 sdme rm -a -f </dev/null')
assert_eq "rm -a -f: exit 0, the vendor file masked and said so" \
	"0 sdme: vend96 is defined by /usr/lib/sdme/vend96.container: masked with /etc/sdme/vend96.container -> /dev/null" "$out"
check_in "ra1 and ra2 removed, files and state" sh -c '! test -e /etc/sdme/ra1.container && ! test -e /etc/sdme/ra2.container &&
	! test -e /var/lib/sdme/containers/ra1 && ! test -e /var/lib/sdme/containers/ra2'
assert_eq "sdme-ra1 stopped and gone" inactive "$(th_exec systemctl is-active sdme-ra1.service 2>&1 || true)"
assert_eq "the vendor file is masked" /dev/null "$(th_exec readlink /etc/sdme/vend96.container 2>&1 || true)"
check_in "the vendor file itself is kept" test -e /usr/lib/sdme/vend96.container
assert_eq "no sdme-vend96 unit" not-found "$(th_exec systemctl show -P LoadState sdme-vend96.service 2>&1 || true)"
assert_match "rm of the masked one says it is masked" "^1 sdme: /etc/sdme/vend96.container masks vend96 already" \
	"$(out_rc sdme rm vend96)"
require_in "unmask" sh -c 'rm /etc/sdme/vend96.container /usr/lib/sdme/vend96.container && systemctl daemon-reload'
check_in_status 0 "rm -a -f with no container" sdme rm -a -f

step "sdme rm of a /run/sdme file deletes it; of an /etc file over a vendor one masks"
require_in "a runtime file" sh -c 'mkdir -p /run/sdme && printf "[Container]\n" > /run/sdme/run96.container && systemctl daemon-reload'
assert_eq "rm of a runtime file: deleted, nothing said" "0 " "$(out_rc sdme rm run96)"
check_in "/run/sdme/run96.container gone, no mask" sh -c '! test -e /run/sdme/run96.container && ! test -L /etc/sdme/run96.container'
require_in "an /etc file over a vendor file" sh -c 'printf "[Container]\n" > /usr/lib/sdme/vend96.container &&
	printf "[Container]\nHostname=admin\n" > /etc/sdme/vend96.container && systemctl daemon-reload'
assert_eq "rm: the /etc file replaced by a mask, said so" \
	"0 sdme: vend96 is defined by /usr/lib/sdme/vend96.container: masked with /etc/sdme/vend96.container -> /dev/null" \
	"$(out_rc sdme rm vend96)"
assert_eq "the mask" /dev/null "$(th_exec readlink /etc/sdme/vend96.container 2>&1 || true)"
require_in "unmask" sh -c 'rm /etc/sdme/vend96.container /usr/lib/sdme/vend96.container && systemctl daemon-reload'
