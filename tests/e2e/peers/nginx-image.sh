#!/bin/sh
# nginx-image.sh DIR: inside a test host, make the OCI layout DIR/img:nginx
# from DIR/nginx.tar (a Debian tree with nginx, see th_put_nginx_image in
# tests/e2e/testhost), packaged as the official nginx image is: its logs
# symlinked to /dev/stdout and /dev/stderr, CMD nginx -g 'daemon off;',
# STOPSIGNAL SIGQUIT, EXPOSE 80, and a page of our own. Uses umoci.
set -eu
cd "$1"
rm -rf tree img
mkdir tree
tar --numeric-owner -xpf nginx.tar -C tree
rm nginx.tar
ln -sf /dev/stdout tree/var/log/nginx/access.log
ln -sf /dev/stderr tree/var/log/nginx/error.log
echo "hello from nginx" >tree/var/www/html/index.html
rm -rf tree/var/cache/apt/archives/*.deb tree/var/lib/apt/lists/* tree/debootstrap
tar --numeric-owner -C tree -cf layer.tar .
rm -rf tree
umoci init --layout img
umoci new --image img:nginx
umoci raw add-layer --image img:nginx layer.tar
rm layer.tar
umoci config --image img:nginx --config.cmd nginx --config.cmd -g --config.cmd 'daemon off;' \
	--config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	--config.exposedports 80/tcp --config.stopsignal SIGQUIT
