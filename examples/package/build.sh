#!/bin/sh
# Build sdme-hello-example, a Debian package that ships a container
# (sdme.container(5), "SHIPPING CONTAINERS IN PACKAGES"), from the tree
# root/ beside this script:
#
#   examples/package/build.sh OUTDIR
#   apt install ./OUTDIR/sdme-hello-example_1.0_all.deb
#
# --no-depends leaves out "Depends: sdme", for a host where sdme was
# installed with `make install` rather than its package (the e2e test host).
set -eu

depends=yes
if [ "${1:-}" = --no-depends ]; then
	depends=no
	shift
fi
[ $# -eq 1 ] || { echo "usage: $0 [--no-depends] OUTDIR" >&2; exit 2; }
out=$1

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp -R "$(dirname "$0")/root/." "$stage/"
[ "$depends" = yes ] || sed -i '/^Depends:/d' "$stage/DEBIAN/control"

# dpkg-deb packs the modes it finds: set them rather than trust a checkout.
find "$stage" -type d -exec chmod 0755 {} +
find "$stage" -type f -exec chmod 0644 {} +
chmod 0755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm" "$stage/DEBIAN/postrm"

mkdir -p "$out"
# --root-owner-group: files owned by root in the package, whoever builds it.
dpkg-deb --root-owner-group --build "$stage" "$out"
